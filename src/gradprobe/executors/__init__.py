"""Where independent tasks run: in this process, in local processes, or on a Ray cluster.

The one seam under both the experiments runner (a sweep's units) and ``gp.fix`` (its
trials). An :class:`Executor` takes tasks (``submit``), hands back each one's :class:`Done`
as it finishes (``completed``, which also sees tasks submitted while it is iterated) and
``close`` ends it (``cancel=True`` drops what has not started). A task is any picklable
object with a ``key`` that computes its value when called; :class:`Task` is the plain one,
``fn(*args)``, or ``fn(shared, *args)`` with an object every task shares (a model and its
data), which an executor may send once per worker instead of once per task.

* ``"local"``: :class:`~gradprobe.executors.local.InProcess` (``workers=1``) or
  :class:`~gradprobe.executors.local.ProcessPool` (spawned processes).
* ``"ray"``: :class:`~gradprobe.executors.ray.RayExecutor`, needs ``pip install
  'gradprobe[ray]'``; ``import gradprobe`` never imports Ray.

This package imports nothing of gradprobe but its errors, so every layer above may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, Protocol, cast, runtime_checkable

from ..errors import InvalidInputError, UnknownNameError

NAMES = ("local", "ray")


@dataclass(frozen=True)
class Task:
    """``fn(*args)``, or ``fn(shared, *args)`` when ``shared`` is given; ``fn`` must be a
    module-level function (it is sent by reference to other processes)."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    shared: Any = field(default=None, repr=False)

    def __call__(self) -> Any:
        if self.shared is None:
            return self.fn(*self.args)
        return self.fn(self.shared, *self.args)


@dataclass(frozen=True)
class Done:
    """A finished task: its ``value`` and seconds, or the ``error`` it raised."""

    key: str
    value: Any = None
    seconds: float = 0.0
    error: BaseException | None = None

    @property
    def numbers(self) -> Any:
        """``value`` under the name an experiment unit's executor used for it."""
        return self.value


@runtime_checkable
class Executor(Protocol):
    def submit(self, task: Any) -> None: ...
    def completed(self) -> Iterator[Done]: ...  # each submitted task once, as it finishes
    def close(self, cancel: bool = False) -> None: ...


def split_shared(task: Any) -> tuple[Any, Any]:
    """``(task without its shared object, the object)``, for an executor that sends the
    object once; ``(task, None)`` for a task without one (or not a dataclass)."""
    shared = getattr(task, "shared", None)
    if shared is None or isinstance(task, type) or not is_dataclass(task):
        return task, None
    return replace(cast(Any, task), shared=None), shared


def slots(executor: Any) -> int | None:
    """How many tasks ``executor`` runs at once (None: it does not say)."""
    value = getattr(executor, "slots", None)
    return value if isinstance(value, int) and value >= 1 else None


def check(executor: Any, address: str | None = None) -> None:
    """Refuse a bad ``executor`` / ``address`` pair before anything is made or started;
    for ``"ray"``, that Ray is installed and the address answers (no Ray is started)."""
    if isinstance(executor, str):
        if executor not in NAMES:
            raise UnknownNameError(
                f"unknown executor {executor!r}; choose one of {', '.join(NAMES)}, or pass an "
                "object with submit, completed and close"
            )
    elif not isinstance(executor, Executor):
        raise InvalidInputError(
            f"executor must be 'local', 'ray' or an object with submit, completed and close, "
            f"got {type(executor).__name__}"
        )
    if address is not None and executor != "ray":
        raise InvalidInputError(
            f"address={address!r} is for executor='ray' (the Ray cluster to join); pass "
            "executor='ray' with it, or drop the address"
        )
    if executor == "ray":
        from . import ray

        ray.check(address)


def make(
    executor: Any = "local",
    *,
    workers: int = 1,
    address: str | None = None,
    cpus: float = 1,
    gpus: float = 0,
    threads: int = 1,
    start_method: str = "spawn",
) -> Executor:
    """The executor named (an object is returned as it is): ``"local"`` runs in this process
    for one worker, else in ``workers`` spawned processes; ``"ray"`` starts or joins a local
    Ray instance (``address=None``) or joins the cluster at ``address``, each task holding
    ``cpus`` CPUs and ``gpus`` GPUs. Every task runs on ``threads`` torch threads."""
    check(executor, address)
    if not isinstance(executor, str):
        return executor
    if executor == "ray":
        from .ray import RayExecutor

        return RayExecutor(address, cpus=cpus, gpus=gpus, threads=threads)
    from .local import InProcess, ProcessPool

    if workers <= 1:
        return InProcess()
    return ProcessPool(workers, threads=threads, start_method=start_method)


def __getattr__(name: str) -> Any:  # the classes, imported on first use (Ray's only then)
    if name in ("InProcess", "ProcessPool"):
        from . import local

        return getattr(local, name)
    if name == "RayExecutor":
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module 'gradprobe.executors' has no attribute {name!r}")


__all__ = ["NAMES", "Done", "Executor", "InProcess", "ProcessPool", "RayExecutor", "Task"]
__all__ += ["check", "make", "slots", "split_shared"]
