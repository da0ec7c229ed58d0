"""Terminal tables that fit the console they are printed on.

A number is never cut: a column is as wide as its longest number (at most 10 characters,
:func:`~gradprobe.report.summary.fmt`). Where the columns do not all fit, the least
important are left out and the caption names them. A layer or type name that does not fit
is shortened by :func:`~gradprobe.report.names.shorten` (``encoder.layers.0.linear1`` →
``e.l.0.linear1``); two different names never read alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ..run import Run
from .names import printable, shorten
from .summary import BY_KEY, cell, fmt, pct, per_layer

__all__ = [
    "FitTable",
    "check_table",
    "layer_table",
    "printable",
    "ranking_cells",
    "ranking_table",
    "shorten",
]


@dataclass
class Col:
    """A column of a :class:`FitTable`: ``kind`` "name" (a layer name, shortened to fit),
    "text" (a type name, shortened to fit), "wrap" (words, e.g. a list of finding kinds:
    wrapped onto more lines, never cut) or "number" (never cut); ``keep``: lower is left
    out first."""

    header: str
    kind: str
    keep: int
    justify: str = "right"


class FitTable(Table):
    """A rich Table that lays itself out for the width it is printed at (see the module).

    It holds every column; printing renders a copy fitted to ``options.max_width``."""

    def __init__(self, columns: list[Col], rows: list[list[str]], *, legend=(), **kwargs) -> None:
        """``legend``: ``(header, what it means)`` pairs, shown under the table for the
        columns that fit."""
        super().__init__(**kwargs)
        self._spec = columns
        self._rows = [[printable(c) for c in r] for r in rows]
        self._legend = list(legend)
        for c in columns:
            self.add_column(c.header, justify=c.justify)
        for r in self._rows:
            self.add_row(*[Text(c) for c in r])

    def __rich_console__(self, console, options):
        yield self.fit(options.max_width)

    def __rich_measure__(self, console, options):
        return self.fit(options.max_width).__rich_measure__(console, options)

    def fit(self, width: int) -> Table:
        """A plain rich Table of at most ``width`` cells: numbers whole, names shortened."""
        keep = list(range(len(self._spec)))
        while True:
            widths = self._widths(keep, width)
            droppable = [i for i in keep if self._spec[i].kind != "name"]
            if widths is not None:
                shown = self._shorten_names(keep, widths)
                fits = all(cell_len(v) <= widths[i] for i in shown for v in shown[i].values())
                if fits or not droppable:
                    break
            elif not droppable:
                break
            keep.remove(min(droppable, key=lambda i: self._spec[i].keep))
        if widths is None:  # even the name alone does not fit: give it what there is
            widths = {i: max(4, width - 4) for i in keep}
            shown = self._shorten_names(keep, widths)
        kept = {self._spec[i].header for i in keep}
        dropped = [self._spec[i].header for i in range(len(self._spec)) if i not in keep]
        meanings = [f"{h}: {text}" for h, text in self._legend if h in kept]
        notes = ["; ".join(meanings) + "."] if meanings else []
        if dropped:
            notes.append(
                f"Left out at {width} columns: {', '.join(dropped)} (a wider terminal shows them)."
            )
        table = Table(
            title=self.title,
            title_justify="left",
            caption="\n".join(notes) or None,
            caption_justify="left",
            box=box.HEAVY_HEAD,
            padding=(0, 1),
        )
        for i in keep:
            c = self._spec[i]
            if c.kind == "text":
                shown[i] = shorten((r[i] for r in self._rows), widths[i], "text")
            table.add_column(
                Text(c.header, justify=c.justify), justify=c.justify, width=widths[i],
                overflow="fold",
            )  # fmt: skip
        for r in self._rows:
            table.add_row(*[Text(shown[i][r[i]] if i in shown else r[i]) for i in keep])
        return table

    def _shorten_names(self, keep: list[int], widths: dict) -> dict[int, dict[str, str]]:
        """Each name column's names as shown (:func:`shorten` keeps them distinct), its width
        widened in ``widths`` with the text columns' room above their floor when a shown
        name is longer than its column."""
        shown = {}
        for i in keep:
            if self._spec[i].kind == "name":
                shown[i] = shorten((r[i] for r in self._rows), widths[i])
                self._widen(i, shown[i], widths, keep)
        return shown

    def _widen(self, i: int, shown: dict[str, str], widths: dict, keep: list[int]) -> None:
        """A name kept distinct by :func:`shorten` may be longer than its column: take the
        cells it lacks from the text columns' room above their floor, so it stays on one line
        (it folds only when there is none)."""
        lack = max((cell_len(v) for v in shown.values()), default=0) - widths[i]
        for j in keep:
            if lack <= 0:
                break
            if self._spec[j].kind in ("text", "wrap"):
                give = min(lack, widths[j] - self._floor(j))
                if give > 0:
                    widths[j] -= give
                    widths[i] += give
                    lack -= give

    def _widths(self, keep: list[int], width: int) -> dict[int, int] | None:
        """Column widths for the columns ``keep`` within ``width``, or None if they cannot
        all fit with the numbers whole, a name column >= 12 cells and a text one >= 10."""
        need = {}
        for i in keep:
            c = self._spec[i]
            words = max((cell_len(w) for w in c.header.split()), default=1)
            longest = max((cell_len(r[i]) for r in self._rows), default=0)
            need[i] = max(words, longest, 1)
        free = width - (3 * len(keep) + 1)  # a padding cell either side, one border between
        numbers = sum(need[i] for i in keep if self._spec[i].kind == "number")
        flexible = [i for i in keep if self._spec[i].kind != "number"]
        floor = {i: min(need[i], self._floor(i)) for i in flexible}
        if numbers + sum(floor.values()) > free:
            return None
        out = dict(need)
        spare = free - numbers
        if sum(need[i] for i in flexible) <= spare:
            return out
        # share the room: text columns up to a third of it, names the rest
        for i in flexible:
            if self._spec[i].kind in ("text", "wrap"):
                out[i] = max(floor[i], min(need[i], spare // 3))
        rest = spare - sum(out[i] for i in flexible if self._spec[i].kind != "name")
        names = [i for i in flexible if self._spec[i].kind == "name"]
        for i in names:
            out[i] = max(floor[i], rest // max(len(names), 1))
        return out

    def _floor(self, i: int) -> int:
        """The narrowest a flexible column may get: a name 12 cells, a type name 10, wrapped
        words their longest word (at most 20: a longer one folds)."""
        kind = self._spec[i].kind
        if kind == "wrap":
            words = [w for r in self._rows for w in r[i].split()]
            return max(10, min(20, max((cell_len(w) for w in words), default=0)))
        return 12 if kind == "name" else 10


# ------------------------------------------------------------------ the two per-layer tables

#: how long a column stays as the terminal narrows (higher stays longer)
_KEEP = {
    "act_std": 90,
    "grad_rms": 85,
    "grad_ratio": 80,
    "theory_ratio": 79,  # beside the measured ratio it predicts
    "dead": 75,
    "saturated": 75,
    "nonfinite": 70,
    "weight_grad": 50,
    "update_ratio": 45,
    "act_max": 40,
}
_TYPE_KEEP = 60


def layer_table(run: Run, step: int | None = None, title: str | None = None) -> FitTable:
    """The per-layer table of a stored run at ``step`` (default: the last logged step with
    numbers): the columns it recorded, fitted to the terminal when printed."""
    t = per_layer(run, step)
    if title is None:
        title = f"layers at step {t.step}" if t.step is not None else "no logged step"
    columns = t.columns
    keep = dict(_KEEP)
    for key in ("saturated", "dead", "nonfinite"):
        values = [r[key] for r in t.rows if r.get(key) is not None]
        if all(v == 0 for v in values):
            keep[key] = 10  # a column of zeros goes first
        elif any(not v < 0.1 for v in values):  # a share a finding is made of (or NaN) stays
            keep[key] = 88
    if keep["nonfinite"] > 10:
        keep["nonfinite"] = 95  # NaN/Inf is the first thing to see
    specs = [Col("layer", "name", 100, "left"), Col("type", "text", _TYPE_KEEP, "left")]
    specs += [Col(c.title, "number", keep[c.key]) for c in columns]
    rows = [[r["layer"], r["type"], *[cell(c.key, r.get(c.key)) for c in columns]] for r in t.rows]
    legend = _legend(columns, t.reference)
    return FitTable(specs, rows, legend=legend, title=title, title_justify="left")


def check_table(run: Run, loss: float) -> FitTable:
    """The table ``print(gp.check(...))`` shows: :func:`layer_table` of the checked step,
    titled with the loss."""
    return layer_table(run, title=f"gradprobe check: loss {fmt(loss)}")


def _legend(columns, reference: str | None) -> list[tuple[str, str]]:
    """What the gradient columns measure (one is a norm, one an rms, one a ratio of rms),
    and what the percentages count."""
    keys = {c.key for c in columns}
    out = []
    if "grad_rms" in keys:
        out.append(("∂L/∂out rms", BY_KEY["grad_rms"].means))
    if "grad_ratio" in keys and reference is not None:
        last = printable(reference)
        out.append(("rms ÷ last", f"that rms over the last weight layer's ({last})"))
    for key in ("theory_ratio", "weight_grad", "saturated", "dead", "nonfinite"):
        if key in keys:
            out.append((BY_KEY[key].title, BY_KEY[key].means))
    return out


# ------------------------------------------------------------------ the remedy ranking

#: the ranking's columns, for the terminal and the HTML alike: (row key, header, kind, keep)
RANKING_COLUMNS = (
    ("rank", "rank", "number", 95),
    ("scheme", "scheme", "wrap", 100),
    ("score", "score", "number", 90),
    ("spread", "±", "number", 40),
    ("ratio", "grad ratio", "number", 60),
    ("saturated", "max sat", "number", 50),
    ("dead", "max dead", "number", 50),
    ("findings", "findings", "wrap", 80),
)
OWN_MARK = " ◀ own init"  # the model as given: its own weights


def ranking_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The headers and the cells of the remedy ranking (``fix.ranking.Ranking.rows()``,
    best first): the same text in the terminal and in the HTML report. The model as given
    is marked as the model's own init; a candidate that failed has no score."""
    headers = [h for _, h, _, _ in RANKING_COLUMNS]
    out = []
    for r in rows:
        failed = r.get("error") is not None or not _finite_number(r.get("score"))
        cells = {
            "rank": str(r["rank"]),
            "scheme": r["scheme"] + (OWN_MARK if r.get("own") else ""),
            "score": "failed" if failed else fmt(r["score"]),
            "spread": "" if failed else fmt(r["spread"] / 2),
            "ratio": fmt(r.get("ratio")),
            "saturated": pct(r.get("saturated")),
            "dead": pct(r.get("dead")),
            "findings": str(r.get("findings", "")),
        }
        out.append([cells[key] for key, *_ in RANKING_COLUMNS])
    return headers, out


def ranking_table(rows: list[dict], title: str | None = None) -> FitTable:
    """The remedy ranking as a terminal table (:func:`ranking_cells`), the pick first."""
    headers, cells = ranking_cells(rows)
    specs = [
        Col(h, kind, keep, "right" if kind == "number" else "left")
        for h, (_, _, kind, keep) in zip(headers, RANKING_COLUMNS, strict=True)
    ]
    legend = [
        ("score", "health at init, lower is healthier (0: no depth drift, nothing saturated "
         "or dead, no finding)"),
        ("±", "half the spread over the init draws"),
        ("grad ratio", "per-example ∂L/∂h, first block over last"),
    ]  # fmt: skip
    title = title or "remedies re-checked on a copy, best first (rank 1 is the pick)"
    return FitTable(specs, cells, legend=legend, title=title, title_justify="left")


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
