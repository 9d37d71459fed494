"""The closed-form ERF of a linear network with uniformly averaging windows.

In a linear network whose convolutions and poolings average their window uniformly (weights
``1/fan_in``), the unit-gradient map of a cell is the distribution of a sum of independent
uniform steps, one per layer: layer ``l`` with kernel ``k_l``, dilation ``d_l`` and input jump
``J_l`` adds ``(d_l J_l)^2 (k_l^2 - 1) / 12`` to the variance per axis.  Each op's
contribution is the op registry's ``erf`` facet (:mod:`rfmap.rules.erf_moments`); a node's
state per axis is a pair of polynomials in its cell index (first and second moments), or
``None`` when the node depends on a global op.  Arithmetic is exact (``Fraction``).

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from rfmap.errors import RFMapError

__all__ = ["closed_form_moments", "closed_form_sigma"]


def _evaluate(poly, o: int) -> Fraction:
    return poly[0] + poly[1] * o + poly[2] * o * o


def _mixture(parents: list, ndim: int):
    """A merge: an equal-weight mixture of its paths (the twin's 1x1 projections keep each
    path's mass at 1); paths through a global op only add a flat background."""
    local = [s for s in parents if s is not None]
    if not local:
        return None
    return tuple(
        (
            tuple(sum(s[a][0][i] for s in local) / len(local) for i in range(3)),
            tuple(sum(s[a][1][i] for s in local) / len(local) for i in range(3)),
        )
        for a in range(ndim)
    )


def _step(node, parent, in_sizes):
    """The state after one non-merge layer (the registry's ``erf`` facet, per axis)."""
    from rfmap.core.registry import registry

    if parent is None or getattr(node.layer, "global_context", False):
        return None
    if node.layer.permutation is not None:  # axis a is the parent's axis perm[a]
        return tuple(parent[a] for a in node.layer.permutation)
    maps = node.layer.axis_maps(in_sizes)
    op = registry().for_layer(node.layer)
    contribution = None if op is None else op.erf
    out = []
    for a, m in enumerate(maps):
        moved = None if contribution is None else contribution(m, parent[a])
        if moved is None:
            raise RFMapError(
                f"layer '{node.name}' ({node.op}): no closed-form ERF for a {type(m).__name__.lower()} "
                "axis map (only convolutions, poolings, padding, cropping, pointwise ops and merges); "
                "measure it with rfmap.erf(..., weights='uniform')"
            )
        out.append(moved)
    return tuple(out)


def _target_cell(analysis, layer, cell) -> tuple[int, tuple[int, ...]]:
    names = [row.name for row in analysis.layers]
    target = names.index(analysis.layer(analysis.graph.output.name if layer is None else layer).name)
    row = analysis.layers[target]
    if cell is None:
        cell = tuple(n // 2 for n in row.output_size)
    cell = tuple(int(c) for c in cell)
    if len(cell) != len(row.output_size) or not all(0 <= c < n for c, n in zip(cell, row.output_size)):
        raise RFMapError(f"cell {list(cell)} is outside layer '{row.name}' of size {list(row.output_size)}")
    return target, cell


def closed_form_moments(
    source: Any, layer: str | int | None = None, cell: Sequence[int] | None = None, input_size: Any = None
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    """Exact ``(mean, variance)`` per input axis of the unit-gradient map of a cell (see
    :func:`closed_form_sigma`; ``cell`` in the layer's own axis order)."""
    from rfmap.core.analysis import Analysis

    if isinstance(source, Analysis):
        analysis = source
    else:
        from rfmap import analyze

        analysis = analyze(source, input_size)
    graph = analysis.graph
    target, cell = _target_cell(analysis, layer, cell)
    # the ancestors of the target, in topological order
    index = {row.name: i for i, row in enumerate(analysis.layers)}
    needed = {target}
    for k in range(target, 0, -1):
        if k in needed:
            needed.update(index[p] for p in graph.nodes[k].inputs)
    ndim = analysis.ndim
    one, zero = Fraction(1), Fraction(0)
    states: dict[int, Any] = {0: tuple(((zero, one, zero), (zero, zero, one)) for _ in range(ndim))}
    for k in sorted(needed - {0}):
        node = graph.nodes[k]
        parents = [states[index[p]] for p in node.inputs]
        assert node.layer is not None  # only the input has none (Graph checks it)
        if node.layer.merge:
            states[k] = _mixture(parents, ndim)
        else:
            states[k] = _step(node, parents[0], analysis.layers[index[node.inputs[0]]].output_size)
    final = states[target]
    if final is None:
        row = analysis.layers[target]
        raise RFMapError(f"layer '{row.name}' ({row.op}) depends on a global op: its ERF is the whole input")
    means = [_evaluate(final[a][0], cell[a]) for a in range(ndim)]
    variances = [_evaluate(final[a][1], cell[a]) - means[a] ** 2 for a in range(ndim)]
    order = analysis.layers[target].input_axes
    if order is not None:  # per input axis, as the measured map
        back = [order.index(b) for b in range(ndim)]
        means, variances = [means[a] for a in back], [variances[a] for a in back]
    return tuple(means), tuple(variances)


def closed_form_sigma(
    source: Any, layer: str | int | None = None, cell: Sequence[int] | None = None, input_size: Any = None
) -> tuple[float, ...]:
    """Predicted ERF sigma per axis: ``sigma^2 = sum_l (d_l J_l)^2 (k_l^2 - 1) / 12``.

    ``source``: an :class:`~rfmap.Analysis` or anything :func:`rfmap.analyze` takes (then
    ``input_size`` as there); ``layer``: default the network's output; ``cell``: default
    the center cell ``n // 2`` per axis.

    Exact for the unit-gradient map of a linear network whose convolutions and poolings
    weight their ``k`` taps equally (``weights="uniform"`` in :func:`erf`, max pooling as
    average pooling), away from the borders (the input taken as unbounded).  ``J_l`` is the
    jump of layer ``l``'s input; strides enter through it, dilations through ``d_l``.
    Merges (a residual ``add``, a ``concat``) are equal-weight mixtures of their paths, so
    the result also holds for multi-path networks -- the variance of a mixture, including
    the spread of its paths' centers when they are misaligned; paths through a global op
    (squeeze-excitation) are left out.  Upsampling, transposed convolutions, pixel
    shuffles and adaptive pooling have no closed form here: they raise
    :class:`~rfmap.errors.RFMapError`.
    """
    _, variances = closed_form_moments(source, layer, cell, input_size)
    return tuple(math.sqrt(float(v)) for v in variances)
