"""Explicit padding and cropping layers (:class:`Pad`, :class:`Crop`): windows of one cell
shifted by the left pad or the slice's start (see :class:`rfmap.core.axis.Window`).

Coordinates follow the pixel-index convention (input pixel ``i`` is the point ``i``).  They
live apart from :mod:`rfmap.core.layers`, which imports them on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rfmap.core.axis import AxisMap, Window
from rfmap.core.layers import Layer, _border, _check_out, _op_name, _set, _sides
from rfmap.core.params import integer, ints, pad_mode, padding, per_axis
from rfmap.errors import RFMapError


@dataclass(frozen=True)
class Pad(Layer):
    """Explicit padding per axis ``(left, right)``; negative values crop.

    ``mode`` is ``zeros`` (constant), ``reflect``, ``replicate`` or ``circular`` (PyTorch's
    and ONNX's spellings are accepted: ``constant``, ``edge``, ``wrap``).
    """

    padding: Any
    mode: str = "zeros"
    op: str = "pad"

    def __post_init__(self) -> None:
        pads = padding(self.padding)
        if isinstance(pads, str):
            raise RFMapError(f"padding of a pad layer must be ints or (left, right) pairs, got {self.padding!r:.60}")
        _set(self, padding=pads, mode=pad_mode(self.mode), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        maps: list[AxisMap] = []
        for n, p in zip(sizes, per_axis(self.padding, len(sizes), "padding")):
            pl, pr = _sides(p)
            n_out = _check_out(n + pl + pr, n, f"padding ({pl}, {pr})")
            maps.append(Window(n, n_out, 1, 1, 1, pl, self.mode, _border(self.mode, n, pl, pr)))
        return tuple(maps)


def _bound(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(None if v is None else integer(v, what) for v in value)
    return integer(value, what)


@dataclass(frozen=True)
class Crop(Layer):
    """Slicing ``x[start:stop:step]`` per axis, with Python's rules for negative and ``None`` bounds."""

    start: Any = 0
    stop: Any = None
    step: Any = 1
    op: str = "crop"

    def __post_init__(self) -> None:
        start = 0 if self.start is None else self.start
        step = 1 if self.step is None else self.step
        _set(self, start=_bound(start, "start"), stop=_bound(self.stop, "stop"), step=ints(step, "step", 1), op=_op_name(self.op))

    def axis_maps(self, sizes: Sequence[int]) -> tuple[AxisMap, ...]:
        ndim = len(sizes)
        maps: list[AxisMap] = []
        for n, a, b, s in zip(
            sizes, per_axis(self.start, ndim, "start"), per_axis(self.stop, ndim, "stop"), per_axis(self.step, ndim, "step")
        ):
            a, b, _ = slice(0 if a is None else a, b, s).indices(n)
            n_out = _check_out(len(range(a, b, s)), n, f"slice {a}:{b}:{s}")
            maps.append(Window(n, n_out, 1, s, 1, -a))
        return tuple(maps)
