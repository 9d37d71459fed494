"""ResNets: torchvision's layout and the original Caffe layout.

torchvision layout (stride on the 3 x 3 conv of a bottleneck): stem ``conv1``, ``bn1``,
``relu``, ``maxpool``; in block ``layerS.B`` the convs ``layerS.B.conv1``,
``layerS.B.conv2`` (``conv3`` in bottlenecks) and the projection ``layerS.B.downsample.0``;
the residual add is the node ``layerS.B`` (the block's output: its ReLU changes no
geometry), and an identity node ``layerS`` after the stage's last block is the stage
output, so ``analysis.layer("layer3")`` is C4.  Then ``avgpool`` and ``fc``.

``resnet50-caffe`` (KaimingHe/deep-residual-networks) puts the stride on the first 1x1
conv (``res3a_branch2a``) and uses Caffe names (``res2a`` ... ``res5c``).
"""

from __future__ import annotations

from rfmap.core.graph import GraphBuilder
from rfmap.core.layers import AdaptivePool, Merge, Pointwise, avgpool, conv, maxpool
from rfmap.frontends.zoo._registry import linear, register

RESNET_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def resnet_trunk(b: GraphBuilder, depth: int, stages: int = 4) -> str:
    """torchvision ResNet up to stage ``layer{stages}`` (stride on the 3x3 conv)."""
    kind, counts = RESNET_BLOCKS[depth]
    x = b.add("conv1", conv(7, 2, 3), b.input)
    x = b.add("bn1", Pointwise(op="bn"), x)
    x = b.add("relu", Pointwise(op="relu"), x)
    x = b.add("maxpool", maxpool(3, 2, 1), x)
    for s in range(1, stages + 1):
        for blk in range(counts[s - 1]):
            stride = 2 if (s > 1 and blk == 0) else 1
            p = f"layer{s}.{blk}"
            if kind == "basic":
                y = b.add(f"{p}.conv1", conv(3, stride, 1), x)
                y = b.add(f"{p}.conv2", conv(3, 1, 1), y)
                project = blk == 0 and s > 1
            else:
                y = b.add(f"{p}.conv1", conv(1), x)
                y = b.add(f"{p}.conv2", conv(3, stride, 1), y)
                y = b.add(f"{p}.conv3", conv(1), y)
                project = blk == 0  # channels change in every stage's first block
            short = b.add(f"{p}.downsample.0", conv(1, stride), x) if project else x
            x = b.add(p, Merge("add"), y, short)
        x = b.add(f"layer{s}", Pointwise(op="identity"), x)
    return x


def _resnet(depth):
    def build(name, size):
        b = GraphBuilder(name, size)
        x = resnet_trunk(b, depth)
        x = b.add("avgpool", AdaptivePool(1), x)
        b.add("fc", linear(), x)
        return b.build()

    return build


def _resnet50_caffe(name, size):
    """KaimingHe/deep-residual-networks ResNet-50: stride on branch2a (1x1), Caffe names."""
    b = GraphBuilder(name, size)
    x = b.add("conv1", conv(7, 2, 3), b.input)
    x = b.add("pool1", maxpool(3, 2, 0, ceil_mode=True), x)
    for stage, n in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        for blk in range(n):
            p = f"res{stage}{'abcdefghijklmnopqrstuvwxyz'[blk]}"
            stride = 2 if (stage > 2 and blk == 0) else 1
            short = b.add(f"{p}_branch1", conv(1, stride), x) if blk == 0 else x
            y = b.add(f"{p}_branch2a", conv(1, stride), x)
            y = b.add(f"{p}_branch2b", conv(3, 1, 1), y)
            y = b.add(f"{p}_branch2c", conv(1), y)
            x = b.add(p, Merge("add"), short, y)
    x = b.add("pool5", avgpool(7, 1), x)
    b.add("fc1000", linear(), x)
    return b.build()


for _depth in (18, 34, 50, 101, 152):
    register(
        f"resnet{_depth}",
        f"ResNet-{_depth}, torchvision layout (stride on the 3x3 conv), stages layer1..layer4",
        224,
        _resnet(_depth),
    )
del _depth
register(
    "resnet50-caffe",
    "ResNet-50, original Caffe layout (stride on the first 1x1 conv, res2a..res5c)",
    224,
    _resnet50_caffe,
)
