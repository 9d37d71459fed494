"""The anchor report: immutable results, one :class:`LevelReport` per detection level."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rfmap.errors import RFMapError


@dataclass(frozen=True)
class Flag:
    """A problem found in a configuration: ``code`` (stable, for scripts) and a sentence."""

    code: str
    level: str | None
    message: str


@dataclass(frozen=True)
class LevelReport:
    """One detection level (see the module docstring for every quantity).

    Per-axis tuples are in (H, W) order; anchor boxes are ``(h, w)``; centers and offsets
    in continuous coordinates (pixel ``i`` covers ``[i, i + 1)``).
    """

    name: str
    layer: str
    prediction_layer: str
    step: tuple[float, ...]
    effective_stride: tuple[float, ...]
    feature_size: tuple[int, ...]
    trf: tuple[int, ...]
    trf_head: tuple[int, ...]
    rf_center0: tuple[float, ...]
    anchor_center0: tuple[float, ...]
    anchor_offset: float
    offset_first: tuple[float, ...]
    offset_last: tuple[float, ...]
    offset_max: float
    boxes: tuple[tuple[float, float], ...]
    anchors_per_cell: int
    anchors: int
    density: tuple[float, ...]
    anchor_to_trf: tuple[tuple[float, float], ...]
    erf_sigma: tuple[float, ...] | None
    erf_span: tuple[float, ...] | None
    erf_method: str
    anchor_to_erf: tuple[tuple[float, float], ...] | None
    matches: tuple[tuple[float, tuple[float, ...]], ...]  # (iou, expected count per gt size)
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class SuggestedLevel:
    """A level re-designed by the equal-proportion interval principle."""

    name: str
    step: tuple[float, ...]
    size: float
    anchor_offset: tuple[float, ...]
    anchors: int
    anchor_to_trf: tuple[float, ...]
    anchor_to_erf: tuple[float, ...] | None


@dataclass(frozen=True)
class AnchorReport:
    name: str
    network: str
    input_size: tuple[int, ...]
    levels: tuple[LevelReport, ...]
    total_anchors: int
    iou: tuple[float, ...]
    gt_sizes: tuple[float, ...]
    gt_aspect_ratio: float
    matches: tuple[tuple[float, tuple[float, ...]], ...]  # totals over levels
    flags: tuple[Flag, ...]
    suggestion: tuple[SuggestedLevel, ...]
    rule: str
    method: str
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    def level(self, name: str) -> LevelReport:
        for lv in self.levels:
            if lv.name == name or lv.layer == name:
                return lv
        raise RFMapError(f"no level named '{name}' (levels: {', '.join(lv.name for lv in self.levels)})")

    @property
    def all_flags(self) -> tuple[Flag, ...]:
        return tuple(f for lv in self.levels for f in lv.flags) + self.flags

    def to_dict(self) -> dict:
        def level_dict(lv: LevelReport) -> dict:
            return {
                "name": lv.name,
                "layer": lv.layer,
                "prediction_layer": lv.prediction_layer,
                "step": list(lv.step),
                "effective_stride": list(lv.effective_stride),
                "feature_size": list(lv.feature_size),
                "trf": list(lv.trf),
                "trf_head": list(lv.trf_head),
                "rf_center0": list(lv.rf_center0),
                "anchor_center0": list(lv.anchor_center0),
                "anchor_offset": lv.anchor_offset,
                "offset_first": list(lv.offset_first),
                "offset_last": list(lv.offset_last),
                "offset_max": lv.offset_max,
                "boxes": [list(b) for b in lv.boxes],
                "anchors_per_cell": lv.anchors_per_cell,
                "anchors": lv.anchors,
                "density": list(lv.density),
                "anchor_to_trf": [list(r) for r in lv.anchor_to_trf],
                "erf_sigma": None if lv.erf_sigma is None else list(lv.erf_sigma),
                "erf_span": None if lv.erf_span is None else list(lv.erf_span),
                "erf_method": lv.erf_method,
                "anchor_to_erf": None if lv.anchor_to_erf is None else [list(r) for r in lv.anchor_to_erf],
                "matches": {str(t): list(v) for t, v in lv.matches},
                "flags": [{"code": f.code, "message": f.message} for f in lv.flags],
            }

        return {
            "name": self.name,
            "network": self.network,
            "input_size": list(self.input_size),
            "total_anchors": self.total_anchors,
            "iou": list(self.iou),
            "gt_sizes": list(self.gt_sizes),
            "gt_aspect_ratio": self.gt_aspect_ratio,
            "method": self.method,
            "levels": [level_dict(lv) for lv in self.levels],
            "matches": {str(t): list(v) for t, v in self.matches},
            "flags": [{"code": f.code, "level": f.level, "message": f.message} for f in self.all_flags],
            "suggestion": {
                "rule": self.rule,
                "levels": [
                    {
                        "name": s.name,
                        "step": list(s.step),
                        "size": s.size,
                        "anchor_offset": list(s.anchor_offset),
                        "anchors": s.anchors,
                        "anchor_to_trf": list(s.anchor_to_trf),
                        "anchor_to_erf": None if s.anchor_to_erf is None else list(s.anchor_to_erf),
                    }
                    for s in self.suggestion
                ],
            },
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
