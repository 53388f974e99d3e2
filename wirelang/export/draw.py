"""`wirelang draw SPEC|RUN --out FILE.png|svg`: a picture of a wiring, readable at any size.

One row per graph, three panels:
- the wiring: node sets as columns of nodes, edges as lines shaded by |w| (a run) or the
  candidate blocks as bands (a spec). Discrete and continuous graphs are drawn as one step,
  sources at t on the left, targets at t+1 on the right, so that cycles and self loops read
  as ordinary edges. Above `MAX_LINES` edges, lines become one band per set pair whose width
  is the number of edges: tens of thousands of lines would only paint the panel black;
- a heat map of edge counts per (source set, target set): active edges, or candidates and the
  share of the budget they would get at random;
- the node-level adjacency matrix (targets x sources): |w| of active edges, or the candidate
  pattern; graphs over `MAX_PIXELS` nodes are reduced by taking the maximum over blocks.
Networks with sparse layers get a last row: the fraction of each layer's weights kept.
matplotlib (Agg) is imported only here, when a picture is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wirelang.ir import core

MAX_LINES = 4000
MAX_PIXELS = 1024


class DrawError(ValueError):
    pass


def _layout(g: core.Graph, dynamic: bool) -> tuple[dict[str, float], dict[str, float], float]:
    """x of every set as a source and as a target, and the largest set (for node heights)."""
    names = [s.name for s in g.sets]
    if dynamic:
        src = {n: 0.0 for n in names}
        dst = {n: 1.0 for n in names}
    else:
        src = {n: i / max(1, len(names) - 1) for i, n in enumerate(names)}
        dst = src
    return src, dst, float(max(s.size for s in g.sets))


def _node_y(g: core.Graph, tallest: float, dynamic: bool) -> np.ndarray:
    """y of every node: sets stacked (dynamic: one column) or centred in their own column."""
    ys = []
    total = float(g.size)
    start = 0
    for s in g.sets:
        i = np.arange(s.size, dtype=float)
        ys.append(
            1 - (start + i + 0.5) / total if dynamic else 0.5 + (s.size / 2 - i - 0.5) / tallest
        )
        start += s.size
    return np.concatenate(ys)


def _node_x(g: core.Graph, xs: dict[str, float]) -> np.ndarray:
    return np.concatenate([np.full(s.size, xs[s.name]) for s in g.sets])


def _wiring_panel(ax, g: core.Graph, blocks: dict[tuple[str, str], int], edges, title: str) -> None:
    from matplotlib.collections import LineCollection

    dynamic = g.semantics.kind != "static"
    sx, tx, tallest = _layout(g, dynamic)
    y = _node_y(g, tallest, dynamic)
    if edges is not None and len(edges[0]) <= MAX_LINES:
        src, dst, w = edges
        xs_src, xs_dst = _node_x(g, sx), _node_x(g, tx)
        segments = np.stack(
            [np.stack([xs_src[src], y[src]], 1), np.stack([xs_dst[dst], y[dst]], 1)], 1
        )
        mag = np.abs(w) / (np.abs(w).max() or 1.0)
        order = np.argsort(mag)  # strong edges drawn last, on top
        colors = np.zeros((len(w), 4))
        colors[:, 2] = 0.55
        colors[:, 3] = 0.08 + 0.85 * mag
        ax.add_collection(LineCollection(segments[order], colors=colors[order], linewidths=0.6))
    else:
        _bands(ax, g, blocks, sx, tx, y, dynamic)
    columns = [("t", sx), ("t+1", tx)] if dynamic else [("", sx)]
    for label, xs in columns:
        ax.scatter(
            _node_x(g, xs), y, s=min(6.0, 2000 / g.size), color="black", zorder=3, linewidths=0
        )
        for s in g.sets:
            ys = y[_start(g, s.name) : _start(g, s.name) + s.size]
            side = 0.0 if not dynamic else (-0.03 if xs[s.name] == 0 else 0.03)
            ax.text(
                xs[s.name] + side,
                (ys.max() + 0.02) if not dynamic else ys.mean(),
                f"{s.name} [{s.size}]",
                ha="center" if not dynamic else ("right" if xs[s.name] == 0 else "left"),
                va="bottom" if not dynamic else "center",
                fontsize=8,
                color="dimgray",
            )
        if label:
            ax.text(xs[g.sets[0].name], -0.04, label, ha="center", fontsize=9)
    ax.set_xlim(-0.3 if dynamic else -0.08, 1.3 if dynamic else 1.08)
    ax.set_ylim(-0.08, 1.08)
    ax.axis("off")
    ax.set_title(title, fontsize=10)


def _bands(
    ax, g: core.Graph, blocks: dict[tuple[str, str], int], sx, tx, y: np.ndarray, dynamic: bool
) -> None:
    """One band per set pair, its width the number of edges. In a static graph a band that
    skips sets is an arc (above the columns from even sets, below from odd ones), so bands
    between different pairs do not lie on top of each other."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    biggest = max(blocks.values(), default=0) or 1
    names = [s.name for s in g.sets]
    centre = {
        s.name: float(y[_start(g, s.name) : _start(g, s.name) + s.size].mean()) for s in g.sets
    }
    for (a, b), n in blocks.items():
        if not n:
            continue
        start, end = (sx[a], centre[a]), (tx[b], centre[b])
        span = names.index(b) - names.index(a)
        lift = 0.0 if dynamic or abs(span) <= 1 else 0.5 * (abs(span) - 1) / max(1, len(names) - 2)
        lift *= 1 if names.index(a) % 2 == 0 else -1
        mid = (
            (start[0] + end[0]) / 2,
            (start[1] + end[1]) / 2 + 2 * lift,
        )  # a quadratic Bezier peaks at half its lift
        path = MPath([start, mid, end], [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3])
        ax.add_patch(
            PathPatch(
                path,
                facecolor="none",
                edgecolor=(0.0, 0.0, 0.55, 0.3),
                linewidth=0.5 + 10 * n / biggest,
                capstyle="round",
            )
        )


def _start(g: core.Graph, name: str) -> int:
    start = 0
    for s in g.sets:
        if s.name == name:
            return start
        start += s.size
    raise KeyError(name)


def _heat_panel(ax, g: core.Graph, counts: dict[tuple[str, str], int], title: str) -> None:
    names = [s.name for s in g.sets]
    grid = np.full((len(names), len(names)), np.nan)
    for (a, b), n in counts.items():
        grid[names.index(b), names.index(a)] = n
    image = ax.imshow(grid, cmap="Blues", vmin=0)
    for (a, b), n in counts.items():
        value = grid[names.index(b), names.index(a)]
        light = value > 0.6 * np.nanmax(grid)
        ax.text(
            names.index(a),
            names.index(b),
            f"{n:,}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if light else "black",
        )
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("source set")
    ax.set_ylabel("target set")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _reduce(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """Max over f x f blocks so that neither side exceeds MAX_PIXELS; returns (image, f)."""
    f = int(np.ceil(max(matrix.shape) / MAX_PIXELS))
    if f <= 1:
        return matrix, 1
    h, w = (-(-matrix.shape[0] // f)) * f, (-(-matrix.shape[1] // f)) * f
    padded = np.zeros((h, w), dtype=matrix.dtype)
    padded[: matrix.shape[0], : matrix.shape[1]] = matrix
    return padded.reshape(h // f, f, w // f, f).max(axis=(1, 3)), f


def _adjacency_panel(ax, g: core.Graph, matrix: np.ndarray, title: str, cmap: str) -> None:
    image, f = _reduce(matrix)
    shown = ax.imshow(image, cmap=cmap, interpolation="nearest", aspect="auto", vmin=0)
    bounds = np.cumsum([s.size for s in g.sets])[:-1] / f - 0.5
    for b in bounds:
        ax.axhline(b, color="lightgray", linewidth=0.5)
        ax.axvline(b, color="lightgray", linewidth=0.5)
    centres = (
        np.cumsum([s.size for s in g.sets]) - np.array([s.size for s in g.sets]) / 2
    ) / f - 0.5
    ax.set_xticks(centres, [s.name for s in g.sets], rotation=90, fontsize=8)
    ax.set_yticks(centres, [s.name for s in g.sets], fontsize=8)
    ax.set_xlabel("source node" + (f" ({f} x {f} nodes per pixel, max)" if f > 1 else ""))
    ax.set_ylabel("target node")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)


def candidate_matrix(g: core.Graph) -> np.ndarray:
    m = np.zeros((g.size, g.size), dtype=np.float32)
    for b in g.blocks:
        s, t = _start(g, b.source), _start(g, b.target)
        m[t : t + g.set(b.target).size, s : s + g.set(b.source).size] = 1
        if b.source == b.target and not b.self_loops:
            np.fill_diagonal(m[t : t + g.set(b.target).size, s : s + g.set(b.source).size], 0)
    return m


def _sparse_panel(ax, rows: list[tuple[str, float]], title: str) -> None:
    ax.bar(range(len(rows)), [d for _, d in rows], color=(0.0, 0.0, 0.55, 0.6))
    ax.set_xticks(
        range(len(rows)), [p for p, _ in rows], rotation=90, fontsize=6 if len(rows) > 30 else 8
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of weights kept")
    ax.set_title(title, fontsize=10)


def draw(net: core.Network, out: Path, model=None, label: str = "") -> Path:
    """Draw `net` (a spec) or, with `model`, its learned wiring; write PNG or SVG by suffix."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise DrawError(f"cannot draw to {out.name}: the file must end in .png or .svg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graphs = net.graphs()
    sparse = [x for x in net.layers() if x.sparse is not None]
    rows = len(graphs) + (1 if sparse else 0)
    if rows == 0:
        raise DrawError(
            f"network `{net.name}` has no graph and no sparse layer: there is no wiring to draw"
        )
    fig = plt.figure(figsize=(19, 5.8 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 3, width_ratios=[1.2, 1, 1])
    what = f"learned wiring ({label})" if model is not None else "candidate wiring"
    fig.suptitle(f"{net.name}: {what}", fontsize=13)
    for r, g in enumerate(graphs):
        axes = [fig.add_subplot(grid[r, c]) for c in range(3)]
        if model is not None:
            _draw_learned(axes, g, model)
        else:
            _draw_candidates(axes, g)
    if sparse:
        ax = fig.add_subplot(grid[-1, :])
        if model is not None:
            masks = model.masks()
            kept = [
                (x.path, float(sum(int(m.sum()) for m in masks[x.path].active())) / _weights(x))
                for x in sparse
            ]
            _sparse_panel(ax, kept, "sparse layers: weights kept")
        else:
            kept = [(x.path, _own_k(x.sparse.budget) / _weights(x)) for x in sparse]
            _sparse_panel(ax, kept, "sparse layers: budget (pooled budgets shown as 0)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _weights(layer: core.Layer) -> int:
    from wirelang.ops import sparse_candidates

    return max(1, sparse_candidates(layer))


def _own_k(budget: core.Budget) -> int:
    """The budget's resolved k; 0 for a pool member (its k is the pool's)."""
    return 0 if isinstance(budget, core.PooledBudget) else budget.k or 0


def _draw_candidates(axes, g: core.Graph) -> None:
    counts = {(b.source, b.target): b.candidates for b in g.blocks}
    if isinstance(g.budget, core.PooledBudget):
        budget = f"budget pooled {g.budget.pool}"
    else:
        k = g.budget.k or 0
        budget = f"budget k = {k:,} of {g.candidates:,} candidates ({k / g.candidates:.1%})"
    _wiring_panel(
        axes[0],
        g,
        counts,
        None,
        f"graph {g.name} ({g.semantics.kind}, {g.wiring.method})\n{budget}",
    )
    _heat_panel(axes[1], g, counts, "candidate edges per set pair")
    _adjacency_panel(axes[2], g, candidate_matrix(g), "candidate edges", "Greys")


def _draw_learned(axes, g: core.Graph, model) -> None:
    from wirelang.export.nodes import node_graph

    ng = node_graph(model, g)
    src, dst, w = ng.src.numpy(), ng.dst.numpy(), ng.weight.numpy()
    counts = ng.block_counts()
    dead = int(((ng.out_degree() == 0) & ~ng.role_mask("output")).sum())
    title = (
        f"graph {g.name} ({g.semantics.kind}, {g.wiring.method})\n{len(w):,} edges, {dead} dead nodes"
        + ("" if len(w) <= MAX_LINES else "; band width = edges per set pair")
    )
    _wiring_panel(axes[0], g, counts, (src, dst, w), title)
    _heat_panel(axes[1], g, counts, "active edges per set pair")
    matrix = np.zeros((g.size, g.size), dtype=np.float32)
    matrix[dst, src] = np.abs(w)
    _adjacency_panel(axes[2], g, matrix, "|w| of active edges", "Blues")
