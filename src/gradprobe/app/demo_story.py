"""``gradprobe demo``, chapters 2-5: inits on digits, the Glorot figure, five remedies, and a
``check`` that diagnoses a broken model and re-checks the remedy, then ``gp.fix`` that trains
the remedies on copies and shows the before/after loss curves.

Chapters 2-4 run the registered experiments (``gp.experiments.run``) with small overrides
and draw from the Run files they store; chapter 5 calls ``gp.check`` and ``gp.fix`` directly.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from rich.table import Table

from ..report.figures import (
    histograms_figure,
    profiles_figure,
    recurrent_figure,
    save,
)
from ..report.figures._base import AFFINE_TYPES
from ..report.terminal import console, findings_table, progress
from ._chapters import chapter

REMEDIES = ("baseline", "better_init", "batchnorm", "residual", "relu_he")


def _experiment(name: str, out: Path, seed: int, what: str, **overrides):
    """Run experiment ``name`` into ``out/runs/NAME``, replacing the previous demo's folder."""
    import re
    import shutil

    import gradprobe as gp

    for old in (out / "runs").glob(f"{name}*"):
        if re.fullmatch(rf"{re.escape(name)}(-\d+)?", old.name) and (old / "run.json").is_file():
            shutil.rmtree(old)

    with progress(transient=True) as bar:
        bar.add_task(what, total=None)
        return gp.experiments.run(name, out=out / "runs", quiet=True, seed=seed, **overrides)


def _unit_run(folder: Path, prefix: str):
    from ..run import Run

    files = sorted((folder / "units").glob(f"{prefix}*/*.sqlite"))
    if not files:
        from ..errors import GradprobeError

        raise GradprobeError(f"no stored run for {prefix!r} under {folder}/units")
    return Run.load(files[0])


def _hidden_affine(run) -> list[str]:
    names = [la.name for la in run.layers() if la.module_type in AFFINE_TYPES]
    return names[:-1]  # the head's ∂L/∂output is set by the loss, not by depth


def _std_at_first_step(run, names: list[str], quantity: str = "grad_output") -> list[float]:
    layer_names, _, values = run.matrix(quantity, "std")
    row = {n: values[i, 0] for i, n in enumerate(layer_names)}
    return [float(row.get(n, math.nan)) for n in names]


def _e(x: float) -> str:
    return "0" if x == 0 else ("nan" if not math.isfinite(x) else f"{x:.1e}")


@chapter("init_gradients", "Gradients per layer under four inits, on real digits")
def _init_gradients(out: Path, seed: int) -> dict:
    result = _experiment("init_gradients", out, seed, "one backward pass, four inits")
    labels = {k: v["label"] for k, v in result.numbers.items()}
    runs = {k: _unit_run(result.folder, f"init={k},") for k in labels}
    png = save(profiles_figure(runs.values(), labels.values()), out / "init_gradients.png")
    names = _hidden_affine(next(iter(runs.values())))
    table = Table(
        title="std of ∂L/∂(layer output), 8 ReLU layers of 256, digits", title_justify="left"
    )
    table.add_column("layer", justify="right")
    for k in labels:
        table.add_column(labels[k], justify="right")
    stds = {k: _std_at_first_step(r, names) for k, r in runs.items()}
    for i, _ in enumerate(names):
        table.add_row(str(i + 1), *[_e(stds[k][i]) for k in labels])
    table.add_section()
    ratios = {k: v["backprop_first_over_last"]["mean"] for k, v in result.numbers.items()}
    table.add_row("first/last", *[_e(ratios[k]) if ratios[k] is not None else "-" for k in labels])
    con = console()
    con.print(table)
    con.print(
        "Each layer multiplies the back-propagated std by about σ_w·√n·√½: N(0,1) explodes, "
        "×0.01 vanishes, Xavier (no ReLU factor) shrinks by ~0.7 a layer, Kaiming stays flat."
    )
    con.print(f"Figure: {png}   runs: {result.folder}")
    return {"ratios": ratios, "files": [png], "folder": result.folder}


@chapter("glorot", "The Glorot figure: back-propagated gradients, tanh, standard vs normalised")
def _glorot(out: Path, seed: int) -> dict:
    result = _experiment(
        "glorot2010",
        out,
        seed,
        "Glorot & Bengio at init",
        steps=0,
        nets=("tanh", "tanh_n"),
        jacobian_examples=0,
    )
    std, norm = (
        _unit_run(result.folder, "part=init,net=tanh,"),
        _unit_run(result.folder, "part=init,net=tanh_n,"),
    )
    labels = ["standard init U[±1/√n_in]", "normalised init U[±√6/√(n_in+n_out)]"]
    names = _hidden_affine(std)
    grads = histograms_figure([std, norm], "grad_output", labels=labels, layers=names)
    png = save(grads, out / "glorot_gradients.png")
    acts = [la.name for la in std.layers() if la.activation is not None]
    act_png = save(
        histograms_figure([std, norm], "activation", labels=labels, layers=acts),
        out / "glorot_activations.png",
    )
    s, n = _std_at_first_step(std, names), _std_at_first_step(norm, names)
    table = Table(
        title="std of ∂L/∂s per hidden layer (s: pre-activation), Shapeset, tanh",
        title_justify="left",
    )
    for col in ("layer", "standard", "normalised"):
        table.add_column(col, justify="right")
    for i in range(len(names)):
        table.add_row(str(i + 1), _e(s[i]), _e(n[i]))
    table.add_section()
    table.add_row("first/last", f"{s[0] / s[-1]:.2f}", f"{n[0] / n[-1]:.2f}")
    con = console()
    con.print(table)
    con.print(
        "With the standard init the gradient histograms narrow towards the input (Glorot & "
        "Bengio's fig. 7, top); the normalised init keeps them alike at every layer (bottom)."
    )
    con.print(f"Figures: {png}, {act_png}")
    return {"standard": s, "normalised": n, "files": [png, act_png]}


def _rnn_runs(out: Path, seed: int, length: int = 100) -> dict:
    from ..check import check
    from ..experiments.catalog.rnn_vs_lstm import adding_problem, build

    runs = {}
    for variant in ("rnn", "lstm_fb3"):
        gen = torch.Generator().manual_seed(seed)
        net = build(variant, 64, gen)
        x, y = adding_problem(64, length, gen)
        path = out / "runs" / f"{variant}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        runs[variant] = check(net, x, y, torch.nn.functional.mse_loss, path=path).run
    return runs


@chapter("remedies", "Five remedies side by side, and their gradient profiles")
def _remedies(out: Path, seed: int) -> dict:
    result = _experiment(
        "remedies",
        out,
        seed,
        "a 30-layer sigmoid net and its remedies",
        variants=REMEDIES,
        steps=10,
    )
    runs = {v: _unit_run(result.folder, f"variant={v},") for v in REMEDIES}
    labels = [result.numbers[v]["changes"] for v in REMEDIES]
    png = save(profiles_figure(runs.values(), labels), out / "remedies.png")
    rnn = _rnn_runs(out, seed)
    rnn_png = save(
        recurrent_figure(list(rnn.values()), labels=["vanilla RNN (tanh)", "LSTM, forget bias 3"]),
        out / "rnn_vs_lstm.png",
    )
    table = Table(
        title="30 sigmoid layers of 64 on digits: one change at a time", title_justify="left"
    )
    for col in ("variant", "what changes", "first/last ∂L/∂out", "check at init"):
        table.add_column(col, justify="left" if col != "first/last ∂L/∂out" else "right")
    for v in REMEDIES:
        row = result.numbers[v]
        log_ratio = row["init_log10_first_over_last"]["mean"]
        ratio = "0 (underflow)" if log_ratio is None else _e(10.0**log_ratio)
        table.add_row(v, row["changes"], ratio, ", ".join(row["findings_at_init"]) or "healthy")
    g = {k: r.series(r.layers()[0].name, "rnn_grad_input_t", r.steps[0]) for k, r in rnn.items()}
    table.add_section()
    for k, label in (("rnn", "vanilla RNN"), ("lstm_fb3", "LSTM, forget bias 3")):
        table.add_row(k, label, _e(g[k][0] / g[k][-1]) if g[k][-1] else "-", "t = 0 vs t = 99")
    con = console()
    con.print(table)
    healed = [v for v in REMEDIES if _healthy_ratio(result.numbers[v])]
    con.print(
        f"At init, the lowest layer gets within 100× of the top's gradient with: "
        f"{', '.join(healed) or 'none'}. An init alone cannot undo a sigmoid's σ′ ≤ ¼ per "
        "layer; normalisation, an identity path or ReLU can. Through time, the LSTM's cell "
        "path carries the gradient back, the vanilla RNN's fades geometrically."
    )
    con.print(f"Figures: {png}, {rnn_png}")
    return {"runs": result.folder, "files": [png, rnn_png]}


def _healthy_ratio(numbers: dict) -> bool:
    log_ratio = numbers["init_log10_first_over_last"]["mean"]
    return log_ratio is not None and abs(log_ratio) < 2


def _broken(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers = [m for _ in range(12) for m in (torch.nn.Linear(64, 64), torch.nn.ReLU())]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(64, 10))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=1.0)  # the bug: N(0, 1), not N(0, 2/n)
    return model


@chapter("check", "gradprobe check and gp.fix on a broken model: diagnosis, remedies trained")
def _check(out: Path, seed: int) -> dict:
    import gradprobe as gp

    from ..experiments import data

    split = data.load("digits", seed=seed, flatten=True)
    x, y = split.x_train[:256], split.y_train[:256]
    model = _broken(seed)
    path = out / "runs" / "broken.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)  # chapter 5 may run on its own
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    result = gp.check(model, x, y, path=path)
    con = console()
    con.print("A 12-layer ReLU net whose weights were drawn from N(0, 1):")
    con.print(result.table())
    con.print(findings_table(result.findings))
    scheme = next((f.remedy.scheme for f in result.findings if f.remedy.scheme), None)
    scheme = scheme or "kaiming_normal"
    gp.init.apply(model, scheme)
    fixed = gp.check(model, x, y)
    verdict = "healthy" if fixed.healthy else "still not healthy"
    con.print(
        f"[bold]Remedy applied:[/] gp.init.apply(model, {scheme!r}) → re-check: "
        f"[bold]{verdict}[/] ({len(fixed.findings)} finding(s)).",
        markup=True,
    )
    trained, files = _fix(out, seed, split)
    return {"result": result, "fixed": fixed, "scheme": scheme, "fix": trained, "files": files}


def _fix(out: Path, seed: int, split) -> tuple:
    """gp.fix on the same broken model: the remedies its findings call for, trained on copies
    for 150 SGD steps on digits; the baseline's and the winner's loss curves side by side."""
    import gradprobe as gp

    from ..report.fix import curves_figure

    con = console()
    con.print(
        "A re-check at init cannot see training. gp.fix trains the model as given and each "
        "remedy its findings call for, on copies (same batches, same seed), and ranks them:"
    )
    x, y = split.x_train[:1200], split.y_train[:1200]
    result = gp.fix(
        _broken(seed),
        (x, y),
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        steps=150,
        seed=seed,
    )
    con.print(result)
    base, best = result.baseline, result.best
    png = save(
        curves_figure([("as given", base.losses), (best.name, best.losses)], base.losses, best=1),
        out / "fix_curves.png",
    )
    html = result.save_html(out / "fix.html")
    con.print(f"Figure: {png}   report: {html}")
    return result, [png, html]
