"""Multi-scale RoIAlign: the RoI pooler of FPN detectors (torchvision ``MultiScaleRoIAlign``,
detectron2 ``ROIPooler``), on :func:`rfmap.ops.roi_align`.

Each box is pooled from one level of the feature pyramid, chosen by the FPN rule
(:func:`rfmap.mapping.levels.assign_levels`: ``floor(4 + log2(sqrt(w * h) / 224))``, clamped to the
levels given), with that level's scale, and the results come back in the boxes' order.  The
scales are inferred as torchvision does (:func:`rfmap.mapping.levels.infer_scales`: powers of two from
the feature-map / image height ratio) unless given.

Coordinates: boxes ``(x1, y1, x2, y2)`` in input-image units, continuous, as
:func:`rfmap.ops.roi_align` takes them (``aligned=False`` by default, torchvision's choice;
``aligned=True`` is detectron2's ``ROIAlignV2``).  A box with no level (negative area, see
:mod:`rfmap.mapping.levels`) gives zeros, as torchvision's pooler does on CPU.

Differences from torchvision's module, on purpose: the scales are inferred at every call from
the sizes at hand (torchvision infers them at its first call and keeps them), and a
``scales`` argument can fix them (use it for oblong images, torchvision issue 3747).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import RFMapError
from ..mapping import levels as fpn
from ._boxes import as_rois, check_output_size, check_sampling
from .roi_align import roi_align


class MultiScaleRoIAlign(nn.Module):
    """Multi-scale RoIAlign over FPN feature maps (torchvision's ``MultiScaleRoIAlign`` signature).

    ``featmap_names``: the keys of the maps to pool from when ``forward`` gets a dict (taken
    in the dict's order, as torchvision does); ``output_size``: ``PH`` or ``(PH, PW)``;
    ``sampling_ratio``: as :func:`rfmap.ops.roi_align`.  Keyword-only: ``canonical_scale``,
    ``canonical_level`` (FPN's 224 and 4), ``rule`` (:data:`rfmap.mapping.levels.RULES`),
    ``aligned`` and ``scales`` (one per map, finest first; ``None`` infers them).
    """

    def __init__(
        self,
        featmap_names: Sequence[str],
        output_size,
        sampling_ratio: int,
        *,
        canonical_scale: int = fpn.CANONICAL_SIZE,
        canonical_level: int = fpn.CANONICAL_LEVEL,
        rule: str = "torchvision",
        aligned: bool = False,
        scales: Sequence[float] | None = None,
    ):
        super().__init__()
        op = "MultiScaleRoIAlign"
        if rule not in fpn.RULES:
            raise RFMapError(f"{op}: rule must be one of {fpn.RULES}, got {rule!r}")
        self.featmap_names = list(featmap_names)
        self.output_size = check_output_size(op, output_size)
        self.sampling_ratio = check_sampling(op, sampling_ratio)
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level
        self.rule, self.aligned = rule, aligned
        self.scales = None if scales is None else [float(s) for s in scales]

    def setup_scales(self, features: Sequence[Tensor], image_shapes) -> tuple[list[float], int, int]:
        """``(scales, min_level, max_level)`` for these maps and image sizes ``(height, width)``."""
        if self.scales is None:
            return fpn.infer_scales([tuple(f.shape[-2:]) for f in features], image_shapes)
        if len(self.scales) != len(features):
            raise RFMapError(f"MultiScaleRoIAlign: {len(self.scales)} scales for {len(features)} feature maps")
        levels = [-torch.log2(torch.tensor(s, dtype=torch.float32)).item() for s in (self.scales[0], self.scales[-1])]
        return self.scales, int(levels[0]), int(levels[1])

    def _features(self, x) -> list[Tensor]:
        features = [v for k, v in x.items() if k in self.featmap_names] if isinstance(x, Mapping) else list(x)
        if not features:
            raise RFMapError(f"MultiScaleRoIAlign: none of the feature maps {self.featmap_names} is in the input")
        return features

    def levels(self, x, boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """The index into the maps of ``x`` that pools each box (-1: none), as ``forward`` uses it."""
        features = self._features(x)
        rois = as_rois("MultiScaleRoIAlign", boxes)
        return self._levels(rois, *self.setup_scales(features, image_shapes)[1:])

    def _levels(self, rois: Tensor, min_level: int, max_level: int) -> Tensor:
        return fpn.assign_levels(
            rois[:, 1:], min_level, max_level, self.rule,
            canonical_size=self.canonical_scale, canonical_level=self.canonical_level,
        )  # fmt: skip

    def forward(self, x, boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pool ``boxes`` (one ``Tensor[L_i, 4]`` per image) from the maps ``x`` (a dict, see
        ``featmap_names``, or a list, finest first) of images of sizes ``image_shapes``
        (``(height, width)`` before the backbone).  Returns ``(sum L_i, C, PH, PW)``."""
        features = self._features(x)
        rois = as_rois("MultiScaleRoIAlign", boxes)
        scales, min_level, max_level = self.setup_scales(features, image_shapes)
        pool: dict[str, Any] = dict(output_size=self.output_size, sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        if len(features) == 1:
            return roi_align(features[0], rois, spatial_scale=scales[0], **pool)
        level = self._levels(rois, min_level, max_level)
        first = features[0]
        result = first.new_zeros((rois.shape[0], first.shape[1], *self.output_size))
        for i, (feature, scale) in enumerate(zip(features, scales)):
            index = torch.where(level == i)[0]
            pooled = roi_align(feature, rois[index], spatial_scale=scale, **pool)
            result = result.index_put((index,), pooled.to(result.dtype))
        return result

    def extra_repr(self) -> str:
        return (
            f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, rule={self.rule!r}, aligned={self.aligned}"
        )
