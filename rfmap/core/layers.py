"""Layer types: the geometry of each kind of op, resolved per axis.

A layer is an immutable description (kernel, stride, padding, ...) that knows how to
resolve itself, for a given input size, into one :class:`rfmap.core.axis.AxisMap` per spatial
axis.  Parameters may be given once for every axis (``kernel=3``) or per axis in (H, W)
order -- or (D, H, W) for 3-D, (L,) for 1-D.

Padding is given per axis as ``p`` (both sides) or ``(left, right)``; a negative pad crops.
The string forms follow the frameworks: ``"valid"``; ``"same"`` (PyTorch: total pad
``d*(k-1)``, the extra pixel on the right); ``"same_upper"`` / ``"same_lower"`` (TF/ONNX:
``n_out = ceil(n/s)``, total pad ``max((n_out-1)*s + k_eff - n, 0)``, the extra pixel on the
right/bottom or left/top), which depend on the input size.

Parameters are checked when a layer is built (:mod:`rfmap.core.params`), so errors name
the spec line or the node that wrote them.  The op registry (:mod:`rfmap.core.registry`)
says which op names, PyTorch targets and ONNX op types build which layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd
from typing import Any

from rfmap.core.axis import Adaptive, AxisMap, Global, Identity, Resample, Shuffle, Transposed, Window
from rfmap.core.params import (
    boolean,
    fraction,
    integer,
    ints,
    pad_mode,
    padding,
    per_axis,
)
from rfmap.errors import RFMapError


def _sides(p: Any) -> tuple[int, int]:
    """A per-axis padding already checked by :func:`~rfmap.core.params.padding`: ``p`` or
    ``(left, right)``."""
    return (p, p) if isinstance(p, int) else (p[0], p[1])


def _set(obj: Any, **values: Any) -> None:
    """Store normalized parameters on a frozen dataclass (its ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def _border(mode: str, n: int, pl: int, pr: int) -> tuple[int, int] | None:
    """Check padding ``(pl, pr)`` of an input of size ``n`` in ``mode`` as ``F.pad`` does.

    reflect needs each pad below ``n``; circular crops negative sides first, then wraps
    at most once around what is left: returns that kept range for :class:`Window`.
    """
    if mode == "reflect" and max(pl, pr) >= n:
        raise RFMapError(f"reflect padding ({pl}, {pr}) needs an input larger than {max(pl, pr)}, got {n}")
    if mode == "circular":
        a, b = max(-pl, 0), n - max(-pr, 0)
        if max(pl, pr, 0) > b - a or b <= a:
            raise RFMapError(
                f"circular padding ({pl}, {pr}) wraps more than once around the {max(b - a, 0)} kept input cells"
            )
        return (a, b) if (a, b) != (0, n) else None
    return None


def _check_out(n_out: int, n_in: int, detail: str) -> int:
    if n_out < 1:
        raise RFMapError(f"output size {n_out} < 1 for input size {n_in} ({detail})")
    return n_out


_MAPS_CACHE: dict[tuple[Layer, tuple[int, ...]], tuple[AxisMap, ...]] = {}
_MAPS_CACHE_SIZE = 4096


def resolved_maps(layer: Layer, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
    """``layer.axis_maps(sizes)``, remembered: layers and rules are immutable, and a front end
    and the analysis resolve the same layers at the same sizes (bounded; unhashable layers
    are resolved every time)."""
    key = (layer, tuple(sizes))
    try:
        maps = _MAPS_CACHE.get(key)
    except TypeError:
        return layer.axis_maps(sizes)
    if maps is None:
        maps = layer.axis_maps(sizes)
        if len(_MAPS_CACHE) >= _MAPS_CACHE_SIZE:
            _MAPS_CACHE.clear()
        _MAPS_CACHE[key] = maps
    return maps


class Layer:
    """Base class: an op that maps one input map to one output map, axis by axis."""

    op: str = "layer"
    merge: bool = False
    #: the output sees the whole input (flatten/linear, global pooling, attention)
    global_context: bool = False

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        """One rule per spatial axis, for an input of spatial size ``sizes``."""
        raise NotImplementedError


def _op_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise RFMapError(f"op must be a non-empty string, got {value!r:.60}")
    return value


@dataclass(frozen=True)
class Conv(Layer):
    """Convolution or pooling window (``op`` is ``conv``, ``maxpool``, ``avgpool``, ...).

    ``n_out = floor((n + p_left + p_right - k_eff) / s) + 1`` with ``k_eff = d*(k-1) + 1``;
    with ``ceil_mode`` the floor is a ceil, dropping a last window that would start in the
    right padding (PyTorch's rule).  ``pad_mode``: the border (``zeros``, ``reflect``,
    ``replicate``, ``circular``; PyTorch's and ONNX's spellings are accepted).
    """

    kernel: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False
    op: str = "conv"
    pad_mode: str = "zeros"

    def __post_init__(self) -> None:
        _set(
            self,
            kernel=ints(self.kernel, "kernel", 1),
            stride=ints(self.stride, "stride", 1),
            padding=padding(self.padding),
            dilation=ints(self.dilation, "dilation", 1),
            ceil_mode=boolean(self.ceil_mode, "ceil_mode"),
            op=_op_name(self.op),
            pad_mode=pad_mode(self.pad_mode),
        )

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        ndim = len(sizes)
        ks = per_axis(self.kernel, ndim, "kernel")
        ss = per_axis(self.stride, ndim, "stride")
        ds = per_axis(self.dilation, ndim, "dilation")
        pads = (self.padding,) * ndim if isinstance(self.padding, str) else per_axis(self.padding, ndim, "padding")
        return tuple(self._axis(n, k, s, d, p) for n, k, s, d, p in zip(sizes, ks, ss, ds, pads))

    def _axis(self, n: int, k: int, s: int, d: int, p: Any) -> Window:
        k_eff = d * (k - 1) + 1
        if isinstance(p, str):
            if p == "valid":
                pl = pr = 0
            elif p == "same" and s == 1:
                total = k_eff - 1
                pl, pr = total // 2, total - total // 2
            else:
                total = max((-(-n // s) - 1) * s + k_eff - n, 0)
                small, large = total // 2, total - total // 2
                pl, pr = (large, small) if p == "same_lower" else (small, large)
        else:
            pl, pr = _sides(p)
        span = n + pl + pr - k_eff
        detail = f"kernel {k}, dilation {d}, stride {s}, padding ({pl}, {pr})"
        if self.ceil_mode:
            # PyTorch: ceil(span / s) + 1, also for a window longer than the padded input
            # (-s < span < 0), minus a last window starting in the right padding
            n_out = -(-span // s) + 1
            if (n_out - 1) * s >= n + pl:
                n_out -= 1
        else:
            n_out = span // s + 1
        if n_out < 1:
            raise RFMapError(f"kernel larger than the padded input: {n} + {pl} + {pr} < {k_eff} ({detail})")
        wrap = _border(self.pad_mode, n, pl, pr)
        return Window(n, n_out, k, s, d, pl, self.pad_mode, wrap)


@dataclass(frozen=True)
class ConvTranspose(Layer):
    """Transposed convolution: ``n_out = (n-1)*s - p_left - p_right + d*(k-1) + output_padding + 1``."""

    kernel: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    dilation: Any = 1
    op: str = "conv_transpose"

    def __post_init__(self) -> None:
        pads = self.padding
        if isinstance(pads, str) or (isinstance(pads, (list, tuple)) and not pads):
            raise RFMapError(f"padding of a transposed convolution must be ints or (left, right) pairs, got {pads!r:.60}")
        _set(
            self,
            kernel=ints(self.kernel, "kernel", 1),
            stride=ints(self.stride, "stride", 1),
            padding=padding(pads),
            output_padding=ints(self.output_padding, "output_padding", 0),
            dilation=ints(self.dilation, "dilation", 1),
            op=_op_name(self.op),
        )

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        ndim = len(sizes)
        maps: list[AxisMap] = []
        for n, k, s, p, op_, d in zip(
            sizes,
            per_axis(self.kernel, ndim, "kernel"),
            per_axis(self.stride, ndim, "stride"),
            per_axis(self.padding, ndim, "padding"),
            per_axis(self.output_padding, ndim, "output_padding"),
            per_axis(self.dilation, ndim, "dilation"),
        ):
            pl, pr = _sides(p)
            if pl < 0 or pr < 0:
                raise RFMapError(f"padding must be >= 0, got ({pl}, {pr})")
            # every output phase must receive an input, or some cells see nothing at all: the
            # taps reach the phases d*t mod s, t < k, which are min(k, s/gcd(d, s)) distinct ones
            if gcd(d, s) != 1 or k < s:
                raise RFMapError(
                    f"stride {s} with kernel {k} and dilation {d} leaves output cells that no input reaches"
                )
            if self.op == "conv_transpose" and op_ >= max(s, d):
                # PyTorch's rule (its meta kernel skips the check, its CPU and CUDA kernels raise)
                raise RFMapError(f"output_padding {op_} must be smaller than the stride {s} or the dilation {d}")
            n_out = (n - 1) * s - pl - pr + d * (k - 1) + op_ + 1
            maps.append(Transposed(n, _check_out(n_out, n, f"kernel {k}, stride {s}"), k, s, d, pl))
        return tuple(maps)


#: Interpolation modes: PyTorch's and ONNX's names -> rfmap's four.
INTERPOLATION = {
    "nearest": "nearest",
    "nearest-exact": "nearest-exact",
    "linear": "linear",
    "bilinear": "linear",
    "trilinear": "linear",
    "bicubic": "cubic",
    "cubic": "cubic",
}


@dataclass(frozen=True)
class Upsample(Layer):
    """Resampling as ``F.interpolate``: ``scale_factor`` (exact: ``2``, ``1.5``, ``"3/2"``) or ``size``.

    With a scale factor ``n_out = floor(n * scale)`` and the source of output ``o`` is
    ``o / scale`` (nearest: ``floor``; linear: ``(o + 0.5)/scale - 0.5``); with ``size`` the
    ratio is ``n_in / n_out``; with ``align_corners`` it is ``(n_in - 1)/(n_out - 1)``.
    """

    scale_factor: Any = None
    size: Any = None
    mode: str = "nearest"
    align_corners: bool = False
    op: str = "upsample"

    def __post_init__(self) -> None:
        mode = INTERPOLATION.get(self.mode.lower()) if isinstance(self.mode, str) else None
        if mode is None:
            raise RFMapError(f"mode {self.mode!r:.60} is not one of {', '.join(INTERPOLATION)}")
        if (self.scale_factor is None) == (self.size is None):
            raise RFMapError("give exactly one of scale_factor and size")
        align = boolean(self.align_corners, "align_corners")
        if align and mode not in ("linear", "cubic"):
            raise RFMapError("align_corners applies to linear and cubic modes only")
        scale = self.scale_factor
        if scale is not None:
            scale = tuple(fraction(v, "scale_factor") for v in scale) if isinstance(scale, (list, tuple)) else fraction(scale, "scale_factor")
        size = None if self.size is None else ints(self.size, "size", 1)
        _set(self, scale_factor=scale, size=size, mode=self.mode.lower(), align_corners=align, op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        ndim = len(sizes)
        mode = INTERPOLATION[self.mode]
        maps: list[AxisMap] = []
        for axis, n in enumerate(sizes):
            if self.size is not None:
                n_out = per_axis(self.size, ndim, "size")[axis]
                ratio = Fraction(n, n_out)
            else:
                scale = per_axis(self.scale_factor, ndim, "scale_factor")[axis]
                n_out = _check_out(int(n * scale), n, f"scale_factor {scale}")
                ratio = 1 / scale
            if self.align_corners:
                ratio = Fraction(n - 1, n_out - 1) if n_out > 1 else Fraction(0)
            if mode == "linear" and n_out == n:
                # PyTorch's linear kernels copy an axis whose size does not change, whatever
                # the scale factor (e.g. 1.3 on 3 cells): the identity, not a 1/1.3 ratio
                ratio = Fraction(1)
            maps.append(Resample(n, n_out, mode, ratio, self.align_corners))
        return tuple(maps)


@dataclass(frozen=True)
class Pad(Layer):
    """Explicit padding per axis ``(left, right)``; negative values crop.

    ``mode`` is ``zeros`` (constant), ``reflect``, ``replicate`` or ``circular`` (PyTorch's
    and ONNX's spellings are accepted: ``constant``, ``edge``, ``wrap``).
    """

    padding: Any
    mode: str = "zeros"
    op: str = "pad"

    def __post_init__(self) -> None:
        pads = padding(self.padding)
        if isinstance(pads, str):
            raise RFMapError(f"padding of a pad layer must be ints or (left, right) pairs, got {self.padding!r:.60}")
        _set(self, padding=pads, mode=pad_mode(self.mode), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        maps: list[AxisMap] = []
        for n, p in zip(sizes, per_axis(self.padding, len(sizes), "padding")):
            pl, pr = _sides(p)
            n_out = _check_out(n + pl + pr, n, f"padding ({pl}, {pr})")
            maps.append(Window(n, n_out, 1, 1, 1, pl, self.mode, _border(self.mode, n, pl, pr)))
        return tuple(maps)


def _bound(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(None if v is None else integer(v, what) for v in value)
    return integer(value, what)


@dataclass(frozen=True)
class Crop(Layer):
    """Slicing ``x[start:stop:step]`` per axis, with Python's rules for negative and ``None`` bounds."""

    start: Any = 0
    stop: Any = None
    step: Any = 1
    op: str = "crop"

    def __post_init__(self) -> None:
        start = 0 if self.start is None else self.start
        step = 1 if self.step is None else self.step
        _set(self, start=_bound(start, "start"), stop=_bound(self.stop, "stop"), step=ints(step, "step", 1), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        ndim = len(sizes)
        maps: list[AxisMap] = []
        for n, a, b, s in zip(
            sizes, per_axis(self.start, ndim, "start"), per_axis(self.stop, ndim, "stop"), per_axis(self.step, ndim, "step")
        ):
            a, b, _ = slice(0 if a is None else a, b, s).indices(n)
            n_out = _check_out(len(range(a, b, s)), n, f"slice {a}:{b}:{s}")
            maps.append(Window(n, n_out, 1, s, 1, -a))
        return tuple(maps)


@dataclass(frozen=True)
class PixelShuffle(Layer):
    """Depth to space by ``factor``: output cell ``o`` comes from input cell ``o // factor``."""

    factor: Any
    op: str = "pixel_shuffle"

    def __post_init__(self) -> None:
        _set(self, factor=ints(self.factor, "factor", 1), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        return tuple(Shuffle(n, n * r, r) for n, r in zip(sizes, per_axis(self.factor, len(sizes), "factor")))


@dataclass(frozen=True)
class PixelUnshuffle(Layer):
    """Space to depth by ``factor``: a cell sees a ``factor``-wide block (a stride-``factor`` window)."""

    factor: Any
    op: str = "pixel_unshuffle"

    def __post_init__(self) -> None:
        _set(self, factor=ints(self.factor, "factor", 1), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        maps: list[AxisMap] = []
        for n, r in zip(sizes, per_axis(self.factor, len(sizes), "factor")):
            if n % r:
                raise RFMapError(f"input size {n} is not divisible by the factor {r}")
            maps.append(Window(n, n // r, r, r, 1, 0))
        return tuple(maps)


@dataclass(frozen=True)
class AdaptivePool(Layer):
    """Adaptive pooling to ``output_size``; output ``o`` pools ``[floor(o*n/m), ceil((o+1)*n/m))``;
    ``None`` keeps an axis."""

    output_size: Any
    op: str = "adaptive_pool"

    def __post_init__(self) -> None:
        out = self.output_size
        if isinstance(out, (list, tuple)):
            if not out or len(out) > 3:
                raise RFMapError(f"output_size must be an integer or 1 to 3 of them, got {list(out)!r:.60}")
            out = tuple(None if v is None else integer(v, "output_size", 1) for v in out)
        elif out is not None:
            out = integer(out, "output_size", 1)
        _set(self, output_size=out, op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        out = per_axis(self.output_size, len(sizes), "output_size")
        maps: list[AxisMap] = []
        for n, m in zip(sizes, out):
            m = n if m is None else m
            maps.append(Global(n, 1) if m == 1 else Adaptive(n, m))
        return tuple(maps)


@dataclass(frozen=True)
class GlobalOp(Layer):
    """Global pooling, flatten + linear, attention: every output sees the whole input."""

    op: str = "global"
    global_context: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        _set(self, op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        return tuple(Global(n, 1) for n in sizes)


@dataclass(frozen=True)
class Pointwise(Layer):
    """An op that changes no geometry (activation, normalization, 1x1 conv, dropout)."""

    op: str = "pointwise"

    def __post_init__(self) -> None:
        _set(self, op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        return tuple(Identity(n, n) for n in sizes)


MERGE_OPS = ("add", "mul", "concat")


@dataclass(frozen=True)
class Merge(Layer):
    """Where paths meet: ``add``, ``mul`` (elementwise) or ``concat`` (channels); sizes must agree
    (``add`` and ``mul`` broadcast a 1-cell axis, as numpy does)."""

    op: str = "add"
    merge: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or self.op not in MERGE_OPS:
            raise RFMapError(f"merge op {self.op!r:.60} is not one of {', '.join(MERGE_OPS)}")


@dataclass(frozen=True)
class Expand(Layer):
    """Broadcasting a 1-cell-wide map to ``size`` cells (``expand``, a broadcasting add or
    mul): every output cell sees the one input cell."""

    size: Any
    op: str = "expand"

    def __post_init__(self) -> None:
        _set(self, size=ints(self.size, "size", 1))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        maps: list[AxisMap] = []
        for n, m in zip(sizes, per_axis(self.size, len(sizes), "size")):
            if m == n:
                maps.append(Identity(n, n))
            elif n == 1:
                maps.append(Global(1, m))
            else:
                raise RFMapError(f"cannot broadcast {n} cells to {m}")
        return tuple(maps)


@dataclass(frozen=True)
class Reduce(Layer):
    """Reduction over some spatial axes (``x.mean(dim=2)``, a linear layer over W): those
    axes become 1 cell that sees the whole axis; the others are untouched.  ``axes`` are
    indices of spatial axes (0 is H in 2-D)."""

    axes: Any
    op: str = "reduce"

    def __post_init__(self) -> None:
        axes = self.axes if isinstance(self.axes, (list, tuple)) else (self.axes,)
        _set(self, axes=tuple(integer(a, "axes", 0) for a in axes), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        return tuple(Global(n, 1) if a in self.axes else Identity(n, n) for a, n in enumerate(sizes))


def conv(kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, **kw: Any) -> Conv:
    """A convolution: ``conv(3, padding=1)``, per-axis values in (H, W) order."""
    return Conv(kernel, stride, padding, dilation, op="conv", **kw)


def maxpool(kernel: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
            pad_mode: str = "zeros") -> Conv:
    """Max pooling; ``stride`` defaults to the kernel, as in PyTorch."""
    return Conv(kernel, kernel if stride is None else stride, padding, dilation, ceil_mode, op="maxpool", pad_mode=pad_mode)


def avgpool(kernel: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False, op: str = "avgpool") -> Conv:
    """Average pooling (``op="lppool"`` for power-average pooling); ``stride`` defaults to the kernel."""
    return Conv(kernel, kernel if stride is None else stride, padding, 1, ceil_mode, op=op)
