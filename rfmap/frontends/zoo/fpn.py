"""ResNet-50-FPN backbones of torchvision's detectors: RetinaNet and Faster R-CNN.

torchvision's ``BackboneWithFPN`` (``torchvision.models.detection.backbone_utils``,
``torchvision.ops.feature_pyramid_network``): the torchvision ResNet-50 trunk (stride on
the 3x3 conv; node names as in :mod:`.resnet`, stage outputs ``layer1``..``layer4``), then
per returned stage a lateral 1x1 conv ``fpn.inner_blocks.k`` and a 3x3 output conv
``fpn.layer_blocks.k`` (pad 1).  Top-down, from the coarsest level: the running map is
resized to the lateral map's size by nearest interpolation (``F.interpolate(size=...)``,
node ``fpn.top_down.k``; x2 when the input is a multiple of 32, as torchvision's transform
pads it) and added to the lateral (``fpn.merge.k``) before the output conv.

* ``fasterrcnn-resnet50-fpn``: stages ``layer1``..``layer4`` and ``LastLevelMaxPool``
  (``fpn.extra_blocks``: ``max_pool2d(kernel 1, stride 2)`` on the last output); the
  outputs, named as the backbone's returned dict, are ``'0'``, ``'1'``, ``'2'``, ``'3'``,
  ``'pool'`` (aliases of the output convs and the pool).
* ``retinanet-resnet50-fpn`` (``retinanet_resnet50_fpn``, v1): stages ``layer2``..``layer4``
  and ``LastLevelP6P7(256, 256)``: as its in and out channels agree it reads P5 (the FPN
  output, not C5): ``fpn.extra_blocks.p6`` (3x3 stride 2 pad 1) on ``'2'``, then
  ``fpn.extra_blocks.p7`` on P6 (after a ReLU); outputs ``'0'``, ``'1'``, ``'2'``, ``'p6'``,
  ``'p7'`` (P3..P7).

The interpolation sizes follow the lateral maps, so these graphs are built for one input
size (``zoo.get(name, (H, W))``; default 800x800).  :func:`resnet50_fpn` with
``top_down=False`` builds the bottom-up ("backbone") path alone: each level's output conv
reads its lateral conv only.
"""

from __future__ import annotations

from rfmap.core.graph import Graph
from rfmap.core.layers import Merge, Upsample, conv, maxpool
from rfmap.errors import RFMapError
from rfmap.frontends.zoo._registry import SizedBuilder, register, with_outputs
from rfmap.frontends.zoo.resnet import resnet_trunk

EXTRAS = ("pool", "p6p7")


def resnet50_fpn(
    name: str,
    size: tuple[int, int],
    *,
    returned_layers: tuple[int, ...] = (1, 2, 3, 4),
    extra: str = "pool",
    top_down: bool = True,
) -> Graph:
    """torchvision's ResNet-50-FPN at input ``size`` (see the module docstring).

    ``returned_layers``: the stages the FPN reads (``layer1`` is 1); ``extra``: ``"pool"``
    (Faster R-CNN's ``LastLevelMaxPool``) or ``"p6p7"`` (RetinaNet's ``LastLevelP6P7`` on P5);
    ``top_down=False`` leaves out the top-down path.
    """
    if extra not in EXTRAS:
        raise RFMapError(f"extra must be one of {EXTRAS}, got {extra!r}")
    b = SizedBuilder(name, size)
    resnet_trunk(b, 50)
    levels = range(len(returned_layers))
    laterals = {k: b.add(f"fpn.inner_blocks.{k}", conv(1), f"layer{returned_layers[k]}") for k in levels}
    outputs: dict[str, str] = {}
    inner = laterals[levels[-1]]
    outputs[str(levels[-1])] = b.add(f"fpn.layer_blocks.{levels[-1]}", conv(3, 1, 1), inner)
    for k in reversed(levels[:-1]):
        if top_down:
            up = b.add(f"fpn.top_down.{k}", Upsample(size=b.sizes[laterals[k]], mode="nearest"), inner)
            inner = b.add(f"fpn.merge.{k}", Merge("add"), laterals[k], up)
        else:
            inner = laterals[k]
        outputs[str(k)] = b.add(f"fpn.layer_blocks.{k}", conv(3, 1, 1), inner)
    last = outputs[str(levels[-1])]
    if extra == "pool":
        outputs["pool"] = b.add("fpn.extra_blocks", maxpool(1, 2, 0), last)
    else:
        outputs["p6"] = b.add("fpn.extra_blocks.p6", conv(3, 2, 1), last)
        outputs["p7"] = b.add("fpn.extra_blocks.p7", conv(3, 2, 1), outputs["p6"])
    names = [str(k) for k in levels] + (["pool"] if extra == "pool" else ["p6", "p7"])
    aliases = [(n, outputs[n]) for n in names if n != outputs[n]]
    return with_outputs(b.build(), names, aliases)


def _fasterrcnn(name, size):
    return resnet50_fpn(name, size)


def _retinanet(name, size):
    return resnet50_fpn(name, size, returned_layers=(2, 3, 4), extra="p6p7")


register(
    "fasterrcnn-resnet50-fpn",
    "Faster R-CNN ResNet-50-FPN backbone, torchvision: P2-P5 from layer1-4 + max-pool level; outputs '0'-'3', 'pool'",
    800,
    _fasterrcnn,
    sized=True,
)
register(
    "retinanet-resnet50-fpn",
    "RetinaNet ResNet-50-FPN backbone, torchvision v1: P3-P5 from layer2-4, P6/P7 from P5; outputs '0'-'2', 'p6', 'p7'",
    800,
    _retinanet,
    sized=True,
)
