"""Healthy training runs (issue 16): a small GPT-2 with AdamW and warm-up (an LM task and a
copy task), a ResNet with BatchNorm on digits, an LSTM with gradient clipping, an MLP with
Adam 1e-3 (also under float16 autocast): no warning and no error over the whole run, on
every seed. The measured distance of each statistic from its threshold is in
docs/DIAGNOSIS.md ("Training-time": false alarms).
"""

import numpy as np
import pytest

from gradprobe.diagnose import Thresholds, diagnose

from ._training import HEALTHY, train

SEEDS = (0, 1, 2)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(HEALTHY))
@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_training_has_no_warning_or_error(name, seed):
    run, losses = train(HEALTHY[name], seed)
    found = diagnose(run)
    assert not [f for f in found if f.severity in ("warning", "error")], [str(f) for f in found]
    assert np.isfinite(losses).all()
    # the run learned: this is a healthy run, not one the rules failed to see
    assert np.median(losses[-20:]) < 0.9 * np.median(losses[:3])
    # and what the rules read was recorded
    assert ("loss", "value") in set(run.quantities())
    assert len(run.matrix("loss", "value")[1]) == len(losses)


@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_first_updates_stay_below_the_early_line(seed):
    """Adam at lr 1e-2 on an LSTM of width 32 moves its weights by lr/rms(w) ≈ 0.1 on the
    first step: the healthy maximum, 2.5× below ``early_update_ratio``."""
    run, _ = train(HEALTHY["lstm_clipped"], seed)
    _names, steps, values = run.matrix("update", "ratio")
    early = values[:, np.asarray(steps) < 20]
    assert np.nanmax(early) < Thresholds().early_update_ratio / 2
