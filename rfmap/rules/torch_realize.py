"""How a PyTorch twin realizes each core layer: the ``realize`` facet of the op registry.

Each function here takes ``(layer, ndim, c_ins, channels, *, max_as_avg, mul_offset)`` and
returns ``(module, c_out)``: a ``torch.nn.Module`` whose ``forward(*inputs)`` has the
layer's geometry in real PyTorch ops, and its output channel count.  How each op is
realized (``C`` = ``channels``):

========================  ==================================================================
rfmap layer               PyTorch
========================  ==================================================================
``Conv`` (op ``conv``)    ``nn.ConvNd(C_in, C, kernel, stride, dilation)``; symmetric zero
                          padding and PyTorch ``"same"`` are passed to the conv, asymmetric,
                          ``same_upper``/``same_lower`` (resolved for the actual input size)
                          and reflect/replicate/circular padding go through ``F.pad`` first
``Conv`` maxpool/avgpool  ``F.avg_poolNd`` (``count_include_pad=True``, ``ceil_mode`` kept) --
                          max pooling too when ``max_as_avg`` (so every tap gets gradient),
                          else ``F.max_poolNd``; where PyTorch's pooling cannot express the
                          layer (dilated average, asymmetric padding, padding larger than half
                          the kernel) a fixed averaging depthwise conv on a padded input,
                          with PyTorch's output-size rule
``ConvTranspose``         ``nn.ConvTransposeNd``; asymmetric padding or a large
                          ``output_padding``: padding 0, then crop ``[p_left, p_left + n_out)``
``Upsample``              ``F.interpolate`` with the same mode, scale factor or size and
                          ``align_corners`` (``linear`` becomes ``bilinear``/``trilinear``)
``Resize`` (ONNX)         per axis, a gather of the taps of onnxruntime's kernel with its
                          weights (the layer's own table: ONNX resizing has no PyTorch twin)
``Pad``                   ``F.pad`` with the mode (positive sides), negative sides by slicing
                          after padding -- except ``circular``, where PyTorch crops first
``Crop``                  slicing ``x[start:stop:step]``
``PixelShuffle``          a 1x1 conv to ``C * r**ndim`` channels, then the shuffle
``PixelUnshuffle``        the unshuffle, then a 1x1 conv back to ``C`` channels
``AdaptivePool``          ``F.adaptive_avg_poolNd``
``GlobalOp``              global average pooling, then a 1x1 conv (a linear layer)
``Expand``                broadcasting a 1-cell axis
``Reduce``                the mean over the reduced axes, broadcast back where kept
``Permute``               ``x.permute`` of the spatial dims
``Pointwise``             identity
``Merge``                 ``add``/``mul`` (1x1 convs project inputs to equal channels; ``mul``
                          multiplies ``(x + mul_offset)``), ``concat`` along channels
========================  ==================================================================

Padding strings are resolved here from the frameworks' documentation, independently of
:mod:`rfmap.core.layers`.  This module imports torch; it is imported only to build a twin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rfmap.core.axis import Tabulated
from rfmap.core.layers import (
    AdaptivePool,
    Conv,
    ConvTranspose,
    Crop,
    Expand,
    Pad,
    PixelShuffle,
    PixelUnshuffle,
    Reduce,
    Upsample,
)
from rfmap.core.params import pad_pair, per_axis
from rfmap.core.permute import Permute
from rfmap.core.resize import Resize
from rfmap.errors import RFMapError
from rfmap.rules.torch_padding import axis_pads, pad_nd, pool_out, resolve_padding

# the N-d variants by number of spatial axes (their per-axis arguments are tuples of that length)
_CONV: dict[int, Callable[..., nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T: dict[int, Callable[..., nn.Module]] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_AVG: dict[int, Callable[..., torch.Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX: dict[int, Callable[..., torch.Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_ADAPTIVE: dict[int, Callable[..., torch.Tensor]] = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


# -- node modules ----------------------------------------------------------------------




class _Node(nn.Module):
    """One graph node: ``forward(*inputs) -> output``."""


class ConvNode(_Node):
    """``Conv`` with ``op="conv"``: padding (any form) then a padding-free ``nn.ConvNd``.

    Symmetric zero padding and PyTorch ``"same"`` (stride 1) are handed to ``nn.ConvNd``
    itself, so PyTorch's own output-size rule is what runs.
    """

    def __init__(self, layer: Conv, ndim: int, c_in: int, c_out: int):
        super().__init__()
        self.ndim = ndim
        self.kernel = tuple(int(k) for k in per_axis(layer.kernel, ndim, "kernel"))
        self.stride = tuple(int(s) for s in per_axis(layer.stride, ndim, "stride"))
        self.dilation = tuple(int(d) for d in per_axis(layer.dilation, ndim, "dilation"))
        self.padding = axis_pads(layer.padding, ndim)
        self.pad_mode = {"constant": "zeros"}.get(layer.pad_mode, layer.pad_mode)
        native: Any = 0
        self.explicit = True
        if self.pad_mode == "zeros":
            if all(isinstance(p, str) and p.lower() == "same" for p in self.padding) and all(s == 1 for s in self.stride):
                native, self.explicit = "same", False
            elif not any(isinstance(p, str) for p in self.padding):
                pairs = [pad_pair(p) for p in self.padding]
                if all(pl == pr >= 0 for pl, pr in pairs):
                    native, self.explicit = tuple(pl for pl, _ in pairs), False
        self.conv = _CONV[ndim](c_in, c_out, self.kernel, self.stride, native, self.dilation, bias=False)

    def forward(self, x):
        if self.explicit:
            pads = [
                resolve_padding(p, n, k, s, d)
                for p, n, k, s, d in zip(self.padding, x.shape[2:], self.kernel, self.stride, self.dilation)
            ]
            x = pad_nd(x, pads, self.pad_mode)
        return self.conv(x)


class PoolNode(_Node):
    """Max/average pooling (``Conv`` with a pooling op), average when ``as_avg``.

    Uses ``F.avg_poolNd``/``F.max_poolNd`` (``count_include_pad=True``, ``ceil_mode``) where
    they can express the layer: symmetric zero padding of at most half the kernel (PyTorch
    checks ``2*p <= k`` for ``max_pool1d`` even with dilation), no dilation for averages,
    and for ``avg_pool3d`` an input at least as large as the kernel.  Otherwise the input
    is padded explicitly and pooled without padding (averages by a depthwise conv of
    constant weight ``1/prod(kernel)``), its right side cut or extended so that the output
    size follows PyTorch's ``ceil_mode`` rule (:func:`pool_out`; with asymmetric padding
    the last window must start before the right padding, as PyTorch's rule reads).
    """

    def __init__(self, layer: Conv, ndim: int, as_avg: bool):
        super().__init__()
        self.ndim = ndim
        self.as_avg = as_avg
        self.kernel = tuple(int(k) for k in per_axis(layer.kernel, ndim, "kernel"))
        self.stride = tuple(int(s) for s in per_axis(layer.stride, ndim, "stride"))
        self.dilation = tuple(int(d) for d in per_axis(layer.dilation, ndim, "dilation"))
        self.padding = axis_pads(layer.padding, ndim)
        self.ceil_mode = bool(layer.ceil_mode)
        self.pad_mode = {"constant": "zeros"}.get(layer.pad_mode, layer.pad_mode)

    def _native(self, pads, sizes) -> tuple | None:
        if self.pad_mode != "zeros" or any(pl != pr or pl < 0 for pl, pr in pads):
            return None
        p = tuple(pl for pl, _ in pads)
        if any(2 * pi > k for pi, k in zip(p, self.kernel)) or (self.as_avg and any(d != 1 for d in self.dilation)):
            return None
        if self.as_avg and self.ndim == 3 and any(n < k for n, k in zip(sizes, self.kernel)):
            return None  # avg_pool3d refuses an input smaller than the kernel, padding or not
        return p

    def forward(self, x):
        sizes = x.shape[2:]
        pads = [resolve_padding(p, n, k, s, d) for p, n, k, s, d in zip(self.padding, sizes, self.kernel, self.stride, self.dilation)]
        p = self._native(pads, sizes)
        if p is not None:
            if self.as_avg:
                return _AVG[self.ndim](x, self.kernel, self.stride, p, ceil_mode=self.ceil_mode, count_include_pad=True)
            return _MAX[self.ndim](x, self.kernel, self.stride, p, self.dilation, ceil_mode=self.ceil_mode)
        # explicit padding, then the right side cut or extended so that a padding-free
        # window gives PyTorch's output size: the last window ends at (n_out-1)*s + k_eff
        ends = []
        for (pl, pr), n, k, s, d in zip(pads, sizes, self.kernel, self.stride, self.dilation):
            k_eff = d * (k - 1) + 1
            n_out = pool_out(n, k_eff, s, pl, pr, self.ceil_mode)
            ends.append((n_out - 1) * s + k_eff - (n + pl + pr))
        # padded positions are never inputs: zeros (average) or -inf (max)
        fill = 0.0 if self.as_avg else -math.inf
        x = pad_nd(x, pads, self.pad_mode, value=fill)
        x = pad_nd(x, [(0, e) for e in ends], "zeros", value=fill)
        if self.as_avg:
            c = x.shape[1]
            weight = torch.full((c, 1) + self.kernel, 1.0 / math.prod(self.kernel), dtype=x.dtype, device=x.device)
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.ndim]
            return conv(x, weight, None, self.stride, 0, self.dilation, groups=c)
        return _MAX[self.ndim](x, self.kernel, self.stride, 0, self.dilation)


class ConvTransposeNode(_Node):
    """``ConvTranspose``: ``nn.ConvTransposeNd`` where PyTorch can express the padding,
    else padding 0 and a crop of the full output to ``[p_left, p_left + n_out)``."""

    def __init__(self, layer: ConvTranspose, ndim: int, c_in: int, c_out: int):
        super().__init__()
        self.kernel = tuple(int(k) for k in per_axis(layer.kernel, ndim, "kernel"))
        self.stride = tuple(int(s) for s in per_axis(layer.stride, ndim, "stride"))
        self.dilation = tuple(int(d) for d in per_axis(layer.dilation, ndim, "dilation"))
        self.pads = tuple(pad_pair(p) for p in per_axis(layer.padding, ndim, "padding"))
        self.output_padding = tuple(int(o) for o in per_axis(layer.output_padding, ndim, "output_padding"))
        self.native = all(
            pl == pr and op < max(s, d) for (pl, pr), op, s, d in zip(self.pads, self.output_padding, self.stride, self.dilation)
        )
        padding = tuple(pl for pl, _ in self.pads) if self.native else 0
        out_pad = self.output_padding if self.native else 0
        self.conv = _CONV_T[ndim](
            c_in, c_out, self.kernel, self.stride, padding, out_pad, dilation=self.dilation, bias=False
        )

    def forward(self, x):
        y = self.conv(x)
        if self.native:
            return y
        crop = []
        for n, k, s, d, (pl, pr), op in zip(x.shape[2:], self.kernel, self.stride, self.dilation, self.pads, self.output_padding):
            n_out = (n - 1) * s - pl - pr + d * (k - 1) + op + 1
            full = (n - 1) * s + d * (k - 1) + 1
            # output o is full-output cell o + pl: crop pl on the left, keep n_out cells
            crop.append((-pl, n_out - (full - pl)))
        return pad_nd(y, crop)


class UpsampleNode(_Node):
    """``F.interpolate`` with the layer's mode, scale factor or size and ``align_corners``."""

    def __init__(self, layer: Upsample, ndim: int):
        super().__init__()
        mode = str(layer.mode).lower()
        if mode in ("linear", "bilinear", "trilinear"):
            mode = _LINEAR[ndim]
        elif mode in ("cubic", "bicubic"):
            if ndim != 2:
                raise RFMapError(f"cubic interpolation is 2-D only in PyTorch, the input has {ndim} axes")
            mode = "bicubic"
        self.mode = mode
        self.align_corners = bool(layer.align_corners) if mode not in ("nearest", "nearest-exact") else None
        self.scale = None
        self.size = None
        if layer.scale_factor is not None:
            self.scale = tuple(float(Fraction(str(v))) for v in per_axis(layer.scale_factor, ndim, "scale_factor"))
        else:
            self.size = tuple(int(v) for v in per_axis(layer.size, ndim, "size"))

    def forward(self, x):
        return F.interpolate(x, size=self.size, scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners)


class ResizeNode(_Node):
    """ONNX ``Resize``: along each spatial axis, output cell ``o`` is the weighted sum of its
    taps, as onnxruntime computes them (the :class:`~rfmap.core.axis.Tabulated` table)."""

    def __init__(self, layer: Resize, ndim: int):
        super().__init__()
        self.layer, self.ndim = layer, ndim

    def forward(self, x):
        maps = self.layer.axis_maps(tuple(int(v) for v in x.shape[-self.ndim:]))
        for a, m in enumerate(maps):
            if not isinstance(m, Tabulated):
                continue  # an axis copied as it is
            dim = x.dim() - self.ndim + a
            idx = torch.as_tensor(m.real_idx, device=x.device)
            w = torch.as_tensor(m.weight, dtype=x.dtype, device=x.device)
            x = (x.movedim(dim, -1)[..., idx] * w).sum(-1).movedim(-1, dim)
        return x


class PadNode(_Node):
    """``F.pad`` (see :func:`pad_nd`)."""

    def __init__(self, layer: Pad, ndim: int):
        super().__init__()
        self.pads = tuple(pad_pair(p) for p in per_axis(layer.padding, ndim, "padding"))
        self.mode = {"constant": "zeros"}.get(layer.mode, layer.mode)

    def forward(self, x):
        return pad_nd(x, self.pads, self.mode)


class CropNode(_Node):
    """Slicing ``x[start:stop:step]`` on every spatial axis."""

    def __init__(self, layer: Crop, ndim: int):
        super().__init__()
        self.slices = tuple(
            slice(a, b, int(s))
            for a, b, s in zip(
                per_axis(layer.start, ndim, "start"), per_axis(layer.stop, ndim, "stop"), per_axis(layer.step, ndim, "step")
            )
        )

    def forward(self, x):
        return x[(slice(None), slice(None)) + self.slices]


def _shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pixel shuffle on any number of spatial axes: output cell ``o`` reads input ``o // r``."""
    nd = x.dim() - 2
    if nd == 2:
        return F.pixel_shuffle(x, r)
    b, c = x.shape[:2]
    sizes = x.shape[2:]
    c_out = c // r**nd
    x = x.reshape((b, c_out) + (r,) * nd + tuple(sizes))
    # (b, c, r_1..r_nd, n_1..n_nd) -> (b, c, n_1, r_1, ..., n_nd, r_nd)
    perm = [0, 1] + [p for a in range(nd) for p in (2 + nd + a, 2 + a)]
    return x.permute(perm).reshape((b, c_out) + tuple(n * r for n in sizes))


def _unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Inverse of :func:`_shuffle`: output cell ``o`` reads the block ``[o*r, o*r + r)``."""
    nd = x.dim() - 2
    if nd == 2:
        return F.pixel_unshuffle(x, r)
    b, c = x.shape[:2]
    sizes = x.shape[2:]
    shape = [b, c]
    for n in sizes:
        shape += [n // r, r]
    x = x.reshape(shape)
    perm = [0, 1] + [3 + 2 * a for a in range(nd)] + [2 + 2 * a for a in range(nd)]
    return x.permute(perm).reshape((b, c * r**nd) + tuple(n // r for n in sizes))


class ShuffleNode(_Node):
    """A 1x1 conv to ``channels * r**ndim`` channels, then pixel shuffle by ``r``.

    The shuffle sends each channel group to one sub-pixel position; the 1x1 conv first
    mixes all input channels into every group, so that each output cell reads every channel
    of its input cell (rfmap's geometry ignores channels: after a concat, a bare shuffle
    would give each sub-pixel the pixels of one branch only).
    """

    def __init__(self, layer: PixelShuffle, ndim: int, c_in: int, channels: int):
        super().__init__()
        self.r = int(layer.factor)
        self.pre = _CONV[ndim](c_in, channels * self.r**ndim, 1, bias=False)
        self.c_out = channels

    def forward(self, x):
        return _shuffle(self.pre(x), self.r)


class UnshuffleNode(_Node):
    """Pixel unshuffle by ``r``, then a 1x1 conv back to ``channels`` channels."""

    def __init__(self, layer: PixelUnshuffle, ndim: int, c_in: int, channels: int):
        super().__init__()
        self.r = int(layer.factor)
        self.post = _CONV[ndim](c_in * self.r**ndim, channels, 1, bias=False)
        self.c_out = channels

    def forward(self, x):
        return self.post(_unshuffle(x, self.r))


class AdaptiveNode(_Node):
    """``F.adaptive_avg_poolNd(output_size)`` (``None`` keeps an axis)."""

    def __init__(self, layer: AdaptivePool, ndim: int):
        super().__init__()
        self.ndim = ndim
        self.output_size = tuple(None if m is None else int(m) for m in per_axis(layer.output_size, ndim, "output_size"))

    def forward(self, x):
        size = tuple(n if m is None else m for m, n in zip(self.output_size, x.shape[2:]))
        return _ADAPTIVE[self.ndim](x, size)


class GlobalNode(_Node):
    """Global average pooling, then a linear layer (a 1x1 conv): every output sees everything."""

    def __init__(self, ndim: int, c_in: int, c_out: int):
        super().__init__()
        self.ndim = ndim
        self.linear = _CONV[ndim](c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.linear(_ADAPTIVE[self.ndim](x, (1,) * self.ndim))


class IdentityNode(_Node):
    """A pointwise op: geometry-free, so the identity."""

    def forward(self, x):
        return x


class MergeNode(_Node):
    """``add``/``mul`` (inputs projected by 1x1 convs to the largest channel count) or ``concat``.

    ``mul`` multiplies ``(x + mul_offset)`` over the inputs.
    """

    def __init__(self, op: str, ndim: int, c_ins: Sequence[int], mul_offset: float = 0.0):
        super().__init__()
        self.op = op
        self.mul_offset = float(mul_offset)
        if op == "concat":
            self.c_out = sum(c_ins)
            self.proj = nn.ModuleList()
            return
        if op not in ("add", "mul"):
            raise RFMapError(f"merge op {op!r} is not one of add, mul, concat")
        self.c_out = max(c_ins)
        self.proj = nn.ModuleList(
            nn.Identity() if c == self.c_out else _CONV[ndim](c, self.c_out, 1, bias=False) for c in c_ins
        )

    def forward(self, *xs):
        if self.op == "concat":
            return torch.cat(xs, dim=1)
        ys = [p(x) for p, x in zip(self.proj, xs)]
        if self.op == "mul":
            ys = [y + self.mul_offset for y in ys] if self.mul_offset else ys
        out = ys[0]
        for x in ys[1:]:
            out = out + x if self.op == "add" else out * x
        return out




class ExpandNode(_Node):
    """Broadcast 1-cell axes to the layer's sizes."""

    def __init__(self, layer: Expand, ndim: int):
        super().__init__()
        self.size = tuple(int(v) for v in per_axis(layer.size, ndim, "size"))

    def forward(self, x):
        return x.expand(tuple(x.shape[:2]) + self.size)


class PermuteNode(_Node):
    """The spatial axes in the layer's new order (batch and channels stay first)."""

    def __init__(self, layer: Permute):
        super().__init__()
        self.dims = (0, 1) + tuple(2 + a for a in layer.axes)

    def forward(self, x):
        return x.permute(self.dims)


class ReduceNode(_Node):
    """The mean over the reduced spatial axes (kept as 1-cell axes)."""

    def __init__(self, layer: Reduce):
        super().__init__()
        self.axes = tuple(int(a) for a in layer.axes)

    def forward(self, x):
        return x.mean(dim=tuple(2 + a for a in self.axes), keepdim=True) if self.axes else x


# -- the realize functions the op registry names --------------------------------------------


def conv(layer, ndim, c_ins, channels, **_):
    if layer.op == "conv":
        return ConvNode(layer, ndim, c_ins[0], channels), channels
    return pool(layer, ndim, c_ins, channels, **_)


def pool(layer, ndim, c_ins, channels, *, max_as_avg: bool = True, **_):
    return PoolNode(layer, ndim, layer.op != "maxpool" or max_as_avg), c_ins[0]


def conv_transpose(layer, ndim, c_ins, channels, **_):
    return ConvTransposeNode(layer, ndim, c_ins[0], channels), channels


def upsample(layer, ndim, c_ins, channels, **_):
    return UpsampleNode(layer, ndim), c_ins[0]


def resize(layer, ndim, c_ins, channels, **_):
    return ResizeNode(layer, ndim), c_ins[0]


def pad(layer, ndim, c_ins, channels, **_):
    return PadNode(layer, ndim), c_ins[0]


def crop(layer, ndim, c_ins, channels, **_):
    return CropNode(layer, ndim), c_ins[0]


def pixel_shuffle(layer, ndim, c_ins, channels, **_):
    node = ShuffleNode(layer, ndim, c_ins[0], channels)
    return node, node.c_out


def pixel_unshuffle(layer, ndim, c_ins, channels, **_):
    node = UnshuffleNode(layer, ndim, c_ins[0], channels)
    return node, node.c_out


def adaptive_pool(layer, ndim, c_ins, channels, **_):
    return AdaptiveNode(layer, ndim), c_ins[0]


def global_(layer, ndim, c_ins, channels, **_):
    return GlobalNode(ndim, c_ins[0], channels), channels


def identity(layer, ndim, c_ins, channels, **_):
    return IdentityNode(), c_ins[0]


def merge(layer, ndim, c_ins, channels, *, mul_offset: float = 1.0, **_):
    node = MergeNode(layer.op, ndim, c_ins, mul_offset)
    return node, node.c_out


def expand(layer, ndim, c_ins, channels, **_):
    return ExpandNode(layer, ndim), c_ins[0]


def permute(layer, ndim, c_ins, channels, **_):
    return PermuteNode(layer), c_ins[0]


def reduce(layer, ndim, c_ins, channels, **_):
    return ReduceNode(layer), c_ins[0]


