"""rfmap: exact receptive fields, coordinate mapping and RoI pooling for CNNs.

Coordinate convention (everywhere unless a docstring says otherwise): pixel-index, as in
Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks" (Distill 2019):
pixels are indexed ``0..n-1`` and pixel ``i`` is the point ``i``; boxes are inclusive,
``(y0, x0, y1, x1)`` in 2-D; axes are in (H, W) order.

The core imports numpy only; torch, onnx, matplotlib and rich are imported lazily.  Every
name here is loaded on first use, so ``import rfmap`` (and ``rfmap --help``) import nothing
heavy, and ``import rfmap`` loads no consumer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfmap._lazy import lazy_attributes
from rfmap.errors import RFMapError, RFMapWarning

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.core.analysis import Analysis

__version__ = "0.1.0"

#: every public name, loaded on first use
_LAZY = {
    "Analysis": ("rfmap.core.analysis", "Analysis"),
    "Graph": ("rfmap.core.graph", "Graph"),
    "GraphBuilder": ("rfmap.core.graph", "GraphBuilder"),
    "Node": ("rfmap.core.graph", "Node"),
    "Layer": ("rfmap.core.layers", "Layer"),
    "Box": ("rfmap.core.box", "Box"),
    "make_layer": ("rfmap.core.registry", "make_layer"),
    "register_op": ("rfmap.core.registry", "register_op"),
    "registry": ("rfmap.core.registry", "registry"),
    "unregister_op": ("rfmap.core.registry", "unregister_op"),
    "AxisGeometry": ("rfmap.core.result", "AxisGeometry"),
    "LayerGeometry": ("rfmap.core.result", "LayerGeometry"),
    "core": ("rfmap.core", None),
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
    "Box",
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


__getattr__ = lazy_attributes("rfmap", globals(), _LAZY)


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
    from rfmap.core.analysis import Analysis
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
