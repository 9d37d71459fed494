"""One step of the engine's forward pass (:class:`rfmap.core.analysis.Analysis`): a node's
per-axis families from its inputs', and the table's per-axis values.

Coordinates follow the pixel-index convention (see :mod:`rfmap.core.result`).  Axes whose
rule, families and needed cells equal the axis before them (a square input through square
kernels) share one result, so their work is done once.  Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from rfmap.core.axis import AxisMap, Global, Identity
from rfmap.core.layers import Layer
from rfmap.core.periodic import Boxes, Family, Range, combine, hull_at, max_size
from rfmap.core.result import AxisGeometry


@dataclass(frozen=True)
class NodeState:
    """What the pass keeps of one node: its sizes and rules, its per-axis families (the boxes
    of its cells), whether it is global, and the input axis each of its axes runs along."""

    sizes: tuple[int, ...]
    maps: tuple[AxisMap, ...] | None  # None for the input and merges
    families: tuple[tuple[Family, ...], ...]  # per axis
    is_global: bool  # every path through this node went through a global op
    #: the families with context mixing (attention inside windows, a norm over a window's
    #: cells: layers with ``context``) left out: what alignment compares; ``families`` itself
    #: where no such layer is upstream
    anchors: tuple[tuple[Family, ...], ...]
    #: per axis, the input axis it runs along (see :mod:`rfmap.core.permute`); ``None``: the
    #: input's own order
    order: tuple[int, ...] | None = None


def through(maps: tuple[AxisMap, ...], parents: tuple[tuple[Family, ...], ...],
            need: Sequence[Range | None]) -> tuple[tuple[Family, ...], ...]:
    """Per axis, the parent's families through the node's rule; an axis whose rule, families
    and needed cells are those of the axis before it (a square input, a square kernel) shares
    its result."""
    out: list[tuple[Family, ...]] = []
    for a, (m, fams) in enumerate(zip(maps, parents)):
        if a and m is maps[a - 1] and fams is parents[a - 1] and need[a] == need[a - 1]:
            out.append(out[-1])
        else:
            out.append(tuple(combine([f.through(m, need[a]) for f in fams], need[a])))
    return tuple(out)


def geometries(sizes: tuple[int, ...], families: tuple[tuple[Family, ...], ...]) -> tuple[AxisGeometry, ...]:
    """The table's per-axis values; an axis equal to the one before it shares its row."""
    out: list[AxisGeometry] = []
    for a, (n, fams) in enumerate(zip(sizes, families)):
        same = a and n == sizes[a - 1] and fams is families[a - 1]
        out.append(out[-1] if same else axis_geometry(n, fams))
    return tuple(out)


def in_order(states: Sequence[NodeState], parents: Sequence[int], orders: Sequence[tuple[int, ...]],
              k: int) -> list[NodeState]:
    """``states`` with the 1-cell maps among ``parents`` re-indexed to node ``k``'s axis order
    (their one cell is the same whichever axis comes first; see :func:`rfmap.core.plan.axis_orders`)."""
    out = list(states)
    for p in parents:
        if orders[p] != orders[k]:
            move = [orders[p].index(b) for b in orders[k]]
            s = states[p]
            fams = tuple(s.families[a] for a in move)
            out[p] = NodeState(tuple(s.sizes[a] for a in move), s.maps, fams, s.is_global,
                                fams if s.anchors is s.families else tuple(s.anchors[a] for a in move), orders[k])
    return out


def keeps_boxes(layer: Layer, maps: tuple[AxisMap, ...]) -> bool:
    """A layer whose every cell sees exactly its input cell (a pointwise op): its boxes, and
    so its geometry, are its input's."""
    return (not layer.global_context and not getattr(layer, "context", False) and layer.permutation is None
            and all(type(m) is Identity and m.n_in == m.n_out for m in maps))


#: Fractions already made (a network has few distinct strides and centers; making one costs
#: microseconds, looking one up a dict access)
_FRACTIONS: dict[tuple[int, int], Fraction] = {}


def cell0(families: Sequence[Family]) -> tuple[int, int]:
    """The hull of cell 0's boxes over ``families`` (plain ints where each is one box per cell)."""
    if all(type(f) is Boxes and f.period == 1 for f in families):
        return min(int(f.lo[0]) for f in families), max(int(f.hi[0]) for f in families)
    lo, hi = hull_at(list(families), np.zeros(1, dtype=np.int64))
    return int(lo[0]), int(hi[0])


def fraction(numerator: int, denominator: int = 1) -> Fraction:
    key = (numerator, denominator)
    value = _FRACTIONS.get(key)
    if value is None:
        if len(_FRACTIONS) > 4096:
            _FRACTIONS.clear()
        value = _FRACTIONS[key] = Fraction(numerator, denominator)
    return value


def axis_geometry(n: int, families: Sequence[Family]) -> AxisGeometry:
    if len(families) == 1 and isinstance(families[0], Boxes) and families[0].period == 1:  # shift-invariant
        lo0, hi0 = int(families[0].lo[0]), int(families[0].hi[0])
        jump = families[0].jump
        stride = fraction(jump) if type(jump) is int else Fraction(jump)
        return AxisGeometry(n, stride, hi0 - lo0 + 1, -lo0, fraction(lo0 + hi0, 2), True)
    fams = list(families)
    boxes = [f for f in fams if isinstance(f, Boxes) and f.period == 1]
    if len(boxes) == len(fams):
        # several shift-invariant families (a local path and a global branch): plain ints; the
        # hull's size is largest at an end cell (see periodic.max_size)
        los = [(int(f.lo[0]), f.step) for f in boxes]
        his = [(int(f.hi[0]), f.step) for f in boxes]
        lo0, hi0 = min(v for v, _ in los), max(v for v, _ in his)
        last = n - 1
        size = max(hi0 - lo0, max(v + last * t for v, t in his) - min(v + last * t for v, t in los)) + 1
        jump = max(f.jump for f in fams)
        stride = fraction(jump) if type(jump) is int else Fraction(jump)
        return AxisGeometry(n, stride, size, -lo0, fraction(lo0 + hi0, 2), False)
    lo, hi = hull_at(fams, np.zeros(1, dtype=np.int64))
    jump = max((f.jump for f in fams), default=Fraction(1))
    return AxisGeometry(
        size=n,
        stride=Fraction(jump),
        rf=max_size(fams, n),
        padding=-int(lo[0]),
        center0=Fraction(int(lo[0]) + int(hi[0]), 2),
        shift_invariant=len(fams) == 1 and fams[0].is_shift_invariant(n),
    )


def merged(states: Sequence[NodeState], used: Sequence[int], sizes: tuple[int, ...], need: Sequence[Range | None],
            anchors: bool) -> tuple[tuple[Family, ...], ...]:
    """Per axis, the families (or ``anchors``) of the merge inputs ``used``, a 1-cell axis
    broadcast to ``sizes``, combined (an axis equal to the one before it in every input shares
    its result)."""
    of = [states[p].anchors if anchors else states[p].families for p in used]
    out: list[tuple[Family, ...]] = []
    for a in range(len(sizes)):
        if a and sizes[a] == sizes[a - 1] and need[a] == need[a - 1] and all(
                f[a] is f[a - 1] and states[p].sizes[a] == states[p].sizes[a - 1] for p, f in zip(used, of)):
            out.append(out[-1])
            continue
        out.append(tuple(combine([_broadcast(f, states[p].sizes[a], sizes[a], need[a])
                                  for p, fams in zip(used, of) for f in fams[a]], need[a])))
    return tuple(out)


def _broadcast(family: Family, n_in: int, n_out: int, need: Range | None) -> Family:
    """A merge input of size 1 along an axis is broadcast: every cell reads its one cell."""
    return family if n_in == n_out else family.through(Global(1, n_out), need)
