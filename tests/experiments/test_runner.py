"""The experiment runner: registry, presets, override validation, run folders, resume, CLI."""

import dataclasses
import json

import pytest

import gradprobe as gp
from gradprobe.cli import main
from gradprobe.errors import GradprobeError, InvalidInputError, UnknownNameError
from gradprobe.experiments import EXPERIMENTS
from gradprobe.experiments._config import parse_sets

CLASSICS = [
    "matrix_chain", "init_gradients", "glorot2010", "he2015", "remedies", "rnn_vs_lstm",
    "trainability",
]  # fmt: skip
SMALL = {"depth": 10, "width": 20}  # matrix_chain in milliseconds


def test_every_classic_experiment_is_registered():
    assert set(CLASSICS) <= set(gp.experiments.names())


@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_presets_resolve_and_are_frozen(name):
    exp = EXPERIMENTS.get(name)
    assert exp.summary and "\n" not in exp.summary
    for preset in ("quick", "full"):
        cfg = gp.experiments.config(name, preset)
        assert dataclasses.is_dataclass(cfg)
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.seed = 1
        assert exp.units(cfg), "an experiment has at least one unit"


def test_unknown_setting_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match=r"no setting 'widht'.*Did you mean 'width'"):
        gp.experiments.config("matrix_chain", widht=3)


@pytest.mark.parametrize(
    ("key", "value"),
    [("width", "abc"), ("width", 1.5), ("seeds", True), ("depth", [3]), ("width", -4)],
)
def test_wrong_type_or_value_is_an_error(key, value):
    with pytest.raises(InvalidInputError, match=key):
        gp.experiments.config("matrix_chain", **{key: value})


def test_strings_are_parsed_by_the_field_type():
    cfg = gp.experiments.config("trainability", sigma_w2="0.5, 2", depths="3,4", width="8")
    assert cfg.sigma_w2 == (0.5, 2.0) and cfg.depths == (3, 4) and cfg.width == 8
    assert gp.experiments.config("remedies", variants=["baseline"]).variants == ("baseline",)


def test_unknown_preset_and_experiment():
    with pytest.raises(UnknownNameError, match="Did you mean 'full'"):
        gp.experiments.config("matrix_chain", "fulll")
    with pytest.raises(UnknownNameError, match="unknown experiment 'glorot'"):
        gp.experiments.run("glorot")


def test_malformed_set_pair():
    assert parse_sets(["a=1", " b = x,y "]) == {"a": "1", "b": "x,y"}
    for bad in ("width", "=3", "width="):
        with pytest.raises(InvalidInputError, match="KEY=VALUE"):
            parse_sets([bad])


def test_run_folder_holds_config_versions_timings_and_result(tmp_path):
    r = gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, seeds=2, **SMALL)
    assert r.folder == tmp_path / "matrix_chain"
    info = json.loads((r.folder / "run.json").read_text())
    assert info["status"] == "done" and info["preset"] == "quick" and info["seed"] == 0
    assert info["config"] == {"depth": 10, "width": 20, "seeds": 2, "seed": 0}
    assert {"torch", "python", "gradprobe"} <= set(info["versions"])
    assert set(info["timings"]["units"]) == {"seed=0", "seed=1"}
    result = json.loads((r.folder / "result.json").read_text())
    assert result == {"experiment": "matrix_chain", "preset": "quick", **r.numbers}
    again = gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, seeds=2, **SMALL)
    assert again.folder == tmp_path / "matrix_chain-2"  # never overwrites a run


def test_run_and_load_return_the_same_experiment_run(tmp_path):
    r = gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, seeds=2, **SMALL)
    loaded = gp.experiments.load(r.folder)
    assert type(loaded) is type(r) is gp.experiments.ExperimentRun
    assert loaded == r  # name, preset, folder, config, numbers, units, status
    assert loaded.config == gp.experiments.config("matrix_chain", seeds=2, **SMALL)
    assert dataclasses.is_dataclass(loaded.config) and loaded.status == "done"
    assert [u for u, _ in loaded.units] == [{"seed": 0}, {"seed": 1}]
    assert loaded.info == json.loads((r.folder / "run.json").read_text())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.numbers = {}


def test_load_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(GradprobeError, match="not an experiment run folder"):
        gp.experiments.load(tmp_path)


def test_same_seed_same_numbers(tmp_path):
    kw = {"quiet": True, "width": 16, "hidden": 3, "batch": 32, "inits": ("xavier",)}
    a = gp.experiments.run("init_gradients", out=tmp_path / "a", **kw)
    b = gp.experiments.run("init_gradients", out=tmp_path / "b", **kw)
    c = gp.experiments.run("init_gradients", out=tmp_path / "c", seed=1, **kw)
    assert a.numbers == b.numbers
    assert a.numbers != c.numbers
    assert (a.folder / "units" / "init=xavier,seed=0" / "run.sqlite").is_file()


def _patched(monkeypatch, name, wrap):
    exp = EXPERIMENTS.get(name)
    monkeypatch.setitem(EXPERIMENTS._items, name, dataclasses.replace(exp, run_unit=wrap(exp)))


def test_interrupt_keeps_finished_units_and_resume_runs_only_the_rest(tmp_path, monkeypatch):
    calls = []

    def interrupting(exp):
        def run_unit(cfg, unit, folder):
            calls.append(unit["seed"])
            if len(calls) == 3:
                (folder / "half-written").write_text("x")
                raise KeyboardInterrupt
            return exp.run_unit(cfg, unit, folder)

        return run_unit

    _patched(monkeypatch, "matrix_chain", interrupting)
    with pytest.raises(KeyboardInterrupt):
        gp.experiments.run("matrix_chain", out=tmp_path, seeds=4, **SMALL)
    folder = tmp_path / "matrix_chain"
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert not (folder / "result.json").exists()
    assert len(list(folder.glob("units/*/unit.json"))) == 2
    with pytest.raises(GradprobeError, match=r"no result\.json"):
        gp.experiments.load(folder)

    monkeypatch.undo()
    calls.clear()
    _patched(monkeypatch, "matrix_chain", interrupting)  # counts calls; 3rd call would raise
    with pytest.raises(InvalidInputError, match="config differs in seeds"):
        gp.experiments.run("matrix_chain", out=tmp_path, resume=True, quiet=True, seeds=5, **SMALL)
    resumed = gp.experiments.run(
        "matrix_chain", out=tmp_path, resume=True, quiet=True, seeds=4, **SMALL
    )
    assert calls == [2, 3]  # only the unfinished units ran again
    assert resumed.folder == folder
    assert not (folder / "units" / "seed=2" / "half-written").exists()
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "done" and info["resumed"] == 1
    monkeypatch.undo()
    fresh = gp.experiments.run("matrix_chain", out=tmp_path / "x", quiet=True, seeds=4, **SMALL)
    assert resumed.numbers == fresh.numbers


def test_parallel_workers_give_the_same_numbers(tmp_path):
    kw = {"quiet": True, "seeds": 2, **SMALL}
    one = gp.experiments.run("matrix_chain", out=tmp_path / "one", **kw)
    two = gp.experiments.run("matrix_chain", out=tmp_path / "two", workers=2, **kw)
    assert one.numbers == two.numbers
    info = json.loads((two.folder / "run.json").read_text())
    assert info["workers"] == 2 and info["executor"] == "ProcessPool"
    with pytest.raises(InvalidInputError, match="workers"):
        gp.experiments.run("matrix_chain", out=tmp_path, workers=0)


def test_a_run_leaves_the_callers_random_state_and_threads_alone(tmp_path):
    import random

    import numpy as np
    import torch

    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()
    # init_gradients builds nn.Linear layers, which draw from torch's global generator
    gp.experiments.run("init_gradients", out=tmp_path, quiet=True, width=8, hidden=2, batch=8)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]
    assert torch.get_num_threads() == threads


def test_an_executor_plugs_in_through_submit_completed_close(tmp_path):
    """The seam a Ray executor uses (docs/EXPERIMENTS.md): any object with these three
    methods, built on the public ``compute`` and ``Done``, runs the units."""
    from gradprobe.experiments import Done, compute

    class Deferred:  # as the docs' RayExecutor, with "remote" calls made at collection
        def __init__(self):
            self.jobs, self.closed = {}, []

        def submit(self, job):
            self.jobs[job.key] = job

        def completed(self):
            for key in sorted(self.jobs, reverse=True):  # finishing out of order
                numbers, seconds = compute(self.jobs.pop(key))
                yield Done(key, numbers, seconds)

        def close(self, cancel=False):
            self.closed.append(cancel)

    ex = Deferred()
    r = gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, executor=ex, seeds=2, **SMALL)
    assert ex.closed == [False] and [u for u, _ in r.units] == [{"seed": 0}, {"seed": 1}]
    same = gp.experiments.run("matrix_chain", out=tmp_path / "b", quiet=True, seeds=2, **SMALL)
    assert r.numbers == same.numbers and r.units == same.units
    info = json.loads((r.folder / "run.json").read_text())
    assert info["executor"] == "Deferred" and info["workers"] is None
    with pytest.raises(InvalidInputError, match="not both"):
        gp.experiments.run("matrix_chain", out=tmp_path, executor=ex, workers=2, **SMALL)


def test_an_executors_error_stops_the_run_and_names_the_unit(tmp_path):
    from gradprobe.experiments import Done

    class Failing:
        def __init__(self):
            self.keys, self.closed = [], []

        def submit(self, job):
            self.keys.append(job.key)

        def completed(self):
            yield Done(self.keys[0], None, 0.0, RuntimeError("node lost"))

        def close(self, cancel=False):
            self.closed.append(cancel)

    ex = Failing()
    with pytest.raises(RuntimeError, match="node lost"):
        gp.experiments.run("matrix_chain", out=tmp_path, quiet=True, executor=ex, **SMALL)
    info = json.loads((tmp_path / "matrix_chain" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"] == "seed=0"
    assert "node lost" in info["error"] and ex.closed == [True]


def test_cli_list(capsys):
    main(["run", "--list"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == EXPERIMENTS.names()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "matrix_chain", "--set", "width"],
        ["run", "matrix_chain", "--set", "widht=3"],
        ["run", "matrix_chain", "--set", "width=abc"],
        ["run", "matrix_chain", "--preset", "huge"],
        ["run", "no_such_experiment"],
        ["run"],
    ],
)
def test_cli_bad_usage_exits_2_with_one_line(args, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradprobe: error:") and "\n" not in err


def test_cli_run_and_resume(tmp_path, capsys):
    args = ["run", "matrix_chain", "--set", "depth=10", "--set", "width=20", "--out", str(tmp_path)]
    main(args)
    main([*args, "--resume"])
    assert "result.json" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix_chain"]


def test_cli_result_path_is_printed_on_one_line_however_long(tmp_path, capsys):
    """Regression: rich wrapped a long result path at the console width (a newline inside
    the path a user copies; it failed under pytest-xdist's longer tmp folders)."""
    out = tmp_path / ("a_long_folder_name_" * 6)
    main(["run", "matrix_chain", "--set", "depth=4", "--set", "width=8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert str(out / "matrix_chain" / "result.json") in printed.splitlines()[-1]


def test_units_computed_elsewhere_are_collected_by_resume(tmp_path, monkeypatch):
    """The cluster recipe of docs/EXPERIMENTS.md: plan, run_unit anywhere, resume to collect."""
    p = gp.experiments.plan("matrix_chain", out=tmp_path, seeds=3, **SMALL)
    assert p.todo == p.units and len(p.units) == 3
    for unit in p.todo:  # what each Ray task does
        gp.experiments.run_unit(p, unit)
    assert (
        gp.experiments.plan("matrix_chain", out=tmp_path, resume=True, seeds=3, **SMALL).todo == []
    )

    def never(exp):
        def run_unit(cfg, unit, folder):
            raise AssertionError("a finished unit ran again")

        return run_unit

    _patched(monkeypatch, "matrix_chain", never)
    r = gp.experiments.run("matrix_chain", out=tmp_path, resume=True, quiet=True, seeds=3, **SMALL)
    assert r.folder == p.folder and len(r.units) == 3
    info = json.loads((r.folder / "run.json").read_text())
    assert info["status"] == "done" and len(info["timings"]["units"]) == 3
