"""Lightning on 2 CPU processes (``ddp_spawn``, gloo) with GradprobeCallback:
``python _lightning_ddp.py OUT``; rank 0 writes OUT/run.sqlite, OUT/findings.txt."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as L
import torch

from gradprobe.integrations.lightning import GradprobeCallback


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


STEPS = 3


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32 * STEPS, 4, generator=g)
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


class Save(L.Callback):
    """Each rank leaves what its probe saw: world size and the number of findings."""

    def __init__(self, probe_cb, out: Path) -> None:
        self.probe_cb, self.out = probe_cb, out

    def on_train_end(self, trainer, pl_module) -> None:
        world = self.probe_cb.run.meta.get("world_size")
        text = f"{world} {len(self.probe_cb.findings)}"
        (self.out / f"rank{trainer.global_rank}.txt").write_text(text)


def reference():
    """One process, the whole batch of each step (the ranks' rows together), same init.
    Lightning gives each rank a DistributedSampler (shuffled, seed 0): the same rows here."""
    import gradprobe as gp

    model = Tiny()
    opt = model.configure_optimizers()
    x, y = data().tensors
    order = [
        list(torch.utils.data.DistributedSampler(data(), 2, r, shuffle=True, seed=0))
        for r in range(2)
    ]
    with gp.watch(model) as probe:
        for step in range(STEPS):
            rows = [i for o in order for i in o[16 * step : 16 * (step + 1)]]
            xs, ys = x[rows], y[rows]
            torch.nn.functional.mse_loss(model.net(xs), ys).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    return probe.run


def main() -> None:
    out = Path(sys.argv[1])
    cb = GradprobeCallback(path=out / "run.sqlite")
    trainer = L.Trainer(
        max_steps=STEPS, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
        callbacks=[cb, Save(cb, out)], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(data(), batch_size=16, shuffle=False)
    trainer.fit(Tiny(), loader)


if __name__ == "__main__":
    main()
