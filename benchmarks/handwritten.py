"""Hand-written PyTorch versions of the benchmarked networks, in the DNW authors' style.

These are the baselines `benchmarks/speed.py` measures the compiled models against. They
compute the same networks as the specs (same node sets, operators, budgets and DAG), written
the way the authors' public code writes them:

- one masked 1x1 weight over all of the graph's channels (800 x 800 for the tiny classifier;
  for a MobileNet stage, every target channel by every source channel), stored as an
  `nn.Conv2d` weight;
- the top k by a full `sort` of every |w| on every forward pass (not only the candidates);
- the straight-through mask built by cloning the weight and zeroing the pruned entries in an
  autograd function whose backward returns the gradient unchanged;
- the forward slicing that weight per block and adding each block's product into the running
  tensor of later channels.

Nothing here is used by wirelang itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, autograd, nn


class ChooseTopEdges(autograd.Function):
    """Top edges in the forward pass; the gradient flows to every edge in the backward pass."""

    @staticmethod
    def forward(ctx, weight: Tensor, k: int) -> Tensor:
        output = weight.clone()
        _, idx = weight.flatten().abs().sort()
        flat = output.flatten()
        flat[idx[: weight.numel() - k]] = 0
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None


class DNWGraph(nn.Conv2d):
    """The graph's weight: a 1x1 conv over all channels, keeping its k largest |w|."""

    def __init__(self, dim_in: int, dim_out: int, k: int):
        super().__init__(dim_in, dim_out, kernel_size=1, bias=False)
        self.k = k

    def get_weight(self) -> Tensor:
        return ChooseTopEdges.apply(self.weight, self.k)


def dwconv(channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        channels, channels, kernel_size=3, stride=stride, padding=1, bias=False, groups=channels
    )


def tiny_downsample() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        dwconv(16, stride=2),
        nn.Conv2d(16, 32, kernel_size=1, bias=False),
        nn.BatchNorm2d(32),
    )


# the sets of specs/lib/tiny.wire: in, h1, h2, h3, h4 (with the node operator), then out
TINY_SIZES = [32, 192, 192, 192, 92, 100]
TINY_K = 32_000


class StaticTiny(nn.Module):
    """`cifar_tiny`: a DAG in[32] -> h1..h4 -> out[100], each set feeding every later one."""

    def __init__(self, classes: int = 10, crop: int = 2):
        super().__init__()
        self.dim = sum(TINY_SIZES)
        self.feature_dim = TINY_SIZES[-1]
        self.block_sz = TINY_SIZES[:-1]
        self.block_rng = [0]
        for s in TINY_SIZES:
            self.block_rng.append(self.block_rng[-1] + s)
        self.downsample = tiny_downsample()
        self.graph = DNWGraph(self.dim, self.dim, TINY_K)
        self.conv = dwconv(self.dim - self.feature_dim)
        self.norm = nn.ModuleList(nn.InstanceNorm2d(s, affine=True) for s in self.block_sz)
        self.relu = nn.ReLU(inplace=True)
        self.crop = crop
        self.fc = nn.Linear(self.feature_dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        n, _, h, w_ = x.shape
        x = torch.cat((x, x.new_zeros(n, self.dim - x.shape[1], h, w_)), dim=1)
        w = self.graph.get_weight()
        for i, sz in enumerate(self.block_sz):
            lo, hi = self.block_rng[i], self.block_rng[i + 1]
            x_active = x[:, :sz]
            x_active = self.norm[i](x_active)
            x_active = self.relu(x_active)
            x_active = F.conv2d(x_active, self.conv.weight[lo:hi], padding=1, groups=sz)
            x_active = F.conv2d(x_active, w[hi:, lo:hi])
            x = x[:, sz:] + x_active
        top = (h - self.crop) // 2
        out = x[:, :, top : top + self.crop, top : top + self.crop].mean((2, 3))
        return self.fc(out)


class DiscreteTiny(nn.Module):
    """`cifar_tiny_discrete`: 800 nodes all-to-all, Z(t) = f(W Z(t-1)) for t = 1..T.

    Each step applies the whole 800 x 800 matrix; f (instance norm, ReLU, 3x3 conv) runs on
    the 700 non-output nodes, the 100 output nodes have no operator.
    """

    def __init__(self, classes: int = 10, crop: int = 2, steps: int = 5):
        super().__init__()
        self.dim = sum(TINY_SIZES)
        self.feature_dim = TINY_SIZES[-1]
        self.steps = steps
        self.downsample = tiny_downsample()
        self.graph = DNWGraph(self.dim, self.dim, TINY_K)
        self.conv = dwconv(self.dim - self.feature_dim)
        self.norm = nn.InstanceNorm2d(self.dim - self.feature_dim, affine=True)
        self.relu = nn.ReLU(inplace=True)
        self.crop = crop
        self.fc = nn.Linear(self.feature_dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        n, _, h, w_ = x.shape
        out = torch.cat((x, x.new_zeros(n, self.dim - x.shape[1], h, w_)), dim=1)
        w = self.graph.get_weight()
        split = self.dim - self.feature_dim
        for _ in range(self.steps):
            s = F.conv2d(out, w)
            a = self.conv(self.relu(self.norm(s[:, :split])))
            out = torch.cat((a, s[:, split:]), dim=1)
        top = (h - self.crop) // 2
        feat = out[:, split:, top : top + self.crop, top : top + self.crop].mean((2, 3))
        return self.fc(feat)


class Block(nn.Module):
    """One MobileNet stage as the authors write it: one (oup*blocks) x (inp + oup*(blocks-1))
    weight; the input nodes (BN, ReLU, strided depthwise conv) feed every later group, then
    each hidden group (BN, ReLU, depthwise conv) feeds every group after it."""

    def __init__(self, inp: int, oup: int, stride: int, blocks: int, d: float):
        super().__init__()
        self.inp, self.oup, self.blocks = inp, oup, blocks
        self.downsample = dwconv(inp, stride)
        if blocks > 1:
            self.conv = dwconv(oup * (blocks - 1))
        self.norm = nn.ModuleList(
            [nn.BatchNorm2d(inp)] + [nn.BatchNorm2d(oup) for _ in range(blocks - 1)]
        )
        self.relu = nn.ReLU(inplace=True)
        k = int(inp * oup * d**2 + (blocks - 1) * oup**2 * d**2)  # the spec's budget
        self.graph = DNWGraph(inp + oup * (blocks - 1), oup * blocks, k)

    def forward(self, x: Tensor) -> Tensor:
        w = self.graph.get_weight()
        x = self.downsample(self.relu(self.norm[0](x)))
        x = F.conv2d(x, w[:, : self.inp])
        for i in range(self.blocks - 1):
            x_active = x[:, : self.oup]
            x_active = self.relu(self.norm[i + 1](x_active))
            x_active = F.conv2d(
                x_active,
                self.conv.weight[i * self.oup : (i + 1) * self.oup],
                padding=1,
                groups=self.oup,
            )
            x_active = F.conv2d(
                x_active,
                w[(i + 1) * self.oup :, self.inp + i * self.oup : self.inp + (i + 1) * self.oup],
            )
            x = x[:, self.oup :] + x_active
        return x


class MobileNetV1Like(nn.Module):
    """`mbv1_cifar_dnw` (d = 0.225, stride 1 stem) and its ImageNet sibling (stride 2)."""

    cfg = [(32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2)]

    def __init__(self, d: float = 0.225, classes: int = 10, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, stride=stride, padding=1, bias=False)
        self.layers = nn.Sequential(*(Block(i, o, s, b, d) for i, o, s, b in self.cfg))
        self.bn = nn.BatchNorm2d(1024)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(1024, classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.conv1(x))
        out = self.pool(self.relu(self.bn(out)))
        return self.linear(out.view(out.size(0), -1))
