"""Layer specifications and the one registry of op rules.

A layer is an immutable description (kernel, stride, padding, ...) that knows how to
resolve itself, for a given input size, into one :class:`rfmap.core.axis.AxisMap` per spatial
axis.  Parameters may be given once for every axis (``kernel=3``) or per axis in (H, W)
order -- or (D, H, W) for 3-D, (L,) for 1-D.

Padding is given per axis as ``p`` (both sides) or ``(left, right)``; a negative pad crops.
The string forms follow the frameworks: ``"valid"``; ``"same"`` (PyTorch: total pad
``d*(k-1)``, the extra pixel on the right); ``"same_upper"`` / ``"same_lower"`` (TF/ONNX:
``n_out = ceil(n/s)``, total pad ``max((n_out-1)*s + k_eff - n, 0)``, the extra pixel on the
right/bottom or left/top), which depend on the input size.

:data:`OPS` maps op names to layer constructors; :func:`register_op` adds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from fractions import Fraction
from typing import Any, Callable, Sequence

from rfmap.core.axis import Adaptive, AxisMap, Global, Identity, Resample, Shuffle, Transposed, Window
from rfmap.errors import RFMapError

PAD_STRINGS = ("valid", "same", "same_upper", "same_lower")


def per_axis(value: Any, ndim: int, what: str) -> tuple:
    """``value`` repeated for ``ndim`` axes, or checked to have one entry per axis."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return tuple(value) * ndim
        if len(value) != ndim:
            raise RFMapError(f"{what} has {len(value)} entries for {ndim} spatial axes")
        return tuple(value)
    return (value,) * ndim


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            raise RFMapError(f"{what} must be an integer, got {value!r}") from None
        if as_int != value:
            raise RFMapError(f"{what} must be an integer, got {value!r}")
        value = as_int
    if value < minimum:
        raise RFMapError(f"{what} must be >= {minimum}, got {value}")
    return value


def _fraction(value: Any, what: str) -> Fraction:
    try:
        f = Fraction(str(value)) if isinstance(value, (float, str)) else Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise RFMapError(f"{what} must be a positive number, got {value!r}") from None
    if f <= 0:
        raise RFMapError(f"{what} must be positive, got {value!r}")
    return f


def _pad_pair(p: Any, what: str) -> tuple[int, int]:
    if isinstance(p, (list, tuple)):
        if len(p) != 2:
            raise RFMapError(f"{what} must be an int or a (left, right) pair, got {p!r}")
        return (_positive_int(p[0], what, -(10**12)), _positive_int(p[1], what, -(10**12)))
    v = _positive_int(p, what, -(10**12))
    return (v, v)


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


class Layer:
    """Base class: an op that maps one input map to one output map, axis by axis."""

    op: str = "layer"
    merge: bool = False
    #: the output sees the whole input (flatten/linear, global pooling, attention)
    global_context: bool = False

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        """One rule per spatial axis, for an input of spatial size ``sizes``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Conv(Layer):
    """Convolution or pooling window (``op`` is ``conv``, ``maxpool``, ``avgpool``, ...).

    ``n_out = floor((n + p_left + p_right - k_eff) / s) + 1`` with ``k_eff = d*(k-1) + 1``;
    with ``ceil_mode`` the floor is a ceil, dropping a last window that would start in the
    right padding (PyTorch's rule).
    """

    kernel: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False
    op: str = "conv"
    pad_mode: str = "zeros"

    def axis_maps(self, sizes):
        ndim = len(sizes)
        ks = per_axis(self.kernel, ndim, "kernel")
        ss = per_axis(self.stride, ndim, "stride")
        ds = per_axis(self.dilation, ndim, "dilation")
        pads = self.padding if isinstance(self.padding, str) else per_axis(self.padding, ndim, "padding")
        if isinstance(pads, str):
            if pads.lower() not in PAD_STRINGS:
                raise RFMapError(f"padding {pads!r} is not one of {', '.join(PAD_STRINGS)}")
            pads = (pads.lower(),) * ndim
        maps = []
        for n, k, s, d, p in zip(sizes, ks, ss, ds, pads):
            k = _positive_int(k, "kernel")
            s = _positive_int(s, "stride")
            d = _positive_int(d, "dilation")
            k_eff = d * (k - 1) + 1
            if isinstance(p, str):
                p = p.lower()
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
                pl, pr = _pad_pair(p, "padding")
            span = n + pl + pr - k_eff
            detail = f"kernel {k}, dilation {d}, stride {s}, padding ({pl}, {pr})"
            if self.ceil_mode:
                # PyTorch: ceil(span / s) + 1, also for a window longer than the padded
                # input (-s < span < 0), minus a last window starting in the right padding
                n_out = -(-span // s) + 1
                if (n_out - 1) * s >= n + pl:
                    n_out -= 1
            else:
                n_out = span // s + 1
            if n_out < 1:
                raise RFMapError(f"kernel larger than the padded input: {n} + {pl} + {pr} < {k_eff} ({detail})")
            wrap = _border(self.pad_mode, n, pl, pr)
            maps.append(Window(n, n_out, k, s, d, pl, self.pad_mode, wrap))
        return tuple(maps)


@dataclass(frozen=True)
class ConvTranspose(Layer):
    """Transposed convolution: ``n_out = (n-1)*s - p_left - p_right + d*(k-1) + output_padding + 1``."""

    kernel: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    dilation: Any = 1
    op: str = "conv_transpose"

    def axis_maps(self, sizes):
        ndim = len(sizes)
        maps = []
        for n, k, s, p, op_, d in zip(
            sizes,
            per_axis(self.kernel, ndim, "kernel"),
            per_axis(self.stride, ndim, "stride"),
            per_axis(self.padding, ndim, "padding"),
            per_axis(self.output_padding, ndim, "output_padding"),
            per_axis(self.dilation, ndim, "dilation"),
        ):
            k, s, d = _positive_int(k, "kernel"), _positive_int(s, "stride"), _positive_int(d, "dilation")
            op_ = _positive_int(op_, "output_padding", 0)
            pl, pr = _pad_pair(p, "padding")
            if pl < 0 or pr < 0:
                raise RFMapError(f"padding must be >= 0, got ({pl}, {pr})")
            # every output phase must receive an input, or some cells see nothing at all
            if len({(d * t) % s for t in range(k)}) != s:
                raise RFMapError(
                    f"stride {s} with kernel {k} and dilation {d} leaves output cells that no input reaches"
                )
            n_out = (n - 1) * s - pl - pr + d * (k - 1) + op_ + 1
            maps.append(Transposed(n, _check_out(n_out, n, f"kernel {k}, stride {s}"), k, s, d, pl))
        return tuple(maps)


_MODES = {
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

    def axis_maps(self, sizes):
        ndim = len(sizes)
        mode = _MODES.get(str(self.mode).lower())
        if mode is None:
            raise RFMapError(f"mode {self.mode!r} is not one of {', '.join(_MODES)}")
        if (self.scale_factor is None) == (self.size is None):
            raise RFMapError("give exactly one of scale_factor and size")
        if self.align_corners and mode not in ("linear", "cubic"):
            raise RFMapError("align_corners applies to linear and cubic modes only")
        maps = []
        for axis, n in enumerate(sizes):
            if self.size is not None:
                n_out = _positive_int(per_axis(self.size, ndim, "size")[axis], "size")
                ratio = Fraction(n, n_out)
            else:
                scale = _fraction(per_axis(self.scale_factor, ndim, "scale_factor")[axis], "scale_factor")
                n_out = _check_out(int(n * scale), n, f"scale_factor {scale}")
                ratio = 1 / scale
            if self.align_corners:
                ratio = Fraction(n - 1, n_out - 1) if n_out > 1 else Fraction(0)
            if mode == "linear" and n_out == n:
                # PyTorch's linear kernels copy an axis whose size does not change, whatever
                # the scale factor (e.g. 1.3 on 3 cells): the identity, not a 1/1.3 ratio
                ratio = Fraction(1)
            maps.append(Resample(n, n_out, mode, ratio, bool(self.align_corners)))
        return tuple(maps)


@dataclass(frozen=True)
class Pad(Layer):
    """Explicit padding per axis ``(left, right)``; negative values crop.

    ``mode`` is ``zeros`` (constant), ``reflect``, ``replicate`` or ``circular``.
    """

    padding: Any
    mode: str = "zeros"
    op: str = "pad"

    def axis_maps(self, sizes):
        mode = {"constant": "zeros"}.get(self.mode, self.mode)
        if mode not in ("zeros", "reflect", "replicate", "circular"):
            raise RFMapError(f"pad mode {self.mode!r} is not one of constant, reflect, replicate, circular")
        maps = []
        for n, p in zip(sizes, per_axis(self.padding, len(sizes), "padding")):
            pl, pr = _pad_pair(p, "padding")
            n_out = _check_out(n + pl + pr, n, f"padding ({pl}, {pr})")
            maps.append(Window(n, n_out, 1, 1, 1, pl, mode, _border(mode, n, pl, pr)))
        return tuple(maps)


@dataclass(frozen=True)
class Crop(Layer):
    """Slicing ``x[start:stop:step]`` per axis, with Python's rules for negative and ``None`` bounds."""

    start: Any = 0
    stop: Any = None
    step: Any = 1
    op: str = "crop"

    def axis_maps(self, sizes):
        ndim = len(sizes)
        maps = []
        for n, a, b, s in zip(
            sizes, per_axis(self.start, ndim, "start"), per_axis(self.stop, ndim, "stop"), per_axis(self.step, ndim, "step")
        ):
            s = _positive_int(s, "step")
            a, b, _ = slice(a, b, s).indices(n)
            n_out = _check_out(len(range(a, b, s)), n, f"slice {a}:{b}:{s}")
            maps.append(Window(n, n_out, 1, s, 1, -a))
        return tuple(maps)


@dataclass(frozen=True)
class PixelShuffle(Layer):
    """Depth to space by ``factor``: output cell ``o`` comes from input cell ``o // factor``."""

    factor: int
    op: str = "pixel_shuffle"

    def axis_maps(self, sizes):
        r = _positive_int(self.factor, "factor")
        return tuple(Shuffle(n, n * r, r) for n in sizes)


@dataclass(frozen=True)
class PixelUnshuffle(Layer):
    """Space to depth by ``factor``: a cell sees a ``factor``-wide block (a stride-``factor`` window)."""

    factor: int
    op: str = "pixel_unshuffle"

    def axis_maps(self, sizes):
        r = _positive_int(self.factor, "factor")
        maps = []
        for n in sizes:
            if n % r:
                raise RFMapError(f"input size {n} is not divisible by the factor {r}")
            maps.append(Window(n, n // r, r, r, 1, 0))
        return tuple(maps)


@dataclass(frozen=True)
class AdaptivePool(Layer):
    """Adaptive pooling to ``output_size``; output ``o`` pools ``[floor(o*n/m), ceil((o+1)*n/m))``."""

    output_size: Any
    op: str = "adaptive_pool"

    def axis_maps(self, sizes):
        out = per_axis(self.output_size, len(sizes), "output_size")
        maps = []
        for n, m in zip(sizes, out):
            m = n if m is None else _positive_int(m, "output_size")
            maps.append(Global(n, 1) if m == 1 else Adaptive(n, m))
        return tuple(maps)


@dataclass(frozen=True)
class GlobalOp(Layer):
    """Global pooling, flatten + linear, attention: every output sees the whole input."""

    op: str = "global"
    global_context: bool = field(default=True, repr=False)

    def axis_maps(self, sizes):
        return tuple(Global(n, 1) for n in sizes)


@dataclass(frozen=True)
class Pointwise(Layer):
    """An op that changes no geometry (activation, normalization, 1x1 conv, dropout)."""

    op: str = "pointwise"

    def axis_maps(self, sizes):
        return tuple(Identity(n, n) for n in sizes)


@dataclass(frozen=True)
class Merge(Layer):
    """Where paths meet: ``add``, ``mul`` (elementwise) or ``concat`` (channels); sizes must agree."""

    op: str = "add"
    merge: bool = field(default=True, repr=False)


def conv(kernel, stride=1, padding=0, dilation=1, **kw) -> Conv:
    return Conv(kernel, stride, padding, dilation, op="conv", **kw)


def maxpool(kernel, stride=None, padding=0, dilation=1, ceil_mode=False) -> Conv:
    return Conv(kernel, kernel if stride is None else stride, padding, dilation, ceil_mode, op="maxpool")


def avgpool(kernel, stride=None, padding=0, ceil_mode=False, op="avgpool") -> Conv:
    return Conv(kernel, kernel if stride is None else stride, padding, 1, ceil_mode, op=op)


#: The registry of op rules: op name -> constructor of a :class:`Layer`.
OPS: dict[str, Callable[..., Layer]] = {
    "conv": conv,
    "maxpool": maxpool,
    "avgpool": avgpool,
    "lppool": partial(avgpool, op="lppool"),
    "conv_transpose": ConvTranspose,
    "upsample": Upsample,
    "pad": Pad,
    "crop": Crop,
    "pixel_shuffle": PixelShuffle,
    "pixel_unshuffle": PixelUnshuffle,
    "adaptive_pool": AdaptivePool,
    "global": lambda op="global": GlobalOp(op=op),
    "pointwise": lambda op="pointwise": Pointwise(op=op),
    "add": lambda: Merge("add"),
    "mul": lambda: Merge("mul"),
    "concat": lambda: Merge("concat"),
}
ALIASES = {
    "convolution": "conv",
    "pool": "maxpool",
    "max_pool": "maxpool",
    "avg_pool": "avgpool",
    "deconv": "conv_transpose",
    "convtranspose": "conv_transpose",
    "interpolate": "upsample",
    "resize": "upsample",
    "slice": "crop",
    "global_pool": "global",
    "flatten": "global",
    "linear": "global",
    "fc": "global",
    "relu": "pointwise",
    "bn": "pointwise",
    "batchnorm": "pointwise",
    "identity": "pointwise",
    "sum": "add",
    "cat": "concat",
}


def register_op(name: str, factory: Callable[..., Layer], *, replace: bool = False) -> None:
    """Add an op rule: ``factory(**params)`` returns a :class:`Layer`.

    The layer's :meth:`Layer.axis_maps` says how it maps cells along each axis; the
    classes in :mod:`rfmap.core.axis` cover windows, transposed windows, resampling, shuffles,
    adaptive and global ops.
    """
    key = name.lower()
    if not replace and (key in OPS or key in ALIASES):
        raise RFMapError(f"op {name!r} is already registered (pass replace=True to override)")
    ALIASES.pop(key, None)  # a registered name wins over an alias of the same spelling
    OPS[key] = factory


def make_layer(op: str, **params) -> Layer:
    """A layer from an op name and its parameters, e.g. ``make_layer("conv", kernel=3, padding=1)``."""
    key = str(op).lower()
    key = ALIASES.get(key, key)
    factory = OPS.get(key)
    if factory is None:
        raise RFMapError(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
    try:
        return factory(**params)
    except TypeError as exc:
        raise RFMapError(f"op {op!r}: {exc}") from None
