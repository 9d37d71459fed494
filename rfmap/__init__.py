"""rfmap: exact receptive fields, coordinate mapping and RoI pooling for CNNs.

Coordinate convention (everywhere unless a docstring says otherwise): pixel-index, as in
Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks" (Distill 2019):
pixels are indexed ``0..n-1`` and pixel ``i`` is the point ``i``; boxes are inclusive,
``(y0, x0, y1, x1)`` in 2-D; axes are in (H, W) order.

The core imports numpy only; torch, onnx, matplotlib and rich are imported lazily.
"""

from __future__ import annotations

from typing import Any

from .analysis import Analysis
from .erf import ERF, closed_form_sigma, erf
from .errors import RFMapError, RFMapWarning
from .graph import Graph, GraphBuilder, Node
from .layers import OPS, Layer, make_layer, register_op
from .mapping import Mapper, mapper
from .result import AxisGeometry, LayerGeometry

__version__ = "0.1.0"

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
    "OPS",
    "RFMapError",
    "RFMapWarning",
    "analyze",
    "closed_form_sigma",
    "erf",
    "make_layer",
    "mapper",
    "register_op",
    "register_torch_op",
]


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
    ``strict``: misaligned paths raise instead of warning.  ``exclude_global``: ignore
    global-context branches (squeeze-excitation, global pooling) where they merge with
    local paths, to show the local receptive field.

    Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), (H, W) order.
    """
    from .sources import load

    graph = load(source, input_size, strict=strict)
    size = graph.input_size if input_size is None else input_size
    if isinstance(size, int) and graph.input_size is not None:
        size = (size,) * len(graph.input_size)
    return Analysis(graph, size, strict=strict, exclude_global=exclude_global)


def register_torch_op(target: Any, converter: Any = None, **kwargs: Any) -> Any:
    """Teach the PyTorch front end an op: see :func:`rfmap.sources.torch_rules.register`.

    ``target`` is a module class, a function or a method name; ``converter`` a callable
    returning an rfmap :class:`Layer`, a Layer, or one of ``"pointwise"``, ``"global"``,
    ``"add"``, ``"mul"``, ``"concat"``, ``"same"``.  Usable as a decorator.
    """
    from .sources.torch_rules import register

    return register(target, converter, **kwargs)
