"""GradprobeCallback on a tiny LightningModule: a few CPU steps, findings through the logger."""

import csv
import sys

import pytest
import torch

from gradprobe.errors import GradprobeError

L = pytest.importorskip("lightning.pytorch", reason="needs the lightning extra")


class Tiny(L.LightningModule):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )
        with torch.no_grad():
            self.net[0].weight.mul_(scale)
        self.losses: list[float] = []

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    ds = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(ds, batch_size=16)


def _fit(tmp_path, module, **callback_options):
    from gradprobe.integrations.lightning import GradprobeCallback

    cb = GradprobeCallback(**callback_options)
    trainer = L.Trainer(
        max_steps=5, accelerator="cpu", devices=1, logger=L.loggers.CSVLogger(tmp_path),
        callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, val_check_interval=2, num_sanity_val_steps=1,
        limit_val_batches=1,
    )  # fmt: skip
    trainer.fit(module, _loader(), _loader(16))
    return cb, trainer


def test_watch_during_fit_and_findings_in_the_logger(tmp_path):
    torch.manual_seed(0)
    module = Tiny(scale=30.0)
    cb, trainer = _fit(tmp_path, module, histograms=True)  # saturates the tanh
    run = cb.run
    assert run.steps == [0, 1, 2, 3, 4]  # one step per training batch
    # the callback passes the loss training_step returned, and the optimizer's lr
    assert list(run.matrix("loss", "value")[2][0]) == module.losses
    assert list(run.matrix("lr", "value")[2][0]) == [0.1] * 5
    assert run.matrix("grad_norm", "global")[1] == [0, 1, 2, 3, 4]
    # the optimizer and its hyper-parameters, as watch(optimizer=) records them
    opt = trainer.optimizers[0]
    assert run.meta["optimizer"]["type"] == type(opt).__name__
    assert run.meta["optimizer"]["momentum"] == opt.defaults["momentum"]
    _, _, calls = run.matrix("activation", "calls")
    assert (calls == 1).all()  # validation forwards are not recorded
    assert any(f.kind == "saturated" for f in cb.findings)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    got = [
        r for r in rows if r.get("gradprobe/findings_warning") or r.get("gradprobe/findings_error")
    ]
    assert got, "finding counts were not logged"
    norm = [
        float(r["gradprobe/param_grad/norm/net.0.weight"])
        for r in rows
        if r.get("gradprobe/param_grad/norm/net.0.weight")
    ]
    _, _, ref = run.matrix("param_grad", "norm", role="param")
    assert len(norm) == 5 and norm == pytest.approx(list(ref[0]), rel=1e-6)
    assert len(cb.probe.hooks) == 0  # every hook removed after fit


def test_accumulated_batches_are_one_step_with_their_mean_loss(tmp_path):
    """Regression: under ``accumulate_grad_batches=2`` every batch was a probe step (half of
    them with no optimizer step) with half its loss (Lightning hands the callback loss/2)."""
    from gradprobe.integrations.lightning import GradprobeCallback

    torch.manual_seed(0)
    module, cb = Tiny(), GradprobeCallback()
    trainer = L.Trainer(
        max_steps=3, accumulate_grad_batches=2, accelerator="cpu", devices=1, logger=False,
        callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, _loader())
    run = cb.run
    assert run.steps == [0, 1, 2]  # one per optimizer step, 6 batches
    pairs = [sum(module.losses[i : i + 2]) / 2 for i in range(0, 6, 2)]
    assert list(run.matrix("loss", "value")[2][0]) == pytest.approx(pairs, rel=1e-6)
    _, _, calls = run.matrix("activation", "calls")
    assert (calls == 2).all()  # both batches' forwards in their step


def test_accumulation_that_changes_between_epochs_keeps_one_step_per_optimizer_step():
    """GradientAccumulationScheduler: 1 batch a step in epoch 0, 2 in epoch 1 (4 batches an
    epoch): 4 + 2 probe steps, the first window of epoch 1 not cut short by epoch 0."""
    from lightning.pytorch.callbacks import GradientAccumulationScheduler

    from gradprobe.integrations.lightning import GradprobeCallback

    torch.manual_seed(0)
    module, cb = Tiny(), GradprobeCallback(every=1)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, limit_val_batches=0,
        callbacks=[cb, GradientAccumulationScheduler({0: 1, 1: 2})],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, _loader())
    assert cb.run.steps == list(range(6))
    want = module.losses[:4] + [sum(module.losses[i : i + 2]) / 2 for i in (4, 6)]
    assert list(cb.run.matrix("loss", "value")[2][0]) == pytest.approx(want, rel=1e-6)


def test_a_mixed_precision_scaler_is_divided_out_of_the_gradients(tmp_path):
    """Lightning's "16-mixed" scales the loss with a GradScaler (on a GPU; here a CPU
    plugin given one): the gradients are recorded unscaled, as a float32 fit's."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from gradprobe.integrations.lightning import GradprobeCallback

    norms = []
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)  # no float16 overflow here
    for plugins in ([], [MixedPrecision("16-mixed", "cpu", scaler)]):
        torch.manual_seed(0)
        cb = GradprobeCallback()
        trainer = L.Trainer(
            max_steps=3, accelerator="cpu", devices=1, logger=False, callbacks=[cb],
            enable_checkpointing=False, enable_progress_bar=False, plugins=plugins,
            enable_model_summary=False, limit_val_batches=0,
        )  # fmt: skip
        trainer.fit(Tiny(), _loader())
        norms.append(cb.run.matrix("grad_norm", "global")[2][0])
    scaled_run = cb.run
    assert scaled_run.meta["grad_scaler"] == "GradScaler"
    assert set(scaled_run.matrix("grad_scale", "value")[2][0]) == {256.0}
    # float16 autocast rounds the forward: the same size, not the same bits
    assert norms[1] == pytest.approx(norms[0], rel=0.05)


def test_tensorboard_logger_gets_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradprobe.integrations.lightning import GradprobeCallback

    logger = L.loggers.TensorBoardLogger(tmp_path)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", logger=logger, callbacks=[GradprobeCallback()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(Tiny(), _loader())
    ea = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    assert "gradprobe/param_grad/norm/net.0.weight" in ea.Tags()["scalars"]
    assert "gradprobe/findings/text_summary" in ea.Tags()["tensors"]


def test_missing_package_names_the_pip_command(monkeypatch):
    import gradprobe.integrations.lightning as mod

    monkeypatch.delitem(mod.__dict__, "GradprobeCallback", raising=False)
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(GradprobeError, match=r"pip install 'gradprobe\[lightning\]'"):
        from gradprobe.integrations.lightning import GradprobeCallback  # noqa: F401


@pytest.mark.slow
def test_ddp_spawn_two_processes_combine_and_rank0_writes(tmp_path):
    """Lightning's own DDP (2 CPU processes, gloo): one process on the whole batch, again."""
    import math
    import os
    import subprocess

    here = os.path.dirname(__file__)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": here}
    out = subprocess.run(
        [sys.executable, os.path.join(here, "_lightning_ddp.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["run.sqlite"]
    ranks = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0][0] == "2"  # same findings on both ranks

    import gradprobe as gp

    from ._lightning_ddp import reference

    got = {r[:4]: r[4] for r in gp.Run.load(tmp_path / "run.sqlite").rows()}
    # the layers of the network (Lightning also calls the module itself: "(model)", "(input)")
    want = {r[:4]: r[4] for r in reference().rows() if r[1].startswith("net.")}
    assert len(want) > 50 and want.keys() <= got.keys()
    for key, value in want.items():
        tol = 1e-4 if key[3] == "std" else 2e-5
        assert got[key] == pytest.approx(value, rel=tol, abs=1e-9) or math.isnan(value), key
