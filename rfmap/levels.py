"""Which FPN level pools a box, and at what scale each feature map sits: the rules of the
detection libraries, as one set of functions for numpy arrays and torch tensors.

FPN (Lin et al., "Feature Pyramid Networks for Object Detection", 2017, eq. 1) pools an RoI
of width ``w`` and height ``h`` (input-image pixels) from level

    k = floor(k0 + log2(sqrt(w * h) / 224)),    k0 = 4, clamped to the levels there are,

level ``k`` having stride ``2**k``.  The libraries differ in where a small epsilon goes and
in how they name the result; :func:`assign_levels` reproduces each one exactly, in the
boxes' own dtype (a float32 tensor is computed in float32, as the libraries do):

- ``"torchvision"``: ``torchvision.ops.poolers.LevelMapper`` (canonical scale 224, canonical
  level 4): ``floor(k0 + log2(s / 224) + eps)`` with ``eps = 1e-6`` in the boxes' dtype;
- ``"detectron2"``: ``detectron2.modeling.poolers.assign_boxes_to_levels``
  (``canonical_box_size=224``, ``canonical_level=4``): ``floor(k0 + log2(s / 224 + eps))``
  with ``eps = sys.float_info.epsilon``;
- ``"mmdet"``: mmdetection ``SingleRoIExtractor.map_roi_levels`` (``finest_scale=56``):
  level index ``floor(log2(s / 56 + 1e-6))``, counted from the first feature map.

``s = sqrt((x2 - x1) * (y2 - y1))`` for boxes ``(x1, y1, x2, y2)`` in input-image units (the
box convention does not matter here: only width and height enter).  The result is the index
into the pyramid (0 for ``min_level``), clamped to ``[0, max_level - min_level]``.  A box
whose area is negative (exactly one of ``x2 < x1``, ``y2 < y1``) or NaN has no level: the
libraries compute ``floor(log2(NaN))`` and cast NaN to an integer, which on x86 CPUs matches
no level, so their poolers leave that RoI's output zero; here it gets index ``-1``.

:func:`infer_scale` and :func:`infer_scales` are torchvision's ``MultiScaleRoIAlign`` scale
inference: the scale of a feature map is ``2 ** round(log2(feature_height /
image_height))`` with ``image_height`` the largest image height of the batch.  Only the
height counts: on an oblong image whose padded width rounds to another power of two
(torchvision issue 3747) the result is torchvision's, not the feature map's true stride.

Nothing here imports numpy or torch at module level; functions given tensors use only
tensor operations, so they trace under ``torch.compile`` and ``torch.export``.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence

RULES = ("torchvision", "detectron2", "mmdet")

#: torchvision ``LevelMapper`` and detectron2 ``ROIPooler`` defaults (FPN paper).
CANONICAL_SIZE = 224
CANONICAL_LEVEL = 4
#: mmdetection ``SingleRoIExtractor`` default.
FINEST_SCALE = 56


class _Torch:
    """The few array operations the rules need, on torch tensors."""

    def __init__(self):
        import torch

        self.lib = torch

    def float_boxes(self, boxes):
        return boxes if boxes.is_floating_point() else boxes.to(self.lib.get_default_dtype())

    def scalar(self, value, like):
        return self.lib.tensor(value, dtype=like.dtype, device=like.device)

    def levels(self, k, valid, lo: int, hi: int):
        index = self.lib.where(valid, self.lib.clamp(k, lo, hi), -1)  # NaN stays out of the clamp
        return index.to(self.lib.int64)


class _Numpy:
    """The same on numpy arrays (anything ``numpy.asarray`` takes)."""

    def __init__(self):
        import numpy

        self.lib = numpy

    def float_boxes(self, boxes):
        boxes = self.lib.asarray(boxes)
        return boxes if boxes.dtype.kind == "f" else boxes.astype(self.lib.float32)

    def scalar(self, value, like):
        return self.lib.asarray(value, dtype=like.dtype)

    def levels(self, k, valid, lo: int, hi: int):
        with self.lib.errstate(invalid="ignore"):
            index = self.lib.where(valid, self.lib.clip(k, lo, hi), -1)
        return index.astype(self.lib.int64)


def _backend(boxes):
    return _Torch() if type(boxes).__module__.split(".")[0] == "torch" else _Numpy()


def box_sizes(boxes):
    """``sqrt((x2 - x1) * (y2 - y1))`` of ``[..., 4]`` boxes ``(x1, y1, x2, y2)``, in their
    float dtype (NaN for a negative area); integer boxes give float32 (torch's ``sqrt``)."""
    xp = _backend(boxes)
    boxes = boxes if xp.__class__ is _Torch else xp.lib.asarray(boxes)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area = xp.float_boxes(area)
    if xp.__class__ is _Numpy:
        with xp.lib.errstate(invalid="ignore"):
            return xp.lib.sqrt(area)
    return xp.lib.sqrt(area)


def assign_levels(
    boxes,
    min_level: int,
    max_level: int,
    rule: str = "torchvision",
    *,
    canonical_size: float = CANONICAL_SIZE,
    canonical_level: int = CANONICAL_LEVEL,
    finest_scale: float = FINEST_SCALE,
):
    """The FPN level index of each box (see the module docstring): int64, ``0`` for
    ``min_level`` up to ``max_level - min_level``, ``-1`` for a box with a negative or NaN
    area.  ``boxes``: ``[..., 4]`` ``(x1, y1, x2, y2)`` in input-image units, a numpy array or
    a torch tensor (the result is of the same kind and device).  ``rule``: one of
    :data:`RULES`; ``canonical_size`` and ``canonical_level`` apply to "torchvision" and
    "detectron2", ``finest_scale`` to "mmdet".

    Example: a 224 x 224 box on levels 2..5 is index 2 (level 4, stride 16) by every rule.
    """
    if rule not in RULES:
        from .errors import RFMapError

        raise RFMapError(f"assign_levels: rule must be one of {RULES}, got {rule!r}")
    xp = _backend(boxes)
    lib = xp.lib
    s = box_sizes(boxes)
    if xp.__class__ is _Numpy:
        old = lib.seterr(divide="ignore", invalid="ignore")  # log2(0) = -inf, as in torch
    try:
        if rule == "torchvision":
            k = lib.floor(canonical_level + lib.log2(s / canonical_size) + xp.scalar(1e-6, s)) - min_level
        elif rule == "detectron2":
            k = lib.floor(canonical_level + lib.log2(s / canonical_size + sys.float_info.epsilon)) - min_level
        else:
            k = lib.floor(lib.log2(s / finest_scale + 1e-6))
    finally:
        if xp.__class__ is _Numpy:
            lib.seterr(**old)
    return xp.levels(k, s == s, 0, max_level - min_level)  # s == s: not NaN


def _float32(x: float) -> float:
    """``x`` rounded to the nearest float32 (as ``torch.tensor(x)`` stores a Python float)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """torchvision's scale of a feature map of ``(height, width)`` ``feature_size`` for
    images of ``image_size``: ``2 ** round(log2(height ratio))``, the ratio and its log2 in
    float32 and halves rounded to even, as ``torch.tensor(ratio).log2().round()`` does.  The
    width is not used (torchvision issue 3747)."""
    ratio = _float32(float(feature_size[0]) / float(image_size[0]))
    return 2.0 ** round(_float32(math.log2(ratio)))


def infer_scales(
    feature_sizes: Sequence[Sequence[int]], image_sizes: Sequence[Sequence[int]]
) -> tuple[list[float], int, int]:
    """``(scales, min_level, max_level)`` of a pyramid of feature maps of ``(height, width)``
    ``feature_sizes`` (finest first) for a batch of images of ``(height, width)``
    ``image_sizes``: each scale by :func:`infer_scale` against the largest height and width
    of the batch, and the levels ``-log2`` of the first and last scale (torchvision
    ``_setup_scales``)."""
    if not image_sizes:
        from .errors import RFMapError

        raise RFMapError("infer_scales: image_sizes is empty; give the (height, width) of each image")
    largest = (max(int(s[0]) for s in image_sizes), max(int(s[1]) for s in image_sizes))
    scales = [infer_scale(f, largest) for f in feature_sizes]
    return scales, int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
