"""Monte-Carlo networks of finite width: the independent reference for the theory's predictions.

Real weight matrices W ~ N(0, σ_w²/n), b ~ N(0, σ_b²), batched over independent
networks; nothing here uses gradprobe.theory.
"""

from __future__ import annotations

import torch


def _fixed_norm(x, q0):
    """Inputs with ‖x‖²/n = q0 exactly: the theory's input is a given vector."""
    return x * (q0 / x.pow(2).mean(-1, keepdim=True)).sqrt()


def mlp_forward(phi, sigma_w2, sigma_b2, width, depth, nets, batch, q0=1.0, seed=0, grad=False):
    """Per-network mean of h² at each layer, shape (nets, depth); with ``grad`` also of δ².

    δ^l = ∂loss/∂h^l for loss = Σ r·φ(h^L) with a fixed Gaussian readout r.
    """
    g = torch.Generator().manual_seed(seed)
    x = _fixed_norm(torch.randn(nets, batch, width, generator=g), q0).requires_grad_(grad)
    hs = []
    with torch.set_grad_enabled(grad):
        for _ in range(depth):
            w = torch.randn(nets, width, width, generator=g) * (sigma_w2 / width) ** 0.5
            b = torch.randn(nets, 1, width, generator=g) * sigma_b2**0.5
            h = torch.baddbmm(b, x, w.transpose(1, 2))
            if grad:
                h.retain_grad()
            hs.append(h)
            x = phi(h)
        q = torch.stack([h.detach().pow(2).mean((1, 2)) for h in hs], 1)
        if not grad:
            return q, None
        r = torch.randn(nets, 1, width, generator=g)
        (x * r).sum().backward()
    d = torch.stack([h.grad.pow(2).mean((1, 2)) for h in hs], 1)
    return q, d


def _dphi(phi, h):
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(phi(h).sum(), h)
    return d


def exact_single_input(phi, sigma_w2, sigma_b2, widths, nets, q0=1.0, seed=0, grad=False):
    """Many independent Gaussian networks, one input each, sampled exactly at O(n) per layer.

    For a fixed x and W ~ N(0, σ_w²/n) iid, W x ~ N(0, σ_w²‖x‖²/n · I) exactly, and
    given W x = a, W = a xᵀ/‖x‖² + W′(I − x xᵀ/‖x‖²) with W′ a fresh copy of W
    (Gaussian conditioning). So the forward and backward passes of a real network
    are sampled without ever drawing the n×n matrix: same law, n times cheaper.
    Returns per-network ‖h^l‖²/n_l, shape (nets, depth), and ‖δ^l‖²/n_l with ``grad``.
    """
    g = torch.Generator().manual_seed(seed)
    x = _fixed_norm(torch.randn(nets, int(widths[0]), generator=g), q0)
    xs, acts, hs = [], [], []
    for n in widths:
        n = int(n)
        scale = (sigma_w2 * x.pow(2).sum(1, keepdim=True) / n).sqrt()
        a = scale * torch.randn(nets, n, generator=g)
        h = a + torch.randn(nets, n, generator=g) * sigma_b2**0.5
        xs.append(x)
        acts.append(a)
        hs.append(h)
        x = phi(h)
    q = torch.stack([h.pow(2).mean(1) for h in hs], 1)
    if not grad:
        return q, None
    delta = _dphi(phi, hs[-1]) * torch.randn(nets, hs[-1].shape[1], generator=g)
    ds = [delta]
    for l in range(len(hs) - 1, 0, -1):
        xp, a, n = xs[l], acts[l], hs[l].shape[1]
        norm2 = xp.pow(2).sum(1, keepdim=True)
        fresh = torch.randn(nets, xp.shape[1], generator=g)
        fresh = fresh * (sigma_w2 * delta.pow(2).sum(1, keepdim=True) / n).sqrt()
        fresh = fresh - xp * (xp * fresh).sum(1, keepdim=True) / norm2
        back = xp * (a * delta).sum(1, keepdim=True) / norm2 + fresh  # Wᵀ δ
        delta = _dphi(phi, hs[l - 1]) * back
        ds.append(delta)
    d = torch.stack([dl.pow(2).mean(1) for dl in reversed(ds)], 1)
    return q, d
