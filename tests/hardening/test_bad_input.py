"""Bad input gets one clear GradprobeError saying what was wrong and what to do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeError, InvalidInputError, RunStoreError


@pytest.fixture
def model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


X = torch.randn(5, 4)

CASES = {
    "not a module": (lambda m: gp.check(m(X), X), r"nn\.Module"),
    "no parameters": (lambda m: gp.check(nn.Sequential(nn.ReLU()), X), "no parameters"),
    "wrong shape": (lambda m: gp.check(m, torch.randn(5, 7)), "shaped as the model expects"),
    "wrong dtype": (lambda m: gp.check(m, X.double()), "dtype"),
    "another device": (lambda m: gp.check(m, X.to("meta")), "meta.*no values"),
    "loss not scalar": (lambda m: gp.check(m, X, loss_fn=lambda y: y.sum(0)), "scalar"),
    "class target of wrong shape": (
        lambda m: gp.check(m, X, torch.randint(0, 3, (4,))),
        "target that matches",
    ),
    "value target of wrong shape": (lambda m: gp.check(m, X, torch.randn(5, 2)), "output's shape"),
    "broadcastable value target": (lambda m: gp.check(m, X, torch.randn(5, 1)), "output's shape"),
    "inputs None": (lambda m: gp.check(m, None), "a tensor, a non-empty tuple"),
    "every=0": (lambda m: gp.watch(m, every=0), "positive integer"),
    "updates=0": (lambda m: gp.watch(m, updates=0), "updates=1 for every logged step"),
    "updates='all'": (lambda m: gp.watch(m, updates="all"), "number of steps >= 1"),
    "unknown scheme": (lambda m: gp.init.apply(m, "he_normal"), "Known init schemes"),
    "unknown activation": (lambda m: gp.init.gain("swishh"), "Did you mean 'swish'"),
    "diagnose a dict": (lambda m: gp.diagnose({}), "Run"),
    "missing run file": (lambda m: gp.diagnose("/nonexistent/run.sqlite"), "no run file"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_error(name, model):
    call, message = CASES[name]
    with pytest.raises(GradprobeError, match=message):
        call(model)


def test_nan_in_the_inputs_is_reported_not_raised(model):
    x = X.clone()
    x[0, 0] = float("nan")
    findings = gp.check(model, x).findings
    assert findings[0].kind == "non_finite" and findings[0].layer == "(input)"


def test_a_run_file_from_a_newer_gradprobe_says_upgrade(tmp_path):
    import sqlite3

    from gradprobe.run import Run

    path = tmp_path / "new.sqlite"
    Run.create(path).close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(RunStoreError, match="upgrade gradprobe"):
        Run.load(path)


def test_a_truncated_run_file_is_refused(tmp_path):
    from gradprobe.run import Run

    path = tmp_path / "cut.sqlite"
    run = Run.create(path)
    run.add_layer("a", "module")
    for step in range(50):
        run.write_step(step, [("a", "activation", "std", 1.0)])
    run.close()
    data = path.read_bytes()
    cut = tmp_path / "half.sqlite"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(RunStoreError):
        Run.load(cut).steps  # noqa: B018


def test_untrusted_files_load_with_weights_only(tmp_path):
    import pickle

    from gradprobe.app._factory import load_tensor_file

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(InvalidInputError, match="weights_only"):
        load_tensor_file(tmp_path / "evil.pt")
