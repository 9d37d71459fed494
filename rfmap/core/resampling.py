"""Resampling geometry: transposed convolution, interpolation and pixel (un)shuffle, as
per-axis rules (:class:`Transposed`, :class:`Resample`, :class:`Shuffle`, see
:mod:`rfmap.core.axis`) and as layers (:class:`ConvTranspose`, :class:`Upsample`,
:class:`PixelShuffle`, :class:`PixelUnshuffle`, see :mod:`rfmap.core.layers`).

Coordinates follow the pixel-index convention (input pixel ``i`` is the point ``i``); a
rule's windows are inclusive ``[lo, hi]`` input indices.  These classes live apart from the
window layers so that networks without them, and the command line's start, do not build
them; :mod:`rfmap.core.axis` and :mod:`rfmap.core.layers` import them on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Any

import numpy as np

from rfmap.core.axis import AxisMap, Window
from rfmap.core.layers import Layer, _check_out, _op_name, _set, _sides
from rfmap.core.params import boolean, fraction, ints, padding, per_axis
from rfmap.errors import RFMapError

# -- per-axis rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Transposed(AxisMap):
    """Transposed convolution: input ``i`` feeds output ``i*s - pad_left + d*t``."""

    monotone = True

    n_in: int
    n_out: int
    kernel: int
    stride_: int
    dilation: int
    pad_left: int

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.stride_

    @property
    def shift(self) -> int:  # type: ignore[override]
        return 1

    @property
    def width(self) -> int:
        return self.kernel

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num = (o + self.pad_left)[:, None] - self.dilation * np.arange(self.kernel)
        return np.floor_divide(num, self.stride_), np.mod(num, self.stride_) == 0


@dataclass(frozen=True)
class Resample(AxisMap):
    """Upsampling or downsampling by interpolation, with PyTorch's ``F.interpolate`` rules.

    ``ratio = p/q`` is input cells per output cell (``1/scale_factor``, or ``n_in/n_out``);
    it is exact here, where PyTorch computes it in floating point (see docs/semantics).
    ``mode`` is ``nearest``, ``nearest-exact``, ``linear`` or ``cubic``.  With
    ``align_corners`` the ratio is ``(n_in-1)/(n_out-1)``.
    """

    monotone = True

    n_in: int
    n_out: int
    mode: str
    ratio: Fraction
    align_corners: bool = False

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.ratio.denominator if self.ratio else 1

    @property
    def shift(self) -> int:  # type: ignore[override]
        return self.ratio.numerator

    @property
    def width(self) -> int:
        return {"linear": 2, "cubic": 4}.get(self.mode, 1)

    def _source(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinate ``num/den`` of output ``o`` (exact), unclamped."""
        p, q = self.ratio.numerator, self.ratio.denominator
        if self.mode == "nearest":
            return o * p, np.full_like(o, q)
        if self.align_corners:
            return o * p, np.full_like(o, q)
        # half-pixel: (o + 0.5) * p/q - 0.5
        return (2 * o + 1) * p - q, np.full_like(o, 2 * q)

    def _floor_frac(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        num, den = self._source(o)
        if self.mode == "nearest-exact":
            num, den = (2 * o + 1) * self.ratio.numerator, np.full_like(o, 2 * self.ratio.denominator)
        return np.floor_divide(num, den), np.mod(num, den) != 0, num, den

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i0, frac, _, _ = self._floor_frac(o)
        if self.mode in ("nearest", "nearest-exact"):
            return i0[:, None], np.ones((o.size, 1), dtype=bool)
        if self.mode == "linear":
            idx = i0[:, None] + np.arange(2)
            valid = np.stack([np.ones_like(frac), frac], axis=1)
            return idx, valid
        # cubic: four taps around the source, one when it falls on a pixel
        idx = i0[:, None] + np.arange(-1, 3)
        valid = np.stack([frac, np.ones_like(frac), frac, frac], axis=1)
        return idx, valid

    def taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_in
        if self.mode in ("nearest", "nearest-exact"):
            i0, _, _, _ = self._floor_frac(o)
            return np.minimum(i0, n - 1)[:, None], np.ones((o.size, 1), dtype=bool)
        if self.mode == "linear":
            i0, frac, num, _ = self._floor_frac(o)
            # PyTorch clamps a negative source coordinate to 0 (align_corners=False)
            negative = num < 0
            i0 = np.where(negative, 0, i0)
            frac = frac & ~negative
            i1 = np.minimum(i0 + 1, n - 1)
            return np.stack([np.minimum(i0, n - 1), i1], axis=1), np.stack(
                [np.ones_like(frac), frac & (i1 != i0)], axis=1
            )
        idx, valid = self.virtual_taps(o)
        return np.clip(idx, 0, n - 1), valid


@dataclass(frozen=True)
class Shuffle(AxisMap):
    """Pixel shuffle by ``r``: output ``o`` comes from input ``o // r``."""

    monotone = True

    n_in: int
    n_out: int
    factor: int

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.factor

    @property
    def shift(self) -> int:  # type: ignore[override]
        return 1

    @property
    def width(self) -> int:
        return 1

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.floor_divide(o, self.factor)[:, None], np.ones((o.size, 1), dtype=bool)


# -- layers ---------------------------------------------------------------------------------


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
