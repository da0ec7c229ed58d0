"""Training runs written by hand, number by number, for the training-time rules: the loss,
learning rate and global gradient norm on every step (layer "(model)", as the probe stores
them), per-layer rows on the logged steps."""

from __future__ import annotations

import math

import numpy as np

from gradprobe.run import Event, RunWriter

MODULES = [("0", "Linear", None), ("1", "ReLU", "relu"), ("2", "Linear", None)]
WEIGHTS = ["0.weight", "2.weight"]


def training_run(
    loss=None,
    lr=None,
    grad_norm=None,
    logged=None,
    modules=MODULES,
    params=WEIGHTS,
    events=(),
    series=None,
    meta=None,
    shapes=None,
):
    """``loss``/``lr``/``grad_norm``: one value per step (arrays, from step 0); ``logged``:
    {step: [(layer, quantity, stat, value), ...]} (the logged steps); ``series``: {step:
    [(layer, quantity, values)]}; ``meta``: the run's meta (e.g. ``{"optimizer": ...}``);
    ``shapes``: {param: shape}."""
    run = RunWriter.create(None, meta=meta)
    run.add_layer("(input)", "input")
    run.add_layer("(model)", "module")
    for name, module_type, activation in modules:
        run.add_layer(name, "module", module_type, activation)
    for name in params:
        run.add_layer(name, "param", "Parameter", None, (shapes or {}).get(name))
    positions = {name: i + 1 for i, (name, *_) in enumerate(modules)}
    logged = dict(logged or {})
    n = max(len(x) for x in (loss, lr, grad_norm, [None]) if x is not None)
    n = max(n, max(logged, default=-1) + 1)
    for step in range(n):
        rows = []
        for q, s, values in (("loss", "value", loss), ("lr", "value", lr)):
            if values is not None and step < len(values):
                rows.append(("(model)", q, s, float(values[step])))
        if grad_norm is not None and step < len(grad_norm):
            rows.append(("(model)", "grad_norm", "global", float(grad_norm[step])))
        mine = [e for e in events if e.step == step]
        if step in logged:
            run.write_step(
                step,
                rows + list(logged[step]),
                positions=positions,
                series=(series or {}).get(step, ()),
                events=mine,
            )
        else:
            run.write_step(step, rows, events=mine, mark_step=False)
    return run


def noisy(values, scale=0.02, seed=0):
    """``values`` × (1 + scale·N(0, 1)): minibatch noise."""
    g = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    return values * (1 + scale * g.standard_normal(values.size))


def decaying(n=200, start=2.3, end=0.1, rate=0.03):
    return end + (start - end) * np.exp(-rate * np.arange(n))


def updates(ratio, weights=WEIGHTS):
    return [(w, "update", "ratio", ratio) for w in weights] + [
        (w, "param_grad", "rms", 1.0) for w in weights
    ]


__all__ = ["Event", "decaying", "noisy", "training_run", "updates"]


# -- a broken and a healthy run for each training-time rule (test_known_cases.BROKEN) -----------


def _attention(peak):
    modules = [("attn", "MultiheadAttention", None), ("head", "Linear", None)]
    logged = {s: [("attn", "attention", "max_logit", peak * (s + 1) / 30)] for s in range(30)}
    return training_run(loss=decaying(30), modules=modules, params=["head.weight"], logged=logged)


def _overflow(used):
    logged = {
        0: [("2", "activation", "range_used", used), ("2", "activation", "max_abs", used * 65504)]
    }
    return training_run(loss=[1.0], logged=logged)


def _stream(growth):
    modules = [
        ("h.0", "Block", None),
        ("h.0.attn", "CausalSelfAttention", None),
        ("h.0.mlp", "Linear", None),
        ("head", "Linear", None),
    ]
    logged = {s: [("h.0", "activation", "rms", 0.03 * growth ** (s / 29))] for s in range(30)}
    return training_run(loss=decaying(30), modules=modules, params=["head.weight"], logged=logged)


def _probabilities(end):
    """A classifier ending in a Softmax over 10 classes (every output's mean 1/10), its loss
    falling from log 10 to ``end``: cross-entropy on probabilities stops at 1.46."""
    modules = [*MODULES, ("3", "Softmax", None)]
    rows = [("3", "activation", "mean", 0.1), ("3", "activation", "max_abs", 0.9)]
    logged = {s: rows for s in range(0, 100, 10)}
    loss = noisy(decaying(100, start=2.3, end=end, rate=0.05), 0.01)
    return training_run(loss=loss, modules=modules, logged=logged)


def _logits(rms, end=3.0):
    """A 10-class head ("2", 10 x 64, ‖W‖_F = 64: gain 20) whose logits have ``rms`` at step
    0 (max 3 rms); the loss starts at the cross-entropy such logits give (rms · √(2 ln 10))
    and falls to ``end``."""
    rows = [("2", "activation", "rms", rms), ("2", "activation", "max_abs", 3 * rms),
            ("2.weight", "weight", "norm", 64.0)]  # fmt: skip
    logged = {s: rows for s in range(0, 100, 10)}
    start = max(rms * math.sqrt(2 * math.log(10)), math.log(10))
    loss = noisy(decaying(100, start=start, end=end, rate=0.05), 0.01)
    return training_run(loss=loss, logged=logged, shapes={"2.weight": (10, 64)})


KNOWN = {
    # rule: (a run where it must fire, one where it must not, the kind, its severities)
    "logit_scale": (
        lambda: _logits(10.0),
        lambda: _logits(1.0),
        "saturated",
        {"warning"},
    ),
    "probabilities": (
        lambda: _probabilities(1.5),
        lambda: _probabilities(0.3),
        "saturated",
        {"warning"},
    ),
    "loss": (
        lambda: training_run(loss=noisy(np.full(100, 2.3), 0.02)),
        lambda: training_run(loss=noisy(decaying(100), 0.02)),
        "not_learning",
        {"warning"},
    ),
    "attention": (
        lambda: _attention(500.0),
        lambda: _attention(20.0),
        "attention_logits",
        {"warning"},
    ),
    "overflow": (lambda: _overflow(0.5), lambda: _overflow(1e-3), "overflow", {"warning"}),
    "stream": (lambda: _stream(5e3), lambda: _stream(20.0), "exploding", {"warning"}),
    "grad_norm": (
        lambda: training_run(grad_norm=np.concatenate([np.ones(10), np.geomspace(1, 1e4, 10)])),
        lambda: training_run(grad_norm=np.linspace(1, 5, 20)),
        "exploding",
        {"warning"},
    ),
}
