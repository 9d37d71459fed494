"""Coordinate mapping between the image and feature maps, and RoI projection rules.

Conventions.  Image points and cell indices use the pixel-index convention (pixel ``i`` is
the point ``i``, see :mod:`rfmap.core.result`), except the ``align`` rule, which uses the
continuous convention of RoIAlign ``aligned=True`` (pixel ``i`` covers ``[i, i+1)``, its
center is ``i + 0.5``).  Boxes are ``(x1, y1, x2, y2)`` arrays of shape ``[N, 4]`` -- the
detection order, x first -- while cells and points are ``(y, x)`` in (H, W) order like
the rest of rfmap.  Every function is vectorized over ``N`` and takes numpy arrays or
torch tensors (returned as the same type, on the same device).

Rules of :meth:`Mapper.project` (feature window ``[i1, i2]`` inclusive, per axis):

``spp``         SPP-net (He et al. 2014, appendix): each corner goes to the cell whose RF
                center is nearest to it, ``i = round((x - c0) / S)`` with the network's
                real center offset ``c0`` (half up), clipped to the map.
``spp-simple``  The formula as the SPP-net paper writes it, assuming ``floor(p/2)`` padding
                everywhere (cell ``x'`` centered at ``S*x'``): ``i1 = floor(x1/S) + 1``,
                ``i2 = ceil(x2/S) - 1``.
``fast-rcnn``   Caffe's ROIPooling: ``i = round(x * scale)`` half away from zero, inclusive
                end, ``scale = 1/S`` (Girshick 2015).
``align``       RoIAlign ``aligned=True`` (He et al. 2017; detectron2 ROIAlignV2): the
                continuous window ``x * scale - 0.5``, no rounding.
``contain``     The cells whose RF center lies inside the box ("R-CNN minus R", Lenc &
                Vedaldi 2015).
``cover``       The cells whose RF box intersects the box.

Every layer with a stride can be mapped: shift-invariant layers by the affine formulas,
others (FPN levels after a top-down path, decoders) by the exact per-cell RF centers and
boxes of the engine for the center rules (``spp``, ``contain``, ``cover``); the stride-only
rules read the effective stride alone (:data:`RULE_USES` says what each rule reads).  Boxes
partly or wholly outside the image get a note per box (``Projection.notes()``).

The quantization error of a rule is measured by back-projecting its window to the image
(window corners to their cells' RF centers; ``i / scale`` for the scale-only rules; exact for
``align``) and taking the IoU with the original box (areas as ``(x2-x1)*(y2-y1)``).
"""

from __future__ import annotations

import importlib
from typing import Any

from rfmap.mapping.names import CENTER_RULES, RULE_USES, RULES

_LAZY = {
    "AffineAxis": "rfmap.mapping.axes",
    "CellAxis": "rfmap.mapping.axes",
    "Mapper": "rfmap.mapping.coordinates",
    "mapper": "rfmap.mapping.coordinates",
    "Projection": "rfmap.mapping.project",
}

__all__ = ["CENTER_RULES", "RULES", "RULE_USES", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """The mapping's classes load on first use (the names above import no numpy)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rfmap.mapping' has no attribute {name!r}")
