"""Boxes: one type for the whole library, its axis order in its name.

rfmap's own boxes follow the axes of the maps, (H, W) in 2-D: starts then ends,
``(y0, x0, y1, x1)`` -- a :class:`Box` with ``order="yx"``.  Detectors write image boxes the
other way round, ``(x1, y1, x2, y2)`` -- ``order="xy"``.  A :class:`Box` is a tuple (it
compares equal to the plain tuple of its values, in its own order) that knows its order, so
passing a box from ``Analysis.rf_box`` where an ``xy`` box is expected converts it instead of
silently swapping H and W.  Which convention the numbers are in (pixel-index, inclusive; or
continuous) is stated by the function that returns or takes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rfmap.errors import RFMapError

#: axis letters of rfmap's maps, per number of spatial axes (1-D maps are along x)
AXES = {1: "x", 2: "yx", 3: "zyx"}


class Box(tuple[Any, ...]):
    """A box: the starts of every axis, then the ends, in the axis order ``order`` (``"yx"``:
    ``(y0, x0, y1, x1)``; ``"xy"``: ``(x1, y1, x2, y2)`` as detectors write it)."""

    order: str

    def __new__(cls, values: Iterable[Any], order: str = "yx") -> Box:
        vals = tuple(values)
        if not isinstance(order, str) or len(vals) != 2 * len(order) or len(set(order)) != len(order):
            raise RFMapError(f"a box in order {order!r} has {2 * len(str(order))} numbers, got {len(vals)}")
        box = super().__new__(cls, vals)
        box.order = order
        return box

    def __getnewargs__(self) -> tuple[tuple[Any, ...], str]:
        return (tuple(self), self.order)

    @property
    def starts(self) -> tuple[Any, ...]:
        return tuple(self[: len(self.order)])

    @property
    def ends(self) -> tuple[Any, ...]:
        return tuple(self[len(self.order):])

    def to(self, order: str) -> Box:
        """The same box with its numbers in ``order`` (``"xy"`` <-> ``"yx"``)."""
        if sorted(order) != sorted(self.order):
            raise RFMapError(f"a box in order {self.order!r} cannot be written in order {order!r}")
        index = [self.order.index(a) for a in order]
        return Box([self.starts[i] for i in index] + [self.ends[i] for i in index], order)

    def __getattr__(self, name: str) -> Any:
        # y0, x0 (starts) and y1, x1 (ends) in "yx"; x1, y1 / x2, y2 in "xy"
        if len(name) == 2 and name[0] in self.order and name[1] in "012":
            axis = self.order.index(name[0])
            first = "0" if self.order != "xy" else "1"
            return self.starts[axis] if name[1] == first else self.ends[axis]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Box({tuple(self)!r}, order={self.order!r})"


def as_xy(boxes: Any) -> Any:
    """Boxes for an API that takes ``(x1, y1, x2, y2)``: a :class:`Box` (or a list of them) in
    another order is converted; anything else is taken to be ``xy`` already."""
    if isinstance(boxes, Box):
        return boxes.to("xy") if boxes.order != "xy" else boxes
    if isinstance(boxes, (list, tuple)) and boxes and all(isinstance(b, Box) for b in boxes):
        return [as_xy(b) for b in boxes]
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes written as starts then ends (both in the same order),
    continuous coordinates, broadcasting over leading dims (``a[:, None]`` against
    ``b[None, :]`` gives the pairwise table).  Two equal empty boxes have IoU 1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a.shape[-1] // 2
    inter = np.ones(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]))
    area_a = np.ones(a.shape[:-1])
    area_b = np.ones(b.shape[:-1])
    for k in range(d):
        inter = inter * np.clip(np.minimum(a[..., k + d], b[..., k + d]) - np.maximum(a[..., k], b[..., k]), 0, None)
        area_a = area_a * (a[..., k + d] - a[..., k])
        area_b = area_b * (b[..., k + d] - b[..., k])
    union = area_a + area_b - inter
    same = np.all(a == b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(float))
