"""Remedies that fit the cause: the activation in use, the architecture, the init it has.

An init is proposed only where one can fix the cause and the model does not already have
it (:mod:`gradprobe.diagnose.expected` reads the scale of the stored weights); otherwise
the remedy names what can: the activation, normalisation, a residual path, the width,
Pre-LN, DeepNorm or warm-up. Code strings name ``gp.init.apply`` and the model edits of
:mod:`gradprobe.fix` (``swap_activations``, ``insert_norm``, ``set_norm_first``).
"""

from __future__ import annotations

import numpy as np

from .blocks import is_norm
from .context import Context
from .expected import SCHEME_GAIN2, has_scale, narrow_sum, typical_gain2
from .finding import Kind, Remedy
from .training import post_ln_blocks, pre_ln_code

_SIGMOID = Remedy(
    "sigmoid's slope is at most 1/4 and its mean is 0.5, so the gradient shrinks at every "
    "layer whatever the init (Glorot & Bengio 2010): use ReLU with He init (or tanh), and "
    "batch normalisation",
    "kaiming_normal",
    "gp.fix.swap_activations(model, 'ReLU', only=['Sigmoid']); "
    "gp.init.apply(model, 'kaiming_normal')",
)
_ARCHITECTURE = (
    "residual connections or batch/layer normalisation make a deep stack robust to the "
    "init (He et al. 2016; Ioffe & Szegedy 2015)"
)


def _scheme(ctx: Context) -> tuple[str, str | None, str]:
    """(scheme, activation it is scaled for, words) that fits the activations in use."""
    kinds = ctx.activation_kinds
    if kinds & {"relu", "leakyrelu"}:
        return "kaiming_normal", "relu", "Kaiming/He (gain √2 for ReLU, He et al. 2015)"
    if kinds & {"tanh", "hardtanh", "softsign"}:
        return (
            "lecun_normal",
            None,
            "LeCun (σ² = 1/fan_in: tanh's critical point at zero bias, Schoenholz et al. 2017)",
        )
    if "gelu" in kinds:
        return "kaiming_normal", "gelu", "Kaiming with GELU's numeric gain"
    if "silu" in kinds:
        return "kaiming_normal", "silu", "Kaiming with SiLU's numeric gain"
    return "lsuv", None, "a variance-preserving scheme (LSUV on a data batch)"


# parameterless modules that are not elementwise activations (by type name, lower case)
_NOT_ACTIVATIONS = (
    "identity", "flatten", "dropout", "pool", "upsampl", "pad", "shuffle", "softmax",
    "softmin", "fold", "similarity", "distance", "permute", "transpose", "reshape", "view",
    "squeeze", "concat",
)  # fmt: skip


def _hidden_activations(ctx: Context) -> tuple[set[str], dict[str, list[str]]]:
    """(the known activation kinds, {type: names} of the unknown ones) of the modules that
    run before the last weight layer: the output's own activation (a Sigmoid for BCE) is
    not what shrinks or grows a hidden layer's gradient."""
    weights = set(ctx.weight_layers)
    ends = [m.position for m in ctx.modules if m.name in weights]
    owners = {la.name.rsplit(".", 1)[0] for la in ctx.run.layers("param")}
    known: set[str] = set()
    unknown: dict[str, list[str]] = {}
    for m in ctx.modules:
        if not ends or m.position >= max(ends) or m.name in ctx.gates:
            continue  # the output's activation, or a gate (its product gates a tensor)
        kind = (m.module_type or "").lower()
        label = m.activation or ""
        if label == "relu" or kind in ("relu", "leakyrelu"):
            known.add("relu")
        elif label.startswith("smooth:") or kind in ctx.activation_kinds:
            known.add(label.split(":", 1)[1] if label.startswith("smooth:") else kind)
        elif label.startswith("saturating"):  # a module, or a function after one (its name)
            known.add(ctx.functional_activations.get(m.name, "tanh"))
        elif not (
            m.name in weights
            or m.name in owners
            or is_norm(m.module_type)
            or any(w in kind for w in _NOT_ACTIVATIONS)
        ):
            unknown.setdefault(m.module_type or "?", []).append(m.name)
    return known, unknown


def _gain(ctx: Context, quantity: str, names: list[str], before: bool) -> float:
    """Median over ``names`` of rms(after)/rms(before) (forward) or rms(∂ before)/rms(∂
    after) (backward) at the first step, where "before" is the module run just before."""
    at = {m.position: m.name for m in ctx.modules}
    pos = {m.name: m.position for m in ctx.modules}
    prev = [at.get(pos[n] - 1) for n in names]
    pairs = [(n, p) for n, p in zip(names, prev, strict=True) if p is not None]
    if not pairs or not ctx.steps:
        return float("nan")
    own = ctx.matrix(quantity, "rms", [n for n, _ in pairs])[:, 0]
    inp = ctx.matrix(quantity, "rms", [p for _, p in pairs])[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = inp / own if before else own / inp
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return float(np.median(ratios)) if ratios.size else float("nan")


def _unknown_activation(ctx: Context, unknown: dict[str, list[str]]) -> Remedy:
    """An activation with no known gain or shape: no init is scaled for it, so the advice
    is an activation that has one (with its init), or normalisation; with what it does."""
    names = [n for ns in unknown.values() for n in ns]
    types = sorted(unknown)
    fwd = _gain(ctx, "activation", names, before=False)
    bwd = _gain(ctx, "grad_output", names, before=True)
    measured = (
        f": at init it multiplies the signal's rms by {fwd:.3g} and the back-propagated "
        f"gradient's by {bwd:.3g} per layer (median over its {len(names)} layers)"
        if np.isfinite(fwd) and np.isfinite(bwd)
        else ""
    )
    return Remedy(
        f"{', '.join(types)} (at {', '.join(names[:4])}{', …' if len(names) > 4 else ''}) is "
        f"an activation whose gain gradprobe does not know{measured}, and no standard init "
        f"is scaled for it: use ReLU with Kaiming/He init (gain √2, He et al. 2015), GELU "
        f"(Kaiming with GELU's gain) or tanh with LeCun init, or normalise each layer's "
        f"input (BatchNorm/LayerNorm)",
        "kaiming_normal",
        f"gp.fix.swap_activations(model, 'ReLU', only={types!r}); "
        f"gp.init.apply(model, 'kaiming_normal')",
    )


def reinit(ctx: Context) -> Remedy:
    """The initialisation that fits the activations the model uses (the activation itself
    where no init can fix it: sigmoid, or one whose gain is unknown, e.g. exp)."""
    if not ctx.structure.plain:
        return _blocks(ctx)
    kinds, unknown = _hidden_activations(ctx)
    if unknown and not kinds:
        return _unknown_activation(ctx, unknown)
    if not kinds and _saturating_gates(ctx):
        return gates_remedy(ctx)
    if "sigmoid" in kinds and not kinds & {"relu", "tanh", "gelu", "silu"}:
        return _SIGMOID
    scheme, _, words = _scheme(ctx)
    code = (
        "gp.init.apply(model, 'lsuv', data=batch)"
        if scheme == "lsuv"
        else f"gp.init.apply(model, {scheme!r})"
    )
    return Remedy(f"re-initialise with {words}", scheme, code)


def _blocks(ctx: Context) -> Remedy:
    """Saturating or off-scale units inside the blocks of a residual architecture: its own
    init (fan-in scale, or N(0, 0.02) in Transformers), and GELU for a saturating MLP."""
    kinds = _ungated_kinds(ctx)
    gain2 = typical_gain2(ctx)
    scale = ""
    if gain2 is not None and gain2 > 4:
        scale = (
            f"its weights are at σ² · fan_in = {gain2:.3g}, far above fan-in scale (~1): "
            f"re-initialise with the architecture's own scheme; "
        )
    if kinds & _SATURATING:
        keep = sorted(ctx.gates)
        kept = f", keep={keep!r}" if keep else ""
        return Remedy(
            f"{scale}a saturating activation inside the blocks (Transformers and Mixers use "
            f"GELU) starves the branch of gradient: swap it for GELU"
            + (" (the gates stay: their product gates a tensor)" if keep else ""),
            None,
            f"gp.fix.swap_activations(model, 'GELU', only=['Sigmoid', 'Tanh']{kept})",
        )
    if _saturating_gates(ctx):
        return gates_remedy(ctx)
    return stream_scale(ctx)


_SATURATING = {"sigmoid", "tanh", "hardtanh", "softsign"}


def _ungated_kinds(ctx: Context) -> set[str]:
    """The activation kinds in use (``ctx.activation_kinds``) less those only gates apply."""
    if not ctx.gates:
        return ctx.activation_kinds
    kinds: set[str] = set()
    for m in ctx.modules:
        if m.name in ctx.gates:
            continue
        t, label = (m.module_type or "").lower(), m.activation or ""
        if t in ctx.activation_kinds:
            kinds.add(t)
        if label == "relu":
            kinds.add("relu")
        elif label.startswith("smooth:"):
            kinds.add(label.split(":", 1)[1])
    fns = ctx.functional_activations
    return kinds | {"relu" if f == "relu6" else f for n, f in fns.items() if n not in ctx.gates}


def _saturating_gates(ctx: Context) -> list[str]:
    """The gates (``ctx.gates``) that are a tanh/sigmoid module or apply one as a function."""
    fns = ctx.functional_activations
    return [
        m.name
        for m in ctx.modules
        if m.name in ctx.gates
        and ((m.module_type or "").lower() in _SATURATING or fns.get(m.name) in _SATURATING)
    ]


def gates_remedy(ctx: Context) -> Remedy:
    """Saturated tanh/sigmoid gates (WaveNet's ``tanh(f) * sigmoid(g)``, a GLU, an LSTM cell
    written by hand): a gate's sigmoid is meant to reach 0 and 1, and GELU would break the
    product, so the change is to its input's scale: the init, a norm, clipping."""
    names = _saturating_gates(ctx)
    gain2 = typical_gain2(ctx)
    over = gain2 is not None and gain2 > 4
    scale = (
        f"the weights feeding them are at σ² · fan_in = {gain2:.3g}, far above fan-in scale "
        f"(~1): re-initialise them at fan-in scale (LeCun, σ² = 1/fan_in)"
        if over
        else "normalise the gates' input (LayerNorm/GroupNorm before the split into filter "
        "and gate, or weight norm as WaveNet does)"
    )
    text = (
        f"the saturated tanh/sigmoid are gates ({', '.join(names[:4])}"
        f"{', …' if len(names) > 4 else ''}: their output multiplies another tensor, as in "
        f"WaveNet's tanh(f) · σ(g), a GLU or an LSTM cell), not hidden activations, and "
        f"swapping them (for GELU, ReLU) would break the gating; keep them and bring their "
        f"inputs back into range: {scale}; clip the gradient norm meanwhile"
    )
    clip = "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # after backward()"
    if over:
        code = f"gp.init.apply(model, 'lecun_normal')  # σ² = 1/fan_in: gates back in range\n{clip}"
        return Remedy(text, "lecun_normal", code)
    return Remedy(text, None, f"model = gp.fix.insert_norm(model)\n{clip}")


def already_has(ctx: Context, remedy: Remedy) -> bool:
    """Whether the model's hidden weights already have the scale ``remedy``'s scheme sets."""
    scheme = remedy.scheme
    if scheme is None or scheme == "lsuv":
        return False
    _, act, _ = _scheme(ctx)
    gain2 = SCHEME_GAIN2.get((scheme, act), SCHEME_GAIN2.get((scheme, None)))
    return gain2 is not None and has_scale(ctx, gain2)


def with_architecture(ctx: Context, remedy: Remedy) -> Remedy:
    """Add the architectural advice for a deep plain stack (it cannot be applied for you)."""
    if ctx.depth >= 10 and not ctx.has_normalisation:
        text = (
            f"{remedy.text}; the network is a plain stack of {ctx.depth} weight layers "
            f"without normalisation: {_ARCHITECTURE}"
        )
        return Remedy(text, remedy.scheme, remedy.code)
    return remedy


def depth_remedy(ctx: Context, kind: Kind) -> Remedy:
    """What fixes a vanishing or exploding profile across depth, for this architecture."""
    s = ctx.structure
    if not s.plain:
        base = reinit(ctx)
        if kind == "vanishing" and (base is _SIGMOID or "swap_activations" in (base.code or "")):
            # sigmoid/tanh blocks (a stack of Sequential(Linear, Sigmoid) units need not be
            # residual): the activation starves the gradient; Fixup would keep it
            return with_architecture(ctx, base)
        if not ctx.has_normalisation:
            return Remedy(
                f"{len(s.blocks)} residual blocks without normalisation: add BatchNorm (or "
                f"LayerNorm) inside each block, or scale each residual branch down at init "
                f"(Fixup, Zhang et al. 2019; SkipInit, De & Smith 2020) with He-initialised "
                f"weights",
                "fixup",
                "gp.init.apply(model, 'fixup')",
            )
        return stream_scale(ctx)
    base = reinit(ctx)
    if base is _SIGMOID or "swap_activations" in (base.code or ""):
        return with_architecture(ctx, base)
    if already_has(ctx, base):
        width, _ = narrow_sum(ctx)
        narrow = (
            f"; its hidden layers are narrow (Σ 1/width = {width:.2g}): widen them"
            if width >= ctx.t.narrow_width
            else ""
        )
        return Remedy(
            f"the weights already have the scale {base.scheme} sets (σ² · fan_in = "
            f"{typical_gain2(ctx):.3g}), so re-initialising will not help{narrow}; "
            f"{_ARCHITECTURE}",
            None,
            "model = gp.fix.insert_norm(model)",
        )
    return with_architecture(ctx, base)


def stream_scale(ctx: Context) -> Remedy:
    """A block structure with normalisation whose weights are far off their scale."""
    gain2 = typical_gain2(ctx)
    said = f" (σ² · fan_in = {gain2:.3g} where fan-in scaling gives ~1)" if gain2 else ""
    return Remedy(
        f"the weights are far from the scale this architecture is initialised at{said}: "
        f"re-initialise with its own scheme (Hugging Face models: their _init_weights, "
        f"N(0, 0.02) for GPT-2, BERT and ViT; torch layers: reset_parameters())",
        None,
        "model.apply(model._init_weights)  # Hugging Face; else each layer's reset_parameters()",
    )


def post_ln(ctx: Context) -> Remedy:
    """A deep Post-LN stack: its normalisation placement, not its init, is the cause. The
    code is torch's own switch where the blocks are torch layers, else the warm-up first and
    the Pre-LN change their kind allows (:func:`training.pre_ln_code`)."""
    warmup = "torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 4000))"
    blocks = post_ln_blocks(ctx)
    pre = pre_ln_code(ctx, blocks) if blocks else ""
    if not blocks or "norm_first=True" in pre:
        code = f"gp.fix.set_norm_first(model)  # or: {warmup}"
    else:
        code = f"{warmup}  # warm-up\n{pre}"
    return Remedy(
        f"{ctx.structure.depth} Post-LN blocks need a learning-rate warm-up (Xiong et al. "
        f"2020), or move the LayerNorm before each sublayer (Pre-LN), or "
        f"scale the residual as DeepNorm does (x·α + f(x) with α = (2N)^¼, Wang et al. 2022)",
        None,
        code,
    )


def dead_at_init(ctx: Context) -> Remedy | None:
    """Dead ReLUs at initialisation in a model that already has He weights and zero biases
    (so re-initialising with them would change nothing): the layers are too narrow; None
    when the init is a possible cause (then the bias/Kaiming remedy applies)."""
    if not has_scale(ctx, SCHEME_GAIN2[("kaiming_normal", "relu")]):
        return None
    biases = [la.name for la in ctx.run.layers("param") if la.name.endswith(".bias")]
    if biases and ctx.steps:
        norms = ctx.matrix("weight", "norm", biases)[:, 0]
        if np.isfinite(norms).any() and np.nanmax(norms) > 0:
            return None  # biases that are not zero: they may be what kills the units
    width, _ = narrow_sum(ctx)
    return Remedy(
        f"the weights already have He's scale and the biases are zero, so no init will "
        f"revive these units: with layers this narrow (Σ 1/width = {width:.2g}) whole units "
        f"die by chance (Lu et al. 2019); widen the layers, use LeakyReLU, or add "
        f"normalisation",
        None,
        "gp.fix.swap_activations(model, 'LeakyReLU')",
    )


def narrow(ctx: Context, width: float) -> Remedy:
    """A plain ReLU stack too narrow for its depth: widen it; no init changes that."""
    return Remedy(
        f"the stack is too narrow for its depth (Σ 1/width = {width:.2g} over its hidden "
        f"layers; the log-variance of its signal is about 5 Σ 1/width, Hanin & Rolnick 2018, "
        f"and whole examples die in a layer of a few ReLUs, Lu et al. 2019): widen the "
        f"layers (or use fewer), or add normalisation and residual connections; "
        f"re-initialising cannot fix it",
    )


def recurrent(ctx: Context, module_type: str, decay: float | None = None) -> Remedy:
    """What lengthens a recurrent layer's memory; ``decay``: its measured gradient factor
    per time step back (said in the text when known)."""
    per_step = (
        f" (measured: ×{decay:.2f} per step back)" if decay is not None and 0 < decay < 1 else ""
    )
    if module_type == "RNN":
        return Remedy(
            f"a vanilla RNN forgets over long sequences{per_step}: use an LSTM or GRU, or an "
            f"orthogonal (or identity, IRNN) recurrent init with gradient clipping",
            "orthogonal",
            "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal'); "
            "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
        )
    if module_type == "LSTM":
        return Remedy(
            f"the LSTM's forget gate sits near σ(b_f) (PyTorch initialises the forget-gate "
            f"bias b_f to 0: a gate of 0.5), so the memory shrinks each step{per_step}: set the "
            f"forget-gate bias to 1–3 (Gers et al. 2000; Jozefowicz et al. 2015), or to "
            f"log(U(1, T−1)) for dependencies up to T steps (chrono init, Tallec & Ollivier "
            f"2018)",
            None,
            "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal', forget_bias=1.0)",
        )
    return Remedy(
        f"the GRU's update gate starts near 0.5, so the memory decays each step{per_step}: "
        f"bias the update gate towards keeping the state (chrono init, Tallec & Ollivier "
        f"2018), use an orthogonal recurrent init, and clip gradients",
        "orthogonal",
        "gp.init.apply(model, 'xavier_uniform', recurrent='orthogonal')",
    )
