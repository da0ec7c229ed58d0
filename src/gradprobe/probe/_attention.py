"""Attention logits and entropy, on a sample, without asking the model for its attention weights.

Two sources: a forward pre-hook on every ``nn.MultiheadAttention`` (its inputs and projection
weights give q and k), and a thin wrapper around ``F.scaled_dot_product_attention`` (torch's
SDPA; Hugging Face's default ``"sdpa"`` attention and hand-written attention that calls it),
whose calls are attributed to the innermost watched module running at the time. Both work
on logged steps only, from detached q and k under ``no_grad`` (a few small new tensors; no
random numbers, nothing written into the model's tensors): training is unchanged.

Sample: the first example of the batch, up to ``HEADS`` heads and up to ``QUERIES`` query
positions (evenly spaced, both), every key. Per (head, query) row, with ``z = q·k · scale``
(``scale = 1/√d`` unless the call gave one), masked positions removed and additive masks added
as the softmax sees them: ``p = softmax(z)``, entropy ``H = -Σ p ln p`` (nats). Recorded:
``max_logit`` (max of ``q·k · scale`` over allowed positions, without additive biases, so
Dehghani et al. 2023's growth of the logits shows), ``entropy`` (mean of H over rows),
``entropy_min`` (the lowest per-head mean, a collapsed head), ``entropy_uniform`` (mean of
``ln(keys allowed)``, the entropy of uniform attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import reducers as R

HEADS, QUERIES = 4, 64
_FIELDS = 5  # max_logit, Σ entropy, rows, min per-head mean entropy, Σ ln(keys)


class AttentionCall(NamedTuple):
    """One attention call on a logged step: where its five numbers are in the packer."""

    name: str
    values: slice


_PICKED: dict[tuple, torch.Tensor] = {}


def _pick(n: int, limit: int, device) -> torch.Tensor | None:
    """``limit`` evenly spaced indices of ``range(n)`` (None: all of them); cached."""
    if n <= limit:
        return None
    key = (n, limit, device)
    got = _PICKED.get(key)
    if got is None:
        if len(_PICKED) > 256:
            _PICKED.clear()
        got = _PICKED[key] = torch.linspace(0, n - 1, limit, device=device).round().long()
    return got


def stats(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The five numbers of a sample: ``q`` (h, m, d) and ``k`` (h, S, d); ``allowed`` a bool
    mask and ``bias`` an additive one, both broadcastable to (h, m, S). A 1-dim float tensor."""
    with torch.autocast(q.device.type, enabled=False):  # float32, whatever the caller's autocast
        z = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    return logit_stats(z, allowed, bias)


def logit_stats(z: torch.Tensor, allowed=None, bias=None) -> torch.Tensor:
    """:func:`stats` from the logits ``z`` (h, m, S) themselves."""
    if bias is not None:
        bias = bias.float()
        ok = bias > torch.finfo(torch.float32).min / 2  # -inf, or finfo.min as HF writes it
        allowed = ok if allowed is None else allowed & ok
    if allowed is None:
        allowed = torch.ones((), dtype=torch.bool, device=z.device)
    allowed = allowed.expand_as(z)
    neg = torch.tensor(-math.inf, device=z.device)
    max_logit = torch.where(allowed, z, neg).amax()
    zz = z if bias is None else z + torch.where(allowed, bias, 0.0)
    p = torch.softmax(torch.where(allowed, zz, neg), dim=-1)
    keys = allowed.sum(-1)  # (h, m)
    valid = keys > 0
    ent = torch.where(valid, torch.special.entr(p).sum(-1), 0.0)
    rows = valid.sum(-1)  # per head
    head_mean = torch.where(rows > 0, ent.sum(-1) / rows.clamp(min=1), math.inf)
    uniform = torch.where(valid, keys.clamp(min=1).float().log(), 0.0).sum()
    return torch.stack(
        [max_logit, ent.sum(), rows.sum().float(), head_mean.amin(), uniform]
    ).detach()


def sdpa_sample(
    query, key, value=None, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
    enable_gqa=False, **_,
) -> torch.Tensor | tuple | None:  # fmt: skip
    """The sample of one ``F.scaled_dot_product_attention`` call (its own arguments): the
    five numbers of :func:`stats` (a tuple of packer items on the common path, float32 without
    a mask)."""
    if not isinstance(key, torch.Tensor) or query.dim() < 3 or key.dim() < 3:
        return None
    if query.numel() == 0 or key.numel() == 0:  # no example, key or query: nothing to sample
        return None
    if (
        attn_mask is None
        and query.dtype == key.dtype == torch.float32
        and query.device.type == "cpu" == key.device.type
        and query.shape[-1] == key.shape[-1]  # else SDPA refuses it: nothing read here
        and query.shape[-3] % key.shape[-3] == 0  # every query head has its key head
        and _kernel()
        and not _autocast_on(query)
    ):  # the common path: example 0 read in place, no view made
        (H, L, E), (Hk, S) = query.shape[-3:], key.shape[-3:-1]
        rows = (L, None) if L <= QUERIES else (L, QUERIES)
        s = 1.0 / math.sqrt(E) if scale is None else float(scale)
        return _fused_stats(
            query, key, H, Hk, rows, s, is_causal, _keys_allowed(rows, S, is_causal, query.device)
        )
    lead = (0,) * (query.dim() - 3)
    q0, k0 = query.detach()[lead], key.detach()[(0,) * (key.dim() - 3)]  # (H, L, E), (Hk, S, E)
    H, L, E = q0.shape
    Hk, S = k0.shape[0], k0.shape[1]
    if S == 0 or L == 0:  # no key to attend to, or no query: nothing to sample
        return None
    hs = _pick(H, HEADS, q0.device)
    qi = _pick(L, QUERIES, q0.device)
    heads = torch.arange(H, device=q0.device) if hs is None else hs
    if hs is None and Hk == H:  # every head: no gather
        q, k = q0 if qi is None else q0[:, qi], k0
    else:
        kv = heads // max(H // Hk, 1) if Hk != H else heads
        q = q0[heads] if qi is None else q0[heads][:, qi]
        k = k0[kv]
    s = 1.0 / math.sqrt(E) if scale is None else float(scale)
    if attn_mask is None and q.dtype == k.dtype == torch.float32 and not _autocast_on(q):
        rows = (L, None) if qi is None else (L, QUERIES)
        return _unmasked_stats(q, k, s, _keys_allowed(rows, S, is_causal, q.device))
    allowed = bias = None
    if attn_mask is not None:
        m = attn_mask.detach().expand(*query.shape[:-1], S)[lead]  # (H, L, S), a view
        m = m[heads] if qi is None else m[heads][:, qi]
        if m.dtype == torch.bool:
            allowed = m
        else:
            bias = m
    if is_causal:
        rows = torch.arange(L, device=q0.device) if qi is None else qi
        causal = torch.arange(S, device=q0.device)[None, :] <= rows[:, None]
        allowed = causal if allowed is None else allowed & causal
    return stats(q, k, s, allowed, bias)


def _autocast_on(t: torch.Tensor) -> bool:
    """Is autocast on for ``t``'s device? (Unknown before torch 2.4: said to be.)"""
    try:
        return torch.is_autocast_enabled(t.device.type)
    except TypeError:
        return True


class _Keys(NamedTuple):
    """The keys each sampled query may see, without a mask (all) or causal (``j <= i``)."""

    hide: torch.Tensor | None  # (m, S) bool: True where masked out; None: nothing is
    log_keys: float  # Σ over the m rows of ln(keys allowed)
    rows: int  # m: every row sees at least one key


_KEYS: dict[tuple, _Keys] = {}


def _keys_allowed(rows: tuple, S: int, causal: bool, device) -> _Keys:
    """:class:`_Keys` of the query rows ``rows = (L, limit)``: :func:`_pick` of ``L`` rows
    (``limit`` None: all of them); cached, the same shapes come back every step."""
    key = (rows, S, causal, device)
    got = _KEYS.get(key)
    if got is None:
        L, limit = rows
        picked = None if limit is None else _pick(L, limit, device)
        idx = torch.arange(L) if picked is None else picked.cpu()
        if causal:
            keys = (idx + 1).clamp(max=S)  # row i sees keys 0..i (top-left aligned, as SDPA)
            hide = torch.arange(S)[None, :] > idx[:, None]
            hide = hide.to(device) if bool(hide.any()) else None
        else:
            keys, hide = torch.full_like(idx, S), None
        got = _Keys(hide, float(keys.double().log().sum()), int(idx.numel()))
        if len(_KEYS) > 256:
            _KEYS.clear()
        _KEYS[key] = got
    return got


def _unmasked_stats(q: torch.Tensor, k: torch.Tensor, scale: float, keys: _Keys) -> tuple:
    """:func:`stats` of float32 ``q`` (h, m, d), ``k`` (h, S, d) without a mask or causal
    (``keys``), in a dozen ops instead of thirty: the counts of allowed keys are constants
    (``_keys_allowed``) and every row sees a key. The five numbers, as packer items."""
    z = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)
    if keys.hide is not None:  # finite: exp() of it is 0, and 0 · log p is 0, not NaN
        z.masked_fill_(keys.hide, torch.finfo(torch.float32).min)
    logp = torch.log_softmax(z, dim=-1)
    # H = -Σ p ln p per row (entr() is 3x slower than these three), summed over the rows
    per_head = torch.mul(logp.exp(), logp).sum((-1, -2)).neg_()
    h = q.shape[0]
    m = keys.rows
    return (z.amax(), per_head.sum(), float(h * m), per_head.amin() / m, h * keys.log_keys)


_SAMPLED: dict[tuple, tuple] = {}


def _kernel() -> bool:
    """Is ``_fused.attention_f32`` built (an older build of ``_fused`` lacks it)?"""
    return R.FUSED is not None and hasattr(R.FUSED, "attention_f32")


def _fused_stats(query, key, H: int, Hk: int, rows: tuple, scale: float, causal: bool, keys):
    """:func:`_unmasked_stats` of the first example of float32 CPU ``query`` (..., H, L, E)
    and ``key`` (..., Hk, S, E) in one ``_fused.attention_f32`` call, read in place through
    their strides (example 0 starts at ``data_ptr()``): the same sample (:func:`_pick` of the
    heads and query rows, grouped key heads), the logits and entropies in float64."""
    at = (H, Hk, rows)
    got = _SAMPLED.get(at)
    if got is None:
        hs, qi = _pick(H, HEADS, "cpu"), _pick(rows[0], QUERIES, "cpu")
        heads = tuple(range(H)) if hs is None else tuple(hs.tolist())
        kv = tuple(i // max(H // Hk, 1) for i in heads) if Hk != H else heads
        got = (heads, kv, tuple(range(rows[0])) if qi is None else tuple(qi.tolist()))
        if len(_SAMPLED) > 256:
            _SAMPLED.clear()
        _SAMPLED[at] = got
    heads, kv, picked = got
    max_logit, total, min_head = R.FUSED.attention_f32(
        query.data_ptr(), query.stride()[-3:], key.data_ptr(), key.stride()[-3:], heads, kv,
        picked, key.shape[-2], query.shape[-1], scale, causal,
    )  # fmt: skip
    h = len(heads)
    return (max_logit, total, float(h * keys.rows), min_head, h * keys.log_keys)


def _mha_mask(mask, n_heads: int, heads, qi, key_mask: bool):
    """An MHA mask (True = masked out, or additive) as (allowed, bias) for example 0."""
    if mask is None:
        return None, None
    m = mask.detach()
    if key_mask:  # key_padding_mask (N, S) or (S,)
        m = (m[0] if m.dim() == 2 else m)[None, None, :]
    elif m.dim() == 3:  # (N·H, L, S): example 0 is the first H
        m = m[:n_heads][heads]
        m = m if qi is None else m[:, qi]
    else:  # (L, S)
        m = (m if qi is None else m[qi])[None]
    if m.dtype == torch.bool:
        return ~m, None
    return None, m


def mha_sample(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The sample of one ``nn.MultiheadAttention`` call, from its inputs and weights."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    query, key = bound.get("query"), bound.get("key")
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
        return None
    E, H = module.embed_dim, module.num_heads
    hd = E // H
    batched = query.dim() == 3
    if batched:
        q_in = query[0] if module.batch_first else query[:, 0]
        k_in = key[0] if module.batch_first else key[:, 0]
    else:
        q_in, k_in = query, key
    q_in, k_in = q_in.detach(), k_in.detach()
    L, S = q_in.shape[0], k_in.shape[0]
    if module._qkv_same_embed_dim:
        w = module.in_proj_weight.detach()
        wq, wk = w[:E], w[E : 2 * E]
    else:
        wq, wk = module.q_proj_weight.detach(), module.k_proj_weight.detach()
    b = module.in_proj_bias
    bq, bk = (None, None) if b is None else (b.detach()[:E], b.detach()[E : 2 * E])
    hs, qi = _pick(H, HEADS, q_in.device), _pick(L, QUERIES, q_in.device)
    heads = torch.arange(H, device=q_in.device) if hs is None else hs
    qx = q_in if qi is None else q_in[qi]
    q = F.linear(qx, wq.to(qx.dtype), None if bq is None else bq.to(qx.dtype))
    k = F.linear(k_in, wk.to(k_in.dtype), None if bk is None else bk.to(k_in.dtype))
    q = q.reshape(q.shape[0], H, hd).transpose(0, 1)[heads]  # (h, m, hd)
    k = k.reshape(S, H, hd).transpose(0, 1)
    extra = 0
    if module.bias_k is not None:
        k = torch.cat([k, module.bias_k.detach().reshape(H, 1, hd).to(k.dtype)], dim=1)
        extra += 1
    if module.add_zero_attn:
        k = torch.cat([k, k.new_zeros(H, 1, hd)], dim=1)
        extra += 1
    k = k[heads]
    allowed, bias = _mha_mask(bound.get("attn_mask"), H, heads, qi, key_mask=False)
    ka, kb = _mha_mask(bound.get("key_padding_mask"), H, heads, qi, key_mask=True)
    if bound.get("is_causal") and bound.get("attn_mask") is None:
        rows = torch.arange(L, device=q.device) if qi is None else qi
        allowed = torch.arange(S, device=q.device)[None, None, :] <= rows[None, :, None]
    allowed = _both(allowed, ka, torch.logical_and)
    bias = _both(bias, kb, torch.add)
    if extra:  # the added keys are never masked
        allowed = None if allowed is None else F.pad(allowed, (0, extra), value=True)
        bias = None if bias is None else F.pad(bias, (0, extra), value=0.0)
    return stats(q, k, 1.0 / math.sqrt(hd), allowed, bias)


def softmax_sample(x: torch.Tensor) -> torch.Tensor | None:
    """Eager attention (Hugging Face's ``"eager"``, hand-written ``softmax(q kᵀ/√d + mask)``):
    the sample of the softmax's input (..., H, L, S), whose masked entries are ``-inf`` or
    near ``finfo(dtype).min`` (an additive bias other than the mask is in the logits)."""
    if x.dim() < 3 or not x.is_floating_point():
        return None
    z0 = x.detach()[(0,) * (x.dim() - 3)]  # (H, L, S)
    hs, qi = _pick(z0.shape[0], HEADS, z0.device), _pick(z0.shape[1], QUERIES, z0.device)
    z = z0 if hs is None else z0[hs]
    z = (z if qi is None else z[:, qi]).float()
    allowed = z > torch.finfo(x.dtype).min / 2  # -inf and finfo.min: masked out
    return logit_stats(z, allowed)


def _both(a, b, op):
    if a is None or b is None:
        return a if b is None else b
    return op(a, b)


def combine(values: list[list[float]]) -> dict[str, float] | None:
    """The calls of one module in a step: max of the maxima, means over all rows, min."""
    rows = sum(v[2] for v in values)
    if rows <= 0:
        return None
    return {
        "max_logit": max(v[0] for v in values),
        "entropy": sum(v[1] for v in values) / rows,
        "entropy_min": min(v[3] for v in values),
        "entropy_uniform": sum(v[4] for v in values) / rows,
        "calls": float(len(values)),
    }


# -- thin wrappers of F.scaled_dot_product_attention and F.softmax (one per process, shared
# by every open probe; without an open probe torch's functions are in place) -------------
_observers: list[Callable] = []  # fn(kind, args, kwargs)
_originals: dict[str, Callable] = {}
_installed: set[str] = set()  # our wrapper is in place, or still called by a later wrapper


_inside = [0]  # wrapped calls running: torch's softmax names itself (our wrapper, once
# in place) to a TorchFunctionMode (probe/_functional.py), which calls it again: seen once


def _observed(kind: str, name: str, args: tuple, kwargs: dict):
    if _observers and not _inside[0]:
        for fn in list(_observers):
            fn(kind, args, kwargs)
    _inside[0] += 1
    try:
        return _originals[name](*args, **kwargs)
    finally:
        _inside[0] -= 1


def _sdpa(*args, **kwargs):
    return _observed("sdpa", "scaled_dot_product_attention", args, kwargs)


def _softmax(*args, **kwargs):
    return _observed("softmax", "softmax", args, kwargs)


_WRAPPERS = {"scaled_dot_product_attention": _sdpa, "softmax": _softmax}


def observe(fn: Callable) -> None:
    """Call ``fn(kind, args, kwargs)`` ("sdpa" or "softmax") before every call of those two
    functions of ``torch.nn.functional`` (installing the wrappers if they are not in place)."""
    for name, wrapper in _WRAPPERS.items():
        if name not in _installed:
            _originals[name] = getattr(F, name)
            setattr(F, name, wrapper)
            _installed.add(name)
    _observers.append(fn)


def unobserve(fn: Callable) -> None:
    """Stop calling ``fn``; the last observer gone, torch's functions are put back (unless
    someone wrapped ours after us: then ours stays in their chain, as a pass-through)."""
    if fn in _observers:
        _observers.remove(fn)
    if _observers:
        return
    for name, wrapper in _WRAPPERS.items():
        if name in _installed and getattr(F, name) is wrapper:
            setattr(F, name, _originals[name])
            _installed.discard(name)


def sdpa_call(args: tuple, kwargs: dict) -> dict:
    """An SDPA call's arguments by name."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    return {**dict(zip(names, args, strict=False)), **kwargs}


class AttentionHooks:
    """Part of :class:`~gradprobe.probe.probe.Probe`: attention samples on logged steps, from
    a pre-hook on each ``nn.MultiheadAttention`` and from the SDPA wrapper."""

    def _install_attention(self) -> None:
        for s in self._slots[1:]:  # type: ignore[attr-defined]
            if isinstance(s.module, nn.MultiheadAttention):
                self.hooks.forward_pre(s.module, self._mha_hook(s), f"{s.name} attention", True)  # type: ignore[attr-defined]
        self._sdpa_observer = self.hooks.wrap(self._on_sdpa, "attention")  # type: ignore[attr-defined]
        observe(self._sdpa_observer)

    def _remove_attention(self) -> None:
        observer = getattr(self, "_sdpa_observer", None)
        if observer is not None:
            unobserve(observer)

    def _keep_sample(self, name: str, values: torch.Tensor | tuple | None) -> None:
        st = self._state  # type: ignore[attr-defined]
        if values is not None:
            items = values if isinstance(values, tuple) else (values,)
            st.attention.append(AttentionCall(name, st.packer.add(*items, op="rank0")))

    def _mha_hook(self, slot) -> Callable:
        def hook(module, args, kwargs):
            if self.hooks.active and self._state.logged and not self._evaluating():  # type: ignore[attr-defined]
                with torch.no_grad():
                    self._keep_sample(slot.name, mha_sample(module, args, kwargs))

        return hook

    def _on_sdpa(self, kind: str, args: tuple, kwargs: dict) -> None:
        st = self._state  # type: ignore[attr-defined]
        if not (self.hooks.active and st.logged and st.running) or self._evaluating():  # type: ignore[attr-defined]
            return
        slot = st.running[-1]  # the innermost watched module: it made the call
        if isinstance(slot.module, nn.MultiheadAttention):
            return  # its own pre-hook took the sample
        with torch.no_grad():
            if kind == "sdpa":
                call = sdpa_call(args, kwargs)
                if isinstance(call.get("query"), torch.Tensor):
                    self._keep_sample(slot.name, sdpa_sample(**call))
            elif kind == "softmax" and "attention" in type(slot.module).__name__.lower():
                x = args[0] if args else kwargs.get("input")
                dim = args[1] if len(args) > 1 else kwargs.get("dim")
                if isinstance(x, torch.Tensor) and dim in (-1, x.dim() - 1):
                    self._keep_sample(slot.name, softmax_sample(x))
