"""Regression tests for the experiments runner's bugs (issue 14), one per bug, named after it.

Each bad input must be one GradprobeError that says what was wrong and what to do, raised
before any unit runs (no run folder left behind), or, for what only a unit can find (out
of memory), one GradprobeError that names the unit.
"""

import json
import random

import numpy as np
import pytest
import torch

import gradprobe as gp
from gradprobe.errors import GradprobeError, InvalidInputError, RunStoreError, UnknownNameError
from gradprobe.experiments import _execute as gp_execute
from gradprobe.experiments import _runner as gp_runner
from gradprobe.experiments._config import parse_sets
from gradprobe.experiments._runner import run_from_cli

SMALL = ["depth=10", "width=20"]  # matrix_chain in milliseconds


def cli(tmp_path, name, *sets, workers=1, threads=1, resume=False):
    return run_from_cli(name, "quick", list(sets), tmp_path, resume, workers, threads)


def _no_unit(job):
    raise AssertionError(f"unit {job.key} ran although the run should have been refused")


def refused(tmp_path, name, *sets, error=InvalidInputError, match=None, **kw):
    """The run is refused with ``error`` before any unit runs or anything is written under
    ``tmp_path``. A unit that starts fails at once: a regression of these checks would
    otherwise hang on 10⁵ threads or fill the memory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gp_execute, "compute", _no_unit)
        mp.setattr(gp_runner, "compute", _no_unit)
        with pytest.raises(error, match=match):
            cli(tmp_path, name, *sets, **kw)
    assert not any(tmp_path.iterdir()), "a refused run left a folder behind"


def test_empty_list_override_runs_no_units_and_says_done(tmp_path):
    # before: he2015 with inits=() planned 0 units, wrote result.json and said "done"
    refused(tmp_path, "he2015", "inits=,", match="inits is an empty list")
    with pytest.raises(InvalidInputError, match="empty list"):
        gp.experiments.config("he2015", inits=())


def test_empty_list_override_from_the_command_line_exits_2(tmp_path, capsys):
    from gradprobe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "he2015", "--set", "inits=,", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "empty list" in capsys.readouterr().err


def test_empty_item_in_a_list_is_silently_dropped(tmp_path):
    # before: lrs=0.01,,0.1 ran lrs (0.01, 0.1); a missing value is more likely a typo
    refused(tmp_path, "glorot2010", "lrs=0.01,,0.1", match="empty item")


def test_batch_larger_than_the_training_split_is_accepted_and_recorded(tmp_path):
    # before: batch=100000 was recorded in run.json while every step used all 1437 examples
    refused(tmp_path, "he2015", "batch=100000", match=r"more than the 1437 .*batch=1437")
    refused(tmp_path, "init_gradients", "batch=1438", match="1437")
    refused(tmp_path, "trainability", "dataset=synthetic", "batch=2001", match="2000")
    assert gp.experiments.config("he2015", batch=1437).batch == 1437  # the maximum itself is fine


@pytest.mark.parametrize(
    ("name", "sets", "match"),
    [
        ("he2015", ["lr=nan"], "lr must be a finite number"),
        ("he2015", ["lr=inf"], "finite"),
        ("he2015", ["lr=1e400"], "finite"),  # parses to inf
        ("trainability", ["sigma_w2=0.5,nan"], "finite"),
        ("remedies", ["fixed_error=nan"], "finite"),
        ("he2015", ["start_loss=-inf"], "finite"),
    ],
)
def test_nan_or_inf_settings_are_accepted(tmp_path, name, sets, match):
    # before: NaN passed `v <= 0` checks (every comparison with NaN is False) and trained
    refused(tmp_path, name, *sets, match=match)


@pytest.mark.parametrize(
    ("name", "sets", "match"),
    [
        ("he2015", ["seed=-1"], "seed must be >= 0"),  # before: failed inside the first unit
        ("matrix_chain", ["seed=-3"], "seed must be >= 0"),
        ("he2015", ["momentum=-0.5"], "momentum must be >= 0"),  # before: torch's ValueError
        ("trainability", ["sigma_b2=-0.05"], "sigma_b2 must be >= 0"),  # before: math domain
        ("he2015", ["lr=0"], "lr must be > 0"),
        ("he2015", ["steps=-5"], "steps must be >= 0"),
        ("he2015", ["width=0"], "width must be >= 1"),
        ("he2015", ["depths=10,-3"], "depths must be >= 1"),
        ("matrix_chain", ["seeds=0"], "seeds must be >= 1"),
        ("init_gradients", ["hidden=-1"], "hidden must be >= 1"),
    ],
)
def test_negative_or_zero_settings_fail_late_or_with_a_raw_error(tmp_path, name, sets, match):
    refused(tmp_path, name, *sets, match=match)


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["width=100000000000000"], "width must be >= 1 and <= 2147483647"),  # C-int overflow
        (["seeds=1000000000"], "seeds must be >= 1 and <= 10000"),  # 10⁹ unit dicts in memory
        (["seed=99999999999999999999"], r"seed must be .*<= 4611686018427387904"),
    ],
)
def test_huge_settings_overflow_or_exhaust_memory_before_a_clear_error(tmp_path, sets, match):
    refused(tmp_path, "matrix_chain", *sets, match=match)
    key, value = sets[0].split("=")
    with pytest.raises(InvalidInputError, match=match):  # from Python too; builds no unit
        gp.experiments.config("matrix_chain", **{key: int(value)})


def test_a_unit_out_of_memory_is_a_raw_allocator_error(tmp_path):
    # within every range, yet 10⁷ × 10⁷ float32 (400 TB) cannot be allocated: the unit's
    # RuntimeError from the allocator becomes an InvalidInputError that names the unit
    with pytest.raises(InvalidInputError, match=r"unit seed=0 of matrix_chain ran out of memory"):
        cli(tmp_path, "matrix_chain", "width=10000000", "depth=2", "seeds=1")
    info = json.loads((tmp_path / "matrix_chain" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"] == "seed=0"


@pytest.mark.parametrize(
    ("name", "sets"),
    [("he2015", ["inits=he,he"]), ("trainability", ["sigma_w2=1.5,1.5"])],
)
def test_duplicate_grid_values_give_a_vague_duplicate_units_error(tmp_path, name, sets):
    # before: "experiment 'he2015' produced duplicate units; check its grid"
    refused(tmp_path, name, *sets, match="more than once")


def test_set_given_twice_silently_keeps_the_last():
    with pytest.raises(InvalidInputError, match="given twice"):
        parse_sets(["seeds=3", "seeds=4"])


@pytest.mark.parametrize(
    ("name", "sets", "match"),
    [
        ("he2015", ["dataset=mnist"], "Did you mean 'mnist1d'"),
        ("trainability", ["dataset=digitz"], "Did you mean 'digits'"),
        ("init_gradients", ["activation=relu6"], "unknown activation 'relu6'"),
        ("glorot2010", ["datasets=digits,shapeset2"], "unknown datasets 'shapeset2'"),
    ],
)
def test_unknown_dataset_or_activation_fails_only_inside_a_unit(tmp_path, name, sets, match):
    # before: accepted, run folder made, then the first unit raised (in a worker, if any)
    refused(tmp_path, name, *sets, error=UnknownNameError, match=match)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"workers": 0}, "workers must be a positive integer"),
        ({"threads": -1}, "threads must be a positive integer"),
        ({"threads": 100_000}, "threads=100000 is more than"),  # before: torch hung
        ({"workers": 100_000}, "workers=100000 is more than"),
    ],
)
def test_threads_or_workers_beyond_the_cores_hang_the_machine(tmp_path, kw, match):
    refused(tmp_path, "matrix_chain", *SMALL, match=match, **kw)


def test_workers_recorded_are_the_processes_used(tmp_path):
    # before: workers=2 for a one-unit run recorded 2 while the unit ran in-process
    r = cli(tmp_path, "matrix_chain", *SMALL, "seeds=1", workers=2)
    assert json.loads((r.folder / "run.json").read_text())["workers"] == 1


def test_out_that_is_a_file_raises_file_exists_error(tmp_path):
    out = tmp_path / "runs"
    out.write_text("not a folder")
    with pytest.raises(RunStoreError, match="a file of that name is in the way"):
        run_from_cli("matrix_chain", "quick", SMALL, out, False, 1, 1)
    with pytest.raises(RunStoreError, match="cannot make the folder"):
        run_from_cli("matrix_chain", "quick", SMALL, out / "below", False, 1, 1)


def test_damaged_unit_json_stops_resume(tmp_path):
    # before: resume raised "cannot read .../unit.json"; a damaged unit is computed again
    first = cli(tmp_path, "matrix_chain", *SMALL, "seeds=2")
    unit = first.folder / "units" / "seed=1" / "unit.json"
    unit.write_text('{"unit": {"seed": 1}, "numb')
    again = cli(tmp_path, "matrix_chain", *SMALL, "seeds=2", resume=True)
    assert again == first and json.loads(unit.read_text())["unit"] == {"seed": 1}


def test_load_of_a_folder_without_run_json_says_cannot_read(tmp_path):
    # before: "cannot read .../run.json: [Errno 2] No such file or directory"
    with pytest.raises(RunStoreError, match="is not an experiment run folder"):
        gp.experiments.load(tmp_path)


def test_load_returns_the_config_as_a_dict_with_extra_keys(tmp_path):
    r = cli(tmp_path, "matrix_chain", *SMALL, "seeds=2")
    loaded = gp.experiments.load(r.folder)
    assert loaded.config == r.config and loaded.numbers == r.numbers and loaded == r
    assert "experiment" not in loaded.numbers and loaded.name == "matrix_chain"


def test_a_run_in_process_reseeds_the_callers_global_rng(tmp_path):
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    cli(tmp_path, "matrix_chain", *SMALL, "seeds=2")
    after = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(after[0], expected[0]) and (after[1] == expected[1]).all()
    assert after[2] == expected[2]


def test_every_bad_cli_input_is_a_gradprobe_error(tmp_path):
    for sets in (["width"], ["widht=3"], ["width=abc"], ["width=1.5"], ["inits=,"]):
        with pytest.raises(GradprobeError):
            cli(tmp_path, "matrix_chain", *sets)
    with pytest.raises(GradprobeError):
        run_from_cli("matrix_chain", "huge", [], tmp_path, False, 1, 1)
    with pytest.raises(GradprobeError):
        run_from_cli("no_such_experiment", "quick", [], tmp_path, False, 1, 1)


def test_out_none_from_python_is_a_type_error(tmp_path):
    with pytest.raises(InvalidInputError, match="out must be a folder path"):
        gp.experiments.run("matrix_chain", out=None, quiet=True, depth=10, width=20)


def test_run_unit_of_a_unit_not_in_the_plan_computes_it_anyway(tmp_path):
    p = gp.experiments.plan("matrix_chain", out=tmp_path, seeds=2, depth=10, width=20)
    with pytest.raises(InvalidInputError, match="not a unit of this plan"):
        gp.experiments.run_unit(p, {"seed": 7})
    assert not (p.folder / "units" / "seed=7").exists()


def test_load_of_a_run_json_that_is_not_an_object_is_an_attribute_error(tmp_path):
    (tmp_path / "run.json").write_text("[1, 2]")
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(RunStoreError, match=r"is not the run\.json of an experiment run"):
        gp.experiments.load(tmp_path)


def test_batch_larger_than_a_validation_split_trains_on_the_whole_split(tmp_path):
    # glorot2010 trains on 80 % of digits (1150 examples) after a validation hold-out, which
    # the config cannot know: the training loop refuses, naming the unit
    tiny = ["nets=tanh", "init_width=8", "init_batch=8", "jacobian_examples=0", "train_width=8",
            "datasets=digits", "lrs=0.1", "steps=1"]  # fmt: skip
    with pytest.raises(InvalidInputError, match="batch=1200 is more than the 1150"):
        cli(tmp_path, "glorot2010", *tiny, "batch=1200")
    info = json.loads((tmp_path / "glorot2010" / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_unit"].startswith("part=train")
