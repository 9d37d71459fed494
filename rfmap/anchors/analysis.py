"""The anchor report of a configuration: geometry from the engine, anchors from the config.

Coordinates: anchors and ground-truth boxes are continuous (pixel ``i`` covers ``[i, i + 1)``);
RF centers come from the engine in the pixel-index convention and are shifted by +0.5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from rfmap.anchors.config import AnchorConfig, LevelConfig, load_config, with_heads
from rfmap.anchors.matching import expected_matches, sampled_matches
from rfmap.anchors.report import AnchorReport, Flag, LevelReport, SuggestedLevel
from rfmap.core.budget import MAX_COMPARISONS, MAX_MATCHES, Allowance
from rfmap.errors import RFMapError
from rfmap.render.numbers import measured

RULE = (
    "equal-proportion interval principle (S3FD, Zhang et al., ICCV 2017, Sec. 3.1): anchor scale = "
    "{density} x the level's effective stride, so every scale is equally dense on the image; step = "
    "effective stride; anchor_offset puts each anchor on its cell's RF center"
)


def _fmt(v: float) -> str:
    return measured(v, 6)


def _hw(box: Sequence[float]) -> str:
    return f"{_fmt(round(box[0], 2))}x{_fmt(round(box[1], 2))}"


def _pair(values: Sequence[float]) -> str:
    if len(set(round(v, 9) for v in values)) == 1:
        return _fmt(values[0])
    return "(" + ", ".join(_fmt(v) for v in values) + ")"


def _default_gt_sizes(levels: Sequence[LevelConfig]) -> tuple[float, ...]:
    scales = sorted({round(math.sqrt(h * w), 6) for lv in levels for h, w in lv.boxes})
    out = set(scales)
    for a, b in zip(scales, scales[1:]):
        out.add(round(math.sqrt(a * b), 6))
    return tuple(sorted(out))


@dataclass(frozen=True)
class _Geometry:
    """One level's lattice against its prediction layer's receptive fields."""

    pred: str
    stride: tuple[Fraction, ...]
    step: tuple[Fraction, ...]
    offset: float
    sizes: tuple[int, ...]
    c0: tuple[float, ...]
    a0: tuple[float, ...]
    first: tuple[float, ...]
    last: tuple[float, ...]
    drift: tuple[float, ...]
    trf: tuple[int, ...]
    trf_head: tuple[int, ...]

    @property
    def stepf(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.step)

    @property
    def offset_max(self) -> float:
        return max(max(abs(f), abs(g)) for f, g in zip(self.first, self.last))


def _geometry(cfg: AnchorConfig, analysis, level: LevelConfig, pred: str) -> _Geometry:
    ndim = analysis.ndim
    row = analysis.layer(pred)
    if row.input_axes is not None:
        raise RFMapError(f"level '{level.name}': layer '{pred}' holds the image's axes transposed: anchors need a map "
                         "in the image's (H, W) order")
    stride = tuple(Fraction(s) for s in row.stride)
    if any(s == 0 for s in stride):
        raise RFMapError(f"level '{level.name}': layer '{pred}' is global (no stride): no anchors on it")
    if level.step is None:
        step = stride
    else:
        step = level.step * ndim if len(level.step) == 1 else level.step
        if len(step) != ndim:
            raise RFMapError(f"level '{level.name}': stride has {len(step)} entries for {ndim} axes")
    offset = cfg.anchor_offset if level.anchor_offset is None else level.anchor_offset
    sizes = tuple(row.output_size)
    c0 = tuple(float(c) + 0.5 for c in row.center0)  # continuous
    a0 = tuple(offset * float(s) for s in step)
    first = tuple(c - a for c, a in zip(c0, a0))
    drift = tuple(float(s - p) for s, p in zip(stride, step))
    last = tuple(f + (n - 1) * d for f, n, d in zip(first, sizes, drift))
    return _Geometry(pred, stride, tuple(step), offset, sizes, c0, a0, first, last, drift,
                     tuple(analysis.layer(level.layer).rf), tuple(row.rf))


def _erf_sigma(cfg: AnchorConfig, graph, analysis, pred: str, cell) -> tuple[tuple[float, ...] | None, str]:
    """The ERF sigma at a level's center cell: the closed form, or measured when the config asks."""
    from rfmap.erf import closed_form_sigma

    if cfg.erf is None:
        try:
            return tuple(closed_form_sigma(analysis, pred, cell)), "closed-form"
        except RFMapError as exc:
            return None, f"none ({exc})"
    from rfmap.erf import erf as measure

    opts = {"n": 8, "weights": "uniform", "channels": 1, "batch_size": 8, "progress": False, **cfg.erf}
    sigma = measure(graph, layer=pred, input_size=cfg.input_size, cell=cell, **opts).sigma
    return tuple(sigma), f"measured ({opts['weights']} weights, n={opts['n']})"


def _matches(cfg: AnchorConfig, level: LevelConfig, g: _Geometry, gt_boxes, method: str, samples: int, allowance=None):
    if method == "exact":
        table = [[sum(expected_matches(gt, b, g.stepf, t) for b in level.boxes) for gt in gt_boxes] for t in cfg.iou]
    else:
        per_box = [
            [sampled_matches(gt, b, g.stepf, g.offset, g.sizes, cfg.input_size, cfg.iou, samples, allowance) for b in level.boxes]
            for gt in gt_boxes
        ]
        table = [[sum(counts[k] for counts in per_box[j]) for j in range(len(gt_boxes))] for k in range(len(cfg.iou))]
    return tuple((t, tuple(row)) for t, row in zip(cfg.iou, table))


def _level_flags(cfg: AnchorConfig, level: LevelConfig, g: _Geometry) -> list[Flag]:
    flags = []
    big = [(h, w) for h, w in level.boxes if h > g.trf_head[0] or w > g.trf_head[1]]
    if big:
        many = len(big) > 1
        flags.append(Flag(
            "anchor_larger_than_trf", level.name,
            f"level '{level.name}': anchor{'s' if many else ''} {', '.join(_hw(b) for b in big)} "
            f"{'are' if many else 'is'} larger than the TRF {g.trf_head[0]}x{g.trf_head[1]} of '{g.pred}'",
        ))
    if g.offset_max > cfg.center_tolerance:
        flags.append(Flag(
            "misaligned_centers", level.name,
            f"level '{level.name}': RF centers are off the anchor centers by up to {g.offset_max:.4g} px "
            f"(first cell {_pair(g.first)}, last cell {_pair(g.last)})",
        ))
    if any(d != 0 for d in g.drift):
        flags.append(Flag(
            "step_differs_from_stride", level.name,
            f"level '{level.name}': anchor step {_pair(g.stepf)} differs from the effective stride "
            f"{_pair(tuple(float(s) for s in g.stride))}: the offset drifts by {_pair(g.drift)} px per cell",
        ))
    ends = tuple((n - 1 + g.offset) * s for n, s in zip(g.sizes, g.stepf))
    if any(e > size or b < 0 for e, b, size in zip(ends, g.a0, cfg.input_size)):
        flags.append(Flag(
            "anchors_outside_image", level.name,
            f"level '{level.name}': anchor centers run from {_pair(g.a0)} to {_pair(ends)}, "
            f"beyond the {cfg.input_size[0]}x{cfg.input_size[1]} image",
        ))
    return flags


def _suggest(cfg: AnchorConfig, level: LevelConfig, g: _Geometry, sigma) -> SuggestedLevel:
    size = cfg.density * math.sqrt(float(g.stride[0]) * float(g.stride[1]))
    return SuggestedLevel(
        name=level.name,
        step=tuple(float(s) for s in g.stride),
        size=size,
        anchor_offset=tuple(c / float(s) for c, s in zip(g.c0, g.stride)),
        anchors=math.prod(g.sizes),
        anchor_to_trf=tuple(size / r for r in g.trf_head),
        anchor_to_erf=None if sigma is None else tuple(size / (4 * s) for s in sigma),
    )


def _level(cfg: AnchorConfig, graph, analysis, level: LevelConfig, pred: str, gt_boxes, method: str, samples: int,
           allowance=None):
    g = _geometry(cfg, analysis, level, pred)
    sigma, erf_method = _erf_sigma(cfg, graph, analysis, pred, tuple(n // 2 for n in g.sizes))
    span = None if sigma is None else tuple(4 * s for s in sigma)
    stepf = g.stepf
    report = LevelReport(
        name=level.name,
        layer=level.layer,
        prediction_layer=pred,
        step=stepf,
        effective_stride=tuple(float(s) for s in g.stride),
        feature_size=g.sizes,
        trf=g.trf,
        trf_head=g.trf_head,
        rf_center0=g.c0,
        anchor_center0=g.a0,
        anchor_offset=g.offset,
        offset_first=g.first,
        offset_last=g.last,
        offset_max=g.offset_max,
        boxes=level.boxes,
        anchors_per_cell=len(level.boxes),
        anchors=len(level.boxes) * math.prod(g.sizes),
        density=tuple(math.sqrt(h * w) / math.sqrt(stepf[0] * stepf[1]) for h, w in level.boxes),
        anchor_to_trf=tuple((h / g.trf_head[0], w / g.trf_head[1]) for h, w in level.boxes),
        erf_sigma=sigma,
        erf_span=span,
        erf_method=erf_method,
        anchor_to_erf=None if span is None else tuple((h / span[0], w / span[1]) for h, w in level.boxes),
        matches=_matches(cfg, level, g, gt_boxes, method, samples, allowance),
        flags=tuple(_level_flags(cfg, level, g)),
    )
    return report, _suggest(cfg, level, g, sigma)


def _density_flags(cfg: AnchorConfig, reports: list[LevelReport]) -> list[LevelReport]:
    """Uneven density across levels (FaceBoxes): scales much sparser than the densest one."""
    top = max(d for lv in reports for d in lv.density)
    final = []
    for lv in reports:
        extra = []
        scales: dict[float, float] = {}
        for (h, w), d in zip(lv.boxes, lv.density):
            scales.setdefault(round(math.sqrt(h * w), 6), d)
        for scale, d in scales.items():
            if d * cfg.density_tolerance < top:
                extra.append(Flag(
                    "uneven_density", lv.name,
                    f"level '{lv.name}': anchors of scale {_fmt(scale)} have density {d:.3g} against {top:.3g} "
                    f"elsewhere (FaceBoxes: densify them {max(1, round(top / d))}x)",
                ))
        final.append(replace(lv, flags=lv.flags + tuple(extra)))
    return final


def analyze_anchors(config: Any, *, method: str = "exact", samples: int = 16, **overrides: Any) -> AnchorReport:
    """The anchor report of a configuration (a path, a bundled name, a mapping or an :class:`AnchorConfig`).

    ``method``: ``"exact"`` (closed-form expected matches on an unbounded lattice) or
    ``"sampled"`` (``samples x samples`` ground-truth positions over one step, real lattice).
    ``overrides``: top-level configuration keys (see :func:`load_config`).
    """
    from rfmap.core.analysis import Analysis

    if method not in ("exact", "sampled"):
        raise RFMapError(f"method must be 'exact' or 'sampled', got {method!r}")
    cfg = load_config(config, **overrides)
    graph, outputs = with_heads(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analysis = Analysis(graph, cfg.input_size)
    notes = [str(w.message) for w in caught] + list(analysis.messages)
    if analysis.ndim != 2:
        raise RFMapError(f"anchor reports are 2-D; '{graph.name}' has {analysis.ndim} axes")
    gt_sizes = cfg.gt_sizes or _default_gt_sizes(cfg.levels)
    gt_boxes = [(g / math.sqrt(cfg.gt_aspect_ratio), g * math.sqrt(cfg.gt_aspect_ratio)) for g in gt_sizes]
    matches = sum(len(level.boxes) for level in cfg.levels) * len(gt_boxes) * len(cfg.iou)
    if matches > MAX_MATCHES:
        raise RFMapError(f"the report compares {matches:,} anchor, ground-truth and threshold triples, beyond rfmap's "
                         f"limit of {MAX_MATCHES:,} (rfmap.core.budget.MAX_MATCHES): fewer anchors or gt_sizes")
    allowance = Allowance(MAX_COMPARISONS, f"sampling matches (samples={samples})", "MAX_COMPARISONS")
    pairs = [_level(cfg, graph, analysis, level, pred, gt_boxes, method, samples, allowance)
             for level, pred in zip(cfg.levels, outputs)]
    final = _density_flags(cfg, [r for r, _ in pairs])
    totals = [(t, tuple(sum(lv.matches[k][1][g] for lv in final) for g in range(len(gt_sizes))))
              for k, t in enumerate(cfg.iou)]
    global_flags = []
    if totals:
        t0, counts = totals[0]
        global_flags = [
            Flag("few_matches", None, f"a {_fmt(round(g, 2))}-pixel ground-truth box matches {c:.3g} anchors on average "
                 f"at IoU {t0:g}")
            for g, c in zip(gt_sizes, counts) if c < 1
        ]
    return AnchorReport(
        name=cfg.name,
        network=graph.name,
        input_size=tuple(cfg.input_size),
        levels=tuple(final),
        total_anchors=sum(lv.anchors for lv in final),
        iou=tuple(cfg.iou),
        gt_sizes=tuple(gt_sizes),
        gt_aspect_ratio=cfg.gt_aspect_ratio,
        matches=tuple(totals),
        flags=tuple(global_flags),
        suggestion=tuple(s for _, s in pairs),
        rule=RULE.format(density=_fmt(cfg.density)),
        method=method,
        description=cfg.description,
        notes=tuple(dict.fromkeys(notes)),
    )
