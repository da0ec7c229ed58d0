"""Regression: the precision remedies' code named ``device_type="cuda"`` whatever device the
run was on. On a CPU run ``torch.autocast(device_type="cuda", ...)`` warns and does nothing
(the model stays float32) and a CUDA GradScaler disables itself: the code a user copies
must autocast on the device the model is on."""

import warnings

import torch
from torch import nn

from gradprobe.diagnose import diagnose
from gradprobe.diagnose.training import device_type, precision

from ._training import BROKEN, train


def _run_snippet(code: str) -> dict:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    seen = {}

    def loss_fn(out, y):
        seen["dtype"] = out.dtype
        return nn.functional.cross_entropy(out.float(), y)

    scope = {"torch": torch, "model": model, "loss_fn": loss_fn, "nn": nn}
    scope.update(x=torch.randn(5, 4), y=torch.randint(0, 3, (5,)))
    scope["opt"] = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # autocast's "CUDA is not available" warning fails
        exec(code, scope)
    return {**scope, **seen}


def test_fp16_overflow_remedy_autocasts_on_the_runs_device():
    run = train(BROKEN["fp16_overflow"], 0)[0]  # a CPU run, float16 autocast overflowing
    codes = [
        f.remedy.code
        for f in diagnose(run)
        if f.remedy is not None and f.remedy.code and "autocast" in f.remedy.code
    ]
    assert codes, "the float16 overflow got no autocast remedy"
    for code in codes:
        assert '"cuda"' not in code, code
    snippet = next(c for c in codes).split("\n")[:2]  # the with-block
    assert _run_snippet("\n".join(snippet))["dtype"] == torch.bfloat16


def test_gradscaler_remedy_scales_on_the_runs_device():
    code = precision("float16", "grad_output", "float16 gradients near their limit").code
    assert '"cuda"' not in code
    setup = "out = model(x); loss = loss_fn(out, y)\n"
    scope = _run_snippet(setup + code)
    assert scope["scaler"].is_enabled()  # a CUDA scaler on a CPU run disables itself


def test_a_recorded_device_is_named_as_written():
    assert device_type({"device": "cuda:1"}) == "'cuda'"
    assert device_type({"device": "cpu"}) == "'cpu'"
    assert device_type({}) == "next(model.parameters()).device.type"
