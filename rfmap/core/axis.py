"""Per-axis rules: how one layer connects output cells to input cells along one axis.

Coordinate convention (pixel-index, as in Araujo et al., "Computing Receptive Fields of
CNNs", Distill 2019): cells of a map are indexed ``0..n-1`` and cell ``i`` is the point ``i``.

Every rule is resolved for a known input size ``n_in`` and answers two questions:

* :meth:`AxisMap.window` -- the *theoretical* window: for output cells ``o`` (any integers,
  also outside ``0..n_out-1``), the first and last input index with a non-zero weight,
  computed as if the input extended forever (so it may reach into padding, index < 0 or
  >= n_in).  Windows are monotone in ``o``.
* :meth:`AxisMap.taps` -- the *real* taps: the input indices ``0..n_in-1`` that influence
  each output cell, after the layer's own border handling (zero padding drops positions,
  replicate/reflect padding and interpolation clamp them).  The support of a cell is
  built from these.

A rule is also periodic: ``window(o + period) == window(o) + shift``.  ``shift/period`` is
the layer's stride in input cells per output cell (a fraction after upsampling).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only
    import numpy.typing as npt

from rfmap._lazy import lazy_attributes
from rfmap.core.budget import check_cells, check_work, chunk

BIG = np.iinfo(np.int64).max // 4


def _window_from_taps(idx: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.where(valid, idx, BIG).min(axis=1)
    hi = np.where(valid, idx, -BIG).max(axis=1)
    return lo, hi


class AxisMap:
    """Base class of the per-axis rules (see the module docstring)."""

    n_in: int
    n_out: int
    period: int = 1
    shift: int = 1
    #: windows non-decreasing in ``o`` at both ends (then a range's end cells bound its reach)
    monotone = False
    #: made of plain numbers, so ``==`` is cheap and exact (a tabulated rule holds arrays)
    plain = False

    @property
    def stride(self) -> Fraction:
        """Input cells per output cell."""
        return Fraction(self.shift, self.period)

    @property
    def width(self) -> int:
        """Taps per output cell (columns of :meth:`virtual_taps`), known without evaluating
        them, so that a budget can be checked first (:mod:`rfmap.core.budget`)."""
        return int(self.virtual_taps(np.zeros(1, dtype=np.int64))[0].shape[1])

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unclipped taps ``(idx[len(o), K], valid[len(o), K])`` with non-zero weight."""
        raise NotImplementedError

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last input index (unclipped) seen by each output cell in ``o``."""
        width = self.width
        check_work(o.size, width, "its windows")
        step = chunk(width)
        if o.size <= step:
            return _window_from_taps(*self.virtual_taps(o))
        parts = [_window_from_taps(*self.virtual_taps(o[a : a + step])) for a in range(0, o.size, step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Real input indices (in ``0..n_in-1``) that influence each output cell in ``o``."""
        idx, valid = self.virtual_taps(o)
        return idx, valid & (idx >= 0) & (idx < self.n_in)

    def reach(self, lo: int, hi: int) -> tuple[int, int]:
        """The input cells ``[a, b)`` (unclipped) that the windows of output cells ``[lo, hi)``
        touch.  Windows repeat with the period, shifted by ``shift >= 0``, so the first and the
        last period of the range bound them: O(period)."""
        if self.monotone:  # the range's end cells bound it: O(1)
            ends = np.array([lo, hi - 1], dtype=np.int64)
            w_lo, w_hi = self.window(ends)
            return int(w_lo[0]), int(w_hi[1]) + 1
        p = max(int(self.period), 1)
        check_cells(min(p, hi - lo), "the cells a layer's windows reach")
        first = np.arange(lo, min(hi, lo + p), dtype=np.int64)
        last = np.arange(max(lo, hi - p), hi, dtype=np.int64)
        return int(self.window(first)[0].min()), int(self.window(last)[1].max()) + 1

    def support(self, mask_out: np.ndarray) -> np.ndarray:
        """Input cells that influence any output cell selected by the boolean ``mask_out``."""
        check_cells(self.n_in, "a support")
        o = np.flatnonzero(mask_out)
        mask_in = np.zeros(self.n_in, dtype=bool)
        width = self.width
        check_work(o.size, width, "a support through it")
        step = chunk(width)
        for a in range(0, o.size, step):  # in chunks: memory stays within the budget
            idx, valid = self.taps(o[a : a + step])
            mask_in[idx[valid]] = True
        return mask_in


@dataclass(frozen=True)
class Window(AxisMap):
    """A sliding window: convolution, pooling, padding and cropping (``k = 1``), slicing.

    Output cell ``o`` sees input ``o*s - pad_left + d*t`` for ``t = 0..k-1``.  With
    ``pad_mode="circular"`` positions outside the input wrap around the kept range
    ``wrap = (a, b)`` (default the whole input): PyTorch's ``F.pad`` crops a negative side
    first and then wraps around what is left.
    """

    monotone = True
    plain = True

    n_in: int
    n_out: int
    kernel: int
    stride_: int
    dilation: int
    pad_left: int
    pad_mode: str = "zeros"  # zeros | reflect | replicate | circular
    wrap: tuple[int, int] | None = None  # circular: the input range [a, b) positions wrap around

    @property
    def period(self) -> int:  # type: ignore[override]
        return 1

    @property
    def shift(self) -> int:  # type: ignore[override]
        return self.stride_

    @property
    def width(self) -> int:
        return self.kernel

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = o * self.stride_ - self.pad_left
        return lo, lo + self.dilation * (self.kernel - 1)

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = (o * self.stride_ - self.pad_left)[:, None] + self.dilation * np.arange(self.kernel)
        return idx, np.ones(idx.shape, dtype=bool)

    def taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx, valid = self.virtual_taps(o)
        n = self.n_in
        if self.pad_mode == "zeros":
            return idx, (idx >= 0) & (idx < n)
        if self.pad_mode == "replicate":
            return np.clip(idx, 0, n - 1), valid
        if self.pad_mode == "circular":
            a, b = self.wrap or (0, n)
            return a + np.mod(idx - a, b - a), valid
        # reflect (mirror without repeating the edge), valid while pad < n
        period = 2 * (n - 1) if n > 1 else 1
        m = np.mod(idx, period)
        return np.where(m < n, m, period - m), valid


@dataclass(frozen=True)
class Global(AxisMap):
    """A global op (flatten + linear, global pooling): every output sees the whole input."""

    monotone = True
    plain = True

    n_in: int
    n_out: int

    @property
    def shift(self) -> int:  # type: ignore[override]
        return 0

    @property
    def width(self) -> int:
        return self.n_in

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(o), np.full_like(o, self.n_in - 1)

    def support(self, mask_out: np.ndarray) -> np.ndarray:
        check_cells(self.n_in, "a support")
        return np.full(self.n_in, bool(mask_out.any()))

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.broadcast_to(np.arange(self.n_in), (o.size, self.n_in))
        return idx, np.ones(idx.shape, dtype=bool)


@dataclass(frozen=True)
class Identity(AxisMap):
    """A pointwise op (activation, normalization, 1x1 convolution along this axis)."""

    monotone = True
    plain = True

    n_in: int
    n_out: int

    @property
    def width(self) -> int:
        return 1

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return o, o

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return o[:, None], np.ones((o.size, 1), dtype=bool)


class Tabulated(AxisMap):
    """A rule given by explicit taps for each real output cell (ONNX ``Resize``, whose
    float32 arithmetic is not a closed form in exact numbers).

    ``idx``/``valid`` (``[n_out, K]``): the theoretical taps of cells ``0..n_out-1``, unclamped
    (they may reach outside ``0..n_in-1``); ``real_idx``/``weight``: the input cells that
    influence each cell and their weights after the op's own border handling (taps with
    weight 0 do not influence the cell).  Virtual cells outside ``0..n_out-1`` extend the
    table periodically: ``taps(o + period) = taps(o) + shift``, where ``(period, shift)`` is
    the first of ``candidates`` (fractions ``shift/period``, input cells per output cell) under
    which the table itself is periodic, else ``(n_out, n_in)``.  Storage and construction
    are O(n_out).
    """

    def __init__(self, n_in: int, n_out: int, idx: npt.ArrayLike, valid: npt.ArrayLike, real_idx: npt.ArrayLike,
                 weight: npt.ArrayLike, candidates: Iterable[Fraction | int | float] = ()) -> None:
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.idx = np.asarray(idx, dtype=np.int64)
        self.valid = np.asarray(valid, dtype=bool)
        self.real_idx = np.asarray(real_idx, dtype=np.int64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self._period, self._shift = self._find_period(candidates)

    @property
    def period(self) -> int:  # type: ignore[override]
        return self._period

    @property
    def shift(self) -> int:  # type: ignore[override]
        return self._shift

    def _find_period(self, candidates: Iterable[Fraction | int | float]) -> tuple[int, int]:
        key = np.where(self.valid, self.idx, np.iinfo(np.int64).min)
        for ratio in candidates:
            ratio = Fraction(ratio)
            p, s = ratio.denominator, ratio.numerator
            if p > self.n_out:
                continue
            if p == self.n_out or (
                np.array_equal(self.valid[p:], self.valid[:-p])
                and np.array_equal(np.where(self.valid[p:], self.idx[p:] - s, key[p:]), key[:-p])
            ):
                return p, s
        return self.n_out, self.n_in

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, r = np.divmod(o, self._period)
        return self.idx[r] + (q * self._shift)[:, None], self.valid[r]

    def taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        real = (o >= 0) & (o < self.n_out)
        if real.all():
            return self.real_idx[o], self.weight[o] != 0
        idx, valid = self.virtual_taps(o)
        return idx, valid & (idx >= 0) & (idx < self.n_in)

    def __repr__(self) -> str:
        return f"Tabulated(n_in={self.n_in}, n_out={self.n_out}, period={self._period}, shift={self._shift})"


# -- rules defined in their own modules -------------------------------------------------------

#: imported on first use (PEP 562), like the resampling layers (see :mod:`rfmap.core.layers`)
_ELSEWHERE = {
    **{name: ("rfmap.core.resampling", name) for name in ("Transposed", "Resample", "Shuffle")},
    "Adaptive": ("rfmap.core.adaptive", "Adaptive"),
}

if TYPE_CHECKING:
    from rfmap.core.adaptive import Adaptive as Adaptive
    from rfmap.core.resampling import Resample as Resample
    from rfmap.core.resampling import Shuffle as Shuffle
    from rfmap.core.resampling import Transposed as Transposed

__getattr__ = lazy_attributes(__name__, globals(), _ELSEWHERE)
