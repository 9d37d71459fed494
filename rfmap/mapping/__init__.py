"""Coordinate mapping between the image and feature maps, and RoI projection rules.

Conventions.  Image points and cell indices use the pixel-index convention (pixel ``i`` is
the point ``i``, see :mod:`rfmap.core.result`), except the ``align`` rule, which uses the
continuous convention of RoIAlign ``aligned=True`` (pixel ``i`` covers ``[i, i+1)``, its
center is ``i + 0.5``).  Boxes are ``(x1, y1, x2, y2)`` arrays of shape ``[N, 4]`` -- the
detection order, x first -- while cells and points are ``(y, x)`` in (H, W) order like
the rest of rfmap.  Every function is vectorized over ``N`` and takes numpy arrays or
torch tensors (returned as the same type, on the same device).

Rules of :func:`project_boxes` (feature window ``[i1, i2]`` inclusive, per axis):

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

The quantization error of a rule is measured by back-projecting its window to the image
(window corners to their cells' RF centers; ``i / scale`` for the scale-only rules; exact for
``align``) and taking the IoU with the original box (areas as ``(x2-x1)*(y2-y1)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from typing import Any

import numpy as np

from rfmap.core.box import as_xy, box_iou
from rfmap.errors import RFMapError

RULES = ("spp", "spp-simple", "fast-rcnn", "align", "contain", "cover")


@dataclass(frozen=True)
class AffineAxis:
    """Cell ``i`` of a shift-invariant layer along one axis: center ``c0 + i*S``, box ``[c0 - (r-1)/2 + i*S, ...]``."""

    stride: Fraction
    center0: Fraction
    rf: int
    size: int


class Projection:
    """Feature windows of N boxes under one rule, and their quantization error.

    ``window``: ``[N, 4]`` as ``(x1, y1, x2, y2)`` in feature cells (inclusive ints; floats
    for ``align``); ``empty``: ``[N]`` bool, no cell satisfies the rule.  ``back`` (the window
    back-projected to the image, ``[N, 4]``) and ``iou`` (``[N]``) are computed on first use.
    """

    def __init__(self, rule, boxes, window, empty, back_fn, convert):
        self.rule = rule
        self._boxes, self._window, self._empty = boxes, window, empty
        self._back_fn, self._convert = back_fn, convert

    @cached_property
    def window(self):
        return self._convert(self._window, like_dtype=self.rule == "align")

    @cached_property
    def empty(self):
        return self._convert(self._empty, like_dtype=False)

    @cached_property
    def _back(self) -> np.ndarray:
        return self._back_fn(self._window)

    @cached_property
    def back(self):
        return self._convert(self._back)

    @cached_property
    def iou(self):
        return self._convert(np.where(self._empty, 0.0, box_iou(self._boxes, self._back)))


def _as_numpy(x) -> tuple[np.ndarray, Any]:
    """A float64 numpy view of ``x`` and a function that converts results back."""
    if type(x).__module__.startswith("torch"):
        device, dtype = x.device, x.dtype

        def back(a, like_dtype=True):
            import torch

            t = torch.from_numpy(np.ascontiguousarray(a))
            if like_dtype and t.is_floating_point() and dtype.is_floating_point:
                t = t.to(dtype)
            return t.to(device)

        return x.detach().cpu().double().numpy(), back
    return np.asarray(x, dtype=np.float64), lambda a, like_dtype=True: a


def _boxes(boxes) -> tuple[np.ndarray, Any]:
    """``[N, 4]`` float64 boxes (shape checked; values are checked chunk by chunk by
    :func:`_check_chunk` where they are read) and the converter back to the input's type."""
    b, back = _as_numpy(boxes)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise RFMapError(f"boxes must have shape [N, 4] as (x1, y1, x2, y2), got {list(b.shape)}")
    return b, back


def _check_chunk(cols: np.ndarray, boxes: np.ndarray, start: int) -> None:
    """Reject non-finite coordinates and flipped boxes, naming the first bad box."""
    finite = np.isfinite(cols).all(axis=0)
    flipped = (cols[2] < cols[0]) | (cols[3] < cols[1])
    if finite.all() and not flipped.any():
        return
    bad = np.flatnonzero(~finite)
    i = int(bad[0]) if bad.size else None
    j = int(np.flatnonzero(flipped & finite)[0]) if (flipped & finite).any() else None
    if i is not None and (j is None or i <= j):
        raise RFMapError(f"box {start + i} has a coordinate that is not finite")
    raise RFMapError(f"box {start + j} {boxes[start + j].tolist()} has x2 < x1 or y2 < y1")


class Mapper:
    """Maps between the image and one shift-invariant layer (per axis, H then W).

    Build it with :meth:`from_analysis`.  ``cell_to_point``/``point_to_cell`` are exact
    inverses: ``point_to_cell(cell_to_point(i)) == i``.
    """

    def __init__(self, axes: tuple[AffineAxis, AffineAxis], name: str = "layer"):
        self.axes = axes
        self.name = name

    @classmethod
    def from_analysis(cls, analysis, layer) -> "Mapper":
        row = analysis.layer(layer)
        if row.global_context or any(s == 0 for s in row.stride):
            raise RFMapError(f"layer '{row.name}' sees the whole input: no coordinate mapping")
        if not row.shift_invariant:
            raise RFMapError(
                f"layer '{row.name}' is not shift-invariant (its RF varies from cell to cell): "
                "use Analysis.rf_boxes(layer, cells), exact for every layer"
            )
        if len(row.axes) != 2:
            raise RFMapError(f"box mapping needs a 2-D layer, '{row.name}' has {len(row.axes)} axes")
        axes = tuple(AffineAxis(a.stride, a.center0, a.rf, a.size) for a in row.axes)
        return cls(axes, row.name)  # type: ignore[arg-type]

    # -- points and cells, (y, x) ------------------------------------------------------

    def cell_to_point(self, cells):
        """RF centers of cells ``[N, 2]`` (y, x) in image pixels."""
        c, back = _as_numpy(cells)
        c = c.reshape(-1, 2)
        out = np.stack([float(a.center0) + c[:, k] * float(a.stride) for k, a in enumerate(self.axes)], axis=1)
        return back(out)

    def point_to_cell(self, points, *, continuous: bool = False):
        """Cells ``[N, 2]`` whose RF center is nearest to image points (ties: the lower cell),
        clipped to the map; with ``continuous`` the exact fractional cell coordinate."""
        p, back = _as_numpy(points)
        p = p.reshape(-1, 2)
        cols = []
        for k, a in enumerate(self.axes):
            f = (p[:, k] - float(a.center0)) / float(a.stride)
            cols.append(f if continuous else np.clip(np.ceil(f - 0.5), 0, a.size - 1))
        out = np.stack(cols, axis=1)
        return back(out if continuous else out.astype(np.int64), like_dtype=continuous)

    def cell_to_box(self, cells):
        """Theoretical RF boxes ``[N, 4]`` (x1, y1, x2, y2, inclusive pixels) of cells ``[N, 2]`` (y, x)."""
        c, back = _as_numpy(cells)
        c = c.reshape(-1, 2)
        ay, ax = self.axes
        lo = [float(a.center0 - Fraction(a.rf - 1, 2)) + c[:, k] * float(a.stride) for k, a in enumerate(self.axes)]
        out = np.stack([lo[1], lo[0], lo[1] + ax.rf - 1, lo[0] + ay.rf - 1], axis=1)
        return back(out.astype(np.int64), like_dtype=False)

    # -- RoI projection -----------------------------------------------------------------

    def project(self, boxes, rule: str = "spp") -> Projection:
        """Feature windows of image boxes ``[N, 4]`` (x1, y1, x2, y2) under ``rule`` (see the module docstring).

        A :class:`~rfmap.core.box.Box` (or a list of them) in another order, such as a box from
        ``Analysis.rf_box`` ``(y0, x0, y1, x1)``, is converted, never read as (x1, y1, x2, y2).
        """
        if rule not in RULES:
            raise RFMapError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
        b, convert = _boxes(as_xy(boxes))
        ay, ax = self.axes
        # per column (x1, y1, x2, y2): window = op((coord - offset) / stride) + add, clipped
        plans = []
        for a, side in ((ax, 0), (ay, 0), (ax, 1), (ay, 1)):
            s, c0, h = a.stride, a.center0, Fraction(a.rf - 1, 2)
            offset, op, add = {
                "align": (Fraction(0), None, Fraction(-1, 2)),
                "fast-rcnn": (Fraction(0), "round", 0),
                "spp-simple": (Fraction(0), ("floor", "ceil")[side], (1, -1)[side]),
                "spp": (c0 - s / 2, "floor", 0),  # nearest center, half up: floor((x - c0)/s + 1/2)
                "contain": (c0, ("ceil", "floor")[side], 0),
                "cover": ((c0 + h, c0 - h)[side], ("ceil", "floor")[side], 0),
            }[rule]
            plans.append((float(offset), s, op, float(add), a.size))
        n = b.shape[0]
        window = np.empty((n, 4), dtype=np.float64 if rule == "align" else np.int64)
        empty = np.zeros(n, dtype=bool)
        chunk = 1 << 15
        for start in range(0, n, chunk):
            cols = b[start : start + chunk].T.copy()  # (4, m), cache-sized
            _check_chunk(cols, b, start)
            for k, (offset, s, op, add, size) in enumerate(plans):
                v = cols[k]
                if offset:
                    v -= offset
                _divide(v, s)
                if op == "floor":
                    np.floor(v, out=v)
                elif op == "ceil":
                    np.ceil(v, out=v)
                elif op == "round":  # half away from zero, exactly as C round()
                    t = np.trunc(v)
                    half = np.abs(v - t) >= 0.5  # v - trunc(v) is exact
                    np.add(t, np.copysign(half, v), out=v)
                if add:
                    v += add
            if rule != "align":
                # empty: no cell between the ends, or the window misses the map
                empty[start : start + chunk] = (
                    (cols[2] < cols[0]) | (cols[3] < cols[1]) | (cols[2] < 0) | (cols[3] < 0)
                    | (cols[0] > ax.size - 1) | (cols[1] > ay.size - 1)
                )
                for k, (_, _, _, _, size) in enumerate(plans):
                    np.clip(cols[k], 0, size - 1, out=cols[k])
            window[start : start + chunk] = cols.T

        def back_project(win: np.ndarray) -> np.ndarray:
            out = np.empty(win.shape, dtype=np.float64)
            for k, (offset, s, op, add, size) in enumerate(plans):
                if rule == "align":
                    out[:, k] = (win[:, k] + 0.5) * float(s)
                elif rule in ("fast-rcnn", "spp-simple"):
                    out[:, k] = win[:, k] * float(s)  # the rule's own model: cell i centered at i*S
                else:
                    out[:, k] = float(self.axes[1 - k % 2].center0) + win[:, k] * float(s)
            return out

        return Projection(rule, b, window, empty, back_project, convert)


def _divide(v: np.ndarray, s: Fraction) -> None:
    """``v /= s`` in place, exactly rounded (a multiply where ``1/s`` is exact in binary)."""
    if s.numerator & (s.numerator - 1) == 0:  # power of two (or 1/q with q a power of two)
        v *= float(1 / s)
    else:
        v /= float(s)


def mapper(source, layer, input_size=None) -> Mapper:
    """A :class:`Mapper` for ``layer`` of ``source`` (anything :func:`rfmap.analyze` takes)."""
    from rfmap import analyze
    from rfmap.core.analysis import Analysis

    analysis = source if isinstance(source, Analysis) else analyze(source, input_size)
    return Mapper.from_analysis(analysis, layer)
