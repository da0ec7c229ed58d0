"""W&B export in offline mode, read back from the run's local transaction log."""

import math
import sys

import numpy as np
import pytest

from gradprobe.errors import GradprobeError

pytest.importorskip("wandb", reason="needs the wandb extra: pip install -e '.[wandb]'")
from gradprobe.integrations._common import scalar_name
from gradprobe.integrations.wandb import to_wandb

from . import _wandb_file


@pytest.fixture(scope="module")
def logged(stored_run, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_DISABLE_GIT", "true")
    try:
        folder = tmp_path_factory.mktemp("wandb")
        wb = to_wandb(stored_run, project="gradprobe-test", dir=str(folder))
        files = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1, files
        _wandb_file.wait_closed(files[0])
        yield wb, *_wandb_file.read(files[0])
    finally:
        mp.undo()


def test_history_holds_every_recorded_scalar(stored_run, logged):
    _, history, _ = logged
    rows = {row["_step"]: row for row in history}
    assert sorted(rows) == stored_run.steps
    checked = nan = 0
    for quantity, stat in stored_run.quantities():
        names, steps, values = stored_run.matrix(quantity, stat, role=None)
        for i, name in enumerate(names):
            for j, step in enumerate(steps):
                tag = "gradprobe/" + scalar_name(quantity, stat, name)
                if tag not in rows[step]:
                    continue  # never recorded at this step (e.g. updates before a snapshot)
                got = rows[step][tag]
                want = values[i, j]
                if math.isnan(want):
                    assert got == "NaN" or (isinstance(got, float) and math.isnan(got))
                    nan += 1
                else:
                    assert got == pytest.approx(want, rel=1e-12)
                checked += 1
    assert checked > 200 and nan > 0


def test_loss_lr_and_gradient_norm_in_the_history(stored_run, logged):
    _, history, _ = logged
    rows = {row["_step"]: row for row in history}
    _, steps, loss = stored_run.matrix("loss", "value")
    assert steps == [0, 1, 2]
    for j, step in enumerate(steps):
        got = rows[step]["gradprobe/loss"]
        assert (got == "NaN" or math.isnan(got)) if math.isnan(loss[0, j]) else got == loss[0, j]
        assert rows[step]["gradprobe/lr"] == 0.05
        assert "gradprobe/grad_norm" in rows[step]


def test_histograms_and_their_nonfinite_counts(stored_run, logged):
    _, history, _ = logged
    rows = {row["_step"]: row for row in history}
    seen = 0
    for step in stored_run.steps:
        for layer in ["(input)"] + [la.name for la in stored_run.layers()]:
            h = stored_run.histogram(layer, "activation", step)
            if h is None:
                continue
            row = rows[step]
            base = f"gradprobe/activation/hist/{layer}"
            if f"{base}/values" in row:  # flattened by the reader's nested keys
                values, bins = row[f"{base}/values"], row[f"{base}/bins"]
            else:
                values, bins = row[base]["values"], row[base]["bins"]
            np.testing.assert_allclose(bins, h.edges)
            assert sum(values) == h.counts.sum() + h.zero
            for what in ("nan", "posinf", "neginf", "zero", "below", "above"):
                assert row[f"gradprobe/activation/hist_{what}/{layer}"] == getattr(h, what)
            seen += h.nan + h.posinf > 0
    assert seen


def test_findings_and_events_in_the_summary(logged):
    _, _, summary = logged
    assert summary["gradprobe/findings_error"] >= 1
    assert any("non_finite" in line for line in summary["gradprobe/findings"])
    assert any("NaN/Inf" in line for line in summary["gradprobe/first_nonfinite"])


def test_missing_package_names_the_pip_command(stored_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(GradprobeError, match=r"pip install 'gradprobe\[wandb\]'"):
        to_wandb(stored_run)
