"""Adaptive pooling: the per-axis rule (:class:`Adaptive`) and the layer (:class:`AdaptivePool`).

Output cell ``o`` of ``m`` pools input cells ``[floor(o*n/m), ceil((o+1)*n/m))`` of ``n``
(pixel-index convention: input pixel ``i`` is the point ``i``).  They live apart from
:mod:`rfmap.core.axis` and :mod:`rfmap.core.layers`, which import them on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from rfmap.core.axis import AxisMap, Global
from rfmap.core.layers import Layer, _op_name, _set
from rfmap.core.params import integer, per_axis
from rfmap.errors import RFMapError


@dataclass(frozen=True)
class Adaptive(AxisMap):
    """Adaptive pooling: output ``o`` pools ``[floor(o*n/m), ceil((o+1)*n/m))``."""

    monotone = True
    plain = True

    n_in: int
    n_out: int

    @property
    def period(self) -> int:  # type: ignore[override]
        return self.n_out // gcd(self.n_in, self.n_out)

    @property
    def shift(self) -> int:  # type: ignore[override]
        return self.n_in // gcd(self.n_in, self.n_out)

    @property
    def width(self) -> int:
        return -(-self.n_in // self.n_out) + 1

    def window(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.n_in, self.n_out
        return np.floor_divide(o * n, m), -np.floor_divide(-(o + 1) * n, m) - 1

    def virtual_taps(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.window(o)
        width = int((hi - lo).max()) + 1 if o.size else 1
        idx = lo[:, None] + np.arange(width)
        return idx, idx <= hi[:, None]


@dataclass(frozen=True)
class AdaptivePool(Layer):
    """Adaptive pooling to ``output_size``; output ``o`` pools ``[floor(o*n/m), ceil((o+1)*n/m))``;
    ``None`` keeps an axis."""

    output_size: Any
    op: str = "adaptive_pool"

    def __post_init__(self) -> None:
        out = self.output_size
        if isinstance(out, (list, tuple)):
            if not out or len(out) > 3:
                raise RFMapError(f"output_size must be an integer or 1 to 3 of them, got {list(out)!r:.60}")
            out = tuple(None if v is None else integer(v, "output_size", 1) for v in out)
        elif out is not None:
            out = integer(out, "output_size", 1)
        _set(self, output_size=out, op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        out = per_axis(self.output_size, len(sizes), "output_size")
        maps: list[AxisMap] = []
        for n, m in zip(sizes, out):
            m = n if m is None else m
            maps.append(Global(n, 1) if m == 1 else Adaptive(n, m))
        return tuple(maps)
