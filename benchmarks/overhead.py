"""Overhead of gradprobe's probe and of its peers on two workloads (issues 3 and 16).

Reference workload: MLP 784 -> 5 x 1000 tanh -> 10, cross-entropy, SGD, batch 128, random data,
``torch.set_num_threads(2)``. Transformer workload: a GPT-2-style decoder in plain torch
(``gpt_workload.py``: 4 pre-LN blocks, d 128, 4 heads, causal
``F.scaled_dot_product_attention``, GELU MLP, vocabulary 256), sequence 64, batch 16, AdamW,
next-token cross-entropy on random tokens, ``torch.set_num_threads(1)``. The probe is used as
the DESIGN loop does: ``gp.watch(model, optimizer=opt)`` and ``probe.step(loss=loss)`` after
``opt.step()``, so the loss, the learning rate, the global gradient norm (and, on the
transformer, the attention samples) are recorded. Every configuration runs in this one process
on its own copy of the model (same initial weights, its own optimizer). They take turns: in each
cycle, in a new shuffled order, every configuration trains 10 consecutive steps (``--run``), so
plain training and every configuration see the same machine within seconds of each other (on a
shared machine the speed of plain training alone drifts by ±25% from one second to the next),
and caches are warm as in a real loop. A configuration's ratio for a cycle is its time for its
10 steps over plain training's (summed: with ``every=10`` or the update ratio 10 steps apart one
step in ten costs more); the table shows the median and the quartiles over cycles. Peers that
work in the background (TensorBoard's writer thread, wandb's service process) would slow
whatever runs beside them, so each is measured in its own group with plain training.

    .venv/bin/python benchmarks/overhead.py                       # the tables in BENCHMARKS.md
    .venv/bin/python benchmarks/overhead.py --steps 50 --only "(b),(d)"   # a quick look
    .venv/bin/python benchmarks/overhead.py --workload transformer        # one workload

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
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.probe import EARLY_STEPS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_workload import GPT  # the module beside this script

BASE = "plain training"


def make_model(device: str) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(784, 1000), nn.Tanh()]
    for _ in range(4):
        layers += [nn.Linear(1000, 1000), nn.Tanh()]
    layers.append(nn.Linear(1000, 10))
    return nn.Sequential(*layers).to(device)


class Workload:
    """A model, its data, its loss and optimizer, the threads it runs on."""

    def __init__(self, name: str, device: str, threads: int | None) -> None:
        self.name = name
        if name == "reference":
            self.threads = threads or 2
            self.x = torch.randn(128, 784, device=device)
            self.y = torch.randint(0, 10, (128,), device=device)
            self.make = lambda: make_model(device)
            self.loss_fn = nn.CrossEntropyLoss()
            self.optimizer = lambda ps: torch.optim.SGD(ps, lr=1e-3)
            self.label = "MLP 784 → 5×1000 tanh → 10, SGD, batch 128"
        else:
            self.threads = threads or 1
            self.x = torch.randint(0, 256, (16, 64), device=device)
            self.y = torch.randint(0, 256, (16, 64), device=device)
            self.make = lambda: GPT().to(device)
            self.loss_fn = lambda out, y: F.cross_entropy(
                out.reshape(-1, out.shape[-1]), y.reshape(-1)
            )
            self.optimizer = lambda ps: torch.optim.AdamW(ps, lr=3e-4)
            self.label = "GPT-2-style, 4 layers, d 128, sequence 64, batch 16, AdamW"


@contextlib.contextmanager
def plain(model, opt):
    yield lambda step, loss: None


def probe_config(**kwargs):
    """``watch(model, optimizer=opt, ...)``: the optimizer's step ends the probe's step, and
    ``probe.step(loss=loss)`` after it gives the step its loss (the DESIGN loop)."""

    @contextlib.contextmanager
    def config(model, opt):
        with gp.watch(model, optimizer=opt, **kwargs) as probe:
            yield lambda step, loss: probe.step(loss=loss)

    return config


def early_then(n: int):
    """Every step of the first ``EARLY_STEPS``, then every ``n``-th."""

    def schedule(step: int) -> bool:
        return step < EARLY_STEPS or step % n == 0

    return schedule


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
    """The whole step (forward and backward) under ``torch.autograd.detect_anomaly()``."""

    @contextlib.contextmanager
    def around():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autograd.detect_anomaly():
                yield

    def after(step, loss):
        pass

    after.around = around
    yield after


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


BACKGROUND = [label for label, (package, _) in PEERS.items() if package is not None]


def configurations() -> dict:
    every = {"every": 1, "first_nonfinite": True}  # every step logged, the search every step
    configs = {
        BASE: plain,
        "default watch()": probe_config(),
        "(a) scalar stats, every step": probe_config(every=1, first_nonfinite=False),
        "(a') (a) without update ratio": probe_config(
            every=1, first_nonfinite=False, updates=False
        ),
        "(b) scalar stats + first-non-finite, every step": probe_config(**every),
        "(b') (b) stored in a SQLite file": None,  # filled in main (needs a folder)
        "(b'') (b) with the update ratio on every step (updates=1)": probe_config(
            **every, updates=1
        ),
        "(c) everything + histograms, every step": probe_config(**every, histograms=True),
        "(c') (c) with the update ratio on every step": probe_config(
            **every, histograms=True, updates=1
        ),
        "(d) (b) with every=10": probe_config(every=10, first_nonfinite=True),
        "(f) (b) every step of the first 20, then every 10th": probe_config(
            every=early_then(10), first_nonfinite=True
        ),
        "(e) first-non-finite only (no step logged)": probe_config(
            every=10**9, first_nonfinite=True
        ),
        "(e') the default's free check only (no step logged)": probe_config(every=10**9),
        "(g) loss, lr and gradient norm only (no step logged, no search)": probe_config(
            every=10**9, first_nonfinite=False
        ),
        "(h) (d) without the first-non-finite search": probe_config(
            every=10, first_nonfinite=False
        ),
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


class Lane:
    """One configuration on its own copy of the model (same initial weights) and optimizer."""

    def __init__(self, config, model, opt, stack: contextlib.ExitStack) -> None:
        self.model, self.opt = model, opt
        self.after = stack.enter_context(config(model, opt))
        # a configuration that must wrap the whole step (detect_anomaly) says so
        self.around = getattr(self.after, "around", contextlib.nullcontext)
        self.step = 0

    def run_step(self, x, y, loss_fn, sync, clock) -> float:
        sync()
        t0 = clock()
        with self.around():
            loss = loss_fn(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.after(self.step, loss)  # after the optimizer's step, as in the DESIGN loop
            self.opt.zero_grad()
        sync()
        self.step += 1
        return clock() - t0


def measure(configs: dict, wl: Workload, args, sync, clock, rng) -> dict[str, list[float]]:
    """Cycles in which every configuration, in a new shuffled order, trains ``args.run``
    consecutive steps (warm caches, as in a real loop; the first step of a turn finds the
    previous configuration's data in the cache). Returns, per configuration, its time per turn
    summed over the turn (the sum: with every=10, or the update ratio 10 steps apart, one step
    in ten costs more, and the amortised cost is the one that matters); turn ``i`` of every
    configuration comes from the same cycle, seconds apart, so slow drifts of the machine
    (other jobs, memory bandwidth, clock speed) hit them alike."""
    init = wl.make().state_dict()
    x, y, loss_fn = wl.x, wl.y, wl.loss_fn
    sums: dict[str, list[float]] = {k: [] for k in configs}
    with contextlib.ExitStack() as stack:
        lanes = {}
        for k, config in configs.items():
            model = wl.make()
            model.load_state_dict(init)
            opt = wl.optimizer(model.parameters())
            lanes[k] = Lane(config, model, opt, stack)
            for _ in range(args.warmup):
                lanes[k].run_step(x, y, loss_fn, sync, clock)
        order = list(lanes)
        cycles = args.steps // args.run
        for c in range(cycles):
            rng.shuffle(order)
            for k in order:
                lane = lanes[k]
                sums[k].append(
                    sum(lane.run_step(x, y, loss_fn, sync, clock) for _ in range(args.run))
                )
            print(f"  cycle {c + 1}/{cycles}", file=sys.stderr, flush=True)
    return sums


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="timed steps per configuration")
    ap.add_argument("--run", type=int, default=10, help="steps per turn (a multiple of 10)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (a multiple of 10)")
    ap.add_argument("--workload", choices=["both", "reference", "transformer"], default="both")
    ap.add_argument(
        "--threads", type=int, default=None, help="default: 2 (reference), 1 (transformer)"
    )
    ap.add_argument(
        "--peers", choices=["reference", "all", "none"], default="reference",
        help="which workloads also measure the peers (TensorBoard, wandb, ...)",
    )  # fmt: skip
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: time.perf_counter; cpu: this process's CPU time",
    )
    ap.add_argument(
        "--only", default="", help="comma-separated label prefixes to run, e.g. '(b),(d),floor'"
    )
    args = ap.parse_args(argv)
    names = ["reference", "transformer"] if args.workload == "both" else [args.workload]
    for name in names:
        run_workload(Workload(name, args.device, args.threads), args)


def run_workload(wl: Workload, args) -> None:
    torch.set_num_threads(wl.threads)
    torch.manual_seed(args.seed)
    device = args.device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    configs = configurations()
    if args.peers == "none" or (args.peers == "reference" and wl.name != "reference"):
        configs = {k: v for k, v in configs.items() if not k.startswith("peer")}
    folder = tempfile.mkdtemp()

    @contextlib.contextmanager
    def file_config(model, opt):
        path = os.path.join(folder, f"{wl.name}.sqlite")
        with gp.watch(
            model, optimizer=opt, path=path, overwrite=True, every=1, first_nonfinite=True
        ) as probe:
            yield lambda step, loss: probe.step(loss=loss)

    configs["(b') (b) stored in a SQLite file"] = file_config
    if args.only:
        keep = tuple(p.strip() for p in args.only.split(","))
        configs = {k: v for k, v in configs.items() if k == BASE or k.startswith(keep)}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    rng = random.Random(args.seed)
    # peers with work in the background (TensorBoard's writer thread, wandb's service
    # process) would slow every configuration interleaved with them: each gets its own group
    groups = [{k: v for k, v in configs.items() if k not in BACKGROUND}]
    groups += [{BASE: plain, k: configs[k]} for k in BACKGROUND if k in configs]
    ratios: dict[str, list[float]] = {}
    base_steps = []
    for group in groups:
        sums = measure(group, wl, args, sync, clock, rng)
        base_steps += [t / args.run for t in sums[BASE]]
        for k, ts in sums.items():
            ratios.setdefault(k, [a / b for a, b in zip(ts, sums[BASE], strict=True)])
    print(
        f"\n{wl.name.capitalize()} workload ({wl.label}) on {device} ({wl.threads} threads, "
        f"{args.clock} clock), torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end; {args.steps} steps per "
        f"configuration in turns of {args.run}"
    )
    print(f"plain step: median of turns {1e3 * statistics.median(base_steps):.1f} ms\n")
    print("| configuration | ratio (median of turns) | quartiles |")
    print("|---|---:|---:|")
    for k, rs in ratios.items():
        q1, _, q3 = statistics.quantiles(rs, n=4) if len(rs) > 1 else (rs[0],) * 3
        print(f"| {k} | {statistics.median(rs):.3f}× | {q1:.2f}–{q3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
