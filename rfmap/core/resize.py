"""ONNX ``Resize`` (and ``Upsample``) exactly as onnxruntime's CPU kernel computes it.

onnxruntime computes source coordinates in float32, in its own order of operations, so its
taps are not a closed form in exact numbers: each axis resolves to a
:class:`~rfmap.core.axis.Tabulated` rule, explicit taps per output cell, and ties round as
onnxruntime rounds them.  Coordinates: pixel-index convention (cell ``i`` is the point ``i``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from rfmap.core.axis import AxisMap, Identity, Tabulated
from rfmap.core.budget import check_cells
from rfmap.core.layers import Layer, _check_out, _op_name, _set
from rfmap.core.params import boolean, integer, per_axis
from rfmap.errors import RFMapError

_F = np.float32


def onnx_source(o: np.ndarray, ctm: str, scale: float, n_in: int, n_out: int) -> np.ndarray:
    """Source coordinate (float32) of output cells ``o`` under ``coordinate_transformation_mode``
    ``ctm``, in onnxruntime's arithmetic; ``scale`` is the float32 scale of the axis."""
    x = o.astype(_F)
    s: np.float32 = _F(scale)
    half: np.float32 = _F(0.5)
    if ctm == "asymmetric":
        return x / s
    if ctm == "half_pixel":
        return (x + half) / s - half
    if ctm == "pytorch_half_pixel":
        return (x + half) / s - half if n_out > 1 else np.zeros_like(x)
    if ctm == "tf_half_pixel_for_nn":
        return (x + half) / s
    if ctm == "align_corners":
        return x * _F(n_in - 1) / _F(n_out - 1) if n_out > 1 else np.zeros_like(x)
    if ctm == "half_pixel_symmetric":
        # float32 for the offset, then double for the rest (onnxruntime mixes the two)
        adjustment: np.float32 = _F(n_out) / (s * _F(n_in))
        offset: np.float32 = (_F(n_in) / _F(2)) * (_F(1) - adjustment)
        return (offset.astype(np.float64) + (x.astype(np.float64) + 0.5) / s.astype(np.float64) - 0.5).astype(_F)
    raise ValueError(f"coordinate_transformation_mode {ctm!r}")


def _round_half_away(x: np.ndarray) -> np.ndarray:
    t = np.trunc(x)
    rounded: np.ndarray = t + np.sign(x) * (np.abs(x - t) >= _F(0.5))
    return rounded


def onnx_nearest(x: np.ndarray, nearest_mode: str, downsample: bool) -> np.ndarray:
    """The input cell (unclamped) a float32 source coordinate rounds to under ``nearest_mode``
    (``simple``: Resize-10 and Upsample -- ceil when downsampling, else truncation)."""
    r: np.ndarray
    if nearest_mode == "simple":
        r = np.ceil(x) if downsample else np.trunc(x)
    elif nearest_mode == "floor":
        r = np.floor(x)
    elif nearest_mode == "ceil":
        r = np.ceil(x)
    elif nearest_mode == "round_prefer_ceil":
        r = _round_half_away(x)
    elif nearest_mode == "round_prefer_floor":
        tie = x == np.trunc(x) + _F(0.5)
        r = np.where(tie, np.floor(x), _round_half_away(x))
    else:
        raise ValueError(f"nearest_mode {nearest_mode!r}")
    return r.astype(np.int64)


def cubic_coefficients(s: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic weights of the taps ``-1, 0, 1, 2`` for fractions ``s`` (float32, as onnxruntime)."""
    c: np.float32 = _F(a)
    one: np.float32 = _F(1)
    two: np.float32 = _F(2)
    s = np.abs(s.astype(_F))
    t0, t2, t3 = s + one, one - s, two - s
    return np.stack([
        ((c * t0 - _F(5) * c) * t0 + _F(8) * c) * t0 - _F(4) * c,
        ((c + two) * s - (c + _F(3))) * s * s + one,
        ((c + two) * t2 - (c + _F(3))) * t2 * t2 + one,
        ((c * t3 - _F(5) * c) * t3 + _F(8) * c) * t3 - _F(4) * c,
    ], axis=1)


def onnx_resize_axis(n_in: int, n_out: int, scale: float, mode: str, ctm: str, nearest_mode: str,
                     cubic_coeff_a: float = -0.75, exclude_outside: bool = False,
                     candidates: Iterable[Fraction | int | float] = ()) -> AxisMap:
    """One axis of ONNX ``Resize`` as onnxruntime's CPU kernel computes it.

    ``scale`` is the axis' float32 scale (given, or ``n_out/n_in`` from ``sizes``); an axis
    with scale 1 reads cell ``o`` at coordinate ``o`` (a copy, except that cubic weights
    computed in float32 may leave a residue on the neighbours, e.g. ``cubic_coeff_a=-0.6``).  ``mode``: ``nearest`` (the source coordinate rounded by
    ``nearest_mode``, clamped to the input), ``linear`` (the coordinate clamped to
    ``[0, n_in-1]``, its two neighbours), ``cubic`` (four taps ``floor-1..floor+2`` with
    Keys' weights, ``cubic_coeff_a``; outside taps read the border cell, or get weight 0 with
    ``exclude_outside``).  The theoretical taps are the unclamped ones.
    """
    unit = _F(scale) == _F(1)  # the kernels read cell o at coordinate o
    if unit and mode != "cubic":
        return Identity(n_in, n_out)
    check_cells(n_out, "ONNX Resize (its taps tabulated cell by cell)")
    o = np.arange(n_out, dtype=np.int64)
    x = o.astype(_F) if unit else onnx_source(o, ctm, scale, n_in, n_out)
    ones = np.ones((n_out, 1))
    if mode == "nearest":
        i = onnx_nearest(x, nearest_mode, _F(scale) < _F(1))[:, None]
        idx, valid, real, weight = i, ones.astype(bool), np.clip(i, 0, n_in - 1), ones
    elif mode == "linear":
        i0 = np.floor(x).astype(np.int64)
        idx = i0[:, None] + np.arange(2)
        valid = np.stack([np.ones(n_out, bool), x != i0], axis=1)
        xc = np.maximum(_F(0), np.minimum(x, _F(n_in - 1)))
        i1 = np.minimum(np.trunc(xc).astype(np.int64), n_in - 1)
        i2 = np.minimum(i1 + 1, n_in - 1)
        same = i1 == i2
        weight = np.stack([np.where(same, 0.5, np.abs(xc - i2)), np.where(same, 0.5, np.abs(xc - i1))], axis=1)
        real = np.stack([i1, i2], axis=1)
    elif mode == "cubic":
        i0 = np.floor(x).astype(np.int64)
        coeff = cubic_coefficients(x - np.floor(x), cubic_coeff_a)
        idx = i0[:, None] + np.arange(-1, 3)
        valid = coeff != 0
        if exclude_outside:
            coeff = np.where((idx >= 0) & (idx < n_in), coeff, _F(0))
            coeff = coeff / coeff.sum(axis=1, dtype=_F)[:, None]
        real, weight = np.clip(idx, 0, n_in - 1), coeff
    else:
        raise ValueError(f"mode {mode!r}")
    return Tabulated(n_in, n_out, idx, valid, real, weight, candidates)


#: ONNX Resize's attribute values (``simple``: the nearest rounding of Resize-10 and Upsample)
RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                    "half_pixel_symmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise RFMapError(f"{what} {value!r:.60} is not one of {', '.join(allowed)}")
    return str(value)


def _float32(value: Any, what: str, positive: bool = True) -> float:
    """A finite (positive) number, as the float32 onnxruntime computes with."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RFMapError(f"{what} must be a number, got {value!r:.60}")
    f = float(np.float32(value))
    if not np.isfinite(f) or (positive and f <= 0):
        raise RFMapError(f"{what} must be {'positive and ' if positive else ''}finite, got {value!r:.60}")
    return f


@dataclass(frozen=True)
class Resize(Layer):
    """ONNX ``Resize`` (and ``Upsample``) exactly as onnxruntime's CPU kernel computes it.

    Per axis: ``scales`` (float32; ``n_out = floor(scale * n)`` in float32) or ``sizes``
    (``None``: the axis keeps its size; the scale is ``n_out / n`` in float32, adjusted by
    ``keep_aspect_ratio_policy`` over the sized axes and ``policy_ratios``, the ratios of the
    other dims the policy reads).  ``mode``, ``coordinate_transformation_mode``,
    ``nearest_mode``, ``cubic_coeff_a`` and ``exclude_outside`` are the node's attributes
    (``tf_crop_and_resize`` is not modelled).  When no dim changes size
    (``copy_unchanged``: the non-spatial dims keep theirs) the op copies its input.  Each
    axis resolves to a :class:`~rfmap.core.axis.Tabulated` rule: explicit taps per output
    cell from onnxruntime's float32 arithmetic, so ties round as onnxruntime rounds them.
    """

    scales: Any = None
    sizes: Any = None
    mode: str = "nearest"
    coordinate_transformation_mode: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"
    cubic_coeff_a: float = -0.75
    exclude_outside: bool = False
    keep_aspect_ratio_policy: str = "stretch"
    policy_ratios: Any = ()
    copy_unchanged: bool = True
    op: str = "resize"

    def __post_init__(self) -> None:
        if (self.scales is None) == (self.sizes is None):
            raise RFMapError("give exactly one of scales and sizes")
        scales = self.scales
        if scales is not None:
            scales = tuple(_float32(v, "scales") for v in scales) if isinstance(scales, (list, tuple)) else _float32(scales, "scales")
        sizes = self.sizes
        if sizes is not None:
            sizes = tuple(None if v is None else integer(v, "sizes", 1) for v in (sizes if isinstance(sizes, (list, tuple)) else (sizes,)))
        exclude = boolean(self.exclude_outside, "exclude_outside")
        mode = _choice(self.mode, RESIZE_MODES, "mode")
        if exclude and mode != "cubic":
            raise RFMapError("exclude_outside applies to cubic mode only")
        _set(
            self,
            scales=scales,
            sizes=sizes,
            mode=mode,
            coordinate_transformation_mode=_choice(self.coordinate_transformation_mode, COORDINATE_MODES,
                                                   "coordinate_transformation_mode"),
            nearest_mode=_choice(self.nearest_mode, NEAREST_MODES, "nearest_mode"),
            cubic_coeff_a=_float32(self.cubic_coeff_a, "cubic_coeff_a", positive=False),
            exclude_outside=exclude,
            keep_aspect_ratio_policy=_choice(self.keep_aspect_ratio_policy, ASPECT_POLICIES, "keep_aspect_ratio_policy"),
            policy_ratios=tuple(_float32(v, "policy_ratios") for v in self.policy_ratios),
            copy_unchanged=boolean(self.copy_unchanged, "copy_unchanged"),
            op=_op_name(self.op),
        )

    def out_scales(self, sizes: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Output sizes and float32 scales per axis for an input of ``sizes`` (onnxruntime's rules)."""
        f32 = np.float32
        ndim = len(sizes)
        if self.sizes is None:
            scales = [float(f32(s)) for s in per_axis(self.scales, ndim, "scales")]
            return tuple(int(f32(s) * f32(n)) for s, n in zip(scales, sizes)), tuple(scales)
        wanted = per_axis(self.sizes, ndim, "sizes")
        outs = [n if m is None else m for n, m in zip(sizes, wanted)]
        scales = [float(f32(m) / f32(n)) for m, n in zip(outs, sizes)]
        if self.keep_aspect_ratio_policy != "stretch":
            pick = min if self.keep_aspect_ratio_policy == "not_larger" else max
            ratio = pick([s for s, m in zip(scales, wanted) if m is not None] + list(self.policy_ratios))
            for a, (n, m) in enumerate(zip(sizes, wanted)):
                if m is not None:
                    scales[a] = ratio
                    product = f32(ratio) * f32(n)
                    outs[a] = int(np.trunc(product) + np.sign(product) * (abs(product - np.trunc(product)) >= 0.5))
        return tuple(outs), tuple(scales)

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        outs, scales = self.out_scales(sizes)
        for n, m in zip(sizes, outs):
            _check_out(m, n, f"resize to {list(outs)}")
        if self.copy_unchanged and tuple(outs) == tuple(sizes):
            return tuple(Identity(n, n) for n in sizes)
        ctm = self.coordinate_transformation_mode
        maps: list[AxisMap] = []
        for n, m, s in zip(sizes, outs, scales):
            nominal = Fraction(n - 1, m - 1) if ctm == "align_corners" and m > 1 else Fraction(1 / s).limit_denominator(m)
            maps.append(onnx_resize_axis(n, m, s, self.mode, ctm, self.nearest_mode, self.cubic_coeff_a,
                                         self.exclude_outside, (nominal, Fraction(n, m))))
        return tuple(maps)
