"""Exact receptive-field boxes of every cell of a map, in O(period) storage.

For one path family with effective stride (jump) ``J`` the theoretical box of cell ``i``
is periodic: ``box(i + T) = box(i) + T*J`` with ``T*J`` an integer.  Plain
convolutional chains have ``T = 1`` (``box(i) = [-P + i*J, -P + i*J + r - 1]``);
upsampling by ``p/q`` and transposed convolution by ``s`` make ``T > 1``.  Storing the
boxes of cells ``0..T-1`` gives the box of any cell, also of virtual cells outside the map,
which is what the next layer's window reads when it reaches into padding.

Coordinates: pixel-index convention (input pixel ``i`` is the point ``i``); boxes are
inclusive ``[lo, hi]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd, lcm

import numpy as np

from rfmap.core.axis import BIG, AxisMap, Identity, Window
from rfmap.core.budget import check_period, check_work, chunk


@dataclass(frozen=True)
class Boxes:
    """Boxes ``[lo(i), hi(i)]`` of the cells of one map along one axis, for one jump."""

    period: int
    jump: Fraction
    lo: np.ndarray  # boxes of cells 0..period-1
    hi: np.ndarray
    #: input pixels the box moves when the cell index moves by one period (``period * jump``)
    step: int = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.step is None:
            step = self.period * self.jump
            assert step.denominator == 1, "a period must move the box by whole pixels"
            object.__setattr__(self, "step", int(step))

    def at(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.period == 1:
            move = i * self.step
            return self.lo[0] + move, self.hi[0] + move
        q, r = np.divmod(i, self.period)
        move = q * self.step
        return self.lo[r] + move, self.hi[r] + move

    @classmethod
    def identity(cls) -> "Boxes":
        zero = np.zeros(1, dtype=np.int64)
        return cls(1, Fraction(1), zero, zero)

    def is_monotone(self) -> bool:
        """``lo`` and ``hi`` never decrease from a cell to the next.  True unless a
        transposed convolution's dilation interleaves its taps (kernel 2, stride 2,
        dilation 3: output 1 reads input -1, output 2 reads input 1)."""
        if self.period == 1:
            return self.step >= 0
        lo, hi = self.at(np.arange(self.period + 1, dtype=np.int64))
        return bool((np.diff(lo) >= 0).all() and (np.diff(hi) >= 0).all())

    def through(self, rule: AxisMap) -> "Boxes":
        """The boxes of the output cells of ``rule`` applied to this map.

        The box of an output cell is the hull of the boxes of its (virtual) taps: over
        monotone boxes ``[lo(first tap), hi(last tap)]``, otherwise over every tap.
        """
        if self.period == 1 and type(rule) in (Window, Identity):
            # the common case in plain Python: box(0) of a window over a shift-invariant map
            if type(rule) is Window:
                w_lo, shift = -rule.pad_left, rule.stride_
                w_hi = w_lo + rule.dilation * (rule.kernel - 1)
            else:
                w_lo = w_hi = 0
                shift = 1
            lo = np.array([int(self.lo[0]) + w_lo * self.step], dtype=np.int64)
            hi = np.array([int(self.hi[0]) + w_hi * self.step], dtype=np.int64)
            return Boxes(1, self.jump * shift, lo, hi, self.step * shift)
        shift = rule.shift
        period = check_period(rule.period * self.period // gcd(self.period, shift), "the layer")
        o = np.arange(period, dtype=np.int64)
        if self.is_monotone():
            w_lo, w_hi = rule.window(o)
            lo, _ = self.at(w_lo)
            _, hi = self.at(w_hi)
        else:  # the hull over every tap, in chunks of bounded memory
            width = rule.width
            check_work(period, width, "the layer's boxes")
            step = chunk(width)
            los, his = [], []
            for a in range(0, period, step):
                idx, valid = rule.virtual_taps(o[a : a + step])
                t_lo, t_hi = self.at(idx)
                los.append(np.where(valid, t_lo, BIG).min(axis=1))
                his.append(np.where(valid, t_hi, -BIG).max(axis=1))
            lo, hi = np.concatenate(los), np.concatenate(his)
        return Boxes(period, self.jump * rule.stride, lo, hi)

    def union(self, other: "Boxes") -> "Boxes":
        """Hull of two box layouts with the same jump."""
        period = check_period(lcm(self.period, other.period), "merging these paths")
        o = np.arange(period, dtype=np.int64)
        a_lo, a_hi = self.at(o)
        b_lo, b_hi = other.at(o)
        return Boxes(period, self.jump, np.minimum(a_lo, b_lo), np.maximum(a_hi, b_hi))

    def is_shift_invariant(self, n: int) -> bool:
        """``box(i) = box(0) + i*J`` for every real cell."""
        if self.period == 1:
            return True
        if self.jump.denominator != 1:
            return n == 1
        m = min(self.period, n)
        expected = self.lo[0] + np.arange(m) * int(self.jump)
        return bool(np.array_equal(self.lo[:m], expected) and np.array_equal(self.hi[:m], expected + self.hi[0] - self.lo[0]))


def combine(families: list[Boxes]) -> list[Boxes]:
    """Merge path families: equal jumps fold into one layout, others stay apart."""
    if len(families) == 1:
        return families
    by_jump: dict[Fraction, Boxes] = {}
    for fam in families:
        prev = by_jump.get(fam.jump)
        by_jump[fam.jump] = fam if prev is None else prev.union(fam)
    return list(by_jump.values())


def hull_at(families: list[Boxes], i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box of cells ``i``: the hull over all path families."""
    lo, hi = families[0].at(i)
    for fam in families[1:]:
        f_lo, f_hi = fam.at(i)
        lo, hi = np.minimum(lo, f_lo), np.maximum(hi, f_hi)
    return lo, hi


def max_size(families: list[Boxes], n: int) -> int:
    """Largest box over the real cells ``0..n-1``; O(period) for one family.

    Several families: on each residue class modulo the common period ``P`` every family's
    ``lo`` and ``hi`` are affine in the cell index, so the hull's size (a max of affine
    functions minus a min of affine functions) is convex there and largest at one end of
    the class: the first and the last ``P`` cells hold the maximum, whatever ``n``.
    """
    if len(families) == 1:
        m = min(families[0].period, n)
        return int((families[0].hi[:m] - families[0].lo[:m]).max()) + 1
    period = 1
    for fam in families:
        period = check_period(lcm(period, fam.period), "merging these paths")
    if n <= 2 * period:
        cells = np.arange(n, dtype=np.int64)
    else:
        cells = np.concatenate([np.arange(period, dtype=np.int64), np.arange(n - period, n, dtype=np.int64)])
    lo, hi = hull_at(families, cells)
    return int((hi - lo).max()) + 1
