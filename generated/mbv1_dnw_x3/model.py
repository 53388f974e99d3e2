"""mbv1_dnw_x3: a compact model exported by wirelang 0.1.0 from mbv1_dnw_x3.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns.
Graph `mbv1.s1`: static (sets in topological order): 96 of 96 nodes and 184 of 184 edges kept.
Graph `mbv1.s2`: static (sets in topological order): 320 of 320 nodes and 2,211 of 2,211 edges kept.
Graph `mbv1.s3`: static (sets in topological order): 640 of 640 nodes and 8,847 of 8,847 edges kept.
Graph `mbv1.s4`: static (sets in topological order): 3327 of 3328 nodes and 129,694 of 129,761 edges kept.
Graph `mbv1.s5`: static (sets in topological order): 2560 of 2560 nodes and 141,557 of 141,557 edges kept.

    import torch
    from model import load
    model = load("weights.pt")                 # eval mode
    scores = model(torch.randn(8, 3, 224, 224))    # -> 8 x 1000
"""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (3, 224, 224)
CLASSES = 1000


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


class Graph_mbv1_s1(nn.Module):
    """Graph `mbv1.s1`, static (sets in topological order): 96 of 96 nodes and 184 of 184 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(32, affine=True), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=1, padding=1, groups=32, bias=False))
        self.w_out = nn.Parameter(torch.zeros(64, 32))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:32])
        s_out = edges(s_in, self.w_out)
        return s_out


class Graph_mbv1_s2(nn.Module):
    """Graph `mbv1.s2`, static (sets in topological order): 320 of 320 nodes and 2,211 of 2,211 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(128, 64))
        self.w_out = nn.Parameter(torch.zeros(128, 192))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:64])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_out = edges(c_1, self.w_out)
        return s_out


class Graph_mbv1_s3(nn.Module):
    """Graph `mbv1.s3`, static (sets in topological order): 640 of 640 nodes and 8,847 of 8,847 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=128, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=256, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(256, 128))
        self.w_out = nn.Parameter(torch.zeros(256, 384))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:128])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_out = edges(c_1, self.w_out)
        return s_out


class Graph_mbv1_s4(nn.Module):
    """Graph `mbv1.s4`, static (sets in topological order): 3327 of 3328 nodes and 129,694 of 129,761 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=2, padding=1, groups=256, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(511, affine=True), nn.ReLU(), nn.Conv2d(511, 511, 3, stride=1, padding=1, groups=511, bias=False))
        self.op_h_2 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_3 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_4 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_5 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(511, 256))
        self.w_h_2 = nn.Parameter(torch.zeros(512, 767))
        self.w_h_3 = nn.Parameter(torch.zeros(512, 1279))
        self.w_h_4 = nn.Parameter(torch.zeros(512, 1791))
        self.w_h_5 = nn.Parameter(torch.zeros(512, 2303))
        self.w_out = nn.Parameter(torch.zeros(512, 2815))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:256])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_h_2 = self.op_h_2(edges(c_1, self.w_h_2))
        c_2 = torch.cat([s_in, s_h_1, s_h_2], 1)
        s_h_3 = self.op_h_3(edges(c_2, self.w_h_3))
        c_3 = torch.cat([s_in, s_h_1, s_h_2, s_h_3], 1)
        s_h_4 = self.op_h_4(edges(c_3, self.w_h_4))
        c_4 = torch.cat([s_in, s_h_1, s_h_2, s_h_3, s_h_4], 1)
        s_h_5 = self.op_h_5(edges(c_4, self.w_h_5))
        c_5 = torch.cat([s_in, s_h_1, s_h_2, s_h_3, s_h_4, s_h_5], 1)
        s_out = edges(c_5, self.w_out)
        return s_out


class Graph_mbv1_s5(nn.Module):
    """Graph `mbv1.s5`, static (sets in topological order): 2560 of 2560 nodes and 141,557 of 141,557 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=2, padding=1, groups=512, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(1024, affine=True), nn.ReLU(), nn.Conv2d(1024, 1024, 3, stride=1, padding=1, groups=1024, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(1024, 512))
        self.w_out = nn.Parameter(torch.zeros(1024, 1536))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:512])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_out = edges(c_1, self.w_out)
        return s_out


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.mbv1_stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1, groups=1, bias=False))
        self.mbv1_s1 = Graph_mbv1_s1()
        self.mbv1_s2 = Graph_mbv1_s2()
        self.mbv1_s3 = Graph_mbv1_s3()
        self.mbv1_s4 = Graph_mbv1_s4()
        self.mbv1_s5 = Graph_mbv1_s5()
        self.head = nn.Sequential(nn.BatchNorm2d(1024, affine=True), nn.ReLU(), nn.AdaptiveAvgPool2d(1), FlatLinear(1024, 1000, bias=True))

    def forward(self, x):
        x = self.mbv1_stem(x)
        x = self.mbv1_s1(x)
        x = self.mbv1_s2(x)
        x = self.mbv1_s3(x)
        x = self.mbv1_s4(x)
        x = self.mbv1_s5(x)
        x = self.head(x)
        return x


def load(path="weights.pt"):
    """The model with its trained weights, in eval mode."""
    model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
