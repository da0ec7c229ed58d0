"""One writer per run file: an exclusive ``flock`` on ``<file>.lock``, removed on release.

The lock file is unlinked while still locked, and a new owner checks, once locked, that
the path still names the file it locked (else it retries): without that check, a process
that opened the file just before the unlink could lock an orphan while a third locks a
new file, and two writers would share one run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RunStoreError


class WriterLock:
    """Held from construction until :meth:`release` (idempotent)."""

    def __init__(self, run_file: Path) -> None:
        self.path = Path(str(run_file) + ".lock")
        self._handle = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
            return
        for _ in range(100):
            handle = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                if owner == f"process {os.getpid()}":
                    owner += " (this one: close the other probe or RunWriter on this path)"
                raise RunStoreError(
                    f"{run_file} is being written by {owner}; one run file has one writer — "
                    "pass another path, or wait for that process to finish"
                ) from None
            if self._still_named(handle):
                break
            handle.close()  # locked a lock file its owner had just removed: try again
        else:  # pragma: no cover - 100 removals in a row
            raise RunStoreError(f"could not lock {self.path}: it keeps being replaced")
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        self._handle = handle

    def _open(self):
        try:
            return open(self.path, "a+")  # held open for the writer's lifetime
        except OSError as err:
            raise RunStoreError(
                f"cannot create the lock file {self.path}: {err.strerror}; check that the "
                "folder is writable"
            ) from None

    def _still_named(self, handle) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except OSError:
            return False

    def release(self) -> None:
        """Remove the lock file, then unlock (another writer may take the path from now)."""
        if self._handle is None:
            return
        try:
            if self._still_named(self._handle):
                self.path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - a folder made read-only meanwhile: leave it
            pass
        self._handle.close()
        self._handle = None
