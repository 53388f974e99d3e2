"""The kernels of the fast lowering: graphs run in a (C, N, H, W) layout.

Inside a graph every node set's state is a contiguous (channels, N, H, W) tensor, so that
- an edge product is a plain 2-D GEMM, (M x S) @ (S x N*H*W), with no layout change and no
  concatenation of the sources (`EdgeProduct` accumulates one product per source chunk);
- the channels of a set, or of several consecutive sets, are a contiguous block of rows, so a
  GEMM's output splits into sets as views and several sets' operators run as one call;
- per-node operators run on flat views: batch norm over (1, C, N*H*W) is the usual batch norm,
  over (1, C*N, H*W) it is instance norm, and a depthwise conv over (1, C*N, H, W) with a
  repeat_interleave'd weight is the usual depthwise conv (`NodeOps`).
The graph converts to this layout once on entry and back once on exit.

`EdgeProduct` uses gathered products (`Gathered`, run by `embedding_bag`) for the forward pass
and the input gradient when few weights are active (DNW keeps k of the candidates), and a dense product for the weight
gradient, which the straight-through rule needs at every candidate. Whether few is few enough
depends on the device: `SPARSE_DENSITY` is the recorded table, `sparse_threshold` reads it.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

# Below this fraction of active weights a gathered product beats the dense GEMM, per device type.
# CPU (AMD EPYC, torch 2.14, MKL; benchmarks/results/speed.md, session 7): a 192 x 416 block times
# 8192 columns, gathered vs dense, forward / input gradient in ms at 1 and 2 threads: at 20%
# 12.7 / 10.8 vs 17.0 / 18.2 and 6.5 / 6.3 vs 12.9 / 12.1; at 30% 18.2 / 14.7 vs 17.0 / 19.1 and
# 9.3 / 9.4 vs 13.4 / 12.2; at 40% dense wins (11.7 / 12.4 vs 11.3 / 9.4 at 2 threads); a 34 x 100
# block at 6272 columns breaks even at the same place. Hence 30% (it was 20% for the COO products
# these replaced). Devices not listed stay dense: no GPU has been measured yet; a `speed.py
# --device cuda` run is how an entry for it would be chosen.
SPARSE_DENSITY: dict[str, float] = {"cpu": 0.3}


def sparse_threshold(device: torch.device | str) -> float:
    """The density below which `sparse_plan` uses gathered products on `device` (0: never)."""
    return SPARSE_DENSITY.get(torch.device(device).type, 0.0)


# ----------------------------------------------------------------------------- layout
def to_cnhw(x: Tensor) -> Tensor:
    """(N, C, H, W) -> contiguous (C, N, H, W)."""
    return x.transpose(0, 1).contiguous()


def to_nchw(*xs: Tensor) -> Tensor:
    """Concatenated (C, N, H, W) chunks -> a contiguous (N, C, H, W) tensor."""
    y = xs[0] if len(xs) == 1 else torch.cat(xs, dim=0)
    return y.transpose(0, 1).contiguous()


def cat_rows(*xs: Tensor) -> Tensor:
    """Concatenate along the first dimension (channels in the (C, N, H, W) layout; target
    rows of weight matrices)."""
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=0)


def zero_rows(like: Tensor, rows: int, height: int, width: int) -> Tensor:
    """The state of `rows` nodes that are 0 (a dynamic graph before their first update)."""
    return like.new_zeros(rows, like.shape[1], height, width)


# ----------------------------------------------------------------------------- edges
class SparsePlan:
    """Gathered copies of an effective weight's blocks, built once per forward pass and shared by
    every step that multiplies by it (discrete time reuses one weight T times).

    Two ways to list the blocks, chosen by the weight's density (both give the same tensors):
    - scan: each block and its transpose by a `nonzero` of their own (the transpose from a
      contiguous copy of w^T, so both scans read rows). No sort: `nonzero` lists entries in
      row-major order, the coalesced one. Few operators per block, two passes over w: the
      cheaper way when the blocks are small or not very sparse (cifar_tiny's 12.5%: 5.8 vs
      11 ms for its h3 weight at one thread);
    - sort: one `nonzero` of the whole weight, then each entry's block found by bucketing its
      row and column and the blocks grouped by a stable sort (O(k) after the one pass): the
      cheaper way for large, very sparse weights (MobileNet's 512 x 2816 at 1.5%: 25 vs 48 ms).
    """

    # below this density the sort is cheaper than a second pass over the weight
    SORT_BELOW = 0.05

    def __init__(self, w: Tensor, nnz: int | None = None):
        self.w = w.detach()
        self.shape = w.shape
        nnz = int(torch.count_nonzero(self.w)) if nnz is None else nnz
        self.by_sort = nnz < self.SORT_BELOW * max(1, w.numel())
        self.blocks_by_key: dict[tuple, dict[tuple[int, int], tuple[Gathered, Gathered]]] = {}

    def blocks(
        self, rows: list[tuple[int, int]], spans: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[Gathered, Gathered]]:
        """{(row group, column span): (block, its transpose)}, each `Gathered`."""
        key = (tuple(rows), tuple(spans))
        if key not in self.blocks_by_key:
            by = self._by_sort if self.by_sort else self._by_scan
            self.blocks_by_key[key] = by(rows, spans)
        return self.blocks_by_key[key]

    def _by_scan(
        self, rows: list[tuple[int, int]], spans: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[Gathered, Gathered]]:
        wt = self.w.t().contiguous()
        out = {}
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(spans):
                out[(i, j)] = (_listed(self.w[r0:r1, c0:c1]), _listed(wt[c0:c1, r0:r1]))
        return out

    def _by_sort(
        self, rows: list[tuple[int, int]], spans: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[Gathered, Gathered]]:
        w = self.w
        idx = w.reshape(-1).nonzero().squeeze(1)
        all_rows, all_cols = idx // w.shape[1], idx % w.shape[1]
        dev = w.device
        r_ends = torch.tensor([r1 for _, r1 in rows], device=dev)
        c_starts = torch.tensor([c0 for c0, _ in spans], device=dev)
        c_ends = torch.tensor([c1 for _, c1 in spans], device=dev)
        rb = torch.bucketize(all_rows, r_ends, right=True)
        cb = (torch.bucketize(all_cols, c_starts, right=True) - 1).clamp_(min=0)
        valid = (all_cols >= c_starts[cb]) & (all_cols < c_ends[cb]) & (rb < len(rows))
        bid = torch.where(valid, rb * len(spans) + cb, len(rows) * len(spans))
        order = torch.argsort(bid, stable=True)  # keeps row-major order inside each block
        counts = torch.bincount(bid, minlength=len(rows) * len(spans) + 1).tolist()
        rs, cs, vs = all_rows[order], all_cols[order], w.reshape(-1)[idx[order]]
        out, start = {}, 0
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(spans):
                end = start + counts[i * len(spans) + j]
                r, c, v = rs[start:end] - r0, cs[start:end] - c0, vs[start:end]
                m, n = r1 - r0, c1 - c0
                t = torch.argsort(c * m + r)
                out[(i, j)] = (Gathered(r, c, v, (m, n)), Gathered(c[t], r[t], v[t], (n, m)))
                start = end
        return out


class Gathered:
    """A sparse block as `embedding_bag` reads it: output row u sums `values[e] * x[columns[e]]`
    over its entries e = starts[u] .. starts[u + 1] - 1 (row-major order, so the sums and their
    rounding never depend on the thread count).

    Why not torch's COO product: on the CPU it is one serial loop over the nonzeros, and the
    zeroed output it accumulates into costs a pass of its own; `embedding_bag` runs output rows
    in parallel and writes each once. cifar_tiny's blocks (12.5% dense, 8192 columns): 1.15-1.3x
    faster at one thread, 2.2-4.4x at two (benchmarks/results/speed.md, session 7).
    """

    __slots__ = ("columns", "starts", "values", "shape")

    def __init__(self, rows: Tensor, columns: Tensor, values: Tensor, shape: tuple[int, int]):
        counts = torch.bincount(rows, minlength=shape[0])
        self.starts = counts.cumsum(0) - counts
        self.columns, self.values, self.shape = columns, values, shape

    def times(self, x: Tensor) -> Tensor:
        """This block (rows x cols) times x (cols x positions): rows x positions."""
        return F.embedding_bag(
            self.columns, x, self.starts, mode="sum", per_sample_weights=self.values
        )


def _listed(block: Tensor) -> Gathered:
    """A 2-D strided block's nonzero entries, in row-major order."""
    r, c = block.nonzero().unbind(1)
    return Gathered(r, c, block[r, c], tuple(block.shape))


def sparse_plan(w: Tensor, threshold: float | None = None) -> SparsePlan | None:
    """A SparsePlan when few entries of the effective weight are nonzero, else None.

    `threshold`: the density below which the plan is built (default: the device's, from
    `sparse_threshold`). The choice depends only on the weight and the device, never on a
    timing, so a run and its resumption take the same path and compute the same numbers.
    """
    threshold = sparse_threshold(w.device) if threshold is None else threshold
    if w.numel() == 0 or threshold <= 0:
        return None
    cached = w.__dict__.get("_wirelang_plan")
    if cached is not None and cached[0] == threshold:
        return cached[1]  # the same effective weight again (inference reuses it, see EdgeMask)
    # counting is cheaper than listing: dense weights never build the index lists
    nnz = int(torch.count_nonzero(w.detach()))
    plan = None if nnz > threshold * w.numel() else SparsePlan(w, nnz)
    if not w.requires_grad:
        w.__dict__["_wirelang_plan"] = (threshold, plan)
    return plan


class EdgeProduct(torch.autograd.Function):
    """Y_g = sum_i W[rows_g, cols_i] @ X_i for every output group g, in the (C, N, H, W) layout.

    `xs` are source chunks (rows of consecutive source nodes) starting at weight columns
    `cols`; `splits` cuts the output rows into groups (each becomes its own tensor, so that
    each group's operator gets a contiguous input and its own autograd edge).
    """

    @staticmethod
    def forward(
        ctx,
        w: Tensor,
        splits: tuple[int, ...],
        cols: tuple[int, ...],
        plan: SparsePlan | None,
        *xs: Tensor,
    ) -> tuple[Tensor, ...]:
        rows = _ranges(splits)
        spans = [(c, c + x.shape[0]) for c, x in zip(cols, xs, strict=True)]
        tail = xs[0].shape[1:]
        # Under autocast (mixed precision), the products run in its dtype. Autocast casts the
        # first `mm` but not the in-place sums after it, and never runs in `backward`, so the
        # casts are made here, once for all products; the gathered form (float32 values on
        # the CPU) gives way to dense products.
        amp = _autocast_dtype(w)
        ctx.dtypes = (w.dtype, *(x.dtype for x in xs))
        if amp is not None:
            w, plan = w.to(amp), None
            xs = tuple(x.to(amp) for x in xs)
        flat = [x.reshape(x.shape[0], -1) for x in xs]
        blocks = plan.blocks(rows, spans) if plan is not None else None
        outs = []
        for i, (r0, r1) in enumerate(rows):
            y = None
            for j, ((c0, c1), x2) in enumerate(zip(spans, flat, strict=True)):
                if blocks is not None:
                    part = blocks[(i, j)][0].times(x2)
                    y = part if y is None else y.add_(part)
                elif y is None:
                    y = torch.mm(w[r0:r1, c0:c1], x2)
                else:
                    y.addmm_(w[r0:r1, c0:c1], x2)
            outs.append(y.view(r1 - r0, *tail))
        ctx.save_for_backward(w, *xs)  # in the products' dtype
        ctx.rows, ctx.spans, ctx.plan = rows, spans, plan
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        w, *xs = ctx.saved_tensors
        rows, spans, plan = ctx.rows, ctx.spans, ctx.plan
        flat = [x.reshape(x.shape[0], -1) for x in xs]
        gs = [None if g is None else g.reshape(g.shape[0], -1).to(w.dtype) for g in grads]
        gw = None
        if ctx.needs_input_grad[0]:
            covered = sum(c1 - c0 for c0, c1 in spans) == w.shape[1]
            # dense: the straight-through rule gives every entry its gradient, active or not
            if len(rows) == 1 and len(spans) == 1 and covered and gs[0] is not None:
                gw = torch.mm(gs[0], flat[0].t())
            else:
                full = covered and all(g is not None for g in gs)
                gw = w.new_empty(w.shape) if full else w.new_zeros(w.shape)
                for (r0, r1), g in zip(rows, gs, strict=True):
                    for (c0, c1), x2 in zip(spans, flat, strict=True):
                        if g is not None:
                            gw[r0:r1, c0:c1] = g @ x2.t()
        blocks = plan.blocks(rows, spans) if plan is not None else None
        gxs = []
        for j, ((c0, c1), x) in enumerate(zip(spans, xs, strict=True)):
            if not ctx.needs_input_grad[4 + j]:
                gxs.append(None)
                continue
            gx = None
            for i, ((r0, r1), g) in enumerate(zip(rows, gs, strict=True)):
                if g is None:
                    continue
                if blocks is not None:
                    part = blocks[(i, j)][1].times(g)
                    gx = part if gx is None else gx.add_(part)
                elif gx is None:
                    gx = torch.mm(w[r0:r1, c0:c1].t(), g)
                else:
                    gx.addmm_(w[r0:r1, c0:c1].t(), g)
            gxs.append(torch.zeros_like(x) if gx is None else gx.view_as(x))
        # each gradient in its input's dtype (float32 weights and states under autocast)
        gw = None if gw is None else gw.to(ctx.dtypes[0])
        gxs = [None if g is None else g.to(t) for g, t in zip(gxs, ctx.dtypes[1:], strict=True)]
        return (gw, None, None, None, *gxs)


def _autocast_dtype(t: Tensor) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on `t`'s device, or None when it is off."""
    device = t.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def _ranges(splits: tuple[int, ...]) -> list[tuple[int, int]]:
    out, start = [], 0
    for s in splits:
        out.append((start, start + s))
        start += s
    return out


def edge_product(
    sources: tuple[Tensor, ...],
    w: Tensor,
    splits: tuple[int, ...] | None = None,
    cols: tuple[int, ...] | None = None,
    plan: SparsePlan | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """Sum over sources of w_qu * Z_q for every target u, in the (C, N, H, W) layout.

    `sources` are chunks of consecutive source nodes; `cols` their first column in `w`
    (default: one after another from 0); `splits` the row counts of the output groups
    (default: one output). Returns one tensor, or a tuple when `splits` is given.
    """
    if cols is None:
        cols, c = [], 0
        for x in sources:
            cols.append(c)
            c += x.shape[0]
    outs = EdgeProduct.apply(w, tuple(splits or (w.shape[0],)), tuple(cols), plan, *sources)
    return outs if splits is not None else outs[0]


# Leaves of the fx graph when user code traces a compiled model (see also lower.LeafTracer).
for _name in ("to_cnhw", "to_nchw", "cat_rows", "zero_rows", "sparse_plan", "edge_product"):
    fx.wrap(_name)


# ----------------------------------------------------------------------------- node operators
_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.Identity,
    nn.Dropout,
)


def layers_of(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return list(module)
    return [] if isinstance(module, nn.Identity) else [module]


def _is_depthwise(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.groups == m.in_channels == m.out_channels
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def layer_signature(m: nn.Module) -> tuple | None:
    """What must agree for several sets' layers to run as one call; None: not fusable (the
    layer then runs on its own, through a transposed view)."""
    if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats:
        return ("instancenorm", m.eps, m.affine)
    if isinstance(m, nn.BatchNorm2d):
        return ("batchnorm", m.eps, m.momentum, m.affine, m.track_running_stats)
    if _is_depthwise(m):
        return ("dwconv", m.kernel_size, m.stride, m.padding, m.dilation, m.bias is not None)
    if type(m) in _ELEMENTWISE:
        return (type(m).__name__, m.extra_repr())
    return None


def ops_signature(module: nn.Module) -> tuple | None:
    sigs = tuple(layer_signature(m) for m in layers_of(module))
    return None if any(s is None for s in sigs) else sigs


class NodeOps(nn.Module):
    """The operator of one node set, or of several consecutive sets with the same operator,
    applied to their states in the (C, N, H, W) layout.

    The layers stay owned by the graph's `ops` (or `send`) modules, so parameters, state_dict
    keys and the NCHW reference evaluator are unchanged; this module only holds references
    and concatenates the sets' parameters when it runs several sets at once.
    """

    def __init__(self, modules: list[nn.Module], names: list[str]):
        super().__init__()
        object.__setattr__(self, "owned", list(modules))  # plain references, not submodules
        self.names = list(names)
        self.depth = len(layers_of(modules[0]))
        if len(modules) > 1:
            sig = ops_signature(modules[0])
            assert sig is not None and all(ops_signature(m) == sig for m in modules), (
                "sets with different operators"
            )

    def extra_repr(self) -> str:
        return "sets=" + ", ".join(self.names)

    def forward(self, x: Tensor) -> Tensor:
        per_set = [layers_of(m) for m in self.owned]
        for j in range(self.depth):
            x = _apply([ls[j] for ls in per_set], x)
        return x


def _cat(ts: list[Tensor | None]) -> Tensor | None:
    if ts[0] is None:
        return None
    return ts[0] if len(ts) == 1 else torch.cat(ts)


def _apply(layers: list[nn.Module], x: Tensor) -> Tensor:
    m = layers[0]
    c, n = x.shape[0], x.shape[1]
    if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats:
        # instance norm = batch norm in training mode over (1, C*N, H*W)
        w, b = _cat([layer.weight for layer in layers]), _cat([layer.bias for layer in layers])
        if w is not None:
            w, b = w.repeat_interleave(n), b.repeat_interleave(n)
        y = F.batch_norm(x.reshape(1, c * n, -1), None, None, w, b, True, 0.0, m.eps)
        return y.view_as(x)
    if isinstance(m, nn.BatchNorm2d):
        return _batch_norm(layers, x)
    if _is_depthwise(m):
        w = _cat([layer.weight for layer in layers]).repeat_interleave(n, dim=0)
        b = _cat([layer.bias for layer in layers])
        b = b.repeat_interleave(n) if b is not None else None
        y = F.conv2d(
            x.reshape(1, c * n, *x.shape[2:]), w, b, m.stride, m.padding, m.dilation, c * n
        )
        return y.view(c, n, *y.shape[2:])
    # no in-place activation: on a view (every output here is one) autograd would record a
    # CopySlices and rebuild the view in the backward pass, which costs more than it saves
    if type(m) in _ELEMENTWISE:
        return m(x)
    assert len(layers) == 1, "only layers with a signature run for several sets at once"
    return m(x.transpose(0, 1)).transpose(0, 1).contiguous()


def _batch_norm(layers: list[nn.Module], x: Tensor) -> Tensor:
    """nn.BatchNorm2d.forward over (1, C, N*H*W), for one or several sets' modules."""
    m = layers[0]
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        for layer in layers:
            layer.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    training = m.training or (m.running_mean is None and m.running_var is None)
    track = not m.training or m.track_running_stats
    mean = _cat([layer.running_mean for layer in layers]) if track else None
    var = _cat([layer.running_var for layer in layers]) if track else None
    w, b = _cat([layer.weight for layer in layers]), _cat([layer.bias for layer in layers])
    y = F.batch_norm(x.reshape(1, x.shape[0], -1), mean, var, w, b, training, factor, m.eps)
    if len(layers) > 1 and training and mean is not None:
        with torch.no_grad():  # the concatenated running statistics back into each module
            start = 0
            for layer in layers:
                size = layer.running_mean.numel()
                layer.running_mean.copy_(mean[start : start + size])
                layer.running_var.copy_(var[start : start + size])
                start += size
    return y.view_as(x)
