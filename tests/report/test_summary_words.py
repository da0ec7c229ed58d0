"""The terminal summary and the HTML say every kind of finding in plain words, with when it
was first seen and, for a symptom in the loss, the causes it was linked to (issue 16).

Regression: report/summary.py had no words for the training-time kinds (attention_logits,
overflow, not_learning, stalled, diverging, loss_spike, oscillating): the verdict read
"attention logits", "loss spike", with no onset and no cause."""

from __future__ import annotations

import io
import typing
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.console import Console

from diagnose._runs import decaying, noisy, training_run  # tests/diagnose (read only)
from diagnose._training import BROKEN, train
from gradprobe.diagnose import diagnose
from gradprobe.diagnose.finding import Kind
from gradprobe.report.html import render_html
from gradprobe.report.summary import WORDS, verdict, when, words
from gradprobe.report.terminal import findings_table

#: the corpus cases whose findings hold the kinds read here (tests/diagnose asserts them)
CASES = ("fp16_overflow", "sgd_oscillating", "no_qk_norm_high_lr")


@pytest.mark.parametrize("kind", typing.get_args(Kind))
def test_every_kind_of_finding_has_plain_words(kind):
    assert kind in WORDS and "_" not in words(kind)


def _written_by_hand():
    """Loss curves whose symptom does not hang on a trajectory (which of spike, oscillation
    or stall a chaotic run shows differs between CPUs' floating-point kernels)."""
    spike = noisy(decaying(), 0.03)
    spike[150] *= 3
    g = np.random.default_rng(0)
    jumps = np.concatenate([decaying(100, 2.3, 1.5), 1.5 + g.uniform(-1.2, 1.2, 100)])
    flat = noisy(np.full(200, 2.3), 0.02)
    return {"spike": spike, "oscillating": jumps, "flat": flat}


@pytest.fixture(scope="module")
def trained():
    out = {}
    for name in CASES:
        run, _ = train(BROKEN[name])
        out[name] = (run, list(diagnose(run)))
    for name, loss in _written_by_hand().items():  # no layers: the loss rules judge them
        run = training_run(loss=loss, logged={s: [] for s in range(0, len(loss), 10)})
        out[name] = (run, list(diagnose(run, rules="loss")))
    return out


def _findings(trained):
    return [f for run, fs in trained.values() for f in fs]


class _Findings(HTMLParser):
    """The text of each ``<div class="finding">`` of the page."""

    def __init__(self):
        super().__init__()
        self.blocks: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "div" and "finding" in (dict(attrs).get("class") or "").split():
            self.blocks.append("")
            self._depth = 1
        elif tag == "div" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.blocks[-1] += data


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_the_training_kinds_are_said_in_words_with_onset_and_causes(trained):
    kinds = {f.kind for f in _findings(trained)}
    needed = {"attention_logits", "overflow", "large_updates", "loss_spike", "oscillating"}
    assert needed | {"not_learning"} <= kinds, kinds  # what the cases produce
    for name, (run, findings) in trained.items():
        sentence = verdict(findings, run).sentence
        for f in findings:
            if f.severity == "info" or f.kind == "non_finite":
                continue
            assert words(f.kind) in sentence, (name, f.kind, sentence)
        for f in findings:
            if f.severity != "info" and f.causes:  # a symptom: its first causes, by name
                assert f"{words(f.kind)} ({when(f)}), after {f.causes[0].summary}" in sentence
        # the terminal's findings: when, and every cause
        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None).print(
            findings_table(findings, training=True)
        )
        terminal = _norm(buf.getvalue())
        # the HTML: one block per finding, in the same order, each with words and when
        page = _Findings()
        page.feed(render_html(run, findings, figures=[]))
        assert len(page.blocks) == len(findings)
        for f, block in zip(findings, page.blocks, strict=True):
            block = _norm(block)
            assert words(f.kind) in block and f.kind in block
            assert f"{f.kind} at" in terminal
            if f.onset:
                assert when(f) in block and when(f) in terminal, (f.kind, block)
            if f.causes:
                assert f"after: {_norm('; '.join(c.summary for c in f.causes))}" in block
                assert all(_norm(c.summary) in terminal for c in f.causes)
    # during training: a cause that appeared after the first step says so
    late = [f for f in _findings(trained) if f.kind in ("overflow", "attention_logits")]
    assert late and all(when(f) == f"from step {f.onset}" for f in late if f.onset)
