"""``first_nonfinite="auto"``: the free check of unlogged steps, and the step it logs next.

On a logged step the probe's statistics name the first module that produced NaN/Inf (the
exact search, ``_step.FirstNonFinite``). On an unlogged step that search would read every
activation and gradient once more (+~10 % of a step: docs/BENCHMARKS.md), so instead the
numbers recorded on every step anyway say whether anything went non-finite: the loss, each
parameter gradient's ``‖g‖²`` (the global gradient norm's terms), on the CPU in one process
the model's output (one sum: a NaN/Inf made in the forward is told from one the loss made)
and, on an accelerator, the weights' finiteness after the optimizer's step. When one fires
at step ``t``:

- on the CPU in one process, a NaN/Inf in the model's output is traced at once to the first
  module output of that forward holding one (``_trail``): the forward event of step ``t``;
- otherwise the next step is logged, and the exact search with it (at most ``ARMED_MAX`` such steps
  in a run, so a loss that stays NaN with nothing to locate does not log every step);
- ``run.meta["nonfinite_seen"]`` lists each such episode (the first few, in order):
  ``{"step": t, "seen_in": [...], "params": [...], "located_step": s, "finite_at": f}``:
  what was non-finite at ``t`` (``"output"``: the model's, ``"loss"``, ``"gradient"``,
  ``"weights"``: after that step's optimizer step); the parameters whose gradient was (on
  the CPU, where each ``‖g‖²`` is on the host already; else ``[]``); ``s``, the logged
  step whose exact search named the module (its event's detail says "first seen at step t"
  too), or ``f``, the logged step after ``t`` that was finite again (the NaN/Inf was
  transient: it has no module); None
  while neither is known (e.g. at the end of the run); and ``"weights_finite"``: whether
  the weights step ``s`` used were finite — when not (the optimizer step of ``t`` applied a
  NaN gradient), the module named at ``s`` is the first one using them, not the origin;
  on the CPU in one process, when a parameter gradient was the first non-finite,
  ``"backward": {"at": m, "after": a}``: the module of that parameter, and the module whose
  parameter gradient this backward produced last, finite, before it (None: none) — the
  NaN/Inf was made in the backward between ``a`` and ``m`` (read from the ‖g‖² kept in
  the order the backward made them: free).

On the CPU in one process the values are on the host at once, so step ``t + 1`` is the one
logged. Elsewhere they stay on the device (no host sync) until the next logged step ``L``
reads them; its own exact search may already name the module, else ``L + 1`` is logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

ARMED_MAX = 3  # extra logged steps at most, to locate a NaN/Inf the search has not found
EPISODES = 8  # episodes kept in run.meta["nonfinite_seen"]
SEEN = "nonfinite_seen"  # the run.meta key


class Sentinel:
    """The non-finite steps seen between logged steps, and the arming of the next step."""

    def __init__(self, run, on: bool) -> None:
        self.run = run
        self.on = on  # first_nonfinite="auto"
        self.episodes: list[dict] = []
        self.open: dict | None = None  # the episode not located (nor seen finite again) yet
        self.located = False  # a forward or backward event was found (by the exact search)
        self.armed = False  # log the next step
        self._arms_left = ARMED_MAX
        self.weights_finite: bool | None = None  # the weights the logged step now ending used

    @property
    def active(self) -> bool:
        return self.on and not self.located

    def fire(
        self, step: int, what: str, params: tuple[str, ...] = (), arm: bool = True,
        backward: Callable[[], dict] | None = None,
    ) -> None:  # fmt: skip
        """``what`` (loss / gradient / weights) was non-finite at unlogged step ``step``;
        ``backward``: where in that step's backward the first NaN/Inf parameter gradient
        appeared (called once, at the first such call of the episode)."""
        if not self.active:
            return
        ep = self.open
        if ep is None and len(self.episodes) < EPISODES:
            ep = {"step": step, "seen_in": [], "params": [], "located_step": None}
            ep["finite_at"] = None
            self.episodes.append(ep)
            self.open = ep
        if ep is not None and ep["step"] == step:
            new = [p for p in params if p not in ep["params"]]
            if what not in ep["seen_in"] or new:
                if what not in ep["seen_in"]:
                    ep["seen_in"].append(what)
                ep["params"] += new
                if backward is not None and "backward" not in ep:
                    ep["backward"] = backward()
                self._store()
        if arm and ep is not None and not self.armed and self._arms_left > 0:
            self.armed = True
            self._arms_left -= 1

    def take_arm(self) -> bool:
        """At a step's start: is it to be logged to locate a NaN/Inf seen before?"""
        armed, self.armed = self.armed and self.active, False
        return armed

    def note_event(self, step: int, detail: str) -> str:
        """An event of the exact search (forward or backward) at ``step``; returns its detail,
        with the step the check saw it first when that was earlier."""
        self.located = True
        ep, self.open = self.open, None
        if ep is None or step < ep["step"]:
            return detail
        ep["located_step"] = step
        ep["weights_finite"] = self.weights_finite
        self._store()
        if step == ep["step"]:
            return detail
        what = " and ".join(ep["seen_in"])
        first = ep["step"]
        return f"{detail}; first seen at step {first} (a non-finite {what}), located at step {step}"

    def finite(self, step: int) -> None:
        """Logged step ``step`` found no NaN/Inf: the open episode was transient."""
        ep = self.open
        if ep is not None and step > ep["step"]:
            ep["finite_at"] = step
            self.open, self.armed = None, False
            self._store()

    def scan(self, rows: dict[int, list[tuple]], bad_steps: list[int], before: int, arm: bool):
        """The per-step rows read at a logged step (or at close) on the device path: the
        loss and the gradient norm of each earlier step; ``bad_steps``: steps after whose
        optimizer step the weights held NaN/Inf."""
        if not self.active:
            return
        for step in sorted(set(rows) | set(bad_steps)):
            if step >= before:
                continue
            for r in rows.get(step, ()):
                if r[1] in ("loss", "grad_norm") and not math.isfinite(r[3]):
                    self.fire(step, "loss" if r[1] == "loss" else "gradient", arm=arm)
            if step in bad_steps:
                self.fire(step, "weights", arm=arm)

    def _store(self) -> None:
        self.run.set_meta(SEEN, [{**e, "seen_in": list(e["seen_in"])} for e in self.episodes])
