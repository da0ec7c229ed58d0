"""``gradprobe demo``: the seed's story, chapter by chapter, in the terminal and in OUT.

The chapters are registered in story order by the modules imported below (chapter 1 in
:mod:`.demo_chain`, chapters 2-5 in :mod:`.demo_story`); a later capability appends its
own with :func:`~gradprobe.app._chapters.chapter`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.rule import Rule

from ..errors import InvalidInputError
from ..report.terminal import console
from . import demo_chain, demo_story
from ._chapters import CHAPTERS, Chapter, chapter

__all__ = ["CHAPTERS", "Chapter", "chapter", "demo_chain", "demo_story", "run_demo"]


def run_demo(
    out: str | Path = "gradprobe-demo", seed: int = 0, chapters: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Run the chapters (all, or those named) in order; return ``{chapter: numbers}``."""
    known = [c.name for c in CHAPTERS]
    wanted = known if chapters is None else list(chapters)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise InvalidInputError(f"unknown demo chapter(s) {unknown}; the chapters are {known}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(f"cannot create the demo folder {out}: {err}; pass --out") from err
    con = console()
    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for number, ch in enumerate(c for c in CHAPTERS if c.name in wanted):
        con.print(Rule(f"[bold]Chapter {number + 1}. {ch.title}"))
        results[ch.name] = ch.run(out, seed)
    report = _write_report(out, results)
    con.print(f"\nFigures and tables in {out}/ ({time.perf_counter() - start:.1f} s).")
    if report is not None:
        con.print(f"Report: {report}")
    return results


def _write_report(out: Path, results: dict[str, dict[str, Any]]) -> Path | None:
    """report.html: the checked model's report (chapter 5) with every chapter's figures; None
    when chapter 5 did not run."""
    checked = results.get("check")
    if checked is None:
        return None
    from ..report.html import write_html

    titles = {c.name: c.title for c in CHAPTERS}
    extra = [
        (f"{titles[name]} ({Path(f).name})", f)
        for name, numbers in results.items()
        for f in numbers.get("files", [])
        if str(f).endswith(".png")
    ]
    result, fixed = checked["result"], checked["fixed"]
    story = [
        "gradprobe demo: the story of vanishing and exploding gradients, chapter by chapter; "
        "the figures below are the chapters'. The findings, layer table and run figures are "
        "those of chapter 5's broken model (a 12-layer ReLU net drawn from N(0, 1)).",
        f"After gp.init.apply(model, {checked['scheme']!r}) the re-check is "
        f"{'healthy' if fixed.healthy else 'still not healthy'}.",
    ]
    return write_html(
        result.run,
        out / "report.html",
        result.findings,
        title="gradprobe demo",
        extra=extra,
        story=story,
    )
