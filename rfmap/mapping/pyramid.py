"""Feature pyramids: which level a box goes to, and what each level sees.

For the levels of a feature pyramid (by default the outputs of a model with a stride, finest
first), :func:`pyramid` reports per level its effective stride, the FPN level number
``k`` (``stride = 2**k``, as torchvision infers it from the feature and image heights), the
theoretical receptive field through the whole network (the top-down path included) and
along the backbone path alone (every path through an upsampling left out -- RFLA's "TRF along
the backbone", Xu et al. 2022), and, where it exists, the closed-form ERF sigma.  Given boxes
(``(x1, y1, x2, y2)``, image pixels) or box sizes, it assigns each to a level under every rule
of :mod:`rfmap.mapping.levels` (torchvision's ``LevelMapper``, detectron2's
``assign_boxes_to_levels``, mmdetection's ``finest_scale``).

Receptive fields are per axis in (H, W) order, pixel-index convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from rfmap.core.graph import Graph, Node
from rfmap.core.layers import Pointwise
from rfmap.errors import RFMapError
from rfmap.mapping.levels import RULES, assign_levels, infer_scales


@dataclass(frozen=True)
class Level:
    """One level of the pyramid."""

    name: str
    k: int
    output_size: tuple[int, ...]
    stride: tuple[Fraction, ...]
    trf: tuple[int, ...]
    trf_backbone: tuple[int, ...] | None
    erf_sigma: tuple[float, ...] | None


@dataclass(frozen=True)
class Assignment:
    """The level of one box under each rule (``None``: the rule gives it no level)."""

    box: tuple[float, float, float, float]
    size: float
    levels: dict[str, str | None]


@dataclass(frozen=True)
class Pyramid:
    network: str
    input_size: tuple[int, ...]
    levels: tuple[Level, ...]
    assignments: tuple[Assignment, ...]
    notes: tuple[str, ...] = ()

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise RFMapError(f"no level named '{name}' (levels: {', '.join(lv.name for lv in self.levels)})")

    def to_dict(self) -> dict[str, Any]:
        from rfmap.core.result import json_number

        return {
            "network": self.network,
            "input_size": list(self.input_size),
            "levels": [
                {
                    "name": lv.name, "k": lv.k, "output_size": list(lv.output_size),
                    "stride": [json_number(s) for s in lv.stride], "trf": list(lv.trf),
                    "trf_backbone": None if lv.trf_backbone is None else list(lv.trf_backbone),
                    "erf_sigma": None if lv.erf_sigma is None else list(lv.erf_sigma),
                }
                for lv in self.levels
            ],
            "assignments": [{"box": list(a.box), "size": a.size, "levels": dict(a.levels)} for a in self.assignments],
            "notes": list(self.notes),
        }


def backbone_graph(analysis) -> Graph:
    """The graph with every path through an upsampling (a layer whose stride is below 1 on
    some axis: interpolation, transposed convolution, pixel shuffle) left out where it merges
    with a path that has none: the FPN top-down pathway removed, the bottom-up one kept."""
    graph = analysis.graph
    up: dict[str, bool] = {graph.nodes[0].name: False}
    nodes = [graph.nodes[0]]
    for node in graph.nodes[1:]:
        layer = node.layer
        if layer.merge:
            kept = tuple(p for p in node.inputs if not up[p]) or node.inputs
            up[node.name] = all(up[p] for p in kept)
            if len(kept) == 1:
                layer = Pointwise(op=node.op)
            nodes.append(Node(node.name, layer, kept))
            continue
        maps = layer.axis_maps(analysis.layer(node.inputs[0]).output_size)
        up[node.name] = up[node.inputs[0]] or any(m.stride < 1 for m in maps)
        nodes.append(node)
    return Graph(tuple(nodes), f"{graph.name} (bottom-up path)", graph.input_size, graph.notes, graph.aliases, graph.outputs)


def _default_levels(analysis) -> list[str]:
    """The outputs with a stride, finest first, by the names the model gives them."""
    names = [name for name, row in zip(analysis.outputs, analysis.output_rows()) if all(s != 0 for s in row.stride)]
    if not names:
        raise RFMapError(f"'{analysis.graph.name}' has no output with a stride: name the levels")
    return sorted(names, key=lambda n: max(analysis.layer(n).stride))


def _boxes(boxes: Any, sizes: Any) -> np.ndarray:
    rows = []
    if boxes is not None:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(b).all():
            raise RFMapError("boxes must be finite numbers (x1, y1, x2, y2)")
        rows.append(b)
    if sizes is not None:
        s = np.asarray(sizes, dtype=np.float64).reshape(-1)
        if not np.isfinite(s).all() or (s <= 0).any():
            raise RFMapError(f"box sizes must be positive numbers, got {s.tolist()}")
        rows.append(np.stack([np.zeros_like(s), np.zeros_like(s), s, s], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 4))


def pyramid(source: Any, levels: Sequence[str] | None = None, *, boxes: Any = None, sizes: Any = None,
            input_size: Any = None, rules: Sequence[str] = RULES) -> Pyramid:
    """The level report of a pyramid (see the module docstring).

    ``source``: an :class:`~rfmap.Analysis` or anything :func:`rfmap.analyze` takes;
    ``levels``: layer names, finest first (default: the outputs that have a stride);
    ``boxes``: ``[N, 4]`` ``(x1, y1, x2, y2)`` image boxes; ``sizes``: square box sides;
    ``rules``: the level rules to apply.
    """
    from rfmap import analyze
    from rfmap.core.analysis import Analysis
    from rfmap.erf import closed_form_sigma

    analysis = source if isinstance(source, Analysis) else analyze(source, input_size)
    if analysis.ndim != 2:
        raise RFMapError(f"feature pyramids are 2-D; '{analysis.graph.name}' has {analysis.ndim} axes")
    names = list(levels) if levels else _default_levels(analysis)
    rows = [analysis.layer(n) for n in names]
    if any(s == 0 for r in rows for s in r.stride):
        raise RFMapError("a level sees the whole input (stride 0): it has no place in a pyramid")
    scales, k_min, k_max = infer_scales([r.output_size for r in rows], [analysis.input_size])
    backbone = Analysis(backbone_graph(analysis), analysis.input_size)
    notes = list(dict.fromkeys(backbone.messages))
    out = []
    for name, row, scale in zip(names, rows, scales):
        k = int(round(-math.log2(scale)))
        if any(s != 2**k for s in row.stride):
            notes.append(f"level '{name}': stride {[str(s) for s in row.stride]} is not 2**{k}, the level torchvision infers")
        try:
            sigma = tuple(closed_form_sigma(analysis, row.name))
        except RFMapError:
            sigma = None
        try:
            trf_backbone = tuple(backbone.layer(row.name).rf)
        except RFMapError:
            trf_backbone = None
        out.append(Level(name, k, tuple(row.output_size), tuple(row.stride), tuple(row.rf), trf_backbone, sigma))
    if [lv.k for lv in out] != list(range(k_min, k_max + 1)):
        notes.append(f"levels {[lv.k for lv in out]} are not consecutive from {k_min} to {k_max}: rules index them in order")
    b = _boxes(boxes, sizes)
    assigned = {}
    for rule in rules:
        if rule not in RULES:
            raise RFMapError(f"unknown level rule {rule!r}; rules: {', '.join(RULES)}")
        assigned[rule] = assign_levels(b, k_min, k_max, rule) if len(b) else np.zeros(0, dtype=np.int64)
    assignments = []
    for i, box in enumerate(b.tolist()):
        size = math.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 0.0))
        per = {rule: (out[int(idx[i])].name if 0 <= int(idx[i]) < len(out) else None) for rule, idx in assigned.items()}
        assignments.append(Assignment(tuple(box), size, per))
    return Pyramid(analysis.graph.name, tuple(analysis.input_size), tuple(out), tuple(assignments), tuple(notes))
