"""The one layer that reorders spatial axes: :class:`Permute` (``x.transpose(-1, -2)`` between
two convolutions, an ONNX ``Transpose`` that swaps H and W).

A cell keeps its receptive field; only the axis it is indexed by changes: output axis ``j``
is input axis ``axes[j]``, so cell ``(i, j)`` of ``permute(axes=(1, 0))`` is cell ``(j, i)``
of its input.  The engine (:class:`rfmap.core.analysis.Analysis`) follows every map's axes
back to the input's: a layer's sizes, cell indices and table columns are in its own tensor's
order, its boxes and supports in the input image's.  Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rfmap.core.axis import AxisMap, Identity
from rfmap.core.layers import Layer, _op_name, _set
from rfmap.core.params import integer
from rfmap.errors import RFMapError


@dataclass(frozen=True)
class Permute(Layer):
    """Spatial axes in a new order: output axis ``j`` is input axis ``axes[j]`` (spatial axes
    only, 0 is H in 2-D: ``axes=(1, 0)`` swaps H and W)."""

    axes: Any
    op: str = "permute"

    def __post_init__(self) -> None:
        axes = self.axes if isinstance(self.axes, (list, tuple)) else (self.axes,)
        if not 1 <= len(axes) <= 3:
            raise RFMapError(f"axes must list 1 to 3 spatial axes, got {len(axes)}")
        axes = tuple(integer(a, "axes", 0) for a in axes)
        if sorted(axes) != list(range(len(axes))):
            raise RFMapError(f"axes {list(axes)} is not a permutation of the spatial axes 0..{len(axes) - 1}")
        _set(self, axes=axes, op=_op_name(self.op))

    @property
    def permutation(self) -> tuple[int, ...]:
        return self.axes  # type: ignore[no-any-return]

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        """Output axis ``j``: every cell is cell ``i`` of input axis ``axes[j]`` (sizes move with it)."""
        if len(self.axes) != len(sizes):
            raise RFMapError(f"axes {list(self.axes)} has {len(self.axes)} entries for {len(sizes)} spatial axes")
        return tuple(Identity(sizes[a], sizes[a]) for a in self.axes)
