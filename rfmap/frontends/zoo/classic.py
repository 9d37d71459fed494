"""Classic classifiers: LeNet-5, AlexNet (torchvision and Caffe), ZF-5, VGG (torchvision and Caffe).

* AlexNet, torchvision layout: the framework names its layers in numbered sequences
  (``features.N`` / ``classifier.N``), so its activations and dropouts are listed too.
* VGG: Caffe layer names (``conv1_1`` ... ``pool5``, ``fc6``-``fc8``).  ``vgg11``-``vgg19``
  round pool sizes down as torchvision does; torchvision's 7x7 adaptive average pool before
  the classifier is left out (the fc layers see every cell either way).  ``vgg16-caffe`` is
  VGG-16 as released in Caffe (VGG_ILSVRC_16_layers, used by Fast/Faster R-CNN and FCN):
  its pools round up, so a 600x800 image gives a 38x50 conv5_3 (torchvision's 37x50).
* Models taken from Caffe prototxts (``alexnet-caffe``, ``zf5``, ``vgg16-caffe``) use
  ``ceil_mode=True`` on their pools.  At the default input sizes this changes nothing
  except for ZF-5: at 224 Caffe's pool1 gives 57 (not 56), so ZF-5's conv5 is 15 x 15,
  where a floor-rounding script prints 14.  Receptive fields, strides and paddings are the
  same either way.
* ZF-5's two within-channel LRN layers (3 x 3 windows in the py-faster-rcnn prototxt) are
  left out, as in the published receptive fields (ZF-5 conv5 139, RPN 171); with them the
  RF would grow by 2*2 + 2*8 = 20 pixels.
"""

from __future__ import annotations

from collections.abc import Callable

from rfmap.core.graph import GraphBuilder
from rfmap.core.layers import Layer, Pointwise, avgpool, conv, maxpool
from rfmap.frontends.zoo._registry import linear, register

# -- LeNet-5 -------------------------------------------------------------------------


def _lenet5(name, size):
    b = GraphBuilder(name, size)
    x = b.add("conv1", conv(5), b.input)  # C1: 32 -> 28
    x = b.add("pool1", avgpool(2, 2), x)  # S2: 28 -> 14
    x = b.add("conv2", conv(5), x)  # C3: 14 -> 10
    x = b.add("pool2", avgpool(2, 2), x)  # S4: 10 -> 5
    x = b.add("fc1", linear(), x)  # flatten + linear 400 -> 120
    x = b.add("fc2", linear(), x)
    b.add("fc3", linear(), x)
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
    x = b.add("fc6", conv(6), x)  # "fc6-conv": InnerProduct on 6x6 as a 6x6 conv
    x = b.add("fc7", conv(1), x)
    b.add("fc8", conv(1), x)
    return b.build()


def _alexnet_torchvision(name, size):
    from rfmap.core.layers import AdaptivePool  # the family's only adaptive pool: `rfmap summary vgg16` builds no such class

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
        linear(),
        Pointwise(op="relu"),
        Pointwise(op="identity"),  # Dropout
        linear(),
        Pointwise(op="relu"),
        linear(),
    ]
    for i, layer in enumerate(classifier):
        x = b.add(f"classifier.{i}", layer, x)
    return b.build()


# -- ZF-5 and VGG ----------------------------------------------------------------------


def zf5_trunk(b: GraphBuilder) -> str:
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
    zf5_trunk(b)
    return b.build()


#: convs per stage (VGG configurations A, B, D, E)
VGG_STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg_trunk(
    b: GraphBuilder,
    depth: int,
    pool: Callable[[int], Layer | None],
    norms: tuple[str, ...] = (),
    first_pad: int = 1,
) -> str:
    """conv1_1 ... conv5_x; ``pool(stage)`` is the pool after a stage, or ``None``.

    Each conv named in ``norms`` gets an L2Norm side branch ``<conv>_norm`` (SSD, S3FD).
    ``first_pad``: conv1_1's padding (100 in the FCNs).
    """
    x = b.input
    for stage, n in enumerate(VGG_STAGES[depth], start=1):
        for j in range(1, n + 1):
            pad = first_pad if (stage, j) == (1, 1) else 1
            x = b.add(f"conv{stage}_{j}", conv(3, 1, pad), x)
            if x in norms:
                b.add(f"{x}_norm", Pointwise(op="identity"), x)  # L2Norm: per position
        layer = pool(stage)
        if layer is not None:
            x = b.add(f"pool{stage}", layer, x)
    return x


def caffe_pool(stage: int) -> Layer:
    """Caffe's ``Pooling`` 2x2/2 of VGG: the output size rounds up."""
    return maxpool(2, 2, ceil_mode=True)


def _vgg(depth: int, pool: Callable[[int], Layer]):
    def build(name, size):
        b = GraphBuilder(name, size)
        x = vgg_trunk(b, depth, pool)
        x = b.add("fc6", linear(), x)
        x = b.add("fc7", linear(), x)
        b.add("fc8", linear(), x)
        return b.build()

    return build


# -- the registry ----------------------------------------------------------------------

register("lenet5", "LeNet-5 (LeCun et al. 1998): conv1 5x5, pool1 2x2/2, conv2 5x5, pool2, fc1-fc3", 32, _lenet5)
register("alexnet", "AlexNet, torchvision layout (features.N, avgpool 6x6, classifier.N)", 224, _alexnet_torchvision)
register(
    "alexnet-caffe",
    "AlexNet, Caffe bvlc_alexnet layout (conv1 11/4/0), fc6-fc8 as convolutions",
    227,
    _alexnet_caffe,
)
register("zf5", "ZF-5 conv1-conv5 (Faster R-CNN ZF prototxt, Caffe ceil pools)", 224, _zf5)
for _depth in (11, 13, 16, 19):
    register(
        f"vgg{_depth}",
        f"VGG-{_depth} (Simonyan & Zisserman 2015): conv1_1..conv5_x, pool1..pool5, fc6-fc8",
        224,
        _vgg(_depth, lambda stage: maxpool(2, 2)),
    )
del _depth
register(
    "vgg16-caffe",
    "VGG-16 as released in Caffe (Fast R-CNN, FCN): ceil-mode pools, so 600x800 gives conv5_3 38x50",
    224,
    _vgg(16, caffe_pool),
)
