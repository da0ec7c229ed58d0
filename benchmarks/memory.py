"""RSS over 5,000 (or 20,000) logged steps: the probe keeps nothing per step but the store.

    .venv/bin/python benchmarks/memory.py                  # the figure in docs/BENCHMARKS.md
    .venv/bin/python benchmarks/memory.py --steps 20000    # issue 9's long run

At every mark the store is also opened by a reader (``Run.load``) while it is written,
and must hold every step logged so far.

A small MLP (64 -> 4 x 256 tanh/relu -> 10, batch 32), every step logged with scalar stats,
first-non-finite and update ratios, stored in a SQLite file; RSS read from /proc.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch import nn

import gradprobe as gp


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--histograms", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    path = os.path.join(tempfile.mkdtemp(), "run.sqlite")
    marks = {}
    t0 = time.perf_counter()
    # updates=1: the update ratio (and its snapshot) on every logged step, the worst case
    with gp.watch(
        model, path=path, histograms=args.histograms, updates=1, every=1, first_nonfinite=True
    ) as probe:
        for step in range(args.steps):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
            if step + 1 in (100, 500) or (step + 1) % max(args.steps // 10, 1) == 0:
                marks[step + 1] = rss_mib()
                with gp.Run.load(path) as reader:  # readable throughout, every step there
                    assert len(reader.steps) == step + 1, (len(reader.steps), step + 1)
    elapsed = time.perf_counter() - t0
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    print(f"{args.steps} logged steps in {elapsed:.0f} s, histograms={args.histograms}")
    print("| logged steps | RSS (MiB) |\n|---:|---:|")
    for k, v in marks.items():
        print(f"| {k} | {v:.1f} |")
    print(
        f"growth 100 -> {args.steps} steps: {marks[args.steps] - marks[100]:+.1f} MiB; "
        f"run file {size / 2**20:.1f} MiB ({size / args.steps / 1024:.1f} KiB per logged step)"
    )


if __name__ == "__main__":
    main()
