"""Lower the checked IR to a `torch.fx.GraphModule`, built node by node (never traced).

Per network item: a layer is one `call_module`; a residual block is its branch, its shortcut
and an add; a graph is lowered set by set: a set's operator is one module over all its
channels, and its input is one product of its weight matrix with the concatenated states of
its source sets (`edge_product`). Discrete time unrolls the T steps; continuous time calls an
`ODEBlock` whose derivative is itself a GraphModule built by the same step emitter.
Every fx node carries `meta["span"]` (the spec location) and `meta["wire_path"]`.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from wirelang.backend.modules import build_layer, build_set_ops
from wirelang.backend.wiring import GraphWiring
from wirelang.ir import core


def edge_product(x: Tensor, w: Tensor) -> Tensor:
    """Sum over sources of w_qu * Z_q for every target u: a 1x1 convolution with w (|B| x S)."""
    return F.conv2d(x, w[:, :, None, None])


def zeros_for(x: Tensor, channels: int, height: int, width: int) -> Tensor:
    return x.new_zeros(x.shape[0], channels, height, width)


def cat_channels(*xs: Tensor) -> Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


fx.wrap("edge_product")
fx.wrap("zeros_for")
fx.wrap("cat_channels")


def safe(name: str) -> str:
    """A Python identifier for a module name (`in` is a keyword, `h.1` has a dot)."""
    import keyword

    out = name.replace(".", "_").replace("-", "_")
    return f"{out}_" if keyword.iskeyword(out) else out


class Emitter:
    """Adds modules to a root and nodes to an fx graph, recording provenance."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.graph = fx.Graph()

    def module(self, name: str, module: nn.Module, args: tuple, span: core.IRNode | None = None, path: str = "") -> fx.Node:
        target = safe(name)
        self.root.add_module(target, module)
        node = self.graph.call_module(target, args)
        self._meta(node, span, path or name)
        return node

    def call(self, fn, args: tuple, span=None, path: str = "") -> fx.Node:
        node = self.graph.call_function(fn, args)
        self._meta(node, span, path)
        return node

    @staticmethod
    def _meta(node: fx.Node, item, path: str) -> None:
        if item is not None:
            node.meta["span"] = str(item.span)
        node.meta["wire_path"] = path


def _slice_channels(em: Emitter, x: fx.Node, start: int, size: int, item, path: str) -> fx.Node:
    return em.call(operator.getitem, (x, (slice(None), slice(start, start + size))), item, path)


class GraphParts(nn.Module):
    """The modules of one graph: its wiring and each set's operator (and send operator)."""

    def __init__(self, graph: core.Graph, k: int, seed: int):
        super().__init__()
        self.wiring = GraphWiring(graph, k, seed)
        self.ops = nn.ModuleDict()
        self.send = nn.ModuleDict()
        for s in graph.sets:
            self.ops[safe(s.name)] = build_set_ops(s.op, s.size, s.in_hw)
            if s.send:
                self.send[safe(s.name)] = build_set_ops(s.send, s.size, s.out_hw)


def emit_step(em: Emitter, graph: core.Graph, prefix: str, states: dict[str, fx.Node], ws: fx.Node, dynamic: bool,
              order: list[str]) -> dict[str, fx.Node]:
    """One evaluation of the graph: new states of every set that receives edges.

    Static: sets in topological order, each reading its sources' new states. Dynamic: every set
    reads the previous states (a synchronous step).
    """
    wiring_targets = {t: i for i, t in enumerate(_targets(graph))}
    new: dict[str, fx.Node] = {}
    sent: dict[str, fx.Node] = {}
    cats: dict[tuple[str, ...], fx.Node] = {}
    sets = {s.name: s for s in graph.sets}
    for name in order:
        if name not in wiring_targets:
            continue
        i = wiring_targets[name]
        srcs = _sources(graph, name)
        read = states if dynamic else {**states, **new}
        key = tuple(srcs)
        if key not in cats:
            parts = []
            for s in srcs:
                if sets[s].send:
                    if s not in sent:
                        sent[s] = em.graph.call_module(f"{prefix}.send.{safe(s)}", (read[s],))
                        em._meta(sent[s], sets[s], f"{graph.name}.{s}.send")
                    parts.append(sent[s])
                else:
                    parts.append(read[s])
            cats[key] = em.call(cat_channels, tuple(parts), sets[name], f"{graph.name}.{name}.sources")
        w = em.call(operator.getitem, (ws, i), sets[name], f"{graph.name}.{name}.edges")
        summed = em.call(edge_product, (cats[key], w), sets[name], f"{graph.name}.{name}.edges")
        node = em.graph.call_module(f"{prefix}.ops.{safe(name)}", (summed,))
        em._meta(node, sets[name], f"{graph.name}.{name}.op")
        new[name] = node
    return new


def _targets(graph: core.Graph) -> list[str]:
    targets = {b.target for b in graph.blocks}
    return [s.name for s in graph.sets if s.name in targets]


def _sources(graph: core.Graph, target: str) -> list[str]:
    order = [s.name for s in graph.sets]
    return sorted({b.source for b in graph.blocks if b.target == target}, key=order.index)


def initial_states(em: Emitter, graph: core.Graph, x: fx.Node, apply_input_ops: bool, prefix: str) -> dict[str, fx.Node]:
    states: dict[str, fx.Node] = {}
    start = 0
    for s in graph.sets:
        if s.role == "input":
            sl = _slice_channels(em, x, start, s.size, s, f"{graph.name}.{s.name}")
            start += s.size
            if apply_input_ops:
                node = em.graph.call_module(f"{prefix}.ops.{safe(s.name)}", (sl,))
                em._meta(node, s, f"{graph.name}.{s.name}.op")
                sl = node
            states[s.name] = sl
        elif not apply_input_ops:  # dynamic: every other node starts at 0
            h, w = graph.in_shape.height, graph.in_shape.width
            states[s.name] = em.call(zeros_for, (x, s.size, h, w), s, f"{graph.name}.{s.name}.init")
    return states


def emit_graph(em: Emitter, graph: core.Graph, x: fx.Node, k: int, seed: int) -> fx.Node:
    prefix = safe(graph.name)
    parts = GraphParts(graph, k, seed)
    kind = graph.semantics.kind
    if kind == "continuous":
        return em.module(graph.name, ODEBlock(graph, parts), (x,), graph, graph.name)
    em.root.add_module(prefix, parts)
    ws = em.graph.call_module(f"{prefix}.wiring", ())
    em._meta(ws, graph, f"{graph.name}.wiring")
    if kind == "static":
        from wirelang.passes.shapes import topo_order

        states = initial_states(em, graph, x, True, prefix)
        states.update(emit_step(em, graph, prefix, states, ws, False, topo_order(graph)))
    else:
        states = initial_states(em, graph, x, False, prefix)
        order = [s.name for s in graph.sets]
        for _ in range(graph.semantics.params["steps"]):
            states.update(emit_step(em, graph, prefix, states, ws, True, order))
    outs = tuple(states[s.name] for s in graph.sets if s.role == "output")
    return em.call(cat_channels, outs, graph, f"{graph.name}.output")


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
        self.params = dict(graph.semantics.params)
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

        n, _, h, w = x.shape
        chunks, start = [], 0
        for i, size in enumerate(self.sizes):
            if i in self.inputs:
                chunks.append(x[:, start:start + size])
                start += size
            else:
                chunks.append(x.new_zeros(n, size, h, w))
        z0 = torch.cat(chunks, dim=1)
        d = self.derivative
        d.nfe = 0
        t = torch.tensor([0.0, float(self.params["time"])], dtype=x.dtype, device=x.device)
        options = {"step_size": self.params["step_size"]} if self.params.get("step_size") else None
        kwargs = dict(rtol=self.params["rtol"], atol=self.params["atol"], method=self.params["solver"], options=options)
        if self.params.get("adjoint"):
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
                outs.append(zt[:, start:start + size])
            start += size
        return torch.cat(outs, dim=1)


def _derivative_module(graph: core.Graph, parts: GraphParts) -> fx.GraphModule:
    """fx module (z, *ws) -> dZ/dt, sharing the parts' modules."""
    root = nn.Module()
    root.add_module(safe(graph.name), parts)
    em = Emitter(root)
    z = em.graph.placeholder("z")
    targets = _targets(graph)
    ws_nodes = [em.graph.placeholder(f"w_{i}") for i in range(len(targets))]
    ws = em.call(_pack, tuple(ws_nodes), graph, f"{graph.name}.wiring")
    states, start = {}, 0
    for s in graph.sets:
        states[s.name] = _slice_channels(em, z, start, s.size, s, f"{graph.name}.{s.name}")
        start += s.size
    new = emit_step(em, graph, safe(graph.name), states, ws, True, [s.name for s in graph.sets])
    outs = []
    for s in graph.sets:
        if s.name in new:
            outs.append(new[s.name])
        else:
            outs.append(em.call(torch.zeros_like, (states[s.name],), s, f"{graph.name}.{s.name}.hold"))
    em.graph.output(em.call(cat_channels, tuple(outs), graph, f"{graph.name}.derivative"))
    em.graph.lint()
    gm = fx.GraphModule(root, em.graph, class_name="Derivative")
    setattr(gm, safe(graph.name), parts)
    return gm


def _pack(*xs):
    return xs


fx.wrap("_pack")
