"""Coordinates between the image and one layer: the :class:`Mapper` (see :mod:`rfmap.mapping`)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from rfmap.core.box import as_xy
from rfmap.errors import RFMapError
from rfmap.mapping.axes import AffineAxis, CellAxis
from rfmap.mapping.project import CENTER_RULES, RULES, Projection, _as_numpy, _boxes, _check_chunk, _divide


class Mapper:
    """Maps between the image and one shift-invariant layer (per axis, H then W).

    Build it with :meth:`from_analysis`.  ``cell_to_point``/``point_to_cell`` are exact
    inverses: ``point_to_cell(cell_to_point(i)) == i``.
    """

    def __init__(self, axes: tuple[Any, Any], name: str = "layer", image_size: tuple[int, int] | None = None):
        self.axes = axes
        self.name = name
        self.image_size = image_size

    @property
    def shift_invariant(self) -> bool:
        return all(a.shift_invariant for a in self.axes)

    @classmethod
    def from_analysis(cls, analysis, layer) -> Mapper:
        """The mapper of any layer with a stride: shift-invariant layers map in O(1) per box,
        others (FPN levels, decoders) through the exact per-cell boxes of the engine."""
        row = analysis.layer(layer)
        if any(s == 0 for s in row.stride):
            raise RFMapError(f"layer '{row.name}' sees the whole input (stride 0): no coordinate mapping")
        if len(row.axes) != 2:
            raise RFMapError(f"box mapping needs a 2-D layer, '{row.name}' has {len(row.axes)} axes")
        if row.input_axes is not None:
            raise RFMapError(f"layer '{row.name}' holds the image's axes transposed (W, H): box mapping needs a layer in "
                             "(H, W) order (Analysis.rf_box and nearest_cell answer for any layer)")
        if row.shift_invariant:
            axes: tuple[Any, ...] = tuple(AffineAxis(a.stride, a.center0, a.rf, a.size) for a in row.axes)
        else:
            axes = tuple(CellAxis(lo, hi, a.stride) for (lo, hi), a in zip(analysis.axis_boxes(row.name), row.axes))
        return cls(axes, row.name, tuple(analysis.input_size))

    # -- points and cells, (y, x) ------------------------------------------------------

    def cell_to_point(self, cells):
        """RF centers of cells ``[N, 2]`` (y, x) in image pixels."""
        c, back = _as_numpy(cells)
        c = c.reshape(-1, 2)
        out = np.stack([a.center(c[:, k]) for k, a in enumerate(self.axes)], axis=1)
        return back(out)

    def point_to_cell(self, points, *, continuous: bool = False):
        """Cells ``[N, 2]`` whose RF center is nearest to image points (ties: the lower cell),
        clipped to the map; with ``continuous`` the exact fractional cell coordinate."""
        p, back = _as_numpy(points)
        p = p.reshape(-1, 2)
        cols = []
        for k, a in enumerate(self.axes):
            if continuous:
                if not a.shift_invariant:
                    raise RFMapError(f"layer '{self.name}' is not shift-invariant: no continuous cell coordinate")
                cols.append((p[:, k] - float(a.center0)) / float(a.stride))
            elif a.shift_invariant:
                cols.append(np.clip(np.ceil((p[:, k] - float(a.center0)) / float(a.stride) - 0.5), 0, a.size - 1))
            else:
                cols.append(np.clip(_nearest_lower(a, p[:, k]), 0, a.size - 1))
        out = np.stack(cols, axis=1)
        return back(out if continuous else out.astype(np.int64), like_dtype=continuous)

    def cell_to_box(self, cells):
        """Theoretical RF boxes ``[N, 4]`` (x1, y1, x2, y2, inclusive pixels) of cells ``[N, 2]`` (y, x)."""
        c, back = _as_numpy(cells)
        c = c.reshape(-1, 2)
        (ylo, yhi), (xlo, xhi) = (a.box(c[:, k]) for k, a in enumerate(self.axes))
        out = np.stack([xlo, ylo, xhi, yhi], axis=1)
        return back(out.astype(np.int64), like_dtype=False)

    # -- RoI projection -----------------------------------------------------------------

    def project(self, boxes, rule: str = "spp") -> Projection:
        """Feature windows of image boxes ``[N, 4]`` (x1, y1, x2, y2) under ``rule`` (see the module docstring).

        A :class:`~rfmap.core.box.Box` (or a list of them) in another order, such as a box from
        ``Analysis.rf_box`` ``(y0, x0, y1, x1)``, is converted, never read as (x1, y1, x2, y2).
        Shift-invariant layers and the stride-only rules use the affine formulas; the center
        rules on other layers read the exact per-cell centers and boxes.
        """
        if rule not in RULES:
            raise RFMapError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
        b, convert = _boxes(as_xy(boxes))
        if self.shift_invariant or rule not in CENTER_RULES:
            return self._project_affine(b, convert, rule)
        return self._project_cells(b, convert, rule)

    def _project_cells(self, b: np.ndarray, convert, rule: str) -> Projection:
        """The center rules on per-cell geometry (any layer): the same definitions as the
        affine formulas, answered by the axes' exact cell boxes."""
        ay, ax = self.axes
        for start in range(0, b.shape[0], 1 << 15):
            _check_chunk(b[start : start + (1 << 15)].T.copy(), b, start)
        cols = []
        for k, (a, side) in enumerate(((ax, 0), (ay, 0), (ax, 1), (ay, 1))):
            x = b[:, k]
            if rule == "spp":
                cols.append(a.nearest(x))
            elif rule == "contain":
                cols.append(a.first_center_at_least(x) if side == 0 else a.last_center_at_most(x))
            else:
                cols.append(a.first_box_reaching(x) if side == 0 else a.last_box_starting_by(x))
        win = np.stack(cols, axis=1)
        empty = (win[:, 2] < win[:, 0]) | (win[:, 3] < win[:, 1]) | (win[:, 2] < 0) | (win[:, 3] < 0)
        empty |= (win[:, 0] > ax.size - 1) | (win[:, 1] > ay.size - 1)
        for k, a in enumerate((ax, ay, ax, ay)):
            np.clip(win[:, k], 0, a.size - 1, out=win[:, k])
        window = win.astype(np.int64)

        def back_project(w: np.ndarray) -> np.ndarray:
            return np.stack([(ax, ay, ax, ay)[k].center(w[:, k]) for k in range(4)], axis=1)

        return Projection(rule, b, window, empty, back_project, convert, self.image_size)

    def _project_affine(self, b: np.ndarray, convert, rule: str) -> Projection:
        """The shift-invariant fast path: every window edge is ``op((x - offset) / S) + add``."""
        ay, ax = self.axes
        # per column (x1, y1, x2, y2): window = op((coord - offset) / stride) + add, clipped
        plans = []
        for a, side in ((ax, 0), (ay, 0), (ax, 1), (ay, 1)):
            s, c0, h = a.stride, a.center0, Fraction(a.rf - 1, 2)
            rules: dict[str, tuple[Fraction, str | None, Fraction | int]] = {
                "align": (Fraction(0), None, Fraction(-1, 2)),
                "fast-rcnn": (Fraction(0), "round", 0),
                "spp-simple": (Fraction(0), ("floor", "ceil")[side], (1, -1)[side]),
                "spp": (c0 - s / 2, "floor", 0),  # nearest center, half up: floor((x - c0)/s + 1/2)
                "contain": (c0, ("ceil", "floor")[side], 0),
                "cover": ((c0 + h, c0 - h)[side], ("ceil", "floor")[side], 0),
            }
            edge_offset, edge_op, edge_add = rules[rule]
            plans.append((float(edge_offset), s, edge_op, float(edge_add), a.size))
        n = b.shape[0]
        window = np.empty((n, 4), dtype=np.float64 if rule == "align" else np.int64)
        empty = np.zeros(n, dtype=bool)
        chunk = 1 << 15
        for start in range(0, n, chunk):
            cols = b[start : start + chunk].T.copy()  # (4, m), cache-sized
            _check_chunk(cols, b, start)
            for k, (offset, s, op, add, _size) in enumerate(plans):
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
            for k, (_offset, s, _op, _add, _size) in enumerate(plans):
                if rule == "align":
                    out[:, k] = (win[:, k] + 0.5) * float(s)
                elif rule in ("fast-rcnn", "spp-simple"):
                    out[:, k] = win[:, k] * float(s)  # the rule's own model: cell i centered at i*S
                else:
                    out[:, k] = float(self.axes[1 - k % 2].center0) + win[:, k] * float(s)
            return out

        return Projection(rule, b, window, empty, back_project, convert, self.image_size)


def _nearest_lower(a: CellAxis, x: np.ndarray) -> np.ndarray:
    """The cell whose center is nearest to ``x``, ties to the lower cell (as ``point_to_cell``)."""
    d = np.abs(a.centers[None, :] - x[:, None])
    return d.argmin(axis=1).astype(np.float64)


def mapper(source, layer, input_size=None) -> Mapper:
    """A :class:`Mapper` for ``layer`` of ``source`` (anything :func:`rfmap.analyze` takes)."""
    from rfmap import analyze
    from rfmap.core.analysis import Analysis

    analysis = source if isinstance(source, Analysis) else analyze(source, input_size)
    return Mapper.from_analysis(analysis, layer)
