"""Layers that make or take whole axes: broadcasting a 1-cell axis (:class:`Expand`) and
reduction over axes (:class:`Reduce`).

Coordinates follow the pixel-index convention (input pixel ``i`` is the point ``i``).  They
live apart from :mod:`rfmap.core.layers`, which imports them on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rfmap.core.axis import AxisMap, Global, Identity
from rfmap.core.layers import Layer, _op_name, _set
from rfmap.core.params import integer, ints, per_axis
from rfmap.errors import RFMapError


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
