"""What every figure shares: a Run from an object or a path, data requirements, the canvas.

A figure reads stored data only. It declares what it needs with :func:`require`; when
the run lacks it, :class:`MissingData` says what is missing and how to record it, and a
report shows that note in place of the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import GradprobeError, InvalidInputError
from ...run import Run

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: quantities an affine layer owns (its output is the pre-activation, ∂L/∂output = δ)
AFFINE_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "Bilinear", "LazyLinear")


class MissingData(GradprobeError):
    """The run does not hold what a figure needs; the message says how to record it."""


def as_run(run: Run | str | Path) -> Run:
    """A :class:`Run` from a Run or a run path (file, or folder holding ``run.sqlite``)."""
    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        return Run.load(run)
    raise InvalidInputError(
        f"figures need a gradprobe Run or the path of a stored run, got {type(run).__name__}"
    )


def require(run: Run, quantity: str, stat: str, *, how: str, steps: int = 1) -> None:
    """Raise :class:`MissingData` unless ``run`` holds (quantity, stat) on >= ``steps`` steps."""
    if (quantity, stat) not in set(run.quantities()):
        raise MissingData(f"the run has no {quantity}/{stat}; {how}")
    _, logged, _ = run.matrix(quantity, stat)
    if len(logged) < steps:
        raise MissingData(
            f"{quantity}/{stat} is logged on {len(logged)} step(s), the figure needs {steps}; {how}"
        )


def pick_step(run: Run, step: int | None) -> int:
    """``step``, or the last logged step; an unknown step is an error that lists the known."""
    steps = run.steps
    if not steps:
        raise MissingData("the run has no logged step; call probe.step() after backward()")
    if step is None:
        return steps[-1]
    if step not in steps:
        shown = steps if len(steps) <= 10 else [*steps[:5], "...", *steps[-3:]]
        raise InvalidInputError(f"step {step} was not logged; logged steps: {shown}")
    return step


def figure(**kwargs) -> Figure:
    """A Figure on its own Agg canvas, constrained layout: no pyplot state, no backend
    switched (a notebook keeps its own), no figure to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=100, layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG or SVG (from the suffix), creating the folder. An existing folder
    of that name, or a path that cannot be written, is a GradprobeError."""
    path = Path(path)
    if path.suffix.lower() not in {".png", ".svg"}:
        raise InvalidInputError(f"save figures as .png or .svg, got {path.name!r}")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; name the figure file, e.g. {path}/fig.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    except OSError as err:
        msg = f"cannot write the figure to {path}: {err}; pass another path"
        raise GradprobeError(msg) from None
    return path


def short_names(names, width: int = 18) -> list[str]:
    """Layer names short enough for axis labels or a legend, shown together: shortened as
    the tables shorten them (two names never read alike) and safe from mathtext."""
    from ..names import for_matplotlib, shorten

    names = list(names)
    shown = shorten(names, width)
    return [for_matplotlib(shown[n]) for n in names]


def short(name: str, width: int = 18) -> str:
    """One name on its own (see :func:`short_names` for names shown together)."""
    return short_names([name], width)[0]
