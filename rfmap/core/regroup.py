"""Cells that see a group of cells: windows, strided grids, masked regions, space-to-depth.

When a network folds part of a spatial axis into another tensor dim (Swin's windows moved
into the batch dim, the 2x2 blocks of patch merging moved into the channels) and then mixes
that dim (attention, layer norm, a linear layer), every cell sees the cells whose position
differs only in the folded digits: with ``n = m * w`` cells split into ``(outer, inner)``
digits, mixing the inner digit gives contiguous blocks of ``w`` (windows), mixing the outer
one gives the strided grid ``{i mod w + k*w}``.  An additive attention mask (Swin's shifted
windows) splits the groups further.

Both are one per-axis rule, :class:`Grouped`: input cell ``i`` belongs to group
``in_group[i]``; output cell ``o`` sees every input cell of group ``out_group[o]`` (``-1``:
none).  Groups of cells that keep the map (``in_group == out_group``) are a partition;
groups that become the new cells (``out_group = 0..n_out-1``) drop the folded digits, as a
pixel unshuffle does.  Exact, periodic (the smallest period is found, so windows of ``w``
have period ``w``), and O(map size) in time and memory.

Coordinates: pixel-index convention, cells ``0..n-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rfmap.core.axis import AxisMap, Identity
from rfmap.core.layers import Layer
from rfmap.errors import RFMapError


@dataclass(frozen=True, eq=False)
class Grouped(AxisMap):
    """Output cell ``o`` sees the input cells ``i`` with ``in_group[i] == out_group[o]``.

    Periodic with the smallest period ``p`` (dividing ``n_out``) such that output ``o + p``
    sees the cells of ``o`` moved by ``shift = p * n_in / n_out``; beyond the map the groups
    repeat with that period (the virtual cells that padding reads)."""

    n_in: int
    n_out: int
    in_group: np.ndarray
    out_group: np.ndarray
    members: np.ndarray = field(init=False, repr=False)  # [groups, K] padded with -1
    period_: int = field(init=False, repr=False)
    shift_: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        in_group = np.asarray(self.in_group, dtype=np.int64)
        out_group = np.asarray(self.out_group, dtype=np.int64)
        if in_group.shape != (self.n_in,) or out_group.shape != (self.n_out,):
            raise RFMapError(f"group labels of {in_group.size} -> {out_group.size} cells, expected {self.n_in} -> {self.n_out}")
        n_groups = int(max(in_group.max(initial=-1), out_group.max(initial=-1))) + 1
        order = np.argsort(in_group, kind="stable")
        labels = in_group[order]
        counts = np.bincount(labels[labels >= 0], minlength=n_groups) if n_groups else np.zeros(0, dtype=np.int64)
        width = max(int(counts.max(initial=0)), 1)
        members = np.full((n_groups, width), -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])[:-1] + int((labels < 0).sum())
        for g_rank in range(width):  # column by column: O(width * groups)
            has = counts > g_rank
            members[has, g_rank] = order[starts[has] + g_rank]
        set_ = object.__setattr__
        set_(self, "in_group", in_group)
        set_(self, "out_group", out_group)
        set_(self, "members", members)
        period, shift = self._smallest_period()
        set_(self, "period_", period)
        set_(self, "shift_", shift)

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.period_

    @property
    def shift(self) -> int:  # type: ignore[override]
        return self.shift_

    def _rows(self, o: np.ndarray) -> np.ndarray:
        """Member rows (padded with -1) of real output cells ``o``."""
        g = self.out_group[o]
        rows = self.members[np.maximum(g, 0)] if self.members.size else np.full((o.size, 1), -1, dtype=np.int64)
        return np.where((g >= 0)[:, None], rows, -1)

    def _smallest_period(self) -> tuple[int, int]:
        n_in, n_out = self.n_in, self.n_out
        rows = self._rows(np.arange(n_out, dtype=np.int64))
        for p in range(1, n_out):
            if n_out % p or (n_in * p) % n_out:
                continue
            s = n_in * p // n_out
            a, b = rows[p:], rows[:-p]
            if np.array_equal(a, np.where(b >= 0, b + s, -1)):
                return p, s
        return n_out, n_in

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = np.asarray(o, dtype=np.int64)
        q, r = np.divmod(o, self.period_)
        rows = self._rows(r)
        return np.where(rows >= 0, rows + (q * self.shift_)[:, None], 0), rows >= 0

    def taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.virtual_taps(o)

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx, valid = self.virtual_taps(o)
        big = np.iinfo(np.int64).max // 4
        lo = np.where(valid, idx, big).min(axis=1)
        hi = np.where(valid, idx, -big).max(axis=1)
        empty = ~valid.any(axis=1)
        # a cell that sees nothing: an empty window at its own position (monotone, never read)
        lo = np.where(empty, 0, lo)
        hi = np.where(empty, -1, hi)
        return lo, hi

    def reach(self, lo: int, hi: int) -> tuple[int, int]:
        o = np.arange(lo, hi, dtype=np.int64)
        idx, valid = self.virtual_taps(o)
        if not valid.any():
            return 0, 1
        return int(idx[valid].min()), int(idx[valid].max()) + 1

    def support(self, mask_out: np.ndarray) -> np.ndarray:
        hit = np.unique(self.out_group[mask_out])
        hit = hit[hit >= 0]
        return np.isin(self.in_group, hit)


def partition(labels: Sequence[int] | np.ndarray) -> Grouped:
    """Every cell sees the cells with its label (windows, strided grids, masked regions)."""
    labels = _dense(labels)
    return Grouped(labels.size, labels.size, labels, labels)


def gather(owner: Sequence[int] | np.ndarray, n_out: int) -> Grouped:
    """Output cell ``o`` sees the input cells whose owner is ``o`` (a pixel unshuffle's blocks)."""
    owner = np.asarray(owner, dtype=np.int64)
    return Grouped(owner.size, n_out, owner, np.arange(n_out, dtype=np.int64))


def _dense(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels renumbered ``0..G-1`` in order of first appearance."""
    labels = np.asarray(labels, dtype=np.int64)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


@dataclass(frozen=True)
class Regroup(Layer):
    """Per axis, cells that see a group of cells (see the module docstring): ``groups[a]`` is
    ``None`` (the axis passes through) or ``(in_group, out_group)``, tuples of labels of the
    input and output cells.  ``op`` says what made it (``window_attention``, ``layer_norm``,
    ``linear``, ``space_to_depth``).  Used by the PyTorch and ONNX front ends where a
    tensor's spatial axes are split across dims; not a spec-file op."""

    groups: tuple[Any, ...]
    op: str = "regroup"
    #: cells keep their place and also see their group (attention or a norm within windows):
    #: context that alignment leaves out, as it leaves out global branches
    context: bool = False

    def __post_init__(self) -> None:
        norm: list[tuple[tuple[int, ...], tuple[int, ...]] | None] = []
        for g in self.groups:
            if g is None:
                norm.append(None)
                continue
            a, b = g
            norm.append((tuple(int(v) for v in a), tuple(int(v) for v in b)))
        object.__setattr__(self, "groups", tuple(norm))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        if len(sizes) != len(self.groups):
            raise RFMapError(f"a regroup over {len(self.groups)} axes applied to {len(sizes)} axes")
        maps: list[AxisMap] = []
        for n, g in zip(sizes, self.groups):
            if g is None:
                maps.append(Identity(n, n))
                continue
            in_group, out_group = g
            if len(in_group) != n:
                raise RFMapError(f"groups of {len(in_group)} cells applied to an axis of {n} cells")
            maps.append(Grouped(n, len(out_group), np.array(in_group, dtype=np.int64), np.array(out_group, dtype=np.int64)))
        return tuple(maps)
