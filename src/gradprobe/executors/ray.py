"""Tasks on a Ray cluster (https://docs.ray.io), or on a Ray instance on this machine.

``RayExecutor(address=None)`` joins the Ray instance this process already started, else
starts or joins a local one (``ray.init()``: ``RAY_ADDRESS``, then the latest ``ray start``
of this machine, else a new instance); ``address="HOST:PORT"`` (or ``ray://HOST:PORT``)
joins that cluster. Each task is one Ray task holding ``cpus`` CPUs and ``gpus`` GPUs, on
``threads`` torch threads; a shared object is put into Ray's object store once. A task's
value comes back to the driver through the object store, so the workers need no shared
file system. Ray is imported here only, and only when an executor is made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

from ..errors import GradprobeError, InvalidInputError
from . import Done, split_shared
from .local import timed

CONNECT_TIMEOUT_S = 3.0  # a cluster's head answers at once; a wrong address never does


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise GradprobeError(
            f"executor='ray' needs Ray, which is not installed ({err}); install it with "
            "pip install 'gradprobe[ray]' (on every machine of the cluster), or use "
            "executor='local'"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(
            f"address={address!r} is not HOST:PORT; pass the head node's address as "
            "`ray start --head` printed it (e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001), "
            "'auto', or None for a Ray instance on this machine"
        )
    return host.strip("[]"), int(port)


def check(address: str | None) -> None:
    """Ray is installed and ``address`` (when one is given) answers; nothing is started."""
    _ray()
    if address is None or address in ("auto", "local"):
        return
    if not isinstance(address, str):
        raise InvalidInputError(f"address must be a string HOST:PORT or None, got {address!r}")
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise GradprobeError(
            f"cannot reach the Ray cluster at {address} ({err.strerror or err}); start it "
            "with `ray start --head` on that machine, check the host and the port (6379 by "
            "default, 10001 for ray://), or pass address=None for a Ray instance here"
        ) from None


def _positive(name: str, value: Any, zero: bool = False, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if not ok or not (value >= 0 if zero else value > 0) or value != value:
        what = "an integer" if integer else "a number"
        raise InvalidInputError(f"{name} must be {what} {'>= 0' if zero else '> 0'}, got {value!r}")


def _call(task: Any, shared: Any, threads: int) -> tuple[Any, float]:
    """The Ray task: ``task()`` on ``threads`` torch threads (Ray resolved ``shared``)."""
    import torch

    torch.set_num_threads(threads)
    if shared is not None:
        task = dataclasses.replace(task, shared=shared)
    return timed(task)


def _lost(key: str, err: BaseException) -> GradprobeError:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return GradprobeError(
        f"the Ray task of {key} was lost ({type(err).__name__}: {first}): its worker process "
        "died (killed, out of memory, or its node left the cluster); nothing of it was kept"
    )


class RayExecutor:
    """Runs each task as a Ray task; ``retries``: how often Ray reruns a task whose worker
    died (0: the run reports it; a unit or trial computes the same numbers when rerun).
    ``init``: keyword arguments for ``ray.init`` when this executor calls it (``runtime_env``
    for what the workers need installed)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus: float = 1,
        gpus: float = 0,
        threads: int = 1,
        retries: int = 0,
        init: dict | None = None,
    ) -> None:
        _positive("cpus", cpus)
        _positive("gpus", gpus, zero=True)
        _positive("threads", threads, integer=True)
        _positive("retries", retries, zero=True, integer=True)
        ray = self._ray = _ray()
        if ray.is_initialized():
            if address is not None:
                raise InvalidInputError(
                    f"Ray is already running in this process, so address={address!r} cannot "
                    "be joined; pass address=None to use it, or call ray.shutdown() first"
                )
        else:
            check(address)
            try:
                ray.init(address=address, **(init or {}))
            except (ConnectionError, RuntimeError, ValueError) as err:
                auth = (
                    ""
                    if address is None
                    else "; a cluster started with `ray start` checks a token: set "
                    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or copy ~/.ray/auth_token from "
                    "the head node) where this runs"
                )
                raise GradprobeError(
                    f"cannot join the Ray cluster at {address or 'this machine'}: {err}{auth}"
                ) from None
        most_cpus, most_gpus, total_cpus = self._nodes()
        if cpus > most_cpus or gpus > most_gpus:
            what, have = ("gpus", most_gpus) if gpus > most_gpus else ("cpus", most_cpus)
            raise InvalidInputError(
                f"each task asks for {what}={gpus if what == 'gpus' else cpus}, but the largest "
                f"node of the Ray cluster has {have:g}: Ray would wait for such a node forever; "
                f"ask for {have:g} or less, or add a node that has them"
            )
        self.slots = max(1, int(total_cpus // cpus))
        self.threads = threads
        self._remote = ray.remote(_call).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, name="gradprobe-task"
        )
        self._pending: dict[Any, str] = {}
        self._shared: dict[int, tuple[Any, Any]] = {}  # id -> (object kept, its ObjectRef)

    def _nodes(self) -> tuple[float, float, float]:
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        cpus = [r.get("CPU", 0.0) for r in nodes] or [0.0]
        gpus = [r.get("GPU", 0.0) for r in nodes] or [0.0]
        return max(cpus), max(gpus), sum(cpus)

    def submit(self, task: Any) -> None:
        task, shared = split_shared(task)
        ref = None
        if shared is not None:
            if id(shared) not in self._shared:
                self._shared[id(shared)] = (shared, self._ray.put(shared))
            ref = self._shared[id(shared)][1]
        self._pending[self._remote.remote(task, ref, self.threads)] = task.key

    def completed(self) -> Iterator[Done]:
        ray = self._ray
        while self._pending:
            refs = list(self._pending)
            ready, rest = ray.wait(refs, num_returns=1)
            if rest:  # all that are ready, not one per wait over every ref
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                key = self._pending.pop(ref)
                try:
                    value, seconds = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the task raised: its own error
                    cause = getattr(err, "cause", None)
                    yield Done(key, None, 0.0, cause if isinstance(cause, Exception) else err)
                except ray.exceptions.RayError as err:  # the worker or its node died
                    yield Done(key, None, 0.0, _lost(key, err))
                else:
                    yield Done(key, value, seconds)

    def close(self, cancel: bool = False) -> None:
        """Ends this executor; Ray itself keeps running for the next one (it stops with this
        process, or with ``ray.shutdown()``)."""
        if cancel:
            for ref in self._pending:
                # force: end the worker process of a running task. An interrupt instead
                # (force=False) can land inside its first `import torch` and leave that
                # worker with half-imported modules for every later task it runs
                with contextlib.suppress(Exception):  # finished, or its worker is gone
                    self._ray.cancel(ref, force=True)
        self._pending.clear()
        self._shared.clear()
