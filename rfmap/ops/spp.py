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
row-major order and propagates NaN (``torch.nn.functional.adaptive_max_pool2d``, whose bins
these are, computes it; with several NaNs in a bin the gradient goes to the last one, as
there), avg mode the mean over the bin (``W_y X W_x^T`` with per-axis ``1 / len`` weights).
The backward passes are rfmap's own and deterministic (the max gradient is scattered
channel by channel in output order).  Registered as ``torch.ops.rfmap.spp_pool``; in ONNX
export each level becomes standard pooling ops (:func:`spp_standard_ops`).  On the CPU, max
mode runs a native loop when one could be built (:mod:`rfmap.ops._native`; the same numbers
as the PyTorch path).
"""

from __future__ import annotations

import functools
import numbers
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import RFMapError
from ._boxes import check_input, compute_dtype
from ._library import call, custom_op, eager, needs_grad, register_autograd, register_vmap, save
from ._native import kernels
from ._rectmax import pixel_dtype
from ._threads import single_threaded, threads

MODES = ("max", "avg")

#: the most bins (``C * sum(n * n)`` per image) one call may ask for: int32 indexing, and far
#: beyond any pyramid in use (SPP-net's 50 bins x 256 channels is 12,800)
MAX_BINS = 2**31 - 1
#: input elements a thread of the native loops claims at a time (whole blocks of 8 planes)
_CLAIM = 1 << 14
#: input elements from which the native loops run on several threads (``kernels/pool.h``)
_PARALLEL = 1 << 16


def level_bins(n: int, length: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Bins of an ``n``-bin level on an axis of ``length``: ``(start, end)``, ``[n]`` int64 each,
    ``start = floor(i * length / n)``, ``end = ceil((i + 1) * length / n)``."""
    i = torch.arange(n, device=device)
    return i * length // n, -((-(i + 1) * length) // n)


def _check_args(op: str, levels, mode: str, channels: int = 1) -> tuple[int, ...]:
    """``levels`` as a tuple of positive ints whose ``channels * sum(n * n)`` bins stay within
    :data:`MAX_BINS`, checked before anything is allocated; ``mode`` one of :data:`MODES`.
    A list or tuple of plain ints is checked once per value (a call's checks cost as much as
    a small pyramid's pooling)."""
    if type(levels) in (list, tuple) and all(type(n) is int for n in levels) and type(mode) is str:
        return _check_plain_args(op, tuple(levels), mode, channels)
    return _check_any_args(op, levels, mode, channels)


@functools.lru_cache(maxsize=256)
def _check_plain_args(op: str, levels: tuple[int, ...], mode: str, channels: int) -> tuple[int, ...]:
    return _check_any_args(op, levels, mode, channels)


def _check_any_args(op: str, levels, mode: str, channels: int) -> tuple[int, ...]:
    if isinstance(levels, numbers.Integral):
        levels = (levels,)
    try:
        levels = tuple(levels) if not isinstance(levels, (str, bytes)) else levels
    except TypeError:
        pass
    if not isinstance(levels, tuple) or not levels or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and int(n) > 0 for n in levels
    ):
        raise RFMapError(f"{op}: levels must be a non-empty sequence of positive ints, got {levels!r:.80}")
    if mode not in MODES:
        raise RFMapError(f"{op}: mode must be one of {MODES}, got {mode!r:.40}")
    levels = tuple(int(n) for n in levels)
    bins = max(channels, 1) * sum(n * n for n in levels)
    if bins > MAX_BINS:
        raise RFMapError(f"{op}: levels {list(levels)[:8]} ask for {bins:,} bins per image, beyond the limit of {MAX_BINS:,}")
    return levels


def spp_pool(input: Tensor, levels: List[int] = (4, 2, 1), mode: str = "max") -> Tensor:  # type: ignore[assignment]
    """Spatial pyramid pooling of ``input`` ``(N, C, H, W)`` into ``(N, C * sum(n * n))``.

    Bin ``i`` of an ``n``-bin level on an axis of length ``a`` spans
    ``[floor(i*a/n), ceil((i+1)*a/n))`` (see the module docstring for how this relates to
    the paper's ``ceil(a/n)`` window and ``floor(a/n)`` stride).  ``mode``: ``"max"`` or
    ``"avg"``.  Differentiable in ``input``; 16-bit floats are computed in float32.
    """
    if not torch.jit.is_scripting():
        return _spp_pool(input, levels, mode)
    return torch.ops.rfmap.spp_pool(input, levels, mode, input.requires_grad)[0]


@torch.jit.unused
def _spp_pool(input, levels, mode) -> Tensor:
    op = "spp_pool"
    check_input(op, input)
    levels = _check_args(op, levels, mode, int(input.shape[1]))
    recording = needs_grad(input)
    with_argmax = mode == "max" and recording
    if eager(input, recording=True):  # the kernels themselves, under an autograd node of their own
        if not recording:
            return _spp_compute(input, levels, mode, False)[0]
        return _EagerSPP.apply(input, levels, mode, with_argmax)[0]
    if torch.onnx.is_in_onnx_export():  # (an export traces: never eager)
        return spp_standard_ops(input, levels, mode)
    return call(torch.ops.rfmap.spp_pool, input, list(levels), mode, with_argmax)[0]


def _mean_weights(n: int, length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[n, length]``: row ``i`` is ``1 / len`` on bin ``i`` of the level, 0 elsewhere."""
    start, end = level_bins(n, length, device)
    index = torch.arange(length, device=device)
    inside = (index >= start.unsqueeze(1)) & (index < end.unsqueeze(1))
    return inside.to(dtype) / (end - start).unsqueeze(1).to(dtype)


def _flatten_levels(pooled: list[Tensor]) -> Tensor:
    """Per-level ``(N, C, n, n)`` results (any memory format) as ``(N, C * sum(n * n))``, each
    copied once into its place."""
    n_img, channels = pooled[0].shape[:2]
    out = pooled[0].new_empty(n_img, sum(channels * p.shape[2] * p.shape[3] for p in pooled))
    start = 0
    for p in pooled:
        size = channels * p.shape[2] * p.shape[3]
        out[:, start : start + size].view(p.shape).copy_(p)
        start += size
    return out


def _grouping(fine: int, coarse: int, length: int) -> int | None:
    """``g`` if every bin of the ``coarse``-bin level is the union of ``g`` consecutive bins of
    the ``fine``-bin level (groups ``[i * g, (i + 1) * g)``), else ``None``."""
    if fine % coarse:
        return None
    g = fine // coarse
    fine_bins, coarse_bins = _bins(fine, length), _bins(coarse, length)
    ok = all(fine_bins[i * g][0] == s and fine_bins[(i + 1) * g - 1][1] == e for i, (s, e) in enumerate(coarse_bins))
    return g if ok else None


def _split_levels(grad: Tensor, levels, channels: int) -> list[Tensor]:
    """The inverse of :func:`_flatten_levels`: ``(N, C, n, n)`` per level."""
    parts = grad.split([channels * n * n for n in levels], dim=1)
    return [p.reshape(grad.shape[0], channels, n, n) for p, n in zip(parts, levels)]


def _max_levels(x: Tensor, levels, with_argmax: bool) -> tuple[list[Tensor], Tensor | None]:
    """``adaptive_max_pool2d`` per level (its bins are the module docstring's) and the argmax
    (``None`` unless ``with_argmax``), the pixel ``h * W + w`` in its plane (:func:`pixel_dtype`),
    ``(N, C * sum(n * n))`` in the output's order.  Without the argmax, a level whose
    bins are unions of a finer level's bins (SPP-net's 6, 3, 2, 1 on 13 x 13) is pooled from
    that level's result: the maximum of maxima, NaN propagating as in the direct pooling."""
    x = x.contiguous(memory_format=torch.channels_last)  # torch's vectorized kernel (many times faster)
    if not with_argmax:
        height, width = x.shape[2:]
        done: dict[int, Tensor] = {}
        for n in sorted(set(levels), reverse=True):
            finer = [f for f in done if _grouping(f, n, height) and _grouping(f, n, width)]
            if finer:
                f = min(finer)
                done[n] = F.max_pool2d(done[f], (_grouping(f, n, height) or 1, _grouping(f, n, width) or 1))  # both group
            else:
                done[n] = F.adaptive_max_pool2d(x, n)
        return [done[n] for n in levels], None
    pooled, where = zip(*(F.adaptive_max_pool2d(x, n, return_indices=True) for n in levels))
    index = pixel_dtype(x.shape[2] * x.shape[3])
    return list(pooled), _flatten_levels([w.to(index) for w in where])


def _avg_levels(x: Tensor, levels) -> list[Tensor]:
    """The mean of every bin, ``W_y X W_x^T`` per level with ``1 / len`` bin weights."""
    height, width = x.shape[2:]
    out = []
    for n in levels:
        wy, wx = (_mean_weights(n, size, x.dtype, x.device) for size in (height, width))
        out.append(torch.matmul(torch.matmul(wy, x), wx.T))
    return out


def _spp_pool_kernel(input, levels, mode, with_argmax):
    """The kernel of ``rfmap::spp_pool``: its checks, then :func:`_spp_outputs`."""
    op = "spp_pool"
    check_input(op, input)
    return _spp_outputs(input, _check_args(op, levels, mode, int(input.shape[1])), mode, with_argmax)


def _spp_outputs(input, levels: tuple[int, ...], mode: str, with_argmax: bool) -> tuple[Tensor, Tensor]:
    """The op's two outputs for checked arguments: :func:`_spp_compute`'s, with an empty argmax
    where none is computed."""
    out, argmax = _spp_compute(input, levels, mode, with_argmax)
    return out, argmax if argmax is not None else input.new_empty(0, dtype=pixel_dtype(input.shape[2] * input.shape[3]))


def _spp_compute(input, levels: tuple[int, ...], mode: str, with_argmax: bool) -> tuple[Tensor, Tensor | None]:
    """``(output, argmax)`` for checked arguments, ``argmax`` ``None`` unless ``with_argmax``:
    the native loop of max mode on the CPU (as few Python steps as can be: they cost a good
    part of a call), else PyTorch."""
    x = input if input.dtype in (torch.float32, torch.float64) else input.to(compute_dtype(input.dtype))
    native = kernels() if mode == "max" and x.device.type == "cpu" and x.shape[2] * x.shape[3] < 2**31 else None
    if native is not None:
        out, argmax = _native_max(native, x.contiguous(), levels, with_argmax, threads())
        return (out if x is input else out.to(input.dtype)), argmax
    with single_threaded():
        if mode == "max":
            parts, argmax = _max_levels(x, levels, with_argmax)
        else:
            parts, argmax = _avg_levels(x, levels), None
        return _flatten_levels(parts).to(input.dtype), argmax


_spp_pool_op = custom_op("rfmap::spp_pool", "(Tensor input, int[] levels, str mode, bool with_argmax) -> (Tensor, Tensor)")(
    _spp_pool_kernel
)


@functools.lru_cache(maxsize=64)
def _level_sizes(levels: tuple[int, ...]) -> Tensor:
    """``levels`` as an int64 tensor for the native loop (read only, kept for the next call)."""
    return torch.tensor(levels, dtype=torch.int64)


def _native_max(native, x: Tensor, levels, with_argmax: bool, count: int) -> tuple[Tensor, Tensor | None]:
    """:func:`_max_levels` and :func:`_flatten_levels` in one native loop (``kernels/spp.h``),
    the same numbers, on :func:`_threads_for` threads; no argmax tensor unless ``with_argmax``."""
    n_img, channels, height, width = x.shape
    bins = channels * sum(n * n for n in levels)
    out = x.new_empty(n_img, bins)
    argmax = torch.empty((n_img, bins), dtype=pixel_dtype(height * width)) if with_argmax else None
    sizes = _level_sizes(tuple(levels))
    planes = n_img * channels
    chunk = 8 * max(1, _CLAIM // (8 * height * width))  # whole blocks of 8 planes

    native.spp_max(x.data_ptr(), int(x.dtype == torch.float64), planes, chunk, _threads_for(planes * height * width, count),
                   channels, height, width, sizes.data_ptr(), len(levels), out.data_ptr(),
                   0 if argmax is None else argmax.data_ptr(), 0 if argmax is None else argmax.element_size())  # fmt: skip
    return out, argmax


def _threads_for(elements: int, count: int) -> int:
    """Threads for a native SPP loop over ``elements`` input elements (``kernels/pool.h``, whose
    threads share the planes out through a counter): one below :data:`_PARALLEL`, else ``count``."""
    return 1 if elements < _PARALLEL else count


@_spp_pool_op.register_fake
def _(input, levels, mode, with_argmax):
    bins = sum(n * n for n in levels)
    argmax_shape = (input.shape[0], input.shape[1] * bins) if mode == "max" and with_argmax else (0,)
    out = input.new_empty(input.shape[0], input.shape[1] * bins)
    return out, input.new_empty(argmax_shape, dtype=pixel_dtype(input.shape[2] * input.shape[3]))


@custom_op(
    "rfmap::_spp_avg_backward",
    "(Tensor grad, int[] levels, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)
def _spp_avg_backward_op(grad, levels, *shape):
    dtype = compute_dtype(grad.dtype)
    height, width = shape[2:]
    with single_threaded():
        total = grad.new_zeros(shape, dtype=dtype)
        for g, n in zip(_split_levels(grad.to(dtype), levels, shape[1]), levels):
            wy, wx = (_mean_weights(n, size, dtype, grad.device) for size in (height, width))
            total += torch.matmul(torch.matmul(wy.T, g), wx)
        return total.to(grad.dtype)


@_spp_avg_backward_op.register_fake
def _(grad, levels, *shape):
    return grad.new_empty(shape)


def _spp_avg_backward_setup(ctx, inputs, output):
    ctx.levels, ctx.shape = inputs[1], inputs[2:]


def _spp_avg_double_backward(ctx, grad):  # the adjoint of the adjoint: the pooling itself
    return (call(torch.ops.rfmap.spp_pool, grad.contiguous(), ctx.levels, "avg", False)[0],) + (None,) * 5


def _spp_avg_backward_jvp(ctx, tangent, *_):  # linear in its gradient
    return call(torch.ops.rfmap._spp_avg_backward, tangent.contiguous(), ctx.levels, *ctx.shape)


register_autograd(_spp_avg_backward_op, _spp_avg_double_backward, _spp_avg_backward_setup, _spp_avg_backward_jvp)
register_vmap(_spp_avg_backward_op, ("images", None, "count", None, None, None))


def _spp_max_backward(grad, argmax, levels, *shape):
    """The input gradient of max mode: each bin's gradient added at its argmax (the pixel in its
    plane, ``grad``'s shape), in the order of ``grad``'s elements (deterministic)."""
    dtype = compute_dtype(grad.dtype)
    values, index = (grad if grad.dtype == dtype else grad.to(dtype)).contiguous(), argmax.contiguous()
    native = kernels() if grad.device.type == "cpu" else None
    planes, area = shape[0] * shape[1], shape[2] * shape[3]
    if native is None:  # flat indices, then a scatter in index order (the CPU's order)
        with single_threaded():
            plane = torch.arange(planes, device=grad.device).view(shape[0], shape[1], 1) * area
            flat = _flatten_levels([plane.expand(-1, -1, n * n).view(*shape[:2], n, n) for n in levels]) + index
            gx = grad.new_zeros(shape, dtype=dtype)
            gx.view(-1).scatter_add_(0, flat.flatten(), values.flatten())
            return gx.to(grad.dtype)
    gx = grad.new_empty(shape, dtype=dtype)  # every plane written by the loop, from zero
    native.spp_max_backward(values.data_ptr(), index.data_ptr(), gx.data_ptr(), int(dtype == torch.float64),
                            index.element_size(), planes, max(1, _CLAIM // area), _threads_for(planes * area, threads()),
                            shape[1], area, _level_sizes(tuple(levels)).data_ptr(), len(levels))  # fmt: skip
    return gx if gx.dtype == grad.dtype else gx.to(grad.dtype)


_spp_max_backward_op = custom_op(
    "rfmap::_spp_max_backward",
    "(Tensor grad, Tensor argmax, int[] levels, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
)(_spp_max_backward)


@_spp_max_backward_op.register_fake
def _(grad, argmax, levels, *shape):
    return grad.new_empty(shape)


def _gather_levels(grad_input: Tensor, argmax: Tensor, levels) -> Tensor:
    """The adjoint of :func:`_spp_max_backward`, ``(N, C * sum(n * n))``: ``grad_input (N, C,
    H, W)`` at each bin's argmax in its plane."""
    n_img, channels = grad_input.shape[:2]
    planes = grad_input.flatten(2)  # (N, C, H * W)
    parts = [planes.gather(2, a.reshape(n_img, channels, -1).long()) for a in _split_levels(argmax, levels, channels)]
    return torch.cat([part.reshape(n_img, -1) for part in parts], dim=1)


def _spp_max_backward_setup(ctx, inputs, output):
    save(ctx, inputs[1])
    ctx.levels, ctx.shape = inputs[2], inputs[3:]


def _spp_max_double_backward(ctx, grad):  # the backward is linear in its gradient
    (argmax,) = ctx.saved_tensors
    return (_gather_levels(grad, argmax, ctx.levels),) + (None,) * 6


def _spp_max_backward_jvp(ctx, tangent, *_):  # linear in its gradient
    (argmax,) = ctx.saved_tensors
    return call(torch.ops.rfmap._spp_max_backward, tangent.contiguous(), argmax, ctx.levels, *ctx.shape)


register_autograd(_spp_max_backward_op, _spp_max_double_backward, _spp_max_backward_setup, _spp_max_backward_jvp)
register_vmap(_spp_max_backward_op, ("images", "images", None, "count", None, None, None))


def _spp_setup(ctx, inputs, output):
    ctx.set_materialize_grads(False)  # no zeros for the argmax output
    save(ctx, output[1])
    ctx.shape, ctx.levels, ctx.mode, ctx.with_argmax = tuple(inputs[0].shape), inputs[1], inputs[2], inputs[3]


def _spp_backward(ctx, grad, _grad_argmax):
    (argmax,) = ctx.saved_tensors
    if grad is None:
        return None, None, None, None
    grad = grad.contiguous()
    if ctx.mode == "avg":
        return call(torch.ops.rfmap._spp_avg_backward, grad, ctx.levels, *ctx.shape), None, None, None
    if not ctx.with_argmax:
        raise RuntimeError("rfmap::spp_pool ran with with_argmax=False: no gradient (call rfmap.ops.spp_pool)")
    if eager(grad, argmax):  # the kernel itself (the op is for graphs: compile, export, double backward)
        return _spp_max_backward(grad, argmax, ctx.levels, *ctx.shape), None, None, None
    return call(torch.ops.rfmap._spp_max_backward, grad, argmax, ctx.levels, *ctx.shape), None, None, None


def _spp_jvp(ctx, tangent, *_):  # the pooling of the tangent, or its gather at the argmax
    if ctx.mode == "avg":
        return call(torch.ops.rfmap.spp_pool, tangent.contiguous(), ctx.levels, "avg", False)[0], None
    (argmax,) = ctx.saved_tensors
    return _gather_levels(tangent, argmax, ctx.levels), None


register_autograd(_spp_pool_op, _spp_backward, _spp_setup, _spp_jvp)
register_vmap(_spp_pool_op, ("images", None, None, None))


class _EagerSPP(torch.autograd.Function):
    """``rfmap::spp_pool`` in eager mode without the dispatcher (:func:`eager`): the same
    kernel, setup and backward as the registered op."""

    @staticmethod
    def forward(ctx, input, levels, mode, with_argmax):
        output = _spp_outputs(input, levels, mode, with_argmax)  # arguments checked by spp_pool
        ctx.mark_non_differentiable(output[1])
        _spp_setup(ctx, (input, levels, mode, with_argmax), output)
        return output

    @staticmethod
    def backward(ctx, grad, grad_argmax):
        return _spp_backward(ctx, grad, grad_argmax)


# -- ONNX export: standard pooling ops ---------------------------------------------------


def _bins(n: int, length: int) -> list[tuple[int, int]]:
    """:func:`level_bins` in Python ints (no tensors: nothing for an exporter to trace)."""
    return [(i * length // n, -(-(i + 1) * length // n)) for i in range(n)]


def _regular_windows(n: int, length: int) -> tuple[int, int] | None:
    """``(kernel, stride)`` if the level's bins are the windows of a plain pooling layer."""
    bins = _bins(n, length)
    kernel = bins[0][1] - bins[0][0]
    stride = bins[1][0] - bins[0][0] if n > 1 else 1
    if all(s == i * stride and e == s + kernel for i, (s, e) in enumerate(bins)):
        return kernel, stride
    return None


def spp_standard_ops(input: Tensor, levels, mode: str) -> Tensor:
    """:func:`spp_pool` with standard torch ops that every ONNX exporter knows, for the
    input's (static) map size: ``max_pool2d`` / ``avg_pool2d`` where a level's bins are a
    regular window grid, otherwise slices reduced with ``amax`` / ``mean`` (rows, then
    columns; both reductions are separable over a rectangle)."""
    height, width = int(input.shape[2]), int(input.shape[3])
    parts = []
    for n in levels:
        ky, kx = _regular_windows(n, height), _regular_windows(n, width)
        if ky is not None and kx is not None:
            pool = F.max_pool2d if mode == "max" else F.avg_pool2d
            pooled = pool(input, (ky[0], kx[0]), (ky[1], kx[1]))
        else:
            reduce = (lambda t, d: t.amax(d, keepdim=True)) if mode == "max" else (lambda t, d: t.mean(d, keepdim=True))
            rows = torch.cat([reduce(input[:, :, a:b], 2) for a, b in _bins(n, height)], dim=2)
            pooled = torch.cat([reduce(rows[:, :, :, a:b], 3) for a, b in _bins(n, width)], dim=3)
        parts.append(pooled.reshape(input.shape[0], input.shape[1] * n * n))
    return torch.cat(parts, dim=1)


class SpatialPyramidPool(nn.Module):
    """:func:`spp_pool` as a module."""

    def __init__(self, levels: List[int] = (4, 2, 1), mode: str = "max"):  # type: ignore[assignment]
        super().__init__()
        self.levels = _check_args("SpatialPyramidPool", levels, mode)
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        return spp_pool(input, list(self.levels), self.mode)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"
