"""mbv1_dnw: a compact model exported by wirelang 0.1.0 from mbv1_dnw.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns.
Graph `mbv1.s1`: static (sets in topological order): 94 of 96 nodes and 103 of 103 edges kept.
Graph `mbv1.s2`: static (sets in topological order): 310 of 320 nodes and 1,198 of 1,244 edges kept.
Graph `mbv1.s3`: static (sets in topological order): 638 of 640 nodes and 4,952 of 4,976 edges kept.
Graph `mbv1.s4`: static (sets in topological order): 3320 of 3328 nodes and 72,696 of 72,990 edges kept.
Graph `mbv1.s5`: static (sets in topological order): 2560 of 2560 nodes and 79,626 of 79,626 edges kept.

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
    """Graph `mbv1.s1`, static (sets in topological order): 94 of 96 nodes and 103 of 103 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(30, affine=True), nn.ReLU(), nn.Conv2d(30, 30, 3, stride=1, padding=1, groups=30, bias=False))
        self.w_out = nn.Parameter(torch.zeros(64, 30))
        self.register_buffer("idx_in", torch.zeros(30, dtype=torch.long))

    def forward(self, x):
        s_in = self.op_in(x.index_select(1, self.idx_in))
        s_out = edges(s_in, self.w_out)
        return s_out


class Graph_mbv1_s2(nn.Module):
    """Graph `mbv1.s2`, static (sets in topological order): 310 of 320 nodes and 1,198 of 1,244 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(118, affine=True), nn.ReLU(), nn.Conv2d(118, 118, 3, stride=1, padding=1, groups=118, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(118, 64))
        self.w_out = nn.Parameter(torch.zeros(128, 182))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:64])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_out = edges(c_1, self.w_out)
        return s_out


class Graph_mbv1_s3(nn.Module):
    """Graph `mbv1.s3`, static (sets in topological order): 638 of 640 nodes and 4,952 of 4,976 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=128, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(254, affine=True), nn.ReLU(), nn.Conv2d(254, 254, 3, stride=1, padding=1, groups=254, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(254, 128))
        self.w_out = nn.Parameter(torch.zeros(256, 382))

    def forward(self, x):
        s_in = self.op_in(x[:, 0:128])
        s_h_1 = self.op_h_1(edges(s_in, self.w_h_1))
        c_1 = torch.cat([s_in, s_h_1], 1)
        s_out = edges(c_1, self.w_out)
        return s_out


class Graph_mbv1_s4(nn.Module):
    """Graph `mbv1.s4`, static (sets in topological order): 3320 of 3328 nodes and 72,696 of 72,990 edges kept."""

    def __init__(self):
        super().__init__()
        self.op_in = nn.Sequential(nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=2, padding=1, groups=256, bias=False))
        self.op_h_1 = nn.Sequential(nn.BatchNorm2d(504, affine=True), nn.ReLU(), nn.Conv2d(504, 504, 3, stride=1, padding=1, groups=504, bias=False))
        self.op_h_2 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_3 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_4 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.op_h_5 = nn.Sequential(nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=512, bias=False))
        self.w_h_1 = nn.Parameter(torch.zeros(504, 256))
        self.w_h_2 = nn.Parameter(torch.zeros(512, 760))
        self.w_h_3 = nn.Parameter(torch.zeros(512, 1272))
        self.w_h_4 = nn.Parameter(torch.zeros(512, 1784))
        self.w_h_5 = nn.Parameter(torch.zeros(512, 2296))
        self.w_out = nn.Parameter(torch.zeros(512, 2808))

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
    """Graph `mbv1.s5`, static (sets in topological order): 2560 of 2560 nodes and 79,626 of 79,626 edges kept."""

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
