"""Module attributes imported on first use (PEP 562): ``rfmap``'s public names, and the
layer and rule classes that :mod:`rfmap.core.layers` and :mod:`rfmap.core.axis` keep in
modules of their own, so that starting the command line builds only what it uses."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(module: str, namespace: dict[str, Any],
                    table: Mapping[str, tuple[str, str | None]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module``: ``table`` maps a name to ``(source
    module, attribute)`` (``None``: the module itself); the value is imported on first use and
    stored in ``namespace`` (the module's globals), so later lookups are plain."""

    def __getattr__(name: str) -> Any:
        entry = table.get(name)
        if entry is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        source, attr = entry
        value = importlib.import_module(source)
        if attr is not None:
            value = getattr(value, attr)
        namespace[name] = value
        return value

    return __getattr__
