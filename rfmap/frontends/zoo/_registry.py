"""The zoo's registry and the helpers its families share.

Each family module (``classic``, ``resnet``, ``detectors``, ``fpn``, ``fcn``, ``sequence``)
builds its graphs with :class:`~rfmap.core.graph.GraphBuilder` and calls :func:`register`
once per entry; :mod:`rfmap.frontends.zoo` imports the families in listing order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import GlobalOp, Layer
from rfmap.errors import RFMapError, at_layer

Size = tuple[int, ...]


@dataclass(frozen=True)
class ZooEntry:
    """One architecture: ``build(size)`` returns its graph.

    ``sized``: the graph depends on the input size (a Caffe ``Crop`` to the size of another
    map, an interpolation to the size of a lateral map), so it is rebuilt for each size;
    the others are built once and analyzed at any size.
    """

    name: str
    description: str
    input_size: Size
    build: Callable[[Size], Graph]
    sized: bool = False


ZOO: dict[str, ZooEntry] = {}


def register(
    name: str,
    description: str,
    input_size: int | Sequence[int],
    build: Callable[[str, Size], Graph],
    *,
    sized: bool = False,
) -> None:
    """Add an entry; ``build(name, size)`` returns the graph at input size ``size``."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(v) for v in input_size)
    if name in ZOO:
        raise RFMapError(f"zoo entry '{name}' is registered twice")
    ZOO[name] = ZooEntry(name, description, size, lambda s: build(name, s), sized)


def linear() -> Layer:
    """``flatten`` + a fully connected layer: every output sees the whole input."""
    return GlobalOp(op="linear")


def with_outputs(graph: Graph, outputs: Sequence[str], aliases: Sequence[tuple[str, str]] = ()) -> Graph:
    """``graph`` with its outputs (model return order) and the aliases that name them."""
    return replace(graph, outputs=tuple(outputs), aliases=tuple(aliases))


class SizedBuilder(GraphBuilder):
    """A :class:`GraphBuilder` that knows every map's size as it goes.

    For graphs whose layers take a size from another map (a Caffe crop to a reference
    map, torchvision's FPN interpolating to the lateral map's size).  Sizes follow the
    layers' own rules (:meth:`~rfmap.core.layers.Layer.axis_maps`); a merge has the size of
    its first input (the analysis checks that the others agree).
    """

    def __init__(self, name: str, input_size: Size):
        super().__init__(name, input_size)
        self.sizes: dict[str, Size] = {self.input: tuple(input_size)}

    def add(self, name: str, layer: Layer, *inputs: str) -> str:
        src = self.sizes[inputs[0]]
        if layer.merge:
            self.sizes[name] = src
        else:
            try:
                maps = layer.axis_maps(src)
            except RFMapError as exc:
                raise at_layer(name, layer.op, f"{exc} (input size {list(src)})") from None
            self.sizes[name] = tuple(m.n_out for m in maps)
        return super().add(name, layer, *inputs)
