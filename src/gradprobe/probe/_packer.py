"""The packer: a step's device numbers, copied to the host in one transfer.

Hooks queue 0-dim/1-dim device tensors (and plain numbers, and numpy arrays of host values:
what ``_fused`` computed) with ``Packer.add``, which returns where they will land;
``to_host()`` concatenates them (one kernel per dtype) and copies the result to the host as
one float64 array, once per logged step. Distributed, ``reduce_fn``
combines the packed buffer across ranks just before that copy (probe/_distributed.py).
"""

from __future__ import annotations

import numpy as np
import torch

Number = int | float


class Packer:
    """Collects device tensors (and host numbers and arrays) during a step; ``to_host()``
    copies once."""

    def __init__(self, reduce_fn=None) -> None:
        self._tensors: list[tuple[int, torch.Tensor]] = []  # (position, 0-dim/1-dim tensor)
        self._num_pos: list[int] = []  # plain numbers: their positions and values
        self._nums: list[Number] = []
        self._arrays: list[tuple[int, np.ndarray]] = []  # host vectors (1-dim numpy arrays)
        self._size = 0
        # distributed (probe/_distributed.py): how each item combines across ranks, applied to
        # the packed device buffer just before the copy; None: a single process, no cost
        self.reduce_fn = reduce_fn
        self.ops: list[tuple[int, int, object]] = []
        self.rank_at: dict[int, int] = {}
        self.after_copy = None  # set by reduce_fn: checks on the host, after the copy
        self._tail: list[float] = []

    def add(self, *items: torch.Tensor | np.ndarray | Number, op: object = "sum") -> slice:
        """Queue 0-dim/1-dim tensors, 1-dim numpy arrays (host values) or numbers; returns where
        they land in ``to_host()``. ``op``: how they combine across ranks when distributed
        (see probe/_distributed.py)."""
        start = size = self._size
        for t in items:
            if isinstance(t, torch.Tensor):
                self._tensors.append((size, t))
                size += t.numel() if t.dim() else 1
            elif isinstance(t, np.ndarray):
                self._arrays.append((size, t))
                size += t.size
            else:
                self._num_pos.append(size)
                self._nums.append(t)
                size += 1
        self._size = size
        if self.reduce_fn is not None:
            self.ops.append((start, size, op))
        return slice(start, size)

    def _groups(self) -> tuple[list[torch.Tensor], np.ndarray]:
        """The queued tensors as one float64 tensor per (kind, dtype, device), and the
        positions of their values in order."""
        groups: dict[tuple, tuple[list, list]] = {}
        for pos, t in self._tensors:
            key = (t.dim() > 0, t.dtype, t.device)
            g = groups.get(key)
            if g is None:
                g = groups[key] = ([], [])
            g[0].append(pos)
            g[1].append(t)
        flats, index = [], []
        for (vec, _, _), (where, ts) in groups.items():
            starts = np.asarray(where, dtype=np.int64)
            if vec:  # one cat per dtype, not one op per tensor
                flats.append(torch.cat(ts).to(torch.float64))
                lens = np.fromiter((t.numel() for t in ts), np.int64, len(ts))
                # value i of a tensor starting at p lands at p + i
                first = np.repeat(np.cumsum(lens) - lens, lens)
                index.append(np.repeat(starts, lens) + np.arange(int(lens.sum())) - first)
            else:
                flats.append(torch.stack(ts).to(torch.float64))
                index.append(starts)
        return flats, np.concatenate(index) if index else np.zeros(0, dtype=np.int64)

    def to_host(self) -> list[float]:
        """Everything queued, as one list of floats (one device-to-host copy)."""
        if self.reduce_fn is not None:
            return self._reduced_to_host()
        out = np.empty(self._size)
        if self._nums:
            out[self._num_pos] = self._nums
        for pos, a in self._arrays:
            out[pos : pos + a.size] = a
        flats, index = self._groups()
        if flats:
            device = flats[0].device
            out[index] = torch.cat([f.to(device) for f in flats]).cpu().numpy()
        return out.tolist()

    def _reduced_to_host(self) -> list[float]:
        """Distributed: the buffer in position order on the device, combined across ranks by
        ``reduce_fn``, then copied once; what ``reduce_fn`` appends is kept for ``rank_of``."""
        flats, index = self._groups()
        device = flats[0].device if flats else torch.device("cpu")
        pieces = [index]
        if self._nums:
            flats.append(torch.tensor([float(v) for v in self._nums], dtype=torch.float64))
            pieces.append(np.asarray(self._num_pos, dtype=np.int64))
        for pos, a in self._arrays:
            flats.append(torch.from_numpy(a.astype(np.float64)))
            pieces.append(np.arange(pos, pos + a.size))
        index = np.concatenate(pieces)
        flat = torch.cat([f.to(device) for f in flats]) if flats else torch.zeros(0).double()
        ordered = torch.empty(self._size, dtype=torch.float64, device=device)
        ordered[torch.from_numpy(index).to(device)] = flat
        out = self.reduce_fn(ordered, self).cpu().tolist()
        self._tail = out[self._size :]
        if self.after_copy is not None:
            self.after_copy(self._tail)
        return out[: self._size]

    def rank_of(self, pos: int) -> int | None:
        """Distributed: the rank a first-non-finite code or NaN/Inf count at ``pos`` came from."""
        i = self.rank_at.get(pos)
        if i is None or i - self._size >= len(self._tail):
            return None
        r = self._tail[i - self._size]
        return int(r) if r >= 0 else None
