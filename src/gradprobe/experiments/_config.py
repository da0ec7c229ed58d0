"""Experiment configs: frozen dataclasses, named presets, validated overrides.

A config is a frozen dataclass whose fields are plain types (``int``, ``float``, ``bool``,
``str``, tuples of those). ``resolve(cls, presets, "quick", width=64)`` starts from the
defaults, applies the preset, then the overrides, each checked: an unknown key is an
error with a close-match suggestion, a value of the wrong type is an error that says
the expected type. Values given as strings (``gradprobe run --set width=64``) are
parsed by the field's type, so the command line and Python share one path.

Every set value also passes the checks every experiment shares (:func:`check_value`):
numbers are finite, integers are not negative nor beyond ``MAX_INT``, lists are neither
empty nor hold an item twice (each item would be a grid point run twice), and the
fields named in :data:`RULES` (``seed``, ``seeds``, ``lr``, ``momentum``, ``dataset`` ...)
have the range or the choices written there. After the config is built, :func:`check_config`
refuses a ``batch`` larger than the training split of its ``dataset`` (the units would
silently use the whole split instead). An experiment's own ``__post_init__`` adds what
only it knows; :func:`positive` and :func:`one_of` are for that.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..errors import InvalidInputError, UnknownNameError

MAX_INT = 2**31 - 1  # larger sizes overflow torch's C ints long before memory runs out
MAX_SEEDS = 10_000  # one unit folder per seed and grid point: more is a job for several runs


class Rule(NamedTuple):
    """A range for a numeric field (``low_open``: the low end itself is refused)."""

    low: int | float
    high: int | float | None = None
    low_open: bool = False
    why: str = ""


RULES: dict[str, Rule] = {
    "seed": Rule(0, 2**62, why="torch generators take 63-bit seeds"),
    "seeds": Rule(1, MAX_SEEDS, why="split a larger sweep into runs with --set seed=K"),
    "steps": Rule(0),
    # sizes: zero of any of them is no network and no batch, in every experiment
    **dict.fromkeys(("width", "depth", "depths", "hidden", "batch"), Rule(1)),
    "lr": Rule(0, low_open=True),
    "lrs": Rule(0, low_open=True),
    "momentum": Rule(0),
    "sigma_w2": Rule(0, low_open=True),
    "sigma_b2": Rule(0),
}


def _choices(key: str) -> list[str] | None:
    """The allowed values of the string fields every experiment shares (None: any)."""
    if key in ("dataset", "datasets"):
        from . import data

        return data.names()
    if key == "activation":
        from ._train import ACTIVATIONS

        return list(ACTIVATIONS)
    return None


def field_types(cls: type) -> dict[str, Any]:
    """``{field: type}`` of a config dataclass, with string annotations resolved."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return f"a comma-separated list of {_type_name(inner)}"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _parse_scalar(tp: Any, text: str) -> Any:
    text = text.strip()
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    return text


def _split_list(key: str, text: str) -> list[str]:
    items = [v.strip() for v in text.split(",")]
    if not any(items):
        raise InvalidInputError(f"{key} is an empty list; give at least one value, e.g. {key}=A,B")
    if not all(items):
        raise InvalidInputError(f"{key}={text!r} has an empty item; remove the extra comma")
    return items


def coerce(key: str, tp: Any, value: Any) -> Any:
    """``value`` as a value of type ``tp`` (parsing strings), else InvalidInputError."""
    given = value
    if typing.get_origin(tp) is tuple and isinstance(value, str):
        value = _split_list(key, value)  # its own errors: an empty list or item
    try:
        if typing.get_origin(tp) is tuple:
            (inner, *_rest) = typing.get_args(tp)
            if isinstance(value, (list, tuple)):
                return tuple(coerce(key, inner, v) for v in value)
            raise TypeError
        if typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                raise TypeError
            return value
        if isinstance(value, str) and tp is not str:
            return _parse_scalar(tp, value)
        if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp in (bool, str) and isinstance(value, tp):
            return value
        raise TypeError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            f"{key} must be {_type_name(tp)}, got {given!r}; e.g. --set {key}=..."
        ) from None


def check_value(key: str, value: Any) -> None:
    """The checks every experiment shares, on one coerced value (see the module docstring)."""
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple):
        if not value:
            raise InvalidInputError(f"{key} is an empty list; give at least one value")
        twice = sorted({repr(v) for v in value if value.count(v) > 1})
        if twice:
            raise InvalidInputError(
                f"{key} lists {', '.join(twice)} more than once; each value is a grid point, "
                "give it once"
            )
    rule = RULES.get(key)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInputError(f"{key} must be a finite number, got {v!r}")
        if rule is None and isinstance(v, float):
            continue
        # an integer without a rule is a count or a size: never negative
        low, high, low_open, why = rule or Rule(0)
        if high is None and isinstance(v, int):
            high = MAX_INT
        if (v <= low if low_open else v < low) or (high is not None and v > high):
            bounds = f"{'>' if low_open else '>='} {low}"
            if high is not None:
                bounds += f" and <= {high}"
            why = f" ({why})" if why else ""
            raise InvalidInputError(f"{key} must be {bounds}, got {v!r}{why}")
    choices = _choices(key)
    if choices is not None:
        one_of(key, items, choices)


def one_of(key: str, values: Iterable[Any], choices: Iterable[str]) -> None:
    """Raise UnknownNameError unless every value is one of ``choices`` (close matches named)."""
    choices = list(choices)
    for v in values:
        if v not in choices:
            close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"unknown {key} {v!r}.{hint} Choose from {', '.join(choices)}.")


def check_config(cfg: Any) -> None:
    """Checks across fields, on the built config: ``batch`` within the ``dataset``'s split."""
    batch, dataset = getattr(cfg, "batch", None), getattr(cfg, "dataset", None)
    if isinstance(batch, int) and isinstance(dataset, str):
        from . import data

        most = data.train_size(dataset)
        if most is not None and batch > most:
            raise InvalidInputError(
                f"batch={batch} is more than the {most} training examples of {dataset!r}; "
                f"the units would train on the whole split instead. Pass --set batch={most} "
                "or less"
            )


def resolve(
    cls: type,
    presets: Mapping[str, Mapping[str, Any]],
    preset: str,
    overrides: Mapping,
    what: str | None = None,
) -> Any:
    """The config: defaults, then ``presets[preset]``, then ``overrides`` (all validated)."""
    if preset not in presets:
        close = difflib.get_close_matches(str(preset), presets, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown preset {preset!r}.{hint} Presets: {', '.join(presets)}.")
    types = field_types(cls)
    values: dict[str, Any] = {}
    for source in (presets[preset], overrides):
        for key, value in source.items():
            if key not in types:
                close = difflib.get_close_matches(str(key), types, n=2, cutoff=0.5)
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise UnknownNameError(
                    f"{what or cls.__name__} has no setting {key!r}.{hint} "
                    f"Settings: {', '.join(types)}."
                )
            values[key] = coerce(key, types[key], value)
            check_value(key, values[key])
    cfg = cls(**values)
    check_config(cfg)
    return cfg


def parse_sets(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["width=64", "inits=standard,xavier"]`` -> ``{"width": "64", ...}`` (values stay text)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError(
                f"--set needs KEY=VALUE, got {pair!r}; e.g. --set width=64 --set seeds=3"
            )
        if key.strip() in out:
            raise InvalidInputError(
                f"--set {key.strip()} is given twice ({out[key.strip()]!r} and {value.strip()!r}); "
                "give it once (a list is comma-separated: --set depths=10,30)"
            )
        out[key.strip()] = value.strip()
    return out


def positive(cfg: Any, *names: str) -> None:
    """Raise InvalidInputError unless each named field of ``cfg`` is finite and > 0."""
    for name in names:
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise InvalidInputError(f"{name} must be positive, got {value!r}")


def as_dict(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready data (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
