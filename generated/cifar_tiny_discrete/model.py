"""cifar_tiny_discrete: a compact model exported by wirelang 0.1.0 from cifar_tiny_discrete.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns; blocks with
few live edges run as gathered products (see `Edges`).
Graph `tiny.body`: discrete time, 5 steps unrolled: 800 of 800 nodes and 32,000 of 32,000 edges kept.

    import torch
    from model import load
    model = load("weights.pt")                 # eval mode
    scores = model(torch.randn(8, 3, 32, 32))    # -> 8 x 10
"""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (3, 32, 32)
CLASSES = 10
# Edges with `merged` blocks run them as one product over the stacked sources when the stack
# holds at most this many values (source rows x N x H x W): measured for the exporting device
MERGE_BELOW = 16384


class CenterCrop(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, x):
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]


class FlatLinear(nn.Linear):
    """A linear layer that flattens N x C x 1 x 1 (after global pooling) itself."""

    def forward(self, x):
        return super().forward(x.flatten(1))


class Residual(nn.Module):
    def __init__(self, branch, shortcut, after):
        super().__init__()
        self.branch, self.shortcut, self.after = branch, shortcut, after

    def forward(self, x):
        return self.after(self.branch(x) + self.shortcut(x))


def onnx_export():
    """Whether an ONNX exporter is tracing this call (it runs under a tracer or torch.export,
    both cheap to ask first: torch.onnx.is_in_onnx_export costs microseconds per call)."""
    return (torch.jit.is_tracing() or torch.compiler.is_compiling()) and torch.onnx.is_in_onnx_export()


def swap_nc(x):
    """N x C x H x W <-> C x N x H x W, contiguous. Inside a graph states are C x N x H x W:
    each node's maps over the batch are one row of the edge products (free for one image)."""
    return x.transpose(0, 1).contiguous()


class NodeOps(nn.Sequential):
    """A node set's operator (per-channel layers) applied in the C x N x H x W layout.
    `fresh`: its input is a new tensor (an edge product's output), which it may overwrite."""

    def __init__(self, *layers, fresh=False):
        super().__init__(*layers)
        self.fresh = fresh

    def forward(self, x):
        # dispatch on the exact class: the layers are built by this file's constructors
        owned = self.fresh
        for layer in self:
            kind = type(layer)
            if kind is nn.ReLU and owned:  # x is not needed elsewhere: overwrite it
                x = torch.relu_(x)
            elif kind is nn.Conv2d and not onnx_export():
                x = depthwise(x, layer)
            elif kind is nn.BatchNorm2d and not layer.training:  # a x + b per channel
                scale = torch.rsqrt(layer.running_var + layer.eps)
                scale = scale * layer.weight if layer.affine else scale
                shift = -layer.running_mean * scale
                shift = shift + layer.bias if layer.affine else shift
                # two passes: addcmul with a broadcast first operand is ~10x slower on CPU
                x = (x * scale[:, None, None, None]).add_(shift[:, None, None, None])
            elif kind is nn.BatchNorm2d:  # statistics per channel, over N x H x W
                c, n, h, w = x.shape
                x = layer(x.reshape(1, c, n * h, w)).view(c, n, h, w)
            elif kind is nn.InstanceNorm2d:  # each map of each image on its own
                # the normalisation and the affine map as one scale and shift per map
                var, mean = torch.var_mean(x, (2, 3), unbiased=False, keepdim=True)
                scale = torch.rsqrt(var + layer.eps)
                if layer.affine:
                    scale = scale * layer.weight[:, None, None, None]
                shift = -mean * scale
                if layer.affine:
                    shift = shift + layer.bias[:, None, None, None]
                x = (x * scale).add_(shift)
            elif kind is nn.Conv2d:  # an ONNX convolution has a fixed group count
                x = swap_nc(layer(swap_nc(x)))
            else:  # elementwise, or pools and crops, which act on each (channel, image) map
                x = layer(x)
            # identity and dropout (in eval) hand back their input itself
            owned = owned or kind not in (nn.Identity, nn.Dropout)
        return x


def depthwise(x, layer):
    """A depthwise conv in the C x N x H x W layout: one group per map of each image."""
    c, n, h, w = x.shape
    if n == 1 and not torch.compiler.is_compiling():  # eager, one image: the weight as it is
        weight, bias = layer.weight, layer.bias
    else:  # each channel's filter once per image (a program for any batch size)
        k = layer.weight.shape[1:]
        weight = layer.weight[:, None].expand(c, n, *k).reshape(c * n, *k)
        bias = None if layer.bias is None else layer.bias[:, None].expand(c, n).reshape(-1)
    y = F.conv2d(x.reshape(1, c * n, h, w), weight, bias, layer.stride, layer.padding, 1, c * n)
    return y.view(c, n, y.shape[2], y.shape[3])


class Edges(nn.Module):
    """The edges into one node set: sum over source sets j of w[j] @ z[j] (z[j]: Q_j x N x H
    x W, w[j]: U x Q_j, the block of live rows and columns), plus `bias` when the set's batch
    norm was folded in (its rows scaled, its shift the bias); returns U x N x H x W.

    A block with few live edges (at or below the density where wirelang measured the gathered
    product to beat the dense one on the device this model was exported for) is gathered:
    its live weights in CSR order, run by embedding_bag (each output row sums the source rows
    its edges name, scaled by their weights). Other blocks are dense matrix products. ONNX has
    no fast gathered product, so an ONNX export makes every block dense (the same sums).
    `merged`: the gathered blocks also as one list over the sources stacked, for small
    sources, where one call costs less than a call per block (`MERGE_BELOW`); without autograd
    only (training and fine-tuning run block by block).
    """

    def __init__(self, rows, cols, gathered, bias=False, merged=False):
        super().__init__()
        self.rows, self.cols, self.gathered = rows, tuple(cols), tuple(gathered)
        self.merged, self.width = merged, sum(cols)
        if merged:
            self.register_buffer("mcol", torch.zeros(sum(gathered), dtype=torch.long))
            self.register_buffer("moff", torch.zeros(rows, dtype=torch.long))
            # the blocks' live weights, concatenated, in the merged list's order
            self.register_buffer("mperm", torch.zeros(sum(gathered), dtype=torch.long))
            self._merged_key, self._merged = None, None
        for j, (c, live) in enumerate(zip(cols, gathered)):
            if live:
                self.register_buffer(f"row{j}", torch.zeros(live, dtype=torch.long))
                self.register_buffer(f"col{j}", torch.zeros(live, dtype=torch.long))
                self.register_buffer(f"off{j}", torch.zeros(rows, dtype=torch.long))
                self.register_parameter(f"val{j}", nn.Parameter(torch.zeros(live)))
            else:
                self.register_parameter(f"w{j}", nn.Parameter(torch.zeros(rows, c)))
        self.bias = nn.Parameter(torch.zeros(rows)) if bias else None

    def block(self, j):
        """Block j as a dense matrix."""
        if not self.gathered[j]:
            return getattr(self, f"w{j}")
        val = getattr(self, f"val{j}")
        w = val.new_zeros(self.rows, self.cols[j])
        return w.index_put((getattr(self, f"row{j}"), getattr(self, f"col{j}")), val)

    def values(self, j):
        """Block j's live weights. Without autograd they go in detached: embedding_bag then
        runs its forward-only kernel, which skips the bookkeeping a backward pass would read
        (5-25% of the call on CPU)."""
        val = getattr(self, f"val{j}")
        return val if torch.is_grad_enabled() else val.detach()

    def merged_values(self):
        """The blocks' live weights in the merged list's order. Read from the blocks, and
        gathered again whenever one of them changed (an optimizer step, a load, a move to
        another device), so a fine-tuned model's merged list holds what it trained."""
        vals = [getattr(self, f"val{j}") for j in range(len(self.cols))]
        if any(v.is_inference() for v in vals):  # made under inference_mode: no version to ask
            return torch.cat(vals)[self.mperm]
        key = tuple((v._version, v.data_ptr()) for v in vals)
        if self._merged_key != key:
            self._merged_key, self._merged = key, torch.cat(vals).detach()[self.mperm]
        return self._merged

    def forward(self, *zs):
        _, n, h, w = zs[0].shape
        dense = onnx_export()
        if (
            self.merged
            and not dense
            and not torch.compiler.is_compiling()  # a program runs block by block
            and not torch.is_grad_enabled()  # training runs block by block
            and self.width * n * h * w <= MERGE_BELOW
        ):
            z = torch.cat(zs).reshape(self.width, -1)
            y = F.embedding_bag(
                self.mcol, z, self.moff, mode="sum", per_sample_weights=self.merged_values()
            )
            y = y if self.bias is None else y.add_(self.bias[:, None])
            return y.view(self.rows, n, h, w)
        y, biased = None, self.bias is None
        for j, z in enumerate(zs):
            z = z.reshape(z.shape[0], -1)  # Q_j x N*H*W
            if self.gathered[j] and not dense:
                part = F.embedding_bag(
                    getattr(self, f"col{j}"),
                    z,
                    getattr(self, f"off{j}"),
                    mode="sum",
                    per_sample_weights=self.values(j),
                )
                y = part if y is None else y.add_(part)
            elif y is None and not biased:  # the bias comes with the first dense product
                y, biased = torch.addmm(self.bias[:, None], self.block(j), z), True
            else:
                y = self.block(j) @ z if y is None else torch.addmm(y, self.block(j), z)
        if not biased:
            y = y.add_(self.bias[:, None])
        return y.view(self.rows, n, h, w)



class Graph_tiny_body(nn.Module):
    """Graph `tiny.body`, discrete time, 5 steps unrolled: 800 of 800 nodes and 32,000 of 32,000 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = NodeOps(nn.InstanceNorm2d(32, affine=True), fresh=True)
        self.send_in = NodeOps(nn.ReLU(), nn.Conv2d(32, 32, 3, stride=1, padding=1, groups=32, bias=False))
        self.op_h1 = NodeOps(nn.InstanceNorm2d(192, affine=True), fresh=True)
        self.send_h1 = NodeOps(nn.ReLU(), nn.Conv2d(192, 192, 3, stride=1, padding=1, groups=192, bias=False))
        self.op_h2 = NodeOps(nn.InstanceNorm2d(192, affine=True), fresh=True)
        self.send_h2 = NodeOps(nn.ReLU(), nn.Conv2d(192, 192, 3, stride=1, padding=1, groups=192, bias=False))
        self.op_h3 = NodeOps(nn.InstanceNorm2d(192, affine=True), fresh=True)
        self.send_h3 = NodeOps(nn.ReLU(), nn.Conv2d(192, 192, 3, stride=1, padding=1, groups=192, bias=False))
        self.op_h4 = NodeOps(nn.InstanceNorm2d(92, affine=True), fresh=True)
        self.send_h4 = NodeOps(nn.ReLU(), nn.Conv2d(92, 92, 3, stride=1, padding=1, groups=92, bias=False))
        self.op_out = NodeOps(nn.InstanceNorm2d(100, affine=True), fresh=True)
        self.send_out = NodeOps(nn.ReLU(), nn.Conv2d(100, 100, 3, stride=1, padding=1, groups=100, bias=False))
        self.tail = NodeOps(CenterCrop(2), nn.AdaptiveAvgPool2d(1))
        self.w_in = Edges(32, [32, 192, 192, 192, 92, 100], [59, 279, 319, 317, 159, 156])
        self.w_h1 = Edges(192, [32, 192, 192, 192, 92, 100], [331, 1821, 1861, 1871, 857, 885])
        self.w_h2 = Edges(192, [32, 192, 192, 192, 92, 100], [283, 1868, 1863, 1875, 912, 938])
        self.w_h3 = Edges(192, [32, 192, 192, 192, 92, 100], [303, 1853, 1863, 1829, 889, 955])
        self.w_h4 = Edges(92, [32, 192, 192, 192, 92, 100], [151, 871, 862, 927, 392, 454])
        self.w_out = Edges(100, [32, 192, 192, 192, 92, 100], [158, 940, 968, 969, 480, 482])

    def forward(self, x):
        x = swap_nc(x)
        s_in = x[0:32]
        s_h1 = x.new_zeros((192, x.shape[1], 8, 8))
        s_h2 = x.new_zeros((192, x.shape[1], 8, 8))
        s_h3 = x.new_zeros((192, x.shape[1], 8, 8))
        s_h4 = x.new_zeros((92, x.shape[1], 8, 8))
        s_out = x.new_zeros((100, x.shape[1], 8, 8))
        for _ in range(5):
            m_in = self.send_in(s_in)
            m_h1 = self.send_h1(s_h1)
            m_h2 = self.send_h2(s_h2)
            m_h3 = self.send_h3(s_h3)
            m_h4 = self.send_h4(s_h4)
            m_out = self.send_out(s_out)
            d_in = self.op_in(self.w_in(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            d_h1 = self.op_h1(self.w_h1(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            d_h2 = self.op_h2(self.w_h2(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            d_h3 = self.op_h3(self.w_h3(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            d_h4 = self.op_h4(self.w_h4(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            d_out = self.op_out(self.w_out(m_in, m_h1, m_h2, m_h3, m_h4, m_out))
            s_in, s_h1, s_h2, s_h3, s_h4, s_out = d_in, d_h1, d_h2, d_h3, d_h4, d_out
        return swap_nc(self.tail(s_out))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tiny_stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, groups=1, bias=True), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.Conv2d(16, 32, 1, stride=1, padding=0, groups=1, bias=True))
        self.tiny_body = Graph_tiny_body()
        self.tiny_head = nn.Sequential(FlatLinear(100, 10, bias=True))

    def forward(self, x):
        x = self.tiny_stem(x)
        x = self.tiny_body(x)
        x = self.tiny_head(x)
        return x


def load(path="weights.pt"):
    """The model with its trained weights, in eval mode."""
    model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
