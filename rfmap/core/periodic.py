"""Exact receptive-field boxes of every cell of a map, in O(period) storage (or O(map size)).

For one path family with effective stride (jump) ``J`` the theoretical box of cell ``i``
is periodic: ``box(i + T) = box(i) + T*J`` with ``T*J`` an integer.  Plain
convolutional chains have ``T = 1`` (``box(i) = [-P + i*J, -P + i*J + r - 1]``);
upsampling by ``p/q`` and transposed convolution by ``s`` make ``T > 1``.  Storing the
boxes of cells ``0..T-1`` gives the box of any cell, also of virtual cells outside the map,
which is what the next layer's window reads when it reaches into padding.

Periods can multiply from layer to layer (pooling, then resizing back to an odd size, as in
GhostNetV2's gates: periods 29, 841, 24389, ...).  Where a period would exceed the range of
cells anyone can ask about -- the map's real cells and the virtual cells that later layers
read through their padding, computed beforehand by the analysis -- the boxes are kept
explicitly for that range (:class:`Explicit`), which is exact there and costs O(map size).

Coordinates: pixel-index convention (input pixel ``i`` is the point ``i``); boxes are
inclusive ``[lo, hi]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd, lcm

import numpy as np

from rfmap.core.axis import BIG, AxisMap, Global, Identity, Window
from rfmap.core.budget import check_cells, check_period, check_work, chunk
from rfmap.errors import RFMapError

#: cells ``[lo, hi)`` of a map whose boxes will be asked for (real cells and the virtual
#: cells later layers read through their padding)
Range = tuple[int, int]

#: periods up to this length stay periodic even on a smaller range (cheap either way)
SMALL = 64


def exact(value: Fraction | int) -> Fraction | int:
    """A jump as an int where it is whole (cheaper arithmetic; equal and hashing alike), else
    the Fraction."""
    return int(value) if value.denominator == 1 else value


#: rules whose window over a period-1 map :meth:`Boxes.through` computes in plain Python
_PLAIN_RULES = (Window, Identity, Global)


@dataclass(frozen=True)
class Boxes:
    """Boxes ``[lo(i), hi(i)]`` of the cells of one map along one axis, for one jump (an int
    where it is whole, else a Fraction: the two compare and hash alike)."""

    period: int
    jump: Fraction | int
    lo: np.ndarray  # boxes of cells 0..period-1
    hi: np.ndarray
    #: input pixels the box moves when the cell index moves by one period (``period * jump``)
    step: int = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
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
    def identity(cls) -> Boxes:
        zero = np.zeros(1, dtype=np.int64)
        return cls(1, 1, zero, zero)

    def is_monotone(self) -> bool:
        """``lo`` and ``hi`` never decrease from a cell to the next.  True unless a
        transposed convolution's dilation interleaves its taps (kernel 2, stride 2,
        dilation 3: output 1 reads input -1, output 2 reads input 1)."""
        if self.period == 1:
            return self.step >= 0
        lo, hi = self.at(np.arange(self.period + 1, dtype=np.int64))
        return bool((np.diff(lo) >= 0).all() and (np.diff(hi) >= 0).all())

    def through(self, rule: AxisMap, need: Range | None = None) -> Family:
        """The boxes of the output cells of ``rule`` applied to this map.

        The box of an output cell is the hull of the boxes of its (virtual) taps: over
        monotone boxes ``[lo(first tap), hi(last tap)]``, otherwise over every tap.
        ``need``: the output cells anyone will ask about; where the period would be longer
        than that range, the boxes are kept for that range only (:class:`Explicit`).
        """
        kind = type(rule)
        if self.period == 1 and kind in _PLAIN_RULES:
            if self.step == 0:  # every cell sees the same box (a global path): so do the taps' hulls
                return self
            # the common cases in plain Python: box(0) of a window (a whole map, a cell) over a
            # shift-invariant map (period 1: its boxes move by step >= 0 from cell to cell)
            if type(rule) is Window:  # not kind: type checkers narrow rule on type(rule)
                w_lo, shift = -rule.pad_left, rule.stride_
                w_hi = w_lo + rule.dilation * (rule.kernel - 1)
            elif kind is Global:
                w_lo, w_hi, shift = 0, rule.n_in - 1, 0
            else:
                w_lo = w_hi = 0
                shift = 1
            lo = np.array([int(self.lo[0]) + w_lo * self.step], dtype=np.int64)
            hi = np.array([int(self.hi[0]) + w_hi * self.step], dtype=np.int64)
            return Boxes(1, self.jump * shift, lo, hi, self.step * shift)
        shift = rule.shift
        period = rule.period * self.period // gcd(self.period, shift)
        if need is not None and period > max(need[1] - need[0], SMALL):
            return _explicit_through(self, rule, need)
        check_period(period, "the layer")
        return _periodic_through(self, rule, period)

    def union(self, other: Family, need: Range | None = None) -> Family:
        """Hull of two box layouts with the same jump."""
        if isinstance(other, Explicit):
            return other.union(self, need)
        if self.period == 1 and other.period == 1:  # both move by the same step: hull of box(0)
            lo = min(int(self.lo[0]), int(other.lo[0]))
            hi = max(int(self.hi[0]), int(other.hi[0]))
            return Boxes(1, self.jump, np.array([lo], dtype=np.int64), np.array([hi], dtype=np.int64), self.step)
        period = lcm(self.period, other.period)
        if need is not None and period > max(need[1] - need[0], SMALL):
            return Explicit.of(self, need).union(other, need)
        check_period(period, "merging these paths")
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


def combine(families: list[Family], need: Range | None = None) -> list[Family]:
    """Merge path families: equal jumps fold into one layout, others stay apart -- except
    explicit ones, which fold into one (its jump the largest), so that their number stays
    bounded whatever the periods do."""
    if len(families) == 1:
        return families
    by_jump: dict[Fraction | int, Family] = {}
    for fam in families:
        prev = by_jump.get(fam.jump)
        by_jump[fam.jump] = fam if prev is None else prev.union(fam, need)
    out = list(by_jump.values())
    explicit = [f for f in out if isinstance(f, Explicit) and f.jump != 0]
    if len(explicit) > 1:
        folded = explicit[0]
        for f in explicit[1:]:
            folded = folded.union(f, need)
        out = [f for f in out if not (isinstance(f, Explicit) and f.jump != 0)] + [folded]
    return out


def hull_at(families: list[Family], i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box of cells ``i``: the hull over all path families."""
    lo, hi = families[0].at(i)
    for fam in families[1:]:
        f_lo, f_hi = fam.at(i)
        lo, hi = np.minimum(lo, f_lo), np.maximum(hi, f_hi)
    return lo, hi


def max_size(families: list[Family], n: int) -> int:
    """Largest box over the real cells ``0..n-1``; O(period) for periodic families.

    Several periodic families: on each residue class modulo their common period ``P`` every
    family's ``lo`` and ``hi`` are affine in the cell index, so the hull's size (a max of
    affine functions minus a min of affine functions) is convex there and largest at one end
    of the class: the first and the last ``P`` cells hold the maximum, whatever ``n``.
    """
    if len(families) == 1 and isinstance(families[0], Boxes):
        m = min(families[0].period, n)
        return int((families[0].hi[:m] - families[0].lo[:m]).max()) + 1
    cells = None
    if all(isinstance(f, Boxes) for f in families):
        period = 1
        for fam in families:
            period = lcm(period, fam.period)
        if 2 * period < n:
            check_period(period, "merging these paths")
            cells = np.concatenate([np.arange(period, dtype=np.int64), np.arange(n - period, n, dtype=np.int64)])
    if cells is None:
        check_cells(n, "the largest receptive field of a map")
        cells = np.arange(n, dtype=np.int64)
    lo, hi = hull_at(families, cells)
    return int((hi - lo).max()) + 1


@dataclass(frozen=True)
class Explicit:
    """Boxes of the cells ``start .. start + len(lo) - 1`` of a map, one by one.

    Used where a periodic layout's period would be longer than the range of cells asked
    about; exact on that range (the analysis computes it so that every later layer's
    windows stay inside it).  Same interface as :class:`Boxes`.
    """

    start: int
    jump: Fraction | int
    lo: np.ndarray
    hi: np.ndarray

    @property
    def period(self) -> int:
        return int(self.lo.size)

    @classmethod
    def of(cls, family: Family, need: Range) -> Explicit:
        if isinstance(family, Explicit):
            return family
        check_cells(need[1] - need[0], "a map whose receptive fields repeat only over a long period")
        lo, hi = family.at(np.arange(need[0], need[1], dtype=np.int64))
        return cls(need[0], family.jump, lo, hi)

    def at(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.asarray(i, dtype=np.int64) - self.start
        if k.size and (int(k.min()) < 0 or int(k.max()) >= self.lo.size):
            raise RFMapError(
                f"internal error: cells {int(k.min()) + self.start}..{int(k.max()) + self.start} asked of a layout "
                f"kept for cells {self.start}..{self.start + self.lo.size - 1}"
            )
        return self.lo[k], self.hi[k]

    def is_monotone(self) -> bool:
        return bool((np.diff(self.lo) >= 0).all() and (np.diff(self.hi) >= 0).all())

    def through(self, rule: AxisMap, need: Range | None = None) -> Family:
        if rule.shift == 0:  # every output cell reads the same window: one box for all
            return _periodic_through(self, rule, 1)
        assert need is not None, "an explicit layout needs the range of cells to compute"
        return _explicit_through(self, rule, need)

    def union(self, other: Family, need: Range | None = None) -> Explicit:
        assert need is not None, "an explicit layout needs the range of cells to compute"
        o = np.arange(need[0], need[1], dtype=np.int64)
        a_lo, a_hi = self.at(o)
        b_lo, b_hi = other.at(o)
        return Explicit(need[0], max(self.jump, other.jump), np.minimum(a_lo, b_lo), np.maximum(a_hi, b_hi))

    def is_shift_invariant(self, n: int) -> bool:
        if self.jump.denominator != 1:
            return n == 1
        lo, hi = self.at(np.arange(n, dtype=np.int64))
        expected = lo[0] + np.arange(n) * int(self.jump)
        return bool(np.array_equal(lo, expected) and np.array_equal(hi - lo, np.full(n, hi[0] - lo[0])))


#: a path family's boxes: periodic, or explicit on a range
Family = Boxes | Explicit


def _hull_of_taps(family: Family, rule: AxisMap, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hull of the boxes every tap of cells ``o`` reads; over every tap (in chunks of bounded
    memory) unless the family's boxes grow with the cell, where the window's ends suffice."""
    if family.is_monotone():
        w_lo, w_hi = rule.window(o)
        return family.at(w_lo)[0], family.at(w_hi)[1]
    width = rule.width
    check_work(o.size, width, "the layer's boxes")
    step = chunk(width)
    los, his = [], []
    for a in range(0, o.size, step):
        idx, valid = rule.virtual_taps(o[a : a + step])
        t_lo, t_hi = family.at(idx)
        los.append(np.where(valid, t_lo, BIG).min(axis=1))
        his.append(np.where(valid, t_hi, -BIG).max(axis=1))
    if len(los) == 1:
        return los[0], his[0]
    return np.concatenate(los), np.concatenate(his)


def _periodic_through(family: Family, rule: AxisMap, period: int) -> Boxes:
    lo, hi = _hull_of_taps(family, rule, np.arange(period, dtype=np.int64))
    return Boxes(period, exact(family.jump * rule.stride), lo, hi)


def _explicit_through(family: Family, rule: AxisMap, need: Range) -> Explicit:
    check_cells(need[1] - need[0], "a map whose receptive fields repeat only over a long period")
    lo, hi = _hull_of_taps(family, rule, np.arange(need[0], need[1], dtype=np.int64))
    return Explicit(need[0], exact(family.jump * rule.stride), lo, hi)
