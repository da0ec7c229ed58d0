"""diagnose/inputs.py: an input far off the unit scale (pixels in 0-255) is the cause of the
saturated, dead and over-large-update findings it produces; standardising it is their remedy.

Regression: a tanh MLP fed the digits' raw pixels (0-255, rms ~120) had 98 % of its first
layer saturated and was told to re-initialise with LeCun, which changes nothing about an
input 100x what the init assumes."""

import numpy as np
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Thresholds, diagnose
from gradprobe.experiments.data import digits

from ._judge import serious


def _run(scale: float, act=nn.Tanh, steps: int = 30, seed: int = 0):
    """A 64-128-128-10 MLP on the digits, pixels mapped to [0, scale] (scale None: the loader's
    standardised pixels), SGD 0.01, watch()'s default."""
    s = digits.load(seed=0)
    x = s.x_train.flatten(1)
    if scale is not None:
        x = (x - x.min()) / (x.max() - x.min()) * scale
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), act(), nn.Linear(128, 128), act(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(seed)
    with gp.watch(model, optimizer=opt) as probe:
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (32,), generator=gen)
            loss = nn.functional.cross_entropy(model(x[idx]), s.y_train[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    return probe.run


def test_raw_pixels_saturating_tanh_are_told_to_standardise_not_lecun_regression():
    found = diagnose(_run(255.0))
    sat = [f for f in serious(found) if f.kind == "saturated"]
    assert sat and sat[0].layer == "1", [str(f) for f in found]
    r = sat[0].remedy
    assert "standardise" in r.text and "(x - mean) / std" in r.code and r.scheme is None
    assert sat[0].evidence["input_rms"] > 100 and sat[0].evidence["input_max_abs"] == 255
    assert r.code.index("(x - mean) / std") < r.code.index("# then, if it persists")


def test_standardised_pixels_keep_their_own_remedies():
    """The same model on the loader's standardised pixels: whatever it finds, nothing says to
    standardise the input (its rms is ~1)."""
    run = _run(None)
    rms = run.to_pandas().query("layer == '(input)' and quantity == 'activation' and stat == 'rms'")
    assert 0.1 < np.median(rms.value) < 10
    assert not [f for f in diagnose(run) if "standardise it" in f.remedy.text]


def test_the_input_rms_line_is_a_threshold():
    run = _run(255.0, steps=5)
    assert any("standardise it" in f.remedy.text for f in diagnose(run))
    off = diagnose(run, Thresholds(input_rms=1e3))
    assert not [f for f in off if "standardise it" in f.remedy.text]
    assert [f for f in serious(off) if f.kind == "saturated"]  # the finding stays
