"""Parts of a logged step, of two commits side by side in one process (microbenchmarks).

``paired.py`` times whole training steps; on a shared machine their ±10 % scatter hides a
change of a few percent. This times the parts a change touched, old against new, in the same
process and seconds apart: the attention sample of one SDPA call, the packer's one host copy,
what a hook records of one activation (with and without its histogram; a saturating one) and
of one large parameter gradient, hot in cache and after 32 MiB of other memory traffic
(cold). Median µs per call.

    git worktree add /tmp/base 021f0f3 && (cd /tmp/base && python setup.py build_ext --inplace)
    .venv/bin/python benchmarks/parts.py --base /tmp/base
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time

import torch

import gradprobe as gp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import load_base  # the module beside this script


def bench(f, n: int, cold: bool, junk: torch.Tensor) -> float:
    for _ in range(10):
        f()
    ts = []
    for _ in range(n):
        if cold:
            junk.mul_(1.0)  # evict the caches
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def parts(lib):
    """The callables to time, built from one gradprobe package."""
    A, P, S, M = (
        importlib.import_module(f"{lib.__name__}.probe.{m}")
        for m in ("_attention", "_packer", "_stats", "modules")
    )
    q, k, v = torch.randn(16, 64, 3, 4, 32).permute(2, 0, 3, 1, 4)  # GPT-2 block, d 128

    def packer():
        pk = P.Packer()
        for i in range(130):  # a logged step's moments, histogram counts, norms
            pk.add(1.0, 2.0, 3.0, 4.0, 5.0)
            pk.add(torch.zeros(66, dtype=torch.long) + i)
            pk.add(torch.tensor(3.5))
        return pk

    pk = packer()
    x = torch.randn(16, 64, 128)
    slot = M.Slot(1, "layer", torch.nn.Linear(2, 2))
    plain, hist = S.Recorder(False, 64, None, False), S.Recorder(True, 64, None, False)
    tanh, t = M.Slot(2, "tanh", torch.nn.Tanh()), torch.tanh(torch.randn(128, 1000))
    rec, g = M.BwdRec("param", slot, "layer.weight"), torch.randn(1000, 1000)
    return {
        "attention sample (one causal SDPA call)": lambda: A.sdpa_sample(q, k, v, is_causal=True),
        "packer to_host (390 items)": pk.to_host,
        "record one activation (16, 64, 128)": lambda: plain.forward(P.Packer(), {}, slot, x),
        "  with its histogram": lambda: hist.forward(P.Packer(), {}, slot, x),
        "record a tanh activation (128, 1000), saturation": lambda: plain.forward(
            P.Packer(), {}, tanh, t
        ),
        "record a parameter gradient (1000, 1000)": lambda: plain.backward(
            P.Packer(), {}, rec, g, None, "moments_grad"
        ),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="a source tree of the other commit")
    ap.add_argument("-n", type=int, default=300, help="calls per part")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old_parts, new_parts = parts(load_base(args.base, tmp)), parts(gp)
        junk = torch.randn(8_000_000)
        print("| part | cache | old µs | new µs |\n|---|---|---:|---:|")
        for name in new_parts:
            for cold in (False, True):
                a = bench(old_parts[name], args.n, cold, junk)
                b = bench(new_parts[name], args.n, cold, junk)
                print(f"| {name} | {'cold' if cold else 'hot'} | {a:.0f} | {b:.0f} |")


if __name__ == "__main__":
    main()
