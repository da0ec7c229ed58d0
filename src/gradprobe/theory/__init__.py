"""Mean-field theory: what a healthy network's per-layer statistics should look like.

>>> import gradprobe as gp
>>> round(gp.theory.critical_sigma_w2("relu"), 6)
2.0
>>> gp.theory.mean_field("tanh", sigma_w2=1.0, sigma_b2=0.0).phase
'critical'

Papers: Poole et al. 2016, Schoenholz et al. 2017 (maps, χ₁, depth scales),
Pennington, Schoenholz & Ganguli 2017 and Saxe et al. 2014 (Jacobian spectra),
Hanin & Rolnick 2018 (finite-width spread). See docs/THEORY.md.

theory computes only: its figures are in ``gradprobe.report.figures`` (the phase diagram's
ξ_c map: ``gradprobe.report.figures.phase.plot_phase_diagram``).
"""

from __future__ import annotations

from ._activations import Activation, activation_names, resolve
from .attach import attach, prediction_rows
from .finite_width import Spread, norm_spread
from .jacobian import Spectrum, jacobian_spectrum, random_mlp, spectrum_prediction
from .meanfield import (
    CRITICAL_TOL,
    MeanField,
    c_star,
    chi_1,
    chi_c,
    correlation_map,
    critical_sigma_w2,
    length_map,
    mean_field,
    q_star,
    xi_c,
    xi_q,
)
from .phase import PhaseDiagram, phase_diagram
from .trajectory import LayerPrediction, ModelPrediction, Propagation, predict, propagate

__all__ = [
    "CRITICAL_TOL",
    "Activation",
    "LayerPrediction",
    "MeanField",
    "ModelPrediction",
    "PhaseDiagram",
    "Propagation",
    "Spectrum",
    "Spread",
    "activation_names",
    "attach",
    "c_star",
    "chi_1",
    "chi_c",
    "correlation_map",
    "critical_sigma_w2",
    "jacobian_spectrum",
    "length_map",
    "mean_field",
    "norm_spread",
    "phase_diagram",
    "predict",
    "prediction_rows",
    "propagate",
    "q_star",
    "random_mlp",
    "resolve",
    "spectrum_prediction",
    "xi_c",
    "xi_q",
]


def __getattr__(name: str):
    if name == "plot_phase_diagram":  # moved: theory draws nothing
        raise AttributeError(
            "gradprobe.theory.plot_phase_diagram moved to gradprobe.report.figures.phase"
            " (theory computes, report draws): from gradprobe.report.figures.phase import"
            " plot_phase_diagram"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
