"""Per-axis sample weights of RoIAlign and PS-RoIAlign (torchvision's bilinear sampling).

Per axis (y shown; x is the same with columns), RoI ``k``, bin ``p`` and sample
``i < grid[k]`` sit at ``start + p * bin + (i + 0.5) * bin / grid`` (torchvision's expression
and evaluation order).  A sample with ``y < -1`` or ``y > H`` is *outside*; otherwise
``y <= 0`` becomes 0, ``y >= H - 1`` reads row ``H - 1`` alone, and in between the sample
reads rows ``floor(y)`` and ``floor(y) + 1`` with weights ``1 - f`` and ``f``,
``f = y - floor(y)``.  The 2-D weight of a sample on a pixel is the product of its two
per-axis weights, so a bin's weights are ``A_y[k, ph, y] * A_x[k, pw, x]``.

torchvision multiplies every pixel a sample reads by its weight, zero weights included
(``f = 0`` still reads row ``floor(y) + 1``; at the edge the second read is row ``H - 1``
again, with weight 0), and in ``roi_align``'s CPU kernel an outside sample reads pixel
``(0, 0)`` with weight 0.  For finite inputs these reads add nothing;
an inf or NaN read with weight 0 makes the bin NaN.  :func:`axis_reads` describes them, so
that the ops can reproduce that when the input is not finite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from ._sparse import _CHUNK


class AxisReads(NamedTuple):
    """What the samples of each ``(RoI, bin)`` read along one axis, as ``[K, P, L]`` 0/1 floats:
    ``touched`` rows (by samples inside the map), ``zero`` rows read with weight 0, and
    ``outside`` ``[K, P]`` bool: some sample of the bin is outside the map."""

    touched: Tensor
    zero: Tensor
    outside: Tensor


def _samples(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int) -> Iterator[tuple]:
    """Chunks of samples: ``(row, low, frac, inside, edge, outside)``, ``[K, P, S]`` each but
    ``row`` (``[K, P, 1]`` flat offsets ``(k * P + p) * L``); chunked to bound memory."""
    dtype, device = start.dtype, start.device
    rois = start.shape[0]
    most = int(grid.max()) if grid.numel() else 0
    p = torch.arange(pooled, device=device, dtype=dtype).view(1, -1, 1)
    row = torch.arange(rois * pooled, device=device).view(rois, pooled, 1) * length
    lo, step_ = start.view(-1, 1, 1), bin_size.view(-1, 1, 1)
    g = grid.view(-1, 1, 1).to(dtype)
    gsafe = g.clamp_min(1)
    chunk = max(1, _CHUNK // max(1, rois * pooled))
    for i0 in range(0, most, chunk):
        i = torch.arange(i0, min(most, i0 + chunk), device=device, dtype=dtype).view(1, 1, -1)
        pos = lo + p * step_ + (i + 0.5) * step_ / gsafe  # torchvision's expression and order
        sampled = i < g
        inside = sampled & (pos >= -1) & (pos <= length)
        pos = pos.clamp(0, length)
        low = pos.floor()
        edge = low >= length - 1
        low = torch.where(edge, length - 1, low)
        frac = torch.where(inside & ~edge, pos - low, 0)
        yield row, low.long(), frac, inside, edge, sampled & ~inside


def axis_weights(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int) -> Tensor:
    """``A[k, p, i]``: the sum over the bin's ``grid[k]`` samples of their weights on row
    ``i``, divided by ``max(grid[k], 1)``.  ``[K, P, L]``.

    Accumulated with a 1-D ``index_add_`` in sample order (deterministic on CPU, and on
    CUDA under ``torch.use_deterministic_algorithms``), in chunks of samples to bound
    memory for huge adaptive grids."""
    rois = start.shape[0]
    weights = start.new_zeros(rois * pooled * length)
    for row, low, frac, inside, edge, _ in _samples(start, bin_size, grid, pooled, length):
        low_i = row + low
        weights.index_add_(0, low_i.flatten(), torch.where(inside, 1 - frac, 0).flatten())
        weights.index_add_(0, (low_i + ~edge).flatten(), frac.flatten())
    return weights.view(rois, pooled, length) / grid.view(-1, 1, 1).clamp_min(1).to(start.dtype)


def axis_reads(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int) -> AxisReads:
    """The rows each bin's samples read (see :class:`AxisReads`)."""
    rois = start.shape[0]
    touched = start.new_zeros(rois * pooled * length)
    zero = start.new_zeros(rois * pooled * length)
    outside = torch.zeros(rois, pooled, dtype=torch.bool, device=start.device)
    for row, low, frac, inside, edge, out in _samples(start, bin_size, grid, pooled, length):
        low_i = row + low
        second = inside & ~edge  # reads row low + 1 too
        touched.index_fill_(0, torch.masked_select(low_i, inside), 1)
        touched.index_fill_(0, torch.masked_select(low_i + 1, second), 1)
        # the second row read (low + 1, or low itself at the edge) has weight f, 0 at the edge
        zero.index_fill_(0, torch.masked_select(low_i + ~edge, inside & (frac == 0)), 1)
        outside |= out.any(dim=2)
    shape = (rois, pooled, length)
    return AxisReads(touched.view(shape), zero.view(shape), outside)


def sample_grid(size: Tensor, pooled: tuple[int, int], sampling_ratio: int) -> tuple[Tensor, Tensor]:
    """``(bin_size, grid)`` per RoI and axis, ``[K, 2]`` each in ``(x, y)`` order:
    ``bin = size / pooled`` and ``grid = sampling_ratio`` if positive, else ``ceil(bin)``."""
    pooled_h, pooled_w = pooled
    bins = size / torch.tensor([pooled_w, pooled_h], dtype=size.dtype, device=size.device)
    if sampling_ratio > 0:
        return bins, torch.full_like(bins, sampling_ratio, dtype=torch.int64)
    return bins, torch.ceil(bins).long()
