"""Real-size models for the benchmarks, in plain PyTorch (no torchvision or timm needed):
ResNet-50 and ResNet-152 as torchvision lays them out, an EfficientNet-B0 (Tan & Le 2019,
Table 1: MBConv blocks with squeeze-excitation and SiLU) and a ConvNeXt-T (Liu et al. 2022:
depthwise 7x7, channels-last LayerNorm and MLP, downsampling layers)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch_models  # noqa: E402


def resnet50() -> nn.Module:
    return torch_models.resnet50().eval()


def resnet152() -> nn.Module:
    return torch_models.ResNet(torch_models.Bottleneck, [3, 8, 36, 3]).eval()


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.nn.functional.silu(self.fc1(s))))


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU()]
        layers += [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
                   SqueezeExcite(mid, max(1, c_in // 4)), nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def efficientnet_b0() -> nn.Module:
    # (expand, channels, repeats, stride, kernel), Table 1 of the paper
    stages = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5), (6, 192, 4, 2, 5),
              (6, 320, 1, 1, 3)]
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU()]
    c = 32
    for expand, out, repeats, stride, kernel in stages:
        for i in range(repeats):
            layers.append(MBConv(c, out, kernel, stride if i == 0 else 1, expand))
            c = out
    layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(1280, 1000)]
    return nn.Sequential(*layers).eval()


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def convnext_tiny() -> nn.Module:
    dims, depths = (96, 192, 384, 768), (3, 3, 9, 3)
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        if i:
            layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
        layers += [torch_models.ConvNeXtBlock(dim) for _ in range(depth)]
    return nn.Sequential(*layers).eval()


class NoFx(nn.Module):
    """A ResNet-50 behind control flow on the input's shape, which torch.fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.net = torch_models.resnet50()

    def forward(self, x):
        if x.shape[-1] % 2 == 0:
            x = x * 1.0
        return self.net(x)


MODELS = {"ResNet-50": resnet50, "ResNet-152": resnet152, "EfficientNet-B0": efficientnet_b0, "ConvNeXt-T": convnext_tiny}
