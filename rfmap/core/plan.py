"""Before the forward pass: every node's sizes and per-axis rules, and the cells asked about.

Coordinates follow the pixel-index convention (see :mod:`rfmap.core.result`).  Sizes are
resolved layer by layer from the input size (merges check that their inputs agree, or
broadcast a 1-cell axis); a backward pass then finds, per map, the cells whose boxes anyone
will ask about, which bounds the explicit layouts of :mod:`rfmap.core.periodic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rfmap.core.axis import AxisMap
from rfmap.core.budget import MAX_SIZE, check_size
from rfmap.core.graph import Graph, Node
from rfmap.core.layers import resolved_maps
from rfmap.core.periodic import Range
from rfmap.errors import RFMapError, at_layer

#: per node, its output sizes and per-axis rules (``None`` for the input and merges)
Plan = tuple[tuple[int, ...], tuple[AxisMap, ...] | None]


def normalize_size(input_size: Any) -> tuple[int, ...]:
    """``224`` -> ``(224, 224)``; a tuple of 1 to 3 positive ints as it is."""
    if input_size is None:
        raise RFMapError("an input size is needed (for example input_size=224 or (H, W))")
    if isinstance(input_size, bool):
        raise RFMapError(f"input size must be an int or a tuple of ints, got {input_size!r}")
    if isinstance(input_size, (int, np.integer)):
        input_size = (int(input_size),) * 2
    try:
        sizes = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        raise RFMapError(f"input size must be an int or a tuple of ints, got {input_size!r}") from None
    if not 1 <= len(sizes) <= 3 or any(v < 1 for v in sizes) or any(isinstance(v, bool) for v in input_size):
        raise RFMapError(f"input size must have 1 to 3 positive entries, got {input_size!r}")
    if max(sizes) > MAX_SIZE:
        raise RFMapError(f"input size {list(sizes)} is larger than rfmap's exact integer range ({MAX_SIZE:,} per axis)")
    return sizes


def plan(graph: Graph, index: dict[str, int], input_size: tuple[int, ...]) -> list[Plan]:
    """Sizes and per-axis rules of every node of ``graph`` (``None`` for the input and merges);
    ``index``: node positions by name."""
    plans: list[Plan] = []
    for node in graph.nodes:
        if node.layer is None:
            plans.append((input_size, None))
        elif node.layer.merge:
            parents = [index[p] for p in node.inputs]
            plans.append((_merged_sizes(graph, node, parents, plans), None))
        else:
            in_sizes = plans[index[node.inputs[0]]][0]
            try:
                maps = resolved_maps(node.layer, in_sizes)
                for m in maps:  # what the boxes will cost, before they are computed
                    check_size(m.n_out, "its output")
            except RFMapError as exc:
                raise at_layer(node.name, node.op, f"{exc} (input size {list(in_sizes)})") from None
            plans.append((tuple(m.n_out for m in maps), maps))
    return plans


def axis_orders(graph: Graph, index: dict[str, int], plans: Sequence[Plan], ndim: int) -> list[tuple[int, ...]] | None:
    """Per node, the input axis each of its axes runs along (a
    :class:`~rfmap.core.permute.Permute` reorders them); ``None`` where no layer does, the
    common case.  Paths that meet must agree, or a cell would see a set that is no box; a
    1-cell map (a global branch) takes the order of the map it meets."""
    if not any(node.layer is not None and node.layer.permutation is not None for node in graph.nodes):
        return None
    orders: list[tuple[int, ...]] = []
    for node in graph.nodes:
        if node.layer is None:
            orders.append(tuple(range(ndim)))
            continue
        perm = node.layer.permutation
        parents = [index[p] for p in node.inputs]
        if perm is not None:
            orders.append(tuple(orders[parents[0]][a] for a in perm))
            continue
        maps = [p for p in parents if any(n != 1 for n in plans[p][0])] or parents[:1]
        for p in maps[1:]:
            if orders[p] != orders[maps[0]]:
                raise at_layer(node.name, node.op, f"inputs '{graph.nodes[maps[0]].name}' and '{graph.nodes[p].name}' "
                               f"hold the input's axes in different orders ({_names(orders[maps[0]])} and "
                               f"{_names(orders[p])}): a cell would see no box")
        orders.append(orders[maps[0]])
    return orders


def _names(order: Sequence[int]) -> str:
    from rfmap.core.result import axis_names

    names = axis_names(len(order))
    return ", ".join(names[a] for a in order)


def _merged_sizes(graph: Graph, node: Node, parents: Sequence[int], plans: Sequence[Plan]) -> tuple[int, ...]:
    """Inputs of a merge agree in size; add and mul also broadcast a size-1 axis (numpy rules)."""
    first = plans[parents[0]][0]
    broadcasts = node.op in ("add", "mul")
    sizes = tuple(max(plans[p][0][a] for p in parents) for a in range(len(first))) if broadcasts else first
    for p in parents:
        if any(m != n and not (broadcasts and m == 1) for m, n in zip(plans[p][0], sizes)):
            q = parents[0] if p != parents[0] else parents[1]
            raise at_layer(
                node.name,
                node.op,
                f"inputs '{graph.nodes[q].name}' {list(plans[q][0])} and "
                f"'{graph.nodes[p].name}' {list(plans[p][0])} differ in size",
            )
    return sizes


def needed_ranges(graph: Graph, index: dict[str, int], plans: Sequence[Plan]) -> list[list[Range]]:
    """Per node and axis, the cells ``[lo, hi)`` whose boxes anyone will ask about: the
    real cells, and the virtual cells that later layers read through their padding (one
    backward pass; O(1) per rule for the built-in ones).  Explicit layouts
    (:class:`~rfmap.core.periodic.Explicit`) are kept for exactly these cells."""
    need = [[(0, n) for n in sizes] for sizes, _ in plans]
    for k in range(len(graph.nodes) - 1, 0, -1):
        node = graph.nodes[k]
        sizes, maps = plans[k]
        for name in node.inputs:
            p = index[name]
            p_sizes = plans[p][0]
            perm = node.layer.permutation if node.layer is not None else None
            for a, (lo, hi) in enumerate(need[k]):
                if perm is not None:  # output axis a is the parent's axis perm[a]
                    old_lo, old_hi = need[p][perm[a]]
                    need[p][perm[a]] = (min(old_lo, lo), max(old_hi, hi))
                    continue
                if maps is not None:
                    r_lo, r_hi = maps[a].reach(lo, hi)
                elif p_sizes[a] != sizes[a]:
                    r_lo, r_hi = 0, 1  # a broadcast 1-cell axis
                else:
                    r_lo, r_hi = lo, hi
                old_lo, old_hi = need[p][a]
                need[p][a] = (min(old_lo, r_lo), max(old_hi, r_hi))
    return need
