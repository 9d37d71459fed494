"""Position-sensitive RoI pooling (Dai et al., "R-FCN", 2016; Li et al., "Light-Head R-CNN",
2017) with torchvision's semantics (``torchvision.ops.ps_roi_align`` / ``ps_roi_pool``).

The input has ``C = C_out * PH * PW`` channels, a score map per output bin: output bin
``(ph, pw)`` of output channel ``c`` reads only input channel ``(c * PH + ph) * PW + pw``.
The output is ``(K, C_out, PH, PW)``.

``ps_roi_align`` (continuous coordinates, always aligned: pixel ``i`` covers ``[i, i + 1)``)
samples like :func:`rfmap.ops.roi_align` with ``aligned=True``
(``torchvision/csrc/ops/cpu/ps_roi_align_kernel.cpp``), with two differences of
torchvision's kernel that are kept: a bin is divided by ``gh * gw`` unclamped, so a bin with
no samples (an adaptive grid of a zero-size box) is ``0 / 0 = NaN``; and a sample outside the
map reads nothing (no pixel ``(0, 0)`` read with weight 0).

``ps_roi_pool`` (pixel-index convention) averages integer bins
(``torchvision/csrc/ops/cpu/ps_roi_pool_kernel.cpp``)::

    xs, xe = round(x1 * spatial_scale), round(x2 * spatial_scale)   C round(): half away from zero
    roi_w = max(xe - xs, 1)                                         (no + 1: the end cell is out)
    bin pw spans [floor(pw * roi_w / PW) + xs, ceil((pw + 1) * roi_w / PW) + xs),
                 both ends clipped to [0, W - 1]                    (the last column never counts)
    value = mean over the bin, 0 for an empty bin

torchvision's backward kernel clips the bins to ``[0, W]`` instead, so near the right and
bottom border its gradient is not the gradient of its forward; here the backward pass is
the exact adjoint of the forward (gradcheck-tested).  Both ops are linear, computed with the
sparse pooling matrices of :mod:`rfmap.ops._sparse` (block diagonal, a block per bin and its
channel slice: one product for all bins), deterministic in backward, registered as
``torch.ops.rfmap.ps_roi_align`` / ``ps_roi_pool``.  ONNX has no position-sensitive pooling
op: exporting them raises :class:`rfmap.RFMapError`.
"""

from __future__ import annotations

from typing import List, Union, cast

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from ..errors import RFMapError
from ._boxes import (
    check_input,
    check_output_size,
    check_rois,
    check_sampling,
    check_spatial_scale,
    compute_dtype,
    divide,
    prepare,
    roi_pool_cells,
)
from ._library import call, custom_op, register_backward, roi_rows, script_rois
from ._samples import axis_reads, axis_weights, sample_grid
from ._sparse import MatrixMemo, PoolingMatrix, ps_inputs, ps_pool_backward, ps_pool_forward
from ._threads import single_threaded


def ps_roi_align(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """Position-sensitive RoIAlign (R-FCN / Light-Head R-CNN; see the module docstring).

    ``input``: ``(N, C_out * PH * PW, H, W)`` float tensor; ``boxes``: ``Tensor[K, 5]`` or a
    list of ``Tensor[L_i, 4]`` in input-image units, continuous coordinates with pixel ``i``
    covering ``[i, i + 1)``; ``sampling_ratio <= 0``: adaptive.  Returns
    ``(K, C_out, PH, PW)``, differentiable in ``input``.
    """
    if not torch.jit.is_scripting():
        return _ps_roi_align(input, boxes, output_size, spatial_scale, sampling_ratio)
    rois = script_rois(boxes)
    return torch.ops.rfmap.ps_roi_align(input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio)


def ps_roi_pool(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Position-sensitive RoI average pooling (R-FCN; see the module docstring).

    ``input``: ``(N, C_out * PH * PW, H, W)`` float tensor; ``boxes``: ``Tensor[K, 5]`` or a
    list of ``Tensor[L_i, 4]`` in input-image units, pixel-index convention, corners rounded
    half away from zero.  Returns ``(K, C_out, PH, PW)``, differentiable in ``input``.
    """
    if not torch.jit.is_scripting():
        return _ps_roi_pool(input, boxes, output_size, spatial_scale)
    rois = script_rois(boxes)
    return torch.ops.rfmap.ps_roi_pool(input, rois, spatial_scale, output_size[0], output_size[1])


def _check_ps(op: str, input: Tensor, output_size, spatial_scale, boxes):
    pooled = check_output_size(op, output_size)
    rois, spatial_scale = prepare(op, input, boxes, spatial_scale)
    bins = pooled[0] * pooled[1]
    if input.shape[1] % bins:
        raise RFMapError(
            f"{op}: input has {input.shape[1]} channels, not a multiple of output_size "
            f"{pooled[0]} x {pooled[1]} = {bins} (one score map per bin)"
        )
    if torch.onnx.is_in_onnx_export():
        raise RFMapError(f"{op}: ONNX has no position-sensitive RoI pooling operator; it cannot be exported")
    return pooled, rois, spatial_scale


@torch.jit.unused
def _ps_roi_align(input, boxes, output_size, spatial_scale, sampling_ratio) -> Tensor:
    op = "ps_roi_align"
    sampling_ratio = check_sampling(op, sampling_ratio)
    (ph, pw), rois, spatial_scale = _check_ps(op, input, output_size, spatial_scale, boxes)
    return call(torch.ops.rfmap.ps_roi_align, input, rois, spatial_scale, ph, pw, sampling_ratio)


@torch.jit.unused
def _ps_roi_pool(input, boxes, output_size, spatial_scale) -> Tensor:
    (ph, pw), rois, spatial_scale = _check_ps("ps_roi_pool", input, output_size, spatial_scale, boxes)
    return call(torch.ops.rfmap.ps_roi_pool, input, rois, spatial_scale, ph, pw)


def _check_kernel(op: str, input: Tensor, rois: Tensor, spatial_scale: float, pooled: tuple[int, int]):
    check_input(op, input)
    if input.shape[1] % (pooled[0] * pooled[1]):
        raise RFMapError(f"{op}: input channels {input.shape[1]} are not a multiple of {pooled[0]} x {pooled[1]}")
    return check_rois(op, rois, input.shape[0], spatial_scale, compute_dtype(input.dtype))


# -- ps_roi_align ------------------------------------------------------------------------


def _nonfinite_reads(xs: Tensor, batch: Tensor, geometry, shape, pooled: tuple[int, int]) -> Tensor:
    """``(K, C_out, bins)``: NaN where a bin reads an inf or NaN with weight 0, else 0."""
    start, bins, grid = geometry
    height, width = shape[2:]
    ry = axis_reads(start[:, 1], bins[:, 1], grid[:, 1], pooled[0], height)
    rx = axis_reads(start[:, 0], bins[:, 0], grid[:, 0], pooled[1], width)
    term: Tensor | int = 0
    for wy, wx in ((ry.zero, rx.touched), (ry.touched, rx.zero)):
        term = term + ps_pool_forward(xs * 0, PoolingMatrix.separable(wy, wx, batch, height, width, bin_major=True))
    return cast(Tensor, term)  # a sum of two tensors


def _align_geometry(boxes: Tensor, spatial_scale: float, pooled: tuple[int, int], sampling_ratio: int):
    start = boxes * spatial_scale - 0.5
    bins, grid = sample_grid(start[:, 2:] - start[:, :2], pooled, sampling_ratio)
    return start, bins, grid


def _align_matrix(shape, batch, geometry, pooled, weights=axis_weights) -> PoolingMatrix:
    start, bins, grid = geometry
    height, width = shape[2:]
    wy = weights(start[:, 1], bins[:, 1], grid[:, 1], pooled[0], height)
    wx = weights(start[:, 0], bins[:, 0], grid[:, 0], pooled[1], width)
    return PoolingMatrix.separable(wy, wx, batch, height, width, bin_major=True)


#: each op's forward call's matrix, for its backward call
_ALIGN_MEMO, _POOL_MEMO = MatrixMemo(), MatrixMemo()


@custom_op(
    "rfmap::ps_roi_align",
    "(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, int sampling_ratio) "
    "-> Tensor",
)
def _ps_roi_align_op(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio):
    pooled = (pooled_height, pooled_width)
    with single_threaded():  # the box arithmetic too: small ops pay a thread wake-up each
        batch, boxes = _check_kernel("ps_roi_align", input, rois, spatial_scale, pooled)
        geometry = _align_geometry(boxes, spatial_scale, pooled, sampling_ratio)
        matrix = _align_matrix(input.shape, batch, geometry, pooled)
        args = (input.shape, rois, spatial_scale, pooled, sampling_ratio, compute_dtype(input.dtype))
        _ALIGN_MEMO.keep(args, input.requires_grad, matrix)
        xs = ps_inputs(input, matrix.images, matrix.bins)
        out = ps_pool_forward(xs, matrix)
        if not bool(torch.isfinite(xs.sum())):  # reads with weight 0 of an inf or NaN give NaN
            out = out + _nonfinite_reads(xs, batch, geometry, input.shape, pooled)
    no_samples = (geometry[2][:, 0] * geometry[2][:, 1] == 0).view(-1, 1, 1)  # 0 / 0 in torchvision
    out = out.masked_fill(no_samples, float("nan"))
    return out.view(out.shape[0], out.shape[1], pooled_height, pooled_width).to(input.dtype)


@_ps_roi_align_op.register_fake
def _(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio):
    k = roi_rows(input, rois)
    return input.new_empty(k, input.shape[1] // (pooled_height * pooled_width), pooled_height, pooled_width)


@custom_op(
    "rfmap::_ps_roi_align_backward",
    "(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)
def _ps_roi_align_backward_op(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, *shape):
    pooled = (pooled_height, pooled_width)
    dtype = compute_dtype(grad.dtype)

    def make() -> PoolingMatrix:
        batch, boxes = check_rois("ps_roi_align", rois, shape[0], spatial_scale, dtype)
        return _align_matrix(shape, batch, _align_geometry(boxes, spatial_scale, pooled, sampling_ratio), pooled)

    with single_threaded():
        matrix = _ALIGN_MEMO.take((torch.Size(shape), rois, spatial_scale, pooled, sampling_ratio, dtype), make)
        g = grad.to(dtype).reshape(grad.shape[0], grad.shape[1], pooled_height * pooled_width)
        return ps_pool_backward(g, matrix, torch.Size(shape)).contiguous().to(grad.dtype)


@_ps_roi_align_backward_op.register_fake
def _(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, *shape):
    return grad.new_empty(shape)


register_backward(_ps_roi_align_op, _ps_roi_align_backward_op, params=4)


# -- ps_roi_pool -------------------------------------------------------------------------


def _mean_weights(start: Tensor, end: Tensor, pooled: int, length: int, dtype: torch.dtype) -> Tensor:
    """``[K, P, L]``: ``1 / len`` on the cells of bin ``p`` (torchvision's ps_roi_pool bins), 0 elsewhere."""
    size = divide((end - start).clamp_min(1).to(dtype), pooled).unsqueeze(1)
    p = torch.arange(pooled, device=start.device, dtype=dtype)
    lo = (torch.floor(p * size).long() + start.unsqueeze(1)).clamp(0, length - 1)
    hi = (torch.ceil((p + 1) * size).long() + start.unsqueeze(1)).clamp(0, length - 1)
    cells = torch.arange(length, device=start.device)
    inside = (cells >= lo.unsqueeze(2)) & (cells < hi.unsqueeze(2))
    return inside.to(dtype) / (hi - lo).clamp_min(1).unsqueeze(2).to(dtype)


def _pool_matrix(shape, rois, spatial_scale, pooled, dtype) -> PoolingMatrix:
    height, width = shape[2:]
    batch, boxes = check_rois("ps_roi_pool", rois, shape[0], spatial_scale, dtype)
    cells = roi_pool_cells(boxes, spatial_scale)
    wy = _mean_weights(cells[:, 1], cells[:, 3], pooled[0], height, dtype)
    wx = _mean_weights(cells[:, 0], cells[:, 2], pooled[1], width, dtype)
    return PoolingMatrix.separable(wy, wx, batch, height, width, bin_major=True)


@custom_op(
    "rfmap::ps_roi_pool",
    "(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) -> Tensor",
)
def _ps_roi_pool_op(input, rois, spatial_scale, pooled_height, pooled_width):
    pooled = (pooled_height, pooled_width)
    with single_threaded():  # the box arithmetic too: small ops pay a thread wake-up each
        _check_kernel("ps_roi_pool", input, rois, spatial_scale, pooled)
        args = (input.shape, rois, spatial_scale, pooled, compute_dtype(input.dtype))
        matrix = _pool_matrix(*args)
        _POOL_MEMO.keep(args, input.requires_grad, matrix)
        out = ps_pool_forward(ps_inputs(input, matrix.images, matrix.bins), matrix)
    return out.view(out.shape[0], out.shape[1], pooled_height, pooled_width).to(input.dtype)


@_ps_roi_pool_op.register_fake
def _(input, rois, spatial_scale, pooled_height, pooled_width):
    k = roi_rows(input, rois)
    return input.new_empty(k, input.shape[1] // (pooled_height * pooled_width), pooled_height, pooled_width)


@custom_op(
    "rfmap::_ps_roi_pool_backward",
    "(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)
def _ps_roi_pool_backward_op(grad, rois, spatial_scale, pooled_height, pooled_width, *shape):
    dtype = compute_dtype(grad.dtype)
    with single_threaded():
        args = (torch.Size(shape), rois, spatial_scale, (pooled_height, pooled_width), dtype)
        matrix = _POOL_MEMO.take(args, lambda: _pool_matrix(*args))
        g = grad.to(dtype).reshape(grad.shape[0], grad.shape[1], pooled_height * pooled_width)
        return ps_pool_backward(g, matrix, torch.Size(shape)).contiguous().to(grad.dtype)


@_ps_roi_pool_backward_op.register_fake
def _(grad, rois, spatial_scale, pooled_height, pooled_width, *shape):
    return grad.new_empty(shape)


register_backward(_ps_roi_pool_op, _ps_roi_pool_backward_op, params=3)


class PSRoIAlign(nn.Module):
    """:func:`ps_roi_align` as a module (torchvision's ``PSRoIAlign`` signature)."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.output_size = check_output_size("PSRoIAlign", output_size)
        self.spatial_scale = check_spatial_scale("PSRoIAlign", spatial_scale)
        self.sampling_ratio = check_sampling("PSRoIAlign", sampling_ratio)

    def forward(self, input: Tensor, boxes: Union[Tensor, List[Tensor]]) -> Tensor:
        return ps_roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}"


class PSRoIPool(nn.Module):
    """:func:`ps_roi_pool` as a module (torchvision's ``PSRoIPool`` signature)."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float):
        super().__init__()
        self.output_size = check_output_size("PSRoIPool", output_size)
        self.spatial_scale = check_spatial_scale("PSRoIPool", spatial_scale)

    def forward(self, input: Tensor, boxes: Union[Tensor, List[Tensor]]) -> Tensor:
        return ps_roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
