"""Infer the shape of every layer, node set and graph, from the network's input onwards.

Rules: all sets feeding one set must give maps of the same spatial size (the error names the
edges that break it); a graph's input sets together take exactly the incoming channels; its
output is the output sets' channels concatenated; in discrete and continuous time no set may
change the spatial size (states are added to themselves over time).
"""

from __future__ import annotations

from wirelang.diagnostics import Reporter
from wirelang.ir import core
from wirelang.ops import OpError, get_op


def infer_shapes(net: core.Network, rep: Reporter) -> core.Network:
    shape: core.Shape | None = net.input
    items = []
    for item in net.items:
        if shape is None:  # an earlier error: later shapes would only add noise
            items.append(item)
            continue
        if isinstance(item, core.Layer):
            item, shape = _layer(item, shape, rep)
        elif isinstance(item, core.Residual):
            item, shape = _residual(item, shape, rep)
        else:
            item, shape = _graph(item, shape, rep)
        items.append(item)
    if shape is not None and (shape.channels, shape.height, shape.width) != (net.classes, 1, 1):
        last = next((i for i in reversed(net.items)), None)
        span = last.span if last is not None else net.span
        rep.error(
            span,
            f"the network ends with {shape} but must end with {net.classes} class scores ({net.classes}x1x1)",
            f"end the head with `avgpool, linear({net.classes})` or `linear(classes)`",
        )
    return net.model_copy(update={"items": items})


def run_layers(
    layers: list[core.Layer], shape: core.Shape | None, rep: Reporter
) -> tuple[list[core.Layer], core.Shape | None]:
    out = []
    for layer in layers:
        if shape is None:
            out.append(layer)
            continue
        layer, shape = _layer(layer, shape, rep)
        out.append(layer)
    return out, shape


def _layer(
    layer: core.Layer, shape: core.Shape, rep: Reporter
) -> tuple[core.Layer, core.Shape | None]:
    try:
        out = get_op(layer.op).shape(layer.params, shape)
    except OpError as err:
        rep.error(layer.span, f"`{layer.op}` at {layer.path} cannot take its {shape} input: {err}")
        return layer, None
    return layer.model_copy(update={"in_shape": shape, "out_shape": out}), out


def _residual(
    res: core.Residual, shape: core.Shape, rep: Reporter
) -> tuple[core.Residual, core.Shape | None]:
    branch, b = run_layers(res.branch, shape, rep)
    shortcut, s = run_layers(res.shortcut, shape, rep) if res.shortcut else ([], shape)
    if b is not None and s is not None and b != s:
        rep.error(
            res.span,
            f"residual `{res.name}`: the branch gives {b} but the shortcut gives {s}",
            "add a `shortcut { conv(...), batchnorm }` that matches the branch's channels and stride",
        )
        b = None
    after, out = run_layers(res.after, b, rep)
    return res.model_copy(
        update={
            "branch": branch,
            "shortcut": shortcut,
            "after": after,
            "in_shape": shape,
            "out_shape": out,
        }
    ), out


def _set_out(
    ns: core.NodeSet, hw: tuple[int, int], rep: Reporter, dynamic: bool, graph: str
) -> tuple[core.NodeSet, tuple[int, int] | None]:
    shape: core.Shape | None = core.Shape(channels=ns.size, height=hw[0], width=hw[1])
    send_in = shape
    op, shape = run_layers(ns.op, shape, rep)
    send, _ = run_layers(ns.send, shape, rep)
    if shape is None:
        return ns, None
    out_hw = (shape.height, shape.width)
    if dynamic and out_hw != hw:
        rep.error(
            ns.span,
            f"set `{ns.name}` of graph `{graph}` changes its maps from {hw[0]}x{hw[1]} to {out_hw[0]}x{out_hw[1]}, "
            "which discrete and continuous time do not allow",
            "drop the stride from the node operator",
        )
        return ns, None
    del send_in
    return ns.model_copy(update={"op": op, "send": send, "in_hw": hw, "out_hw": out_hw}), out_hw


def topo_order(graph: core.Graph) -> list[str] | None:
    """Sets in an order where every block's source comes before its target; None if cyclic."""
    preds: dict[str, list[str]] = {s.name: [] for s in graph.sets}
    for b in graph.blocks:
        preds[b.target].append(b.source)
    order: list[str] = []
    state: dict[str, int] = {}
    for start in preds:
        stack = [(start, iter(preds[start]))]
        if state.get(start):
            continue
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                order.append(node)
            elif state.get(nxt) == 1:
                return None
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(preds[nxt])))
    return order


def _graph(
    graph: core.Graph, shape: core.Shape, rep: Reporter
) -> tuple[core.Graph, core.Shape | None]:
    inputs = [s for s in graph.sets if s.role == "input"]
    n_in = sum(s.size for s in inputs)
    if inputs and n_in != shape.channels:
        rep.error(
            inputs[0].span,
            f"graph `{graph.name}` has {n_in} input nodes but receives {shape.channels} channels",
            f"make the input sets hold {shape.channels} nodes in total, or change the layer before the graph",
        )
        return graph, None
    hw = (shape.height, shape.width)
    dynamic = graph.semantics.kind != "static"
    done: dict[str, core.NodeSet] = {}
    if dynamic:
        order = [s.name for s in graph.sets]
    else:
        order = topo_order(graph)
        if order is None:
            return graph, None  # the graph check reports the cycle
    by_name = {s.name: s for s in graph.sets}
    ok = True
    for name in order:
        ns = by_name[name]
        if ns.role == "input" or dynamic:
            in_hw = hw
        else:
            incoming = [
                b
                for b in graph.blocks
                if b.target == name and b.source in done and done[b.source].out_hw is not None
            ]
            sizes = {done[b.source].out_hw for b in incoming}
            if len(sizes) > 1:
                first = incoming[0]
                odd = next(
                    b for b in incoming if done[b.source].out_hw != done[first.source].out_hw
                )
                a, b_ = done[first.source].out_hw, done[odd.source].out_hw
                rep.error(
                    odd.span,
                    f"edges into `{name}` come from maps of different sizes: `{first.source}` gives {a[0]}x{a[1]}, "
                    f"`{odd.source}` gives {b_[0]}x{b_[1]}",
                    "all sets feeding one set must share its spatial size",
                    related=[(first.span, f"edges from `{first.source}` declared here")]
                    if first.span != odd.span
                    else [],
                )
                ok = False
                continue
            in_hw = sizes.pop() if sizes else hw
        new, out_hw = _set_out(ns, in_hw, rep, dynamic, graph.name)
        done[name] = new
        ok &= out_hw is not None
    if not ok:
        return graph, None
    sets = [done[s.name] for s in graph.sets]
    outputs = [s for s in sets if s.role == "output"]
    if not outputs:
        return graph.model_copy(update={"sets": sets}), None  # reported by the graph check
    sizes = {s.out_hw for s in outputs}
    if len(sizes) > 1:
        rep.error(
            outputs[-1].span,
            f"the output sets of graph `{graph.name}` have different map sizes",
            "output sets are concatenated",
        )
        return graph, None
    h, w = sizes.pop()
    out = core.Shape(channels=sum(s.size for s in outputs), height=h, width=w)
    return graph.model_copy(update={"sets": sets, "in_shape": shape, "out_shape": out}), out
