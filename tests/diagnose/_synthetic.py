"""Runs written by hand: a rule's input chosen number by number, no model in between."""

from __future__ import annotations

from gradprobe.run import Event, RunWriter


def synthetic_run(modules, steps, params=(), meta=None, events=(), shapes=None):
    """An in-memory run. ``modules``: (name, module_type, activation) in execution order;
    ``steps``: {step: [(layer, quantity, stat, value), ...]}; ``params``: parameter names;
    ``events``: :class:`Event` s (stored with their step); ``shapes``: {param: shape}."""
    run = RunWriter.create(None, meta=meta)
    run.add_layer("(input)", "input")
    for name, module_type, activation in modules:
        run.add_layer(name, "module", module_type, activation)
    for name in params:
        run.add_layer(name, "param", "Parameter", None, (shapes or {}).get(name))
    positions = {name: i for i, (name, *_) in enumerate(modules)}
    for step, rows in sorted(steps.items()):
        mine = [e for e in events if e.step == step]
        run.write_step(step, rows, positions=positions, events=mine)
    return run


def linear_stack(depth: int, act: tuple[str, str | None] = ("Tanh", "saturating:-1,1")):
    """(Linear, activation) × depth: module rows for :func:`synthetic_run`, and the names of
    the Linear layers (the depth axis)."""
    modules, linears = [], []
    for i in range(depth):
        modules += [(str(2 * i), "Linear", None), (str(2 * i + 1), *act)]
        linears.append(str(2 * i))
    return modules, linears


__all__ = ["Event", "linear_stack", "synthetic_run"]
