"""Copy the paper-scale runs' small results here and draw their figures (issue 18).

    python docs/reproductions/figures.py RUNS_DIR [SUFFIX]

For each run folder RUNS_DIR/NAME (the latest of each experiment), writes
docs/reproductions/NAME-PRESET[SUFFIX]/result.json and run.json (config, versions, per-unit seconds)
and the PNG figures. The SQLite Run files stay in RUNS_DIR (see docs/REPRODUCTIONS.md).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).parent


def latest(runs: Path, name: str) -> Path | None:
    folders = sorted(runs.glob(f"{name}*"), key=lambda p: p.stat().st_mtime)
    done = [f for f in folders if (f / "result.json").is_file()]
    return done[-1] if done else None


def copy(folder: Path, suffix: str = "") -> tuple[Path, dict]:
    result = json.loads((folder / "result.json").read_text())
    dest = HERE / f"{result['experiment']}-{result['preset']}{suffix}"
    dest.mkdir(exist_ok=True)
    shutil.copy(folder / "result.json", dest / "result.json")
    shutil.copy(folder / "run.json", dest / "run.json")
    return dest, result


def adding(dest: Path, r: dict) -> None:
    steps = json.loads((dest / "run.json").read_text())["config"]["steps"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for variants in r["train"].values():
        for v, row in variants.items():
            c = row["curve_loss"]
            ax.plot([(i + 1) * steps / len(c) for i in range(len(c))], c, marker="o", label=v)
    ax.axhline(r["baseline_mse"], color="grey", ls="--", label="predict 1 (1/6)")
    ax.set(xlabel="Adam step", ylabel="training MSE (window mean)", yscale="log",
           title=f"adding problem, T = {', '.join(r['train'])}")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest / "adding_curves.png", dpi=120)


def he(dest: Path, r: dict) -> None:
    archs = {"mlp": {k: v for k, v in r.items() if k.isdigit()}}
    archs.update({k: v for k, v in r.items() if k in ("conv",)})
    fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4), squeeze=False)
    for ax, (arch, depths) in zip(axes[0], archs.items(), strict=True):
        for d, inits in depths.items():
            for i, row in inits.items():
                ax.plot(row["curve_steps"], row["curve_loss_mean"], label=f"{d} layers, {i}")
        ax.set(xlabel="SGD step", ylabel="training loss (mean over seeds)", title=arch)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest / "he2015_curves.png", dpi=120)


def glorot(dest: Path, r: dict) -> None:
    for data, nets in r["train"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for net, row in nets.items():
            if net.startswith("_"):
                continue
            ax.plot(row["logged_steps"], row["top_activation_mean"], label=net)
        ax.set(xlabel="SGD step (mini-batch 10)", ylabel="top hidden layer: mean activation",
               title=f"{data}: fig. 2's quantity")  # fmt: skip
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(dest / f"glorot_top_layer_{data}.png", dpi=120)


def trainability(dest: Path, r: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    acc, sw, depths = r["test_accuracy"], r["sigma_w2"], r["depths"]
    im = ax.imshow(acc, origin="lower", aspect="auto", vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(sw)), [str(s) for s in sw])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    for i, row in enumerate(acc):
        for j, a in enumerate(row):
            ax.text(j, i, f"{a:.0f}", ha="center", va="center", fontsize=7, color="w")
    # 6 ξ_c in grid coordinates (linear interpolation between depth rows)
    ys = []
    for x in r["six_xi_c"]:
        if x is None or x >= depths[-1]:
            ys.append(len(depths) - 0.5)
        elif x <= depths[0]:
            ys.append(-0.5)
        else:
            k = next(k for k in range(len(depths) - 1) if depths[k] <= x <= depths[k + 1])
            ys.append(k + (x - depths[k]) / (depths[k + 1] - depths[k]))
    ax.plot(range(len(sw)), ys, "w--", label="6 ξ_c")
    ax.set(xlabel="σ_w²", ylabel="depth", title=f"test accuracy %, agreement {r['agreement']:.0%}")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(dest / "trainability_map.png", dpi=120)


DRAW = {"rnn_vs_lstm": adding, "he2015": he, "glorot2010": glorot, "trainability": trainability}


def main(runs: Path, suffix: str = "") -> None:
    for name, draw in DRAW.items():
        folder = latest(runs, name)
        if folder is None:
            print(f"{name}: no finished run in {runs}")
            continue
        dest, result = copy(folder, suffix)
        draw(dest, result)
        print(f"{name}: {folder} -> {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/repro-runs"), *sys.argv[2:3])
