"""RoIAlign (He et al., "Mask R-CNN", 2017) with torchvision's semantics, as a sparse linear map.

Coordinates.  Box coordinates are continuous and multiplied by ``spatial_scale``.  With
``aligned=True`` (detectron2's ROIAlignV2, ONNX ``half_pixel``) pixel ``i`` of the feature
map covers ``[i, i + 1)`` and its value sits at its center ``i + 0.5``, so the box is shifted
by -0.5 before sampling.  With ``aligned=False`` (the original Mask R-CNN / Caffe2 op, ONNX
``output_half_pixel``) the value of pixel ``i`` sits at ``i``: the pixel-index convention,
with no shift.

Formulas (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``, itself Caffe2's and
detectron2's ``ROIAlign``), for box ``(x1, y1, x2, y2)`` on an ``H x W`` map, output
``PH x PW``, per axis (y shown)::

    offset = 0.5 if aligned else 0
    y1' = y1 * spatial_scale - offset               (no rounding)
    roi_h = y2 * spatial_scale - offset - y1'       (clamped to >= 1 only if not aligned)
    bin_h = roi_h / PH
    gh = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / PH)
    y = y1' + ph * bin_h + (iy + 0.5) * bin_h / gh  for iy = 0 .. gh - 1

A bin is the sum of its ``gh * gw`` bilinear samples (:mod:`rfmap.ops._samples`) divided by
``max(gh * gw, 1)``.  A box with ``x2 < x1`` (or ``y2 < y1``) is computed by the same
formulas: not aligned, its size is clamped to 1; aligned, a negative size gives no samples
with an adaptive grid (the bin is 0) and samples running backwards with a fixed one.
Non-finite inputs propagate as in torchvision's CPU kernel: a pixel read with weight 0 (the
second row or column of a sample exactly on a pixel, and pixel ``(0, 0)`` for a sample
outside the map) turns an inf or NaN there into NaN.  Values agree with torchvision's to
rounding (the sums are grouped differently).

Implementation: a sparse pooling matrix (:mod:`rfmap.ops._sparse`) built from the per-axis
weights, applied with CSR products; the backward pass multiplies by its transpose
(deterministic), with the forward call's matrix when it follows that call for the same boxes
(:class:`rfmap.ops._sparse.MatrixMemo`), a rebuilt one otherwise.  The op is registered as ``torch.ops.rfmap.roi_align`` (see
:mod:`rfmap.ops._library`).
"""

from __future__ import annotations

from typing import List, Union

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from ._boxes import (
    check_flag,
    check_input,
    check_output_size,
    check_rois,
    check_sampling,
    check_spatial_scale,
    compute_dtype,
    prepare,
)
from ._library import call, custom_op, register_backward, roi_rows, script_rois
from ._samples import axis_reads, axis_weights, sample_grid
from ._sparse import MatrixMemo, PoolingMatrix, channels_last, pool_backward, pool_forward
from ._threads import single_threaded


def roi_align(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: BroadcastingList2[int],
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
    ``input`` (not in ``boxes``).  Works under ``torch.compile``, ``torch.export``,
    ``torch.jit.script`` and ``torch.onnx.export`` (ONNX ``RoiAlign``, opset 16).

    Example (detectron2's test): ``roi_align(arange(25.).view(1, 1, 5, 5), [tensor([[1., 1,
    3, 3]])], 4, aligned=True)[0, 0, 0]`` is ``[4.5, 5.0, 5.5, 6.0]``.
    """
    if not torch.jit.is_scripting():
        return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    rois = script_rois(boxes)
    return torch.ops.rfmap.roi_align(input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned)


@torch.jit.unused
def _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned) -> Tensor:
    """The Python path of :func:`roi_align`: static checks, then the registered op."""
    op = "roi_align"
    pooled_h, pooled_w = check_output_size(op, output_size)
    sampling_ratio = check_sampling(op, sampling_ratio)
    check_flag(op, "aligned", aligned)
    rois, spatial_scale = prepare(op, input, boxes, spatial_scale)
    if torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing():
        from ._onnx import roi_align_symbolic  # the dynamo-based exporter: a plain ONNX node

        return roi_align_symbolic(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    return call(torch.ops.rfmap.roi_align, input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)


def _geometry(boxes: Tensor, spatial_scale: float, pooled: tuple[int, int], sampling_ratio: int, aligned: bool):
    """``(start, bin_size, grid)``, ``[K, 2]`` each in ``(x, y)`` order."""
    start = boxes * spatial_scale - (0.5 if aligned else 0.0)
    size = start[:, 2:] - start[:, :2]  # (roi_w, roi_h)
    if not aligned:
        size = size.clamp_min(1.0)
    bins, grid = sample_grid(size, pooled, sampling_ratio)
    return start, bins, grid


#: the forward call's matrix, for its backward call
_MEMO = MatrixMemo()


def _matrix(input_shape, rois: Tensor, spatial_scale, pooled, sampling_ratio, aligned, dtype) -> tuple:
    height, width = input_shape[2:]
    batch, boxes = check_rois("roi_align", rois, input_shape[0], spatial_scale, dtype)
    start, bins, grid = _geometry(boxes, spatial_scale, pooled, sampling_ratio, aligned)
    wy = axis_weights(start[:, 1], bins[:, 1], grid[:, 1], pooled[0], height)
    wx = axis_weights(start[:, 0], bins[:, 0], grid[:, 0], pooled[1], width)
    return PoolingMatrix.separable(wy, wx, batch, height, width), batch, (start, bins, grid)


def _nonfinite_reads(x: Tensor, matrix: PoolingMatrix, batch: Tensor, geometry, pooled: tuple[int, int], count: int) -> Tensor:
    """``(K, C, bins)``: NaN where a bin reads an inf or NaN with weight 0, else 0 (``x``: the
    channel-last pixels of ``matrix``'s images)."""
    start, bins, grid = geometry
    height, width = matrix.height, matrix.width
    ry = axis_reads(start[:, 1], bins[:, 1], grid[:, 1], pooled[0], height)
    rx = axis_reads(start[:, 0], bins[:, 0], grid[:, 0], pooled[1], width)
    zeroed = x * 0  # NaN exactly where the input is not finite
    term = zeroed.new_zeros(batch.numel(), x.shape[1], pooled[0] * pooled[1])
    for wy, wx in ((ry.zero, rx.touched), (ry.touched, rx.zero)):
        term += pool_forward(zeroed, PoolingMatrix.separable(wy, wx, batch, height, width), count)
    sampled = (grid >= 1).all(dim=1).view(-1, 1, 1)
    outside = ((ry.outside.unsqueeze(2) | rx.outside.unsqueeze(1)) & sampled).flatten(1)  # [K, bins]
    slot = torch.searchsorted(matrix.images, batch)
    corner = zeroed[slot * (height * width)].unsqueeze(2)  # sample outside the map: pixel (0, 0), weight 0
    return term + torch.where(outside.unsqueeze(1), corner, 0)


@custom_op(
    "rfmap::roi_align",
    "(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
)
def _roi_align_op(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    check_input("roi_align", input)
    pooled = (pooled_height, pooled_width)
    dtype = compute_dtype(input.dtype)
    with single_threaded() as count:
        args = (input.shape, rois, spatial_scale, pooled, sampling_ratio, aligned, dtype)
        matrix, batch, geometry = _matrix(*args)
        _MEMO.keep(args, input.requires_grad, matrix)
        x = channels_last(input, matrix.images)
        out = pool_forward(x, matrix, count)
        if not bool(torch.isfinite(x.sum())):  # one pass; an inf or NaN makes the sum so
            out = out + _nonfinite_reads(x, matrix, batch, geometry, pooled, count)
    return out.view(out.shape[0], out.shape[1], pooled_height, pooled_width).to(input.dtype)


@_roi_align_op.register_fake
def _(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    return input.new_empty(roi_rows(input, rois), input.shape[1], pooled_height, pooled_width)


@custom_op(
    "rfmap::_roi_align_backward",
    "(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, int sampling_ratio, "
    "bool aligned, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)
def _roi_align_backward_op(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, *shape):
    dtype = compute_dtype(grad.dtype)
    pooled = (pooled_height, pooled_width)
    with single_threaded() as count:
        args = (torch.Size(shape), rois, spatial_scale, pooled, sampling_ratio, aligned, dtype)
        matrix = _MEMO.take(args, lambda: _matrix(*args)[0])
        g = grad.to(dtype).reshape(grad.shape[0], grad.shape[1], pooled_height * pooled_width)
        return pool_backward(g, matrix, torch.Size(shape), count).contiguous().to(grad.dtype)


@_roi_align_backward_op.register_fake
def _(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, *shape):
    return grad.new_empty(shape)


register_backward(_roi_align_op, _roi_align_backward_op, params=5)


class RoIAlign(nn.Module):
    """:func:`roi_align` as a module (torchvision's ``RoIAlign`` signature)."""

    def __init__(
        self,
        output_size: BroadcastingList2[int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ):
        super().__init__()
        self.output_size = check_output_size("RoIAlign", output_size)
        self.spatial_scale = check_spatial_scale("RoIAlign", spatial_scale)
        self.sampling_ratio = check_sampling("RoIAlign", sampling_ratio)
        self.aligned = check_flag("RoIAlign", "aligned", aligned)

    def forward(self, input: Tensor, boxes: Union[Tensor, List[Tensor]]) -> Tensor:
        return roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
