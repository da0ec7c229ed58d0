"""Store a model's mean-field prediction with a recorded run (``run.meta["theory"]``)."""

from __future__ import annotations

import math

from .trajectory import predict


def attach(run, model, input_var: float = 1.0) -> bool:
    """``predict(model, input_var).to_rows()`` into a writable run's meta, non-finite values
    as None. False where theory refuses the model (not a plain stack): nothing is stored."""
    try:
        rows = predict(model, input_var).to_rows()
    except Exception:  # a prediction is optional: a model theory cannot read gets none
        return False
    clean = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in rows
    ]
    run.set_meta("theory", clean)
    return True
