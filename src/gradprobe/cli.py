"""The ``gradprobe`` command line: wires the parts together, holds no logic of its own.

Exit status: 0 healthy / done, 1 findings of severity warning or error, 2 bad usage (a
GradprobeError or a usage mistake: one line on stderr, never a traceback), 130 interrupted.
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
    from .app.demo import run_demo

    run_demo(out=out, seed=seed)


@app.command()
def inits(
    pattern: Annotated[str | None, typer.Argument(help="glob on scheme names")] = None,
) -> None:
    """The weight-initialisation zoo: every scheme with its formula and paper."""
    from .init import names, schemes_table
    from .report.terminal import console

    if pattern is not None and not names(pattern):
        raise GradprobeError(
            f"no init scheme matches {pattern!r}; `gradprobe inits` lists them all, and a "
            "pattern is a glob such as 'kaiming*'"
        )
    console().print(schemes_table(pattern))


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="a stored run: run.sqlite or its folder")],
    html: Annotated[Path | None, typer.Option(help="write the HTML report to this file")] = None,
    png: Annotated[Path | None, typer.Option(help="write every figure as PNG in DIR")] = None,
    tensorboard: Annotated[
        Path | None, typer.Option(help="also write TensorBoard event files in DIR")
    ] = None,
) -> None:
    """Terminal summary of a stored run; its figures as PNGs and one self-contained HTML file."""
    from .app.report import run_report

    status = run_report(run, html=html, png=png)
    if tensorboard is not None:
        from .integrations.tensorboard import to_tensorboard

        print(f"tensorboard: {to_tensorboard(run, tensorboard)}")
    raise typer.Exit(status)


@app.command()
def check(
    factory: Annotated[str, typer.Argument(help="MODULE:FACTORY, a class or function")],
    input_shape: Annotated[
        str | None, typer.Option(help="random normal inputs of this shape, e.g. 32,784")
    ] = None,
    input: Annotated[
        Path | None, typer.Option(help="a tensor (or tuple/dict) saved with torch.save")
    ] = None,
    target: Annotated[
        Path | None, typer.Option(help="a target tensor saved with torch.save")
    ] = None,
    loss: Annotated[str, typer.Option(help="auto | mse | ce")] = "auto",
    kwargs: Annotated[str | None, typer.Option(help="JSON keyword arguments for FACTORY")] = None,
    try_inits: Annotated[bool, typer.Option(help="re-check with each init scheme, rank")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print findings as JSON")] = False,
    seed: Annotated[int, typer.Option(help="seed for the model and random inputs")] = 0,
    html: Annotated[
        Path | None, typer.Option(help="also write the self-contained HTML report here")
    ] = None,
) -> None:
    """Probe a model at initialisation: per-layer table, findings, remedies.

    Exit status 0 when healthy, 1 when a warning or error was found, 2 on bad usage.
    """
    from .app.check import run_check

    raise typer.Exit(
        run_check(
            factory, input_shape, input, target, loss, kwargs, try_inits, json_out, seed, html=html
        )
    )


@app.command()
def fix(
    factory: Annotated[str, typer.Argument(help="MODULE:FACTORY, a class or function")],
    data: Annotated[
        Path | None, typer.Option(help="(inputs, targets) saved with torch.save")
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="random inputs of this shape, e.g. 512,20 (with --task)")
    ] = None,
    task: Annotated[
        str, typer.Option(help="with --input-shape: classes, classes:K or regression")
    ] = "classes",
    steps: Annotated[int, typer.Option(help="training steps per trial")] = 300,
    lr: Annotated[float | None, typer.Option(help="learning rate (adam 1e-3, sgd 1e-2)")] = None,
    optimizer: Annotated[str, typer.Option(help="adam | sgd")] = "adam",
    loss: Annotated[str, typer.Option(help="auto | mse | ce")] = "auto",
    batch_size: Annotated[int, typer.Option(help="mini-batch size")] = 64,
    candidates: Annotated[
        str, typer.Option(help="auto | all | remedy names, comma-separated")
    ] = "auto",
    workers: Annotated[int, typer.Option(help="trials in parallel processes")] = 1,
    executor: Annotated[str, typer.Option(help="local | ray: where the trials run")] = "local",
    address: Annotated[
        str | None, typer.Option(help="with --executor ray: the cluster's HOST:PORT")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="start no trial after SECONDS")] = None,
    kwargs: Annotated[str | None, typer.Option(help="JSON keyword arguments for FACTORY")] = None,
    seed: Annotated[int, typer.Option(help="seed for the model, the data order and trials")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print the trials as JSON")] = False,
    html: Annotated[Path | None, typer.Option(help="also write the HTML report here")] = None,
) -> None:
    """Train the remedies that fit on copies; rank them by outcome.

    Exit status 0 when the best trial is healthy and better than the model as given, 1 when
    no remedy helps, 2 on bad usage.
    """
    from .app.fix import run_fix

    raise typer.Exit(
        run_fix(
            factory,
            data,
            input_shape,
            task,
            kwargs,
            steps=steps,
            lr=lr,
            optimizer=optimizer,
            loss=loss,
            batch_size=batch_size,
            candidates=candidates,
            workers=workers,
            executor=executor,
            address=address,
            budget=budget,
            seed=seed,
            as_json=json_out,
            html=html,
        )
    )


@app.command()
def theory(
    activation: Annotated[
        str, typer.Option(help="tanh, relu, gelu, ... or a torch.nn.functional name")
    ] = "tanh",
    sigma_w2: Annotated[float, typer.Option(help="fan_in × weight variance")] = 1.0,
    sigma_b2: Annotated[float, typer.Option(help="bias variance")] = 0.0,
    depth: Annotated[int, typer.Option(help="number of layers")] = 100,
    q0: Annotated[float, typer.Option(help="mean square of the input")] = 1.0,
    plot: Annotated[Path | None, typer.Option(help="write the phase diagram to this PNG")] = None,
) -> None:
    """Mean-field predictions: q*, χ₁, depth scales, phase and gradient ratio across depth."""
    from .app.theory import run_theory

    raise typer.Exit(run_theory(activation, sigma_w2, sigma_b2, depth, q0, plot))


@app.command("run")
def run_experiment(
    name: Annotated[str | None, typer.Argument(help="experiment name (see --list)")] = None,
    preset: Annotated[str, typer.Option(help="quick | full")] = "quick",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE config override, repeatable")
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for run folders")] = Path("runs"),
    resume: Annotated[bool, typer.Option(help="continue the latest run; skip done units")] = False,
    workers: Annotated[int, typer.Option(help="parallel processes for the sweep")] = 1,
    threads: Annotated[int, typer.Option(help="torch threads per process")] = 1,
    executor: Annotated[str, typer.Option(help="local | ray: where the units run")] = "local",
    address: Annotated[
        str | None, typer.Option(help="with --executor ray: the cluster's HOST:PORT")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the experiments and exit")] = False,
) -> None:
    """Run a registered experiment; writes OUT/NAME/ with run.json, result.json and runs."""
    from .experiments import EXPERIMENTS
    from .experiments._runner import run_from_cli
    from .report.terminal import console

    if list_:
        for exp_name, exp in EXPERIMENTS.items():
            console().print(f"{exp_name:<16} {exp.summary}", markup=False, soft_wrap=True)
        return
    if name is None:
        raise GradprobeError("name an experiment (gradprobe run --list shows them)")
    result = run_from_cli(
        name, preset, set_ or [], out, resume, workers, threads, executor, address
    )
    # soft_wrap: a long path is one line the terminal may wrap, never a path with a newline in it
    console().print(
        f"{name}: done; numbers in {result.folder / 'result.json'}", markup=False, soft_wrap=True
    )


def _click_errors() -> tuple[type[BaseException], ...]:
    """The usage-error classes: typer raises those of the click it bundles (typer._click);
    older typers raise click's own."""
    classes: list[type[BaseException]] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = __import__(name, fromlist=["ClickException"])
        except ImportError:
            continue
        classes.append(module.ClickException)
    return tuple(classes)


def _usage_line(err: BaseException) -> str:
    """One line for a usage mistake, with where to look for the right usage."""
    message = getattr(err, "format_message", lambda: str(err))() or type(err).__name__
    ctx = getattr(err, "ctx", None)
    command = getattr(ctx, "command_path", None) or "gradprobe"
    first = " ".join(str(message).split())
    return f"gradprobe: error: {first} (see `{command} --help`)"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: exit 0 / 1 as the command says, 2 with one line on
    stderr for bad usage (GradprobeError, a usage mistake), 130 when interrupted."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # no command: the help, and the status of a usage mistake
        app(args=["--help"], standalone_mode=False, prog_name="gradprobe")
        raise SystemExit(2)
    try:
        status = app(args=args, standalone_mode=False, prog_name="gradprobe")
        if isinstance(status, int) and status:
            raise SystemExit(status)
    except GradprobeError as err:
        print(f"gradprobe: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        print("gradprobe: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except _click_errors() as err:
        code = getattr(err, "exit_code", 2)
        print(_usage_line(err), file=sys.stderr)
        raise SystemExit(2 if code in (0, 1, None) else code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
