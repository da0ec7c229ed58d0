"""The probe of two commits side by side in one process: what a change did to its cost.

A ratio between two runs of ``overhead.py`` mixes the change with the machine's drift (on a
shared machine a turn's ratio scatters by ±10 %). Here three lanes — plain training, the
probe of another commit (``--base``, a source tree such as a ``git worktree`` of it) and the
probe of this checkout — train copies of one model in shuffled turns, and each turn's time
of the new probe is divided by the old one's from the same cycle. The other commit's
``gradprobe`` package is copied under the name ``gradprobe_base`` (the probe imports its own
modules relatively, so both load side by side).

    git worktree add /tmp/base 7a25713
    .venv/bin/python benchmarks/paired.py --base /tmp/base --workload transformer \\
        --kwargs '{"every": 1, "first_nonfinite": true, "histograms": true, "updates": 1}'

Prints the median ratio to plain training of each probe and the median of new / old over the
turns (below 1: the change made the probe cheaper), and the same ratios of each lane's
fastest turn (timeit's advice: interference only ever adds time, so the minimum is the
least disturbed estimate; on a noisy shared machine it scatters less than the median).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

import torch

import gradprobe as gp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import Workload  # the module beside this script


def load_base(tree: str, into: str):
    """The ``gradprobe`` package of the source tree ``tree``, imported as ``gradprobe_base``."""
    src = os.path.join(tree, "src", "gradprobe")
    if not os.path.isdir(src):
        sys.exit(f"paired.py: no src/gradprobe under {tree}; pass a checkout of the other commit")
    shutil.copytree(src, os.path.join(into, "gradprobe_base"))
    sys.path.insert(0, into)
    return importlib.import_module("gradprobe_base")


def race(lanes: dict, wl, clock, warmup: int, turns: int, run: int) -> dict[str, list[float]]:
    """Each lane — (model, optimizer, probe or None) — trains ``warmup`` untimed steps (past
    the default schedule's dense start, caches warm), then ``turns`` cycles in which every
    lane, in a new shuffled order, trains ``run`` steps; each lane's time per turn."""

    def turn(name: str, steps: int) -> float:
        model, opt, probe = lanes[name]
        t0 = clock()
        for _ in range(steps):
            loss = wl.loss_fn(model(wl.x), wl.y)
            loss.backward()
            opt.step()
            if probe is not None:
                probe.step(loss=loss)
            opt.zero_grad()
        return clock() - t0

    for name in lanes:
        turn(name, warmup)
    times: dict[str, list[float]] = {k: [] for k in lanes}
    order, rng = list(lanes), random.Random(0)
    for _ in range(turns):
        rng.shuffle(order)
        for name in order:
            times[name].append(turn(name, run))
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="a source tree of the other commit")
    ap.add_argument("--workload", choices=["reference", "transformer"], default="transformer")
    ap.add_argument("--kwargs", default="{}", help="watch() keyword arguments, as JSON")
    ap.add_argument("--turns", type=int, default=15)
    ap.add_argument("--run", type=int, default=20, help="steps per turn")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps first, per lane")
    args = ap.parse_args(argv)
    kwargs = json.loads(args.kwargs)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    wl = Workload(args.workload, "cpu", None)
    torch.set_num_threads(wl.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        base = load_base(args.base, tmp)
        init = wl.make().state_dict()
        lanes = {}
        for name, lib in (("plain", None), ("before", base), ("after", gp)):
            model = wl.make()
            model.load_state_dict(init)
            opt = wl.optimizer(model.parameters())
            probe = stack.enter_context(lib.watch(model, optimizer=opt, **kwargs)) if lib else None
            lanes[name] = (model, opt, probe)

        times = race(lanes, wl, clock, args.warmup, args.turns, args.run)
    for name in ("before", "after"):
        r = [a / b for a, b in zip(times[name], times["plain"], strict=True)]
        fastest = min(times[name]) / min(times["plain"])  # the least disturbed turns
        print(f"{name}: {statistics.median(r):.3f}× plain (fastest turns: {fastest:.3f}×)")
    print(f"after / before, fastest turns: {min(times['after']) / min(times['before']):.3f}")
    paired = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
    print(
        f"after / before, paired per turn: {statistics.median(paired):.3f} "
        f"(quartiles {statistics.quantiles(paired, n=4)[0]:.3f}–"
        f"{statistics.quantiles(paired, n=4)[2]:.3f}; {args.turns} turns of {args.run} steps)"
    )


if __name__ == "__main__":
    main()
