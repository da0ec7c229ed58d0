"""The ``gradprobe`` command line: wires the parts together, holds no logic of its own.

Every GradprobeError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import GradprobeError

app = typer.Typer(
    name="gradprobe",
    help="See why a deep network's gradients vanish or explode, and fix it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the figures and report")] = Path(
        "gradprobe-demo"
    ),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """The story end to end: vanishing, exploding and the cure, with figures in OUT."""
    from .report.demo import run_demo

    run_demo(out=out, seed=seed)


@app.command()
def inits(
    pattern: Annotated[str | None, typer.Argument(help="glob on scheme names")] = None,
) -> None:
    """The weight-initialisation zoo: every scheme with its formula and paper."""
    from .init import schemes_table
    from .report.terminal import console

    console().print(schemes_table(pattern))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; GradprobeError -> one line, exit 2."""
    try:
        app(args=argv, standalone_mode=False)
    except GradprobeError as err:
        print(f"gradprobe: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
