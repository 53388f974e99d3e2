"""The fast backend's pieces against their plain definitions: `TopK` equals `topk_mask`, sparse
edge products equal dense ones (outputs and gradients), fused node operators equal the
per-set modules."""

from __future__ import annotations

import torch
from torch import nn

from wirelang.backend import kernels
from wirelang.backend.kernels import (
    SPARSE_DENSITY,
    NodeOps,
    SparsePlan,
    edge_product,
    sparse_plan,
    sparse_threshold,
)
from wirelang.backend.masks import TopK, topk_mask


def test_topk_equals_topk_mask_while_scores_drift():
    g = torch.Generator().manual_seed(0)
    for trial in range(120):
        n = int(torch.randint(1, 3000, (1,), generator=g))
        k = int(torch.randint(0, n + 2, (1,), generator=g))
        select = TopK(margin=float(torch.rand(1, generator=g)))
        s = torch.randn(n, generator=g).abs()
        for step in range(5):
            if trial % 3 == 0:
                s = (s * 4).round() / 4  # many ties at the threshold
            if trial % 5 == 0:
                s[: n // 3] = -1.0  # non-candidates
            assert torch.equal(select(s, k), topk_mask(s, k))
            s = (s * (0.9 if step % 2 else 1.1) + 0.05 * torch.randn(n, generator=g)).abs()


def _dense(block: kernels.Gathered) -> torch.Tensor:
    """The dense matrix a gathered block stands for, rebuilt from its lists."""
    ends = torch.cat([block.starts[1:], block.starts.new_tensor([block.values.numel()])])
    rows = torch.repeat_interleave(torch.arange(block.shape[0]), ends - block.starts)
    out = block.values.new_zeros(block.shape)
    out[rows, block.columns] = block.values
    return out


def test_sparse_edge_product_equals_dense():
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        m, s = (
            int(torch.randint(2, 30, (1,), generator=g)),
            int(torch.randint(2, 40, (1,), generator=g)),
        )
        w = (torch.randn(m, s, generator=g) * (torch.rand(m, s, generator=g) < 0.2)).requires_grad_(
            True
        )
        cut = int(torch.randint(1, m, (1,), generator=g))
        splits = (cut, m - cut)
        bounds = sorted(set(torch.randint(0, s + 1, (3,), generator=g).tolist()) | {0, s})
        chunks = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a][
            ::2
        ]  # with gaps
        xs = [torch.randn(b - a, 3, 2, 2, generator=g, requires_grad=True) for a, b in chunks]
        cols = tuple(a for a, _ in chunks)
        by_sort = SparsePlan(w)
        by_sort.by_sort = True  # the listing for large, very sparse weights
        by_scan = SparsePlan(w)
        by_scan.by_sort = False
        results = []
        for plan in (None, by_sort, by_scan):
            ys = edge_product(tuple(xs), w, splits, cols, plan)
            loss = sum((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() for y in ys)
            results.append(list(ys) + list(torch.autograd.grad(loss, [w, *xs])))
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                assert torch.allclose(a, b, atol=1e-5)
        # both listings give the same blocks (and transposes), entry for entry
        rows, spans = [(0, cut), (cut, m)], [(a, b) for a, b in chunks]
        for key, (x, xt) in by_sort.blocks(rows, spans).items():
            y, yt = by_scan.blocks(rows, spans)[key]
            for p, q in ((x, y), (xt, yt)):
                assert p.shape == q.shape
                for a, b in ((p.columns, q.columns), (p.starts, q.starts), (p.values, q.values)):
                    assert torch.equal(a, b)
            assert torch.equal(_dense(x), _dense(y).view_as(_dense(x)))
            assert torch.equal(_dense(xt), _dense(x).t())


def test_gathered_blocks_multiply_like_the_dense_block_at_any_thread_count():
    """`Gathered.times` (embedding_bag over the block's entries) equals the dense product, with
    empty rows, and gives the same bits at 1 and 3 threads: each output row is one thread's sum."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 70, generator=g) * (torch.rand(40, 70, generator=g) < 0.15)
    w[5] = 0.0  # a target with no edge in: a zero row
    block = kernels._listed(w)
    assert torch.equal(_dense(block), w)
    x = torch.randn(70, 1001, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = block.times(x)
        torch.set_num_threads(3)
        three = block.times(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)
    assert torch.allclose(one, w @ x, atol=1e-5) and not one[5].any()


def test_sparse_plan_follows_the_device_table():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(64, 96, generator=g)
    tiny = w * (torch.rand(64, 96, generator=g) < 0.125)  # cifar_tiny's density: sparse on CPU
    dense = w * (torch.rand(64, 96, generator=g) < 0.4)
    assert sparse_threshold("cpu") == SPARSE_DENSITY["cpu"] > 0.125
    assert sparse_threshold("cuda") == 0.0  # no device measured: dense products
    assert isinstance(sparse_plan(tiny), SparsePlan)
    assert sparse_plan(dense) is None
    assert sparse_plan(tiny, threshold=0.1) is None  # an explicit threshold wins
    assert isinstance(sparse_plan(dense, threshold=0.5), SparsePlan)


def test_node_ops_in_cnhw_equal_the_modules():
    torch.manual_seed(0)
    sets = [
        nn.Sequential(
            nn.InstanceNorm2d(c, affine=True),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
        )
        for c in (3, 5)
    ]
    bns = [
        nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU6(), nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c)
        )
        for c in (4, 2)
    ]
    for group in (sets, bns):
        for m in group:
            for p in m.parameters():
                p.data.normal_()
        x = torch.randn(6, sum(m[0].num_features for m in group), 8, 8)
        copies = [nn.Sequential(*[type(layer)(**_config(layer)) for layer in m]) for m in group]
        for c, m in zip(copies, group, strict=True):
            c.load_state_dict(m.state_dict())
        fused = NodeOps(list(group), ["a", "b"])(x.transpose(0, 1).contiguous()).transpose(0, 1)
        parts, start = [], 0
        for c in copies:
            n = c[0].num_features
            parts.append(c(x[:, start : start + n]))
            start += n
        assert torch.allclose(fused, torch.cat(parts, 1), atol=1e-5)
        for m, c in zip(group, copies, strict=True):  # running statistics updated alike
            if isinstance(m[0], nn.BatchNorm2d):
                assert torch.allclose(m[0].running_mean, c[0].running_mean, atol=1e-6)
                assert torch.allclose(m[0].running_var, c[0].running_var, atol=1e-6)
                assert int(m[0].num_batches_tracked) == int(c[0].num_batches_tracked)


def _config(layer: nn.Module) -> dict:
    if isinstance(layer, nn.InstanceNorm2d | nn.BatchNorm2d):
        return {"num_features": layer.num_features, "affine": layer.affine}
    if isinstance(layer, nn.Conv2d):
        return {
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": layer.kernel_size,
            "stride": layer.stride,
            "padding": layer.padding,
            "groups": layer.groups,
            "bias": layer.bias is not None,
        }
    return {}


def test_edge_products_run_under_autocast_in_its_dtype():
    """Mixed precision (`amp bf16 | fp16`, CUDA autocast in training): the products run in
    autocast's dtype, the gradients come back in the inputs' dtypes, and the values agree
    with float32 to that dtype's precision. CPU autocast (bfloat16) exercises the same code:
    autocast casts the first `mm` of a sum but not the in-place `addmm_` after it, and never
    runs in `backward`. The gathered form gives way to dense products under autocast."""
    g = torch.Generator().manual_seed(4)
    w = (
        torch.randn(24, 40, generator=g) * (torch.rand(24, 40, generator=g) < 0.1)
    ).requires_grad_()
    xs = [torch.randn(n, 3, 4, 4, generator=g, requires_grad=True) for n in (16, 24)]
    for plan in (None, SparsePlan(w)):
        results = []
        for amp in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                ys = edge_product(tuple(xs), w, (10, 14), (0, 16), plan)
                loss = sum(
                    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() for y in ys
                )
            grads = torch.autograd.grad(loss, [w, *xs])
            assert [y.dtype for y in ys] == [torch.bfloat16 if amp else torch.float32] * 2
            assert [t.dtype for t in grads] == [torch.float32] * 3
            results.append([y.float() for y in ys] + list(grads))
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.02)
