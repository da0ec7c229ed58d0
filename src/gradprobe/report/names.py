"""Layer and type names as a report shows them: control characters escaped, and shortened
to fit a column or an axis label without two names ever reading alike."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from rich.cells import cell_len

ELLIPSIS = "…"


def printable(name: str) -> str:
    """``name`` with control characters escaped (a newline in a ModuleDict key must not
    break a table row); everything else, unicode included, as it is."""
    if not any(unicodedata.category(ch) == "Cc" for ch in name):
        return name
    return "".join(
        ch.encode("unicode_escape").decode() if unicodedata.category(ch) == "Cc" else ch
        for ch in name
    )


def _split(name: str, kind: str) -> tuple[list[str], str]:
    """A layer name's dotted parts, or a type name's CamelCase words."""
    if kind == "text":
        return re.findall(r"[A-Z][a-z0-9]*|[^A-Z]+", name) or [name], ""
    return name.split("."), "."


def _abbreviate(name: str, width: int, level: int, kind: str) -> str:
    """``name`` in ``width`` cells where it can be: the first ``level`` parts before the
    last shortened to their first letter (indices kept whole), then, if still too long, the
    middle cut, keeping the first character and the longest tail that fits."""
    if cell_len(name) <= width:
        return name
    parts, sep = _split(name, kind)
    done = 0
    for i in range(len(parts) - 1):
        if done == level:
            break
        if not parts[i].isdigit() and len(parts[i]) > 1:
            parts[i] = parts[i][0]
            done += 1
    short = sep.join(parts)
    if cell_len(short) <= width:
        return short
    head, tail = short[0], short[1:]
    while tail and cell_len(head) + 1 + cell_len(tail) > width:
        tail = tail[1:]
    return head + ELLIPSIS + tail


def shorten(names: Iterable[str], width: int, kind: str = "name") -> dict[str, str]:
    """Each name -> how it is shown in ``width`` cells (``kind`` "name": dotted layer names;
    "text": CamelCase type names). The names too long for ``width`` are all shortened the
    same way (as few leading parts abbreviated as makes them fit). Distinct names stay
    distinct: a name whose short form another shares is widened until none does (its cell
    then wraps), so ``encoder.layers.0.linear1`` and ``encoder.layers.0.linear2`` never both
    read ``encoder.layers.0.l…``."""
    names = list(dict.fromkeys(names))
    width = max(width, 3)
    long = [n for n in names if cell_len(n) > width]
    deepest = max((len(_split(n, kind)[0]) for n in long), default=0)
    level = next(
        (k for k in range(deepest) if all(ELLIPSIS not in _abbreviate(n, width, k, kind)
                                           for n in long)),
        deepest,
    )  # fmt: skip
    widths = dict.fromkeys(names, width)
    while True:
        shown = {n: _abbreviate(n, widths[n], level, kind) for n in names}
        groups: dict[str, list[str]] = {}
        for n, s in shown.items():
            groups.setdefault(s, []).append(n)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return shown
        for group in clashes:
            for n in group:
                if shown[n] != n:
                    widths[n] += 1


def for_matplotlib(name: str) -> str:
    """A name as plain text in a matplotlib label: ``$`` escaped (two of them would start
    mathtext: a layer ``cost$a$`` shown as math, or a parse error when the figure is saved)."""
    return printable(name).replace("$", r"\$")
