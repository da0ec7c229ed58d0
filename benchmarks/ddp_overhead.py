"""Cost of the probe under DDP (issue 8): 2 processes, gloo, CPU, one thread each.

Workload: MLP 784 -> 5 x 1000 tanh -> 10, cross-entropy, SGD, batch 64 per rank, random data.
Every configuration runs in the same process group; rounds interleave the configurations
(shuffled, the same order on every rank), each round times ``--steps`` steps per
configuration after one warm-up step, and a configuration's ratio is the median over rounds
of (its median step time / plain DDP's median step time in the same round), on rank 0.

    .venv/bin/python benchmarks/ddp_overhead.py                 # the table in BENCHMARKS.md
    .venv/bin/python benchmarks/ddp_overhead.py --rounds 3 --steps 5   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import gradprobe as gp

CONFIGS = {
    "DDP, no probe": None,
    "DDP + watch(every=1), rank-local (not combined)": {"every": 1, "distributed": False},
    "DDP + watch(every=1, distributed=True)": {"every": 1},
    "DDP + watch(every=1, histograms=True, distributed=True)": {"every": 1, "histograms": True},
    "DDP + watch(every=10, distributed=True)": {"every": 10},
}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(784, 1000), nn.Tanh()]
    for _ in range(4):
        layers += [nn.Linear(1000, 1000), nn.Tanh()]
    layers.append(nn.Linear(1000, 10))
    return nn.Sequential(*layers)


SPENT = {"combine": 0.0, "all_reduce": 0.0}  # seconds inside the reducer, and its collectives


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - t

    return wrapper


def time_config(ddp, model, opt, options, steps: int, x, y) -> tuple[float, int]:
    """Median seconds per step (after one warm-up step) and collectives issued by the probe."""
    # updates=1: the update ratio on every logged step, as when the table was measured
    probe = gp.watch(model, **{"distributed": True, "updates": 1, **options}) if options else None
    with probe or contextlib.nullcontext():
        times = []
        for i in range(steps + 1):
            t = time.perf_counter()
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
            opt.zero_grad()
            if probe is not None:
                probe.step()
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times), getattr(probe and probe._dist, "collectives", 0)


def worker(rank: int, world: int, port: int, rounds: int, steps: int, out: dict) -> None:
    torch.set_num_threads(1)
    from gradprobe.probe._distributed import Reducer

    Reducer.__call__ = _timed("combine", Reducer.__call__)
    Reducer._all_reduce = _timed("all_reduce", Reducer._all_reduce)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = make_model()
        ddp = DDP(model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(rank)
        x, y = torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)
        ratios: dict[str, list[float]] = {k: [] for k in CONFIGS}
        collectives: dict[str, int] = {}
        order = list(CONFIGS)
        shuffle = random.Random(0)
        for _ in range(rounds):
            shuffle.shuffle(order)  # same seed on every rank: same order
            t = {}
            for name in order:
                t[name], collectives[name] = time_config(
                    ddp, model, opt, CONFIGS[name], steps, x, y
                )
            for name in CONFIGS:
                ratios[name].append(t[name] / t["DDP, no probe"])
            ratios.setdefault("_plain_s", []).append(t["DDP, no probe"])
        if rank == 0:
            out.update(
                {k: statistics.median(v) for k, v in ratios.items()},
                collectives=collectives,
                spent=dict(SPENT),
            )
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(2, port, args.rounds, args.steps, out), nprocs=2, join=True)
        out = dict(out)
    steps = args.steps + 1
    print(f"plain DDP step: {out['_plain_s'] * 1e3:.1f} ms (rank 0, median)")
    n = sum(out["collectives"].values()) // 2 * args.rounds  # logged steps combined, all configs
    spent = out["spent"]
    print(
        f"combining one logged step: {spent['combine'] / n * 1e3:.2f} ms on rank 0, of which "
        f"{spent['all_reduce'] / n * 1e3:.2f} ms in its 2 all_reduce calls"
    )
    print("| configuration | time / plain DDP | probe collectives per logged step |")
    print("|---|---:|---:|")
    for name, options in CONFIGS.items():
        every = (options or {}).get("every", 1)
        logged = len(range(0, steps, every))
        per = out["collectives"][name] / logged
        print(f"| {name} | {out[name]:.3f} | {per:g} |")


if __name__ == "__main__":
    main()
