"""Model zoo: architectures only (no weights), as :class:`~rfmap.core.graph.Graph` objects.

``names()`` lists the CLI names, ``entries()`` gives ``(name, description, input_size)``
for ``rfmap zoo``, ``has(name)`` / ``get(name)`` look one up (case-insensitive; ``_`` and
``-`` are interchangeable).  Each graph carries its usual input size as ``input_size``.

Conventions (pixel-index coordinates, (H, W) order, as everywhere in rfmap):

* Only layers that matter to geometry are listed, plus the ones people look up by name.
  Activations, batch norms and dropouts change no geometry; they are left out except
  where the source framework names them in a numbered sequence (torchvision AlexNet's
  ``features.N`` / ``classifier.N``) or where the torchvision stem names them
  (``bn1``, ``relu`` in ResNets).
* VGG: Caffe layer names, torchvision rounding (floor); torchvision's 7x7 adaptive average
  pool before the classifier is left out (the fc layers see every cell either way).
* ``flatten`` + fully connected layers are global ops (``GlobalOp(op="linear")``): their RF
  is the whole input.  Where a model's own source runs its fc layers as convolutions
  (seed 003's AlexNet ``fc6-conv``), they are convolutions.
* Caffe pooling rounds the output size up (``ceil_mode``); models taken from Caffe
  prototxts (``alexnet-caffe``, ``zf5``, ``rpn-zf``, ``rpn-vgg16``, ``resnet50-caffe``,
  ``s3fd``) use ``ceil_mode=True`` on their pools.  At the default input sizes this
  changes nothing except for ZF-5: at 224 Caffe's pool1 gives 57 (not 56), so ZF-5's
  conv5 is 15 x 15, where seed 000's floor-rounding script prints 14.  Receptive fields,
  strides and paddings are the same either way.
* ZF-5's two within-channel LRN layers (3 x 3 windows in the py-faster-rcnn prototxt) are
  left out, as in the published receptive fields (ZF-5 conv5 139, RPN 171); with them the
  RF would grow by 2*2 + 2*8 = 20 pixels.
* Two-headed detectors (RPN: ``rpn_cls_score`` and ``rpn_bbox_pred``; SSD/S3FD:
  ``*_mbox_loc`` and ``*_mbox_conf`` per source layer) keep every head as a branch; the
  graph's last node (the analysis' output) is the last head listed.

ResNets (torchvision layout, stride on the 3 x 3 conv of a bottleneck): stem ``conv1``,
``bn1``, ``relu``, ``maxpool``; in block ``layerS.B`` the convs ``layerS.B.conv1``,
``layerS.B.conv2`` (``conv3`` in bottlenecks) and the projection ``layerS.B.downsample.0``;
the residual add is the node ``layerS.B`` (the block's output: its ReLU changes no
geometry), and an identity node ``layerS`` after the stage's last block is the stage
output, so ``analysis.layer("layer3")`` is C4.  Then ``avgpool`` and ``fc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from rfmap.errors import RFMapError
from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import AdaptivePool, GlobalOp, Layer, Merge, Pointwise, avgpool, conv, maxpool

__all__ = ["ZooEntry", "entries", "get", "has", "names"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    input_size: tuple[int, int]
    build: Callable[[], Graph]


_ZOO: dict[str, ZooEntry] = {}


def _register(name: str, description: str, input_size: int, build: Callable[[str, tuple[int, int]], Graph]) -> None:
    size = (input_size, input_size)
    _ZOO[name] = ZooEntry(name, description, size, lambda: build(name, size))


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def names() -> tuple[str, ...]:
    """The CLI names of every zoo entry, in listing order."""
    return tuple(_ZOO)


def entries() -> tuple[tuple[str, str, tuple[int, int]], ...]:
    """``(name, description, default input size (H, W))`` for every entry, for ``rfmap zoo``."""
    return tuple((e.name, e.description, e.input_size) for e in _ZOO.values())


def has(name: str) -> bool:
    return isinstance(name, str) and _key(name) in _ZOO


def get(name: str) -> Graph:
    """The graph of a zoo entry, with its usual input size as ``input_size``."""
    if not has(name):
        raise RFMapError(f"'{name}' is not in the zoo (known: {', '.join(_ZOO)})")
    return _build(_key(name))


@lru_cache(maxsize=None)
def _build(key: str) -> Graph:
    return _ZOO[key].build()


def _linear() -> Layer:
    return GlobalOp(op="linear")


# -- LeNet-5 -------------------------------------------------------------------------


def _lenet5(name, size):
    b = GraphBuilder(name, size)
    x = b.add("conv1", conv(5), b.input)  # C1: 32 -> 28
    x = b.add("pool1", avgpool(2, 2), x)  # S2: 28 -> 14
    x = b.add("conv2", conv(5), x)  # C3: 14 -> 10
    x = b.add("pool2", avgpool(2, 2), x)  # S4: 10 -> 5
    x = b.add("fc1", _linear(), x)  # flatten + linear 400 -> 120
    x = b.add("fc2", _linear(), x)
    b.add("fc3", _linear(), x)
    return b.build()


# -- AlexNet ---------------------------------------------------------------------------


def _alexnet_caffe(name, size):
    # bvlc_alexnet: LRN (across channels) and in-place ReLUs change no geometry and are left out.
    b = GraphBuilder(name, size)
    x = b.add("conv1", conv(11, 4, 0), b.input)
    x = b.add("pool1", maxpool(3, 2, ceil_mode=True), x)
    x = b.add("conv2", conv(5, 1, 2), x)
    x = b.add("pool2", maxpool(3, 2, ceil_mode=True), x)
    x = b.add("conv3", conv(3, 1, 1), x)
    x = b.add("conv4", conv(3, 1, 1), x)
    x = b.add("conv5", conv(3, 1, 1), x)
    x = b.add("pool5", maxpool(3, 2, ceil_mode=True), x)
    x = b.add("fc6", conv(6), x)  # seed 003's "fc6-conv": InnerProduct on 6x6 as a 6x6 conv
    x = b.add("fc7", conv(1), x)
    b.add("fc8", conv(1), x)
    return b.build()


def _alexnet_torchvision(name, size):
    b = GraphBuilder(name, size)
    seq = [
        conv(11, 4, 2),
        Pointwise(op="relu"),
        maxpool(3, 2),
        conv(5, 1, 2),
        Pointwise(op="relu"),
        maxpool(3, 2),
        conv(3, 1, 1),
        Pointwise(op="relu"),
        conv(3, 1, 1),
        Pointwise(op="relu"),
        conv(3, 1, 1),
        Pointwise(op="relu"),
        maxpool(3, 2),
    ]
    x = b.input
    for i, layer in enumerate(seq):
        x = b.add(f"features.{i}", layer, x)
    x = b.add("avgpool", AdaptivePool(6), x)
    classifier = [
        Pointwise(op="identity"),  # Dropout
        _linear(),
        Pointwise(op="relu"),
        Pointwise(op="identity"),  # Dropout
        _linear(),
        Pointwise(op="relu"),
        _linear(),
    ]
    for i, layer in enumerate(classifier):
        x = b.add(f"classifier.{i}", layer, x)
    return b.build()


# -- ZF-5 and VGG ----------------------------------------------------------------------


def _zf5_trunk(b: GraphBuilder) -> str:
    """ZF-5 conv1..conv5 as in py-faster-rcnn's ZF prototxt (Caffe pooling: ceil)."""
    x = b.add("conv1", conv(7, 2, 3), b.input)
    x = b.add("pool1", maxpool(3, 2, 1, ceil_mode=True), x)
    x = b.add("conv2", conv(5, 2, 2), x)
    x = b.add("pool2", maxpool(3, 2, 1, ceil_mode=True), x)
    x = b.add("conv3", conv(3, 1, 1), x)
    x = b.add("conv4", conv(3, 1, 1), x)
    return b.add("conv5", conv(3, 1, 1), x)


def _zf5(name, size):
    b = GraphBuilder(name, size)
    _zf5_trunk(b)
    return b.build()


#: convs per stage (VGG configurations A, B, D, E)
_VGG_STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def _vgg_trunk(
    b: GraphBuilder, depth: int, pool: Callable[[int], Layer | None], norms: tuple[str, ...] = ()
) -> str:
    """conv1_1 ... conv5_x; ``pool(stage)`` is the pool after a stage, or ``None``.

    Each conv named in ``norms`` gets an L2Norm side branch ``<conv>_norm`` (SSD, S3FD).
    """
    x = b.input
    for stage, n in enumerate(_VGG_STAGES[depth], start=1):
        for j in range(1, n + 1):
            x = b.add(f"conv{stage}_{j}", conv(3, 1, 1), x)
            if x in norms:
                b.add(f"{x}_norm", Pointwise(op="identity"), x)  # L2Norm: per position
        layer = pool(stage)
        if layer is not None:
            x = b.add(f"pool{stage}", layer, x)
    return x


def _vgg(depth):
    def build(name, size):
        b = GraphBuilder(name, size)
        x = _vgg_trunk(b, depth, lambda stage: maxpool(2, 2))
        x = b.add("fc6", _linear(), x)
        x = b.add("fc7", _linear(), x)
        b.add("fc8", _linear(), x)
        return b.build()

    return build


# -- ResNet ----------------------------------------------------------------------------

_RESNET_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _resnet_trunk(b: GraphBuilder, depth: int, stages: int = 4) -> str:
    """torchvision ResNet up to stage ``layer{stages}`` (stride on the 3x3 conv)."""
    kind, counts = _RESNET_BLOCKS[depth]
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
        x = _resnet_trunk(b, depth)
        x = b.add("avgpool", AdaptivePool(1), x)
        b.add("fc", _linear(), x)
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
    b.add("fc1000", _linear(), x)
    return b.build()


# -- detectors -------------------------------------------------------------------------


def _rpn_heads(b: GraphBuilder, x: str) -> str:
    """Faster R-CNN RPN: a 3x3 conv, then two 1x1 heads (``rpn_conv/3x3`` in the prototxts)."""
    x = b.add("rpn_conv", conv(3, 1, 1), x)
    b.add("rpn_cls_score", conv(1), x)
    return b.add("rpn_bbox_pred", conv(1), x)


def _rpn_zf(name, size):
    b = GraphBuilder(name, size)
    _rpn_heads(b, _zf5_trunk(b))
    return b.build()


def _rpn_vgg16(name, size):
    # py-faster-rcnn VGG16: Caffe pools round up (600x800 -> conv5_3 38x50), no pool5.
    b = GraphBuilder(name, size)
    x = _vgg_trunk(b, 16, lambda stage: maxpool(2, 2, ceil_mode=True) if stage < 5 else None)
    _rpn_heads(b, x)
    return b.build()


def _rpn_resnet_c4(depth):
    def build(name, size):
        b = GraphBuilder(name, size)
        _rpn_heads(b, _resnet_trunk(b, depth, stages=3))
        return b.build()

    return build


def _multibox_heads(b: GraphBuilder, sources: list[tuple[str, str]]) -> None:
    """A 3x3 ``_mbox_loc`` and ``_mbox_conf`` conv on each source layer."""
    for prefix, src in sources:
        b.add(f"{prefix}_mbox_loc", conv(3, 1, 1), src)
        b.add(f"{prefix}_mbox_conf", conv(3, 1, 1), src)


def _ssd300(name, size):
    # SSD300 (Liu et al. 2016; layer names as in the paper's figure 2, layout as ssd.pytorch).
    def pool(stage):
        if stage == 3:
            return maxpool(2, 2, ceil_mode=True)  # 75 -> 38
        if stage == 5:
            return maxpool(3, 1, 1)
        return maxpool(2, 2)

    b = GraphBuilder(name, size)
    x = _vgg_trunk(b, 16, pool, norms=("conv4_3",))
    x = b.add("fc6", conv(3, 1, 6, dilation=6), x)
    fc7 = b.add("fc7", conv(1), x)
    extras = [
        ("conv8_1", conv(1)),
        ("conv8_2", conv(3, 2, 1)),
        ("conv9_1", conv(1)),
        ("conv9_2", conv(3, 2, 1)),
        ("conv10_1", conv(1)),
        ("conv10_2", conv(3, 1, 0)),
        ("conv11_1", conv(1)),
        ("conv11_2", conv(3, 1, 0)),
    ]
    x = fc7
    for layer_name, layer in extras:
        x = b.add(layer_name, layer, x)
    _multibox_heads(
        b,
        [
            ("conv4_3_norm", "conv4_3_norm"),
            ("fc7", fc7),
            ("conv8_2", "conv8_2"),
            ("conv9_2", "conv9_2"),
            ("conv10_2", "conv10_2"),
            ("conv11_2", "conv11_2"),
        ],
    )
    return b.build()


def _s3fd(name, size):
    # S3FD (Zhang et al. 2017): VGG16 with pool5, fc6 3x3 and fc7 1x1 as convs, two extra
    # stride-2 stages; 3x3 heads on conv3_3, conv4_3, conv5_3 (L2-normalized), fc7,
    # conv6_2, conv7_2.  Caffe pools round up (no effect at 640).
    b = GraphBuilder(name, size)
    norms = ("conv3_3", "conv4_3", "conv5_3")
    x = _vgg_trunk(b, 16, lambda stage: maxpool(2, 2, ceil_mode=True), norms=norms)
    x = b.add("fc6", conv(3, 1, 1), x)
    fc7 = b.add("fc7", conv(1), x)
    x = b.add("conv6_1", conv(1), fc7)
    x = b.add("conv6_2", conv(3, 2, 1), x)
    x = b.add("conv7_1", conv(1), x)
    x = b.add("conv7_2", conv(3, 2, 1), x)
    _multibox_heads(
        b,
        [(f"{s}_norm", f"{s}_norm") for s in norms] + [("fc7", fc7), ("conv6_2", "conv6_2"), ("conv7_2", "conv7_2")],
    )
    return b.build()


# -- the registry ----------------------------------------------------------------------

_register("lenet5", "LeNet-5 (LeCun et al. 1998): conv1 5x5, pool1 2x2/2, conv2 5x5, pool2, fc1-fc3", 32, _lenet5)
_register("alexnet", "AlexNet, torchvision layout (features.N, avgpool 6x6, classifier.N)", 224, _alexnet_torchvision)
_register(
    "alexnet-caffe",
    "AlexNet, Caffe bvlc_alexnet layout (conv1 11/4/0), fc6-fc8 as convolutions (seed 003)",
    227,
    _alexnet_caffe,
)
_register("zf5", "ZF-5 conv1-conv5 (Faster R-CNN ZF prototxt, Caffe ceil pools; seed 000's layer list)", 224, _zf5)
for _depth in (11, 13, 16, 19):
    _register(
        f"vgg{_depth}",
        f"VGG-{_depth} (Simonyan & Zisserman 2015): conv1_1..conv5_x, pool1..pool5, fc6-fc8",
        224,
        _vgg(_depth),
    )
for _depth in (18, 34, 50, 101, 152):
    _register(
        f"resnet{_depth}",
        f"ResNet-{_depth}, torchvision layout (stride on the 3x3 conv), stages layer1..layer4",
        224,
        _resnet(_depth),
    )
_register(
    "resnet50-caffe",
    "ResNet-50, original Caffe layout (stride on the first 1x1 conv, res2a..res5c)",
    224,
    _resnet50_caffe,
)
_register("rpn-zf", "Faster R-CNN RPN on ZF-5 conv5: rpn_conv 3x3, rpn_cls_score / rpn_bbox_pred", 224, _rpn_zf)
_register("rpn-vgg16", "Faster R-CNN RPN on VGG-16 conv5_3: rpn_conv 3x3, two 1x1 heads", 224, _rpn_vgg16)
_register(
    "rpn-resnet50-c4",
    "Faster R-CNN RPN on ResNet-50 C4 (torchvision layer3): rpn_conv 3x3, two 1x1 heads",
    224,
    _rpn_resnet_c4(50),
)
_register(
    "rpn-resnet101-c4",
    "Faster R-CNN / R-FCN RPN on ResNet-101 C4 (torchvision layer3): rpn_conv 3x3, two 1x1 heads",
    224,
    _rpn_resnet_c4(101),
)
_register(
    "ssd300",
    "SSD300 on VGG-16 (fc6 3x3 dilation 6, conv8_1..conv11_2), 3x3 loc/conf heads on 6 maps",
    300,
    _ssd300,
)
_register(
    "s3fd",
    "S3FD face detector on VGG-16, 3x3 loc/conf heads on conv3_3..conv7_2 (strides 4..128)",
    640,
    _s3fd,
)
del _depth
