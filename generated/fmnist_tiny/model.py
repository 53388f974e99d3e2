"""fmnist_tiny: a compact model exported by wirelang 0.1.0 from fmnist_tiny.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns.
Graph `tiny.body`: static (sets in topological order): 799 of 800 nodes and 31,924 of 32,000 edges kept.

    import torch
    from model import load
    model = load("weights.pt")                 # eval mode
    scores = model(torch.randn(8, 1, 28, 28))    # -> 8 x 10
"""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)
CLASSES = 10


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


def edges(x, w):
    """sum over q of w[u, q] * Z_q for every node u: a 1x1 convolution (x: N x Q x H x W, w: U x Q)."""
    return F.conv2d(x, w[:, :, None, None])


class Graph_tiny_body(nn.Module):
    """Graph `tiny.body`, static (sets in topological order): 799 of 800 nodes and 31,924 of 32,000 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.InstanceNorm2d(32, affine=True), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=1, padding=1, groups=32, bias=False))
        self.op_h1 = nn.Sequential(nn.InstanceNorm2d(191, affine=True), nn.ReLU(), nn.Conv2d(191, 191, 3, stride=1, padding=1, groups=191, bias=False))
        self.op_h2 = nn.Sequential(nn.InstanceNorm2d(192, affine=True), nn.ReLU(), nn.Conv2d(192, 192, 3, stride=1, padding=1, groups=192, bias=False))
        self.op_h3 = nn.Sequential(nn.InstanceNorm2d(192, affine=True), nn.ReLU(), nn.Conv2d(192, 192, 3, stride=1, padding=1, groups=192, bias=False))
        self.op_h4 = nn.Sequential(nn.InstanceNorm2d(92, affine=True), nn.ReLU(), nn.Conv2d(92, 92, 3, stride=1, padding=1, groups=92, bias=False))
        self.w_h1 = nn.Parameter(torch.zeros(191, 32))
        self.w_h2 = nn.Parameter(torch.zeros(192, 223))
        self.w_h3 = nn.Parameter(torch.zeros(192, 415))
        self.w_h4 = nn.Parameter(torch.zeros(92, 607))
        self.w_out = nn.Parameter(torch.zeros(100, 699))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:32])
        s_h1 = self.op_h1(edges(s_in, self.w_h1))
        c_1 = torch.cat([s_in, s_h1], 1)
        s_h2 = self.op_h2(edges(c_1, self.w_h2))
        c_2 = torch.cat([s_in, s_h1, s_h2], 1)
        s_h3 = self.op_h3(edges(c_2, self.w_h3))
        c_3 = torch.cat([s_in, s_h1, s_h2, s_h3], 1)
        s_h4 = self.op_h4(edges(c_3, self.w_h4))
        c_4 = torch.cat([s_in, s_h1, s_h2, s_h3, s_h4], 1)
        s_out = edges(c_4, self.w_out)
        return s_out


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tiny_stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, groups=1, bias=False), nn.BatchNorm2d(16, affine=True), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.Conv2d(16, 32, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(32, affine=True))
        self.tiny_body = Graph_tiny_body()
        self.tiny_head = nn.Sequential(CenterCrop(3), nn.AdaptiveAvgPool2d(1), FlatLinear(100, 10, bias=True))

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
