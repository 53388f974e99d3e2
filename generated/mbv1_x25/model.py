"""mbv1_x25: a compact model exported by wirelang 0.1.0 from mbv1_x25.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns.

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


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.mbv1_stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1, bias=False), nn.BatchNorm2d(8, affine=True), nn.ReLU())
        self.mbv1_b1_block = nn.Sequential(nn.Conv2d(8, 8, 3, stride=1, padding=1, groups=8, bias=False), nn.BatchNorm2d(8, affine=True), nn.ReLU(), nn.Conv2d(8, 16, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(16, affine=True), nn.ReLU())
        self.mbv1_b2_block = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16, affine=True), nn.ReLU(), nn.Conv2d(16, 32, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(32, affine=True), nn.ReLU())
        self.mbv1_b3_block = nn.Sequential(nn.Conv2d(32, 32, 3, stride=1, padding=1, groups=32, bias=False), nn.BatchNorm2d(32, affine=True), nn.ReLU(), nn.Conv2d(32, 32, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(32, affine=True), nn.ReLU())
        self.mbv1_b4_block = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False), nn.BatchNorm2d(32, affine=True), nn.ReLU(), nn.Conv2d(32, 64, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU())
        self.mbv1_b5_block = nn.Sequential(nn.Conv2d(64, 64, 3, stride=1, padding=1, groups=64, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU())
        self.mbv1_b6_block = nn.Sequential(nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b7_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b8_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b9_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b10_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b11_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU())
        self.mbv1_b12_block = nn.Sequential(nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=128, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU())
        self.mbv1_b13_block = nn.Sequential(nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=256, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU())
        self.mbv1_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), FlatLinear(256, 1000, bias=True))

    def forward(self, x):
        x = self.mbv1_stem(x)
        x = self.mbv1_b1_block(x)
        x = self.mbv1_b2_block(x)
        x = self.mbv1_b3_block(x)
        x = self.mbv1_b4_block(x)
        x = self.mbv1_b5_block(x)
        x = self.mbv1_b6_block(x)
        x = self.mbv1_b7_block(x)
        x = self.mbv1_b8_block(x)
        x = self.mbv1_b9_block(x)
        x = self.mbv1_b10_block(x)
        x = self.mbv1_b11_block(x)
        x = self.mbv1_b12_block(x)
        x = self.mbv1_b13_block(x)
        x = self.mbv1_head(x)
        return x


def load(path="weights.pt"):
    """The model with its trained weights, in eval mode."""
    model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
