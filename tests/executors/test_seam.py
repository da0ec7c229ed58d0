"""The executor seam without Ray running: names and options refused before any folder is
made, Ray never imported by the core, the missing extra, an unreachable address, records
written whole or not at all, local processes equal to this process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import _tasks
import pytest

import gradprobe as gp
from conftest import started
from gradprobe.errors import GradprobeError, InvalidInputError, RunStoreError, UnknownNameError
from gradprobe.executors import Done, InProcess, ProcessPool, Task, make
from gradprobe.experiments import _execute

SMALL = {"depth": 10, "width": 20, "seeds": 2}  # matrix_chain in milliseconds


def test_importing_gradprobe_and_running_a_sweep_import_no_ray(tmp_path):
    code = (
        "import sys, gradprobe as gp, gradprobe.executors\n"
        f"gp.experiments.run('matrix_chain', out={str(tmp_path)!r}, quiet=True, depth=5, width=8)\n"
        "assert 'ray' not in sys.modules, 'the core imported ray'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_task_runs_with_its_shared_object_in_any_executor():
    shared = {"base": 10}
    for ex in (InProcess(), ProcessPool(1)):
        for i in range(3):
            ex.submit(Task(f"t{i}", _tasks.add_shared, (i,), shared))
        ex.submit(Task("threads", _tasks.threads))
        got = {d.key: d.value for d in ex.completed()}
        ex.close()
        assert {k: got[k] for k in ("t0", "t1", "t2")} == {"t0": 10, "t1": 11, "t2": 12}
    assert got["threads"] == 1  # a worker process runs its tasks on one torch thread


def test_completed_sees_tasks_submitted_while_it_is_iterated():
    ex = InProcess()
    ex.submit(Task("a", _tasks.pid, (1,)))
    keys = []
    for done in ex.completed():
        keys.append(done.key)
        if done.key == "a":
            ex.submit(Task("b", _tasks.pid, (2,)))
    assert keys == ["a", "b"]


def test_a_failing_task_is_a_done_with_its_error():
    ex = InProcess()
    ex.submit(Task("bad", int, ("x",)))
    (done,) = ex.completed()
    assert done.key == "bad" and done.value is None and isinstance(done.error, ValueError)
    assert Done("k", {"a": 1}, 0.5).numbers == {"a": 1}  # the experiments' name for value


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"executor": "slurm"}, UnknownNameError, "unknown executor 'slurm'.*local, ray"),
        ({"executor": 3}, InvalidInputError, "executor must be 'local', 'ray' or an object"),
        ({"address": "127.0.0.1:6379"}, InvalidInputError, "address=.* is for executor='ray'"),
        ({"executor": "ray", "workers": 2}, InvalidInputError, "not both"),
    ],
)
def test_a_bad_executor_is_refused_before_any_folder(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, **SMALL, **kwargs)
    assert not any(tmp_path.iterdir())


def test_executor_ray_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(GradprobeError, match=r"needs Ray.*pip install 'gradprobe\[ray\]'"):
        gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, executor="ray", **SMALL)
    with pytest.raises(GradprobeError, match="needs Ray"):
        make("ray")
    from gradprobe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "matrix_chain", "--executor", "ray", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "gradprobe[ray]" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once it is closed


def test_an_address_that_cannot_be_reached_is_a_clear_error_at_once(tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    with pytest.raises(GradprobeError, match=f"cannot reach the Ray cluster at {address}"):
        gp.experiments.run(
            "matrix_chain", out=tmp_path, quiet=True, executor="ray", address=address, **SMALL
        )
    assert time.perf_counter() - start < 10  # Ray itself retries for minutes
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("address", ["nohost", "127.0.0.1:", "127.0.0.1:99999", ":6379"])
def test_an_address_that_is_not_host_port_says_what_to_pass(address):
    pytest.importorskip("ray")
    with pytest.raises(InvalidInputError, match="is not HOST:PORT"):
        make("ray", address=address)


def test_a_failed_unit_leaves_no_unit_folder_and_resume_computes_only_it(tmp_path, sweep):
    log = tmp_path / "log"
    kw = {"out": tmp_path / "runs", "quiet": True, "log": str(log)}
    with pytest.raises(ValueError, match="unit 1 failed on purpose"):
        gp.experiments.run(sweep, fail=1, **kw)
    folder = tmp_path / "runs" / sweep
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"] == "seed=1"
    assert sorted(p.name for p in (folder / "units").iterdir()) == ["seed=0"]  # no half unit
    assert started(log) == [0, 1]
    with pytest.raises(InvalidInputError, match="config differs in fail"):
        gp.experiments.run(sweep, resume=True, **kw)  # the config is the run's identity
    del kw["quiet"]
    todo = gp.experiments.plan(sweep, resume=True, fail=1, **kw).todo
    assert [u["seed"] for u in todo] == [1, 2, 3]


def test_a_unit_is_whole_or_absent_when_writing_it_fails(tmp_path, monkeypatch, sweep):
    run = gp.experiments.run(sweep, out=tmp_path, quiet=True, seeds=1)
    unit = run.folder / "units" / "seed=0"
    assert sorted(p.name for p in unit.iterdir()) == ["run.sqlite", "unit.json"]
    job = _execute.Job(sweep, run.config, {"seed": 0}, "seed=0", str(unit), 1, None)
    record = _execute.Record({"loss": 1.0}, 0.1, {"run.sqlite": b"x", "sub/a.bin": b"y"})

    def full_disk(path, data):
        raise RunStoreError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(_execute, "write_json", full_disk)
    with pytest.raises(RunStoreError, match="No space left"):
        _execute.store(job, record)
    assert not unit.exists()  # the old unit is gone, the new one never appeared
    monkeypatch.undo()
    _execute.store(job, record)  # the next attempt clears the leftover hidden folder
    assert sorted(p.name for p in (run.folder / "units").iterdir()) == ["seed=0"]
    assert (unit / "sub" / "a.bin").read_bytes() == b"y"
    assert json.loads((unit / "unit.json").read_text())["numbers"] == {"loss": 1.0}


def test_gp_fix_refuses_a_bad_executor_before_anything_trains(monkeypatch, capsys):
    import _fixcase

    from gradprobe.cli import main
    from gradprobe.fix import search

    def no_trial(*args, **kwargs):
        raise AssertionError("a trial ran although the executor was refused")

    monkeypatch.setattr(search, "run_trial", no_trial)
    data = _fixcase.circle_data(64)
    with pytest.raises(UnknownNameError, match="unknown executor 'slurm'"):
        gp.fix(_fixcase.broken(), data, executor="slurm", progress=False)
    with pytest.raises(InvalidInputError, match=r"address=.* is for executor='ray'"):
        gp.fix(_fixcase.broken(), data, address="127.0.0.1:6379", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["fix", "_fixcase:broken", "--input-shape", "64,2", "--executor", "ray"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and "gradprobe[ray]" in capsys.readouterr().err
