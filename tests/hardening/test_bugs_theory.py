"""Regression tests for theory bugs found by trying unusual inputs (issue 14), and for the
layering of issue 13 (theory computes only; no cycle inside theory)."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from gradprobe.errors import GradprobeError, InvalidInputError
from gradprobe.report.theory_table import summary_table
from gradprobe.theory import (
    c_star,
    chi_1,
    chi_c,
    correlation_map,
    critical_sigma_w2,
    jacobian_spectrum,
    length_map,
    mean_field,
    norm_spread,
    phase_diagram,
    predict,
    propagate,
    q_star,
    random_mlp,
    resolve,
    spectrum_prediction,
)
from gradprobe.theory.kernels import D, V, dV

SRC = Path(__file__).resolve().parents[2] / "src" / "gradprobe"
SQRT_2PI = math.sqrt(2 * math.pi)


def _text(table) -> str:
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_huge_sigma_w2_tanh_is_chaotic_with_finite_q_star_and_exploding_gradients():
    """Was: phase "chaotic", χ₁ 5e25, and yet "q* ∞" and "gradient ratio 0 – vanishing".

    For tanh at σ_w² = 1e30, σ_b² = 0: q* = σ_w² E[tanh²] ≈ 1e30 (tanh is ±1 almost
    everywhere), χ₁ = σ_w² E[sech⁴(√q z)] = σ_w² (4/3)/√(2π q*) ≈ 5.32e14, so gradients
    grow 5e14× a layer: the ratio over 100 layers overflows to +∞ (exploding)."""
    mf = mean_field("tanh", 1e30, 0.0)
    assert mf.q_star == pytest.approx(1e30, rel=1e-9)
    assert mf.chi_1 == pytest.approx(1e30 * (4 / 3) / SQRT_2PI / 1e15, rel=1e-6)
    assert mf.phase == "chaotic" and mf.c_star == 0.0
    assert mf.xi_c == pytest.approx(-1 / math.log(2 / math.pi), rel=1e-3)  # χ_c(0) = 2/π
    path = propagate("tanh", 1e30, 0.0, 100)
    assert np.allclose(path.chi, mf.chi_1, rtol=1e-6) and path.gradient_ratio == math.inf
    text = _text(summary_table("tanh", 1e30, 0.0, 100))
    assert "exploding" in text and "vanishing" not in text
    q_row = next(line for line in text.splitlines() if line.strip().startswith("│ q*"))
    assert "1e+30" in q_row and "∞" not in q_row


@pytest.mark.parametrize("q", [1e20, 1e30, 1e80, 1e300])
def test_quadrature_unresolved_at_huge_q(q):
    """Was: E[sech⁴(√q z)] = 0 for q ≥ 1e30 (the step of width 1/√q fell between nodes).
    Reference: the asymptotes E[φ′²] = (4/3)/√(2πq), dV/dq = 1/(√(2π) q^1.5) for tanh."""
    act = resolve("tanh")
    assert float(D(act, q)) * math.sqrt(q) == pytest.approx(4 / 3 / SQRT_2PI, rel=1e-6)
    if q <= 1e200:  # beyond, dV/dq itself is below the smallest float64
        assert float(dV(act, q)) * q * math.sqrt(q) == pytest.approx(1 / SQRT_2PI, rel=1e-6)
    assert float(V(act, q)) == pytest.approx(1.0, rel=1e-9)


def test_q_star_beyond_1e10_was_reported_as_infinite():
    # tanh: q* = σ_w² E[tanh²(√q* z)] + σ_b², 1 − E[tanh²] ≈ √(2/π)·ln… tiny at q = 1e12
    assert q_star("tanh", 1e12, 0.0) == pytest.approx(1e12, rel=1e-5)
    assert q_star("relu", 2.5, 0.0) == math.inf  # a true divergence stays one


@pytest.mark.parametrize(
    ("w", "b", "q0", "match"),
    [
        (1e41, 0.0, 1.0, "sigma_w2"),
        (1.0, 1e41, 1.0, "sigma_b2"),
        (math.inf, 0.0, 1.0, "sigma_w2"),
        (1.0, math.nan, 1.0, "sigma_b2"),
        (-1e-9, 0.0, 1.0, "sigma_w2"),
        (True, 0.0, 1.0, "sigma_w2"),
        (1.0, 0.0, 1e41, "q0"),
        (1.0, 0.0, math.nan, "q0"),
        (1.0, 0.0, "1", "q0"),
    ],
)
def test_out_of_range_variances_were_accepted_or_overflowed(w, b, q0, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        propagate("tanh", w, b, 10, q0=q0)
    assert "1e+40" in str(info.value) or "number" in str(info.value)


@pytest.mark.parametrize("depth", [0, -3, 2.5, True, "10", None])
def test_bad_depth_is_refused(depth):
    with pytest.raises(InvalidInputError, match="depth"):
        propagate("relu", 2.0, 0.0, depth)


def test_diverged_relu_length_gave_nan_gradient_ratio():
    """Was: q overflows to ∞ after a few layers, χ there became nan, the ratio nan. ReLU's
    χ = σ_w²/2 at any q, so the ratio is (σ_w²/2)^(L−1): +∞ in float64 here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        path = propagate("relu", 1e30, 0.0, 50)
        assert np.isinf(path.q[-1]) and np.all(path.chi == 5e29)
        assert path.gradient_ratio == math.inf
        assert chi_1("relu", 1e30, 0.0) == 5e29
    assert chi_1(lambda x: x**2, 2.5, 0.1) == math.inf  # D grows without bound: no limit


def test_critical_tanh_without_bias_had_finite_xi_c_9e15():
    mf = mean_field("tanh", 1.0, 0.0)
    assert mf.phase == "critical" and mf.xi_c == math.inf and mf.xi_q == math.inf


def test_odd_activation_without_bias_had_c_star_minus_1e_13():
    assert c_star("tanh", 2.5, 0.0) == 0.0
    assert c_star("erf", 1.0, 0.0) == 0.0


def test_critical_line_for_a_large_bias_was_not_found():
    """Was: "no critical point ... up to 1e6". For σ_b² ≫ σ_w² tanh has q* ≈ σ_b², so
    χ₁ ≈ σ_w² (4/3)/√(2π σ_b²) = 1 at σ_w² ≈ 1.88 σ_b."""
    w = critical_sigma_w2("tanh", 1e30)
    assert w == pytest.approx(SQRT_2PI * 0.75 * 1e15, rel=1e-3)
    assert chi_1("tanh", w, 1e30) == pytest.approx(1.0, rel=1e-9)


def test_zero_and_tiny_weights_warned_or_divided_by_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert propagate("tanh", 0.0, 0.0, 10).gradient_ratio == 0.0
        assert mean_field("tanh", 0.0, 0.0).chi_1 == 0.0
        spread = norm_spread("tanh", 1e-300, 0.0, widths=64, depth=3)
        assert np.isnan(spread.rel_std[1:]).all()  # σ_w² q = 1e-600: exactly 0 in float64


def test_vanishing_signal_stuck_at_1e_230_and_its_spread_underflowed():
    """Was: E[φ(√q z)²] took q < 1e-200 as 1e-200, so q^l stopped at 1e-230; and the spread
    squared q (1e-300² = 0), so a tiny signal had relative spread 0 or nan. Tanh is linear
    near 0, so the chain is the linear one: q^l = σ_w²^l, rel spread √((1 + 2/n)^l − 1)."""
    q = propagate("tanh", 1e-30, 0.0, 10).q
    np.testing.assert_allclose(q, [10.0 ** (-30 * k) for k in range(1, 11)], rtol=1e-9)
    assert propagate("tanh", 1e-30, 0.0, 11).q[-1] == 0.0  # 1e-330: below float64
    tiny = norm_spread("tanh", 1e-100, 0.0, widths=64, depth=2).rel_std
    np.testing.assert_allclose(tiny, [((1 + 2 / 64) ** k - 1) ** 0.5 for k in (1, 2)], rtol=1e-6)


def test_huge_relu_signal_spread_overflowed():
    """ReLU is homogeneous, so the relative spread does not depend on the scale: σ_w² = 1e40
    spreads as He's σ_w² = 2 until q itself overflows float64 (layer 8 here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        huge = norm_spread("relu", 1e40, 0.0, widths=64, depth=9).rel_std
    he = norm_spread("relu", 2.0, 0.0, widths=64, depth=9).rel_std
    np.testing.assert_allclose(huge[:7], he[:7], rtol=1e-9)
    assert np.isnan(huge[7:]).all()


def test_spectrum_prediction_with_a_huge_bias_refused_its_own_derived_q0():
    s = spectrum_prediction("linear", 1e-12, 1e40, 4)
    assert s.mean_sq == pytest.approx(1e-48, rel=1e-6)


def test_predict_of_a_model_scaled_by_1e20_gave_nan_chi():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e20)
    pred = predict(model)
    assert np.isfinite(pred.chi[0]) and pred.chi[0] > 1e30


@pytest.mark.parametrize(
    ("activation", "match"),
    [
        (torch.log, "NaN/Inf at finite inputs"),
        (torch.sqrt, "NaN/Inf at finite inputs"),
        (lambda x: torch.full_like(x, math.nan), "NaN/Inf"),
        (lambda x: x.sum(), "elementwise"),
        (nn.Softmax(dim=-1), "elementwise"),
        (42, "activation"),
        ("tahn", "Did you mean 'tanh'"),
    ],
)
def test_bad_activation_said_not_elementwise_for_log(activation, match):
    with pytest.raises(GradprobeError, match=match):
        mean_field(activation, 1.5, 0.1)


def test_prelu_module_failed_on_a_float64_tensor():
    act = resolve(nn.PReLU(init=0.2))
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    assert torch.allclose(act(x), torch.nn.functional.leaky_relu(x, 0.2))
    assert chi_1(nn.PReLU(init=0.2), 2.0, 0.0) == pytest.approx(2.0 * (1 + 0.04) / 2, rel=1e-6)


def test_exp_activation_had_c_star_minus_one():
    mf = mean_field(torch.exp, 2.5, 0.1)  # V(q) = e^{2q}: the length diverges at once
    assert mf.q_star == math.inf and mf.chi_1 == math.inf and math.isnan(mf.c_star)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma_w2": ["a", "b"]},
        {"sigma_w2": [[1.0, 2.0]]},
        {"sigma_w2": []},
        {"sigma_b2": [0.0, math.nan]},
        {"sigma_w2": [1.0, 1e6]},
        {"q0": -1.0},
        {"depth": 0},
    ],
)
def test_phase_diagram_bad_grid_raised_raw_numpy_errors(kwargs):
    with pytest.raises(InvalidInputError):
        phase_diagram("tanh", **{"sigma_w2": [1.0, 2.0], "sigma_b2": [0.0], "depth": 5, **kwargs})


def test_phase_diagram_switched_the_users_matplotlib_backend(tmp_path):
    """theory draws nothing; the report figure uses its own Agg canvas, so a user's backend
    (here 'template', set before) is kept."""
    script = (
        "import matplotlib; matplotlib.use('template');"
        "from gradprobe.theory import phase_diagram;"
        "from gradprobe.report.figures.phase import plot_phase_diagram;"
        "d = phase_diagram('relu', [1.0, 2.0, 3.0], [0.0, 0.1], depth=5);"
        f"plot_phase_diagram(d, {str(tmp_path / 'p.png')!r}, point=(2.0, 0.0));"
        "import sys; print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["template", "False"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_theory_plotted_and_switched_backends():
    for path in SRC.rglob("*.py"):
        assert "matplotlib.use(" not in path.read_text(), path
    for path in (SRC / "theory").glob("*.py"):
        assert "matplotlib" not in path.read_text(), f"{path.name}: theory computes only"


def _theory_imports() -> dict[str, set[str]]:
    """theory module -> theory modules it imports (also inside functions)."""
    graph = {}
    for path in (SRC / "theory").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
        graph[path.stem] = deps - {path.stem}
    return graph


def test_finite_width_and_trajectory_imported_each_other():
    graph = _theory_imports()
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError(f"import cycle in theory: {' -> '.join([*trail, node])}")
        if state.get(node) == 2 or node not in graph:
            return
        state[node] = 1
        for dep in graph[node]:
            visit(dep, [*trail, node])
        state[node] = 2

    for module in graph:
        visit(module, [])
    assert "trajectory" not in graph["finite_width"]


def _tanh_stack():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))


def _nan_weight():
    model = _tanh_stack()
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    return model


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_nan_weight, "NaN/Inf weights"),
        (lambda: nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2)), "not initialised"),
        (lambda: nn.Sequential(nn.Linear(0, 4), nn.ReLU(), nn.Linear(4, 2)), "no weights"),
        (lambda: _tanh_stack().to("meta"), "'meta' device"),
    ],
)
def test_predict_crashed_or_warned_on_unusual_weights(make, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: init of a 0-sized tensor
        model = make()
    with pytest.raises(InvalidInputError, match=match):
        predict(model)


def test_predict_refused_a_bare_linear_and_a_prelu():
    one = predict(nn.Linear(4, 2))
    assert len(one.layers) == 1 and one.layers[0].kind == "Linear"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(init=0.1), nn.Linear(4, 2))
    assert predict(model).layers[0].activation.startswith("prelu(0.1")


def test_predict_of_a_half_model_on_a_huge_input_divided_by_zero():
    """tanh saturates at q = 1e300: its output scale is 1, and the finite-width closure
    must not divide by its square taken in units of q (1e-600 = 0)."""
    model = _tanh_stack().half()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        layers = predict(model, 1e300).layers
    assert all(np.isfinite(layer.q_rel_std) for layer in layers)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: length_map("tanh", -1.0, 1.0, 0.0), "q must be a variance"),
        (lambda: length_map("tanh", [1.0, math.nan], 1.0, 0.0), "q must be a variance"),
        (lambda: length_map("tanh", "a", 1.0, 0.0), "array of numbers"),
        (lambda: correlation_map("tanh", 2.0, 1.5, 0.1), r"c must be a correlation in \[-1, 1\]"),
        (lambda: correlation_map("tanh", math.nan, 1.5, 0.1), "c must be a correlation"),
        (lambda: chi_c("tanh", -3.0, 1.5, 0.1), "c must be a correlation"),
        (lambda: chi_1("tanh", 1.5, 0.1, q=-1.0), "q must be a finite second moment"),
        (lambda: norm_spread("relu", 2.0, 0.0, True, depth=3), "widths must be layer widths"),
        (lambda: norm_spread("relu", 2.0, 0.0, 8, depth="3"), "depth must be an integer"),
        (lambda: norm_spread("relu", 2.0, 0.0, [[8, "a"]]), "widths"),
    ],
)
def test_out_of_domain_q_and_c_were_clamped_or_silently_wrong(call, match):
    """Was: q = −1 gave 1e-300, q = NaN a number, c = 2 was clamped to 1, widths=True was one
    layer of width 1: each is now refused, naming the argument and its domain."""
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_jacobian_of_a_nan_input_raised_a_linalg_error():
    model = random_mlp("tanh", 4, 2, 1.0)
    with pytest.raises(InvalidInputError, match="NaN/Inf"):
        jacobian_spectrum(model, torch.tensor([math.nan, 1.0, 1.0, 1.0]))
    linear = random_mlp("linear", 4, 2, 1.0)
    with torch.no_grad():
        for layer in (linear[0], linear[2]):
            layer.weight.fill_(1e30)  # J = W₂W₁ has entries 4e60: past float32
    with pytest.raises(InvalidInputError, match="Jacobian has NaN/Inf"):
        jacobian_spectrum(linear, torch.ones(4))


def test_critical_line_of_a_flat_activation_warned_divide_by_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        line = phase_diagram(torch.sign, [1.0, 3.0], [0.0], depth=3).critical_line()
    assert np.isnan(line).all()  # φ′ = 0 almost everywhere: χ₁ = 0, never critical
