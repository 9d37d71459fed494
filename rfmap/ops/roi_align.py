"""RoIAlign (He et al., "Mask R-CNN", 2017) with torchvision's semantics, as a sparse linear map.

Coordinates.  Box coordinates are continuous and multiplied by ``spatial_scale``.  With
``aligned=True`` (detectron2's ROIAlignV2, ONNX ``half_pixel``) pixel ``i`` of the feature
map covers ``[i, i + 1)`` and its value sits at its center ``i + 0.5``, so the box is shifted
by -0.5 before sampling.  With ``aligned=False`` (the original Mask R-CNN / Caffe2 op) the
value of pixel ``i`` sits at ``i``: the pixel-index convention, with no shift.

Formulas (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``, itself Caffe2's and
detectron2's ``ROIAlign``), for box ``(x1, y1, x2, y2)`` on an ``H x W`` map, output
``PH x PW``, per axis (y shown)::

    offset = 0.5 if aligned else 0
    y1' = y1 * spatial_scale - offset               (no rounding)
    roi_h = y2 * spatial_scale - offset - y1'       (clamped to >= 1 only if not aligned)
    bin_h = roi_h / PH
    gh = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / PH)
    y = y1' + ph * bin_h + (iy + 0.5) * bin_h / gh  for iy = 0 .. gh - 1

A sample with ``y < -1`` or ``y > H`` (or likewise in x) contributes 0; otherwise ``y <= 0``
becomes 0 and ``y >= H - 1`` reads row ``H - 1`` alone; the value is bilinear in the four
neighbours.  A bin is the sum of its ``gh * gw`` samples divided by ``max(gh * gw, 1)``.
Values agree with torchvision's to rounding (the sums are grouped differently).  One
departure, for non-finite inputs only: the C kernels give a sample outside the map zero
weights on pixel 0 and still multiply, so an inf or NaN at pixel 0 turns such bins into
NaN; here a zero weight reads nothing.

Implementation.  The op is linear in the input and the bilinear weights factor into a
y part and an x part, so each output bin is a row of a sparse matrix ``S`` whose entries
are outer products of per-axis weights.  ``S`` (one row per RoI bin, one column per pixel
of the images in use, int64 indices) is built vectorized over all RoIs; the forward pass
is ``S @ X`` with ``X`` the ``(pixels, C)`` channel-last view of the input, the backward
pass ``S^T @ G`` with ``S^T`` built by a stable sort.  Both are CSR products, which
compute each output row in a fixed order: the backward pass is deterministic on CPU.  Pure
torch ops on the input's device: any device with CSR x dense products (CPU, CUDA).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import RFMapError
from ._boxes import BoxesLike, check_output_size, check_spatial_scale, compute_dtype, prepare

#: Elements of the largest temporary a helper allocates at once (memory bound for huge grids).
_CHUNK = 1 << 22
#: Elements of a result block that stays in cache while it is transposed into the output.
_CACHE = 1 << 20


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with torchvision's semantics (see the module docstring for the formulas).

    ``input``: ``(N, C, H, W)`` float16/bfloat16/float32/float64 (16-bit floats are computed
    in float32 and cast back).  ``boxes``: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2,
    y2)`` or a list of ``Tensor[L_i, 4]``, continuous coordinates in input-image units,
    scaled by ``spatial_scale``; with ``aligned=True`` pixel ``i`` covers ``[i, i + 1)``,
    with ``aligned=False`` pixel ``i`` is the point ``i``.  ``output_size``: ``PH`` or
    ``(PH, PW)``.  ``sampling_ratio``: samples per bin and axis, ``<= 0`` for adaptive
    (``ceil(roi_size / output_size)``).  Returns ``(K, C, PH, PW)``; differentiable in
    ``input`` (not in ``boxes``).

    Example (detectron2's test): ``roi_align(arange(25.).view(1, 1, 5, 5), [tensor([[1., 1,
    3, 3]])], 4, aligned=True)[0, 0, 0]`` is ``[4.5, 5.0, 5.5, 6.0]``.
    """
    op = "roi_align"
    pooled_h, pooled_w = check_output_size(op, output_size)
    _check_sampling(op, sampling_ratio, aligned)
    batch, rois, spatial_scale = prepare(op, input, boxes, spatial_scale)
    height, width = input.shape[2:]
    offset = 0.5 if aligned else 0.0
    start = rois * spatial_scale - offset
    size = start[:, 2:] - start[:, :2]  # (roi_w, roi_h)
    if not aligned:
        size = size.clamp_min(1.0)
    bins = size / torch.tensor([pooled_w, pooled_h], dtype=size.dtype, device=size.device)
    grid = torch.full_like(bins, sampling_ratio, dtype=torch.int64) if sampling_ratio > 0 else torch.ceil(bins).long()
    wy = axis_weights(start[:, 1], bins[:, 1], grid[:, 1], pooled_h, height)
    wx = axis_weights(start[:, 0], bins[:, 0], grid[:, 0], pooled_w, width)
    matrix = PoolingMatrix.separable(wy, wx, batch, height, width)
    out = SparsePooling.apply(input, matrix)
    return out.view(out.shape[0], out.shape[1], pooled_h, pooled_w)


def _check_sampling(op: str, sampling_ratio: int, aligned: bool) -> None:
    if not isinstance(sampling_ratio, numbers.Integral) or isinstance(sampling_ratio, bool):
        raise RFMapError(f"{op}: sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    if not isinstance(aligned, bool):
        raise RFMapError(f"{op}: aligned must be a bool, got {aligned!r}")


def axis_weights(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int) -> Tensor:
    """Per-axis RoIAlign weights ``A[k, p, i]``: bin ``p`` of RoI ``k`` on map row (column) ``i``.

    ``A[k, p]`` is the sum over the bin's ``grid[k]`` samples of their two linear-interpolation
    weights, divided by ``max(grid[k], 1)``, so that the 2-D bin weights are
    ``A_y[k, ph, y] * A_x[k, pw, x]``.  Accumulated with a 1-D ``index_add_`` in sample order
    (deterministic on CPU, and on CUDA under ``torch.use_deterministic_algorithms``), in
    chunks of samples to bound memory for huge adaptive grids.
    """
    dtype, device = start.dtype, start.device
    rois = start.shape[0]
    weights = start.new_zeros(rois * pooled * length)
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
        valid = (i < g) & (pos >= -1) & (pos <= length)
        pos = pos.clamp(0, length)
        low = pos.floor()
        edge = low >= length - 1
        low = torch.where(edge, length - 1, low)
        frac = torch.where(valid & ~edge, pos - low, 0)
        low_i = row + low.long()
        weights.index_add_(0, low_i.flatten(), torch.where(valid, 1 - frac, 0).flatten())
        weights.index_add_(0, (low_i + ~edge).flatten(), frac.flatten())
    return weights.view(rois, pooled, length) / gsafe


def _nonzeros(w: Tensor) -> tuple[Tensor, Tensor]:
    """The non-zeros of each row of ``w [..., L]``, left-aligned in increasing index order:
    ``(index int64, value)``, both ``[..., M]`` with ``M`` the longest row, padded with zeros."""
    flat = w.reshape(-1, w.shape[-1])
    keep = flat != 0
    longest = int(keep.sum(1).max()) if flat.numel() else 0
    # entry (r, i) goes to slot rank-within-row; dropped entries to a spare last slot
    slot = torch.where(keep, keep.cumsum(1) - 1, longest)
    index = torch.zeros(flat.shape[0], longest + 1, dtype=torch.int64, device=w.device)
    value = flat.new_zeros(flat.shape[0], longest + 1)
    index.scatter_(1, slot, torch.arange(flat.shape[1], device=w.device).expand_as(slot))
    value.scatter_(1, slot, flat)
    shape = (*w.shape[:-1], longest)
    return index[:, :longest].reshape(shape), value[:, :longest].reshape(shape)


@dataclass(frozen=True)
class PoolingMatrix:
    """A linear pooling op as a CSR matrix ``S``: ``out[k, c, p] = sum_j S[k*P + p, j] X[j, c]``.

    Column ``j = slot * H * W + y * W + x`` is pixel ``(y, x)`` of image ``images[slot]``
    (only the images some RoI uses take columns).  Indices are int64 throughout.
    """

    crow: Tensor
    col: Tensor
    val: Tensor
    images: Tensor
    bins: int
    height: int
    width: int

    @classmethod
    def separable(cls, wy: Tensor, wx: Tensor, batch: Tensor, height: int, width: int) -> "PoolingMatrix":
        """Rows ``(k, ph, pw)`` with weight ``wy[k, ph, y] * wx[k, pw, x]`` on image ``batch[k]``.

        Each row is the outer product of the non-zeros of ``wy[k, ph]`` and ``wx[k, pw]``
        (padded to the longest, then the zero products dropped), so its columns come out
        sorted.  Built in chunks of RoIs to bound memory.
        """
        rois, ph_, _ = wy.shape
        pw_ = wx.shape[1]
        images, slot = torch.unique(batch, return_inverse=True)
        ycol, yval = _nonzeros(wy)
        xcol, xval = _nonzeros(wx)
        base = (slot * (height * width)).view(-1, 1, 1, 1, 1)
        cols, vals, counts = [], [], []
        step = max(1, _CHUNK // max(1, ph_ * pw_ * ycol.shape[-1] * xcol.shape[-1]))
        for k in range(0, rois, step):
            part = slice(k, k + step)
            col = base[part] + ycol[part, :, None, :, None] * width + xcol[part, None, :, None, :]
            val = yval[part, :, None, :, None] * xval[part, None, :, None, :]
            keep = val != 0
            counts.append(keep.sum(dim=(3, 4)).flatten())
            cols.append(torch.masked_select(col, keep))
            vals.append(torch.masked_select(val, keep))
        count = torch.cat(counts) if counts else wy.new_zeros(0, dtype=torch.int64)
        crow = torch.cat([count.new_zeros(1), count.cumsum(0)])
        col = torch.cat(cols) if cols else crow[:0]
        val = torch.cat(vals) if vals else wy.new_zeros(0)
        return cls(crow, col, val, images, ph_ * pw_, height, width)

    @property
    def shape(self) -> tuple[int, int]:
        """``(K * bins, pixels of the images in use)``."""
        return self.crow.numel() - 1, self.images.numel() * self.height * self.width

    def blocks(self, step: int) -> Iterator[tuple[int, int, Tensor]]:
        """``(k0, k1, S_block)``: the rows of RoIs ``k0 .. k1 - 1`` as a CSR tensor, ``step`` RoIs at a time."""
        rois, pixels = (self.crow.numel() - 1) // self.bins, self.shape[1]
        bounds = self.crow[:: self.bins * step].tolist() + [int(self.crow[-1])]
        for i, k0 in enumerate(range(0, rois, step)):
            k1 = min(rois, k0 + step)
            a, b = bounds[i], bounds[i + 1]
            crow = self.crow[k0 * self.bins : k1 * self.bins + 1] - a
            yield k0, k1, _csr(crow, self.col[a:b], self.val[a:b], ((k1 - k0) * self.bins, pixels))


def _csr(crow: Tensor, col: Tensor, val: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def _transpose(s: Tensor) -> Tensor:
    """``s^T`` as a CSR tensor, its entries stably sorted by column: each row of ``s^T``
    keeps the order of ``s``'s rows, so products with it are deterministic."""
    rows, cols = s.shape
    crow, col = s.crow_indices(), s.col_indices()
    keys = col.to(torch.int32) if cols <= torch.iinfo(torch.int32).max else col  # narrower keys sort faster
    order = torch.argsort(keys, stable=True)
    row = torch.repeat_interleave(torch.arange(rows, device=col.device), crow.diff(), output_size=col.numel())
    crow_t = torch.cat([crow.new_zeros(1), torch.bincount(col, minlength=cols).cumsum(0)])
    return _csr(crow_t, row[order], s.values()[order], (cols, rows))


class SparsePooling(torch.autograd.Function):
    """``out = S @ X`` channel-wise for a :class:`PoolingMatrix`; backward ``S^T @ G``.

    Both passes run in blocks of RoIs, so that each block's ``(bins, C)`` rows stay in cache
    while they are transposed to or from the ``(K, C, bins)`` layout.  The backward pass adds
    the blocks' products in block order.
    """

    @staticmethod
    def forward(ctx, input: Tensor, matrix: PoolingMatrix) -> Tensor:
        ctx.matrix, ctx.input_shape, ctx.input_dtype = matrix, input.shape, input.dtype
        channels, bins = input.shape[1], matrix.bins
        x = input if matrix.images.numel() == input.shape[0] else input.index_select(0, matrix.images)
        x = x.to(compute_dtype(input.dtype)).permute(0, 2, 3, 1).reshape(matrix.shape[1], channels)
        x = x.contiguous()  # row-major: MKL would copy it for every block
        out = x.new_empty((matrix.shape[0] // bins, channels, bins))
        step = _block(bins, channels)
        buffer = x.new_empty(min(step, out.shape[0]) * bins, channels)
        for k0, k1, s in matrix.blocks(step):
            part = buffer[: (k1 - k0) * bins]
            torch.addmm(part, s, x, beta=0, out=part)  # no zero-fill, no copy of the result
            out[k0:k1] = part.view(k1 - k0, bins, channels).transpose(1, 2)
        return out.to(input.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        matrix = ctx.matrix
        n, channels, height, width = ctx.input_shape
        bins = matrix.bins
        grad = grad.to(compute_dtype(ctx.input_dtype))
        gx = grad.new_zeros(matrix.shape[1], channels)
        step = _block(bins, channels)
        buffer = grad.new_empty(min(step, grad.shape[0]) * bins, channels)
        # the (serial) sorts first, then the (parallel) products back to back
        for k0, k1, st in [(k0, k1, _transpose(s)) for k0, k1, s in matrix.blocks(step)]:
            part = buffer[: (k1 - k0) * bins]
            part.view(k1 - k0, bins, channels).copy_(grad[k0:k1].transpose(1, 2))
            torch.addmm(gx, st, part, out=gx)
        gx = gx.view(matrix.images.numel(), height, width, channels).permute(0, 3, 1, 2)  # channels_last
        if matrix.images.numel() == n:
            return gx.to(ctx.input_dtype), None
        grad_input = gx.new_zeros(ctx.input_shape)
        grad_input[matrix.images] = gx
        return grad_input.to(ctx.input_dtype), None


def _block(bins: int, channels: int) -> int:
    """RoIs per block: ``_CACHE`` elements of ``(bins, C)`` rows."""
    return max(1, _CACHE // max(1, bins * channels))


class RoIAlign(nn.Module):
    """:func:`roi_align` as a module (torchvision's ``RoIAlign`` signature)."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ):
        super().__init__()
        self.output_size = check_output_size("RoIAlign", output_size)
        self.spatial_scale = check_spatial_scale("RoIAlign", spatial_scale)
        _check_sampling("RoIAlign", sampling_ratio, aligned)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
