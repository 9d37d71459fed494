"""Spatial pyramid pooling (He, Zhang, Ren, Sun, "Spatial Pyramid Pooling in Deep
Convolutional Networks for Visual Recognition", ECCV 2014 / TPAMI 2015).

For an ``n x n`` level on an ``a x a`` map the paper (section 2.3) pools with window
``ceil(a/n)`` and stride ``floor(a/n)``.  That rule leaves the last rows and columns out
when the windows do not tile the map (``a = 10, n = 4``: windows ``[0,3) [2,5) [4,7) [6,9)``
miss column 9) and has stride 0 for ``a < n``.  This module uses instead, per axis of any
length ``a`` (height and width separately)::

    bin i of n spans [floor(i * a / n), ceil((i + 1) * a / n))

which covers the whole map for every ``a >= 1``, is never empty, and equals the paper's
windows whenever those tile the map exactly -- e.g. the paper's ``a = 13`` with
``n = 1, 2, 3, 4, 6``.  It is also the bin rule of ``torch.nn.AdaptiveMaxPool2d``.

Coordinates: pixel-index convention, bins are integer index ranges.  The output is
``(N, C * sum(n * n))``: each level's ``(C, n, n)`` result flattened, levels in the order
given, as SPP-net feeds its fully connected layer.  Max mode takes the first maximum in
row-major order (NaN propagates), avg mode the mean over the bin; they run on the RoI ops'
autograd functions (:class:`rfmap.ops.roi_pool.RectMax`, and
:class:`rfmap.ops.roi_align.SparsePooling` with separable ``1 / len`` weights), so their
backward passes are deterministic on CPU too.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import RFMapError
from ._boxes import check_input, compute_dtype
from .roi_align import PoolingMatrix, SparsePooling
from .roi_pool import RectMax

MODES = ("max", "avg")


def level_bins(n: int, length: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Bins of an ``n``-bin level on an axis of ``length``: ``(start, end)``, ``[n]`` int64 each,
    ``start = floor(i * length / n)``, ``end = ceil((i + 1) * length / n)``."""
    i = torch.arange(n, device=device)
    return i * length // n, -((-(i + 1) * length) // n)


def _check_args(op: str, levels: Sequence[int], mode: str) -> tuple[int, ...]:
    if isinstance(levels, numbers.Integral):
        levels = (levels,)
    levels = tuple(levels)
    if not levels or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in levels):
        raise RFMapError(f"{op}: levels must be a non-empty sequence of positive ints, got {levels!r}")
    if mode not in MODES:
        raise RFMapError(f"{op}: mode must be one of {MODES}, got {mode!r}")
    return tuple(int(n) for n in levels)


def spp_pool(input: Tensor, levels: Sequence[int] = (4, 2, 1), mode: str = "max") -> Tensor:
    """Spatial pyramid pooling of ``input`` ``(N, C, H, W)`` into ``(N, C * sum(n * n))``.

    Bin ``i`` of an ``n``-bin level on an axis of length ``a`` spans
    ``[floor(i*a/n), ceil((i+1)*a/n))`` (see the module docstring for how this relates to
    the paper's ``ceil(a/n)`` window and ``floor(a/n)`` stride).  ``mode``: ``"max"`` or
    ``"avg"``.  Differentiable in ``input``; 16-bit floats are computed in float32.
    """
    op = "spp_pool"
    check_input(op, input)
    levels = _check_args(op, levels, mode)
    n_img, channels, height, width = input.shape
    device = input.device
    if mode == "max":
        per_level = zip(*(_level_rects(n, height, width, device) for n in levels))
        rects = [torch.cat(t).expand(n_img, -1) for t in per_level]
        pooled = RectMax.apply(input, torch.arange(n_img, device=device), *rects)
        parts = pooled.split([n * n for n in levels], dim=2)
    else:
        images, dtype = torch.arange(n_img, device=device), compute_dtype(input.dtype)
        parts = []
        for n in levels:
            wy = _mean_weights(n, height, dtype, device).expand(n_img, n, height)
            wx = _mean_weights(n, width, dtype, device).expand(n_img, n, width)
            parts.append(SparsePooling.apply(input, PoolingMatrix.separable(wy, wx, images, height, width)))
    return torch.cat([p.reshape(n_img, channels * n * n) for p, n in zip(parts, levels)], dim=1)


def _level_rects(n: int, height: int, width: int, device: torch.device) -> tuple[Tensor, ...]:
    """``(top, bottom, left, right)`` of the ``n * n`` bins of a level, row-major, ``[n * n]`` each."""
    (top, bottom), (left, right) = level_bins(n, height, device), level_bins(n, width, device)
    return top.repeat_interleave(n), bottom.repeat_interleave(n), left.repeat(n), right.repeat(n)


def _mean_weights(n: int, length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[n, length]``: row ``i`` is ``1 / len`` on bin ``i`` of the level, 0 elsewhere."""
    start, end = level_bins(n, length, device)
    index = torch.arange(length, device=device)
    inside = (index >= start.unsqueeze(1)) & (index < end.unsqueeze(1))
    return inside.to(dtype) / (end - start).unsqueeze(1).to(dtype)


class SpatialPyramidPool(nn.Module):
    """:func:`spp_pool` as a module."""

    def __init__(self, levels: Sequence[int] = (4, 2, 1), mode: str = "max"):
        super().__init__()
        self.levels = _check_args("SpatialPyramidPool", levels, mode)
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        return spp_pool(input, self.levels, self.mode)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"
