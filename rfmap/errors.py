"""The one error type of rfmap and its warning category.

Every problem with user input (a layer, a spec-file line, a box, a cell index) raises
:class:`RFMapError`, a :class:`ValueError` whose message names the thing at fault, so
that the CLI can print it as one line and exit with status 2.
"""

from __future__ import annotations


class RFMapError(ValueError):
    """Bad input to rfmap: the message names the layer, line, box or index at fault."""


class RFMapWarning(UserWarning):
    """Something rfmap computed exactly but that a user should know (misaligned paths,
    ops treated as pointwise)."""


def at_layer(name: str, op: str, message: str) -> RFMapError:
    """An :class:`RFMapError` prefixed with the layer it is about."""
    return RFMapError(f"layer '{name}' ({op}): {message}")
