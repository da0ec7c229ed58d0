"""``record_step(model, inputs)``: one watched forward + backward, the model left as it was.

This is the probe's half of ``gp.check``: it returns the :class:`~gradprobe.run.Run` of one
logged step and the loss it back-propagated. Judging the run (diagnose) and predicting it
(theory) happen above, in :mod:`gradprobe.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradprobeError, InvalidInputError
from ..run import Run
from .modules import primary_tensor
from .watch import watch


@dataclass(frozen=True)
class Recorded:
    """What one recorded step left: the run, the loss value and where the loss came from."""

    run: Run
    loss: float
    loss_source: str  # "loss_fn", "model", "cross_entropy", "mse" or "half_sum_sq"


def split_inputs(inputs: object) -> tuple[tuple, dict]:
    """``inputs`` as positional and keyword arguments of the model's forward."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, (tuple, list)) and inputs:
        return tuple(inputs), {}
    if isinstance(inputs, Mapping) and inputs:
        return (), dict(inputs)
    raise InvalidInputError(
        f"inputs must be a tensor, a non-empty tuple of tensors or a dict, got "
        f"{type(inputs).__name__}; pass a batch of data, e.g. torch.randn(64, 784)"
    )


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    return [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)]


def _check_inputs(model: nn.Module, args: tuple, kwargs: dict, target: object) -> None:
    """Clear errors for what would otherwise be a traceback or a silently wrong verdict."""
    params = list(model.parameters())
    if params and not any(p.requires_grad for p in params):
        raise InvalidInputError(
            f"every parameter of {type(model).__name__} is frozen (requires_grad=False): there "
            "is no gradient to check; unfreeze the layers you train, e.g. "
            "p.requires_grad_(True) for p in model.parameters()"
        )
    device = params[0].device if params else None
    tensors = _tensors(args, kwargs)
    if isinstance(target, torch.Tensor):
        tensors.append(target)
    for x in tensors:
        if x.device.type == "meta" or (device is not None and device.type == "meta"):
            raise InvalidInputError(
                "the model or the inputs are on the 'meta' device, which holds shapes but no "
                "values: there are no numbers to check; materialise the model with "
                "model.to_empty(device='cpu') and initialise it, and pass real tensors"
            )
        if device is not None and x.device != device:
            raise InvalidInputError(
                f"the inputs are on {x.device} but the model is on {device}; move them with "
                f"inputs.to({str(device)!r})"
            )
    for x in tensors:
        if x.dim() > 0 and x.shape[0] == 0:
            raise InvalidInputError(
                f"the batch is empty (a tensor of shape {tuple(x.shape)}): a loss over no "
                "examples is NaN and says nothing about the model; pass at least one example"
            )


def _model_loss(out: object) -> torch.Tensor | None:
    """The scalar loss a model returned itself: Hugging Face's ``ModelOutput.loss``, a
    ``{"loss": ...}`` dict, or a bare 0-d tensor."""
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if loss is None and isinstance(out, torch.Tensor) and out.dim() == 0:
        loss = out
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point():
        return loss.reshape(())
    return None


def _output_key(out: object, y: torch.Tensor) -> str | None:
    if isinstance(out, Mapping):
        for key, value in out.items():
            if value is y or primary_tensor(value) is y:
                return str(key)
    return None


def _default_loss(y: torch.Tensor, target: object) -> tuple[torch.Tensor, str]:
    if target is None:  # L = ½ Σ y², so ∂L/∂y = y
        return 0.5 * y.float().pow(2).sum(), "half_sum_sq"
    if not isinstance(target, torch.Tensor):
        raise InvalidInputError(
            f"target must be a tensor (class indices or values), got {type(target).__name__}"
        )
    if not target.is_floating_point():
        return F.cross_entropy(y.float(), target), "cross_entropy"
    if target.shape != y.shape:  # MSE would broadcast silently into wrong numbers
        raise InvalidInputError(
            f"a value target must have the output's shape {tuple(y.shape)}, got "
            f"{tuple(target.shape)}; pass a target that matches the output, or class "
            "indices (an integer tensor) for cross-entropy"
        )
    return F.mse_loss(y.float(), target.float()), "mse"


def _loss(out: object, target: object, loss_fn: Callable | None) -> tuple[torch.Tensor, str]:
    """The loss to back-propagate and where it came from (see :func:`record_step`)."""
    if loss_fn is not None:
        try:
            loss = loss_fn(out) if target is None else loss_fn(out, target)
        except GradprobeError:
            raise
        except Exception as err:
            raise InvalidInputError(
                f"loss_fn raised {type(err).__name__}: {err}; it is called as "
                f"loss_fn(output{', target' if target is not None else ''}) with the model's "
                f"whole output ({type(out).__name__}); fix loss_fn or the target"
            ) from err
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise InvalidInputError("loss_fn must return a scalar tensor; reduce it with .mean()")
        return loss.reshape(()), "loss_fn"
    own = _model_loss(out)
    if own is not None:
        return own, "model"
    y = primary_tensor(out)
    if y is None:
        raise InvalidInputError(
            f"the model returned no floating-point tensor to check ({type(out).__name__}); "
            "pass loss_fn=... that computes a scalar loss from the model's output"
        )
    try:
        return _default_loss(y, target)
    except GradprobeError as err:
        key = _output_key(out, y)
        if key is None:
            raise
        raise InvalidInputError(
            f"{err} (the output is a dict; its first floating-point value, key {key!r}, was "
            "used: pass loss_fn=lambda out, y: ... to choose)"
        ) from None
    except Exception as err:
        key = _output_key(out, y)
        where = f" (key {key!r} of the output dict)" if key else ""
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else None
        raise InvalidInputError(
            f"the loss could not be computed from the output of shape {tuple(y.shape)}{where} "
            f"and the target of shape {shape} ({type(err).__name__}: {err}); pass a target "
            "that matches the output (class indices of shape (batch,) or values shaped like "
            "the output), or loss_fn=... to compute the loss yourself"
        ) from None


def record_step(
    model: nn.Module,
    inputs: object,
    target: object = None,
    loss_fn: Callable | None = None,
    *,
    histograms: bool = True,
    path: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> Recorded:
    """One watched forward + backward; gradients, buffers and RNG states restored after.

    The loss, in this order: ``loss_fn(output[, target])``; the scalar loss the model returned
    itself (``output.loss``, ``output["loss"]`` or a 0-d output); cross-entropy when ``target``
    holds class indices; MSE when it holds floats shaped like the output; else ``½ Σ y²`` of
    the output ``y`` (so ∂L/∂y = y). ``meta`` is stored in the run before it is closed.
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"check needs a torch.nn.Module, got {type(model).__name__}; pass the model itself"
        )
    args, kwargs = split_inputs(inputs)
    _check_inputs(model, args, kwargs, target)
    grads = {p: p.grad for p in model.parameters()}
    buffers: dict[torch.Tensor, torch.Tensor] = {}
    probe = watch(model, every=1, histograms=histograms, path=path, updates=False)
    try:
        buffers = {b: b.detach().clone() for b in model.buffers()}
        for p in grads:
            p.grad = None
        cuda = sorted({p.device.index or 0 for p in grads if p.device.type == "cuda"})
        # fork_rng: dropout in the checked forward must not move the caller's random stream
        with probe, torch.random.fork_rng(devices=cuda):
            try:
                out = model(*args, **kwargs)
            except GradprobeError:
                raise
            except Exception as err:
                hint, what = "", "pass a batch shaped as the model expects"
                norms = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
                if "more than 1 value per channel" in str(err) and any(
                    isinstance(m, norms) for m in model.modules()
                ):
                    # a batch norm in training mode cannot normalise one value per channel
                    what = (
                        "its BatchNorm, in training mode as check runs it, needs more than one "
                        "value per channel: pass a batch of at least 2 examples (e.g. "
                        "torch.randn(8, ...)); on the command line an --input-shape that "
                        "starts with 8"
                    )
                elif any(isinstance(m, nn.Embedding) for m in model.modules()):
                    hint = (
                        "; the model has an nn.Embedding, which takes integer token ids: pass "
                        "them (e.g. torch.randint(0, vocab, (batch, length))), on the command "
                        "line with --input FILE"
                    )
                raise InvalidInputError(
                    f"the model's forward failed on the inputs given to check "
                    f"({type(err).__name__}: {err}); {what}{hint}"
                ) from err
            loss, source = _loss(out, target, loss_fn)
            if not loss.requires_grad:
                raise InvalidInputError(
                    "the loss does not depend on any trainable parameter (no gradient to "
                    "check); make sure the output is computed from the model's parameters "
                    "and not under torch.no_grad()"
                )
            loss.backward()
            probe.step(loss=loss)
            value = float(loss.detach())
            extra = {**(meta or {}), "loss": value, "loss_source": source}
            if isinstance(target, torch.Tensor) and target.is_floating_point():
                bad = float((~torch.isfinite(target)).float().mean())
                if bad:  # the diagnosis names the target, not the layer its NaN reached first
                    extra["target_nonfinite"] = bad
            for key, item in extra.items():
                probe.run.set_meta(key, item)
    finally:
        with torch.no_grad():
            for b, saved in buffers.items():
                b.copy_(saved)
        for p, g in grads.items():
            p.grad = g
    return Recorded(probe.run, value, source)
