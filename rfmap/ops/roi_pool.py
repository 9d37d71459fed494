"""RoI max pooling (Girshick, "Fast R-CNN", 2015) with Caffe's and torchvision's semantics.

Coordinates.  Pixel-index convention: feature cell ``i`` is the point ``i``.  Box corners,
in input-image units, are scaled by ``spatial_scale`` and rounded to cells, and the end
cell is included, so a box covers cells ``xs..xe`` and ``ys..ye``.

Formulas (Caffe ``roi_pooling_layer.cpp``; ``torchvision/csrc/ops/cpu/roi_pool_kernel.cpp``
keeps them), output ``PH x PW`` on an ``H x W`` map, per axis (x shown)::

    xs, xe = round(x1 * spatial_scale), round(x2 * spatial_scale)   C round(): half away from zero
    roi_w = max(xe - xs + 1, 1)                                     (x2 < x1: one cell wide)
    bin_w = roi_w / PW                                              in the input dtype
    bin pw spans [floor(pw * bin_w) + xs, ceil((pw + 1) * bin_w) + xs), both ends clipped to [0, W]

A bin's value is its maximum, the first one in Caffe's scan order (rows ``h`` outer, columns
``w`` inner) if several are equal; an empty bin gives 0.  As in the C loop, which starts
from ``-FLT_MAX`` and keeps a strictly greater value, NaN and values ``<= -FLT_MAX`` never
win: a bin holding only those gives ``-FLT_MAX`` (``-inf`` once cast to a 16-bit float) and
no gradient.  The backward pass adds each output gradient to the input at that first
maximum (nothing for an empty bin or one without a winner).  ``torch.round`` would be wrong
here: it rounds halves to even (8/16 = 0.5 -> 0, not 1).

Implementation: :mod:`rfmap.ops._rectmax` (a capped sparse table answers each bin; the
argmax is computed only when the input needs a gradient).  The op is registered as
``torch.ops.rfmap.roi_pool``, returning ``(output, argmax)`` (argmax ``(K, C, PH, PW)``: the
pixel ``h * W + w`` of each bin's first maximum in its plane ``input[batch_index, c]``, -1
for a bin without one; int16 for planes of up to ``2^15`` pixels, int32 beyond; empty unless
``with_argmax``).
"""

from __future__ import annotations

from typing import List, Union

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from ._boxes import (
    check_input,
    check_output_size,
    check_rois,
    check_spatial_scale,
    compute_dtype,
    divide,
    prepare,
    roi_pool_cells,
)
from ._library import call, custom_op, needs_grad, register_autograd, register_vmap, roi_rows, save, script_rois
from ._rectmax import argmax_backward, gather_argmax, pixel_dtype, rect_max
from ._threads import single_threaded


def roi_pool(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Fast R-CNN RoI max pooling with Caffe's / torchvision's semantics (see the module docstring).

    ``input``: ``(N, C, H, W)`` float16/bfloat16/float32/float64 (16-bit floats are computed
    in float32 and cast back).  ``boxes``: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1,
    x2, y2)`` or a list of ``Tensor[L_i, 4]``, in input-image units; pixel-index convention
    with corners rounded half away from zero and inclusive ends
    (:func:`rfmap.ops._boxes.roi_pool_cells`).  ``output_size``: ``PH`` or ``(PH, PW)``.
    Returns ``(K, C, PH, PW)``; differentiable in ``input``.  Works under ``torch.compile``,
    ``torch.export``, ``torch.jit.script`` and ``torch.onnx.export`` (ONNX ``MaxRoiPool``).

    Example (Fast R-CNN): box ``(30, 40, 200, 400)`` at ``spatial_scale=1/16`` pools cells
    x 2..13, y 3..25.
    """
    if not torch.jit.is_scripting():
        return _roi_pool(input, boxes, output_size, spatial_scale)
    rois = script_rois(boxes)
    return torch.ops.rfmap.roi_pool(input, rois, spatial_scale, output_size[0], output_size[1], input.requires_grad)[0]


@torch.jit.unused
def _roi_pool(input, boxes, output_size, spatial_scale) -> Tensor:
    """The Python path of :func:`roi_pool`: static checks, then the registered op."""
    op = "roi_pool"
    pooled_h, pooled_w = check_output_size(op, output_size)
    rois, spatial_scale = prepare(op, input, boxes, spatial_scale)
    if torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing():
        from ._onnx import roi_pool_symbolic  # the dynamo-based exporter: a plain ONNX node

        return roi_pool_symbolic(input, rois, spatial_scale, pooled_h, pooled_w)
    return call(torch.ops.rfmap.roi_pool, input, rois, spatial_scale, pooled_h, pooled_w, needs_grad(input))[0]


def bin_edges(start: Tensor, end: Tensor, pooled: int, length: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Caffe's bins along one axis: ``[floor(p * bin) + start, ceil((p + 1) * bin) + start)``
    clipped to ``[0, length]``, ``bin = max(end - start + 1, 1) / pooled`` in ``dtype``.
    ``start``, ``end``: ``[K]`` int64 cells (inclusive).  Returns two ``[K, pooled]`` int64."""
    bin_size = divide((end - start + 1).clamp_min(1).to(dtype), pooled).unsqueeze(1)
    p = torch.arange(pooled, device=start.device, dtype=dtype)
    lo = torch.floor(p * bin_size).long() + start.unsqueeze(1)
    hi = torch.ceil((p + 1) * bin_size).long() + start.unsqueeze(1)
    return lo.clamp(0, length), hi.clamp(0, length)


def bin_rectangles(top: Tensor, bottom: Tensor, left: Tensor, right: Tensor) -> tuple[Tensor, ...]:
    """Per-axis bin edges ``[K, PH]``, ``[K, PW]`` as row-major rectangles ``[K, PH * PW]``."""
    k, ph, pw = top.shape[0], top.shape[1], left.shape[1]
    rows = [t.view(k, ph, 1).expand(k, ph, pw).reshape(k, ph * pw) for t in (top, bottom)]
    cols = [t.view(k, 1, pw).expand(k, ph, pw).reshape(k, ph * pw) for t in (left, right)]
    return rows[0], rows[1], cols[0], cols[1]


@custom_op(
    "rfmap::roi_pool",
    "(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, bool with_argmax) "
    "-> (Tensor, Tensor)",
)
def _roi_pool_op(input, rois, spatial_scale, pooled_height, pooled_width, with_argmax):
    op = "roi_pool"
    check_input(op, input)
    with single_threaded() as count:  # the box arithmetic too: small ops pay a thread wake-up each
        batch, boxes = check_rois(op, rois, input.shape[0], spatial_scale, compute_dtype(input.dtype))
        cells = roi_pool_cells(boxes, spatial_scale)
        top, bottom = bin_edges(cells[:, 1], cells[:, 3], pooled_height, input.shape[2], boxes.dtype)
        left, right = bin_edges(cells[:, 0], cells[:, 2], pooled_width, input.shape[3], boxes.dtype)
        rect = bin_rectangles(top, bottom, left, right)
        out, argmax = rect_max(input, batch, rect, with_argmax, count)
    k, channels = out.shape[:2]
    out = out.view(k, channels, pooled_height, pooled_width).to(input.dtype)
    return out, argmax.view(k, channels, pooled_height, pooled_width) if with_argmax else argmax


@_roi_pool_op.register_fake
def _(input, rois, spatial_scale, pooled_height, pooled_width, with_argmax):
    k, channels = roi_rows(input, rois), input.shape[1]
    argmax_shape = (k, channels, pooled_height, pooled_width) if with_argmax else (0,)
    index = pixel_dtype(input.shape[2] * input.shape[3])
    return input.new_empty(k, channels, pooled_height, pooled_width), input.new_empty(argmax_shape, dtype=index)


@custom_op(
    "rfmap::_roi_pool_backward",
    "(Tensor grad, Tensor argmax, Tensor rois, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)
def _roi_pool_backward_op(grad, argmax, rois, *shape):
    with single_threaded() as count:
        return argmax_backward(grad, argmax, rois[:, 0].long(), shape, count)


@_roi_pool_backward_op.register_fake
def _(grad, argmax, rois, *shape):
    return grad.new_empty(shape)


def _roi_pool_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zeros for the argmax output
    save(ctx, output[1], inputs[1])
    ctx.shape = tuple(inputs[0].shape)
    ctx.with_argmax = inputs[5]


def _roi_pool_backward(ctx, grad, _grad_argmax):
    argmax, rois = ctx.saved_tensors
    if grad is None:
        return None, None, None, None, None, None
    if not ctx.with_argmax:
        raise RuntimeError("rfmap::roi_pool ran with with_argmax=False: no gradient (call rfmap.ops.roi_pool)")
    grad_input = call(torch.ops.rfmap._roi_pool_backward, grad.contiguous(), argmax, rois, *ctx.shape)
    return grad_input, None, None, None, None, None


def _roi_pool_jvp(ctx, tangent, *_):  # the backward's adjoint: the tangent at the argmax
    argmax, rois = ctx.saved_tensors
    return gather_argmax(tangent, argmax, rois[:, 0].long()), None


def _roi_pool_backward_setup(ctx, inputs, output):
    save(ctx, inputs[1], inputs[2])
    ctx.shape = inputs[3:]


def _roi_pool_double_backward(ctx, grad):  # the backward is linear in its gradient
    argmax, rois = ctx.saved_tensors
    return (gather_argmax(grad, argmax, rois[:, 0].long()),) + (None,) * 6


def _roi_pool_backward_jvp(ctx, tangent, *_):  # linear in its gradient
    argmax, rois = ctx.saved_tensors
    return call(torch.ops.rfmap._roi_pool_backward, tangent.contiguous(), argmax, rois, *ctx.shape)


register_autograd(_roi_pool_op, _roi_pool_backward, _roi_pool_setup, _roi_pool_jvp)
register_autograd(_roi_pool_backward_op, _roi_pool_double_backward, _roi_pool_backward_setup, _roi_pool_backward_jvp)
register_vmap(_roi_pool_op, ("images", "rois", None, None, None, None))
register_vmap(_roi_pool_backward_op, ("boxes", "boxes", "rois", "count", None, None, None))


class RoIPool(nn.Module):
    """:func:`roi_pool` as a module (torchvision's ``RoIPool`` signature)."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = check_output_size("RoIPool", output_size)
        self.spatial_scale = check_spatial_scale("RoIPool", spatial_scale)

    def forward(self, input: Tensor, boxes: Union[Tensor, List[Tensor]]) -> Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
