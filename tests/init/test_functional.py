"""Every registered tensor scheme, through the registry, against its formula and torch."""

import math

import pytest
import torch
from scipy import stats

import gradprobe as gp
from gradprobe.errors import GradprobeError, InvalidInputError

N = 1024
SQUARE = (N, N)

# name -> (kwargs, shape, expected second moment E[w²]); formulas written out independently.
EXPECTED = {
    "zeros": ({}, SQUARE, 0.0),
    "constant": ({"val": 0.5}, SQUARE, 0.25),
    "normal": ({"std": 0.3}, SQUARE, 0.09),
    "uniform": ({"a": -2.0, "b": 2.0}, SQUARE, 16 / 12),
    "trunc_normal": ({"std": 1.0}, SQUARE, float(stats.truncnorm(-2, 2).var())),
    "scaled_normal": ({"scale": 0.01}, SQUARE, 1e-4),
    "standard": ({}, SQUARE, 1 / (3 * N)),
    "xavier_uniform": ({"gain": 5 / 3}, (N, 2 * N), (5 / 3) ** 2 * 2 / (3 * N)),
    "xavier_normal": ({"gain": 2.0}, (N, 2 * N), 4 * 2 / (3 * N)),
    "kaiming_uniform": ({"nonlinearity": "relu"}, SQUARE, 2 / N),
    "kaiming_normal": ({"nonlinearity": "relu", "mode": "fan_out"}, (N // 2, N), 2 / (N // 2)),
    "lecun_uniform": ({}, (N // 2, N), 1 / N),
    "lecun_normal": ({}, SQUARE, 1 / N),
    "variance_scaling": ({"scale": 2.0, "mode": "fan_avg"}, (N, 2 * N), 2 / (1.5 * N)),
    "orthogonal": ({"gain": 1.5}, (N, N // 2), 2.25 / N),
    "delta_orthogonal": ({}, (N, N, 1), 1 / N),
    "identity": ({}, SQUARE, 1 / N),
}

TENSOR_SCHEMES = [n for n in gp.init.names() if gp.init.get(n).kind == "tensor"]


def test_every_tensor_scheme_has_an_expected_formula_here():
    assert sorted(TENSOR_SCHEMES) == sorted(EXPECTED)


@pytest.mark.parametrize("name", TENSOR_SCHEMES)
def test_second_moment_matches_formula(name):
    kwargs, shape, expected = EXPECTED[name]
    fn = gp.init.get(name).fn
    w = fn(torch.empty(shape), **kwargs, generator=torch.Generator().manual_seed(1))
    measured = float(w.double().pow(2).mean())
    assert measured == pytest.approx(expected, rel=0.05, abs=1e-12)


@pytest.mark.parametrize("name", TENSOR_SCHEMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_shape_dtype_and_reproducible(name, dtype):
    kwargs, _, _ = EXPECTED[name]
    shape = (16, 16, 3) if name == "delta_orthogonal" else (16, 24)
    fn = gp.init.get(name).fn
    t = torch.empty(shape, dtype=dtype)
    out = fn(t, **kwargs, generator=torch.Generator().manual_seed(7))
    assert out is t and out.shape == shape and out.dtype == dtype and out.device == t.device
    again = fn(
        torch.empty(shape, dtype=dtype), **kwargs, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(out, again)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", TENSOR_SCHEMES)
def test_works_on_a_parameter_that_requires_grad(name):
    kwargs, _, _ = EXPECTED[name]
    shape = (8, 8, 3) if name == "delta_orthogonal" else (8, 8)
    p = torch.nn.Parameter(torch.empty(shape))
    gp.init.get(name).fn(p, **kwargs)
    assert p.requires_grad and p.grad_fn is None


TORCH_TWINS = [
    ("xavier_uniform", torch.nn.init.xavier_uniform_, {"gain": 1.3}),
    ("xavier_normal", torch.nn.init.xavier_normal_, {"gain": 0.7}),
    ("kaiming_uniform", torch.nn.init.kaiming_uniform_, {"a": 0.1, "mode": "fan_out"}),
    ("kaiming_normal", torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
    ("uniform", torch.nn.init.uniform_, {"a": -0.5, "b": 2.0}),
    ("normal", torch.nn.init.normal_, {"mean": 1.0, "std": 0.5}),
    ("trunc_normal", torch.nn.init.trunc_normal_, {"std": 0.5}),
]


@pytest.mark.parametrize(("name", "twin", "kwargs"), TORCH_TWINS, ids=[t[0] for t in TORCH_TWINS])
def test_same_draws_as_torch_for_the_same_generator(name, twin, kwargs):
    shape = (64, 32, 3, 3)
    ours = gp.init.get(name).fn(
        torch.empty(shape), **kwargs, generator=torch.Generator().manual_seed(3)
    )
    theirs = twin(torch.empty(shape), **kwargs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, theirs)


def test_orthogonal_matches_torch_in_distribution():
    ours = gp.init.orthogonal_(torch.empty(256, 256), generator=torch.Generator().manual_seed(0))
    theirs = torch.nn.init.orthogonal_(
        torch.empty(256, 256), generator=torch.Generator().manual_seed(1)
    )
    assert torch.allclose(ours @ ours.T, torch.eye(256), atol=1e-5)
    result = stats.ks_2samp(ours.flatten().numpy(), theirs.flatten().numpy())
    assert result.pvalue > 1e-3


@pytest.mark.parametrize("shape", [(10, 30), (30, 10), (6, 4, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = gp.init.orthogonal_(torch.empty(shape), gain=2.0).reshape(shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(gram, 4 * torch.eye(gram.shape[0]), atol=1e-4)


def test_delta_orthogonal_is_norm_preserving_convolution():
    w = gp.init.delta_orthogonal_(
        torch.empty(16, 8, 3, 3), generator=torch.Generator().manual_seed(0)
    )
    assert int((w != 0).sum()) == 16 * 8 and torch.count_nonzero(w[:, :, 1, 1]) == 128
    x = torch.randn(2, 8, 10, 10)
    y = torch.nn.functional.conv2d(x, w, padding=1)
    assert torch.allclose(y.norm(dim=1), x.norm(dim=1), atol=1e-4)


def test_identity_is_eye_and_dirac():
    assert torch.equal(gp.init.identity_(torch.empty(3, 5)), torch.eye(3, 5))
    x = torch.randn(1, 4, 7, 7)
    k = gp.init.identity_(torch.empty(4, 4, 3, 3))
    assert torch.allclose(torch.nn.functional.conv2d(x, k, padding=1), x)


def test_variance_scaling_distributions():
    g = torch.Generator().manual_seed(0)
    for dist in ("truncated_normal", "normal", "uniform"):
        w = gp.init.variance_scaling_(torch.empty(SQUARE), 3.0, "fan_in", dist, generator=g)
        assert float(w.var()) == pytest.approx(3 / N, rel=0.05), dist
    trunc = gp.init.variance_scaling_(torch.empty(SQUARE), 1.0, generator=g)
    assert float(trunc.abs().max()) <= 2 * math.sqrt(1 / N) / 0.8796 + 1e-6


def test_fan_based_scheme_on_a_vector_explains():
    with pytest.raises(InvalidInputError, match="at least 2 dimensions"):
        gp.init.xavier_uniform_(torch.empty(5))
    with pytest.raises(GradprobeError, match="at least 2 dimensions"):
        gp.init.orthogonal_(torch.empty(5))


def test_not_a_tensor_and_bad_options():
    with pytest.raises(InvalidInputError, match=r"torch\.Tensor"):
        gp.init.normal_([1.0, 2.0])
    with pytest.raises(InvalidInputError, match="fan_in"):
        gp.init.kaiming_normal_(torch.empty(3, 3), mode="fan_middle")
    with pytest.raises(InvalidInputError, match="distribution"):
        gp.init.variance_scaling_(torch.empty(3, 3), distribution="cauchy")
    with pytest.raises(InvalidInputError, match="a < b"):
        gp.init.trunc_normal_(torch.empty(3), a=1, b=0)


def test_unknown_scheme_suggests_the_close_one():
    with pytest.raises(GradprobeError, match="Did you mean 'xavier_normal'"):
        gp.init.get("xavier_norml")
