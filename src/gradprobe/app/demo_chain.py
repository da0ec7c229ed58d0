"""``gradprobe demo``, chapter 1: the matrix chain ``x = x @ W``, fifty times."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from rich.table import Table

from ..report.terminal import console, progress
from ._chapters import chapter


def _cell(r, layer: int, event_row: bool) -> str:
    for what, first in reversed(r.events()):  # NaN beats Inf beats 0
        if first is not None and layer >= first:
            return f"[bold red]{what}[/]" if event_row else what
    return f"{_fmt(r.std[layer].item())}\n[dim]{_fmt(r.mean[layer].item())}[/]"


def _hits(r) -> str:
    hits = [f"{what} @ {layer}" for what, layer in r.events() if layer is not None]
    return "\n".join(hits) if hits else "never"


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return "0" if x == 0 else f"{x:.1e}"


@chapter("matrix_chain", "The matrix chain: x = x @ W, fifty times")
def _matrix_chain(out: Path, seed: int, depth: int = 50, width: int = 100, seeds: int = 10):
    from ..experiments.matrix_chain import matrix_chain, std_over_seeds
    from ..report.plots import matrix_chain_figure, save

    with progress(transient=True) as bar:  # a few seconds on a busy 2-core machine
        task = bar.add_task("matrix chains", total=seeds + 2)
        chains = matrix_chain(depth=depth, width=width, seed=seed)
        bar.advance(task)
        spread = std_over_seeds(
            ["xavier", "he_relu"], depth, width, seeds, on_seed=lambda _: bar.advance(task)
        )
        figure = matrix_chain_figure(chains, spread)
        png = save(figure, out / "matrix_chain.png")
        bar.advance(task)
    con = console()
    con.print(
        f"x = randn({width}, {width}), then x = x @ W {depth} times, W = N(0,1) × a scale "
        "(the same draws for every scale), in float32."
    )
    finals = {k: v[:, -1] for k, v in spread.items()}
    con.print(_chain_table(chains, finals, seeds))
    xr = chains["xavier_relu"]
    con.print(
        f"[bold]Honestly:[/] √(1/n) keeps x of order 1 but does not hold it at 1. At width "
        f"{width} the std at layer {depth} ranges {finals['xavier'].min():.2f}–"
        f"{finals['xavier'].max():.2f} over {seeds} seeds (with ReLU and √(2/n): "
        f"{finals['he_relu'].min():.2f}–{finals['he_relu'].max():.2f}): each layer multiplies "
        "the squared norm by a random factor near 1, and the product drifts. Wider layers "
        "drift less."
    )
    con.print(
        f"ReLU zeroes half the signal, so √(1/n) + ReLU halves the variance every layer "
        f"(std {_fmt(xr.std[-1].item())} at layer {depth}); He's factor 2 in √(2/n) puts it back."
    )
    table_csv = _write_csv(chains, out / "matrix_chain.csv")
    con.print(f"Figure: {png}   every layer's numbers: {table_csv}")
    return {"chains": chains, "spread": spread, "files": [png, table_csv]}


def _chain_table(chains, finals, seeds: int) -> Table:
    """Rows: every 5th layer and the layers where a chain hit 0/Inf/NaN; then the hits and
    the last layer's std over seeds."""
    depth = max(r.depth for r in chains.values())
    events = {layer for r in chains.values() for _, layer in r.events() if layer is not None}
    table = Table(title="std of x per layer [dim](mean below)[/]", title_justify="left")
    table.add_column("layer", justify="right")
    for r in chains.values():
        table.add_column(r.setting.short, justify="right")
    for layer in sorted(set(range(0, depth + 1, 5)) | {depth} | events):
        table.add_row(str(layer), *[_cell(r, layer, layer in events) for r in chains.values()])
    table.add_section()
    table.add_row("hits", *[_hits(r) for r in chains.values()])
    table.add_row(
        f"std@{depth}\n{seeds} seeds",
        *[f"{finals[k].min():.2f}–\n{finals[k].max():.2f}" if k in finals else "" for k in chains],
    )
    return table


def _write_csv(chains, path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "layer", "mean", "std"])
        for name, r in chains.items():
            for layer in range(r.depth + 1):
                writer.writerow([name, layer, r.mean[layer].item(), r.std[layer].item()])
    return path
