"""The remedy catalog, parametrised over the registry: each remedy fits the findings it
answers (and nothing without a finding), and its code text does exactly what it applies."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Finding
from gradprobe.fix.catalog import REMEDIES
from gradprobe.fix.catalog.activation import kind_of
from gradprobe.fix.recipe import Env, OptimizerSpec, Recipe, adam
from gradprobe.fix.situation import Situation

from .conftest import Exp, mlp


def mixed():
    """Sigmoid, ReLU and an exponential module: every activation swap has something."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), Exp(),
        nn.Linear(8, 2),
    )  # fmt: skip


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def transformer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    return nn.Sequential(
        nn.Linear(4, 8), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    )


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


# remedy -> (model, optimizer, onset of the findings, a sample batch)
EXAMPLES = {
    "activation": (mixed, adam, 5, torch.randn(16, 4)),
    "adam": (mlp, sgd, 5, torch.randn(16, 4)),
    "clip": (mlp, adam, 5, torch.randn(16, 4)),
    "forget_bias": (LSTMNet, adam, 5, torch.randn(16, 5, 4)),
    "lr": (mlp, adam, 5, torch.randn(16, 4)),
    "norm_first": (transformer, adam, 5, torch.randn(16, 5, 4)),
    "normalise": (mixed, adam, 5, torch.randn(16, 4)),
    "reinit": (mlp, adam, 0, torch.randn(16, 4)),  # re-init only for a problem at init
    "warmup": (mlp, adam, 5, torch.randn(16, 4)),
}


def situation(name: str, kinds, onset=None) -> Situation:
    build, opt, default_onset, sample = EXAMPLES[name]
    model = build()
    step = default_onset if onset is None else onset
    findings = [Finding(k, None, "warning", step) for k in kinds]  # type: ignore[arg-type]
    return Situation(
        findings=findings,
        symptoms=[],
        model=model,
        optimizer=OptimizerSpec.from_factory(opt, model),
        grad_norms=[3.0, 2.0, 5.0, 4.0, 1.0, float("nan")],
        losses=[],
        steps=100,
        sample=sample,
    )


def test_every_remedy_has_an_example():
    assert set(EXAMPLES) == set(REMEDIES.names())


@pytest.mark.parametrize(
    "name,kind", [(n, k) for n in REMEDIES.names() for k in REMEDIES.get(n).answers]
)
def test_fits_each_finding_it_answers(name, kind):
    changes = REMEDIES.get(name).fits(situation(name, [kind]))
    assert changes, f"{name} does not fit {kind}"
    for change in changes:
        assert change.remedy == name and kind in change.reason


@pytest.mark.parametrize("name", REMEDIES.names())
def test_fits_nothing_without_a_finding(name):
    assert REMEDIES.get(name).fits(situation(name, [])) == []


@pytest.mark.parametrize("name", REMEDIES.names())
def test_fits_nothing_for_a_finding_it_does_not_answer(name):
    others = {"fluctuation"} - set(REMEDIES.get(name).answers)
    assert REMEDIES.get(name).fits(situation(name, sorted(others))) == []


def test_reinit_keeps_a_healthy_init():
    """A problem that appeared only during training is no reason to re-initialise."""
    assert REMEDIES.get("reinit").fits(situation("reinit", ["vanishing"], onset=40)) == []


def test_lr_lowers_for_instability_and_raises_for_slowness():
    down = REMEDIES.get("lr").fits(situation("lr", ["oscillating"]))
    up = REMEDIES.get("lr").fits(situation("lr", ["not_learning"]))
    assert sorted(c.opts["factor"] for c in down) == [0.1, 0.3]
    assert sorted(c.opts["factor"] for c in up) == [3.0, 10.0]


def test_clip_max_norm_is_a_low_percentile_of_the_recorded_norms():
    (change,) = REMEDIES.get("clip").fits(situation("clip", ["exploding"]))
    # finite norms before the NaN: 3, 2, 5, 4, 1 -> 10th percentile 1.4
    assert change.opts["max_norm"] == pytest.approx(1.4)


def _state(model: nn.Module) -> tuple[str, dict]:
    return str(model), {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", REMEDIES.names())
def test_code_text_does_exactly_what_apply_does(name):
    s = situation(name, REMEDIES.get(name).answers)
    env = Env(batch=s.sample, seed=3)
    for change in REMEDIES.get(name).fits(s):
        recipe = Recipe((change,))
        applied = recipe.apply(copy.deepcopy(s.model), env)
        ns = {"model": copy.deepcopy(s.model), "torch": torch, "nn": nn, "gp": gp}
        ns["batch"] = env.batch
        exec(recipe.code(s.optimizer, env), ns)
        (text, state), (text2, state2) = _state(applied), _state(ns["model"])
        assert text == text2, change.label
        assert state.keys() == state2.keys()
        for key in state:
            assert torch.equal(state[key], state2[key]), (change.label, key)
        if "optimizer" in ns:  # a training change: the same optimizer, options and loop
            built = recipe.optimizer(s.optimizer).build(ns["model"].parameters())
            assert type(ns["optimizer"]) is type(built)
            assert ns["optimizer"].defaults == built.defaults
            assert ns.get("max_norm") == recipe.loop().get("max_norm")
            assert ("scheduler" in ns) == ("warmup" in recipe.loop())


def test_a_functional_activation_is_reported_not_swapped():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.b(torch.sigmoid(self.a(x)))

    s = situation("activation", ["saturated"])
    s.model = Functional()
    assert REMEDIES.get("activation").fits(s) == []
    assert any("functions in forward()" in n for n in s.notes)


def test_reinit_fits_an_early_divergence_without_an_init_finding():
    """exploding/digits-relu8-std03: N(0, 0.3²) weights, NaN within a few SGD steps, no
    finding at step 0; only lr and warm-up were offered, and none reached the healthy net."""
    from gradprobe.fix.symptoms import Symptom

    s = situation("reinit", [])
    s.symptoms = [Symptom("diverging", 3, severity="error")]
    assert REMEDIES.get("reinit").fits(s)
    s.symptoms = [Symptom("diverging", 60, severity="error")]  # late: the init was fine
    assert REMEDIES.get("reinit").fits(s) == []


def test_lr_offers_the_factors_that_restore_the_update_ratio():
    """slow/digits-adam-1e-5: ×3 and ×10 could not close a gap of ×100 in the step size."""
    s = situation("lr", ["not_learning"])
    s.update_ratio = 2e-5
    factors = sorted(c.opts["factor"] for c in REMEDIES.get("lr").fits(s))
    assert factors == [3.0, 10.0, 50.0, 500.0]
    s.update_ratio = 1e-3  # moving normally: no big factor
    assert sorted(c.opts["factor"] for c in REMEDIES.get("lr").fits(s)) == [3.0, 10.0]


@pytest.mark.parametrize("smooth", [nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Mish])
def test_dying_relu_swap_matched_smooth_activations(smooth):
    """kind_of sees GELU/SiLU/ELU/LeakyReLU as "smooth" (a negative output still has a
    gradient, so no unit dies): dead units swap only ReLU/ReLU6 for LeakyReLU."""
    assert kind_of(smooth()) == "smooth" and kind_of(nn.ReLU()) == "relu"
    swap = REMEDIES.get("activation")
    s = situation("activation", ["dead_units"])
    torch.manual_seed(0)
    s.model = nn.Sequential(nn.Linear(4, 8), smooth(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert [tuple(c.opts["only"]) for c in swap.fits(s)] == [("ReLU",)]
    s.model = nn.Sequential(nn.Linear(4, 8), smooth(), nn.Linear(8, 2))
    assert swap.fits(s) == []
