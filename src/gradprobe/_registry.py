"""One registry per kind of component: ``register`` / ``get`` / ``names(pattern)``.

Tests are parametrised over a registry's names, so a component is tested the
day it is registered (the timm habit). Duplicate names are an error.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from .errors import GradprobeError, UnknownNameError

T = TypeVar("T")
_MISSING = object()


class Registry(Generic[T]):
    """A named collection of components of one kind (``"init scheme"``, ``"rule"`` ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj=_MISSING):
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""
        if not isinstance(name, str) or not name:
            raise GradprobeError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            if name in self._items:
                raise GradprobeError(
                    f"{self.kind} {name!r} is already registered; pick another name"
                )
            self._items[name] = item
            return item

        return add if obj is _MISSING else add(obj)

    def get(self, name: str) -> T:
        """The component called ``name``; an unknown name lists close matches and all names."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), self._items, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}.{hint} "
            f"Known {self.kind}s: {', '.join(sorted(self._items))}."
        )

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in registration order, filtered by a glob ``pattern``."""
        names = list(self._items)
        return names if pattern is None else fnmatch.filter(names, pattern)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
