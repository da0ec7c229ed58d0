"""A model's mean-field prediction as rows for a run's meta (``run.meta["theory"]``).

Theory computes; it writes nothing itself. :func:`prediction_rows` gives the rows and
:func:`attach` hands them to a writable run (a ``RunWriter`` the caller owns, inside its
``with`` block), which stores them.
"""

from __future__ import annotations

import math

from .trajectory import predict


def prediction_rows(model, input_var: float = 1.0) -> list[dict] | None:
    """``predict(model, input_var).to_rows()`` with non-finite values as None; None where
    theory refuses the model (not a plain stack)."""
    try:
        rows = predict(model, input_var).to_rows()
    except Exception:  # a prediction is optional: a model theory cannot read gets none
        return None
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in rows
    ]


def attach(run, model, input_var: float = 1.0) -> bool:
    """Store :func:`prediction_rows` in a writable run's meta; False (nothing stored) where
    theory refuses the model."""
    rows = prediction_rows(model, input_var)
    if rows is None:
        return False
    run.set_meta("theory", rows)
    return True
