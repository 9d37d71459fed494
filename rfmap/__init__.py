"""rfmap: exact receptive fields, coordinate mapping and RoI pooling for CNNs.

Coordinate convention (everywhere unless a docstring says otherwise): pixel-index, as in
Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks" (Distill 2019):
pixels are indexed ``0..n-1`` and pixel ``i`` is the point ``i``; boxes are inclusive,
``(y0, x0, y1, x1)`` in 2-D; axes are in (H, W) order.

The core imports numpy only; torch, onnx, matplotlib and rich are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from rfmap.core.analysis import Analysis
from rfmap.core.graph import Graph, GraphBuilder, Node
from rfmap.core.layers import Layer
from rfmap.core.registry import make_layer, register_op, registry, unregister_op
from rfmap.core.result import AxisGeometry, LayerGeometry
from rfmap.errors import RFMapError, RFMapWarning

__version__ = "0.1.0"

#: consumers, loaded on first use so that ``import rfmap`` needs numpy only
_LAZY = {
    "erf": ("rfmap.erf", None),
    "ERF": ("rfmap.erf", "ERF"),
    "closed_form_sigma": ("rfmap.erf", "closed_form_sigma"),
    "mapping": ("rfmap.mapping", None),
    "Mapper": ("rfmap.mapping", "Mapper"),
    "mapper": ("rfmap.mapping", "mapper"),
    "anchors": ("rfmap.anchors", None),
    "ops": ("rfmap.ops", None),
    "viz": ("rfmap.viz", None),
    "render": ("rfmap.render", None),
    "frontends": ("rfmap.frontends", None),
}

__all__ = [
    "Analysis",
    "AxisGeometry",
    "ERF",
    "Graph",
    "GraphBuilder",
    "Layer",
    "LayerGeometry",
    "Node",
    "Mapper",
    "RFMapError",
    "RFMapWarning",
    "analyze",
    "closed_form_sigma",
    "erf",
    "make_layer",
    "mapper",
    "register_op",
    "registry",
    "unregister_op",
    "register_torch_op",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'rfmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def analyze(
    source: Any,
    input_size: int | tuple[int, ...] | None = None,
    *,
    strict: bool = False,
    exclude_global: bool = False,
) -> Analysis:
    """Receptive-field geometry of every layer of ``source``.

    ``source``: a zoo name (``"vgg16"``), a layer list (``[[k, s, p], ...]``), a spec file
    path, an ONNX file, a ``torch.nn.Module`` or a :class:`Graph`.  ``input_size``: an int
    or an (H, W) pair (1 to 3 axes); defaults to the source's usual input size.
    ``strict``: misaligned paths raise instead of warning (the warnings are also kept, as
    data, in ``Analysis.messages``).  ``exclude_global``: ignore
    global-context branches (squeeze-excitation, global pooling) where they merge with
    local paths, to show the local receptive field.

    Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), (H, W) order.
    """
    from rfmap.frontends import load

    graph = load(source, input_size, strict=strict)
    size = graph.input_size if input_size is None else input_size
    if isinstance(size, int) and graph.input_size is not None:
        size = (size,) * len(graph.input_size)
    return Analysis(graph, size, strict=strict, exclude_global=exclude_global).warn(stacklevel=2)


def register_torch_op(target: Any, converter: Any = None, **kwargs: Any) -> Any:
    """Teach the PyTorch front end one target: see :func:`rfmap.frontends.torch.targets.register_torch_op`
    (:func:`register_op` teaches every front end at once).

    ``target`` is a module class, a function or a method name; ``converter`` a callable
    returning an rfmap :class:`Layer`, a Layer, or one of ``"pointwise"``, ``"global"``,
    ``"add"``, ``"mul"``, ``"concat"``, ``"same"``.  Usable as a decorator.
    """
    from rfmap.frontends.torch.targets import register_torch_op

    return register_torch_op(target, converter, **kwargs)
