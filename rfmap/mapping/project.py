"""Projecting image boxes onto a layer under the detectors' rules (see :mod:`rfmap.mapping`).

Boxes are ``(x1, y1, x2, y2)``; windows are inclusive feature cells ``(x1, y1, x2, y2)``
(floats for ``align``).  Every function is vectorized over the boxes.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np

from rfmap.core.box import box_iou
from rfmap.errors import RFMapError
from rfmap.mapping.names import CENTER_RULES, RULE_USES, RULES  # noqa: E402,F401  (re-exported)


class Projection:
    """Feature windows of N boxes under one rule, and their quantization error.

    ``window``: ``[N, 4]`` as ``(x1, y1, x2, y2)`` in feature cells (inclusive ints; floats
    for ``align``); ``empty``: ``[N]`` bool, no cell satisfies the rule.  ``back`` (the window
    back-projected to the image, ``[N, 4]``) and ``iou`` (``[N]``) are computed on first use.
    """

    def __init__(self, rule, boxes, window, empty, back_fn, convert, image_size=None):
        self.rule = rule
        self._boxes, self._window, self._empty = boxes, window, empty
        self._back_fn, self._convert = back_fn, convert
        self.image_size = image_size  # (H, W) or None

    @cached_property
    def outside(self) -> np.ndarray:
        """``[N]`` bool: the box reaches outside the image ``[0, W] x [0, H]`` (continuous extent)."""
        if self.image_size is None:
            return np.zeros(len(self._boxes), dtype=bool)
        h, w = self.image_size
        b = self._boxes
        return (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)

    def notes(self) -> list[str | None]:
        """One note per box (``None`` when there is nothing to say): boxes partly or wholly
        outside the image, whose windows are clipped to the map (or empty)."""
        if self.image_size is None:
            return [None] * len(self._boxes)
        h, w = self.image_size
        out: list[str | None] = []
        for k, (x1, y1, x2, y2) in enumerate(self._boxes.tolist()):
            if not self.outside[k]:
                out.append(None)
                continue
            wholly = x2 < 0 or y2 < 0 or x1 > w or y1 > h
            where = "wholly" if wholly else "partly"
            out.append(f"box {k} ({_num(x1)}, {_num(y1)}, {_num(x2)}, {_num(y2)}) lies {where} outside the "
                       f"{h}x{w} image; its window is {'empty' if self._empty[k] else 'clipped to the map'}")
        return out

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
    assert j is not None  # every coordinate is finite, so a box is flipped
    raise RFMapError(f"box {start + j} {boxes[start + j].tolist()} has x2 < x1 or y2 < y1")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _divide(v: np.ndarray, s: Fraction) -> None:
    """``v /= s`` in place, exactly rounded (a multiply where ``1/s`` is exact in binary)."""
    if s.numerator & (s.numerator - 1) == 0:  # power of two (or 1/q with q a power of two)
        v *= float(1 / s)
    else:
        v /= float(s)
