"""Lower the checked IR to a `torch.fx.GraphModule`, built node by node (never traced).

Per network item: a layer is one `call_module`; a residual block is its branch, its shortcut
and an add; a graph is lowered set by set. Inside a graph the states are kept in a
(C, N, H, W) layout (see `wirelang.backend.kernels`): the graph converts its input once
(`to_cnhw`) and its output once (`to_nchw`; two graphs in a row skip the round trip).
- A target set's input is one `edge_product` of its weight matrix with the chunks of its
  source sets' states (no concatenation: one GEMM per chunk, accumulated).
- A set's operator is one `NodeOps` call over all its channels; in discrete and continuous
  time, targets that read the same sources share one product with the rows of all their
  weight matrices, and consecutive sets with the same operator run as one call.
- Static graphs run their sets in topological order; discrete time unrolls the T steps;
  continuous time calls an `ODEBlock` whose derivative is itself a GraphModule built by the
  same step emitter.
Every fx node carries `meta["span"]` (the spec location) and `meta["wire_path"]`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import Tensor, nn

from wirelang.backend.kernels import (
    NodeOps,
    cat_rows,
    edge_product,
    layers_of,
    ops_signature,
    sparse_plan,
    to_cnhw,
    to_nchw,
    zero_rows,
)
from wirelang.backend.modules import build_set_ops
from wirelang.backend.wiring import GraphWiring
from wirelang.ir import core


def cat_channels(*xs: Tensor) -> Tensor:
    """Concatenate NCHW tensors along channels (kept for callers of the earlier lowering)."""
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


fx.wrap("cat_channels")  # the kernels' functions are wrapped where they are defined


def safe(name: str) -> str:
    """A Python identifier for a module name (`in` is a keyword, `h.1` has a dot)."""
    import keyword

    out = name.replace(".", "_").replace("-", "_")
    return f"{out}_" if keyword.iskeyword(out) else out


class LeafTracer(fx.Tracer):
    """The tracer a lowered GraphModule re-traces its code with when it is unpickled (fx keeps
    the graph's `tracer_cls`): the kernels stay single nodes instead of being traced into
    (their Python control flow cannot be traced, and fx.wrap cannot reach the aliases that
    generated code imports them under)."""

    def __init__(self, *args, autowrap_functions: tuple = (), **kwargs):
        leaves = (edge_product, sparse_plan, to_cnhw, to_nchw, cat_rows, zero_rows, cat_channels)
        super().__init__(*args, autowrap_functions=tuple(autowrap_functions) + leaves, **kwargs)


class Emitter:
    """Adds modules to a root and nodes to an fx graph, recording provenance."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.graph = fx.Graph(tracer_cls=LeafTracer)

    def module(
        self,
        name: str,
        module: nn.Module,
        args: tuple,
        span: core.IRNode | None = None,
        path: str = "",
    ) -> fx.Node:
        target = safe(name)
        self.root.add_module(target, module)
        node = self.graph.call_module(target, args)
        self._meta(node, span, path or name)
        return node

    def call(self, fn, args: tuple, span=None, path: str = "") -> fx.Node:
        node = self.graph.call_function(fn, args)
        self._meta(node, span, path)
        return node

    def call_module(self, target: str, args: tuple, span=None, path: str = "") -> fx.Node:
        node = self.graph.call_module(target, args)
        self._meta(node, span, path)
        return node

    @staticmethod
    def _meta(node: fx.Node, item, path: str) -> None:
        if item is not None:
            node.meta["span"] = str(item.span)
        node.meta["wire_path"] = path


class GraphParts(nn.Module):
    """The modules of one graph: its wiring and each set's operator (and send operator).

    `run` holds the `NodeOps` the lowering calls: references to the `ops`/`send` modules
    (no parameters of their own), one per set or per group of sets run together.
    """

    def __init__(self, graph: core.Graph, k: int, seed: int):
        super().__init__()
        self.wiring = GraphWiring(graph, k, seed)
        self.ops = nn.ModuleDict()
        self.send = nn.ModuleDict()
        for s in graph.sets:
            self.ops[safe(s.name)] = build_set_ops(s.op, s.size, s.in_hw)
            if s.send:
                self.send[safe(s.name)] = build_set_ops(s.send, s.size, s.out_hw)
        self.run = nn.ModuleDict()

    def node_ops(self, names: list[str], send: bool = False) -> str:
        """The `run` entry applying the (send) operator of consecutive sets `names`; its name."""
        owner = self.send if send else self.ops
        key = ("send_" if send else "") + "_to_".join(
            dict.fromkeys([safe(names[0]), safe(names[-1])])
        )
        if key not in self.run:
            self.run[key] = NodeOps([owner[safe(n)] for n in names], names)
        return f"run.{key}"


@dataclass(frozen=True)
class Ref:
    """Where a set's state lives: rows [start, start + size) of the (C, N, H, W) value of
    `node`, which has `total` rows. A state that is 0 is represented by no Ref at all."""

    node: fx.Node
    start: int
    size: int
    total: int


def _whole(node: fx.Node, size: int) -> Ref:
    return Ref(node, 0, size, size)


def gather(
    em: Emitter, parts: list[tuple[int, Ref | None]], item, path: str
) -> list[tuple[fx.Node, int]]:
    """Chunks for a product: (column, state) pairs in column order -> (node, column) pairs.

    States that are rows next to each other in one value merge into one chunk (one GEMM);
    zero states are left out (they add nothing and need no gradient).
    """
    runs: list[list] = []
    for col, ref in parts:
        if ref is None:
            continue
        last = runs[-1] if runs else None
        if (
            last
            and last[0] is ref.node
            and last[1] + last[2] == ref.start
            and last[3] + last[2] == col
        ):
            last[2] += ref.size
        else:
            runs.append([ref.node, ref.start, ref.size, col, ref.total])
    out = []
    for node, start, rows, col, total in runs:
        if not (start == 0 and rows == total):
            node = em.call(operator.getitem, (node, slice(start, start + rows)), item, path)
        out.append((node, col))
    return out


class GraphEmitter:
    """Emits one graph's steps: caches the weight of each target group and its sparse plan."""

    def __init__(
        self,
        em: Emitter,
        graph: core.Graph,
        parts: GraphParts,
        prefix: str,
        ws: fx.Node | list[fx.Node],
        dynamic: bool,
    ):
        self.em, self.graph, self.parts, self.prefix, self.ws, self.dynamic = (
            em,
            graph,
            parts,
            prefix,
            ws,
            dynamic,
        )
        self.sets = {s.name: s for s in graph.sets}
        self.targets = _targets(graph)
        self.weights: dict[tuple[str, ...], tuple[fx.Node, fx.Node]] = {}

    def _w(self, name: str) -> fx.Node:
        i = self.targets.index(name)
        if isinstance(self.ws, list):
            return self.ws[i]
        return self.em.call(
            operator.getitem, (self.ws, i), self.sets[name], f"{self.graph.name}.{name}.edges"
        )

    def weight(self, group: tuple[str, ...]) -> tuple[fx.Node, fx.Node]:
        """The effective weight of a group of targets (their matrices' rows stacked), and its
        sparse plan; emitted once per graph evaluation, shared by every step."""
        if group not in self.weights:
            item = self.sets[group[0]]
            path = f"{self.graph.name}.{'+'.join(group)}.edges"
            ws = [self._w(t) for t in group]
            w = ws[0] if len(ws) == 1 else self.em.call(cat_rows, tuple(ws), item, path)
            self.weights[group] = (w, self.em.call(sparse_plan, (w,), item, path))
        return self.weights[group]

    def groups(self, order: list[str], only: set[str] | None = None) -> list[list[list[str]]]:
        """Target groups (one product each), each cut into runs of sets with one operator.

        Static: one target at a time in topological order. Dynamic: targets with the same
        sources form one group (in declaration order); consecutive targets with the same
        fusable operator form one run.
        """
        targets = [t for t in order if t in self.targets and (only is None or t in only)]
        if not self.dynamic:
            return [[[t]] for t in targets]
        by_sources: dict[tuple[str, ...], list[str]] = {}
        for t in targets:
            by_sources.setdefault(tuple(_sources(self.graph, t)), []).append(t)
        out = []
        for members in by_sources.values():
            runs: list[list[str]] = []
            for t in members:
                sig = ops_signature(self.parts.ops[safe(t)])
                prev = runs[-1][-1] if runs else None
                if (
                    prev is not None
                    and sig is not None
                    and _adjacent(self.graph, prev, t)
                    and ops_signature(self.parts.ops[safe(prev)]) == sig
                ):
                    runs[-1].append(t)
                else:
                    runs.append([t])
            out.append(runs)
        return out

    def apply_ops(self, names: list[str], x: fx.Node, send: bool = False) -> fx.Node | None:
        """The (send) operator of consecutive sets over their state; None when it is nothing."""
        owner = self.parts.send if send else self.parts.ops
        if not any(layers_of(owner[safe(n)]) for n in names):
            return None
        target = f"{self.prefix}.{self.parts.node_ops(names, send)}"
        label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
        return self.em.call_module(
            target,
            (x,),
            self.sets[names[0]],
            f"{self.graph.name}.{label}.{'send' if send else 'op'}",
        )

    def step(
        self, states: dict[str, Ref | None], order: list[str], only: set[str] | None = None
    ) -> dict[str, Ref]:
        """One evaluation of the graph: new states of every set that receives edges (of the
        sets in `only`, when given).

        Static: sets in topological order, each reading its sources' new states. Dynamic: every
        set reads the previous states (a synchronous step).
        """
        em, g = self.em, self.graph
        new: dict[str, Ref] = {}
        sent: dict[str, Ref | None] = {}
        for runs in self.groups(order, only):
            group = tuple(t for run in runs for t in run)
            item = self.sets[group[0]]
            read = states if self.dynamic else {**states, **new}
            parts, col = [], 0
            for s in _sources(g, group[0]):
                parts.append((col, self._sent(s, read, sent)))
                col += self.sets[s].size
            chunks = gather(em, parts, item, f"{g.name}.{group[0]}.sources")
            sizes = [sum(self.sets[t].size for t in run) for run in runs]
            if chunks:
                w, plan = self.weight(group)
                srcs = tuple(c for c, _ in chunks)
                cols = tuple(c for _, c in chunks)
                label = "+".join(group)
                if len(runs) == 1:
                    outs = [
                        em.call(
                            edge_product,
                            (srcs, w, None, cols, plan),
                            item,
                            f"{g.name}.{label}.edges",
                        )
                    ]
                else:
                    prod = em.call(
                        edge_product,
                        (srcs, w, tuple(sizes), cols, plan),
                        item,
                        f"{g.name}.{label}.edges",
                    )
                    outs = [
                        em.call(
                            operator.getitem,
                            (prod, i),
                            self.sets[run[0]],
                            f"{g.name}.{run[0]}.edges",
                        )
                        for i, run in enumerate(runs)
                    ]
            else:  # every source is still 0: the sum over edges is 0
                like = next(r.node for r in states.values() if r is not None)
                h, w_ = self.sets[group[0]].in_hw or (g.in_shape.height, g.in_shape.width)
                outs = [
                    em.call(
                        zero_rows,
                        (like, size, h, w_),
                        self.sets[run[0]],
                        f"{g.name}.{run[0]}.edges",
                    )
                    for run, size in zip(runs, sizes, strict=True)
                ]
            for run, summed, size in zip(runs, outs, sizes, strict=True):
                node = self.apply_ops(run, summed)
                node = summed if node is None else node
                start = 0
                for t in run:
                    new[t] = Ref(node, start, self.sets[t].size, size)
                    start += self.sets[t].size
        return new

    def _sent(self, s: str, read: dict[str, Ref | None], sent: dict[str, Ref | None]) -> Ref | None:
        ref = read.get(s)
        if ref is None or not self.sets[s].send:
            return ref
        if s not in sent:
            ((node, _),) = gather(self.em, [(0, ref)], self.sets[s], f"{self.graph.name}.{s}.state")
            out = self.apply_ops([s], node, send=True)
            sent[s] = ref if out is None else _whole(out, ref.size)
        return sent[s]


def _needed_last(graph: core.Graph, parts: GraphParts) -> set[str]:
    """Sets the last discrete step must update: outputs, and sets with stateful operators."""

    def stateful(name: str) -> bool:
        return any(
            getattr(m, "track_running_stats", False) for m in layers_of(parts.ops[safe(name)])
        )

    return {s.name for s in graph.sets if s.role == "output" or stateful(s.name)}


def _adjacent(graph: core.Graph, a: str, b: str) -> bool:
    names = [s.name for s in graph.sets]
    return names.index(b) == names.index(a) + 1


def _targets(graph: core.Graph) -> list[str]:
    targets = {b.target for b in graph.blocks}
    return [s.name for s in graph.sets if s.name in targets]


def _sources(graph: core.Graph, target: str) -> list[str]:
    order = [s.name for s in graph.sets]
    return sorted({b.source for b in graph.blocks if b.target == target}, key=order.index)


def emit_step(
    em: Emitter,
    graph: core.Graph,
    prefix: str,
    states: dict[str, Ref | None],
    ws,
    dynamic: bool,
    order: list[str],
    parts: GraphParts | None = None,
) -> dict[str, Ref]:
    """One evaluation of the graph (see `GraphEmitter.step`)."""
    parts = parts if parts is not None else em.root.get_submodule(prefix)
    return GraphEmitter(em, graph, parts, prefix, ws, dynamic).step(states, order)


def _graph_input(em: Emitter, x: fx.Node, graph: core.Graph) -> fx.Node:
    """The graph's input in the (C, N, H, W) layout; reuses the previous graph's states
    when that graph's output is this input (no round trip through NCHW)."""
    if x.op == "call_function" and x.target is to_nchw:
        chunks = x.args
        xc = (
            chunks[0]
            if len(chunks) == 1
            else em.call(cat_rows, tuple(chunks), graph, f"{graph.name}.input")
        )
        if not x.users:
            em.graph.erase_node(x)
        return xc
    return em.call(to_cnhw, (x,), graph, f"{graph.name}.input")


def initial_states(
    em: Emitter, graph: core.Graph, xc: fx.Node, apply_input_ops: bool, ge: GraphEmitter
) -> dict[str, Ref | None]:
    """Static: input sets after their operator. Dynamic: input sets as given, others 0."""
    states: dict[str, Ref | None] = {}
    total = sum(s.size for s in graph.sets if s.role == "input")
    start = 0
    for s in graph.sets:
        if s.role == "input":
            ref = Ref(xc, start, s.size, total)
            start += s.size
            if apply_input_ops:
                ((node, _),) = gather(em, [(0, ref)], s, f"{graph.name}.{s.name}")
                out = ge.apply_ops([s.name], node)
                ref = ref if out is None else _whole(out, s.size)
            states[s.name] = ref
        elif not apply_input_ops:  # dynamic: every other node starts at 0
            states[s.name] = None
    return states


def emit_output(
    em: Emitter, graph: core.Graph, states: dict[str, Ref | None], like: fx.Node, fn, path: str
) -> fx.Node:
    """`fn` (to_nchw or cat_rows) over the states of the output sets (or all sets), in order."""
    names = (
        [s.name for s in graph.sets if s.role == "output"]
        if fn is to_nchw
        else [s.name for s in graph.sets]
    )
    parts, col = [], 0
    nodes: list[fx.Node] = []
    for name in names:
        ref = states.get(name)
        if ref is None:
            if parts:
                nodes += [n for n, _ in gather(em, parts, graph, path)]
                parts = []
            h, w = graph.in_shape.height, graph.in_shape.width
            nodes.append(
                em.call(
                    zero_rows,
                    (like, graph.set(name).size, h, w),
                    graph.set(name),
                    f"{graph.name}.{name}.hold",
                )
            )
        else:
            parts.append((col, ref))
        col += graph.set(name).size
    if parts:
        nodes += [n for n, _ in gather(em, parts, graph, path)]
    return em.call(fn, tuple(nodes), graph, path)


def emit_graph(em: Emitter, graph: core.Graph, x: fx.Node, k: int, seed: int) -> fx.Node:
    prefix = safe(graph.name)
    parts = GraphParts(graph, k, seed)
    kind = graph.semantics.kind
    if kind == "continuous":
        return em.module(graph.name, ODEBlock(graph, parts), (x,), graph, graph.name)
    em.root.add_module(prefix, parts)
    xc = _graph_input(em, x, graph)
    ws = em.graph.call_module(f"{prefix}.wiring", ())
    em._meta(ws, graph, f"{graph.name}.wiring")
    if kind == "static":
        from wirelang.passes.shapes import topo_order

        ge = GraphEmitter(em, graph, parts, prefix, ws, False)
        states = initial_states(em, graph, xc, True, ge)
        states.update(ge.step(states, topo_order(graph)))
    else:
        ge = GraphEmitter(em, graph, parts, prefix, ws, True)
        states = initial_states(em, graph, xc, False, ge)
        order = [s.name for s in graph.sets]
        steps = graph.semantics.steps
        for t in range(steps):
            # the last step computes only what the output reads (and sets whose operator keeps
            # running statistics, which every step must update as the reference does)
            only = _needed_last(graph, parts) if t == steps - 1 else None
            states.update(ge.step(states, order, only))
    return emit_output(em, graph, states, xc, to_nchw, f"{graph.name}.output")


class Derivative(nn.Module):
    """f(t, z) for torchdiffeq: counts evaluations and applies the (masked) edge weights."""

    def __init__(self, graph: core.Graph, parts: GraphParts):
        super().__init__()
        self.func = _derivative_module(graph, parts)
        object.__setattr__(self, "parts", parts)  # owned by self.func; a plain reference here
        self.nfe = 0
        self.ws: tuple[Tensor, ...] | None = None

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.nfe += 1
        ws = self.ws if self.ws is not None else self.parts.wiring()
        return self.func(z, *ws)


class ODEBlock(nn.Module):
    """Continuous time: dZ/dt = f(sum w Z), integrated by torchdiffeq from 0 to `time`.

    The state is every set's maps concatenated along channels; sets that receive no edges keep
    their state (derivative 0). `nfe` counts derivative evaluations of the last forward pass.
    """

    def __init__(self, graph: core.Graph, parts: GraphParts):
        super().__init__()
        assert isinstance(graph.semantics, core.ContinuousSemantics)
        self.semantics = graph.semantics
        self.sizes = [s.size for s in graph.sets]
        self.outputs = [i for i, s in enumerate(graph.sets) if s.role == "output"]
        self.inputs = [i for i, s in enumerate(graph.sets) if s.role == "input"]
        self.derivative = Derivative(graph, parts)

    @property
    def parts(self) -> GraphParts:
        return self.derivative.parts

    @property
    def nfe(self) -> int:
        return self.derivative.nfe

    def forward(self, x: Tensor) -> Tensor:
        from torchdiffeq import odeint, odeint_adjoint

        # the state: every set's maps in the (C, N, H, W) layout, sets one after another
        xc = to_cnhw(x)
        _, n, h, w = xc.shape
        chunks, start = [], 0
        for i, size in enumerate(self.sizes):
            if i in self.inputs:
                chunks.append(xc[start : start + size])
                start += size
            else:
                chunks.append(xc.new_zeros(size, n, h, w))
        z0 = torch.cat(chunks, dim=0)
        d = self.derivative
        d.nfe = 0
        sem = self.semantics
        t = torch.tensor([0.0, sem.time], dtype=x.dtype, device=x.device)
        options = {"step_size": sem.step_size} if sem.step_size else None
        kwargs = dict(rtol=sem.rtol, atol=sem.atol, method=sem.solver, options=options)
        if sem.adjoint:
            # the adjoint method needs the derivative to use its own parameters directly, so
            # the masked weights are recomputed inside every evaluation
            d.ws = None
            zt = odeint_adjoint(d, z0, t, adjoint_params=tuple(d.parameters()), **kwargs)[-1]
        else:
            d.ws = self.parts.wiring()  # masks are fixed during one solve: rank once
            try:
                zt = odeint(d, z0, t, **kwargs)[-1]
            finally:
                d.ws = None
        outs, start = [], 0
        for i, size in enumerate(self.sizes):
            if i in self.outputs:
                outs.append(zt[start : start + size])
            start += size
        return to_nchw(*outs)


def _derivative_module(graph: core.Graph, parts: GraphParts) -> fx.GraphModule:
    """fx module (z, *ws) -> dZ/dt in the (C, N, H, W) layout, sharing the parts' modules."""
    root = nn.Module()
    prefix = safe(graph.name)
    root.add_module(prefix, parts)
    em = Emitter(root)
    z = em.graph.placeholder("z")
    targets = _targets(graph)
    ws = [em.graph.placeholder(f"w_{i}") for i in range(len(targets))]
    total = sum(s.size for s in graph.sets)
    states: dict[str, Ref | None] = {}
    start = 0
    for s in graph.sets:
        states[s.name] = Ref(z, start, s.size, total)
        start += s.size
    ge = GraphEmitter(em, graph, parts, prefix, ws, True)
    new = ge.step(states, [s.name for s in graph.sets])
    # sets that receive no edges keep their state: derivative 0
    held = {s.name: new.get(s.name) for s in graph.sets}
    em.graph.output(emit_output(em, graph, held, z, cat_rows, f"{graph.name}.derivative"))
    em.graph.lint()
    gm = fx.GraphModule(root, em.graph, class_name="Derivative")
    setattr(gm, prefix, parts)
    return gm
