"""How the training-time cases are judged (tests/diagnose/test_training_heldout*.py): the
serious findings, the first of some kinds, no re-initialising remedy for a problem of
training, the learning rate a remedy writes, the verdict two runs of a pair must share, and
a per-module cache of trained runs."""

from __future__ import annotations

import re

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.finding import SYMPTOMS

#: what a re-initialising remedy's code says, in any spelling (gradprobe's schemes, a Hugging
#: Face model's own ``_init_weights``, torch's ``reset_parameters``)
REINIT = ("gp.init.", "_init_weights", "reset_parameters")


def serious(findings):
    return [f for f in findings if f.severity in ("warning", "error")]


def first(findings, kinds):
    found = [f for f in serious(findings) if f.kind in kinds]
    assert found, [str(f) for f in findings]
    return found[0]


def no_reinit(findings):
    """No problem that began during training is told to re-initialise (in any spelling);
    a loss symptom takes the remedy of its cause, which may be the init."""
    for f in serious(findings):
        if (f.onset or 0) > 0 and f.kind not in ("not_learning", "stalled"):
            assert not any(r in (f.remedy.code or "") for r in REINIT), str(f)


def lr_in(code):
    """The learning rate a remedy's code sets (``group['lr'] = x``), or None."""
    m = re.search(r"group\['lr'\] = ([0-9.e-]+)", code or "")
    return float(m.group(1)) if m else None


def verdict(findings, families, symptom_kind: bool = True):
    """(the first symptom's kind — or just "symptom" —, its first cause, the first of
    ``families`` its remedy's code contains; () without a symptom): the part of a diagnosis
    that must not depend on what the two runs of a pair vary (size, width, loss scale)."""
    symptoms = [f for f in serious(findings) if f.kind in SYMPTOMS]
    if not symptoms:
        return ()
    s = symptoms[0]
    cause = s.causes[0].kind if s.causes else None
    family = next((k for k in families if k in (s.remedy.code or "")), None)
    return (s.kind if symptom_kind else "symptom", cause, family)


def cached_runs(broken, healthy, train):
    """``get(name, seed)`` → (run, losses, findings), each case trained once per module."""
    cache: dict = {}

    def get(name, seed):
        if (name, seed) not in cache:
            case = broken.get(name) or healthy[name]
            run, losses = train(case, seed)
            cache[name, seed] = (run, losses, diagnose(run))
        return cache[name, seed]

    return get
