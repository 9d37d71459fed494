"""The graph a front end hands back (:meth:`rfmap.frontends.convert.Front.build`): the nodes
the model's outputs need, its outputs named in the model's return order, and what it notes
and warns about (spatial axes flattened into one dim, ops without a rule).

Coordinates: pixel-index convention, axes in (H, W) order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfmap.core.graph import Graph, Node
from rfmap.core.layers import Expand, Pointwise
from rfmap.errors import RFMapError, warn
from rfmap.frontends.nodeinfo import NodeInfo, NoSpatialOutput
from rfmap.rules.call import Bind, Call, is_tensor
from rfmap.rules.split_axes import as_map

if TYPE_CHECKING:
    from rfmap.frontends.convert import Front


def build_graph(front: Front, outputs: Any, values: Any, name: str, notes: list[str]) -> tuple[Graph, tuple]:
    """The graph of ``front``'s nodes that the outputs need, and the infos of its nodes.

    ``outputs``/``values``: the framework's output structure of Binds and of tensors
    (a tensor, a tuple or list, a dict).  Every output that depends on the input is an
    output of the graph, in the model's return order, named by the dict key where the
    model returns a dict (an alias of its node), else by its node's name.  The first
    output's node is the graph's last (the table's last row).
    """
    named = [(key, _settled(front, b), v) for key, b, v in _keyed(outputs, values) if isinstance(b, Bind)]
    if not named:
        raise NoSpatialOutput(f"{name}: the model's output does not depend on its input's spatial positions")
    out_nodes = [_materialize(front, b, v) for _, b, v in named]
    main = out_nodes[0]
    keep: set[str] = set()
    by_name = {n.name: n for n in front.nodes}
    stack = list(out_nodes)
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        stack.extend(by_name[n].inputs)
    nodes = [n for n in front.nodes if n.name in keep]
    idx = next(i for i, n in enumerate(nodes) if n.name == main)
    if idx != len(nodes) - 1:
        if any(main in n.inputs for n in nodes[idx + 1:]):
            alias = front.reserve("output")
            nodes.append(Node(alias, Pointwise(op="output"), (main,)))
            front.infos[alias] = NodeInfo(alias, "", "helper", "output", front.infos[main].shape if main in front.infos else None)
            out_nodes[0] = alias
        else:
            nodes.append(nodes.pop(idx))
    names = {n.name for n in nodes}
    aliases: list[tuple[str, str]] = []
    out_names: list[str] = []
    for (key, _, _), node in zip(named, out_nodes):
        if key is not None and key not in names and key not in dict(aliases):
            aliases.append((key, node))
            out_names.append(key)
        else:
            out_names.append(node)
    flat = [f"'{key or node}' holds them at tensor dims {list(b.dims)}" for (key, b, _), node in zip(named, out_nodes)
            if _flattened(b.dims)]
    if flat:  # the engine keeps one axis per spatial axis: say so rather than answer for the flat dim
        message = (f"{name}: the model flattens spatial axes into one tensor dim (output " + "; ".join(flat) + "): "
                   "sizes and boxes are reported per axis, in the order of the map before the flatten")
        if front.strict:
            raise RFMapError(message)
        front.notes.append(message)
        warn(message)
    notes = list(notes) + front.notes + [f"unsupported: {u}" for u in front.unsupported]
    if front.unsupported:
        warn(
            f"{name}: {len(front.unsupported)} op(s) without an rfmap rule: " + "; ".join(front.unsupported[:5])
            + (" ..." if len(front.unsupported) > 5 else "") + " (see Graph.notes; strict=True raises)",
        )
    outs = tuple(out_names) if len(out_names) > 1 or out_names[0] != nodes[-1].name else ()
    graph = Graph(tuple(nodes), name, front.input_sizes, tuple(notes), tuple(aliases), outs)
    infos = tuple(front.infos[n.name] for n in nodes[1:] if n.name in front.infos)
    return graph, infos


def _settled(front: Front, bind: Bind) -> Bind:
    """An output whose axes are split or rolled becomes the map of the tensor's own grid
    (see :func:`rfmap.rules.split_axes.as_map`)."""
    call = Call(kind="function", target="output", name=bind.node, path="", module=None,
                args=(), kwargs={}, arg_binds=(), kwarg_binds={}, out=None, rank=front.rank, front=front,
                op_name="output")
    if bind.layout is None:
        return call.in_order(bind)  # a transposed output: its own axis order (see rfmap.core.permute)
    return as_map(call, bind)


def _materialize(front: Front, bind: Bind, value: Any) -> str:
    """The output's node; axes reduced away that the output tensor still has (a map
    rebuilt from a global vector) are broadcast back to their size."""
    rank = front.rank
    if not is_tensor(value) or value.dim() < rank + 2 or all(d is not None for d in bind.dims):
        return bind.node
    std = tuple(range(value.dim() - rank, value.dim()))
    used = {d for d in bind.dims if d is not None}
    size = list(front.sizes[bind.node])
    for a, d in enumerate(bind.dims):
        if d is None and std[a] not in used:
            size[a] = int(value.shape[std[a]])
    if tuple(size) == front.sizes[bind.node]:
        return bind.node
    name = front.reserve(f"{bind.node}.expand")
    front.nodes.append(Node(name, Expand(tuple(size)), (bind.node,)))
    front.node_names.add(name)
    front.sizes[name] = tuple(size)
    front.infos[name] = NodeInfo(name, front.infos[bind.node].path if bind.node in front.infos else "", "helper",
                                "expand", tuple(int(v) for v in value.shape), owner=bind.node)
    return name


def _flattened(dims: tuple) -> bool:
    """Two spatial axes held on one tensor dim (``x.flatten(2)``); axes on dims of their own
    are in the tensor's order (:meth:`Call.in_order`)."""
    held = [d for d in dims if d is not None]
    return len(set(held)) != len(held)


def _keyed(outputs: Any, values: Any, prefix: str | None = None) -> list[tuple[str | None, Any, Any]]:
    """Output leaves with their names: dict keys (``'0'``, ``'pool'``; nested ``'a.0'``), else
    ``None`` (named by their node)."""
    if isinstance(outputs, dict):
        out = []
        for k, b in outputs.items():
            v = values.get(k) if isinstance(values, dict) else None
            key = str(k) if prefix is None else f"{prefix}.{k}"
            out.extend(_keyed(b, v, key))
        return out
    if isinstance(outputs, (list, tuple)):
        vals = list(values) if isinstance(values, (list, tuple)) else [None] * len(outputs)
        out = []
        for i, (b, v) in enumerate(zip(outputs, vals)):
            out.extend(_keyed(b, v, None if prefix is None else f"{prefix}.{i}"))
        return out
    return [(prefix, outputs, values)]
