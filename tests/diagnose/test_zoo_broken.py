"""Broken variants of the zoo, each at two sizes and two init draws: the right kind at the
right layer or block, with a remedy that fits the architecture — an init where an init can
fix it, normalisation, a residual path, Pre-LN, DeepNorm or warm-up where it cannot, and
never a re-initialisation with the scheme the model already has.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.diagnose import Context, Thresholds
from gradprobe.diagnose.remedies import depth_remedy

from . import _zoo as Z

SEEDS, SIZES = [0, 1], [0, 1]


@functools.cache  # each configuration is checked once for all the tests that read it
def _findings(name, size, seed):
    build, _, _ = Z.BROKEN[name]
    return tuple(gp.check(*build(size, seed), histograms=False).findings)


def _serious(findings):
    return [f for f in findings if f.severity in ("warning", "error")]


def _one(findings, kind, layer=None):
    found = [f for f in _serious(findings) if f.kind == kind and layer in (None, f.layer)]
    assert found, [str(f) for f in findings]
    return found[0]


SLOW = pytest.mark.slow  # 48 Post-LN layers: about a second a draw
CASES = [
    pytest.param(name, size, seed, marks=[SLOW] if (name, size) == ("deep_post_ln", 1) else [])
    for name in sorted(n for n, (_, kinds, _) in Z.BROKEN.items() if kinds)
    for size in SIZES
    for seed in SEEDS
]


@pytest.mark.parametrize(("name", "size", "seed"), CASES)
def test_broken_zoo_gets_the_right_kind_at_the_right_layer(name, size, seed):
    _, kinds, where = Z.BROKEN[name]
    found = [f for f in _serious(_findings(name, size, seed)) if f.kind in kinds]
    assert found, name
    if where is not None:
        assert any(where(f.layer) for f in found), [(f.kind, f.layer) for f in found]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", [0, pytest.param(1, marks=SLOW)])
def test_deep_post_ln_needs_warm_up_or_pre_ln(size, seed):
    """Xiong et al. 2020: 24-48 Post-LN layers grow their gradient towards the output only
    1.5-5× at init, so no fixed ratio sees it; the architecture and the growth do."""
    f = _one(_findings("deep_post_ln", size, seed), "vanishing", "stack.layers.0")
    assert f.severity == "warning" and f.evidence["norm_place"] == "post"
    assert f.evidence["blocks"] == (24, 48)[size]
    assert f.evidence["growth_towards_output"] >= 1.6  # measured 2.2-5.0
    assert "warm-up" in f.remedy.text and "Pre-LN" in f.remedy.text
    assert "DeepNorm" in f.remedy.text and "set_norm_first" in f.remedy.code


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", SIZES)
def test_unit_gaussian_transformer_is_exploding_at_its_first_block(size, seed):
    f = _one(_findings("transformer_unit_gaussian", size, seed), "exploding", "transformer.h.0")
    assert f.evidence["stream_growth"] > 20  # measured 31-41; healthy GPT-2 1.02
    assert "_init_weights" in f.remedy.code  # the model's own init, not a torch default


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", SIZES)
def test_resnet_without_norm_needs_normalisation_or_fixup(size, seed):
    f = _one(_findings("resnet_no_norm_unit_gaussian", size, seed), "exploding", "layers.0.0")
    assert f.evidence["measure"] == "backward" and f.evidence["ratio_first_to_last"] > 1e3
    assert "BatchNorm" in f.remedy.text and f.remedy.scheme == "fixup"


@pytest.mark.parametrize("name", ["mixer_saturating", "vit_saturating"])
def test_saturating_mlps_in_blocks_are_told_to_use_gelu(name):
    for size in SIZES:
        for seed in SEEDS:
            found = [f for f in _serious(_findings(name, size, seed)) if f.kind == "saturated"]
            assert found and all(".mlp" in f.layer for f in found)
            assert all("GELU" in f.remedy.text for f in found)


@pytest.mark.parametrize("seed", SEEDS)
def test_lstm_with_default_init_over_200_steps_forgets(seed):
    f = _one(_findings("lstm_default_long", 0, seed), "vanishing", "lstm")
    assert f.time_step is not None and "forget-gate bias" in f.remedy.text


@pytest.mark.parametrize("name", ["sigmoid_cnn", "sigmoid_mlp_standard"])
def test_sigmoid_stacks_are_told_to_change_the_activation(name):
    for size in SIZES:
        for seed in SEEDS:
            f = _one(_findings(name, size, seed), "vanishing", "0")
            assert f.severity == "error" and f.evidence["growth_per_block"] < 0.2
            assert "swap_activations(model, 'ReLU'" in f.remedy.code


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", SIZES)
def test_relu_cnn_with_bias_minus_three_has_dead_units_blamed_on_the_bias(size, seed):
    found = [f for f in _serious(_findings("relu_cnn_bias_minus_3", size, seed))]
    dead = [f for f in found if f.kind == "dead_units"]
    assert dead and all(f.layer in {str(i) for i in range(1, 12, 2)} for f in dead)
    assert all("bias" in f.remedy.text for f in dead)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", SIZES)
def test_narrow_he_relu_stack_is_told_to_widen_not_to_use_kaiming(size, seed):
    """16 (24) He ReLU layers of width 5 were told "re-initialise with Kaiming"."""
    findings = _serious(_findings("narrow_relu", size, seed))
    f = _one(findings, "fluctuation", "0")
    assert f.evidence["sum_inverse_width"] == pytest.approx((15, 23)[size] / 5)
    assert "widen" in f.remedy.text and f.remedy.scheme is None
    for other in findings:
        if other.kind in ("vanishing", "exploding"):
            assert "kaiming" not in (other.remedy.code or "") and "already" in other.remedy.text


@pytest.mark.parametrize("name", ["gelu_unit_gaussian", "relu_mlp_unit_gaussian"])
def test_unit_gaussian_plain_stacks_explode_and_get_the_fitting_init(name):
    for size in SIZES:
        for seed in SEEDS:
            f = _one(_findings(name, size, seed), "exploding", "0")
            assert f.severity == "error" and f.evidence["growth_per_block"] > 4  # √(64/2)
            assert f.remedy.scheme == "kaiming_normal"
            if name.startswith("gelu"):
                assert "GELU" in f.remedy.text


def _inits(code):
    return set(re.findall(r"gp\.init\.apply\(model, '(\w+)'", code or ""))


def test_no_remedy_re_proposes_the_init_the_model_has():
    """The dead units of a He-initialised, zero-bias narrow stack were told "initialise
    biases to 0 with Kaiming weights" (remedies.dead_at_init says why no init helps)."""
    for size in SIZES:
        for seed in SEEDS:
            for f in _serious(_findings("narrow_relu", size, seed)):
                assert "kaiming_normal" not in _inits(f.remedy.code), str(f)


class _Exp(nn.Module):
    """Keras' "exponential" activation."""

    def forward(self, x):
        return torch.exp(x)


@pytest.mark.parametrize("head", [None, nn.Sigmoid])
def test_an_exponential_activation_was_told_that_sigmoids_slope_shrinks_its_gradients(head):
    """A net of exp activations got sigmoid's explanation when its output had a Sigmoid
    (for BCE), else generic LSUV: the remedy names its own activation, what it measured,
    and an activation with a known gain (or normalisation)."""
    torch.manual_seed(0)
    model = Z._mlp(4, 32, _Exp, d_in=4)
    if head is not None:
        model = nn.Sequential(*model, head())
    x = torch.randn(128, 4, generator=torch.Generator().manual_seed(0))
    result = gp.check(model, x, histograms=False)
    remedies = [depth_remedy(Context(result.run, Thresholds()), "exploding")]
    if head is None:  # ×47 per layer back: exploding (with a Sigmoid head the output saturates)
        remedies += [f.remedy for f in _serious(result.findings) if f.kind == "exploding"]
        assert len(remedies) == 2
    for r in remedies:
        assert "sigmoid" not in r.text.lower() and "lsuv" not in (r.code or "")
        assert "_Exp" in r.text and "per layer" in r.text and "normalise" in r.text
        assert "swap_activations(model, 'ReLU', only=['_Exp'])" in r.code
