"""Sweeps and gp.fix on a local Ray instance (started once for this module, 2 CPUs, no dashboard, on
127.0.0.1 only): the same numbers and run files as in this process and in local processes,
a killed worker leaves no half-written unit and resume computes only what is missing, a
unit's own error comes back as itself, the progress bar is fed as Ray's tasks finish."""

from __future__ import annotations

import json
import os
import time

import pytest

import gradprobe as gp
from conftest import started
from gradprobe.errors import GradprobeError, InvalidInputError
from gradprobe.executors import RayExecutor, Task
from gradprobe.experiments import _runner
from gradprobe.run import Run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    import _fixcase
    import _sweep
    import _tasks

    modules = (_fixcase, _sweep, _tasks)
    for module in modules:  # test modules: the workers get them with each task
        ray.cloudpickle.register_pickle_by_value(module)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 2**20,
        log_to_driver=False,
    )
    yield
    ray.shutdown()
    for module in modules:
        ray.cloudpickle.unregister_pickle_by_value(module)


def _rows(folder):
    """Every recorded number of every run file of a run folder, by unit."""
    out = {}
    for path in sorted(folder.glob("units/*/*.sqlite")):
        run = Run.load(path)
        out[f"{path.parent.name}/{path.name}"] = run.rows()
        run.close()
    return out


def test_a_quick_sweep_gives_the_same_numbers_and_runs_here_in_processes_and_on_ray(tmp_path):
    kw = {"preset": "quick", "quiet": True, "width": 8, "hidden": 2, "batch": 16}
    kw["inits"] = ("xavier", "kaiming")
    here = gp.experiments.run("init_gradients", out=tmp_path / "here", **kw)
    procs = gp.experiments.run("init_gradients", out=tmp_path / "procs", workers=2, **kw)
    on_ray = gp.experiments.run("init_gradients", out=tmp_path / "ray", executor="ray", **kw)
    assert on_ray.numbers == here.numbers == procs.numbers  # bit for bit, not approximately
    assert on_ray.units == here.units == procs.units
    rows = _rows(here.folder)
    assert rows and _rows(on_ray.folder) == rows == _rows(procs.folder)
    info = json.loads((on_ray.folder / "run.json").read_text())
    assert info["executor"] == "RayExecutor" and info["status"] == "done"
    assert gp.experiments.load(on_ray.folder) == on_ray


def test_a_killed_worker_leaves_no_half_written_unit_and_resume_computes_only_the_rest(
    tmp_path, sweep
):
    log = tmp_path / "log"
    kw = {"out": tmp_path / "runs", "log": str(log), "kill": 2, "driver": os.getpid()}
    with pytest.raises(GradprobeError, match=r"Ray task of seed=2 was lost.*worker process"):
        gp.experiments.run(sweep, executor="ray", quiet=True, **kw)
    assert (tmp_path / "log.killed").exists(), "the unit killed its worker"
    folder = tmp_path / "runs" / sweep
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"] == "seed=2"
    kept = sorted(p.name for p in (folder / "units").iterdir())
    assert "seed=2" not in kept and not [k for k in kept if k.startswith(".")]
    for name in kept:  # every unit folder there is whole
        assert sorted(p.name for p in (folder / "units" / name).iterdir()) == [
            "run.sqlite", "unit.json"]  # fmt: skip
    missing = [u["seed"] for u in gp.experiments.plan(sweep, resume=True, **kw).todo]
    assert 2 in missing and len(missing) == 4 - len(kept)
    before = len(started(log))
    resumed = gp.experiments.run(sweep, executor="ray", resume=True, quiet=True, **kw)
    assert sorted(started(log)[before:]) == missing  # only what was missing ran again
    fresh = gp.experiments.run(sweep, out=tmp_path / "local", quiet=True)
    assert resumed.numbers == fresh.numbers and resumed.units == fresh.units


def test_a_units_own_error_comes_back_as_itself(tmp_path, sweep):
    with pytest.raises(ValueError, match="unit 0 failed on purpose"):
        gp.experiments.run(sweep, out=tmp_path, executor="ray", quiet=True, seeds=2, fail=0)
    info = json.loads((tmp_path / sweep / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"] == "seed=0"
    assert not (tmp_path / sweep / "units" / "seed=0").exists()


def test_the_progress_bar_is_fed_as_rays_tasks_finish(tmp_path, monkeypatch):
    seen = []

    class Recorder(_runner.Progress):
        def update(self, running=None, failed=0):
            super().update(running, failed)
            seen.append((self.done, self.running, self.failed))

    monkeypatch.setattr(_runner, "Progress", Recorder)
    gp.experiments.run("matrix_chain", out=tmp_path, executor="ray", quiet=True, seeds=3,
                       depth=5, width=8)  # fmt: skip
    assert seen[0] == (0, 2, 0)  # 3 units on 2 CPUs: 2 running
    assert seen[-1] == (3, 0, 0) and [d for d, _, _ in seen] == [0, 1, 2, 3]


def test_gradprobe_run_executor_ray_from_the_command_line(tmp_path):
    from gradprobe.cli import main

    main(["run", "matrix_chain", "--executor", "ray", "--out", str(tmp_path), "--set",
          "depth=5", "--set", "width=8"])  # fmt: skip
    info = json.loads((tmp_path / "matrix_chain" / "run.json").read_text())
    assert info["executor"] == "RayExecutor" and info["status"] == "done"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cpus": 3}, r"cpus=3, but the largest node of the Ray cluster has 2"),
        ({"gpus": 1}, r"gpus=1, but the largest node of the Ray cluster has 0"),
        ({"cpus": 0}, "cpus must be a number > 0"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"address": "127.0.0.1:6379"}, "Ray is already running in this process"),
    ],
)
def test_what_ray_would_wait_for_forever_is_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        RayExecutor(**kwargs)


def test_a_shared_object_is_put_once_and_tasks_run_on_one_torch_thread():
    import _tasks

    ex = RayExecutor()
    shared = {"base": 5}
    for i in range(3):
        ex.submit(Task(f"t{i}", _tasks.add_shared, (i,), shared))
    ex.submit(Task("threads", _tasks.threads))
    assert len(ex._shared) == 1
    got = {d.key: d.value for d in ex.completed()}
    ex.close()
    assert got == {"t0": 5, "t1": 6, "t2": 7, "threads": 1}


def test_gp_fix_with_three_candidates_gives_the_same_trials_here_and_on_ray(tmp_path):
    import _fixcase

    kw = {"steps": 30, "candidates": ["activation", "lr", "normalise"], "confirm": 0}
    kw.update(progress=False, optimizer=_fixcase.SGD(0.1))
    data = _fixcase.circle_data()
    here = gp.fix(_fixcase.broken(), data, path=tmp_path / "here", **kw)
    on_ray = gp.fix(_fixcase.broken(), data, path=tmp_path / "ray", executor="ray", **kw)
    assert len(here.trials) >= 4 and [t.name for t in on_ray.trials] == [
        t.name for t in here.trials]  # fmt: skip
    for a, b in zip(here.trials, on_ray.trials, strict=True):
        assert a.losses == b.losses and a.final_loss == b.final_loss, a.name  # bit for bit
        assert [f.kind for f in a.findings] == [f.kind for f in b.findings], a.name
        assert b.run_path.startswith(str(tmp_path / "ray"))  # written by this process
        assert Run.load(b.run_path).rows() == Run.load(a.run_path).rows(), a.name
    assert on_ray.best.name == here.best.name
    with pytest.raises(InvalidInputError, match="not both"):
        gp.fix(_fixcase.broken(), data, executor="ray", workers=2, **kw)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_cancelling_a_running_task_ends_its_worker_and_leaves_no_half_imported_modules(
    tmp_path,
):
    """Before: close(cancel=True) interrupted running tasks (KeyboardInterrupt); one caught
    inside its worker's first `import torch` left torch half-imported there, and the next
    run's units on that worker failed (partially initialized module 'torch._dynamo')."""
    import _tasks

    ex, report = RayExecutor(), tmp_path / "pid"
    ex.submit(Task("sleeper", _tasks.sleep_reporting, (str(report), 60)))
    deadline = time.monotonic() + 60
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(report.read_text())
    ex.close(cancel=True)
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker of a cancelled task lives on with what it was doing"
