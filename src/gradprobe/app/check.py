"""``gradprobe check``: load the model and inputs, check, print the table and findings."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from ..check import check
from ..errors import InvalidInputError
from ..fix import try_remedies
from ..report.terminal import console, findings_table
from ._factory import load_model, load_tensor_file, parse_kwargs, parse_shape

_LOSSES = {"auto": None, "mse": F.mse_loss, "ce": F.cross_entropy}


def run_check(
    factory, input_shape, input_path, target_path, loss, kwargs, try_inits, as_json, seed, html=None
):
    """Returns the exit status: 0 healthy, 1 findings of severity warning/error.

    ``html``: also write the self-contained HTML report there (with theory's prediction
    when the model is a plain stack: the same one the table shows)."""
    if loss not in _LOSSES:
        raise InvalidInputError(f"--loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    if (input_shape is None) == (input_path is None):
        raise InvalidInputError("give exactly one of --input-shape and --input")
    torch.manual_seed(seed)
    model = load_model(factory, parse_kwargs(kwargs))
    if input_path is not None:
        inputs = load_tensor_file(input_path)
    else:
        inputs = torch.randn(
            parse_shape(input_shape), generator=torch.Generator().manual_seed(seed)
        )
    target = None if target_path is None else load_tensor_file(target_path, "--target")
    if _LOSSES[loss] is not None and target is None:
        raise InvalidInputError(f"--loss {loss} needs a --target tensor")
    result = check(model, inputs, target, _LOSSES[loss])
    findings = result.findings
    if try_inits:
        result.ranking = try_remedies(model, inputs, target, _LOSSES[loss])
    ranking = result.ranking
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=float))
    else:
        out = console()
        out.print(result.table())
        out.print(findings_table(findings))
        if ranking is not None:
            out.print(ranking)
            out.print(f"[bold]apply the best:[/bold] {ranking.best.code}", markup=True)
    if html is not None:
        path = result.save_html(html)
        if not as_json:
            console().print(f"report: {path}")
    return 0 if result.healthy else 1
