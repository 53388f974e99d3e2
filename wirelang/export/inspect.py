"""`wirelang inspect RUN`: what the training learned, counted the way the paper counts it.

Per graph: active edges (exactly the budget), edges per (source set -> target set), in- and
out-degree per set, dead nodes (no outgoing edge: the paper removes them), nodes that receive
no edge, and the effective parameters and multiply-adds of the live nodes only:
    params = edges + operator parameters of every live node
    MACs   = edges x H x W + operator multiply-adds of every live node (9 x H x W for a 3x3 conv)
Output nodes are always live (the head reads them); discrete time counts every step, continuous
time one function evaluation. Sparse layers count their active weights; other layers as
`wirelang compile` does. The edge churn (edges swapped per epoch) comes from metrics.jsonl.
"""

from __future__ import annotations

from typing import Any

from wirelang import cost
from wirelang.export.nodes import NodeGraph, node_graph
from wirelang.ir import core
from wirelang.ops import sparse_candidates
from wirelang.runs.load import Run


def _summary(values) -> dict[str, float]:
    v = values.float()
    if v.numel() == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(v.min()), "mean": round(float(v.mean()), 3), "max": int(v.max())}


def graph_report(model, g: core.Graph, pools: dict[str, core.Pool]) -> dict[str, Any]:
    ng = node_graph(model, g)
    mask = model.graph_parts(g.name).wiring.mask
    ins, outs = ng.in_degree(), ng.out_degree()
    targets = {b.target for b in g.blocks}
    blocks = ng.block_counts()
    sets, live_params, live_macs, dead_total, no_input_total = [], 0, 0, 0, 0
    for s in g.sets:
        sl = ng.set_slice(s.name)
        dead = 0 if s.role == "output" else int((outs[sl] == 0).sum())
        no_input = int((ins[sl] == 0).sum()) if s.name in targets else 0
        live = s.size - dead
        c = cost.set_cost(s)  # per-channel operators: their cost is linear in the nodes
        live_params += c.params * live // s.size
        live_macs += c.macs * live // s.size
        dead_total += dead
        no_input_total += no_input
        sets.append(
            {
                "name": s.name,
                "size": s.size,
                "role": s.role,
                "live": live,
                "dead": dead,
                "no_input": no_input,
                "in_degree": _summary(ins[sl]) if s.name in targets else None,
                "out_degree": _summary(outs[sl]),
            }
        )
    edges = int(ng.src.numel())
    edge_macs = cost.edge_macs(g, {k: float(v) for k, v in blocks.items()})
    macs = round(edge_macs) + live_macs
    steps = g.semantics.steps if g.semantics.kind != "continuous" else 1  # per evaluation
    budget = mask.pool.k if mask.pool is not None else mask.k
    at_budget = cost.graph_cost(g, pools).rounded()
    return {
        "name": g.name,
        "semantics": g.semantics.kind,
        "wiring": g.wiring.method,
        "nodes": g.size,
        "candidates": g.candidates,
        "budget": budget,
        "pool": mask.pool.name if mask.pool is not None else None,
        "active_edges": edges,
        # a pooled member holds its share of the pool; the pool as a whole holds k
        "budget_met": edges == budget if mask.pool is None else None,
        "blocks": [
            {
                "source": b.source,
                "target": b.target,
                "candidates": b.candidates,
                "active": blocks[(b.source, b.target)],
            }
            for b in g.blocks
        ],
        "sets": sets,
        "dead_nodes": dead_total,
        "no_input_nodes": no_input_total,
        "live_nodes": g.size - dead_total,
        "params": edges + live_params,
        "macs": macs * steps,
        "at_budget": {"params": at_budget.params, "macs": at_budget.macs},
    }


def sparse_report(model, layer: core.Layer) -> dict[str, Any]:
    mask = model.masks()[layer.path]
    active = int(sum(int(m.sum()) for m in mask.active()))
    cand = sparse_candidates(layer)
    dense = cost.layer_cost(layer.model_copy(update={"sparse": None}))
    return {
        "path": layer.path,
        "op": layer.op,
        "candidates": cand,
        "active": active,
        "density": round(active / cand, 4),
        "wiring": mask.method,
        "budget": mask.pool.k if mask.pool is not None else mask.k,
        "pool": mask.pool.name if mask.pool is not None else None,
        "params": dense.params - (cand - active),
        "macs": dense.macs * active // cand,
    }


def churn(metrics: list[dict]) -> dict[str, list[int]]:
    """Edges swapped per epoch for every wiring: `edges_swapped` is {wiring: n} (or one n)."""
    out: dict[str, list[int]] = {}
    for row in metrics:
        swapped = row.get("edges_swapped")
        if swapped is None:
            continue
        for name, n in swapped.items() if isinstance(swapped, dict) else [("total", swapped)]:
            out.setdefault(name, []).append(int(n))
    return out


def inspect_run(run: Run) -> dict[str, Any]:
    """The whole report as plain data (what `wirelang inspect --json` prints)."""
    net, model = run.net, run.model
    pools = {p.name: p for p in net.pools}
    graphs = [graph_report(model, g, pools) for g in net.graphs()]
    sparse = [sparse_report(model, layer) for layer in net.layers() if layer.sparse is not None]
    by_path = {s["path"]: s for s in sparse}
    params, macs = 0, 0
    for g in graphs:
        params, macs = params + g["params"], macs + g["macs"]
    for layer in net.layers():
        c = cost.layer_cost(layer) if layer.path not in by_path else None
        params += c.params if c else by_path[layer.path]["params"]
        macs += c.macs if c else by_path[layer.path]["macs"]
    # a pool holds k edges over all its members together (ranked jointly, or each its own k)
    active = {g["name"]: g["active_edges"] for g in graphs} | {
        x["path"]: x["active"] for x in sparse
    }
    pool_rows = [
        {
            "name": p.name,
            "budget": p.budget.k,
            "active": sum(active[m] for m in p.members),
            "members": p.members,
            "allocate": p.allocate,
        }
        for p in net.pools
    ]
    for row in pool_rows:
        row["budget_met"] = row["active"] == row["budget"]
    at_budget = cost.network_cost(net)
    notes = []
    if any(g["semantics"] == "continuous" for g in graphs):
        notes.append(
            "continuous time: a graph's multiply-adds are per function evaluation of the ODE"
        )
    if any(g["semantics"] == "discrete" for g in graphs):
        notes.append("discrete time: a graph's multiply-adds include every step")
    return {
        "network": net.name,
        "run": run.label,
        "params": params,
        "macs": macs,
        "at_budget": {"params": at_budget.params, "macs": at_budget.macs},
        "graphs": graphs,
        "sparse_layers": sparse,
        "pools": pool_rows,
        "churn": churn(run.metrics),
        "epochs": len(run.metrics),
        "notes": notes,
    }


def _degree(d: dict | None) -> str:
    return "-" if d is None else f"{d['min']}/{d['mean']:.1f}/{d['max']}"


def _series(values: list[int], keep: int = 6) -> str:
    if len(values) <= 2 * keep:
        return ", ".join(f"{v:,}" for v in values)
    return (
        ", ".join(f"{v:,}" for v in values[:keep])
        + ", ..., "
        + ", ".join(f"{v:,}" for v in values[-keep:])
    )


def print_report(info: dict[str, Any], console=None) -> None:
    from rich.table import Table

    from wirelang.report import human, plain_console

    console = console or plain_console()
    console.print(
        f"[bold]{info['network']}[/bold] ({info['run']}): {human(info['params'])} effective parameters, "
        f"{human(info['macs'])} multiply-adds (at the budget: {human(info['at_budget']['params'])}, "
        f"{human(info['at_budget']['macs'])})"
    )
    for g in info["graphs"]:
        ok = {
            True: f"= budget {g['budget']:,}",
            False: f"[red]!= budget {g['budget']:,}[/red]",
            None: f"(drawn from pool {g['pool']} of {g['budget']:,})",
        }[g["budget_met"]]
        console.print(
            f"\n[bold]graph {g['name']}[/bold] ({g['semantics']}, {g['wiring']}): {g['active_edges']:,} active edges "
            f"{ok}, of {g['candidates']:,} candidates; {g['live_nodes']} of {g['nodes']} nodes live, "
            f"{g['dead_nodes']} dead (no outgoing edge), {g['no_input_nodes']} with no input; "
            f"{human(g['params'])} parameters, {human(g['macs'])} multiply-adds"
        )
        table = Table(
            "set",
            "role",
            "nodes",
            "live",
            "dead",
            "no input",
            "in-degree min/mean/max",
            "out-degree min/mean/max",
        )
        for s in g["sets"]:
            table.add_row(
                s["name"],
                s["role"],
                str(s["size"]),
                str(s["live"]),
                str(s["dead"]),
                str(s["no_input"]),
                _degree(s["in_degree"]),
                _degree(s["out_degree"]),
            )
        console.print(table)
        table = Table("source -> target", "active", "candidates", "density")
        for b in g["blocks"]:
            table.add_row(
                f"{b['source']} -> {b['target']}",
                f"{b['active']:,}",
                f"{b['candidates']:,}",
                f"{b['active'] / b['candidates']:.1%}" if b["candidates"] else "-",
            )
        console.print(table)
    if info["sparse_layers"]:
        table = Table("sparse layer", "op", "active", "weights", "density", "wiring")
        for s in info["sparse_layers"]:
            table.add_row(
                s["path"],
                s["op"],
                f"{s['active']:,}",
                f"{s['candidates']:,}",
                f"{s['density']:.1%}",
                s["wiring"],
            )
        console.print(table)
    for p in info["pools"]:
        ok = "=" if p["budget_met"] else "[red]!=[/red]"
        console.print(
            f"pool {p['name']}: {p['active']:,} active {ok} budget {p['budget']:,} over {len(p['members'])} members"
        )
    if info["churn"]:
        console.print(f"\nedges swapped per epoch ({info['epochs']} epochs):")
        for name, values in info["churn"].items():
            console.print(f"  {name}: {_series(values)}")
    for note in info["notes"]:
        console.print(f"[dim]note: {note}[/dim]")


__all__ = ["NodeGraph", "churn", "graph_report", "inspect_run", "print_report"]
