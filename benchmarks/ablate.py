"""One part of the probe switched off, against the probe whole, in one process.

``paired.py`` compares two commits; this compares two probes of this checkout that differ in
one mechanism, so what that mechanism saves is measured with the rest of the code the same.
Three lanes — plain training, the probe, the probe with ``--off`` — train copies of one model
in shuffled turns; each turn's time of the probe is divided by the other lane's from the same
cycle (below 1: the mechanism makes the probe cheaper).

    .venv/bin/python benchmarks/ablate.py --off grads --workload transformer --clock cpu \\
        --kwargs '{"every": 1, "first_nonfinite": true, "histograms": true, "updates": 1}'

``--off``: ``grads`` reads each parameter in its own gradient hook instead of all of them in
one call at the end of the backward (``probe/_grads.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch

import gradprobe as gp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import Workload  # the modules beside this script
from paired import race


def _no_grads(probe) -> None:
    probe._grads = None


OFF = {"grads": _no_grads}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--off", choices=sorted(OFF), required=True)
    ap.add_argument("--workload", choices=["reference", "transformer"], default="transformer")
    ap.add_argument("--kwargs", default="{}", help="watch() keyword arguments, as JSON")
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--run", type=int, default=10, help="steps per turn")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first, per lane")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    wl = Workload(args.workload, "cpu", None)
    torch.set_num_threads(wl.threads)
    torch.manual_seed(0)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    kw = json.loads(args.kwargs)
    init = wl.make().state_dict()
    with contextlib.ExitStack() as stack:
        lanes = {}
        for name in ("plain", "probe", "off"):
            model = wl.make()
            model.load_state_dict(init)
            opt = wl.optimizer(model.parameters())
            probe = None
            if name != "plain":
                probe = stack.enter_context(gp.watch(model, optimizer=opt, **kw))
                if name == "off":
                    OFF[args.off](probe)
            lanes[name] = (model, opt, probe)

        times = race(lanes, wl, clock, args.warmup, args.turns, args.run)
    plain, on, off = times["plain"], times["probe"], times["off"]

    def over_plain(ts: list[float]) -> float:
        return statistics.median(a / p for a, p in zip(ts, plain, strict=True))

    ratio = [a / b for a, b in zip(on, off, strict=True)]
    q = statistics.quantiles(ratio, n=4) if len(ratio) > 1 else [ratio[0]] * 3
    print(f"probe: {over_plain(on):.3f}× plain")
    print(f"--off {args.off}: {over_plain(off):.3f}× plain")
    print(f"probe / off, fastest turns: {min(on) / min(off):.3f}")
    print(
        f"probe / off, paired per turn: {statistics.median(ratio):.3f} (quartiles "
        f"{q[0]:.3f}–{q[2]:.3f}; {args.turns} turns of {args.run} steps)"
    )


if __name__ == "__main__":
    main()
