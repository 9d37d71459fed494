"""Front ends: everything a user can analyze becomes a :class:`~rfmap.graph.Graph` here.

``load(source)`` accepts a Graph, a layer list (``[[k, s, p], ...]``), a zoo name
(``"vgg16"``), a spec file path (``.yaml``, ``.yml``, ``.toml``, ``.json``), an ONNX file,
a ``torch.nn.Module`` or a ``"pkg.module:factory"`` string.  Heavy front ends (torch,
onnx) are imported only when such a source is given.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import RFMapError
from ..graph import Graph

SPEC_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def load(source: Any) -> Graph:
    """Turn any supported source into a :class:`Graph` (see the module docstring)."""
    if isinstance(source, Graph):
        return source
    if isinstance(source, (list, tuple)):
        from .layerlist import from_layer_list

        return from_layer_list(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        lower = text.lower()
        if lower.endswith(SPEC_SUFFIXES):
            from .spec import load_spec

            return load_spec(text)
        if lower.endswith(".onnx"):
            from .onnx import from_onnx  # type: ignore[import-not-found]

            return from_onnx(text)
        from .. import zoo

        if zoo.has(text):
            return zoo.get(text)
        if ":" in text and not os.path.exists(text):
            from .factory import from_factory  # type: ignore[import-not-found]

            return from_factory(text)
        if os.path.exists(text):
            raise RFMapError(f"'{text}': unknown file type (expected {', '.join(SPEC_SUFFIXES)} or .onnx)")
        raise RFMapError(f"'{text}' is neither a zoo name (see `rfmap zoo`) nor an existing file")
    if _is_torch_module(source):
        from .torch_fx import from_module  # type: ignore[import-not-found]

        return from_module(source)
    raise RFMapError(f"cannot analyze a {type(source).__name__}: give a layer list, a zoo name, a file or a torch module")


def _is_torch_module(obj: Any) -> bool:
    return any(cls.__module__.startswith("torch") and cls.__name__ == "Module" for cls in type(obj).__mro__)
