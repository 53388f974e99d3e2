"""The compact model: dead nodes removed, masks folded, every weight block shrunk.

`plan_network(net, model)` turns a trained WiredModel into a `CompactPlan`: plain data (module
constructors as source text, forward statements, a state_dict) that `standalone.render` prints
as PyTorch source importing only torch, and `standalone.instantiate` runs. Per graph:
- nodes kept: the output nodes, and every node that has a path of active edges to an output
  node and is not always zero (`wirelang.export.nodes`); the same set serves every step of a
  discrete or continuous graph (simple and exact: a dropped node never reaches an output, or
  contributes only zeros);
- each target set's weight matrix keeps the rows of its kept nodes and the columns of its
  sources' kept nodes, with the mask folded in (inactive entries are 0), cut into one block per
  source set (no concatenation of the sources; a block with no live edge is dropped);
- each block runs in the fastest product for its density on the plan's device (`SPARSE_BELOW`:
  gathered, embedding_bag over its live entries, below the measured break-even; a dense
  matrix product above);
- each set's operator (norm, activation, depthwise conv: all per channel) keeps the channels
  of its kept nodes; a set with a depthwise conv rounds them up to the device's channel block
  (`CHANNEL_MULTIPLE`) with channels no kept node reads;
- a head's per-map layers up to its pool run at the end of the graph before it
  (`_pool_in_graph`): the pooled maps, not the whole output, change layout;
- batch norms are folded away where they are an affine map after a linear one (`Affine`): into
  the conv before them, into the rows of the product feeding a set (a row scale and a bias),
  and a graph's input sets' into the layer or graph before the graph (the head's into the
  graph before it);
- static graphs run in topological order, discrete time unrolls its T steps, continuous time is
  exported only with a fixed-step solver (euler, midpoint, rk4), unrolled on torchdiffeq's grid.
Sparse layers become ordinary conv / linear layers with the mask folded into the weight
(`wirelang.export.fold`, which `wirelang.export` uses for any module).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wirelang.backend.lower import safe
from wirelang.export.fold import folded_state
from wirelang.export.frozen import layer_blocks
from wirelang.export.nodes import kept_nodes, node_graph
from wirelang.export.standalone import ctor, sequential
from wirelang.ir import core
from wirelang.ops import get_op
from wirelang.passes.shapes import topo_order
from wirelang.version import __version__

SOLVERS = ("euler", "midpoint", "rk4")

# Live fraction of a weight block at or below which its product is gathered (embedding_bag
# over the live entries) instead of dense, per device. CPU: measured on one thread by
# `python benchmarks/export_speed.py --thresholds` (benchmarks/results/speed.md, 2026-12-02):
# dense/gathered time 3-17x at 5%, 1.4-5x at 20%, 1.3-3.7x at 30% for blocks of 196-784 map
# positions (a batch of 1-4 at 14x14), but 0.86x at 20% for 12,544 positions (batch 64): the
# break-even falls from 30-50% to 15-20% as the maps grow; 25% favours the small batches of
# deployment. torch's CSR product lost to the gathered one everywhere. CUDA: not measured
# (no GPU here), so dense until a measurement says otherwise.
SPARSE_BELOW: dict[str, float] = {"cpu": 0.25, "cuda": 0.0}

# A set whose edges come from several gathered blocks also gets them as one gathered product
# over its sources stacked (`torch.cat`) when the stack is small: at most this many values
# (source rows x N x H x W), checked per call. Measured on the quick start (7 x 7 maps, 1
# thread, CPU time): batch 1, stacks of 96-224 x 49 values: 0.59-0.61 ms per image against
# 0.81-1.02 ms block by block (the fixed costs of 10 embedding_bag calls and 9 additions); batch
# 64 (stacks of 700,000 values): 7.7-8.7 ms against 4.9-6.3 ms (the copies of the stack cost
# more than the calls saved). Compiled programs (pt2) always run block by block: one program
# for every batch size. CUDA: not measured, never.
MERGE_BELOW: dict[str, int] = {"cpu": 16_384, "cuda": 0}

# A set whose operator runs a depthwise conv keeps its channels in a multiple of this many per
# device (zero channels after its kept ones, or more of an input set's own channels), where
# that adds at most `PAD_AT_MOST` of its rows: oneDNN's depthwise conv runs channels in blocks
# of 16 on this CPU (AVX-512), and a partial block costs about as much as the whole conv again.
# Measured (1 thread, batch 1, 3x3, ms per call, 2026-12-03): 112 x 112 maps, 17 / 28 / 30 / 32
# channels 0.32 / 0.36 / 0.36 / 0.30; 56 x 56, 100 / 104 / 112 / 118 / 128 channels 0.42 / 0.45
# / 0.22 / 0.52 / 0.24 (104, a multiple of 8, is no faster); 14 x 14, 496 / 505 / 512 channels
# 0.105 / 0.18 / 0.157. The padding rows also pass through the set's product and activation,
# so at most half as many again. CUDA: not measured, so no padding.
CHANNEL_MULTIPLE: dict[str, int] = {"cpu": 16, "cuda": 1}
PAD_AT_MOST = 0.5


# layers whose output may be their input itself or a view of it (identity, dropout in eval)
VIEWS = frozenset({"identity", "dropout", "flatten", "centercrop"})


class ExportRefused(ValueError):
    """The model cannot be a fixed program as asked (exit 2, one line)."""


@dataclass
class Block:
    """One source set's block of a target's weights: its size, live entries, map size, form."""

    rows: int
    cols: int
    live: int
    hw: int  # height x width of the target's input: each weight is used hw times per image
    sparse: bool


@dataclass
class GraphPlan:
    name: str
    cls: str
    mode: str  # static | discrete | euler | midpoint | rk4
    doc: str = ""
    steps: int = 0
    dts: list[str] = field(default_factory=list)
    modules: list[tuple[str, str]] = field(default_factory=list)  # (attribute, constructor source)
    # (attribute, rows, columns per source block, live entries of a gathered block or 0 for a
    # dense one): an `Edges` module
    weights: list[tuple[str, int, tuple[int, ...], tuple[bool, ...]]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    buffers: list[tuple[str, int]] = field(default_factory=list)
    init: list[tuple[str, str]] = field(default_factory=list)  # (variable, expression)
    step: list[tuple[str, str]] = field(default_factory=list)
    consts: list[str] = field(default_factory=list)  # sets that only send (continuous time)
    targets: list[str] = field(default_factory=list)
    news: list[str] = field(default_factory=list)
    output: str = ""  # NCHW for the next layer; `output_cm` when the next item is a graph too
    output_cm: str = ""
    nodes: tuple[int, int] = (0, 0)  # (kept, all)
    edges: tuple[int, int] = (0, 0)
    biased: set[str] = field(default_factory=set)  # `Edges` attributes with a bias (folded norms)
    # the output sets in the order of the output's channels: (Edges attribute, rows); an
    # affine map after the graph can move into those rows when `absorbs` (static, the output
    # sets have no operator, read by no other set, and all have an Edges module)
    outputs: list[tuple[str, int]] = field(default_factory=list)
    absorbs: bool = False
    key: str = ""  # the state_dict prefix of this graph's module
    merged: set[str] = field(default_factory=set)  # `Edges` with their blocks also as one

    def forms(self) -> dict[str, int]:
        """How many products of each form, and their live and stored weights."""
        sparse = [b for b in self.blocks if b.sparse]
        dense = [b for b in self.blocks if not b.sparse]
        return {
            "sparse_blocks": len(sparse),
            "sparse_live": sum(b.live for b in sparse),
            "dense_blocks": len(dense),
            "dense_live": sum(b.live for b in dense),
            "dense_stored": sum(b.rows * b.cols for b in dense),
        }


@dataclass
class CompactPlan:
    network: str
    source: str
    input: tuple[int, int, int]
    classes: int
    items: list[tuple[str, str]] = field(default_factory=list)  # Model attributes in order
    graphs: list[GraphPlan] = field(default_factory=list)
    state: dict[str, Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    version: str = __version__
    device: str = "cpu"
    merge_below: int = 0  # `MERGE_BELOW` of the device

    def macs(self, counted: int) -> dict[str, int]:
        """Multiply-adds per image from torch's FlopCounterMode count of the compact model
        (`counted`: it sees the dense blocks whole and the gathered ones not at all):
        `macs_executed` adds the gathered blocks' live weights, `macs_live` also drops the
        dense blocks' zeros."""
        blocks = [b for g in self.graphs for b in g.blocks]
        gathered = sum(b.live * b.hw for b in blocks if b.sparse)
        zeros = sum((b.rows * b.cols - b.live) * b.hw for b in blocks if not b.sparse)
        return {"macs_executed": counted + gathered, "macs_live": counted + gathered - zeros}


def ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


# ----------------------------------------------------------------------------- folding
@dataclass
class Affine:
    """y = x * scale + shift per channel: what a batch norm in eval mode computes."""

    scale: Tensor
    shift: Tensor

    @staticmethod
    def of(bn: nn.Module, idx: Tensor | None = None) -> Affine | None:
        """An eval-mode batch norm (on channels `idx`) as an affine map; None for anything else,
        or a batch norm without running statistics (it normalises by the batch even in eval).
        Computed in float64, so that folding it rounds once, where it is multiplied in."""
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_mean is None:
            return None
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.affine:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.affine:
            shift = shift + bn.bias.double()
        if idx is not None:
            scale, shift = scale.index_select(0, idx), shift.index_select(0, idx)
        return Affine(scale, shift)

    def then(self, other: Affine) -> Affine:
        return Affine(self.scale * other.scale, self.shift * other.scale + other.shift)


def leading_affine(layers: list, module: nn.Module, idx: Tensor | None = None) -> Affine | None:
    """The affine map of an operator's first layer, if it is a foldable batch norm."""
    if not layers or layers[0].op != "batchnorm":
        return None
    first = list(module)[0] if isinstance(module, nn.Sequential) else module
    return Affine.of(first, idx)


def fold_rows(w: Tensor, bias: Tensor | None, a: Affine) -> tuple[Tensor, Tensor]:
    """(a.scale * w, a.scale * bias + a.shift): a linear map's output rows (dim 0) followed
    by `a`, as one linear map."""
    scale = a.scale.view(-1, *[1] * (w.dim() - 1))
    w = (w.double() * scale).to(w.dtype)
    b = a.shift if bias is None else bias.double() * a.scale + a.shift
    return w, b.to(w.dtype)


@dataclass
class _Layer:
    op: str
    params: dict
    channels: int
    tensors: dict[str, Tensor]
    module: nn.Module


class _Seq:
    """A block of plain layers: folded batch norms, written out as an nn.Sequential."""

    def __init__(self, model, layers: list[core.Layer]):
        self.layers = [
            _Layer(
                x.op,
                dict(x.params),
                x.in_shape.channels,
                folded_state(getattr(model.gm, safe(x.path))),
                getattr(model.gm, safe(x.path)),
            )
            for x in layers
        ]
        kept: list[_Layer] = []
        for layer in self.layers:  # a batch norm after a conv: into the conv's weight and bias
            a = Affine.of(layer.module) if layer.op == "batchnorm" else None
            if a is not None and kept and self._absorb(kept[-1], a):
                continue
            kept.append(layer)
        self.layers = kept

    @staticmethod
    def _absorb(layer: _Layer, a: Affine) -> bool:
        if layer.op not in ("conv", "dwconv"):
            return False
        t = layer.tensors
        t["weight"], t["bias"] = fold_rows(t["weight"], t.get("bias"), a)
        layer.params["bias"] = True
        return True

    def absorb(self, a: Affine) -> bool:
        """Fold an affine map on this block's output into its last layer, if that is linear."""
        return bool(self.layers) and self._absorb(self.layers[-1], a)

    def pop_leading(self) -> Affine | None:
        """Take a leading batch norm off this block (the caller folds it into what precedes)."""
        a = Affine.of(self.layers[0].module) if self.layers[0].op == "batchnorm" else None
        if a is not None:
            self.layers.pop(0)
        return a

    def source(self, prefix: str, state: dict[str, Tensor]) -> str:
        for i, layer in enumerate(self.layers):
            for k, v in layer.tensors.items():
                state[f"{prefix}.{i}.{k}"] = v
        return sequential([ctor(x.op, x.params, x.channels) for x in self.layers])


def _set_module(
    trained: nn.Module,
    layers: list[core.Layer],
    size: int,
    idx: Tensor,
    prefix: str,
    state: dict[str, Tensor],
    skip: int = 0,
    fresh: bool = False,
    width: int | None = None,
) -> str:
    """A node set's operator on its kept channels: per-channel tensors keep rows `idx`, then
    zeros up to `width` channels (a running variance ones), so a zero channel stays zero;
    `skip` leading layers are left out (folded elsewhere); `fresh`: its input is a new tensor
    that it may overwrite."""
    width = int(idx.numel()) if width is None else width
    pad = width - int(idx.numel())
    modules = list(trained) if isinstance(trained, nn.Sequential) else [trained]
    for i, module in enumerate(modules[skip:]):
        for k, v in module.state_dict().items():
            v = v.detach()
            if v.dim() and v.shape[0] == size:
                v = v.index_select(0, idx)
                if pad:
                    fill = v.new_ones if k == "running_var" else v.new_zeros
                    v = torch.cat([v, fill((pad, *v.shape[1:]))])
            state[f"{prefix}.{i}.{k}"] = v.clone()
    ctors = [ctor(x.op, x.params, width) for x in layers[skip:]]
    if fresh and ctors:
        ctors.append("fresh=True")
    return sequential(ctors, "NodeOps")


def _block_state(w: Tensor, live: Tensor, gathered: bool) -> dict[str, Tensor]:
    """The tensors of one block of an `Edges` module: the dense matrix `w`, or its live
    entries in CSR order (row, column, value; each row's first entry in `off`)."""
    if not gathered:
        return {"w": w.clone()}
    row, col = live.nonzero(as_tuple=True)  # row-major: CSR order
    off = torch.cumsum(torch.bincount(row, minlength=w.shape[0]), 0) - torch.bincount(
        row, minlength=w.shape[0]
    )
    return {"row": row.clone(), "col": col.clone(), "off": off, "val": w[row, col].clone()}


# ----------------------------------------------------------------------------- graphs
def fixed_grid(time: float, step_size: float) -> list[float]:
    """The step sizes torchdiffeq's fixed-grid solvers take from 0 to `time` (float32)."""
    t = torch.tensor([0.0, float(time)])
    n = torch.ceil((t[-1] - t[0]) / step_size + 1).item()
    grid = torch.arange(0, n, dtype=t.dtype) * step_size + t[0]
    grid[-1] = t[-1]
    return [float(d) for d in grid[1:] - grid[:-1]]


def solver_plan(g: core.Graph, solver: str | None, steps: int | None) -> tuple[str, list[float]]:
    """(mode, step sizes) for a graph; refuses a continuous graph with no fixed program."""
    sem = g.semantics
    if not isinstance(sem, core.ContinuousSemantics):
        return sem.kind, []
    solver = solver or (sem.solver if sem.solver in SOLVERS else None)
    if solver is None or solver not in SOLVERS or (steps is None and sem.step_size is None):
        raise ExportRefused(
            f"graph `{g.name}` runs in continuous time with the solver `{sem.solver}`, which is not a fixed program; "
            "pass --solver euler|midpoint|rk4 --steps N to export it with that fixed-step solver unrolled"
        )
    if steps is not None and steps < 1:
        raise ExportRefused(f"--steps must be at least 1, got {steps}")
    return solver, fixed_grid(sem.time, sem.time / steps if steps is not None else sem.step_size)


@dataclass
class _Build:
    """What the steps of one graph's plan share: the plan being filled, the graph, its trained
    parts, each set's kept node indices (`idx`), state rows (`width`, `_widths`) and variable,
    the leading operator layers folded elsewhere (`skip`, grown by `_products`), the state_dict
    being filled and this graph's prefix in it, the mode, and each target set's wiring index."""

    plan: GraphPlan
    g: core.Graph
    parts: Any
    idx: dict[str, Tensor]
    width: dict[str, int]
    var: dict[str, str]
    skip: dict[str, int]
    state: dict[str, Tensor]
    key: str
    mode: str
    where: dict[str, int]

    @property
    def dynamic(self) -> bool:
        return self.mode != "static"


@torch.no_grad()
def _graph(
    model,
    g: core.Graph,
    attr: str,
    solver: str | None,
    steps: int | None,
    state: dict[str, Tensor],
    device: str = "cpu",
    fold_inputs: bool = False,
    own_input: bool = False,
) -> tuple[GraphPlan, Affine | None]:
    """The plan of one graph, and (with `fold_inputs`, when the item before the graph can take
    it) the affine map over the graph's input channels that its input sets' leading batch
    norms were folded into: the caller folds it into that item. `own_input`: the graph's input
    is a tensor nothing else reads (made by the item before), which its input sets' operators
    may overwrite."""
    mode, dts = solver_plan(g, solver, steps)
    parts = model.graph_parts(g.name)
    wiring = parts.wiring
    ng = node_graph(model, g)
    kept, _ = kept_nodes(model, g, ng)
    idx = {s.name: torch.nonzero(kept[ng.set_slice(s.name)]).flatten() for s in g.sets}
    var = {s.name: f"s_{ident(s.name)}" for s in g.sets}
    plan = GraphPlan(
        name=g.name,
        cls=f"Graph_{ident(g.name)}",
        mode=mode,
        dts=[repr(d) for d in dts],
        steps=g.semantics.steps if mode == "discrete" else 0,
        key=attr,
    )
    key = f"{attr}."
    dynamic = mode != "static"
    # leading layers of a set's operator folded elsewhere
    inputs, skip = _input_norms(g, parts, wiring, fold_inputs and not dynamic)
    where = {t: i for i, t in enumerate(wiring.targets)}
    width = _widths(g, idx, where, mode, CHANNEL_MULTIPLE.get(device, 1))
    b = _Build(plan, g, parts, idx, width, var, skip, state, key, mode, where)
    _initial_states(b)
    edges_of, kept_edges = _products(b, device)
    _set_modules(b, own_input)
    if dynamic:  # sets that only send keep their initial state
        plan.consts = [var[s.name] for s in g.sets if s.name not in where and idx[s.name].numel()]
    out_sets = [s for s in g.sets if s.role == "output"]
    outs = [var[s.name] for s in out_sets]
    plan.output_cm = outs[0] if len(outs) == 1 else f"torch.cat([{', '.join(outs)}])"
    plan.output = f"swap_nc({plan.output_cm})"
    plan.outputs = [(edges_of.get(s.name, ""), int(idx[s.name].numel())) for s in out_sets]
    sources = {s for i in range(len(wiring.targets)) for s in wiring.sources[i]}
    plan.absorbs = (
        mode == "static"
        and all(not s.op and not s.send and s.name not in sources for s in out_sets)
        and all(e and n == s.size for (e, n), s in zip(plan.outputs, out_sets, strict=True))
    )
    plan.nodes = (int(kept.sum()), g.size)
    plan.edges = (kept_edges, int(ng.src.numel()))
    how = {
        "static": "static (sets in topological order)",
        "discrete": f"discrete time, {plan.steps} steps unrolled",
    }
    plan.doc = (
        f"{how.get(mode, f'continuous time, {mode} with {len(dts)} steps unrolled')}: {plan.nodes[0]} of "
        f"{plan.nodes[1]} nodes and {plan.edges[0]:,} of {plan.edges[1]:,} edges kept."
    )
    return plan, inputs


def _widths(
    g: core.Graph, idx: dict[str, Tensor], where: dict[str, int], mode: str, step: int
) -> dict[str, int]:
    """The rows of each set's state: its kept nodes, rounded up to a multiple of `step`
    (`CHANNEL_MULTIPLE`) for the sets of a static graph whose operator runs a depthwise conv,
    where that adds at most `PAD_AT_MOST` of their rows. An input set that only sends rounds
    up with more of its own channels (`idx` grows: real values, which no kept node reads, as a
    node with an edge to a kept node is kept); a set computed by a product, with zero rows
    after its kept ones (`_products`, `_set_module`). Output sets keep their kept nodes: their
    channels leave the graph."""
    width = {s.name: int(idx[s.name].numel()) for s in g.sets}
    if mode != "static" or step <= 1:
        return width
    for s in g.sets:
        n = width[s.name]
        padded = -(-n // step) * step
        if (
            s.role == "output"
            or not any(x.op == "dwconv" for x in s.op)
            or n < step
            or padded - n > PAD_AT_MOST * n
        ):
            continue
        if s.role == "input":
            if s.name in where or padded > s.size:  # (an input set with edges in: as it is)
                continue
            unused = torch.ones(s.size, dtype=torch.bool)
            unused[idx[s.name]] = False
            extra = torch.nonzero(unused).flatten()[: padded - n]
            idx[s.name] = torch.sort(torch.cat([idx[s.name], extra])).values
        elif s.name not in where:  # no product computes it: nothing to pad
            continue
        width[s.name] = padded
    return width


def _input_norms(g: core.Graph, parts, wiring, fold: bool) -> tuple[Affine | None, dict[str, int]]:
    """Input sets' leading batch norms to fold into the item before a static graph: their
    operator runs on g(x) once, so the norm is an affine map of those channels (an identity on
    the channels it does not cover). Returns that map (None: nothing folds) and, per set, how
    many leading layers of its operator were taken."""
    skip: dict[str, int] = {}
    if not fold:
        return None, skip
    channels = g.in_shape.channels
    inputs = Affine(
        torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    )
    start = 0
    for s in g.sets:
        if s.role != "input":
            continue
        a = leading_affine(s.op, parts.ops[safe(s.name)])
        if a is not None and s.name not in wiring.targets:  # its operator runs once
            inputs.scale[start : start + s.size] = a.scale
            inputs.shift[start : start + s.size] = a.shift
            skip[s.name] = 1
        start += s.size
    return (inputs if skip else None), skip


def _initial_states(b: _Build) -> None:
    """Input nodes hold g(x) (static: after their operator), the rest 0; every state is
    C x N x H x W (`swap_nc`), the layout of the edge products."""
    plan, g, idx, var, skip, state, key = b.plan, b.g, b.idx, b.var, b.skip, b.state, b.key
    dynamic = b.dynamic
    plan.init.append(("x", "swap_nc(x)"))
    start, h, w = 0, g.in_shape.height, g.in_shape.width
    for s in g.sets:
        i, n = idx[s.name], int(idx[s.name].numel())
        if s.role == "input":
            if n and i[-1] - i[0] + 1 == n:  # contiguous: a slice, no index tensor
                sel = f"x[{start + int(i[0])}:{start + int(i[-1]) + 1}]"
            elif n:
                buf = f"idx_{ident(s.name)}"
                plan.buffers.append((buf, n))
                state[key + buf] = i + start
                sel = f"x.index_select(0, self.{buf})"
            start += s.size
            if n:
                apply_op = not dynamic and len(s.op) > skip.get(s.name, 0)
                plan.init.append(
                    (var[s.name], f"self.op_{ident(s.name)}({sel})" if apply_op else sel)
                )
        elif dynamic and n:
            plan.init.append((var[s.name], f"x.new_zeros(({n}, x.shape[1], {h}, {w}))"))


def _products(b: _Build, device: str) -> tuple[dict[str, str], int]:
    """One product per target set with kept nodes, a block per kept source set with live
    edges, gathered where few are live; a target's leading batch norm folds into its rows.
    Blocks span the sets' `width`s: the padding rows and columns hold no edge. Returns each
    target's weight name and the count of live edges kept."""
    plan, g, parts, idx, width, var = b.plan, b.g, b.parts, b.idx, b.width, b.var
    skip, state, key, mode, where = b.skip, b.state, b.key, b.mode, b.where
    wiring = parts.wiring
    masks = wiring.mask.active()
    effective = [t.detach() for t in wiring.mask.folded()]
    sets = {s.name: s for s in g.sets}
    dynamic = b.dynamic
    order = topo_order(g) if mode == "static" else [s.name for s in g.sets]
    sent: dict[str, str] = {}
    edges_of: dict[str, str] = {}
    kept_edges = 0
    ref = "x" if mode in ("static", "discrete") else None
    below = SPARSE_BELOW.get(device, 0.0)
    for t in order:
        if t not in where or not idx[t].numel():
            continue
        i, rows = where[t], idx[t]
        hh, ww = sets[t].in_hw
        blocks, srcs, col = [], [], 0
        for s in wiring.sources[i]:
            cols = idx[s] + col
            col += sets[s].size
            if not cols.numel():
                continue
            live = int(masks[i].index_select(0, rows).index_select(1, cols).sum())
            kept_edges += live
            if not live:  # no edge from these sources reaches the kept rows: nothing to add
                continue
            if sets[s].send and s not in sent:
                sent[s] = f"m_{ident(s)}"
                plan.step.append((sent[s], f"self.send_{ident(s)}({var[s]})"))
            srcs.append(sent.get(s, var[s]))
            size = int(rows.numel()) * int(cols.numel())
            pad = (0, width[s] - int(cols.numel()), 0, width[t] - int(rows.numel()))
            w = F.pad(effective[i].index_select(0, rows).index_select(1, cols), pad)
            on = F.pad(masks[i].index_select(0, rows).index_select(1, cols), pad)
            block = Block(width[t], width[s], live, hh * ww, live <= below * size)
            blocks.append((w, on, block))
        wname = f"w_{ident(t)}"
        ref = ref or f"{var[t]}"
        if blocks:
            # the set's leading batch norm: an affine map of each row of the product
            a = leading_affine(sets[t].op, parts.ops[safe(t)], rows)
            if a is not None and width[t] > rows.numel():  # padding rows stay zero
                more = (0, width[t] - int(rows.numel()))
                a = Affine(F.pad(a.scale, more), F.pad(a.shift, more))
            # (not a static input set's: its operator also runs on x, unfolded)
            if a is not None and not (sets[t].role == "input" and not dynamic):
                skip[t] = 1
                state[f"{key}{wname}.bias"] = fold_rows(blocks[0][0], None, a)[1]
                plan.biased.add(wname)
            for j, (w, on, block) in enumerate(blocks):
                if a is not None:
                    w = fold_rows(w, None, a)[0]
                for name, v in _block_state(w, on, block.sparse).items():
                    state[f"{key}{wname}.{name}{j}"] = v
            plan.blocks += [b for _, _, b in blocks]
            plan.weights.append(
                (
                    wname,
                    width[t],
                    tuple(b.cols for _, _, b in blocks),
                    tuple(b.live if b.sparse else 0 for _, _, b in blocks),
                )
            )
            edges_of[t] = wname
            summed = f"self.{wname}({', '.join(srcs)})"
        else:  # no live edge in: the node computes f(0), a constant map
            summed = f"{ref}.new_zeros(({width[t]}, {ref}.shape[1], {hh}, {ww}))"
        has_op = len(sets[t].op) > skip.get(t, 0)
        out = f"self.op_{ident(t)}({summed})" if has_op else summed
        new = var[t] if mode == "static" else f"d_{ident(t)}"
        plan.step.append((new, out))
        if mode != "static":
            plan.targets.append(var[t])
            plan.news.append(new)
    return edges_of, kept_edges


def _set_modules(b: _Build, own_input: bool) -> None:
    """The operators (and send operators) of the kept channels, without the layers folded."""
    plan, parts, idx, width, skip, state, key = (
        b.plan, b.parts, b.idx, b.width, b.skip, b.state, b.key
    )  # fmt: skip
    for s in b.g.sets:
        if not idx[s.name].numel():
            continue
        # a product's output is new; a static input set's is a slice of x
        fresh = own_input if s.role == "input" and not b.dynamic else s.name in b.where
        kinds = (
            ("op", s.op, parts.ops, skip.get(s.name, 0), fresh),
            ("send", s.send, parts.send, 0, False),
        )
        for kind, layers, trained, skipped, new in kinds:
            if len(layers) > skipped:
                name = f"{kind}_{ident(s.name)}"
                plan.modules.append(
                    (
                        name,
                        _set_module(
                            trained[safe(s.name)],
                            layers,
                            s.size,
                            idx[s.name],
                            f"{key}{name}",
                            state,
                            skip=skipped,
                            fresh=new,
                            width=width[s.name],
                        ),
                    )
                )


def _absorb_into_graph(g: GraphPlan, a: Affine, state: dict[str, Tensor]) -> None:
    """Fold an affine map on a graph's output channels into its output sets' product rows
    (`g.absorbs` must hold: each output channel is one row of one of them)."""
    start = 0
    for wname, rows in g.outputs:
        part = Affine(a.scale[start : start + rows], a.shift[start : start + rows])
        start += rows
        prefix = f"{g.key}.{wname}."
        old = state.get(prefix + "bias")
        for name in [k for k in state if k.startswith(prefix)]:
            block = name[len(prefix) :]
            if block.startswith("w"):  # a dense block: its rows
                state[name] = fold_rows(state[name], None, part)[0]
            elif block.startswith("val"):  # a gathered block: each entry by its row's scale
                row = state[prefix + "row" + block[3:]]
                scale = part.scale.index_select(0, row)
                state[name] = (state[name].double() * scale).to(state[name].dtype)
        dtype = next(
            v.dtype for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()
        )
        state[prefix + "bias"] = fold_rows(torch.zeros(rows, 1), old, part)[1].to(dtype)
        g.biased.add(wname)


def _merge_blocks(g: GraphPlan, state: dict[str, Tensor], below: int) -> None:
    """Each product of two or more gathered blocks whose sources, stacked for one image, hold
    at most `below` values: its live entries also in one CSR list over the stacked sources
    (`mcol`, `moff`, and `mperm`: where each entry's weight is among the blocks' `val`s,
    concatenated), for `Edges` to run as one call where that pays (`MERGE_BELOW`)."""
    blocks = iter(g.blocks)
    for wname, rows, cols, gathered in g.weights:
        mine = [next(blocks) for _ in cols]
        if len(cols) < 2 or not all(gathered) or sum(cols) * mine[0].hw > below:
            continue
        prefix = f"{g.key}.{wname}."
        base = torch.tensor([0, *cols]).cumsum(0)
        row = torch.cat([state[f"{prefix}row{j}"] for j in range(len(cols))])
        col = torch.cat([state[f"{prefix}col{j}"] + base[j] for j in range(len(cols))])
        order = torch.argsort(row * int(base[-1]) + col)  # row-major: CSR order
        counts = torch.bincount(row, minlength=rows)
        state[prefix + "mcol"] = col[order].clone()
        state[prefix + "moff"] = torch.cumsum(counts, 0) - counts
        state[prefix + "mperm"] = order.clone()
        g.merged.add(wname)


def on_cpu(module: nn.Module) -> bool:
    """Whether every tensor of `module` is on the CPU, where plans and artifacts are made."""
    return all(t.device.type == "cpu" for t in (*module.parameters(), *module.buffers()))


def plan_network(
    net: core.Network,
    model,
    source: str = "",
    solver: str | None = None,
    steps: int | None = None,
    device: str = "cpu",
) -> CompactPlan:
    """The compact plan of a trained model (put in eval mode here); products take the forms
    that are fastest on `device` (`SPARSE_BELOW`); batch norms are folded into the linear
    maps before them where that is exact up to rounding (`Affine`). A model on a GPU is read
    from a copy on the CPU, where the plan's tensors live (the caller moves the module it
    instantiates)."""
    model.eval()
    if not on_cpu(model):
        model = copy.deepcopy(model).cpu()
    device = torch.device(device).type  # the tables are per kind of device: cuda:1 is cuda
    plan = CompactPlan(
        network=net.name,
        source=source or net.name,
        classes=net.classes,
        input=(net.input.channels, net.input.height, net.input.width),
        device=device,
        merge_below=MERGE_BELOW.get(device, 0),
    )
    built: list[tuple[str, object]] = []  # (attribute, _Seq | GraphPlan | residual source)

    def absorb(a: Affine) -> bool:
        """Fold `a`, on the output of the item built last, into that item if it can take it."""
        prev = built[-1][1] if built else None
        if isinstance(prev, _Seq):
            return prev.absorb(a)
        if isinstance(prev, GraphPlan) and prev.absorbs:
            _absorb_into_graph(prev, a, plan.state)
            return True
        return False

    def can_absorb() -> bool:
        prev = built[-1][1] if built else None
        if isinstance(prev, _Seq):
            return bool(prev.layers) and prev.layers[-1].op in ("conv", "dwconv")
        return isinstance(prev, GraphPlan) and prev.absorbs

    def owns() -> bool:
        """Whether the item built last returns a new tensor (not the model's input, nor a
        view of it): a graph, or layers ending in one that computes its output."""
        prev = built[-1][1] if built else None
        if isinstance(prev, _Seq):
            return bool(prev.layers) and prev.layers[-1].op not in VIEWS
        return isinstance(prev, GraphPlan)

    with torch.no_grad():
        for item in layer_blocks(net.items):
            if isinstance(item, tuple):
                seq = _Seq(model, item[1])
                if seq.layers and can_absorb():
                    a = seq.pop_leading()
                    if a is not None and not absorb(a):
                        raise AssertionError("an item that could absorb refused")
                built.append((ident(item[0]), seq))
            elif isinstance(item, core.Residual):
                attr = ident(item.name)
                parts = []
                for p in ("branch", "shortcut", "after"):
                    seq = _Seq(model, getattr(item, p))
                    parts.append(seq.source(f"{attr}.{p}", plan.state))
                built.append((attr, f"Residual({', '.join(parts)})"))
            else:
                attr = ident(item.name)
                g, inputs = _graph(
                    model, item, attr, solver, steps, plan.state, device, can_absorb(), owns()
                )
                if inputs is not None and not absorb(inputs):
                    raise AssertionError("an item that could absorb refused")
                plan.graphs.append(g)
                built.append((attr, g))
    for g in plan.graphs:  # after every fold: the merged entries copy the final blocks
        _merge_blocks(g, plan.state, plan.merge_below)
    for (_, a), (_, b) in zip(built, built[1:], strict=False):
        if isinstance(a, GraphPlan) and isinstance(b, _Seq):
            _pool_in_graph(a, b, plan.state)
    for attr, obj in built:
        if isinstance(obj, _Seq):
            plan.items.append((attr, obj.source(attr, plan.state)))
        elif isinstance(obj, GraphPlan):
            plan.items.append((attr, f"{obj.cls}()"))
        else:
            plan.items.append((attr, obj))
    _chain_graphs(plan)
    for g in plan.graphs:
        plan.notes.append(f"Graph `{g.name}`: {g.doc}")
    if any(x.sparse is not None for x in net.layers()):
        plan.notes.append(
            "Sparse layers are ordinary conv / linear layers whose weights hold zeros outside the mask."
        )
    return plan


def _pool_in_graph(g: GraphPlan, seq: _Seq, state: dict[str, Tensor]) -> None:
    """A graph followed by layers that act on each map alone, up to a pool (a head's batch
    norm, activation and global average pool): those run at the end of the graph, in its C x
    N x H x W layout, so that the copy back to N x C x H x W moves the pooled maps (C x N
    numbers for a global pool) instead of the whole output. Measured on the quick start at
    batch 64: that copy took ~10% of the compact model's time."""
    n = 0
    for i, layer in enumerate(seq.layers):
        # an operator a node set may have acts on each channel alone: `NodeOps` runs it on
        # the graph's C x N x H x W states (a conv mixes channels and ends the tail)
        spec = get_op(layer.op)
        if spec is None or not spec.per_channel:
            break
        if layer.op in ("avgpool", "maxpool"):
            n = i + 1
    if not n:
        return
    tail, seq.layers = seq.layers[:n], seq.layers[n:]
    for i, layer in enumerate(tail):
        for k, v in layer.tensors.items():
            state[f"{g.key}.tail.{i}.{k}"] = v
    ctors = [ctor(x.op, x.params, x.channels) for x in tail]
    g.modules.append(("tail", sequential(ctors, "NodeOps")))
    g.output = f"swap_nc(self.tail({g.output_cm}))"


def _chain_graphs(plan: CompactPlan) -> None:
    """A graph followed by another hands over its output in the C x N x H x W layout: the
    next one takes it as it is (two copies of the states fewer per boundary)."""
    graphs = {g.cls: g for g in plan.graphs}
    items = [graphs.get(source[:-2]) for _, source in plan.items]
    for a, b in zip(items, items[1:], strict=False):
        if a is not None and b is not None:
            a.output = a.output_cm
            b.init = [entry for entry in b.init if entry != ("x", "swap_nc(x)")]


def fixed_step_reference(net: core.Network, model, solver: str, steps: int):
    """The trained model recompiled with a fixed-step solver: what an unrolled export equals."""
    from wirelang.backend.api import compile_network

    items = []
    for item in net.items:
        sem = item.semantics if isinstance(item, core.Graph) else None
        if isinstance(sem, core.ContinuousSemantics):
            fixed = sem.model_copy(update={"solver": solver, "step_size": sem.time / steps})
            item = item.model_copy(update={"semantics": fixed})
        items.append(item)
    ref = compile_network(net.model_copy(update={"items": items}))
    ref.load_state_dict(model.state_dict())
    return ref.eval()
