"""The run store: schema round trip, read while written, SIGKILL safety, bad input."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeError, InvalidInputError, RunStoreError
from gradprobe.run import Run


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def _train(probe, model, steps=4):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        model(torch.randn(6, 4)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        probe.step()


def test_file_run_round_trips_and_matches_the_in_memory_run(tmp_path):
    model = _model()
    with gp.watch(model, path=tmp_path / "a.sqlite", histograms=True) as probe:
        _train(probe, model)
    mem_model = _model()
    torch.manual_seed(5)
    with gp.watch(mem_model, histograms=True) as mem:
        _train(mem, mem_model)
    loaded = Run.load(tmp_path / "a.sqlite")
    df, live = loaded.to_pandas(), probe.run.to_pandas()
    assert list(df.columns) == ["step", "layer", "quantity", "stat", "value"]
    assert df.equals(live)
    assert mem.run.path is None and len(mem.run.to_pandas()) == len(df)
    assert loaded.steps == [0, 1, 2, 3]
    assert loaded.meta["format"] == "gradprobe-run" and loaded.meta["histograms"] is True
    assert loaded.meta["closed_at_step"] == 4
    layers = loaded.layers()
    assert [la.name for la in layers] == ["0", "1", "2", "3", "4"]
    assert [la.module_type for la in layers] == ["Linear", "Tanh", "Linear", "ReLU", "Linear"]
    assert [la.activation for la in layers] == [None, "saturating:-1,1", None, "relu", None]
    assert [la.name for la in loaded.layers("param")][:2] == ["0.weight", "0.bias"]
    assert loaded.layers("param")[0].shape == (8, 4)
    h = loaded.histogram("1", "activation", 3)
    assert h.counts.sum() + h.zero == 48 and len(h.edges) == 65
    assert loaded.histogram("1", "activation", 99) is None
    with pytest.raises(sqlite3.Error):  # opened read-only
        loaded._con.execute("DELETE FROM scalars")
    loaded.close()
    with pytest.raises(RunStoreError, match="closed"):
        loaded.steps  # noqa: B018


def test_matrix_is_layer_by_step_in_execution_order():
    model = _model()
    with gp.watch(model, every=2) as probe:
        _train(probe, model, steps=5)
    names, steps, m = probe.run.matrix("grad_output", "norm")
    assert names == ["0", "1", "2", "3", "4"] and steps == [0, 2, 4]
    df = probe.run.to_pandas()
    want = df[(df.quantity == "grad_output") & (df.stat == "norm")]
    for (layer, step), value in want.set_index(["layer", "step"]).value.items():
        assert m[names.index(layer), steps.index(step)] == value
    names, _, m = probe.run.matrix("update", "ratio")
    assert names[0] == "0.weight" and np.isfinite(m).all()


def test_folder_path_holds_run_sqlite(tmp_path):
    model = _model()
    with gp.watch(model, path=tmp_path) as probe:
        _train(probe, model, steps=1)
    assert (tmp_path / "run.sqlite").is_file()
    assert Run.load(tmp_path).steps == [0]


def test_read_while_writing_in_the_same_process(tmp_path):
    model = _model()
    path = tmp_path / "live.sqlite"
    with gp.watch(model, path=path) as probe:
        _train(probe, model, steps=2)
        reader = Run.load(path)
        assert reader.steps == [0, 1]
        _train(probe, model, steps=1)
        assert reader.steps == [0, 1, 2]  # new commits are visible to an open reader


CHILD = """
import sys
import torch
from torch import nn
import gradprobe as gp

torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
with gp.watch(model, path=sys.argv[1], histograms=True, updates=1, every=1) as probe:
    for i in range(10**9):
        model(torch.randn(8, 4)).pow(2).sum().backward()
        model.zero_grad()
        probe.step()
        if i == 10:
            print("ready", flush=True)
"""


def test_sigkill_mid_training_leaves_every_committed_step_readable(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    path = tmp_path / "killed.sqlite"
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        seen = []
        for _ in range(3):  # another process reads while the child writes
            seen.append(len(Run.load(path).steps))
            time.sleep(0.2)
        assert seen[-1] > seen[0] >= 11
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    run = Run.load(path)
    steps = run.steps
    assert steps == list(range(len(steps))) and len(steps) >= seen[-1]
    df = run.to_pandas()
    rows_per_step = df.groupby("step").size()
    assert (rows_per_step == rows_per_step.iloc[0]).all()  # no half-written step
    assert run.histogram("1", "activation", steps[-1]) is not None


def test_bad_paths_get_advice(tmp_path):
    model = _model()
    with pytest.raises(RunStoreError, match="does not exist"):
        gp.watch(model, path=tmp_path / "nope" / "run.sqlite")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(RunStoreError, match="not a gradprobe run"):
        gp.watch(model, path=other, overwrite=True)
    with pytest.raises(RunStoreError, match="not a gradprobe run"):
        Run.load(other)
    db = tmp_path / "other.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(RunStoreError, match="not a gradprobe run"):
        Run.load(db)
    with pytest.raises(RunStoreError, match="no run file"):
        Run.load(tmp_path / "missing.sqlite")
    with pytest.raises(InvalidInputError):
        Run.load(42)
    existing = tmp_path / "run1.sqlite"
    with gp.watch(model, path=existing) as probe:
        _train(probe, model, steps=1)
    with pytest.raises(RunStoreError, match="overwrite=True"):
        gp.watch(model, path=existing)
    with gp.watch(model, path=existing, overwrite=True) as probe:
        _train(probe, model, steps=1)
    assert Run.load(existing).steps == [0]


def test_unwritable_folder():
    with pytest.raises(RunStoreError, match="writable"):  # /proc refuses even root
        gp.watch(_model(), path="/proc/gradprobe-test.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RunStoreError, match="writable"):
            gp.watch(_model(), path=ro / "run.sqlite")
    finally:
        ro.chmod(0o700)


class NoParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(x)


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        ("not a model", {}, "nn.Module"),
        (NoParams(), {}, "no parameters"),
        (nn.Linear(3, 3), {}, "no submodules"),
        (None, {"every": 0}, "positive integer"),
        (None, {"every": -3}, "positive integer"),
        (None, {"every": 1.5}, "positive integer"),
        (None, {"bins": 7}, "even integer"),
        (None, {"histograms": "yes"}, "True or False"),
        (None, {"optimizer": "sgd"}, "torch.optim.Optimizer"),
        (None, {"path": 3}, "file path"),
    ],
)
def test_bad_input_is_a_gradprobe_error_with_advice(model, kwargs, match):
    model = _model() if model is None else model
    with pytest.raises(GradprobeError, match=match):
        gp.watch(model, **kwargs)


def test_rows_without_pandas_match_to_pandas():
    model = _model()
    with gp.watch(model, every=2) as probe:
        _train(probe, model, steps=3)
    rows = probe.run.rows()
    df = probe.run.to_pandas()
    assert len(rows) == len(df) and rows[0] == tuple(df.iloc[0])
    assert {r[0] for r in probe.run.rows(step=2)} == {2}


def test_run_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "v.sqlite"
    model = _model()
    with gp.watch(model, path=path) as probe:
        _train(probe, model, steps=1)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    con.commit()
    con.close()
    with pytest.raises(RunStoreError, match="version 99"):
        Run.load(path)
