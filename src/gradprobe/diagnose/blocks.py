"""Blocks from the module tree: the repeated units along which depth is counted.

A run stores each watched module's qualified name, type and execution position, and each
parameter's name and shape; the tree is rebuilt from the names (containers, which are not
watched, are the prefixes). A *block group* is two or more siblings of one type that hold
weight layers, with (nearly) the same weight layers inside: their relative names overlap
by a Jaccard index of at least ``SAME_BLOCK`` = 0.6 (a ResNet block with its downsampling
shortcut shares 4 of 6 names with one without, T5's first block 9 of 10 with the others; an
encoder and a decoder stack differ by their cross-attention, under 0.45, and are not one
group). Where a group's members are themselves fully covered by groups inside them, the
inner ones are the blocks (a ResNet's residual blocks, not its stages); where they are not
(a Mixer block's norms lie outside its two MLPs), the outer ones are. Each block keeps the
group it was chosen from as its ``segment`` (an outer group wins: a network's stages are one
chain, its encoder and decoder two). Without any group, the only member of a module list
below the root whose weight layers sit in two or more sub-modules is a block of its own (a
one-layer transformer's ``layers.0``: depth one, nothing to compare). A network without
either is a plain stack: each weight layer is its own block, a norm layer joins the block
before it, and embeddings are its stem. A module list whose members the probe saw never
take an earlier member's output (``run.meta["module_lists"]``, probe/_dataflow.py: the
experts of a mixture, an ensemble, parallel branches) is not a chain: where its members are
composite (they would be blocks), the whole list is one block (its members are width, not
depth); a list of single layers (a multi-task net's heads) stays in the plain stack.

Weight layers are the modules that own a parameter with two or more dimensions (a
``Linear``, a convolution, an embedding, a recurrent layer, ``MultiheadAttention``'s input
projection) and the normalisation layers. A weight layer of a known kind with no parameter
of its own has a tied weight (GPT-2's ``lm_head`` shares the token embedding): it is still
a weight layer, with ``tied=True``. A block's parameters are every parameter inside it,
layer scales and norm gains included (ConvNeXt's layer scale γ = 1e-6 holds its branch's
gradient at 1e-6 of the stream's: γ's own gradient is what moves first).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..run import Layer

SAME_BLOCK = 0.6  # Jaccard index of the relative weight-layer names of one group's members
NORM_TYPES = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm", "Norm")
_WEIGHT_TYPES = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Conv1D",  # Hugging Face's transposed Linear (GPT-2)
    "Embedding",
    "Bilinear",
)
ROOT = "(model)"


def is_norm(module_type: str | None) -> bool:
    t = module_type or ""
    return any(k in t for k in NORM_TYPES)


@dataclass(frozen=True)
class WeightLayer:
    """A module with weights: ``matrices`` are its parameters of two or more dimensions."""

    name: str
    module_type: str
    position: int
    matrices: tuple[str, ...]
    tied: bool = False

    @property
    def norm(self) -> bool:
        return not self.matrices and not self.tied and is_norm(self.module_type)


@dataclass(frozen=True)
class Block:
    """One repeated unit (or, in a plain stack, one weight layer with its norm)."""

    name: str
    module_type: str
    layers: tuple[WeightLayer, ...]
    params: tuple[str, ...] = ()  # every parameter inside the block
    output: str | None = None  # the module whose output is the block's (its last one)
    segment: str = ""  # the group it was found in: an encoder and a decoder stack differ

    @property
    def start(self) -> int:
        return min(la.position for la in self.layers)

    @property
    def end(self) -> int:
        return max(la.position for la in self.layers)

    @property
    def matrices(self) -> tuple[str, ...]:
        return tuple(p for la in self.layers for p in la.matrices)

    @property
    def embedding(self) -> bool:
        return all(la.module_type == "Embedding" for la in self.layers)


@dataclass(frozen=True)
class Structure:
    """The blocks in execution order, the weight layers before (``stem``) and after
    (``head``) them, and whether the net is a plain stack (no repeated composite)."""

    blocks: list[Block]
    stem: list[WeightLayer] = field(default_factory=list)
    head: list[WeightLayer] = field(default_factory=list)
    plain: bool = True
    norm_place: str | None = None  # "pre" / "post": where each block's norm sits (by order)
    last_norm: dict[str, str] = field(default_factory=dict)  # block -> its last leaf, a norm

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def weight_layers(self) -> list[WeightLayer]:
        inside = [la for b in self.blocks for la in b.layers]
        return sorted([*self.stem, *inside, *self.head], key=lambda la: la.position)


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _inside(name: str, node: str) -> bool:
    return node == "" or name == node or name.startswith(node + ".")


def weight_layers(modules: list[Layer], params: list[Layer], tied: dict | None = None):
    """The weight layers of a run, in execution order (see the module docstring)."""
    names = {m.name for m in modules}
    position = {m.name: m.position for m in modules}
    owned: dict[str, list[Layer]] = {}
    for p in params:
        owner = _parent(p.name)
        while owner and owner not in names:
            owner = _parent(owner)
        owned.setdefault(owner or ROOT, []).append(p)
    tied_owners = {_parent(alias) for alias in (tied or {})}
    out = []
    for m in modules:
        mine = owned.get(m.name, [])
        matrices = tuple(p.name for p in mine if p.shape is not None and len(p.shape) >= 2)
        kind = m.module_type or ""
        is_tied = not mine and (kind in _WEIGHT_TYPES or m.name in tied_owners)
        if not (matrices or is_tied or (mine and is_norm(kind))):
            continue
        pos = m.position
        up = _parent(m.name)
        while pos is None and up:  # a submodule its parent calls functionally (MHA out_proj)
            pos = position.get(up)
            up = _parent(up)
        if pos is None:
            continue  # never ran: no gradient to judge
        out.append(WeightLayer(m.name, kind, pos, matrices, is_tied))
    return sorted(out, key=lambda la: la.position)


def parallel_lists(meta: dict) -> frozenset[str]:
    """The module lists none of whose checked members took an earlier member's output
    (``meta["module_lists"]["parallel"]``, written by the probe); the root is never one."""
    lists = meta.get("module_lists")
    parallel = lists.get("parallel") if isinstance(lists, dict) else None
    if not isinstance(parallel, dict):
        return frozenset()
    return frozenset(p for p, checked in parallel.items() if p and checked)


class _Tree:
    def __init__(
        self, modules: list[Layer], layers: list[WeightLayer], parallel: frozenset = frozenset()
    ) -> None:
        self.parallel = parallel  # module lists of parallel members: one block each
        # watched modules only: a container (Sequential, ModuleList) has no entry
        self.type = {m.name: m.module_type or "" for m in modules if m.name != ROOT}
        self.layers = layers
        nodes: set[str] = set()
        for m in modules:
            if m.name == ROOT:
                continue
            parts = m.name.split(".")
            nodes.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        self.children: dict[str, list[str]] = {}
        for n in sorted(nodes):
            self.children.setdefault(_parent(n), []).append(n)
        self.within = {n: [la for la in layers if _inside(la.name, n)] for n in nodes | {""}}
        self.segment: dict[str, str] = {}  # block root -> the outermost group that chose it

    def _chosen(self, roots: list[str], group: list[str]) -> list[str]:
        for r in roots:  # the outer group wins: a network's stages are one chain
            self.segment[r] = group[0]
        return roots

    def groups(self, node: str) -> list[list[str]]:
        """Groups of sibling members under ``node`` (see the module docstring)."""
        buckets: dict[str, list[str]] = {}
        for c in self.children.get(node, []):
            if self.composite(c) and self.matrices(c) >= 2:
                buckets.setdefault(self.type.get(c, "(container)"), []).append(c)
        out = []
        for members in buckets.values():
            if len(members) < 2:
                continue
            rel = {m: frozenset(la.name[len(m) + 1 :] for la in self.within[m]) for m in members}
            ref = Counter(rel.values()).most_common(1)[0][0]
            same = [m for m in members if len(ref & rel[m]) >= SAME_BLOCK * len(ref | rel[m])]
            if len(same) >= 2:
                out.append(same)
        return out

    def matrices(self, node: str) -> int:
        """Weight layers with a matrix (or a tied one) inside ``node``: a block has two or
        more (a ``Sequential(LayerNorm, Conv2d)`` downsampling step is not a block)."""
        return sum(1 for la in self.within[node] if not la.norm)

    def composite(self, node: str) -> bool:
        return node in self.children and any(la.name != node for la in self.within[node])

    def units(self, node: str) -> list[str]:
        """The outermost composite modules inside the container ``node``: typed ones, or
        containers of leaves (a ``Sequential`` of conv, norm, ReLU)."""
        out = []
        for c in self.children.get(node, []):
            if not self.within[c] or not self.composite(c):
                continue
            out += [c] if c in self.type else (self.units(c) or [c])
        return out

    def lone(self) -> list[str]:
        """Blocks of a stack of one: the only member of a module list below the root (a
        one-layer transformer's ``layers.0``), a watched module whose weight layers sit in
        two or more sub-modules (attention and MLP), not one chain of layers. Its q/k/v
        projections are branches: read as a plain stack of weight layers, a query
        projection's small gradient at init looked vanishing next to the MLP's output."""
        out = []
        for node, kids in self.children.items():
            if not node or len(kids) != 1 or not kids[0].rsplit(".", 1)[-1].isdigit():
                continue
            m = kids[0]
            owners = {_parent(la.name) for la in self.within[m] if not la.norm}
            if m in self.type and self.matrices(m) >= 2 and len(owners) >= 2:
                out.append(m)
        return [m for m in out if not any(o != m and _inside(m, o) for o in out)]

    def select(self, node: str) -> list[str]:
        """Block roots inside ``node`` (see the module docstring)."""
        if node in self.parallel and any(self.composite(c) for c in self.children[node]):
            return [node] if self.matrices(node) else []  # parallel branches: one block
        out: list[str] = []
        grouped: set[str] = set()
        for members in self.groups(node):
            grouped.update(members)
            if not any(m in self.type for m in members):  # containers (stages): their units
                units = [u for m in members for u in self.units(m)]
                kinds = [self.type.get(u, "(container)") for u in units]
                common = Counter(kinds).most_common(1)
                if common and common[0][1] >= 2:
                    chosen = [u for u, k in zip(units, kinds, strict=True) if k == common[0][0]]
                    out += self._chosen(chosen, members)
                    continue
                out += self._chosen(members, members)
                continue
            inner = {m: self.select(m) for m in members}
            covered = all(
                {la.name for b in inner[m] for la in self.within[b]}
                == {la.name for la in self.within[m]}
                for m in members
            )
            chosen = [b for m in members for b in inner[m]] if covered else members
            out += self._chosen(chosen, members)
        for c in self.children.get(node, []):
            if c not in grouped:
                out += self.select(c)
        return out


def _norm_place(blocks: list[Block], modules: list[Layer]) -> tuple[str | None, dict]:
    """ "pre" when every block's first executed leaf is a norm, "post" when its last one
    (dropout aside) is: Post-LN normalises after the residual sum (Xiong et al. 2020). Also
    each block's last norm, for "post": that the block's output *is* that norm's output
    (not a ResNet's BatchNorm before its sum) is checked on the recorded values."""
    if not blocks:
        return None, {}
    ran = [m for m in modules if m.position is not None and m.name != ROOT]
    names = {m.name for m in ran}
    leaves = [  # a module none of whose submodules ran (MHA calls out_proj functionally)
        m
        for m in ran
        if not any(n.startswith(m.name + ".") for n in names)
        and "Dropout" not in (m.module_type or "")
        and (m.module_type or "") != "Identity"
    ]
    places: set[str | None] = set()
    last: dict[str, str] = {}
    for b in blocks:
        own = [m for m in leaves if _inside(m.name, b.name)]
        if not own:
            return None, {}
        if is_norm(own[0].module_type):
            places.add("pre")
        elif is_norm(own[-1].module_type):
            places.add("post")
            last[b.name] = own[-1].name
        else:
            places.add(None)
    return (places.pop() if len(places) == 1 else None), last


def structure(
    modules: list[Layer],
    params: list[Layer],
    tied: dict | None = None,
    parallel: frozenset[str] = frozenset(),
) -> Structure:
    """Blocks, stem and head of a run's model (see the module docstring); ``parallel``: the
    module lists that are not chains (:func:`parallel_lists`)."""
    layers = weight_layers(modules, params, tied)
    tree = _Tree(modules, layers, parallel)
    roots = [r for r in tree.select("") if tree.within[r]] or tree.lone()
    if not roots:
        return _plain(layers, params)
    blocks = sorted(
        (
            Block(r, tree.type.get(r, "(container)"), tuple(tree.within[r]),
                  _params_in(r, params), _last_module(r, modules), tree.segment.get(r, r))
            for r in roots
        ),
        key=lambda b: b.start,
    )  # fmt: skip
    inside = {la.name for b in blocks for la in b.layers}
    rest = [la for la in layers if la.name not in inside]
    first, last = blocks[0].start, blocks[-1].end
    stem = [la for la in rest if la.position < first]
    head = [la for la in rest if la.position > last]
    place, last_norm = _norm_place(blocks, modules)
    return Structure(blocks, stem, head, False, place, last_norm)


def _params_in(node: str, params: list[Layer]) -> tuple[str, ...]:
    return tuple(p.name for p in params if p.name.startswith(node + "."))


def _last_module(node: str, modules: list[Layer]) -> str | None:
    """The module that ran last inside ``node`` (post-order: ``node`` itself when it is a
    watched module; for a container, its last child): its output is the block's."""
    inside = [m for m in modules if m.position is not None and _inside(m.name, node)]
    return max(inside, key=lambda m: m.position or 0).name if inside else None


def _plain(layers: list[WeightLayer], params: list[Layer]) -> Structure:
    """Each weight layer its own block; a norm joins the block before it (the first one's
    norm, if it comes first, joins the block after); leading embeddings are the stem."""
    stem = []
    while layers and layers[0].module_type == "Embedding":
        stem.append(layers[0])
        layers = layers[1:]
    blocks: list[list[WeightLayer]] = []
    pending: list[WeightLayer] = []
    for la in layers:
        if la.norm:
            (blocks[-1] if blocks else pending).append(la)
            continue
        blocks.append([*pending, la])
        pending = []
    if pending and blocks:
        blocks[-1] += pending
    own: dict[str, list[str]] = {}
    for p in params:  # a plain block's parameters are its layers' own
        owner = _parent(p.name) or ROOT
        own.setdefault(owner, []).append(p.name)
    made = []
    for b in blocks:
        main = next(la for la in b if not la.norm)
        mine = tuple(n for la in b for n in own.get(la.name, ()))
        made.append(Block(main.name, main.module_type, tuple(b), mine, main.name))
    return Structure(made, stem=stem, plain=True)
