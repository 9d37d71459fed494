"""Anchor design checked against receptive fields: one report per detector configuration.

A configuration (YAML, TOML or JSON file, a mapping, or a bundled name: ``s3fd``,
``ssd300``, ``rpn-vgg16``; see ``rfmap/anchors/configs/``) names a network and, per detection level,
the feature layer, the anchor step, the anchor boxes and the head convolutions::

    name: S3FD
    network: s3fd            # a SOURCE: zoo name, spec/ONNX path (relative to this file),
                             # a layer list, or an inline spec mapping {name, layers: [...]}
    input: 640               # H or [H, W]; default: the network's own
    anchor_offset: 0.5       # anchor centers at (i + anchor_offset) * step (continuous coords)
    iou: [0.5, 0.35]         # IoU thresholds of the match counts (default [0.5, 0.35])
    gt_sizes: [16, 32, 64]   # ground-truth box sides (default: anchor scales and midpoints)
    gt_aspect_ratio: 1       # ground-truth w / h
    erf: closed-form         # or {measure: true, n: 16, weights: uniform, channels: 2}
    center_tolerance: 1.0    # pixels; larger center offsets are flagged
    density_tolerance: 1.5   # densities below (largest / this) are flagged
    suggest: {density: 4}    # the equal-proportion interval rule (anchor = 4 x stride)
    levels:
      - layer: conv3_3
        stride: 4            # the anchor step (number, "300/38", or [h, w]); default:
                             # the effective stride of the prediction layer
        sizes: [16]          # square-ish anchors: sizes x aspect_ratios (ratio = w / h)
        aspect_ratios: [1]
        head: [{op: conv, kernel: 3, padding: 1}]   # convs appended to the layer, or the
                             # name of a layer of the network (SSD's conv4_3_norm_mbox_loc)

Instead of ``sizes``/``aspect_ratios`` a level may list ``boxes: [[h, w], ...]`` or use
Caffe's PriorBox rule (SSD, S3FD): ``min_size``, ``max_size``, ``aspect_ratios`` (the
ratios besides 1) and ``flip``: boxes ``min x min``, ``sqrt(min max)`` squared, and
``min sqrt(ar)`` wide by ``min / sqrt(ar)`` high for each ratio (and its flip).

Coordinates.  Anchors and ground-truth boxes are in the *continuous* convention of
detectors (pixel ``i`` covers ``[i, i + 1)``; SSD's PriorBox, py-faster-rcnn's anchors):
the anchor of cell ``i`` is centered at ``(i + anchor_offset) * step``.  RF centers come
from the engine in rfmap's pixel-index convention and are shifted by +0.5 to compare: a
VGG-style layer (``same`` convolutions, 2x2/2 pools) has its cell ``i`` centered at
``(i + 0.5) * stride`` in continuous coordinates, exactly where ``anchor_offset = 0.5``
puts the anchors.  The offset reported is ``RF center - anchor center``.

What a level reports (:class:`LevelReport`): the anchor step and the effective stride,
the feature (prediction) map size, the TRF without and with the head convolutions, the
offset between RF centers and anchor centers (first cell, last cell, largest), density
(FaceBoxes' ``A_density = A_scale / A_interval``: anchor scale ``sqrt(h w)`` over the step),
anchor / TRF and anchor / ERF (the ERF span ``4 sigma`` from :func:`rfmap.erf.closed_form_sigma`
or measured with :func:`rfmap.erf.erf`), the anchor count and the expected number of anchors
whose IoU with a ground-truth box reaches each threshold.

Expected matches.  For a ground-truth box placed uniformly at random (its center uniform
over a period of the anchor lattice, the lattice taken as unbounded), the expected number
of anchors of a level with IoU >= t is ``area{(dx, dy): IoU(dx, dy) >= t} / (step_y step_x)``
summed over the level's boxes -- the area of the set of center displacements that reach
the threshold, which has a closed form (the overlap along each axis is a trapezoid in the
displacement; see :func:`expected_matches`).  ``method="sampled"`` instead counts IoUs
against the level's real anchors for ground-truth boxes on a dense grid of positions over
one step around the image center.

Flags: ``anchor_larger_than_trf`` (an anchor exceeds the TRF with the head, on some axis:
the prediction cannot see the whole object), ``misaligned_centers`` (RF and anchor
centers differ by more than ``center_tolerance`` pixels somewhere on the map),
``step_differs_from_stride`` (the offset then drifts across the map), ``anchors_outside_image``
(the lattice runs past the image), ``uneven_density`` (FaceBoxes' imbalance: a box with a
density below the largest one / ``density_tolerance``), ``few_matches`` (a ground-truth
size expected to match fewer than one anchor at the first IoU threshold; S3FD's motivation
for lowering it to 0.35).

The suggested configuration follows the equal-proportion interval principle of S3FD
(Zhang et al., "S3FD: Single Shot Scale-invariant Face Detector", ICCV 2017, Sec. 3.1 and
Table 1): on each level the anchor scale is ``density x stride`` (``density = 4``: anchors
16..512 on strides 4..128), so that anchors of every scale are equally dense on the image;
the step is the level's effective stride, and ``anchor_offset`` puts each anchor on its
cell's RF center.  S3FD pairs this with anchors well inside the TRF, to match the ERF.
"""

from __future__ import annotations

from rfmap.anchors.analysis import RULE, analyze_anchors
from rfmap.anchors.config import DATA, AnchorConfig, LevelConfig, builtin_configs, load_config
from rfmap.anchors.matching import expected_matches
from rfmap.anchors.report import AnchorReport, Flag, LevelReport, SuggestedLevel


def render_anchors(report: AnchorReport, fmt: str = "table", color: bool | None = None) -> str:
    """The report as tables or JSON (see :func:`rfmap.render.anchors.render_anchors`)."""
    from rfmap.render.anchors import render_anchors as render

    return render(report, fmt, color)


__all__ = [
    "DATA",
    "RULE",
    "AnchorConfig",
    "AnchorReport",
    "Flag",
    "LevelConfig",
    "LevelReport",
    "SuggestedLevel",
    "analyze_anchors",
    "builtin_configs",
    "expected_matches",
    "load_config",
    "render_anchors",
]
