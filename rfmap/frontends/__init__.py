"""Front ends: everything a user can analyze becomes a :class:`~rfmap.core.graph.Graph` here.

``load(source)`` accepts a Graph, a layer list (``[[k, s, p], ...]``), a zoo name
(``"vgg16"``), a spec file path (``.yaml``, ``.yml``, ``.toml``, ``.json``), an ONNX file
or ``onnx.ModelProto``,
a ``torch.nn.Module`` or a ``"pkg.module:factory"`` string.  Heavy front ends (torch,
onnx) are imported only when such a source is given.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from rfmap.core.graph import Graph
from rfmap.errors import RFMapError, preview

SPEC_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def load(source: Any, input_size: Any = None, *, strict: bool = False) -> Graph:
    """Turn any supported source into a :class:`Graph` (see the module docstring).

    ``input_size`` and ``strict`` matter to the sources that are traced at a size (PyTorch
    modules and factories: shape-dependent values are fixed at that size) and to ONNX
    files (unsupported ops raise with ``strict``); the other sources ignore them.
    """
    if isinstance(source, Graph):
        return source
    if isinstance(source, (list, tuple)):
        from rfmap.frontends.layerlist import from_layer_list

        return from_layer_list(source)
    check_input_size(input_size)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        lower = text.lower()
        if lower.endswith(SPEC_SUFFIXES):
            from rfmap.frontends.spec import load_spec

            return load_spec(text)
        if lower.endswith(".onnx"):
            from rfmap.frontends.onnx import from_onnx

            if os.path.exists(text) and not os.path.isfile(text):
                raise RFMapError(f"cannot read ONNX file '{text}': not a regular file")

            return from_onnx(text, input_size, strict=strict)
        from rfmap.frontends import zoo

        if zoo.has(text):
            return zoo.get(text, input_size)  # entries built for a size (FCN crops) use it
        if ":" in text and not os.path.exists(text):
            from rfmap.frontends.factory import from_factory

            return from_factory(text, input_size, strict=strict)
        if os.path.exists(text):
            raise RFMapError(f"'{text}': unknown file type (expected {', '.join(SPEC_SUFFIXES)} or .onnx)")
        raise RFMapError(f"'{text}' is neither a zoo name (see `rfmap zoo`) nor an existing file")
    if _is_torch_module(source):
        from rfmap.frontends.factory import quiet_torch
        from rfmap.frontends.torch.capture import from_module

        with quiet_torch():
            return from_module(source, input_size, strict=strict)
    if type(source).__name__ == "ModelProto" and type(source).__module__.startswith("onnx"):
        from rfmap.frontends.onnx import from_onnx

        return from_onnx(source, input_size, strict=strict)
    raise RFMapError(f"cannot analyze a {type(source).__name__}: give a layer list, a zoo name, a file or a torch module")


def check_input_size(value: Any) -> None:
    """``None``, a positive int or 1 to 3 of them (at most ``MAX_SIZE`` each): the input size
    a traced source (a PyTorch model, an ONNX file) is read at."""
    from rfmap.core.budget import MAX_SIZE

    if value is None:
        return
    values = value if isinstance(value, (list, tuple)) else (value,)
    ok = 1 <= len(values) <= 3 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= int(v) <= MAX_SIZE for v in values
    )
    if not ok:
        raise RFMapError(f"input size must be a positive int or 1 to 3 of them (at most {MAX_SIZE:,}), got {preview(value)}")


def load_data(source: Any, base: os.PathLike[str] | str | None = None, *, where: str = "config") -> Graph:
    """A :class:`Graph` from a *data* source only: a Graph, a layer list, a zoo name, or a
    spec or ONNX file (relative paths resolved against ``base``).

    Configuration files are data: they never name code.  A ``"pkg.module:factory"`` string
    (or anything else that would import or call Python code) is refused here; code sources
    are accepted only where the user typed them, on the command line or in the Python API.
    ``where`` names the file or key in the error.
    """
    if isinstance(source, Graph):
        return source
    if isinstance(source, (list, tuple)):
        from rfmap.frontends.layerlist import from_layer_list

        return from_layer_list(source)
    if not isinstance(source, (str, os.PathLike)):
        raise RFMapError(
            f"{where}: a network is a zoo name, a spec or ONNX file or a layer list, got {type(source).__name__}"
        )
    text = os.fspath(source)
    from rfmap.frontends import zoo

    if zoo.has(text):
        return zoo.get(text)
    lower = text.lower()
    path = os.path.join(os.fspath(base), text) if base is not None and not os.path.isabs(text) else text
    if lower.endswith(SPEC_SUFFIXES) or lower.endswith(".onnx"):
        if not os.path.isfile(path):
            raise RFMapError(f"{where}: '{text}': no such file")
        return load(path)
    raise RFMapError(
        f"{where}: '{text}' is not a zoo name (see `rfmap zoo`) nor a spec (.yaml/.toml/.json) or ONNX file; "
        "configuration files never name code (a PyTorch factory is given on the command line or in Python)"
    )


def _is_torch_module(obj: Any) -> bool:
    return any(cls.__module__.startswith("torch") and cls.__name__ == "Module" for cls in type(obj).__mro__)
