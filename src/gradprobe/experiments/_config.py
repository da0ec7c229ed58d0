"""Experiment configs: frozen dataclasses, named presets, validated overrides.

A config is a frozen dataclass whose fields are plain types (``int``, ``float``, ``bool``,
``str``, tuples of those). ``resolve(cls, presets, "quick", width=64)`` starts from the
defaults, applies the preset, then the overrides, each checked: an unknown key is an
error with a close-match suggestion, a value of the wrong type is an error that says
the expected type. Values given as strings (``gradprobe run --set width=64``) are
parsed by the field's type, so the command line and Python share one path.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError, UnknownNameError


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


def coerce(key: str, tp: Any, value: Any) -> Any:
    """``value`` as a value of type ``tp`` (parsing strings), else InvalidInputError."""
    try:
        if typing.get_origin(tp) is tuple:
            (inner, *_rest) = typing.get_args(tp)
            if isinstance(value, str):
                items = [v for v in value.split(",") if v.strip()]
                return tuple(coerce(key, inner, _parse_scalar(inner, v)) for v in items)
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
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{key} must be {_type_name(tp)}, got {value!r}; e.g. --set {key}=..."
        ) from None


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
    return cls(**values)


def parse_sets(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["width=64", "inits=standard,xavier"]`` -> ``{"width": "64", ...}`` (values stay text)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError(
                f"--set needs KEY=VALUE, got {pair!r}; e.g. --set width=64 --set seeds=3"
            )
        out[key.strip()] = value.strip()
    return out


def positive(cfg: Any, *names: str) -> None:
    """Raise InvalidInputError unless each named field of ``cfg`` is > 0 (ints and floats)."""
    for name in names:
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(v <= 0 for v in values):
            raise InvalidInputError(f"{name} must be positive, got {value!r}")


def as_dict(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready data (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
