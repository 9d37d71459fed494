"""Figures of receptive fields (matplotlib, imported only when a figure is drawn).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no backend switch: it renders with Agg), so it works in scripts, servers and
notebooks alike.  Save it with :func:`save` (PNG, SVG or PDF by the file's suffix) or
``fig.savefig``.  Each function also takes ``ax=`` to draw into an existing axes.

Coordinates follow the pixel-index convention of :mod:`rfmap.core.result`: pixel ``i`` is the
point ``i`` and covers ``[i - 0.5, i + 0.5]`` on the picture, so the inclusive box
``y0..y1`` is drawn from ``y0 - 0.5`` to ``y1 + 0.5``; the image's first pixel is at the
top left.  An image whose size differs from the analysis' input size is stretched to it
(the network sees the resized image).

Artists carry a ``gid`` so that programs (and the tests) can find them:
``image-border``, ``rf-box i,j`` (the whole theoretical box, dashed), ``rf-box-inside i,j``
(its part inside the image, solid), ``padding i,j`` (hatched parts in padding), ``support i,j``
and ``center i,j``; ``centers``, ``stride-y``/``stride-x``; ``trf-box``, ``sigma-1``/``sigma-2``;
``anchors``, ``trf``, ``erf``, ``stride``.

This module gathers them; each lives with its helpers: :mod:`rfmap.viz.boxes` (RF boxes and
the grid of centers over the image), :mod:`rfmap.viz.growth` (RF and stride by depth),
:mod:`rfmap.viz.erf_map` (the ERF heatmap), :mod:`rfmap.viz.anchor_sizes` (anchors against
RFs); :mod:`rfmap.viz._canvas` holds what they share (figure, colours, canvas, saving).
"""

from __future__ import annotations

from rfmap.viz._canvas import FORMATS, save
from rfmap.viz.anchor_sizes import plot_anchors
from rfmap.viz.boxes import plot_center_grid, plot_rf_boxes
from rfmap.viz.erf_map import erf_moments as erf_moments
from rfmap.viz.erf_map import plot_erf
from rfmap.viz.growth import plot_growth

__all__ = ["plot_rf_boxes", "plot_center_grid", "plot_growth", "plot_erf", "plot_anchors", "save", "FORMATS"]
