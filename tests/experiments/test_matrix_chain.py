import math

import pytest
import torch

from gradprobe.errors import GradprobeError
from gradprobe.experiments.matrix_chain import SETTINGS, matrix_chain, std_over_seeds


@pytest.fixture(scope="module")
def chains():
    return matrix_chain(depth=50, width=100, seed=0)


def test_small_scale_vanishes_to_exact_zero_in_float32(chains):
    r = chains["small"]
    assert 40 <= r.first_zero <= 50  # 0.1 per layer: 1e-45 is float32's smallest denormal
    assert r.first_inf is None and r.first_nan is None
    assert r.std[r.first_zero :].eq(0).all()
    # independent reference: each layer multiplies the std by 0.01 * sqrt(100) = 0.1
    assert r.std[10].item() == pytest.approx(1e-10, rel=1.0)
    assert r.event == f"0 at layer {r.first_zero}"


def test_unit_normal_explodes_to_inf_then_nan(chains):
    r = chains["normal"]
    assert 35 <= r.first_inf <= 40  # 10 per layer: float32 overflows past 3.4e38
    assert r.first_nan == r.first_inf + 1  # Inf - Inf in the next matmul
    assert r.first_zero is None
    assert r.std[10].item() == pytest.approx(1e10, rel=1.0)
    assert r.event == f"Inf at layer {r.first_inf}"


def test_sqrt_1_over_n_survives_but_drifts(chains):
    r = chains["xavier"]
    assert r.event is None
    assert torch.isfinite(r.std).all()
    assert ((r.std > 0.3) & (r.std < 3)).all()  # of order 1 at every layer


def test_relu_needs_the_factor_two(chains):
    he, half = chains["he_relu"], chains["xavier_relu"]
    assert he.event is None and half.event is None
    assert ((he.std > 0.1) & (he.std < 10)).all()
    # sqrt(1/n) + ReLU halves the second moment per layer: std ratio ~ 1/sqrt(2)
    per_layer = (half.std[-1] / half.std[1]) ** (1 / 49)
    assert per_layer.item() == pytest.approx(1 / math.sqrt(2), rel=0.1)
    assert half.std[-1] < 1e-6


def test_settings_share_draws_and_differ_only_by_scale(chains):
    a, b = chains["xavier"], chains["normal"]
    for layer in (1, 5, 20):
        assert b.std[layer].item() == pytest.approx(a.std[layer].item() * 10**layer, rel=1e-4)


def test_seeded_and_reproducible():
    one = matrix_chain(["xavier"], depth=10, width=32, seed=3)["xavier"]
    two = matrix_chain(["xavier"], depth=10, width=32, seed=3)["xavier"]
    other = matrix_chain(["xavier"], depth=10, width=32, seed=4)["xavier"]
    assert torch.equal(one.std, two.std) and torch.equal(one.mean, two.mean)
    assert not torch.equal(one.std, other.std)


def test_spread_over_seeds_shows_finite_width_drift():
    spread = std_over_seeds(["xavier"], depth=50, width=100, seeds=5)["xavier"]
    assert spread.shape == (5, 51)
    final = spread[:, -1]
    assert final.max() / final.min() > 1.2  # seeds disagree: the finite-width drift
    assert ((final > 0.2) & (final < 5)).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": 0}, {"width": 1}, {"settings": ["nope"]}, {"depth": 2.5}],
)
def test_bad_input_is_a_gradprobe_error(kwargs):
    with pytest.raises(GradprobeError):
        matrix_chain(**kwargs)


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(GradprobeError, match="xavier"):
        matrix_chain(["xavir"])
    with pytest.raises(GradprobeError, match="seeds"):
        std_over_seeds(seeds=0)


def test_every_setting_is_named_and_labelled():
    for name, s in SETTINGS.items():
        assert s.name == name and s.label and s.short
        assert s.factor(100) > 0
