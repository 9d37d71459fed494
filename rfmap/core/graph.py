"""A network as a DAG of named layers: the one form every source is turned into.

Nodes are kept in a topological order; the first node is the input.  A node lists the
names of the nodes it reads; merges (add, mul, concat) read two or more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rfmap.core.budget import MAX_LAYERS
from rfmap.core.layers import Layer, Merge
from rfmap.errors import RFMapError

INPUT = "input"


@dataclass(frozen=True)
class Node:
    """One layer of a :class:`Graph`: its ``name``, its ``layer`` (``None`` for the input) and
    the names of the nodes it reads (``inputs``, in order)."""

    name: str
    layer: Layer | None  # None for the input
    inputs: tuple[str, ...] = ()

    @property
    def op(self) -> str:
        return "input" if self.layer is None else self.layer.op


@dataclass(frozen=True)
class Graph:
    """An immutable DAG of layers in topological order; ``nodes[0]`` is the input.

    ``input_size`` is the default spatial input size, ``(H, W)`` in 2-D, or ``None``.
    ``notes`` says what a front end approximated.  ``aliases`` names other than the nodes'
    own that refer to a node, as ``(alias, node name)`` pairs: a PyTorch container module
    (``layer3``) refers to the last node it produced, a model returning a dict names its
    outputs by the dict's keys (torchvision's FPN: ``'0'``..``'3'``, ``'pool'``).
    ``outputs``: the network's outputs in the order the model returns them (node names or
    aliases); empty means the last node alone.
    """

    nodes: tuple[Node, ...]
    name: str = "network"
    input_size: tuple[int, ...] | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)
    aliases: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    outputs: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.nodes) > MAX_LAYERS + 1:
            raise RFMapError(f"{len(self.nodes) - 1:,} layers, beyond rfmap's limit of {MAX_LAYERS:,} (rfmap.core.budget.MAX_LAYERS)")
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            if not isinstance(node.name, str) or not all(isinstance(src, str) for src in node.inputs):
                raise RFMapError(f"layer names must be strings, got {node.name!r:.60} reading {node.inputs!r:.60}")
            if node.name in seen:
                raise RFMapError(f"layer name '{node.name}' is used twice")
            if i == 0:
                if node.layer is not None:
                    raise RFMapError("the first node must be the input")
            else:
                if node.layer is None:
                    raise RFMapError(f"layer '{node.name}' has no op")
                if not node.inputs:
                    raise RFMapError(f"layer '{node.name}' ({node.op}) has no input")
                for src in node.inputs:
                    if src not in seen:
                        raise RFMapError(
                            f"layer '{node.name}' ({node.op}) reads '{src}', which is not defined before it"
                        )
                if node.layer.merge and len(node.inputs) < 2:
                    raise RFMapError(f"layer '{node.name}' ({node.op}) merges paths but has one input")
                if not node.layer.merge and len(node.inputs) != 1:
                    raise RFMapError(f"layer '{node.name}' ({node.op}) takes one input, got {len(node.inputs)}")
            seen.add(node.name)
        if not self.nodes:
            raise RFMapError("the network has no input")
        alias_of = dict(self.aliases)
        for out in self.outputs:
            if out not in seen and alias_of.get(out) not in seen:
                raise RFMapError(f"output '{out}' is not a layer of the network")

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs as the model names them, in its return order (at least one)."""
        return self.outputs or (self.nodes[-1].name,)

    @property
    def output_nodes(self) -> tuple[str, ...]:
        """The node names of :attr:`output_names` (aliases resolved)."""
        alias_of = dict(self.aliases)
        return tuple(alias_of.get(o, o) if o not in {n.name for n in self.nodes} else o for o in self.output_names)

    @property
    def output(self) -> Node:
        """The network's (first) output."""
        return self.node(self.output_nodes[0])

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise RFMapError(f"no layer named '{name}'")

    def index(self, name: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.name == name:
                return i
        raise RFMapError(f"no layer named '{name}'")

    @classmethod
    def chain(
        cls,
        layers: Iterable[tuple[str, Layer]],
        name: str = "network",
        input_size: Sequence[int] | None = None,
    ) -> Graph:
        """A plain chain of ``(name, layer)`` pairs."""
        b = GraphBuilder(name, input_size)
        x = b.input
        for layer_name, layer in layers:
            x = b.add(layer_name, layer, x)
        return b.build()


class GraphBuilder:
    """Builds a :class:`Graph` step by step::

        b = GraphBuilder("tiny", input_size=(32, 32))
        x = b.add("conv1", conv(3, padding=1), b.input)
        y = b.add("conv2", conv(3, padding=1), x)
        z = b.add("sum", Merge("add"), x, y)
        graph = b.build()
    """

    def __init__(self, name: str = "network", input_size: Sequence[int] | int | None = None):
        self.name = name
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = None if input_size is None else tuple(int(v) for v in input_size)
        self.nodes: list[Node] = [Node(INPUT, None)]
        self.input = INPUT

    def add(self, name: str, layer: Layer, *inputs: str) -> str:
        self.nodes.append(Node(name, layer, tuple(inputs)))
        return name

    def layer(self, name: str, op: str, *inputs: str, **params: Any) -> str:
        """Add a layer by op name: ``b.layer("conv1", "conv", x, kernel=3, padding=1)``."""
        from rfmap.core.registry import make_layer

        return self.add(name, make_layer(op, **params), *inputs)

    def merge(self, name: str, op: str, *inputs: str) -> str:
        return self.add(name, Merge(op), *inputs)

    def build(self) -> Graph:
        return Graph(tuple(self.nodes), self.name, self.input_size)
