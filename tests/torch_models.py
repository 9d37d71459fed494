"""PyTorch models mirroring real families, written out as their authors write them.

Used by tests/test_torch_frontend.py and benchmarks/bench_torch_frontend.py.  Nothing here
needs torchvision: the ResNets follow torchvision's layout (stride on the 3x3 conv of the
bottleneck, ``downsample`` = 1x1 conv + BN) exactly, with a ``width`` divisor so that
gradient probes can run a thin copy with the same geometry.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------
# ResNet (torchvision layout)
# ---------------------------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet, with channel counts divided by ``width``."""

    def __init__(self, block, layers, num_classes=1000, width=1):
        super().__init__()
        self.inplanes = 64 // width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64 // width, layers[0])
        self.layer2 = self._make_layer(block, 128 // width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256 // width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512 // width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 // width * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet50(width: int = 1, num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width)


def resnet18(width: int = 1, num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, width)


def resnet34(width: int = 1, num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, width)


class ResNetFeatures(nn.Module):
    """A ResNet without its head (global pooling, fc): the output is layer4's map."""

    def __init__(self, net: ResNet):
        super().__init__()
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------------------------------
# Inception-style concat
# ---------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    """torchvision's InceptionA: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool3-1x1, concatenated."""

    def __init__(self, cin, pool_features=8):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 8, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 6, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(6, 8, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 8, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(8, 8, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(8, 8, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        outputs = [branch1x1, branch5x5, branch3x3dbl, branch_pool]
        return torch.cat(outputs, 1)


class InceptionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = BasicConv2d(3, 16, kernel_size=3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.mixed = InceptionA(16)
        self.mixed2 = InceptionA(32)

    def forward(self, x):
        return self.mixed2(self.mixed(self.pool(self.stem(x))))


# ---------------------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------------------


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1))
        layers.extend([
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Mini(nn.Module):
    """MobileNetV2's first stages: stem s2, t=1 block, two t=6 blocks s2 + residual."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            ConvBNReLU(3, 8, stride=2),
            InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 12, 2, 6),
            InvertedResidual(12, 12, 1, 6),
            InvertedResidual(12, 16, 2, 6),
            InvertedResidual(16, 16, 1, 6),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 10))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---------------------------------------------------------------------------------------
# DenseNet
# ---------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size=2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, inputs):
        prev = [inputs] if isinstance(inputs, torch.Tensor) else inputs
        concated = torch.cat(prev, 1)
        out = self.conv1(self.relu1(self.norm1(concated)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, cin, growth):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth))

    def forward(self, init_features):
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNetMini(nn.Module):
    def __init__(self, growth=4):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 8, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(8))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        self.features.add_module("denseblock1", DenseBlock(3, 8, growth))
        self.features.add_module("transition1", Transition(8 + 3 * growth, 10))
        self.features.add_module("denseblock2", DenseBlock(2, 10, growth))

    def forward(self, x):
        return F.relu(self.features(x))


# ---------------------------------------------------------------------------------------
# U-Net (transposed convs, skip concat, F.pad to match)
# ---------------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    """milesial/Pytorch-UNet's layout, 3 levels, thin."""

    def __init__(self, n_channels=3, n_classes=2, base=4):
        super().__init__()
        self.inc = DoubleConv(n_channels, base)
        self.down1 = Down(base, base * 2)
        self.down2 = Down(base * 2, base * 4)
        self.down3 = Down(base * 4, base * 8)
        self.up1 = Up(base * 8, base * 4)
        self.up2 = Up(base * 4, base * 2)
        self.up3 = Up(base * 2, base)
        self.outc = nn.Conv2d(base, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        return self.outc(x)


# ---------------------------------------------------------------------------------------
# FPN (lateral 1x1, nearest upsampling to the lateral's size, add, 3x3 output convs)
# ---------------------------------------------------------------------------------------


class FPN(nn.Module):
    def __init__(self, channels=(8, 16, 32), out=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(channels[0], channels[0], 3, 2, 1), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(channels[0], channels[1], 3, 2, 1), nn.ReLU())
        self.c5 = nn.Sequential(nn.Conv2d(channels[1], channels[2], 3, 2, 1), nn.ReLU())
        self.inner_blocks = nn.ModuleList([nn.Conv2d(c, out, 1) for c in channels])
        self.layer_blocks = nn.ModuleList([nn.Conv2d(out, out, 3, padding=1) for _ in channels])

    def forward(self, x):
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        feats = [c3, c4, c5]
        last_inner = self.inner_blocks[-1](feats[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(feats) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](feats[idx])
            feat_shape = inner_lateral.shape[-2:]
            inner_top_down = F.interpolate(last_inner, size=feat_shape, mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        return {"p3": results[0], "p4": results[1], "p5": results[2]}


# ---------------------------------------------------------------------------------------
# DeepLab ASPP (dilated 3x3 branches + image pooling branch, bilinear upsampling)
# ---------------------------------------------------------------------------------------


class ASPPConv(nn.Sequential):
    def __init__(self, cin, cout, dilation):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ASPPPooling(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin, rates=(2, 4, 6), cout=8, pooling=True):
        super().__init__()
        modules = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())]
        modules += [ASPPConv(cin, cout, r) for r in rates]
        if pooling:
            modules.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(nn.Conv2d(len(modules) * cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        res = [conv(x) for conv in self.convs]
        return self.project(torch.cat(res, dim=1))


class DeepLabMini(nn.Module):
    def __init__(self, pooling=True, num_classes=3):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.aspp = ASPP(8, pooling=pooling)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        size = x.shape[-2:]
        out = self.head(self.aspp(self.backbone(x)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------
# Squeeze-and-excitation
# ---------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.se = SqueezeExcitation(8)
        self.conv2 = nn.Conv2d(8, 8, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.se(torch.relu(self.conv1(x))))


# ---------------------------------------------------------------------------------------
# Functional style: parameters and F.* calls, F.pad, torch.cat, slicing
# ---------------------------------------------------------------------------------------


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(6, 3, 5, 5) * 0.1)
        self.w2 = nn.Parameter(torch.randn(6, 6, 3, 3) * 0.1)
        self.w3 = nn.Parameter(torch.randn(4, 12, 3, 3) * 0.1)
        self.b3 = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        y = F.conv2d(x, self.w1, stride=2, padding=2)           # 5x5 s2 p2
        y = F.relu(y)
        y = F.max_pool2d(y, 2)                                   # 2x2 s2
        z = F.pad(y, (1, 1, 1, 1), mode="replicate")              # replicate pad 1
        z = F.conv2d(z, self.w2)                                  # 3x3 valid
        y = torch.cat([y, z], dim=1)
        y = y[:, :, 1:-1, ::2]                                    # crop rows, every other column
        y = F.conv2d(y, self.w3, self.b3, padding=1, dilation=1)
        return F.interpolate(y, scale_factor=2, mode="nearest")


# ---------------------------------------------------------------------------------------
# more layouts: ConvNeXt block (permute + LayerNorm over channels), channel shuffle,
# pixel shuffle, attention over positions
# ---------------------------------------------------------------------------------------


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x):
        inp = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return inp + x


class ConvNeXtMini(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.stages = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))

    def forward(self, x):
        return self.stages(self.stem(x))


def channel_shuffle(x, groups: int):
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit (stride 1): split channels, branch, concat, channel shuffle."""

    def __init__(self, c):
        super().__init__()
        half = c // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetMini(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage = nn.Sequential(ShuffleBlock(8), ShuffleBlock(8))

    def forward(self, x):
        return self.stage(self.maxpool(self.conv1(x)))


class SubPixelNet(nn.Module):
    """ESPCN-style super-resolution: convs, then PixelShuffle(2); and PixelUnshuffle in."""

    def __init__(self):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv1 = nn.Conv2d(12, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 3 * 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(4)

    def forward(self, x):
        return self.shuffle(self.conv2(torch.tanh(self.conv1(self.unshuffle(x)))))


class AttentionNet(nn.Module):
    """A hybrid: conv stem, self-attention over the positions, back to a map, 1x1 head."""

    def __init__(self, dim=8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Conv2d(dim, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)           # (B, HW, C)
        t, _ = self.attn(t, t, t)
        x = x + t.transpose(1, 2).reshape(b, c, h, w)
        return self.head(x)


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.gn(self.conv1(x))))


class Conv1dNet(nn.Module):
    """A 1-D audio-style stack: strided convs, dilation, max pooling."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, 8, 9, stride=4, padding=4), nn.ReLU(),
            nn.Conv1d(8, 8, 3, dilation=2, padding=2), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 8, 3, padding=1),
        )

    def forward(self, x):
        return self.net(x)


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(2, 4, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.conv2 = nn.Conv3d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.pool(F.relu(self.conv1(x))))


# ---------------------------------------------------------------------------------------
# a model torch.fx cannot trace (Python control flow on a shape): torch.export reads it
# ---------------------------------------------------------------------------------------


class ShapeBranchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv1(x)
        if x.shape[-1] % 2 == 1:  # fx: a Proxy cannot be used as a bool
            x = F.pad(x, (0, 1, 0, 0))
        return self.conv2(x)
