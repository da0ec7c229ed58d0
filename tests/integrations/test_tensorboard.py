"""TensorBoard export, read back with TensorBoard's own reader (EventAccumulator)."""

import math

import numpy as np
import pytest

from gradprobe.errors import GradprobeError

pytest.importorskip(
    "tensorboard", reason="needs the tensorboard extra: pip install -e '.[tensorboard]'"
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradprobe.integrations._common import scalar_name
from gradprobe.integrations.tensorboard import buckets, to_tensorboard

GUIDE = {"scalars": 0, "histograms": 0, "tensors": 0}


@pytest.fixture(scope="module")
def events(stored_run, tmp_path_factory):
    out = to_tensorboard(stored_run, tmp_path_factory.mktemp("tb") / "logs")
    ea = EventAccumulator(str(out), size_guidance=GUIDE)
    ea.Reload()
    return ea


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-6, abs=1e-30)  # TensorBoard stores float32


def test_every_recorded_scalar_is_in_the_event_file(stored_run, events):
    tags = set(events.Tags()["scalars"])
    checked = nan = 0
    for quantity, stat in stored_run.quantities():
        names, steps, values = stored_run.matrix(quantity, stat, role=None)
        for i, name in enumerate(names):
            tag = "gradprobe/" + scalar_name(quantity, stat, name)
            assert tag in tags
            written = {e.step: e.value for e in events.Scalars(tag)}
            for j, step in enumerate(steps):
                if step in written:
                    assert _same(float(np.float32(values[i, j])), written[step]), (tag, step)
                    checked += 1
                    nan += math.isnan(written[step])
    assert checked > 200
    assert nan > 0  # NaN statistics (step 2) are written, not dropped


def test_loss_lr_and_gradient_norm_are_scalars(stored_run, events):
    for tag, (quantity, stat) in {
        "loss": ("loss", "value"), "lr": ("lr", "value"), "grad_norm": ("grad_norm", "global"),
    }.items():  # fmt: skip
        written = [e.value for e in events.Scalars(f"gradprobe/{tag}")]
        _, _, want = stored_run.matrix(quantity, stat)
        assert len(written) == 3
        for a, b in zip(written, want[0], strict=True):
            assert _same(float(np.float32(b)), a), tag


def test_histograms_keep_nan_inf_and_zero_counts(stored_run, events):
    seen_posinf = seen_nan = 0
    for layer in [la.name for la in stored_run.layers()] + ["(input)"]:
        for quantity in ("activation", "grad_output"):
            tag = f"gradprobe/{quantity}/hist/{layer}"
            base = f"gradprobe/{quantity}/hist"
            if tag not in events.Tags()["histograms"]:
                continue
            tb = {e.step: e.histogram_value for e in events.Histograms(tag)}
            for step in stored_run.steps:
                h = stored_run.histogram(layer, quantity, step)
                if h is None:
                    continue
                v = tb[step]
                total = h.counts.sum() + h.zero + h.below + h.above + h.posinf + h.neginf
                assert sum(v.bucket) == v.num == total
                first = (h.neginf > 0) + (h.below > 0)
                n = len(h.counts)
                expected = h.counts.copy()
                expected[np.searchsorted(h.edges, 0.0) - 1] += h.zero  # the bin (-w, 0]
                np.testing.assert_allclose(v.bucket_limit[first : first + n], h.edges[1:])
                np.testing.assert_array_equal(v.bucket[first : first + n], expected)
                if h.posinf:
                    assert v.bucket_limit[-1] == math.inf and v.bucket[-1] == h.posinf
                    assert v.max == math.inf
                    seen_posinf += 1
                scalars = {
                    what: {e.step: e.value for e in events.Scalars(f"{base}_{what}/{layer}")}
                    for what in ("nan", "posinf", "neginf", "zero")
                }
                assert scalars["nan"][step] == h.nan
                assert scalars["posinf"][step] == h.posinf
                assert scalars["zero"][step] == h.zero
                seen_nan += h.nan > 0
    assert seen_posinf and seen_nan


def test_bucket_form_puts_zeros_back_and_marks_infinities():
    from gradprobe.run import Histogram

    h = Histogram(-2.0, 2.0, np.array([1, 2, 3, 4]), 0, 0, 5, 7, 1, 2)
    limits, counts, lo, hi = buckets(h)
    assert limits[0] < -1e307 and counts[0] == 2  # -Inf first
    assert limits[1:5] == [-1.0, 0.0, 1.0, 2.0]
    assert counts[1:5] == [1, 2 + 5, 3, 4]  # zeros in (-1, 0]
    assert limits[-1] == math.inf and counts[-1] == 1
    assert (lo, hi) == (-math.inf, math.inf)


def test_events_and_findings_are_text(events):
    tags = events.Tags()["tensors"]
    assert "gradprobe/findings/text_summary" in tags
    text = events.Tensors("gradprobe/first_nonfinite/text_summary")[0]
    assert b"NaN/Inf" in text.tensor_proto.string_val[0]
    counts = {t: events.Scalars(t)[-1].value for t in events.Tags()["scalars"] if "findings_" in t}
    assert counts["gradprobe/findings_error"] >= 1  # the run went non-finite


def test_path_of_a_stored_run_and_bad_logdir(stored_run, tmp_path):
    out = to_tensorboard(stored_run.path, tmp_path / "tb", findings=None, histograms=False)
    ea = EventAccumulator(str(out), size_guidance=GUIDE)
    ea.Reload()
    assert ea.Tags()["histograms"] == [] and ea.Tags()["scalars"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(GradprobeError, match="is a file"):
        to_tensorboard(stored_run, tmp_path / "file")
    with pytest.raises(GradprobeError, match="no run file"):
        to_tensorboard(tmp_path / "missing.sqlite", tmp_path / "tb2")


def test_missing_package_names_the_pip_command(stored_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails
    with pytest.raises(GradprobeError, match=r"pip install 'gradprobe\[tensorboard\]'"):
        to_tensorboard(stored_run, tmp_path / "tb")


def test_cli_report_writes_event_files(stored_run, tmp_path, capsys):
    from gradprobe.cli import main

    try:
        main(["report", str(stored_run.path), "--tensorboard", str(tmp_path / "tb")])
    except SystemExit as done:
        assert done.code in (0, 1, None)  # 1: the run has findings
    assert "tensorboard:" in capsys.readouterr().out
    ea = EventAccumulator(str(tmp_path / "tb"), size_guidance=GUIDE)
    ea.Reload()
    assert "gradprobe/param_grad/norm/0.weight" in ea.Tags()["scalars"]
