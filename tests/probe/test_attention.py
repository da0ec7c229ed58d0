"""Attention max logit and entropy (probe/_attention.py) against hand computations: an
``nn.MultiheadAttention`` with masks, ``F.scaled_dot_product_attention`` (causal, additive
mask, GQA, the sample of heads and queries) and a Hugging Face GPT-2."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprobe as gp
from gradprobe.probe import _attention


def _rows(run, layer, step=0):
    return {s: v for (st, la, q, s, v) in run.rows(step) if la == layer and q == "attention"}


def _by_hand(logits, allowed, bias=None):
    """logits (h, m, S), allowed bool (h, m, S): the recorded numbers, the plain way."""
    h, m, _ = logits.shape
    z = logits + (0 if bias is None else bias)
    ents, per_head, uni = [], [], []
    for i in range(h):
        head = []
        for j in range(m):
            a = allowed[i, j]
            if not a.any():
                continue
            p = torch.softmax(z[i, j][a].double(), 0)
            head.append(float(-(p * p.log()).sum()))
            uni.append(math.log(int(a.sum())))
        ents += head
        per_head.append(sum(head) / len(head))
    return {
        "max_logit": float(logits[allowed].max()),
        "entropy": sum(ents) / len(ents),
        "entropy_min": min(per_head),
        "entropy_uniform": sum(uni) / len(uni),
    }


def _check(got, want):
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


class MHA(nn.Module):
    def __init__(self, need_weights=False):
        super().__init__()
        torch.manual_seed(0)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x, mask, kpm):
        out, w = self.attn(
            x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=self.need_weights,
            average_attn_weights=False,
        )  # fmt: skip
        self.weights = w
        return out


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_against_a_hand_computation(need_weights):
    model = MHA(need_weights)
    x = torch.randn(3, 8, 16, generator=torch.Generator().manual_seed(1)) * 3
    mask = torch.triu(torch.ones(8, 8, dtype=torch.bool), 1)  # True = may not attend
    kpm = torch.zeros(3, 8, dtype=torch.bool)
    kpm[0, 5:] = True  # example 0 (the sample) has 3 padded keys
    with gp.watch(model) as probe:
        model(x, mask, kpm).sum().backward()
        probe.step()
    a = model.attn
    wq, wk = a.in_proj_weight[:16], a.in_proj_weight[16:32]
    bq, bk = a.in_proj_bias[:16], a.in_proj_bias[16:32]
    with torch.no_grad():
        q = (x[0] @ wq.T + bq).reshape(8, 2, 8).transpose(0, 1)
        k = (x[0] @ wk.T + bk).reshape(8, 2, 8).transpose(0, 1)
        logits = q @ k.transpose(1, 2) / math.sqrt(8)
    allowed = (~mask & ~kpm[0][None, :]).expand(2, 8, 8)
    want = _by_hand(logits, allowed)
    got = _rows(probe.run, "attn")
    _check(got, want)
    assert got["calls"] == 1
    if need_weights:  # torch's own attention weights give the same entropy
        p = model.weights[0].detach().double()
        ent = torch.special.entr(p).sum(-1)
        assert got["entropy"] == pytest.approx(float(ent.mean()), rel=1e-5)


class SDPA(nn.Module):
    def __init__(self, heads=4, kv_heads=4, d=8, **call):
        super().__init__()
        torch.manual_seed(0)
        self.q = nn.Linear(16, heads * d)
        self.kv = nn.Linear(16, 2 * kv_heads * d)
        self.h, self.hk, self.d, self.call = heads, kv_heads, d, call

    def forward(self, x):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.h, self.d).transpose(1, 2)
        k, v = self.kv(x).view(B, L, 2, self.hk, self.d).permute(2, 0, 3, 1, 4)
        self.qk = (q.detach(), k.detach())
        o = F.scaled_dot_product_attention(q, k, v, **self.call)
        return o.transpose(1, 2).reshape(B, L, -1)


def _sdpa_case(L=10, **kw):
    model = SDPA(**kw)
    x = torch.randn(2, L, 16, generator=torch.Generator().manual_seed(2)) * 2
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    q, k = model.qk
    return probe.run, q[0], k[0]


def test_sdpa_causal_against_a_hand_computation():
    run, q, k = _sdpa_case(is_causal=True)
    logits = q @ k.transpose(1, 2) / math.sqrt(8)
    allowed = torch.tril(torch.ones(10, 10, dtype=torch.bool)).expand(4, 10, 10)
    _check(_rows(run, "(model)"), _by_hand(logits, allowed))


def test_sdpa_additive_mask_given_scale_and_grouped_query_heads():
    bias = torch.randn(10, 10, generator=torch.Generator().manual_seed(3))
    bias[:, 7:] = -math.inf  # keys 7.. masked out for every query
    run, q, k = _sdpa_case(heads=4, kv_heads=2, attn_mask=bias, scale=0.3, enable_gqa=True)
    k = k.repeat_interleave(2, dim=0)  # query heads 0, 1 share key head 0
    logits = q @ k.transpose(1, 2) * 0.3
    allowed = torch.isfinite(bias).expand(4, 10, 10)
    _check(_rows(run, "(model)"), _by_hand(logits, allowed, torch.where(allowed, bias, 0.0)))


def test_the_sample_is_four_heads_and_64_queries_of_the_first_example():
    run, q, k = _sdpa_case(L=100, heads=8, kv_heads=8)
    heads, queries = [0, 2, 5, 7], torch.linspace(0, 99, 64).round().long()
    logits = q[heads][:, queries] @ k[heads].transpose(1, 2) / math.sqrt(8)
    allowed = torch.ones(4, 64, 100, dtype=torch.bool)
    _check(_rows(run, "(model)"), _by_hand(logits, allowed))


def test_causal_attention_sampled_over_heads_queries_and_grouped_key_heads():
    """The unmasked fast path (constant key counts, no mask tensor) on sampled query rows:
    row i of the causal mask sees keys 0..i, for the picked i."""
    run, q, k = _sdpa_case(L=100, heads=8, kv_heads=2, is_causal=True, enable_gqa=True)
    heads, queries = [0, 2, 5, 7], torch.linspace(0, 99, 64).round().long()
    k = k.repeat_interleave(4, dim=0)[heads]
    logits = q[heads][:, queries] @ k.transpose(1, 2) / math.sqrt(8)
    allowed = (torch.arange(100)[None, :] <= queries[:, None]).expand(4, 64, 100)
    _check(_rows(run, "(model)"), _by_hand(logits, allowed))


@pytest.mark.parametrize("causal", [False, True])
def test_the_unmasked_fast_path_gives_the_general_paths_numbers(causal):
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(2, 6, 80, 16, generator=g) * 3, torch.randn(2, 6, 90, 16, generator=g)
    fast = _attention.sdpa_sample(q, k, is_causal=causal, scale=0.2)
    assert isinstance(fast, tuple)  # the fast path was taken
    heads, rows = torch.linspace(0, 5, 4).round().long(), torch.linspace(0, 79, 64).round().long()
    allowed = torch.arange(90)[None, :] <= rows[:, None] if causal else None
    want = _attention.stats(q[0][heads][:, rows], k[0][heads], 0.2, allowed)
    got = torch.tensor([float(v) for v in fast])
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got, want)


def test_under_autocast_the_logits_are_still_float32():
    """bfloat16 autocast on the CPU: the general path (autocast off, float32), not a
    bfloat16 matmul of the fast one."""
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(1, 4, 30, 16, generator=g) * 4, torch.randn(1, 4, 30, 16, generator=g) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = _attention.sdpa_sample(q, k, is_causal=True)
    outside = _attention.sdpa_sample(q, k, is_causal=True)
    got, want = inside.tolist(), [float(v) for v in outside]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_attention_is_sampled_on_logged_steps_only_and_the_wrapper_is_put_back():
    original, softmax = F.scaled_dot_product_attention, F.softmax
    model = SDPA(is_causal=True)
    with gp.watch(model, every=2) as probe:
        assert F.scaled_dot_product_attention is not original  # the thin wrapper
        with gp.watch(SDPA()) as inner:  # two probes share it
            inner.step()
        assert F.scaled_dot_product_attention is not original
        for _ in range(3):
            model(torch.randn(2, 6, 16)).sum().backward()
            probe.step()
    assert F.scaled_dot_product_attention is original and F.softmax is softmax
    df = probe.run.to_pandas()
    assert sorted(set(df[df.quantity == "attention"].step)) == [0, 2]
    assert _attention._observers == []


def test_hugging_face_gpt2_attention_sdpa_and_eager_against_its_attention_weights():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2, attn_pdrop=0.0,
        resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    sdpa = transformers.GPT2LMHeadModel(config)
    sdpa.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(4))
    qkv = []  # c_attn's output: q, k, v of every block, for the max logit by hand
    handles = [
        b.attn.c_attn.register_forward_hook(lambda m, a, o: qkv.append(o.detach()))
        for b in sdpa.transformer.h
    ]
    with gp.watch(sdpa) as probe:
        sdpa(ids, labels=ids).loss.backward()
        probe.step()
    for h in handles:
        h.remove()
    sdpa.config._attn_implementation = "eager"  # the same weights, attention returned
    with torch.no_grad():
        probs = sdpa(ids, output_attentions=True).attentions
    with gp.watch(sdpa) as eager:  # eager attention is sampled at its softmax
        sdpa(ids, labels=ids).loss.backward()
        eager.step()
    for i, p in enumerate(probs):
        got = _rows(probe.run, f"transformer.h.{i}.attn")
        _check(_rows(eager.run, f"transformer.h.{i}.attn"), got)
        ent = torch.special.entr(p[0].double()).sum(-1)  # example 0, every head and query
        assert got["entropy"] == pytest.approx(float(ent.mean()), rel=1e-5)
        assert got["entropy_min"] == pytest.approx(float(ent.mean(-1).min()), rel=1e-5)
        assert got["entropy_uniform"] == pytest.approx(
            sum(math.log(j + 1) for j in range(12)) / 12, rel=1e-6
        )
        q, k, _ = qkv[i][0].split(16, dim=-1)  # example 0
        q, k = (t.reshape(12, 2, 8).transpose(0, 1) for t in (q, k))
        logits = q @ k.transpose(1, 2) / math.sqrt(8)
        causal = torch.tril(torch.ones(12, 12, dtype=torch.bool)).expand(2, 12, 12)
        assert got["max_logit"] == pytest.approx(float(logits[causal].max()), rel=1e-5)
        assert got["calls"] == 1


class CausalSelfAttention(nn.Module):
    """Hand-written eager attention: softmax(q kᵀ/√d + mask) through F.softmax."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.qkv = nn.Linear(16, 48)

    def forward(self, x):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, 2, 8).permute(2, 0, 3, 1, 4)
        self.qk = (q.detach(), k.detach())
        mask = torch.full((L, L), float("-inf")).triu(1)
        p = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + mask, dim=-1)
        return (p @ v).transpose(1, 2).reshape(B, L, 16)


def test_eager_softmax_attention_in_an_attention_module():
    model = CausalSelfAttention()
    x = torch.randn(3, 9, 16, generator=torch.Generator().manual_seed(5))
    with gp.watch(model) as probe:
        model(x).sum().backward()
        probe.step()
    q, k = (t[0] for t in model.qk)
    logits = q @ k.transpose(1, 2) / math.sqrt(8)
    allowed = torch.tril(torch.ones(9, 9, dtype=torch.bool)).expand(2, 9, 9)
    _check(_rows(probe.run, "(model)"), _by_hand(logits, allowed))
    other = nn.Sequential(nn.Linear(4, 4), nn.Softmax(-1))  # not an attention module: no rows
    with gp.watch(other) as probe:
        F.softmax(other(torch.randn(2, 3, 4)), dim=-1).sum().backward()
        probe.step()
    assert not any(q == "attention" for q, _ in probe.run.quantities())


class Keywords(nn.Module):
    """SDPA called with keyword arguments and a boolean mask whose first query sees no key."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q = nn.Linear(16, 16)

    def forward(self, x, mask):
        q = self.q(x).view(x.shape[0], -1, 2, 8).transpose(1, 2)
        self.qk = q.detach()
        out = F.scaled_dot_product_attention(query=q, key=q, value=q, attn_mask=mask)
        return out.nan_to_num()  # the fully masked row is NaN in torch's own output


def test_a_query_that_sees_no_key_is_left_out_not_nan():
    model = Keywords()
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[0] = False  # query 0 may attend to nothing
    with gp.watch(model) as probe:
        model(torch.randn(2, 6, 16), mask).sum().backward()
        probe.step()
    q = model.qk[0]
    logits = q @ q.transpose(1, 2) / math.sqrt(8)
    got = _rows(probe.run, "(model)")
    assert all(math.isfinite(v) for v in got.values())
    _check(got, _by_hand(logits, mask.expand(2, 6, 6)))


def test_a_call_without_keys_or_queries_has_no_sample_and_no_error():
    """Regression: an empty key set reached ``amax()`` of nothing (a RuntimeError in the
    hook, reported as a warning)."""
    q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 0, 8)
    assert _attention.sdpa_sample(q, k) is None
    assert _attention.sdpa_sample(k, q) is None
