"""The detection libraries' FPN pooler rules, restated step by step in torch as each library
computes them, for tests only (neither torchvision, detectron2 nor mmdetection is a test
dependency): level assignment, scale inference and the multi-scale RoIAlign of torchvision.

Sources (read with the search tools; behaviour restated, code not copied):
torchvision ``torchvision/ops/poolers.py`` (``LevelMapper``, ``_infer_scale``,
``_setup_scales``, ``_multiscale_roi_align``), detectron2 ``detectron2/modeling/poolers.py``
(``assign_boxes_to_levels``), mmdetection ``SingleRoIExtractor.map_roi_levels``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from ops_reference import roi_align_reference


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def torchvision_levels(box_lists, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
    """``LevelMapper.__call__``: floor(k0 + log2(s / s0) + eps (a tensor of s's dtype)), clamped,
    cast to int64, minus ``k_min``."""
    s = torch.sqrt(torch.cat([_area(b) for b in box_lists]))
    target = torch.floor(canonical_level + torch.log2(s / canonical_scale) + torch.tensor(eps, dtype=s.dtype))
    target = torch.clamp(target, min=k_min, max=k_max)
    return target.to(torch.int64) - k_min


def detectron2_levels(box_lists, min_level, max_level, canonical_box_size=224, canonical_level=4):
    """``assign_boxes_to_levels``: floor(k0 + log2(s / s0 + machine epsilon)), clamped, minus ``min_level``."""
    sizes = torch.sqrt(torch.cat([_area(b) for b in box_lists]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + sys.float_info.epsilon))
    return torch.clamp(levels, min=min_level, max=max_level).to(torch.int64) - min_level


def mmdet_levels(rois, num_levels, finest_scale=56):
    """``SingleRoIExtractor.map_roi_levels`` on ``[K, 5]`` rois: floor(log2(s / 56 + 1e-6)) in [0, n)."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=num_levels - 1).long()


def torchvision_infer_scale(feature_size, image_size) -> float:
    """``_infer_scale``: the height ratio as a float32 tensor, log2, rounded, as a power of two."""
    approx = float(feature_size[0]) / float(image_size[0])
    return 2 ** float(torch.tensor(approx).log2().round())


def torchvision_setup_scales(feature_sizes, image_shapes):
    """``_setup_scales``: the largest height and width of the batch, a scale per map, and
    the levels of the first and last map."""
    largest = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
    scales = [torchvision_infer_scale(f, largest) for f in feature_sizes]
    lvl_min = -torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item()
    lvl_max = -torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item()
    return scales, int(lvl_min), int(lvl_max)


def multiscale_roi_align_reference(features, box_lists, image_shapes, output_size, sampling_ratio, aligned=False):
    """torchvision ``MultiScaleRoIAlign`` on a fresh module, each RoI through the scalar RoIAlign
    loop: scales from ``_setup_scales``, one map alone pooled at its scale, otherwise each box
    pooled from its ``LevelMapper`` level into a zero result (a level outside the maps, as a
    NaN level cast to int64 is, leaves the row zero)."""
    scales, lvl_min, lvl_max = torchvision_setup_scales([f.shape[-2:] for f in features], image_shapes)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype), b], 1) for i, b in enumerate(box_lists)])
    if len(features) == 1:
        return roi_align_reference(features[0], rois, output_size, scales[0], sampling_ratio, aligned), scales
    levels = torchvision_levels(box_lists, lvl_min, lvl_max)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = np.zeros((len(rois), features[0].shape[1], ph, pw))
    for k, level in enumerate(levels.tolist()):
        if 0 <= level < len(features):
            out[k] = roi_align_reference(features[level], rois[k : k + 1], output_size, scales[level], sampling_ratio, aligned)[0]
    return out, scales
