"""Run (read-only) beside RunWriter (owned by the probe): closing leaves one complete file,
no lock; every write happens while the writer is open, and is refused clearly after."""

import shutil
import sqlite3

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import InvalidInputError, RunStoreError
from gradprobe.run import SCHEMA, TABLES, Run, RunWriter


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _train(probe, model, steps=3):
    for _ in range(steps):
        model(torch.randn(6, 4)).pow(2).sum().backward()
        model.zero_grad()
        probe.step()


def _watched(path, steps=3, **kwargs):
    model = _model()
    with gp.watch(model, path=path, **kwargs) as probe:
        _train(probe, model, steps)
    return probe


def test_a_run_file_copied_right_after_the_with_block_loads(tmp_path):
    probe = _watched(tmp_path / "a.sqlite", steps=5)
    copy = tmp_path / "elsewhere" / "copy.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(tmp_path / "a.sqlite", copy)  # the .sqlite alone, no -wal beside it
    run = Run.load(copy)
    assert run.steps == [0, 1, 2, 3, 4]
    assert run.to_pandas().equals(probe.run.to_pandas())
    assert run.meta["closed_at_step"] == 5


def test_no_lock_wal_or_shm_file_remains_after_the_with_block(tmp_path):
    _watched(tmp_path / "a.sqlite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite"]
    folder = tmp_path / "unit"
    folder.mkdir()
    _watched(folder)  # a folder: run.sqlite inside
    assert sorted(p.name for p in folder.iterdir()) == ["run.sqlite"]


def test_no_lock_file_remains_when_the_training_loop_raises(tmp_path):
    model = _model()
    with pytest.raises(ZeroDivisionError), gp.watch(model, path=tmp_path / "a.sqlite") as probe:
        _train(probe, model, 2)
        _ = 1 / 0
    assert not (tmp_path / "a.sqlite.lock").exists()
    assert Run.load(tmp_path / "a.sqlite").steps == [0, 1]


def test_no_lock_file_remains_in_experiment_unit_folders(tmp_path):
    kw = {"quiet": True, "width": 16, "hidden": 3, "batch": 32, "inits": ("xavier",)}
    r = gp.experiments.run("init_gradients", out=tmp_path, **kw)
    assert (r.folder / "units" / "init=xavier,seed=0" / "run.sqlite").is_file()
    left = [p.name for p in tmp_path.rglob("*") if p.name.endswith((".lock", "-wal", "-shm"))]
    assert not left


def test_probe_run_reads_during_and_after_the_block_file_and_memory(tmp_path):
    for path in (tmp_path / "a.sqlite", None):
        model = _model()
        with gp.watch(model, path=path) as probe:
            _train(probe, model, 2)
            during = probe.run.to_pandas()
            assert isinstance(probe.run, Run) and isinstance(probe.run, RunWriter)
            assert probe.run.writable
        after = probe.run.to_pandas()
        assert len(during) and during.equals(after[after.step < 2])
        assert not probe.run.writable and probe.run.steps == [0, 1]


def test_meta_is_written_inside_the_block_and_refused_after(tmp_path):
    model = _model()
    with gp.watch(model, path=tmp_path / "a.sqlite") as probe:
        _train(probe, model, 1)
        probe.run.set_meta("label", "baseline")  # what check/attach do before close
        probe.run.update_meta({"loss": 0.5, "theory": [{"name": "0", "q": 1.0}]})
    meta = Run.load(tmp_path / "a.sqlite").meta
    assert meta["label"] == "baseline" and meta["theory"][0]["q"] == 1.0
    with pytest.raises(RunStoreError, match=r"closed for writing.*inside the `with"):
        probe.run.set_meta("late", 1)
    with pytest.raises(RunStoreError, match="closed for writing"):
        probe.run.close(meta={"late": 1})
    assert "late" not in Run.load(tmp_path / "a.sqlite").meta


def test_the_store_lets_go_of_the_path_at_close(tmp_path):
    path = tmp_path / "a.sqlite"
    _watched(path)
    again = _watched(path, overwrite=True)  # the lock is gone: the same path is free
    assert again.run.steps == [0, 1, 2]


def test_run_writer_api_without_a_probe(tmp_path):
    w = RunWriter.create(tmp_path / "w.sqlite", meta={"model": "M"})
    assert w.add_layer("a", "module") == w.add_layer("a", "module")  # idempotent
    w.write_step(0, [("a", "activation", "std", 1.5)])
    assert w.steps == [0] and w.rows() == [(0, "a", "activation", "std", 1.5)]
    w.close(meta={"closed_at_step": 1})
    w.close()  # closing again closes the file like Run.close
    with pytest.raises(RunStoreError, match="closed"):
        w.steps  # noqa: B018
    loaded = Run.load(tmp_path / "w.sqlite")
    assert loaded.meta["model"] == "M" and loaded.meta["closed_at_step"] == 1
    assert Run.create is not None and isinstance(Run.create(None), RunWriter)  # older name


def test_schema_creates_exactly_the_tables_the_reader_checks():
    con = sqlite3.connect(":memory:")
    con.executescript(SCHEMA)
    made = {
        t: tuple(r[1] for r in con.execute(f"PRAGMA table_info({t})"))
        for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert made == TABLES


def test_meta_takes_numpy_and_torch_scalars_and_refuses_objects(tmp_path):
    import numpy as np

    w = RunWriter.create(None)
    w.update_meta({"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": tmp_path})
    assert w.meta["a"] == 0.5 and w.meta["b"] == [1, 2] and w.meta["c"] == str(tmp_path)
    with pytest.raises(InvalidInputError, match="JSON"):
        w.set_meta("d", object())
    with pytest.raises(InvalidInputError, match="JSON"):  # refused before anything closes
        w.close(meta={"d": object()})
    assert w.writable


def test_a_closed_probe_run_whose_file_was_deleted_says_gone_and_makes_no_new_file(tmp_path):
    model = _model()
    path = tmp_path / "a.sqlite"
    with gp.watch(model, path=path) as probe:
        _train(probe, model, 1)
    path.unlink()
    with pytest.raises(RunStoreError, match="gone"):
        probe.run.steps  # noqa: B018
    assert not path.exists()
