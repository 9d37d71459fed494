"""Layer parameters, parsed and checked in one place.

Every front end (spec files, layer lists, PyTorch, ONNX) hands raw values to the layer
types of :mod:`rfmap.core.layers`, which check them here when they are built, so a bad value
is reported where it was written (the spec-file line, the ONNX node, the module path).

Rules: integers are Python or numpy integers (a bool, a float such as ``3.0`` written for an
integer, or a string are errors, not guesses); per-axis values are one value for every axis
or a tuple in (H, W) order -- (D, H, W) in 3-D, (L,) in 1-D; padding is ``p`` (both sides)
or ``(left, right)`` per axis, negative values crop; booleans are booleans.
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Any

from rfmap.core.budget import MAX_VALUE
from rfmap.errors import RFMapError

__all__ = ["MAX_VALUE", "PAD_MODES", "PAD_STRINGS", "boolean", "fraction", "integer", "ints", "pad_mode", "pad_pair",
           "padding", "per_axis"]

#: Padding strings: ``same`` (PyTorch: total ``d*(k-1)``, the extra pixel on the right),
#: ``same_upper``/``same_lower`` (TF/ONNX: ``n_out = ceil(n/s)``), ``valid``.
PAD_STRINGS = ("valid", "same", "same_upper", "same_lower")

#: Border modes of padding, with the spellings of PyTorch (``F.pad``, ``padding_mode``) and
#: ONNX (``Pad``'s ``mode``) mapped to rfmap's four.
PAD_MODES = {
    "zeros": "zeros",
    "constant": "zeros",
    "reflect": "reflect",
    "replicate": "replicate",
    "edge": "replicate",
    "circular": "circular",
    "wrap": "circular",
}


def integer(value: Any, what: str, minimum: int | None = None) -> int:
    """``value`` as an int: Python/numpy integers only; checked against ``minimum`` and the
    exact range of rfmap's int64 arithmetic (:data:`~rfmap.core.budget.MAX_VALUE`)."""
    if type(value) is int and -MAX_VALUE <= value <= MAX_VALUE and (minimum is None or value >= minimum):
        return value  # the common case, without the ABC checks below (a 100,000-layer chain calls this 10^6 times)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and (f := float(value)).is_integer() and abs(f) < 2**53:
            value = int(f)  # 3.0 from a JSON writer; 3.5, nan and inf fall through
        else:
            raise RFMapError(f"{what} must be an integer, got {value!r:.60}")
    n = int(value)
    if minimum is not None and n < minimum:
        raise RFMapError(f"{what} must be >= {minimum}, got {n}")
    if abs(n) > MAX_VALUE:
        raise RFMapError(f"{what} {n} is beyond rfmap's limit of {MAX_VALUE:,}")
    return n


def boolean(value: Any, what: str) -> bool:
    """A real boolean (numpy's too); ``"false"`` or ``0`` are errors, not guesses."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise RFMapError(f"{what} must be true or false, got {value!r:.60}")


def fraction(value: Any, what: str) -> Fraction:
    """A positive exact number: an int, a float (taken at its decimal spelling: ``1.5``), or a
    string ``"3/2"``."""
    if isinstance(value, bool):
        raise RFMapError(f"{what} must be a positive number, got {value!r}")
    try:
        if isinstance(value, (float, str)):
            f = Fraction(str(value).strip())
        elif isinstance(value, numbers.Rational):
            f = Fraction(value)
        elif isinstance(value, numbers.Real):
            f = Fraction(str(float(value)))
        else:
            raise TypeError
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise RFMapError(f"{what} must be a positive number, got {value!r:.60}") from None
    if f <= 0:
        raise RFMapError(f"{what} must be positive, got {value!r:.60}")
    if f.numerator > MAX_VALUE or f.denominator > MAX_VALUE:
        raise RFMapError(f"{what} {value!r:.60} is beyond rfmap's exact range")
    return f


def per_axis(value: Any, ndim: int, what: str) -> tuple[Any, ...]:
    """``value`` repeated for ``ndim`` axes, or checked to have one entry per axis."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return tuple(value) * ndim
        if len(value) != ndim:
            raise RFMapError(f"{what} has {len(value)} entries for {ndim} spatial axes")
        return tuple(value)
    return (value,) * ndim


def ints(value: Any, what: str, minimum: int | None = None) -> int | tuple[int, ...]:
    """An int or a non-empty tuple of ints (one per axis), each checked by :func:`integer`."""
    if isinstance(value, (list, tuple)):
        if not value or len(value) > 3:
            raise RFMapError(f"{what} must be an integer or 1 to 3 of them, got {list(value)!r:.60}")
        return tuple(integer(v, what, minimum) for v in value)
    return integer(value, what, minimum)


def pad_pair(p: Any, what: str = "padding") -> tuple[int, int]:
    """``p`` or ``(left, right)`` as a ``(left, right)`` pair of ints (negative crops)."""
    if isinstance(p, (list, tuple)):
        if len(p) != 2:
            raise RFMapError(f"{what} must be an int or a (left, right) pair, got {p!r:.60}")
        return (integer(p[0], what), integer(p[1], what))
    v = integer(p, what)
    return (v, v)


def padding(value: Any, what: str = "padding") -> Any:
    """Padding as a lower-case string of :data:`PAD_STRINGS`, an int, a pair, or a tuple of
    per-axis ints/pairs."""
    if isinstance(value, str):
        text = value.lower()
        if text not in PAD_STRINGS:
            raise RFMapError(f"{what} {value!r:.60} is not one of {', '.join(PAD_STRINGS)}")
        return text
    if isinstance(value, (list, tuple)):
        if not value or len(value) > 3:
            raise RFMapError(f"{what} must be an int, a string or 1 to 3 per-axis values, got {list(value)!r:.60}")
        return tuple(pad_pair(v, what) if isinstance(v, (list, tuple)) else integer(v, what) for v in value)
    return integer(value, what)


def pad_mode(value: Any, what: str = "pad mode") -> str:
    """One of rfmap's border modes (``zeros``, ``reflect``, ``replicate``, ``circular``),
    from any spelling in :data:`PAD_MODES`; anything else is an error."""
    mode = PAD_MODES.get(value.lower()) if isinstance(value, str) else None
    if mode is None:
        raise RFMapError(f"{what} {value!r:.60} is not one of {', '.join(PAD_MODES)}")
    return mode
