"""The one error type of rfmap, its warning category, and :func:`warn`, which issues a
warning at the user's line.

Every problem with user input (a layer, a spec-file line, a box, a cell index) raises
:class:`RFMapError`, a :class:`ValueError` whose message names the thing at fault, so
that the CLI can print it as one line and exit with status 2.
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType


class RFMapError(ValueError):
    """Bad input to rfmap: the message names the layer, line, box or index at fault."""


class RFMapBug(RuntimeError):
    """A bug in rfmap itself, raised with what it was doing (the node, the layer) where a
    crash deep inside would otherwise lose it.  Not bad input: the CLI reports it as an
    internal error (status 70)."""


class RFMapWarning(UserWarning):
    """Something rfmap computed exactly but that a user should know (misaligned paths,
    ops treated as pointwise)."""


def warn(message: str, category: type[Warning] = RFMapWarning) -> None:
    """``warnings.warn(message, category)`` at the first caller outside rfmap: the user's
    line, however deep in rfmap the cause was found."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "rfmap":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def preview(value: object, limit: int = 60) -> str:
    """A value for an error message: a bounded preview, never the full ``repr`` of a large or
    nested value (a list read from a file may hold a million entries)."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} entries"
    if isinstance(value, str):
        return repr(value[:limit] + ("..." if len(value) > limit else ""))
    if isinstance(value, (bool, int, float, complex)) or value is None:
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 4 * limit else "a very large integer"
        return text if len(text) <= limit else text[: limit - 3] + "..."
    return f"a {type(value).__name__}"


def at_layer(name: str, op: str, message: str) -> RFMapError:
    """An :class:`RFMapError` prefixed with the layer it is about."""
    return RFMapError(f"layer '{name}' ({op}): {message}")
