"""Overhead of gradprobe's probe and of its peers on the reference workload (issue 3).

Workload: MLP 784 -> 5 x 1000 tanh -> 10, cross-entropy, SGD, batch 128, random data,
``torch.set_num_threads(2)``. Every configuration runs in this one process; rounds interleave
the configurations (in a shuffled order each round), each round times ``--steps`` steps per
configuration after one warm-up step, and a configuration's ratio is the median over rounds of
(its mean step time / plain training's mean step time in the same round). The mean, because
with ``every=10`` or the update ratio 10 steps apart one step in ten costs more; ``--steps``
is therefore a multiple of 10.

    .venv/bin/python benchmarks/overhead.py                 # the table in docs/BENCHMARKS.md
    .venv/bin/python benchmarks/overhead.py --rounds 3 --steps 10  # a quick look

Peers are skipped when their package is missing (``pip install -c constraints.txt -e .[bench]``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

import gradprobe as gp


def make_model(device: str) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(784, 1000), nn.Tanh()]
    for _ in range(4):
        layers += [nn.Linear(1000, 1000), nn.Tanh()]
    layers.append(nn.Linear(1000, 10))
    return nn.Sequential(*layers).to(device)


@contextlib.contextmanager
def plain(model, opt):
    yield lambda step, loss: None


def probe_config(**kwargs):
    @contextlib.contextmanager
    def config(model, opt):
        with gp.watch(model, **kwargs) as probe:
            yield lambda step, loss: probe.step()

    return config


@contextlib.contextmanager
def floor_norms(model, opt):
    """The least any per-parameter record costs: ‖g‖ and ‖w‖ of every parameter (one BLAS dot
    product each, no hooks, nothing stored), what recording per-parameter norms must read."""

    def after(step, loss):
        with torch.no_grad():
            for p in model.parameters():
                g, w = p.grad.reshape(-1), p.reshape(-1)
                torch.dot(g, g), torch.dot(w, w)

    yield after


@contextlib.contextmanager
def item_hooks(model, opt):
    """What fastai-style stats hooks do: a .item() per statistic per tensor."""
    stats = []

    def fwd(module, args, out):
        o = out.detach()
        stats.append((o.mean().item(), o.std().item(), o.abs().max().item()))

    handles = [m.register_forward_hook(fwd) for m in model]

    def after(step, loss):
        for p in model.parameters():
            stats.append((p.grad.norm().item(), p.grad.std().item(), p.grad.abs().max().item()))

    try:
        yield after
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def detect_anomaly(model, opt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autograd.detect_anomaly():
            yield lambda step, loss: None


@contextlib.contextmanager
def tensorboard(model, opt):
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as d:
        writer = SummaryWriter(d)

        def after(step, loss):
            for name, p in model.named_parameters():
                writer.add_histogram(name, p.grad, step)

        try:
            yield after
        finally:
            writer.close()


@contextlib.contextmanager
def wandb_watch(model, opt):
    import wandb

    with tempfile.TemporaryDirectory() as d:
        os.environ["WANDB_SILENT"] = "true"
        run = wandb.init(mode="offline", dir=d, project="gradprobe-bench")
        run.watch(model, log="all", log_freq=1)
        try:
            yield lambda step, loss: run.log({"loss": float(loss.detach())}, step=step)
        finally:
            run.unwatch(model)
            run.finish()


PEERS = {
    "peer: TensorBoard add_histogram(every grad, every step)": ("tensorboard", tensorboard),
    'peer: wandb.watch(log="all", log_freq=1), offline': ("wandb", wandb_watch),
    "peer: torch.autograd.detect_anomaly": (None, detect_anomaly),
    "peer: hooks with .item() per tensor": (None, item_hooks),
}


def configurations(quick_peers: bool) -> dict:
    configs = {
        "plain training": plain,
        "(a) scalar stats, every step": probe_config(first_nonfinite=False),
        "(a') (a) without update ratio": probe_config(first_nonfinite=False, updates=False),
        "(b) scalar stats + first-non-finite, every step": probe_config(),
        "(b') (b) stored in a SQLite file": None,  # filled in main (needs a folder)
        "(b'') (b) with the update ratio on every step (updates=1)": probe_config(updates=1),
        "(c) everything + histograms, every step": probe_config(histograms=True),
        "(c') (c) with the update ratio on every step": probe_config(histograms=True, updates=1),
        "(d) (b) with every=10": probe_config(every=10),
        "(e) first-non-finite only (no step logged)": probe_config(every=10**9),
        "floor: ‖g‖, ‖w‖ per parameter by hand (no hooks)": floor_norms,
    }
    for label, (package, config) in PEERS.items():
        if package is not None:
            try:
                __import__(package)
            except ImportError:
                print(f"skipping {label}: {package} is not installed", file=sys.stderr)
                continue
        configs[label] = config
    return configs


def time_steps(config, model, opt, x, y, steps: int, sync, clock=time.perf_counter) -> float:
    loss_fn = nn.CrossEntropyLoss()
    times = []
    with config(model, opt) as after:
        for i in range(steps + 1):
            sync()
            t0 = clock()
            loss = loss_fn(model(x), y)
            loss.backward()
            after(i, loss)
            opt.step()
            opt.zero_grad()
            sync()
            if i:  # the first step warms up the configuration
                times.append(clock() - t0)
    # the mean, not the median: with every=10 (or the update ratio 10 steps apart) one step in
    # ten costs more, and the amortised cost is the one that matters
    return statistics.fmean(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round (use 10·k)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: time.perf_counter; cpu: this process's CPU time (robust on a busy machine)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = args.device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    model = make_model(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(128, 784, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    configs = configurations(False)
    folder = tempfile.mkdtemp()
    counter = iter(range(10**6))

    @contextlib.contextmanager
    def file_config(model, opt):
        path = os.path.join(folder, f"run{next(counter)}.sqlite")
        with gp.watch(model, path=path) as probe:
            yield lambda step, loss: probe.step()

    configs["(b') (b) stored in a SQLite file"] = file_config
    rng = random.Random(args.seed)
    ratios: dict[str, list[float]] = {k: [] for k in configs}
    base_times = []
    for r in range(args.rounds):
        order = list(configs)
        rng.shuffle(order)
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        t = {k: time_steps(configs[k], model, opt, x, y, args.steps, sync, clock) for k in order}
        base_times.append(t["plain training"])
        for k in configs:
            ratios[k].append(t[k] / t["plain training"])
        print(
            f"round {r + 1}/{args.rounds}: plain {1e3 * t['plain training']:.1f} ms",
            file=sys.stderr,
        )
        for k in configs:
            print(f"    {statistics.median(ratios[k]):7.3f}  {k}", file=sys.stderr, flush=True)
    print(
        f"\nReference workload on {device} ({args.threads} threads, {args.clock} clock), "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end"
    )
    print(f"plain step (median of rounds' means): {1e3 * statistics.median(base_times):.1f} ms\n")
    print("| configuration | median ratio | min–max over rounds |")
    print("|---|---:|---:|")
    for k, rs in ratios.items():
        print(f"| {k} | {statistics.median(rs):.3f}× | {min(rs):.2f}–{max(rs):.2f} |")


if __name__ == "__main__":
    main()
