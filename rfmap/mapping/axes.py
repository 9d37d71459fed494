"""The geometry of one layer along one axis, as the mapping rules read it.

:class:`AffineAxis` is a shift-invariant layer: cell ``i`` is centered at ``c0 + i*S`` and sees
``[c0 - (r-1)/2 + i*S, c0 + (r-1)/2 + i*S]`` -- O(1) per query.  :class:`CellAxis` is any
layer (FPN levels after a top-down path, decoders, transposed convolutions): exact per-cell
centers and boxes from the engine, queried by binary search where they are monotone and by
a direct scan otherwise.  Both answer the same questions, vectorized over a float64 array
``x`` of image coordinates (pixel-index convention, pixel ``i`` is the point ``i``):

* ``nearest(x)``: the cell whose RF center is nearest (ties: the upper cell, as SPP-net);
* ``first_center_at_least(x)`` / ``last_center_at_most(x)``: cells whose center is inside;
* ``first_box_reaching(x)`` / ``last_box_starting_by(x)``: cells whose RF box reaches ``x``
  from the left / starts at or before ``x`` (the ``cover`` rule);
* ``center(i)``, ``box(i)``: the RF center and theoretical box of cells ``i``.

Results are unclipped cell indices (floats, possibly outside ``0..size-1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class AffineAxis:
    """Cell ``i`` of a shift-invariant layer along one axis: center ``c0 + i*S``, box ``[c0 - (r-1)/2 + i*S, ...]``."""

    stride: Fraction
    center0: Fraction
    rf: int
    size: int

    @property
    def shift_invariant(self) -> bool:
        return True

    def _cells(self, x: np.ndarray, offset: Fraction) -> np.ndarray:
        return (x - float(offset)) / float(self.stride)

    def nearest(self, x: np.ndarray) -> np.ndarray:
        return np.floor(self._cells(x, self.center0) + 0.5)

    def first_center_at_least(self, x: np.ndarray) -> np.ndarray:
        return np.ceil(self._cells(x, self.center0))

    def last_center_at_most(self, x: np.ndarray) -> np.ndarray:
        return np.floor(self._cells(x, self.center0))

    def first_box_reaching(self, x: np.ndarray) -> np.ndarray:
        return np.ceil(self._cells(x, self.center0 + Fraction(self.rf - 1, 2)))

    def last_box_starting_by(self, x: np.ndarray) -> np.ndarray:
        return np.floor(self._cells(x, self.center0 - Fraction(self.rf - 1, 2)))

    def center(self, i: np.ndarray) -> np.ndarray:
        return float(self.center0) + i * float(self.stride)

    def box(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = float(self.center0 - Fraction(self.rf - 1, 2)) + i * float(self.stride)
        return lo, lo + self.rf - 1


class CellAxis:
    """Any layer along one axis: the exact boxes ``lo[i]..hi[i]`` of its cells (int arrays) and
    its effective stride (the jump; the stride-only rules use it)."""

    shift_invariant = False

    def __init__(self, lo: np.ndarray, hi: np.ndarray, stride: Fraction):
        self.lo = np.asarray(lo, dtype=np.int64)
        self.hi = np.asarray(hi, dtype=np.int64)
        self.size = int(self.lo.size)
        self.stride = Fraction(stride)
        self.centers = (self.lo + self.hi) / 2.0  # exact: halves are binary fractions
        self.center0 = Fraction(int(self.lo[0]) + int(self.hi[0]), 2)
        self.rf = int((self.hi - self.lo).max()) + 1
        inc = lambda a: bool(np.all(np.diff(a) >= 0))  # noqa: E731
        self.monotone = inc(self.centers) and inc(self.lo) and inc(self.hi)

    def _first(self, values: np.ndarray, x: np.ndarray, strict: bool) -> np.ndarray:
        """First cell with ``values >= x`` (``> x`` when ``strict``)."""
        if self.monotone:
            return np.searchsorted(values, x, side="right" if strict else "left").astype(np.float64)
        hit = values[None, :] > x[:, None] if strict else values[None, :] >= x[:, None]
        return np.where(hit.any(axis=1), hit.argmax(axis=1), self.size).astype(np.float64)

    def _last(self, values: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Last cell with ``values <= x``."""
        if self.monotone:
            return np.searchsorted(values, x, side="right").astype(np.float64) - 1
        hit = values[None, :] <= x[:, None]
        last = self.size - 1 - hit[:, ::-1].argmax(axis=1)
        return np.where(hit.any(axis=1), last, -1).astype(np.float64)

    def nearest(self, x: np.ndarray) -> np.ndarray:
        """The cell with the nearest center (ties: the upper cell); beyond the first and last
        centers, the virtual cells one stride apart (so a box off the map is empty)."""
        c, n = self.centers, self.size
        if self.monotone:
            j = np.clip(np.searchsorted(c, x, side="left"), 1, max(n - 1, 1))
            if n == 1:
                idx = np.zeros(x.shape)
            else:
                upper = c[j] - x <= x - c[j - 1]
                idx = np.where(upper, np.searchsorted(c, c[j], side="right") - 1, j - 1).astype(np.float64)
        else:
            d = np.abs(c[None, :] - x[:, None])
            idx = (n - 1 - d[:, ::-1].argmin(axis=1)).astype(np.float64)
        s = float(self.stride)
        lo_ext = np.floor((x - c[0]) / s + 0.5)
        hi_ext = (n - 1) + np.floor((x - c[-1]) / s + 0.5)
        return np.where(x < c.min(), np.minimum(lo_ext, 0), np.where(x > c.max(), np.maximum(hi_ext, n - 1), idx))

    def first_center_at_least(self, x: np.ndarray) -> np.ndarray:
        return self._first(self.centers, x, strict=False)

    def last_center_at_most(self, x: np.ndarray) -> np.ndarray:
        return self._last(self.centers, x)

    def first_box_reaching(self, x: np.ndarray) -> np.ndarray:
        return self._first(self.hi.astype(np.float64), x, strict=False)

    def last_box_starting_by(self, x: np.ndarray) -> np.ndarray:
        return self._last(self.lo.astype(np.float64), x)

    def center(self, i: np.ndarray) -> np.ndarray:
        return self.centers[np.clip(i.astype(np.int64), 0, self.size - 1)]

    def box(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.clip(i.astype(np.int64), 0, self.size - 1)
        return self.lo[k].astype(np.float64), self.hi[k].astype(np.float64)
