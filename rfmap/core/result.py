"""Immutable results of an analysis: one row per layer, per axis.

Coordinates follow the pixel-index convention (Araujo et al., Distill 2019): input pixels
are indexed ``0..n-1`` and pixel ``i`` is the point ``i``.  A cell ``i`` of a shift-invariant
layer sees input pixels ``u..v`` with ``u = -P + i*S`` and ``v = u + r - 1``; its center is
``-P + i*S + (r-1)/2``.  Boxes are inclusive and ordered like the axes, starts first:
``(y0, x0, y1, x1)`` in 2-D.  To convert to the continuous convention (pixel ``i`` covers
``[i, i+1)``), add 0.5 to centers, and use ``[u, v+1)`` for boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any


def axis_names(ndim: int) -> tuple[str, ...]:
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(ndim, tuple(f"axis{i}" for i in range(ndim)))


@dataclass(frozen=True)
class AxisGeometry:
    """One layer along one axis.

    ``stride`` is the effective stride (jump) in input pixels per cell, a Fraction after
    upsampling; ``rf`` the receptive-field size (the largest over cells when it varies);
    ``padding`` the effective padding ``P = -u`` of cell 0; ``center0`` the center of cell
    0's box; ``shift_invariant`` whether ``box(i) = box(0) + i*stride`` for every cell.
    """

    size: int
    stride: Fraction
    rf: int
    padding: int
    center0: Fraction
    shift_invariant: bool


@dataclass(frozen=True)
class LayerGeometry:
    """One row of the table: a layer's output and its receptive field, per axis.

    ``axes`` are in the order of the layer's own tensor; ``input_axes`` says, per axis, the
    input axis it runs along where a layer before it reordered them (a ``transpose`` of H and
    W: ``(1, 0)``), ``None`` where they keep the input's order.  Strides, sizes and paddings
    of an axis are measured along its input axis.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    axes: tuple[AxisGeometry, ...]
    aligned: bool = True
    global_context: bool = False
    input_axes: tuple[int, ...] | None = None

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def stride(self) -> tuple[Fraction, ...]:
        return tuple(a.stride for a in self.axes)

    @property
    def rf(self) -> tuple[int, ...]:
        return tuple(a.rf for a in self.axes)

    @property
    def padding(self) -> tuple[int, ...]:
        return tuple(a.padding for a in self.axes)

    @property
    def center0(self) -> tuple[Fraction, ...]:
        return tuple(a.center0 for a in self.axes)

    @property
    def shift_invariant(self) -> bool:
        return all(a.shift_invariant for a in self.axes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "output_size": list(self.output_size),
            "stride": [json_number(v) for v in self.stride],
            "rf": list(self.rf),
            "padding": list(self.padding),
            "center0": [json_number(v) for v in self.center0],
            "shift_invariant": self.shift_invariant,
            "aligned": self.aligned,
            **({} if self.input_axes is None else {"input_axes": list(self.input_axes)}),
        }


def json_number(value: Fraction | int | float) -> int | float:
    """An exact int where the value is integral, else the nearest float."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else float(value)


def fmt_number(value: Fraction | int) -> str:
    """The one way rfmap prints an exact number: ``2``, ``-3``, ``15.5``, ``0.125`` (exact
    decimals), ``1/3`` (fractions without a finite decimal)."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value * 10**places
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"
