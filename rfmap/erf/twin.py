"""A PyTorch twin of an rfmap :class:`~rfmap.core.graph.Graph`: the same geometry, in real ops.

:func:`to_torch` builds a ``torch.nn.Module`` whose nodes are the graph's nodes, each made of
the PyTorch op with the same geometry (kernel, stride, dilation, padding, ceil mode,
interpolation rule...).  Its uses:

* **ground truth** -- the input pixels that influence a cell are the support of the input
  gradient of that cell; with positive weights, zero bias and average instead of max
  pooling nothing cancels, so the gradient's support is exactly the set of pixels with a
  path to the cell (what :meth:`rfmap.Analysis.support` computes without torch);
* **effective receptive fields** (Luo et al. 2016): the magnitude of the same gradient.

How each op is realized (``C`` = ``channels``):

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
                          (zero-extended where ``output_padding`` reaches past the last tap)
``Upsample``              ``F.interpolate`` with the same mode, scale factor or size and
                          ``align_corners`` (``linear`` becomes ``bilinear``/``trilinear``)
``Pad``                   ``F.pad`` with the mode (positive sides), negative sides by slicing
                          after padding -- except ``circular``, where PyTorch crops first
``Crop``                  slicing ``x[start:stop:step]``
``PixelShuffle``          a 1x1 conv to ``C * r**ndim`` channels (every sub-pixel reads every
                          input channel), then ``F.pixel_shuffle`` (2-D) or the same
                          reshape in 1-D/3-D
``PixelUnshuffle``        ``F.pixel_unshuffle`` (2-D) or the same reshape, then a 1x1 conv
                          back to ``C`` channels (mixing the sub-pixels' channels)
``AdaptivePool``          ``F.adaptive_avg_poolNd``
``GlobalOp``              global average pooling, then a 1x1 conv (a linear layer)
``Pointwise``             identity
``Merge``                 ``add``/``mul`` (1x1 convs project inputs to equal channels; see
                          ``mul_offset`` below), ``concat`` along channels
========================  ==================================================================

1x1 convolutions inserted to adapt or mix channels change no geometry; rfmap's geometry
ignores channels, and mixing them keeps the twin in general position.  Convolutions have
no bias.  Weights (``weights``): ``"positive"`` draws each weight uniformly in
``[0.5, 1.5] / fan_in`` (no cancellation: every tap influences the output),
``"uniform"`` sets every weight to ``1 / fan_in``, ``"random"`` keeps PyTorch's default
initialization; all are reproducible from ``seed``.  ``fan_in`` is ``C_in * prod(kernel)``.

Note on ``mul``: with zero bias a factor that sees only padding is exactly 0, and then the
product hides the other factor's pixels from the gradient.  rfmap's support of a merge is
the union of its inputs' supports (the influence in a network whose factors are not
structurally zero), so the twin multiplies ``(a + mul_offset) * (b + mul_offset)``, the
offset playing the part of a bias; ``mul_offset=0`` gives the plain product.

Geometry is resolved at run time from the actual tensor shapes (SAME padding, crops), so
the twin follows PyTorch's own rules; :class:`TorchTwin` also knows the sizes rfmap
computed (``expected_sizes``) and checks them after every node when the input has the
size the twin was built for.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order,
as in the rest of rfmap.  This module imports torch; ``import rfmap`` does not import it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rfmap.core.analysis import Analysis
from rfmap.errors import RFMapError
from rfmap.core.graph import Graph
from rfmap.core.layers import (
    AdaptivePool,
    Conv,
    ConvTranspose,
    Crop,
    GlobalOp,
    Layer,
    Merge,
    Pad,
    PixelShuffle,
    PixelUnshuffle,
    Pointwise,
    Upsample,
    _pad_pair,
    per_axis,
)

__all__ = ["TorchTwin", "layer_module", "resolve_padding", "to_torch"]

WEIGHTS = ("positive", "uniform", "random")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_ADAPTIVE = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


# -- padding ---------------------------------------------------------------------------


def resolve_padding(padding: Any, n: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """``(left, right)`` padding of one axis of a convolution or pooling, for input size ``n``.

    Strings follow the frameworks (written here from their documentation, independently of
    :mod:`rfmap.core.layers`): ``"valid"`` is 0; ``"same"`` with stride 1 is PyTorch's (total
    ``d*(k-1)``, the extra pixel on the right), with a larger stride TensorFlow's ``SAME``;
    ``"same_upper"``/``"same_lower"`` are ONNX's auto_pad (``n_out = ceil(n/s)``, total
    ``max((n_out-1)*s + d*(k-1) + 1 - n, 0)``, the extra pixel at the end / the start).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        k_eff = dilation * (kernel - 1) + 1
        if mode == "valid":
            return 0, 0
        if mode == "same" and stride == 1:
            total = k_eff - 1
            return total // 2, total - total // 2
        if mode in ("same", "same_upper", "same_lower"):
            n_out = -(-n // stride)
            total = max((n_out - 1) * stride + k_eff - n, 0)
            if mode == "same_lower":
                return total - total // 2, total // 2
            return total // 2, total - total // 2
        raise RFMapError(f"padding {padding!r} is not one of valid, same, same_upper, same_lower")
    return _pad_pair(padding, "padding")


def _axis_pads(padding: Any, ndim: int) -> tuple:
    """Per-axis padding entries (an int, a pair or a string each)."""
    if isinstance(padding, str):
        return (padding,) * ndim
    return per_axis(padding, ndim, "padding")


def _pad_nd(x: torch.Tensor, pads: Sequence[tuple[int, int]], mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of ``x`` by ``pads[a] = (left, right)``; negative values crop.

    Positive sides are padded first (reflect/replicate then mirror or repeat the original
    border, as ``F.pad`` does), negative sides are cut afterwards.  For ``circular`` the
    whole (possibly negative) padding goes to ``F.pad``, which crops before wrapping.
    """
    if all(p == (0, 0) for p in pads):
        return x
    if mode == "circular":
        flat = [v for pair in reversed(pads) for v in pair]
        return F.pad(x, flat, mode="circular")
    grow = [(max(pl, 0), max(pr, 0)) for pl, pr in pads]
    if any(g != (0, 0) for g in grow):
        flat = [v for pair in reversed(grow) for v in pair]
        if mode == "zeros":
            x = F.pad(x, flat, mode="constant", value=value)
        else:
            x = F.pad(x, flat, mode=mode)
    if any(pl < 0 or pr < 0 for pl, pr in pads):
        index = [slice(None), slice(None)]
        for (pl, pr), n in zip(pads, x.shape[2:]):
            index.append(slice(-pl if pl < 0 else 0, n + pr if pr < 0 else n))
        x = x[tuple(index)]
    return x


def _pool_out(n: int, k_eff: int, s: int, pl: int, pr: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape``) for padding ``(pl, pr)``.

    With ``ceil_mode`` the division rounds up, but a last window that would start in the
    right padding is dropped.
    """
    span = n + pl + pr - k_eff
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pl:
            out -= 1
        return out
    return span // s + 1


# -- node modules ----------------------------------------------------------------------


_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


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
        self.padding = _axis_pads(layer.padding, ndim)
        self.pad_mode = {"constant": "zeros"}.get(layer.pad_mode, layer.pad_mode)
        native: Any = 0
        self.explicit = True
        if self.pad_mode == "zeros":
            if all(isinstance(p, str) and p.lower() == "same" for p in self.padding) and all(s == 1 for s in self.stride):
                native, self.explicit = "same", False
            elif not any(isinstance(p, str) for p in self.padding):
                pairs = [_pad_pair(p, "padding") for p in self.padding]
                if all(pl == pr >= 0 for pl, pr in pairs):
                    native, self.explicit = tuple(pl for pl, _ in pairs), False
        self.conv = _CONV[ndim](c_in, c_out, self.kernel, self.stride, native, self.dilation, bias=False)

    def forward(self, x):
        if self.explicit:
            pads = [
                resolve_padding(p, n, k, s, d)
                for p, n, k, s, d in zip(self.padding, x.shape[2:], self.kernel, self.stride, self.dilation)
            ]
            x = _pad_nd(x, pads, self.pad_mode)
        return self.conv(x)


class PoolNode(_Node):
    """Max/average pooling (``Conv`` with a pooling op), average when ``as_avg``.

    Uses ``F.avg_poolNd``/``F.max_poolNd`` (``count_include_pad=True``, ``ceil_mode``) where
    they can express the layer: symmetric zero padding of at most half the kernel (PyTorch
    checks ``2*p <= k`` for ``max_pool1d`` even with dilation), no dilation for averages,
    and for ``avg_pool3d`` an input at least as large as the kernel.  Otherwise the input
    is padded explicitly and pooled without padding (averages by a depthwise conv of
    constant weight ``1/prod(kernel)``), its right side cut or extended so that the output
    size follows PyTorch's ``ceil_mode`` rule (:func:`_pool_out`; with asymmetric padding
    the last window must start before the right padding, as PyTorch's rule reads).
    """

    def __init__(self, layer: Conv, ndim: int, as_avg: bool):
        super().__init__()
        self.ndim = ndim
        self.as_avg = as_avg
        self.kernel = tuple(int(k) for k in per_axis(layer.kernel, ndim, "kernel"))
        self.stride = tuple(int(s) for s in per_axis(layer.stride, ndim, "stride"))
        self.dilation = tuple(int(d) for d in per_axis(layer.dilation, ndim, "dilation"))
        self.padding = _axis_pads(layer.padding, ndim)
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
            n_out = _pool_out(n, k_eff, s, pl, pr, self.ceil_mode)
            ends.append((n_out - 1) * s + k_eff - (n + pl + pr))
        # padded positions are never inputs: zeros (average) or -inf (max)
        fill = 0.0 if self.as_avg else -math.inf
        x = _pad_nd(x, pads, self.pad_mode, value=fill)
        x = _pad_nd(x, [(0, e) for e in ends], "zeros", value=fill)
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
        self.pads = tuple(_pad_pair(p, "padding") for p in per_axis(layer.padding, ndim, "padding"))
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
        return _pad_nd(y, crop)


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


class PadNode(_Node):
    """``F.pad`` (see :func:`_pad_nd`)."""

    def __init__(self, layer: Pad, ndim: int):
        super().__init__()
        self.pads = tuple(_pad_pair(p, "padding") for p in per_axis(layer.padding, ndim, "padding"))
        self.mode = {"constant": "zeros"}.get(layer.mode, layer.mode)

    def forward(self, x):
        return _pad_nd(x, self.pads, self.mode)


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
        xs = [p(x) for p, x in zip(self.proj, xs)]
        if self.op == "mul":
            xs = [x + self.mul_offset for x in xs] if self.mul_offset else xs
        out = xs[0]
        for x in xs[1:]:
            out = out + x if self.op == "add" else out * x
        return out


# -- the twin --------------------------------------------------------------------------


class TorchTwin(nn.Module):
    """A PyTorch model with the geometry of an rfmap graph (built by :func:`to_torch`).

    ``forward(x)`` returns ``{node name: output}`` for every node (the input included);
    :meth:`node_output` computes only what one node needs.  ``x`` is ``(batch, channels,
    *spatial)``.  ``expected_sizes`` holds the spatial sizes rfmap computed for
    ``input_size``; with ``check_sizes`` (the default) a node whose PyTorch output has
    another size raises ``RuntimeError``.
    """

    def __init__(self, graph: Graph, analysis: Analysis, nodes: list[_Node], channels: int, dtype):
        super().__init__()
        self.graph = graph
        self.analysis = analysis
        self.input_size = analysis.input_size
        self.channels = channels
        self.dtype = dtype
        self.names = tuple(node.name for node in graph.nodes)
        self.inputs = tuple(node.inputs for node in graph.nodes)
        self.node_modules = nn.ModuleList(nodes)  # one per node after the input
        self.expected_sizes = {row.name: tuple(row.output_size) for row in analysis.layers}
        self.check_sizes = True

    def make_input(self, batch: int = 1, fill: str = "ones", seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
        """An input of the built size: ``"ones"`` or ``"positive"`` (uniform in [0.5, 1.5])."""
        shape = (batch, self.channels) + tuple(self.input_size)
        if fill == "ones":
            x = torch.ones(shape, dtype=self.dtype)
        elif fill == "positive":
            gen = torch.Generator().manual_seed(seed)
            x = 0.5 + torch.rand(shape, generator=gen, dtype=self.dtype)
        else:
            raise ValueError(f"fill must be 'ones' or 'positive', got {fill!r}")
        return x.requires_grad_(requires_grad)

    def _run(self, x: torch.Tensor, upto: int | None = None) -> dict[str, torch.Tensor]:
        last = len(self.names) - 1 if upto is None else upto
        needed = self._ancestors(last)
        check = self.check_sizes and tuple(x.shape[2:]) == tuple(self.input_size)
        out: dict[str, torch.Tensor] = {self.names[0]: x}
        for k in range(1, last + 1):
            if k not in needed:
                continue
            name = self.names[k]
            y = self.node_modules[k - 1](*(out[p] for p in self.inputs[k]))
            if check and tuple(y.shape[2:]) != self.expected_sizes[name]:
                raise RuntimeError(
                    f"layer '{name}': PyTorch output size {list(y.shape[2:])} differs from rfmap's "
                    f"{list(self.expected_sizes[name])} (input size {list(self.input_size)})"
                )
            out[name] = y
        return out

    def _ancestors(self, k: int) -> set[int]:
        index = {n: i for i, n in enumerate(self.names)}
        seen, stack = {k}, [k]
        while stack:
            for p in self.inputs[stack.pop()]:
                i = index[p]
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(x)

    def node_output(self, x: torch.Tensor, name: str | int) -> torch.Tensor:
        """The output of one node (by name or index), computing only its ancestors."""
        k = self.analysis._resolve(name)
        return self._run(x, upto=k)[self.names[k]]


def layer_module(
    layer: Layer, ndim: int, c_ins: Sequence[int], channels: int = 2, *, max_as_avg: bool = True, mul_offset: float = 1.0
) -> tuple[nn.Module, int]:
    """The PyTorch module of one layer and its output channel count.

    ``c_ins``: channels of each input (one, or several for a merge); ``channels``: output
    channels of convolutions.  The module's ``forward(*inputs)`` resolves padding for the
    actual input shape; weights are PyTorch's defaults (see :func:`to_torch`).  No rfmap
    analysis runs here, so it also builds layers rfmap rejects (to see what PyTorch does).
    """
    c_in = c_ins[0]
    if isinstance(layer, Merge):
        node = MergeNode(layer.op, ndim, c_ins, mul_offset)
        return node, node.c_out
    if isinstance(layer, Conv):
        if layer.op == "conv":
            return ConvNode(layer, ndim, c_in, channels), channels
        as_avg = layer.op != "maxpool" or max_as_avg
        return PoolNode(layer, ndim, as_avg), c_in
    if isinstance(layer, ConvTranspose):
        return ConvTransposeNode(layer, ndim, c_in, channels), channels
    if isinstance(layer, Upsample):
        return UpsampleNode(layer, ndim), c_in
    if isinstance(layer, Pad):
        return PadNode(layer, ndim), c_in
    if isinstance(layer, Crop):
        return CropNode(layer, ndim), c_in
    if isinstance(layer, PixelShuffle):
        node = ShuffleNode(layer, ndim, c_in, channels)
        return node, node.c_out
    if isinstance(layer, PixelUnshuffle):
        node = UnshuffleNode(layer, ndim, c_in, channels)
        return node, node.c_out
    if isinstance(layer, AdaptivePool):
        return AdaptiveNode(layer, ndim), c_in
    if isinstance(layer, GlobalOp):
        return GlobalNode(ndim, c_in, channels), channels
    if isinstance(layer, Pointwise):
        return IdentityNode(), c_in
    raise RFMapError(f"no PyTorch twin for layer type {type(layer).__name__} (op {layer.op!r})")


def _init_weights(model: nn.Module, weights: str, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, _CONV_TYPES):
                continue
            w = m.weight
            if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                fan_in = w.shape[0] * math.prod(w.shape[2:])
            else:
                fan_in = w.shape[1] * math.prod(w.shape[2:])
            if weights == "positive":
                w.copy_((0.5 + torch.rand(w.shape, generator=gen, dtype=torch.float64)).to(w.dtype) / fan_in)
            elif weights == "uniform":
                w.fill_(1.0 / fan_in)


def to_torch(
    graph: Graph,
    input_size: int | Sequence[int] | None = None,
    *,
    channels: int = 2,
    weights: str = "positive",
    seed: int = 0,
    max_as_avg: bool = True,
    mul_offset: float = 1.0,
    dtype: Any = None,
) -> TorchTwin:
    """A PyTorch twin of ``graph`` (see the module docstring for how each op is realized).

    ``input_size``: spatial size, an int or ``(H, W)`` (1 to 3 axes); defaults to the
    graph's.  The graph is analyzed first (:class:`rfmap.Analysis`), so a geometry rfmap
    rejects raises :class:`~rfmap.errors.RFMapError` here.  ``channels``: channels of the
    input and of every convolution.  ``weights``: ``"positive"``, ``"uniform"`` or
    ``"random"``; ``seed`` makes them reproducible.  ``max_as_avg``: max pooling becomes
    average pooling, so that the input gradient reaches every tap of the window (the
    support of a max is data dependent).  ``mul_offset``: ``mul`` merges multiply
    ``(a + mul_offset) * (b + mul_offset)`` (see the module docstring).  ``dtype``: default
    ``torch.float64``.
    """
    if weights not in WEIGHTS:
        raise RFMapError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if input_size is None:
        input_size = graph.input_size
    analysis = Analysis(graph, input_size)
    ndim = analysis.ndim
    dtype = torch.float64 if dtype is None else dtype
    c_of: dict[str, int] = {graph.nodes[0].name: int(channels)}
    nodes: list[_Node] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for node in graph.nodes[1:]:
            module, c_out = layer_module(
                node.layer, ndim, [c_of[p] for p in node.inputs], int(channels), max_as_avg=max_as_avg, mul_offset=mul_offset
            )
            nodes.append(module)
            c_of[node.name] = c_out
        twin = TorchTwin(graph, analysis, nodes, int(channels), dtype).to(dtype)
    _init_weights(twin, weights, torch.Generator().manual_seed(seed))
    twin.channels_of = c_of
    return twin
