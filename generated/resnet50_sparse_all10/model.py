"""resnet50_sparse_all10: a compact model exported by wirelang 0.1.0 from resnet50_sparse_all10.wire.

Imports only torch. Dead nodes are removed, each learned wiring's masks are folded into its
weights, and every set-to-set weight block keeps only its live rows and columns.
Sparse layers are ordinary conv / linear layers whose weights hold zeros outside the mask.

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
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        self.resnet_layer1_first = Residual(nn.Sequential(nn.Conv2d(64, 64, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True)), nn.Sequential(nn.Conv2d(64, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True)), nn.Sequential(nn.ReLU()))
        self.resnet_layer1_block_0 = Residual(nn.Sequential(nn.Conv2d(256, 64, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer1_block_1 = Residual(nn.Sequential(nn.Conv2d(256, 64, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(64, affine=True), nn.ReLU(), nn.Conv2d(64, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer2_first = Residual(nn.Sequential(nn.Conv2d(256, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=2, padding=1, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True)), nn.Sequential(nn.Conv2d(256, 512, 1, stride=2, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True)), nn.Sequential(nn.ReLU()))
        self.resnet_layer2_block_0 = Residual(nn.Sequential(nn.Conv2d(512, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer2_block_1 = Residual(nn.Sequential(nn.Conv2d(512, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer2_block_2 = Residual(nn.Sequential(nn.Conv2d(512, 128, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 128, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(128, affine=True), nn.ReLU(), nn.Conv2d(128, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_first = Residual(nn.Sequential(nn.Conv2d(512, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=2, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Sequential(nn.Conv2d(512, 1024, 1, stride=2, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_block_0 = Residual(nn.Sequential(nn.Conv2d(1024, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_block_1 = Residual(nn.Sequential(nn.Conv2d(1024, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_block_2 = Residual(nn.Sequential(nn.Conv2d(1024, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_block_3 = Residual(nn.Sequential(nn.Conv2d(1024, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer3_block_4 = Residual(nn.Sequential(nn.Conv2d(1024, 256, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 256, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(256, affine=True), nn.ReLU(), nn.Conv2d(256, 1024, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(1024, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer4_first = Residual(nn.Sequential(nn.Conv2d(1024, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=2, padding=1, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 2048, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(2048, affine=True)), nn.Sequential(nn.Conv2d(1024, 2048, 1, stride=2, padding=0, groups=1, bias=False), nn.BatchNorm2d(2048, affine=True)), nn.Sequential(nn.ReLU()))
        self.resnet_layer4_block_0 = Residual(nn.Sequential(nn.Conv2d(2048, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 2048, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(2048, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_layer4_block_1 = Residual(nn.Sequential(nn.Conv2d(2048, 512, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 512, 3, stride=1, padding=1, groups=1, bias=False), nn.BatchNorm2d(512, affine=True), nn.ReLU(), nn.Conv2d(512, 2048, 1, stride=1, padding=0, groups=1, bias=False), nn.BatchNorm2d(2048, affine=True)), nn.Identity(), nn.Sequential(nn.ReLU()))
        self.resnet_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), FlatLinear(2048, 1000, bias=True))

    def forward(self, x):
        x = self.stem(x)
        x = self.resnet_layer1_first(x)
        x = self.resnet_layer1_block_0(x)
        x = self.resnet_layer1_block_1(x)
        x = self.resnet_layer2_first(x)
        x = self.resnet_layer2_block_0(x)
        x = self.resnet_layer2_block_1(x)
        x = self.resnet_layer2_block_2(x)
        x = self.resnet_layer3_first(x)
        x = self.resnet_layer3_block_0(x)
        x = self.resnet_layer3_block_1(x)
        x = self.resnet_layer3_block_2(x)
        x = self.resnet_layer3_block_3(x)
        x = self.resnet_layer3_block_4(x)
        x = self.resnet_layer4_first(x)
        x = self.resnet_layer4_block_0(x)
        x = self.resnet_layer4_block_1(x)
        x = self.resnet_head(x)
        return x


def load(path="weights.pt"):
    """The model with its trained weights, in eval mode."""
    model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
