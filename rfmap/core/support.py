"""Exact supports: the input pixels that influence a cell, found by propagating per-axis index
sets back through the real maps (:meth:`rfmap.core.analysis.Analysis.support`).

Coordinates follow the pixel-index convention; a support is one sorted index array per input
axis, in the input's axis order (H, W), whatever order the cell's own map holds its axes in.
Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rfmap.core.graph import Graph

#: one box-shaped piece of a support: a boolean mask per axis of the map it lies on
Product = tuple[np.ndarray, ...]


def support_sets(graph: Graph, index: dict[str, int], states: Sequence[Any], k: int, cell: tuple[int, ...],
                 exclude_global: bool) -> tuple[np.ndarray, ...]:
    """The support of ``cell`` of node ``k``: per input axis, the sorted input pixels.

    ``states``: the analysis' per-node states (``sizes``, ``maps``, ``is_global``); a union of
    products of per-axis masks is carried back node by node (each path's own product, pruned
    where one contains another), so the result is the projection per axis of the exact
    support, as the input gradient of the cell shows it."""
    nodes = graph.nodes
    start = []
    for n, i in zip(states[k].sizes, cell):
        m = np.zeros(n, dtype=bool)
        m[i] = True
        start.append(m)
    pending: dict[int, list[Product]] = {k: [tuple(start)]}
    for j in range(k, 0, -1):
        products = pending.pop(j, None)
        if not products:
            continue
        node, state = nodes[j], states[j]
        parents = [index[p] for p in node.inputs]
        if exclude_global and state.maps is None and not all(states[p].is_global for p in parents):
            parents = [p for p in parents if not states[p].is_global]
        if state.maps is None:
            moved = products
            for p in parents:  # a broadcast (size-1) axis of a merge input: its one cell
                sizes = states[p].sizes
                if sizes != state.sizes:
                    narrowed = [
                        tuple(m if n == len(m) else np.array([m.any()]) for m, n in zip(prod, sizes)) for prod in products
                    ]
                    pending[p] = _prune(pending.get(p, []) + narrowed)
            parents = [p for p in parents if states[p].sizes == state.sizes]
        elif (perm := node.layer.permutation if node.layer is not None else None) is not None:
            back = np.argsort(perm)  # axis a of the node is the parent's axis perm[a]
            moved = [tuple(prod[a] for a in back) for prod in products]
        else:
            moved = []
            for prod in products:
                masks = tuple(m.support(mask) for m, mask in zip(state.maps, prod))
                if all(mask.any() for mask in masks):
                    moved.append(masks)
        for p in parents:
            pending[p] = _prune(pending.get(p, []) + moved)
    products = pending.get(0, [])
    return tuple(
        np.flatnonzero(np.logical_or.reduce([prod[a] for prod in products])) if products else np.zeros(0, dtype=np.int64)
        for a in range(len(states[0].sizes))
    )


def _prune(products: list[Product]) -> list[Product]:
    """Drop products contained in another one (the union stays the same)."""
    kept: list[Product] = []
    for i, p in enumerate(products):
        subsumed = False
        for j, q in enumerate(products):
            if i == j:
                continue
            inside = all(not (pa & ~qa).any() for pa, qa in zip(p, q))
            if inside and (j < i or not all(not (qa & ~pa).any() for pa, qa in zip(p, q))):
                subsumed = True
                break
        if not subsumed:
            kept.append(p)
    return kept
