"""The parameter gradients of a logged step, read in one C call at the end of the backward.

A parameter's gradient hook on a logged step used to summarise its ``.grad``, take ``‖w‖``
and copy ``w_{t-1}`` there and then: three calls into C and a dozen Python calls per
parameter, ~100 µs each in a real training loop (the torch ops between two hooks evict the
probe's code and data from the caches), for ~5 µs of arithmetic on a small parameter.
Here the hook only notes the parameter (``GradBatch.take``); the first one queues a callback
with the autograd engine, which runs once the whole backward is done (the gradients and
the weights are final: the optimizer has not stepped) and reads every noted parameter in
one ``_fused.grads_f32`` call — the same numbers as ``reducers.summarise`` and
``reducers.norm_of`` (the same kernels), the same snapshot. The records keep the backward's
order: each parameter's place in ``StepState.backward`` is held from its hook on.

Only what the kernel can read in place: one process, contiguous float32 CPU gradients and
weights of the same shape, a parameter with no gradient hook but the probe's; weights above
``reducers.NORM_FUSED_MAX`` values keep torch's threaded dot in the hook. Everything else
takes the hook's own path, as before.
"""

from __future__ import annotations

import numpy as np
import torch

from . import reducers as R
from ._state import Snapshot, StepState
from ._stats import Backward
from .modules import BwdRec

WIDTH = 6  # grads_f32's numbers per parameter: MomentSums of the gradient, then Σw²


def available() -> bool:
    """Is the batched path built (``_fused`` with ``grads_f32``), and is this one process
    (DDP's gradient sync also ends with the backward: its buckets are not read here)?"""
    if R.FUSED is None or not hasattr(R.FUSED, "grads_f32"):
        return False
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized())


def _other_hooks(p: torch.Tensor) -> bool:
    """Has ``p`` a gradient hook besides the probe's? (One that steps an optimizer inside the
    backward, torch's "optimizer in backward", changes the weights and ``.grad`` before the
    backward ends: then it is read in the probe's own hook, as before.) Unknown: True."""
    hooks = getattr(p, "_post_accumulate_grad_hooks", None)
    return hooks is None or len(hooks) > 1


class GradBatch:
    """The parameters noted by the gradient hooks of one backward, read at its end."""

    def __init__(self, snapshot: Snapshot, wrap=None) -> None:
        self.snapshot = snapshot
        # the engine's callback, its exceptions kept from the training loop (HookSet.wrap)
        self._callback = self.flush if wrap is None else wrap(self.flush)
        # (place in state.backward, record, index, grad, weights or None, snapshot or None)
        self._pending: list[tuple[int, BwdRec, int, torch.Tensor, object, object]] = []
        self._state: StepState | None = None
        self._queued = False

    def take(self, state: StepState, rec: BwdRec, index: int, p: torch.Tensor) -> bool:
        """Note ``p`` (its ``.grad`` complete for this backward) to be read at the end of the
        backward; False when it cannot be (the caller records it itself)."""
        g = p.grad
        if not (R._plain32(g) and g.shape == p.shape) or _other_hooks(p):
            return False
        w = p.detach()
        weigh = index not in state.weight_norms
        if weigh and not (R._plain32(w) and w.numel() <= R.NORM_FUSED_MAX):
            return False  # large weights: torch's threaded dot, in the hook
        if self._state is not state:  # a new step: nothing left from an earlier one
            self.flush()
            self._state = state
        snap = self.snapshot.buffer(index, w) if weigh and state.update else None
        state.backward.append(None)  # its place, filled by flush()
        self._pending.append((len(state.backward) - 1, rec, index, g, w if weigh else None, snap))
        if weigh:
            state.weight_norms[index] = slice(0, 0)  # taken: filled by flush()
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._callback)
        return True

    def flush(self) -> None:
        """Read every noted parameter (one C call) and fill their records; idempotent, and
        called again at the end of the step (a backward that raised ran no callback)."""
        self._queued = False
        pending, st = self._pending, self._state
        if not pending or st is None:
            return
        self._pending = []
        k = len(pending)
        spec = np.zeros((k, 4), dtype=np.int64)
        for j, (_, _, _, g, w, snap) in enumerate(pending):
            spec[j, 0], spec[j, 1] = g.data_ptr(), g.numel()
            if w is not None:
                spec[j, 2] = w.data_ptr()
                if snap is not None:
                    spec[j, 3] = snap.data_ptr()
        out = np.empty((k, WIDTH), dtype=np.float64)
        try:
            R.FUSED.grads_f32(spec.ctypes.data, k, out.ctypes.data)
        except BaseException:  # no records: the step goes on without these parameters
            st.backward[:] = [b for b in st.backward if b is not None]
            for _, _, index, _, w, _ in pending:
                if w is not None:
                    del st.weight_norms[index]
            raise
        out[:, 5] = np.sqrt(out[:, 5])  # ‖w‖ (NaN where no weight norm was asked)
        at = st.packer.add(out.reshape(-1)).start
        for j, (pos, rec, _, g, w, _) in enumerate(pending):
            base = at + WIDTH * j
            st.backward[pos] = Backward(rec, g.numel(), slice(base, base + 5), None, None, g.dtype)
            if w is not None:
                st.weight_norms[pending[j][2]] = slice(base + 5, base + 6)
