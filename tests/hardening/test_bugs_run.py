"""Regression tests of the run store (issue 14): a full disk, damaged, truncated and older
files, writes on read-only or closed runs. Each test is named after what was wrong."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeWarning, InvalidInputError, RunStoreError
from gradprobe.run import Run, RunWriter, recover


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _train(probe, model, steps):
    for _ in range(steps):
        model(torch.randn(6, 4)).pow(2).sum().backward()
        model.zero_grad()
        probe.step()


def _stored(path, steps=200):
    """A closed run file of ``steps`` steps, 3 layers x 10 stats (no torch needed)."""
    w = RunWriter.create(path, meta={"model": "M"})
    for layer in "abc":
        w.add_layer(layer, "module")
    for step in range(steps):
        w.write_step(
            step, [(la, "activation", f"s{i}", float(step)) for la in "abc" for i in range(10)]
        )
    w.close(meta={"closed_at_step": steps})
    return path


def _fill_up(run):
    """Let the run's file grow no more (SQLite's max_page_count: writes fail SQLITE_FULL)."""
    (pages,) = run._con.execute("PRAGMA page_count").fetchone()
    run._con.execute(f"PRAGMA max_page_count = {pages}")


# -- a full disk ---------------------------------------------------------------------------
FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, warnings
    import torch
    from torch import nn
    import gradprobe as gp
    torch.set_num_threads(1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with EFBIG
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))
    warnings.simplefilter("always")
    with gp.watch(model, path=sys.argv[1], optimizer=opt, every=1) as probe:
        for step in range(150):
            model(torch.randn(8, 4)).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        print("LOOP DONE", flush=True)
    print("BLOCK LEFT", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_disk_full_during_training_leaving_the_with_block_raised_a_raw_sqlite_error(tmp_path):
    path = tmp_path / "full.sqlite"
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOOP DONE" in out.stdout and "BLOCK LEFT" in out.stdout
    assert "OperationalError" not in out.stderr and "Traceback" not in out.stderr
    warned = [line for line in out.stderr.splitlines() if "GradprobeWarning" in line]
    assert len(warned) == 1, out.stderr[-3000:]
    assert "could not be stored" in warned[0] and "is kept" in warned[0]
    run = Run.load(path)
    steps = run.steps
    assert steps and steps == list(range(len(steps)))  # every step up to N, no hole
    assert f"0-{steps[-1]}" in warned[0]  # the warning says up to which step
    assert not (tmp_path / "full.sqlite.lock").exists()


def test_steps_that_could_not_be_stored_went_unreported_at_close(tmp_path):
    model = _model()
    path = tmp_path / "a.sqlite"
    kept = r"could not be stored.*kept \(3 logged steps, 0-2\)"
    with pytest.warns(GradprobeWarning, match=kept), gp.watch(model, path=path) as probe:
        _train(probe, model, 3)
        _fill_up(probe.run)
        _train(probe, model, 4)  # the loop goes on
    assert any("RunStoreError" in w and "disk is full" in w for w in probe.warnings)
    assert Run.load(path).steps == [0, 1, 2]


def test_a_rolled_back_step_left_a_stale_quantity_id_and_later_rows_were_dropped(tmp_path):
    w = RunWriter.create(tmp_path / "a.sqlite")
    w.add_layer("a", "module")
    w.write_step(0, [("a", "activation", "std", 1.0)])
    _fill_up(w)
    rows = [("a", f"new{i}", "std", float(i)) for i in range(2000)]  # new quantities
    with pytest.raises(RunStoreError, match="steps before it are kept"):
        w.write_step(1, rows)
    w._con.execute("PRAGMA max_page_count = 1073741823")  # room again
    w.write_step(2, rows)
    assert len(w.rows(step=2)) == 2000  # the JOIN on quantities finds every row
    with pytest.warns(GradprobeWarning, match="step 1"):
        w.close()


def test_a_write_refused_for_want_of_room_was_not_retried_after_emptying_the_wal(tmp_path):
    path = tmp_path / "a.sqlite"
    w = RunWriter.create(path)
    w.add_layer("a", "module")
    for step in range(30):
        w.write_step(step, [("a", "activation", f"s{i}", 1.0) for i in range(50)])
    calls = []
    checkpoint = w._checkpoint

    def counted():
        calls.append(1)
        return checkpoint()

    w._checkpoint = counted
    _fill_up(w)  # the WAL holds the steps, the file has their pages: a retry cannot help
    with pytest.raises(RunStoreError):
        w.write_step(30, [("a", "activation", f"t{i}", 1.0) for i in range(500)])
    assert calls == [1]  # tried once more, after a checkpoint
    with pytest.warns(GradprobeWarning, match="kept"):
        w.close()


# -- writes on read-only or closed runs -------------------------------------------------------
def test_set_meta_on_a_loaded_run_raised_sqlite3_operational_error(tmp_path):
    run = Run.load(_stored(tmp_path / "a.sqlite", steps=2))
    for write in (
        lambda: run.set_meta("label", "x"),
        lambda: run.update_meta({"label": "x"}),
        lambda: run.add_layer("z", "module"),
    ):
        with pytest.raises(RunStoreError, match=r"read-only.*Run.load"):
            write()
    run.close()
    with pytest.raises(RunStoreError, match="read-only"):  # was AttributeError after close()
        run.set_meta("label", "x")


def test_write_step_on_a_read_only_run_advised_freeing_disk_space(tmp_path):
    run = Run.load(_stored(tmp_path / "a.sqlite", steps=2))
    with pytest.raises(RunStoreError) as err:
        run.write_step(5, [("a", "activation", "std", 1.0)])
    assert "read-only" in str(err.value) and "disk" not in str(err.value)


def test_set_meta_after_the_with_block_wrote_without_the_lock(tmp_path):
    model = _model()
    with gp.watch(model, path=tmp_path / "a.sqlite") as probe:
        _train(probe, model, 1)
    assert not (tmp_path / "a.sqlite.lock").exists()
    with pytest.raises(RunStoreError, match="closed for writing"):
        probe.run.set_meta("theory", [])
    with pytest.raises(RunStoreError, match="closed for writing"):
        probe.run.write_step(9, [])


def test_write_step_naming_an_unregistered_layer_raised_key_error():
    w = RunWriter.create(None)
    with pytest.raises(InvalidInputError, match=r"'nope'.*add_layer"):
        w.write_step(0, [("nope", "activation", "std", 1.0)])
    assert w.steps == []  # rolled back whole


def test_numpy_meta_raised_type_error_and_objects_a_json_error():
    w = RunWriter.create(None, meta={"lr": np.float64(0.1)})
    w.set_meta("shape", np.array([2, 3]))
    assert w.meta["lr"] == 0.1 and w.meta["shape"] == [2, 3]
    with pytest.raises(InvalidInputError, match="JSON data"):
        w.set_meta("model", nn.Linear(2, 2))


# -- lock files -------------------------------------------------------------------------------
def test_a_lock_file_was_left_when_create_refused_an_existing_file(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=1)
    with pytest.raises(RunStoreError, match="already exists"):
        gp.watch(_model(), path=path)
    (tmp_path / "notes.sqlite").write_text("mine")
    with pytest.raises(RunStoreError, match="not a gradprobe run"):
        gp.watch(_model(), path=tmp_path / "notes.sqlite", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite", "notes.sqlite"]


def test_a_lock_file_was_left_when_the_probe_failed_to_start(tmp_path, monkeypatch):
    watch_module = sys.modules["gradprobe.probe.watch"]  # (gp.probe.watch is the function)

    def boom(*args, **kwargs):
        raise RuntimeError("hooks could not be installed")

    monkeypatch.setattr(watch_module, "Probe", boom)
    with pytest.raises(RuntimeError):
        gp.watch(_model(), path=tmp_path / "a.sqlite")
    assert not (tmp_path / "a.sqlite.lock").exists()
    gp.run.RunWriter.create(tmp_path / "a.sqlite", overwrite=True).close()  # the path is free


def test_a_writer_dropped_without_close_left_its_lock_file(tmp_path):
    import gc

    w = RunWriter.create(tmp_path / "a.sqlite")
    del w
    gc.collect()
    assert not (tmp_path / "a.sqlite.lock").exists()


def test_a_second_writer_in_the_same_process_was_told_another_process_writes(tmp_path):
    w = RunWriter.create(tmp_path / "a.sqlite")
    with pytest.raises(RunStoreError, match=r"\(this one: close the other probe"):
        RunWriter.create(tmp_path / "a.sqlite", overwrite=True)
    w.close()


# -- damaged, truncated, older files ----------------------------------------------------------
def test_corrupted_pages_raised_a_raw_sqlite_error_from_the_reader(tmp_path):
    path = _stored(tmp_path / "a.sqlite")
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[20 * page : 21 * page] = b"\xff" * page  # one page of the scalars
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(bytes(data))
    run = Run.load(bad)
    assert run.steps == list(range(200))  # the intact tables still read
    with pytest.raises(RunStoreError) as err:
        run.to_pandas()
    text = str(err.value)
    assert "is damaged" in text and "unreadable: scalars" in text and "steps (200: 0-199)" in text
    assert "gradprobe.run.recover(" in text
    fixed = recover(bad, tmp_path / "fixed.sqlite")
    report = fixed.meta["recovery"]["scalars"]
    assert report["damaged_stretches_skipped"] == 1
    assert 5000 < report["copied"] < 6000 == len(Run.load(path).rows())
    assert fixed.steps == list(range(200)) and fixed.meta["model"] == "M"


def test_a_truncated_run_file_was_called_not_a_gradprobe_run(tmp_path):
    path = _stored(tmp_path / "a.sqlite")
    data = path.read_bytes()
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(RunStoreError) as err:
        Run.load(cut)
    text = str(err.value)
    assert "is truncated" in text and "not a gradprobe run" not in text
    assert "readable: meta" in text and "recover(" in text
    fixed = recover(cut, tmp_path / "fixed.sqlite")
    assert fixed.steps == list(range(200))
    assert 0 < len(fixed.rows()) < 6000
    tiny = tmp_path / "tiny.sqlite"
    tiny.write_bytes(data[:50])
    with pytest.raises(RunStoreError, match="truncated: only 50 bytes"):
        Run.load(tiny)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(RunStoreError, match="is empty"):
        Run.load(empty)


def test_an_older_layout_without_a_table_raised_a_raw_sqlite_error(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=3)
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE events")
    run = Run.load(path)
    assert run.steps == [0, 1, 2] and len(run.rows()) == 90  # the rest reads
    with pytest.raises(RunStoreError, match=r"no table 'events'.*readable: meta"):
        run.events()
    with pytest.raises(RunStoreError, match="no table 'events'"):
        gp.diagnose(run)


def test_a_missing_column_raised_a_raw_sqlite_error(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=3)
    with sqlite3.connect(path) as con:
        con.execute("ALTER TABLE layers DROP COLUMN shape")
    run = Run.load(path)
    with pytest.raises(RunStoreError, match="table 'layers' lacks column 'shape'"):
        run.layers()
    assert run.steps == [0, 1, 2]
    fixed = recover(path, tmp_path / "fixed.sqlite")
    assert [la.name for la in fixed.layers()] == ["a", "b", "c"] and len(fixed.rows()) == 90


def test_a_run_without_its_meta_table_raised_a_raw_sqlite_error(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=3)
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE meta")
    with pytest.raises(RunStoreError, match="not a complete gradprobe run: no table 'meta'"):
        Run.load(path)


def test_a_damaged_meta_value_raised_json_decode_error(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=1)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = '{oops' WHERE key = 'model'")
    with pytest.raises(RunStoreError, match="meta 'model' holds no JSON"):
        Run.load(path).meta  # noqa: B018


def test_a_copy_taken_while_the_run_was_written_was_not_a_gradprobe_run(tmp_path):
    model = _model()
    copy = tmp_path / "copy.sqlite"
    with gp.watch(model, path=tmp_path / "live.sqlite") as probe:
        _train(probe, model, 2)
        shutil.copyfile(tmp_path / "live.sqlite", copy)  # without the -wal
    assert Run.load(copy).meta["format"] == "gradprobe-run"  # a run, though maybe no step yet


def test_a_copy_without_its_wal_file_was_called_not_a_gradprobe_run(tmp_path):
    # what an older gradprobe left while writing: every page, the header's too, in the WAL
    live = tmp_path / "live.sqlite"
    con = sqlite3.connect(live, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("PRAGMA application_id = 1735422562")
    con.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    shutil.copyfile(live, tmp_path / "copy.sqlite")
    con.close()
    with pytest.raises(RunStoreError, match=r"without its copy.sqlite-wal file"):
        Run.load(tmp_path / "copy.sqlite")


def test_repr_of_a_damaged_run_raised(tmp_path):
    path = _stored(tmp_path / "a.sqlite", steps=3)
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE layers")
    assert "unreadable" in repr(Run.load(path))
