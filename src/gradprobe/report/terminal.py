"""Terminal output with rich: one console, tables, progress bars."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@functools.cache
def console() -> Console:
    return Console(highlight=False)


def progress(**kwargs) -> Progress:
    """A progress bar for anything that takes more than a couple of seconds."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        transient=kwargs.pop("transient", False),
        **kwargs,
    )


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_table(findings, verdict=None, training: bool = False):
    """Findings in colour, one block each: severity, kind, where, when (the onset, or a
    symptom's step range; ``training``: the run has more than one step); what was measured,
    with the causes a symptom was linked to; the remedy and its code. Blocks wrap at the
    console's width (a long word or a line of code folds onto the next line; nothing is
    cut). ``verdict``
    (:func:`~gradprobe.report.summary.verdict` of the run): with no findings, "look healthy"
    is said only when the verdict is (a run with no recorded step has no findings either)."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    from .names import printable
    from .summary import causes, when

    findings = list(findings)
    if not findings:
        if verdict is not None and verdict.word != "healthy":
            return Text("No findings.")
        return Text("No findings: gradients and activations look healthy.", style="green")
    blocks = [Text(f"findings ({len(findings)})", style="italic")]
    for f in findings:
        where = printable(f.layer) if f.layer is not None else "model"
        if getattr(f, "time_step", None) is not None:
            where += f" (t={f.time_step})"
        head = Text(overflow="fold")
        head.append(f.severity, style=_SEVERITY_STYLE.get(f.severity, ""))
        head.append(f"  {f.kind}", style="bold")
        seen = when(f, training) or (f"step {f.step}" if f.step is not None else "")
        head.append(f"  at {where}" + (f", {seen}" if seen else ""))
        blocks.append(head)
        message = printable(f.message)
        if causes(f) and not all(c.summary in message for c in f.causes):  # a hand-made one
            message += f" (after {causes(f)})"
        blocks.append(Padding(Text(message, overflow="fold"), (0, 0, 0, 4)))
        remedy = getattr(f.remedy, "text", str(f.remedy))
        if remedy:
            blocks.append(Padding(Text("remedy: " + remedy, overflow="fold"), (0, 0, 0, 4)))
        code = getattr(f.remedy, "code", None)
        if code:
            blocks.append(Padding(Text(code, style="bold", overflow="fold"), (0, 0, 0, 6)))
    return Group(*blocks)
