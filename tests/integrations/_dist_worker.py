"""One rank of the distributed tests: ``python _dist_worker.py RANK WORLD PORT OUT``.

Trains small models with ``gp.watch(..., distributed=True)``: an MLP under DDP (NaN in an
unlogged step), the same with every step logged, a GRU under DDP, the MLP under DDP on the
accelerator code path, and the MLP under FSDP2 (``fully_shard``). Leaves, in OUT, rank 0's
stored runs and every rank's view of them (JSON), for the test to compare with one process
on the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import gradprobe as gp

STEPS = 5
UNLOGGED = 3  # the schedule skips step 3: a NaN there is found through the device codes


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )  # fmt: skip


def batches(world: int):
    """The whole batch of each step (the test's reference uses the same), and rank chunks."""
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(STEPS):
        x = torch.randn(8 * world, 6, generator=g) * 2
        y = torch.randn(8 * world, 3, generator=g)
        if step == UNLOGGED:
            x[-1, 2] = float("nan")  # the last row belongs to the last rank
        out.append((x, y))
    return out


def schedule(step: int) -> bool:
    return step != UNLOGGED


def train(
    model,
    rank: int,
    world: int,
    path,
    watched=None,
    data_world=None,
    every=schedule,
    search=True,
) -> gp.Run:
    """``world=1, data_world=2``: the single-process reference on the whole batch.
    ``search``: ``first_nonfinite=`` (True: the exact search on the unlogged step too)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"distributed": True} if world > 1 else {}
    kwargs["first_nonfinite"] = search
    with gp.watch(
        watched or model, every=every, histograms=True, bins=16, path=path, **kwargs
    ) as probe:
        for x, y in batches(data_world or world):
            xr, yr = x.chunk(world)[rank], y.chunk(world)[rank]
            torch.nn.functional.mse_loss(model(xr), yr).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    probe.run.collectives = getattr(probe._dist, "collectives", 0)
    return probe.run


class Recurrent(torch.nn.Module):
    """A GRU and a head: per-time-step gradient norms (∂L/∂h_t, ∂L/∂x_t) are series."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.GRU(3, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def train_recurrent(model, rank: int, world: int, watched=None, data_world=None) -> dict:
    """Two logged steps; returns the per-time-step series of the GRU."""
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"distributed": True} if world > 1 else {}
    with gp.watch(watched or model, **kwargs) as probe:
        for _ in range(2):
            x = torch.randn(4 * (data_world or world), 5, 3, generator=g)
            y = torch.randn(4 * (data_world or world), 1, generator=g)
            xr, yr = x.chunk(world)[rank], y.chunk(world)[rank]
            torch.nn.functional.mse_loss(model(xr), yr).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    run = probe.run
    return {
        f"{step}|{q}": run.series("rnn", q, step).tolist()
        for step in run.steps
        for q in ("rnn_grad_output_t", "rnn_grad_input_t")
    }


def dump(run: gp.Run, path: Path) -> None:
    hists = {}
    for step in run.steps:
        for layer in run.layers(role=None):
            for q in ("activation", "grad_output"):
                h = run.histogram(layer.name, q, step)
                if h is not None:
                    hists[f"{step}|{layer.name}|{q}"] = {
                        "lo": h.lo, "hi": h.hi, "counts": h.counts.tolist(), "zero": h.zero,
                        "nan": h.nan, "below": h.below, "above": h.above,
                    }  # fmt: skip
    path.write_text(
        json.dumps(
            {
                "rows": [list(r) for r in run.rows()],
                "events": [[e.step, e.phase, e.layer, e.detail] for e in run.events()],
                "hists": hists,
                "collectives": run.collectives,
                "steps": run.steps,
                "meta": {
                    k: v
                    for k, v in run.meta.items()
                    if k in ("world_size", "rank", "nonfinite_seen")
                },
            }
        )
    )


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    out = Path(out)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = make_model()
        ddp = DDP(model)
        run = train(ddp, rank, world, out / "ddp.sqlite", watched=model)
        dump(run, out / f"ddp.rank{rank}.json")

        model = make_model()  # every step logged: the NaN is found in a logged step's counts
        run = train(DDP(model), rank, world, None, watched=model, every=1)
        dump(run, out / f"ddp_logged.rank{rank}.json")

        model = make_model()  # first_nonfinite="auto": the check of the unlogged step
        run = train(DDP(model), rank, world, None, watched=model, search="auto")
        dump(run, out / f"ddp_auto.rank{rank}.json")

        model = Recurrent()
        series = train_recurrent(DDP(model), rank, world, watched=model)
        (out / f"rnn.rank{rank}.json").write_text(json.dumps(series))

        # the accelerator code path (everything decided on the device), run on the CPU
        from gradprobe.probe import reducers

        on_host = reducers.on_host
        reducers.on_host = lambda device: False
        try:
            model = make_model()
            run = train(DDP(model), rank, world, out / "ddp_device.sqlite", watched=model)
            dump(run, out / f"ddp_device.rank{rank}.json")
        finally:
            reducers.on_host = on_host

        from torch.distributed.fsdp import fully_shard

        model = make_model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        run = train(model, rank, world, out / "fsdp.sqlite")
        dump(run, out / f"fsdp.rank{rank}.json")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
