"""Sparse layers of ordinary networks: apply the `sparse { ... }` block and resolve budgets.

  sparse {
    layers conv, linear      # which weighted layers (default: conv and linear)
    exclude stem.0           # layer paths kept dense (e.g. the first convolution)
    budget 10%               # per layer; or `budget pooled NAME` for one budget over all
    wiring dnw
  }

A layer's own `sparse=` argument (`linear(1000, sparse=15%)`) takes precedence.
"""

from __future__ import annotations

from wirelang import methods
from wirelang.diagnostics import Reporter, did_you_mean
from wirelang.ir import core
from wirelang.ops import sparse_candidates
from wirelang.passes.check import resolve_k
from wirelang.passes.evaluate import Scope
from wirelang.passes.items import budget_value, wiring_from
from wirelang.syntax import ast

SPARSE_KINDS = ("conv", "dwconv", "linear")


def apply_sparse(
    net: core.Network, decls: list[ast.SparseDecl], scope: Scope | None, rep: Reporter
) -> core.Network:
    if len(decls) > 1:
        rep.error(
            decls[1].span,
            "a network has one `sparse` block",
            related=[(decls[0].span, "the first one")],
        )
    rule = _rule(decls[0], scope or Scope({}), net, rep) if decls else None
    items = []
    for item in net.items:
        if isinstance(item, core.Layer):
            item = _layer(item, rule, rep)
        elif isinstance(item, core.Residual):
            item = item.model_copy(
                update={
                    part: [_layer(x, rule, rep) for x in getattr(item, part)]
                    for part in ("branch", "shortcut", "after")
                }
            )
        items.append(item)
    return net.model_copy(update={"items": items})


def _rule(decl: ast.SparseDecl, scope: Scope, net: core.Network, rep: Reporter):
    kinds: list[str] = ["conv", "linear"]
    exclude: set[str] = set()
    budget = None
    wiring = methods.new_wiring(methods.DEFAULT_WIRING, decl.span)
    paths = {layer.path for layer in net.layers()}
    for entry in decl.body:
        if isinstance(entry, ast.SparseKinds):
            for k in entry.kinds:
                if k not in SPARSE_KINDS:
                    rep.error(
                        entry.span,
                        f"`{k}` has no weight to make sparse",
                        did_you_mean(k, SPARSE_KINDS),
                    )
            kinds = [k for k in entry.kinds if k in SPARSE_KINDS]
        elif isinstance(entry, ast.SparseExclude):
            spans = entry.path_spans or [entry.span] * len(entry.paths)
            for p, where in zip(entry.paths, spans, strict=True):
                if p not in paths:
                    rep.error(
                        where,
                        f"no layer at path `{p}`",
                        did_you_mean(p, paths) or "`wirelang compile` lists the layer paths",
                    )
            exclude |= set(entry.paths)
        elif isinstance(entry, ast.BudgetStmt):
            budget = budget_value(entry.value, scope, rep)
        elif isinstance(entry, ast.WiringStmt):
            wiring = wiring_from(entry, scope, rep) or wiring
            if methods.WIRINGS[wiring.method].edges_listed:
                rep.error(
                    entry.span,
                    "`wiring fixed` lists graph edges; sparse layers take `dnw`, `random`, ... instead",
                )
    if budget is None:
        rep.error(
            decl.span,
            "the `sparse` block has no `budget`",
            "add `budget 10%` (per layer) or `budget pooled NAME`",
        )
        return None
    return kinds, exclude, budget, wiring


def _layer(layer: core.Layer, rule, rep: Reporter) -> core.Layer:
    sparse = layer.sparse
    if sparse is None and rule is not None:
        kinds, exclude, budget, wiring = rule
        if layer.op in kinds and layer.path not in exclude:
            sparse = core.SparseSpec(span=budget.span, budget=budget, wiring=wiring)
    elif sparse is not None and rule is not None:
        sparse = sparse.model_copy(update={"wiring": rule[3]})
    if sparse is None:
        return layer
    cand = sparse_candidates(layer)
    if cand == 0:
        return layer.model_copy(update={"sparse": sparse})
    budget = resolve_k(sparse.budget, cand, f"layer `{layer.path}`", rep)
    if budget is None:
        return layer
    return layer.model_copy(update={"sparse": sparse.model_copy(update={"budget": budget})})
