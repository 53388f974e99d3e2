"""A slow, obviously correct evaluator of one graph, node by node, following PAPER.md.

Used only by the tests, to check the fast lowering (`lower.py`) against the paper's equations:

  static      Z_u = f_u(g(x)_u) for input nodes;  Z_u = f_u(sum_q w_qu * s_q(Z_q)) otherwise
  discrete    Z_u(0) = g(x)_u at input nodes, 0 elsewhere;
              Z_u(t) = f_u(sum_q w_qu * s_q(Z_q(t-1))),  t = 1..T
  continuous  dZ_u/dt = f_u(sum_q w_qu * s_q(Z_q(t))) on [0, T]

s_q is the source's `send` operator (identity unless the spec gives one). A node whose set
receives no candidate edges keeps its state in the dynamic settings. Sums run over active
edges only, one scalar weight at a time; operators are applied to one channel at a time with
the set modules' own parameters. The straight-through rule is written out independently:
w * m + (w - w.detach()) * (1 - m) has the value w * m and the gradient of w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wirelang.backend.lower import safe
from wirelang.ir import core


def apply_to_node(module: nn.Module, z: Tensor, j: int) -> Tensor:
    """Apply a set's operator (over all its channels) to node j's single channel z (N,1,H,W)."""
    mods = list(module) if isinstance(module, nn.Sequential) else [module]
    for m in mods:
        if isinstance(m, nn.BatchNorm2d):
            w = m.weight[j : j + 1] if m.affine else None
            b = m.bias[j : j + 1] if m.affine else None
            if m.training or m.running_mean is None:
                z = F.batch_norm(z, None, None, w, b, training=True, eps=m.eps)
            else:
                z = F.batch_norm(
                    z,
                    m.running_mean[j : j + 1],
                    m.running_var[j : j + 1],
                    w,
                    b,
                    training=False,
                    eps=m.eps,
                )
        elif isinstance(m, nn.InstanceNorm2d):
            z = F.instance_norm(
                z,
                weight=m.weight[j : j + 1] if m.affine else None,
                bias=m.bias[j : j + 1] if m.affine else None,
                eps=m.eps,
            )
        elif isinstance(m, nn.Conv2d):
            assert m.groups == m.in_channels == m.out_channels, "node operators are per channel"
            z = F.conv2d(
                z,
                m.weight[j : j + 1],
                m.bias[j : j + 1] if m.bias is not None else None,
                m.stride,
                m.padding,
            )
        else:
            z = m(z)
    return z


def _edge_weights(parts, graph: core.Graph) -> dict[tuple[str, int], list[tuple[str, int, Tensor]]]:
    """For every target node, its active incoming edges (source set, index, effective weight)."""
    wiring = parts.wiring
    mask = wiring.mask
    straight_through = mask.straight_through
    sizes = {s.name: s.size for s in graph.sets}
    active = mask.active()
    cands = mask.candidate_masks()
    incoming: dict[tuple[str, int], list] = {}
    for i, (target, srcs) in enumerate(zip(wiring.targets, wiring.sources, strict=True)):
        w = getattr(wiring, f"w_{i}")
        m = active[i].to(w.dtype)
        eff = w * m + ((w - w.detach()) * (1 - m) if straight_through else 0)
        cols = [(s, q) for s in srcs for q in range(sizes[s])]
        # every candidate takes part: inactive ones add 0 but, under the straight-through rule,
        # still receive the gradient they would have if they were present
        cand = cands[i] if cands[i] is not None else torch.ones_like(active[i])
        keep = cand if straight_through else active[i]
        for u in range(sizes[target]):
            incoming[(target, u)] = [
                (s, q, eff[u, c]) for c, (s, q) in enumerate(cols) if bool(keep[u, c])
            ]
    return incoming


def _sent(
    parts, graph: core.Graph, states: dict[tuple[str, int], Tensor]
) -> dict[tuple[str, int], Tensor]:
    out = {}
    for s in graph.sets:
        for q in range(s.size):
            z = states[(s.name, q)]
            out[(s.name, q)] = apply_to_node(parts.send[safe(s.name)], z, q) if s.send else z
    return out


def _update(
    parts, graph: core.Graph, incoming, sources: dict, node: tuple[str, int], like: Tensor
) -> Tensor:
    total = torch.zeros_like(like)  # a node whose candidates all lie outside the top k gets f(0)
    for s, q, w in incoming[node]:
        total = total + w * sources[(s, q)]
    return apply_to_node(parts.ops[safe(node[0])], total, node[1])


def evaluate_graph(
    parts, graph: core.Graph, x: Tensor, solver_options: dict | None = None
) -> Tensor:
    """The graph's output (output sets' states concatenated) for the graph's input x."""
    from wirelang.passes.shapes import topo_order

    incoming = _edge_weights(parts, graph)
    states: dict[tuple[str, int], Tensor] = {}
    start = 0
    dynamic = graph.semantics.kind != "static"
    n, _, h, w = x.shape
    for s in graph.sets:
        for q in range(s.size):
            if s.role == "input":
                z = x[:, start + q : start + q + 1]
                states[(s.name, q)] = z if dynamic else apply_to_node(parts.ops[safe(s.name)], z, q)
            else:
                states[(s.name, q)] = x.new_zeros(n, 1, h, w)
        if s.role == "input":
            start += s.size
    receivers = [(s.name, u) for s in graph.sets for u in range(s.size) if (s.name, u) in incoming]
    if graph.semantics.kind == "static":
        for name in topo_order(graph):
            ns = graph.set(name)
            if ns.role == "input":
                continue
            sent = _sent(parts, graph, states)
            zeros = x.new_zeros(n, 1, *ns.in_hw)
            for u in range(ns.size):
                states[(name, u)] = _update(parts, graph, incoming, sent, (name, u), zeros)
    elif graph.semantics.kind == "discrete":
        for _ in range(graph.semantics.steps):
            sent = _sent(parts, graph, states)
            new = {
                node: _update(parts, graph, incoming, sent, node, states[node])
                for node in receivers
            }
            states.update(new)
    else:
        states = _continuous(parts, graph, incoming, states, receivers, solver_options)
    outs = [states[(s.name, u)] for s in graph.sets if s.role == "output" for u in range(s.size)]
    return torch.cat(outs, dim=1)


def _continuous(parts, graph, incoming, states, receivers, solver_options):
    from torchdiffeq import odeint

    keys = list(states)
    sem = graph.semantics

    def derivative(t, z):
        current = {k: z[:, i : i + 1] for i, k in enumerate(keys)}
        sent = _sent(parts, graph, current)
        return torch.cat(
            [
                _update(parts, graph, incoming, sent, k, current[k])
                if k in incoming
                else torch.zeros_like(current[k])
                for k in keys
            ],
            dim=1,
        )

    z0 = torch.cat([states[k] for k in keys], dim=1)
    t = torch.tensor([0.0, sem.time])
    options = {"step_size": sem.step_size} if sem.step_size else None
    zt = odeint(
        derivative, z0, t, rtol=sem.rtol, atol=sem.atol, method=sem.solver, options=options
    )[-1]
    return {k: zt[:, i : i + 1] for i, k in enumerate(keys)}
