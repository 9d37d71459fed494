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
from typing import TYPE_CHECKING, Any

from rfmap._lazy import lazy_attributes
from rfmap.core.axis import AxisMap, Global, Identity, Window
from rfmap.core.params import (
    boolean,
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
        maps = _shared(layer.axis_maps(sizes))
        if len(_MAPS_CACHE) >= _MAPS_CACHE_SIZE:
            _MAPS_CACHE.clear()
        _MAPS_CACHE[key] = maps
    return maps


def _shared(maps: tuple[AxisMap, ...]) -> tuple[AxisMap, ...]:
    """``maps`` with an axis whose rule equals the one before it holding that very object:
    the engine then does the work of equal axes (a square input, a square kernel) once."""
    out = list(maps)
    for a in range(1, len(out)):
        m, p = out[a], out[a - 1]
        if m is not p and type(m) is type(p) and m.plain and m == p:
            out[a] = p
    return tuple(out)


class Layer:
    """Base class: an op that maps one input map to one output map, axis by axis."""

    op: str = "layer"
    merge: bool = False
    #: the output sees the whole input (flatten/linear, global pooling, attention)
    global_context: bool = False

    @property
    def permutation(self) -> tuple[int, ...] | None:
        """Output axis ``j`` is input axis ``permutation[j]`` (:class:`~rfmap.core.permute.Permute`);
        ``None``: every axis stays where it is."""
        return None

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


# -- layers defined in their own modules ----------------------------------------------------

#: imported on first use (PEP 562): a network without them, and the command line's start,
#: does not pay for building their classes.  ``from rfmap.core.layers import Upsample`` works.
_ELSEWHERE = {
    **{name: ("rfmap.core.resampling", name)
       for name in ("ConvTranspose", "Upsample", "INTERPOLATION", "PixelShuffle", "PixelUnshuffle")},
    **{name: ("rfmap.core.borders", name) for name in ("Pad", "Crop")},
    "Permute": ("rfmap.core.permute", "Permute"),
    **{name: ("rfmap.core.broadcast", name) for name in ("Expand", "Reduce")},
    "AdaptivePool": ("rfmap.core.adaptive", "AdaptivePool"),
}

if TYPE_CHECKING:
    from rfmap.core.adaptive import AdaptivePool as AdaptivePool
    from rfmap.core.borders import Crop as Crop
    from rfmap.core.borders import Pad as Pad
    from rfmap.core.broadcast import Expand as Expand
    from rfmap.core.broadcast import Reduce as Reduce
    from rfmap.core.permute import Permute as Permute
    from rfmap.core.resampling import INTERPOLATION as INTERPOLATION
    from rfmap.core.resampling import ConvTranspose as ConvTranspose
    from rfmap.core.resampling import PixelShuffle as PixelShuffle
    from rfmap.core.resampling import PixelUnshuffle as PixelUnshuffle
    from rfmap.core.resampling import Upsample as Upsample

__getattr__ = lazy_attributes(__name__, globals(), _ELSEWHERE)
