"""The one way rfmap prints numbers, in every table and message.

Exact values (ints and ``Fraction`` s: strides, centers, paddings) print with
:func:`rfmap.core.result.fmt_number`: ``15.5``, ``-3``, ``1/3``.  Measured values (floats:
ERF sigma, ratios) print with :func:`measured`.  Per-axis values print once when every axis
agrees and as ``HxW`` otherwise; sizes always show every axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from rfmap.core.result import fmt_number

__all__ = ["fmt_axes", "fmt_number", "fmt_size", "measured", "measured_axes"]


def fmt_axes(values: Sequence[Fraction | int]) -> str:
    """One value when every axis agrees, else ``HxW`` (``DxHxW`` in 3-D)."""
    texts = [fmt_number(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def fmt_size(values: Sequence[int]) -> str:
    """A map size, always every axis: ``224x224``."""
    return "x".join(str(int(v)) for v in values)


def measured(value: float, digits: int = 4) -> str:
    """A measured (floating-point) value with ``digits`` significant digits: ``3.162``."""
    return f"{float(value):.{digits}g}"


def measured_axes(values: Sequence[float], digits: int = 4) -> str:
    """Per-axis measured values: one when every axis agrees at this precision, else ``HxW``."""
    texts = [measured(v, digits) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)
