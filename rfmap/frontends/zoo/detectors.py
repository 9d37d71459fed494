"""Single-map and multi-map detectors: Faster R-CNN RPNs, SSD300, S3FD, LFFD.

* Two-headed detectors (RPN: ``rpn_cls_score`` and ``rpn_bbox_pred``; SSD/S3FD:
  ``*_mbox_loc`` and ``*_mbox_conf`` per source layer) keep every head as a branch; the
  graph's last node (the analysis' output) is the last head listed.
* LFFD v1 (He et al. 2019, "LFFD: A Light and Fast Face Detector for Edge Devices"; the
  8-branch 640x640 net ``symbol_10_560_25L_8scales_v1`` of the authors' repository): 25 3x3
  convs; the downsampling convs ``conv1``, ``conv2``, ``conv11``, ``conv16``, ``conv19`` are
  stride 2 without padding (valid), the others stride 1 pad 1 in pairs with a residual add
  ``convN_add`` (the symbol file's ``convN = convM + convN``).  Each of the 8 loss branches
  (on ``conv8_add``, ``conv10_add``, ``conv13_add``, ``conv15_add``, ``conv18_add``,
  ``conv21_add``, ``conv23_add``, ``conv25_add``) is ``convN_1`` (1x1), then
  ``convN_2_score`` -> ``convN_3_score`` and ``convN_2_bbox`` -> ``convN_3_bbox`` (1x1);
  the graph's ``outputs`` are the 16 heads in the deploy symbol's order (score, bbox per
  branch), so ``Analysis.output_rows()`` lists them as the model returns them.  ReLUs and
  the score softmax are left out.
"""

from __future__ import annotations

from rfmap.core.graph import GraphBuilder
from rfmap.core.layers import Merge, conv, maxpool
from rfmap.frontends.zoo._registry import register, with_outputs
from rfmap.frontends.zoo.classic import caffe_pool, vgg_trunk, zf5_trunk
from rfmap.frontends.zoo.resnet import resnet_trunk


def _rpn_heads(b: GraphBuilder, x: str) -> str:
    """Faster R-CNN RPN: a 3x3 conv, then two 1x1 heads (``rpn_conv/3x3`` in the prototxts)."""
    x = b.add("rpn_conv", conv(3, 1, 1), x)
    b.add("rpn_cls_score", conv(1), x)
    return b.add("rpn_bbox_pred", conv(1), x)


def _rpn_zf(name, size):
    b = GraphBuilder(name, size)
    _rpn_heads(b, zf5_trunk(b))
    return b.build()


def _rpn_vgg16(name, size):
    # py-faster-rcnn VGG16: Caffe pools round up (600x800 -> conv5_3 38x50), no pool5.
    b = GraphBuilder(name, size)
    x = vgg_trunk(b, 16, lambda stage: caffe_pool(stage) if stage < 5 else None)
    _rpn_heads(b, x)
    return b.build()


def _rpn_resnet_c4(depth):
    def build(name, size):
        b = GraphBuilder(name, size)
        _rpn_heads(b, resnet_trunk(b, depth, stages=3))
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
    x = vgg_trunk(b, 16, pool, norms=("conv4_3",))
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
    sources = ["conv4_3_norm", fc7, "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
    _multibox_heads(b, [(s, s) for s in sources])
    return b.build()


def _s3fd(name, size):
    # S3FD (Zhang et al. 2017): VGG16 with pool5, fc6 3x3 and fc7 1x1 as convs, two extra
    # stride-2 stages; 3x3 heads on conv3_3, conv4_3, conv5_3 (L2-normalized), fc7,
    # conv6_2, conv7_2.  Caffe pools round up (no effect at 640).
    b = GraphBuilder(name, size)
    norms = ("conv3_3", "conv4_3", "conv5_3")
    x = vgg_trunk(b, 16, caffe_pool, norms=norms)
    x = b.add("fc6", conv(3, 1, 1), x)
    fc7 = b.add("fc7", conv(1), x)
    x = b.add("conv6_1", conv(1), fc7)
    x = b.add("conv6_2", conv(3, 2, 1), x)
    x = b.add("conv7_1", conv(1), x)
    x = b.add("conv7_2", conv(3, 2, 1), x)
    sources = [f"{s}_norm" for s in norms] + [fc7, "conv6_2", "conv7_2"]
    _multibox_heads(b, [(s, s) for s in sources])
    return b.build()


# -- LFFD ------------------------------------------------------------------------------

#: the stride-2 valid convs of LFFD v1; the other convs come in residual pairs
LFFD_DOWNSAMPLING = (1, 2, 11, 16, 19)
#: the convs whose residual sums feed a loss branch (face scales 10-15 ... 400-560 px)
LFFD_BRANCHES = (8, 10, 13, 15, 18, 21, 23, 25)


def _lffd_branch(b: GraphBuilder, n: int, x: str) -> list[str]:
    """LFFD's loss branch on ``x``: 1x1 ``convN_1``, then score and bbox 1x1 pairs."""
    x = b.add(f"conv{n}_1", conv(1), x)
    heads = []
    for kind in ("score", "bbox"):
        y = b.add(f"conv{n}_2_{kind}", conv(1), x)
        heads.append(b.add(f"conv{n}_3_{kind}", conv(1), y))
    return heads


def _lffd_v1(name, size):
    b = GraphBuilder(name, size)
    x = b.input
    outputs: list[str] = []
    n = 1
    while n <= 25:
        if n in LFFD_DOWNSAMPLING:
            x = b.add(f"conv{n}", conv(3, 2, 0), x)
            n += 1
            continue
        y = b.add(f"conv{n}", conv(3, 1, 1), x)
        y = b.add(f"conv{n + 1}", conv(3, 1, 1), y)
        x = b.add(f"conv{n + 1}_add", Merge("add"), x, y)
        if n + 1 in LFFD_BRANCHES:
            outputs += _lffd_branch(b, n + 1, x)
        n += 2
    return with_outputs(b.build(), outputs)


register("rpn-zf", "Faster R-CNN RPN on ZF-5 conv5: rpn_conv 3x3, rpn_cls_score / rpn_bbox_pred", 224, _rpn_zf)
register("rpn-vgg16", "Faster R-CNN RPN on VGG-16 conv5_3: rpn_conv 3x3, two 1x1 heads", 224, _rpn_vgg16)
register(
    "rpn-resnet50-c4",
    "Faster R-CNN RPN on ResNet-50 C4 (torchvision layer3): rpn_conv 3x3, two 1x1 heads",
    224,
    _rpn_resnet_c4(50),
)
register(
    "rpn-resnet101-c4",
    "Faster R-CNN / R-FCN RPN on ResNet-101 C4 (torchvision layer3): rpn_conv 3x3, two 1x1 heads",
    224,
    _rpn_resnet_c4(101),
)
register(
    "ssd300",
    "SSD300 on VGG-16 (fc6 3x3 dilation 6, conv8_1..conv11_2), 3x3 loc/conf heads on 6 maps",
    300,
    _ssd300,
)
register(
    "s3fd",
    "S3FD face detector on VGG-16, 3x3 loc/conf heads on conv3_3..conv7_2 (strides 4..128)",
    640,
    _s3fd,
)
register(
    "lffd-v1",
    "LFFD v1 face detector (He et al. 2019): 25 convs, residual pairs, 8 branches RF 55..639 (16 outputs)",
    640,
    _lffd_v1,
)
