"""Reading ONNX attributes and constant inputs in converters, checked.

An ONNX :class:`~rfmap.rules.call.Call` has the node's attributes as keywords and its inputs
as positional arguments (constants as numpy arrays, other tensors as
:class:`~rfmap.rules.call.TensorInfo`, absent optional inputs as ``None``).  Malformed values
raise :class:`~rfmap.errors.RFMapError` naming the attribute; the front end adds the node.
"""

from __future__ import annotations

from typing import Any, overload

from rfmap.errors import RFMapError
from rfmap.rules.call import Call, is_tensor

AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@overload
def attr_ints(call: Call, name: str, n: int | None = None, default: None = None,
              minimum: int | None = None) -> tuple[int, ...] | None: ...
@overload
def attr_ints(call: Call, name: str, n: int | None, default: tuple[int, ...], minimum: int | None = None) -> tuple[int, ...]: ...
@overload
def attr_ints(call: Call, name: str, n: int | None = None, *, default: tuple[int, ...],
              minimum: int | None = None) -> tuple[int, ...]: ...
def attr_ints(call: Call, name: str, n: int | None = None, default: tuple[int, ...] | None = None,
              minimum: int | None = None) -> tuple[int, ...] | None:
    """An ints attribute (``n`` entries when given), or ``default``."""
    value = call.kwargs.get(name)
    if value is None:
        return default
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RFMapError(f"attribute {name} must be a list of ints, got {value!r:.60}")
    if n is not None and len(value) != n:
        raise RFMapError(f"attribute {name} has {len(value)} entries, expected {n}")
    if minimum is not None and any(v < minimum for v in value):
        raise RFMapError(f"attribute {name} must be >= {minimum}, got {list(value)}")
    return tuple(int(v) for v in value)


def attr_int(call: Call, name: str, default: int | None = None) -> int | None:
    value = call.kwargs.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RFMapError(f"attribute {name} must be an int, got {value!r:.60}")
    return value


def attr_float(call: Call, name: str, default: float | None = None) -> float | None:
    value = call.kwargs.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise RFMapError(f"attribute {name} must be a number, got {value!r:.60}")
    return float(value)


def attr_flag(call: Call, name: str, default: int = 0) -> bool:
    """An int attribute that must be 0 or 1."""
    value = attr_int(call, name, default)
    if value not in (0, 1):
        raise RFMapError(f"attribute {name} must be 0 or 1, got {value}")
    return bool(value)


@overload
def attr_str(call: Call, name: str, default: str, allowed: tuple[str, ...] | None = None) -> str: ...
@overload
def attr_str(call: Call, name: str, default: None, allowed: tuple[str, ...] | None = None) -> str | None: ...
def attr_str(call: Call, name: str, default: str | None, allowed: tuple[str, ...] | None = None) -> str | None:
    value = call.kwargs.get(name, default)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is not None and not isinstance(value, str):
        raise RFMapError(f"attribute {name} must be a string, got {value!r:.60}")
    if allowed is not None and value not in allowed:
        raise RFMapError(f"attribute {name} {value!r:.60} is not one of {', '.join(allowed)}")
    return value


def attr_axis(call: Call, name: str, default: int | None, rank: int | None = None) -> int:
    """A dim attribute (``axis``), required when ``default`` is ``None``, in
    ``[-rank, rank)``; returned non-negative."""
    value = attr_int(call, name, default)
    n = call.ndim if rank is None else rank
    if value is None:
        raise RFMapError(f"attribute {name} is required")
    if not -n <= value < n:
        raise RFMapError(f"attribute {name} {value} is out of range for a rank-{n} tensor")
    return value + n if value < 0 else value


def check_axes(call: Call, axes, what: str, rank: int | None = None) -> tuple[int, ...]:
    """Dims (an attribute or a constant input) in ``[-rank, rank)``, none repeated; returned non-negative."""
    n = call.ndim if rank is None else rank
    if any(not -n <= int(a) < n for a in axes):
        raise RFMapError(f"{what} {list(axes)} is out of range for a rank-{n} tensor")
    out = tuple(int(a) + n if int(a) < 0 else int(a) for a in axes)
    if len(set(out)) != len(out):
        raise RFMapError(f"{what} {list(axes)} repeats a dim")
    return out


def const(call: Call, index: int) -> Any:
    """The value of constant input ``index`` (a numpy array), or ``None`` if absent or not
    constant."""
    if index >= len(call.args):
        return None
    value = call.args[index]
    if value is None or is_tensor(value):
        return getattr(value, "value", None) if value is not None else None
    return value


def const_ints(call: Call, index: int, what: str) -> tuple[int, ...] | None:
    value = const(call, index)
    if value is None:
        return None
    try:
        flat = [int(v) for v in getattr(value, "ravel", lambda: value)()]
    except (TypeError, ValueError, OverflowError):
        raise RFMapError(f"input {what} must hold integers") from None
    return tuple(flat)


def kernel_pads(call: Call, ndim: int) -> Any:
    """The ``padding`` of a Conv/pool node: ``auto_pad`` as rfmap's string, else ``pads``
    (``[x1_begin, x2_begin, ..., x1_end, x2_end]``) as per-axis ``(begin, end)`` pairs."""
    auto = attr_str(call, "auto_pad", "NOTSET", AUTO_PAD)
    if auto != "NOTSET":
        return auto.lower()
    pads = attr_ints(call, "pads", 2 * ndim, default=(0,) * (2 * ndim), minimum=0)
    return tuple((pads[a], pads[a + ndim]) for a in range(ndim))
