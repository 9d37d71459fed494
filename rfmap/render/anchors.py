"""The anchor report as tables (``rfmap anchors``) or JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rfmap.errors import RFMapError
from rfmap.render.numbers import measured
from rfmap.render.table import Table, draw

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.anchors.report import AnchorReport

FORMATS = ("table", "json")


def _fmt(v: float) -> str:
    return measured(v, 6)


def _axes(values: Sequence[float], digits: int = 4) -> str:
    vals = [float(v) for v in values]
    if len(set(round(v, 9) for v in vals)) == 1:
        return f"{vals[0]:.{digits}g}"
    return "x".join(f"{v:.{digits}g}" for v in vals)


def _box(b: Sequence[float]) -> str:
    h, w = b
    return _fmt(round(h, 2)) if abs(h - w) < 1e-9 else f"{round(h, 1):g}x{round(w, 1):g}"


def anchor_tables(report: AnchorReport) -> list[Table]:
    levels_rows = []
    for lv in report.levels:
        scale = [math.sqrt(h * w) for h, w in lv.boxes]
        levels_rows.append(
            [
                lv.name,
                _axes(lv.step),
                _axes(lv.effective_stride),
                "x".join(str(n) for n in lv.feature_size),
                _axes(lv.trf),
                _axes(lv.trf_head),
                f"{_axes(lv.offset_first, 3)} / {lv.offset_max:.3g}",
                ",".join(_box(b) for b in lv.boxes) if len(lv.boxes) <= 3 else f"{len(lv.boxes)} boxes {min(scale):.4g}..{max(scale):.4g}",
                f"{min(lv.density):.3g}" + ("" if max(lv.density) - min(lv.density) < 1e-9 else f"..{max(lv.density):.3g}"),
                f"{max(max(r) for r in lv.anchor_to_trf):.2f}",
                "-" if lv.anchor_to_erf is None else f"{max(max(r) for r in lv.anchor_to_erf):.2f}",
                f"{lv.anchors:,}",
                "".join(sorted({_FLAG_MARK[f.code] for f in lv.flags})),
            ]
        )
    level_cols = ("level", "step", "stride", "map", "TRF", "TRF+head", "offset 1st/max", "anchors", "density", "a/TRF",
                  "a/ERF", "count", "flags")
    t1 = Table(
        f"{report.name}: {report.network} at {report.input_size[0]}x{report.input_size[1]}, {report.total_anchors:,} anchors",
        level_cols, tuple(tuple(r) for r in levels_rows), frozenset(level_cols[1:-1]), flag_column="flags",
    )
    t2_rows = []
    for k, g in enumerate(report.gt_sizes):
        t2_rows.append([_fmt(round(g, 2))] + [f"{counts[k]:.2f}" for _, counts in report.matches])
    t2_cols = ("gt size", *(f"IoU>={t:g}" for t, _ in report.matches))
    t2 = Table(
        f"expected anchors matched per ground-truth box ({report.method}; gt w/h = {report.gt_aspect_ratio:g})",
        t2_cols, tuple(tuple(r) for r in t2_rows), frozenset(t2_cols[1:]),
    )
    t3_rows = []
    for s in report.suggestion:
        t3_rows.append(
            [
                s.name,
                _axes(s.step),
                _fmt(round(s.size, 2)),
                _axes(s.anchor_offset, 4),
                f"{max(s.anchor_to_trf):.2f}",
                "-" if s.anchor_to_erf is None else f"{max(s.anchor_to_erf):.2f}",
                f"{s.anchors:,}",
            ]
        )
    t3_cols = ("level", "step", "size", "anchor_offset", "a/TRF", "a/ERF", "count")
    t3 = Table(f"suggested: {report.rule}", t3_cols, tuple(tuple(r) for r in t3_rows), frozenset(t3_cols[1:]))
    return [t1, t2, t3]


_FLAG_MARK = {
    "anchor_larger_than_trf": "T",
    "misaligned_centers": "C",
    "step_differs_from_stride": "S",
    "anchors_outside_image": "O",
    "uneven_density": "D",
    "few_matches": "M",
}
_LEGEND = "flags: T anchor > TRF, C centers off RF centers, S step != stride, O anchors outside the image, D uneven density"


def render_anchors(report: AnchorReport, fmt: str = "table", color: bool | None = None) -> str:
    """``"table"`` (rich when ``color`` and rich is installed, else aligned text) or ``"json"``."""
    if fmt == "json":
        return report.to_json()
    if fmt != "table":
        raise RFMapError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    footer = [_LEGEND] + [f"- {f.message}" for f in report.all_flags] + [f"note: {n}" for n in report.notes]
    return draw(anchor_tables(report), color, footer)
