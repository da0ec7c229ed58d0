"""Every user-facing error of gradprobe is a :class:`GradprobeError`.

Messages say what was wrong and what to do about it. Subclasses also derive
from the matching built-in so ``except ValueError`` keeps working for callers
who do not know gradprobe.
"""

from __future__ import annotations


class GradprobeError(Exception):
    """Base class of every error gradprobe raises on purpose."""


class InvalidInputError(GradprobeError, ValueError):
    """An argument (model, tensor, option) cannot be used as given."""


class UnknownNameError(GradprobeError, LookupError):
    """A name (scheme, activation, rule, experiment) is not registered."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class RunStoreError(GradprobeError, OSError):
    """A run file or folder is missing, unreadable, of another format or locked."""


class GradprobeWarning(UserWarning):
    """Something looks wrong but work can go on."""


__all__ = [
    "GradprobeError",
    "GradprobeWarning",
    "InvalidInputError",
    "RunStoreError",
    "UnknownNameError",
]
