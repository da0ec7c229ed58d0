"""The run folder on disk: unit keys, atomic JSON files, versions, picking the folder."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError, RunStoreError


def unit_key(unit: Mapping[str, Any]) -> str:
    """A folder name for a unit: ``init=standard,seed=0`` with unsafe characters replaced."""
    text = ",".join(f"{k}={v}" for k, v in unit.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text) or "all"


def versions() -> dict[str, str]:
    from .._version import __version__

    return {
        "gradprobe": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, default=_jsonable) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RunStoreError(
            f"cannot write {path}: {err.strerror or err}; check that the folder is writable "
            "and the disk has space, then run again with --resume"
        ) from None


def as_json(data: Any) -> Any:
    """``data`` as it reads back from its JSON file (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(data, default=_jsonable))


def make_dir(path: Path) -> None:
    """``mkdir -p`` with an error that says what is in the way."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunStoreError(
            f"cannot make the folder {path}: a file of that name is in the way; pass another --out"
        ) from None
    except OSError as err:
        raise RunStoreError(
            f"cannot make the folder {path}: {err.strerror or err}; pass another --out"
        ) from None


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunStoreError(f"cannot read {path}: {err}") from None


def pick_folder(out: Path, name: str, cfg_data: dict, resume: bool) -> tuple[Path, bool]:
    """(folder, resuming): the latest ``NAME[-k]`` to resume, else the first free one."""
    existing = sorted(
        (p for p in out.glob(f"{name}*") if re.fullmatch(rf"{re.escape(name)}(-\d+)?", p.name)),
        key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name != name else 1,
    )
    if resume and existing and (existing[-1] / "run.json").is_file():
        folder = existing[-1]
        old = read_json(folder / "run.json").get("config", {})
        diff = sorted(k for k in set(old) | set(cfg_data) if old.get(k) != cfg_data.get(k))
        if diff:
            raise InvalidInputError(
                f"cannot resume {folder}: its config differs in {', '.join(diff)}; "
                "pass the same preset and --set values, or drop --resume for a new run"
            )
        return folder, True
    k = len(existing) + 1
    folder = out / (name if k == 1 else f"{name}-{k}")
    while folder.exists():
        k += 1
        folder = out / f"{name}-{k}"
    return folder, False
