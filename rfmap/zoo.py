"""Model zoo (architectures only): placeholder until the zoo lands."""

from __future__ import annotations

from .errors import RFMapError
from .graph import Graph

_ZOO: dict = {}


def has(name: str) -> bool:
    return name.lower() in _ZOO


def get(name: str) -> Graph:
    if not has(name):
        raise RFMapError(f"'{name}' is not in the zoo")
    return _ZOO[name.lower()]()
