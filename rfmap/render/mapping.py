"""Box projections as text and JSON (``rfmap map``).

Boxes and windows are ``(x1, y1, x2, y2)``: image boxes in pixels, windows in feature cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rfmap.mapping.project import RULE_USES
from rfmap.render.numbers import fmt_number


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def map_results(boxes: Sequence[Sequence[float]], projections: Mapping[str, Any], notes: Sequence[str | None]) -> list[dict]:
    """One JSON record per (rule, box): the window, its back-projection, IoU, what the rule
    reads, and the box's note (``None`` unless it reaches outside the image)."""
    results = []
    for rule, p in projections.items():
        for k, box in enumerate(boxes):
            results.append({
                "box": [_plain(v) for v in box],
                "rule": rule,
                "uses": RULE_USES[rule],
                "window": None if p.empty[k] else [_plain(v) for v in p.window[k].tolist()],
                "back_projected": None if p.empty[k] else [_plain(v) for v in p.back[k].tolist()],
                "iou": float(p.iou[k]),
                "note": notes[k],
            })
    return results


def map_text(mapper: Any, boxes, projections: Mapping[str, Any], notes: Sequence[str | None]) -> str:
    ax_y, ax_x = mapper.axes
    kind = "" if mapper.shift_invariant else "; the RF varies by cell: center rules use each cell's exact RF"
    lines = [
        f"layer '{mapper.name}': output {ax_y.size}x{ax_x.size}, stride {fmt_number(ax_y.stride)}x{fmt_number(ax_x.stride)}, "
        f"center of cell 0 ({fmt_number(ax_y.center0)}, {fmt_number(ax_x.center0)}){kind}; "
        "boxes and windows are (x1, y1, x2, y2)"
    ]
    for r in map_results(boxes, projections, notes):
        win = "empty" if r["window"] is None else ", ".join(str(v) for v in r["window"])
        back = "-" if r["back_projected"] is None else ", ".join(str(v) for v in r["back_projected"])
        lines.append(f"  {r['rule']:<11} box ({', '.join(str(v) for v in r['box'])}) -> cells ({win})"
                     f"  back ({back})  IoU {r['iou']:.3f}")
    lines.extend(f"  note: {n}" for n in notes if n is not None)
    lines.append("  rules: " + "; ".join(f"{rule} reads {RULE_USES[rule]}" for rule in projections))
    return "\n".join(lines)
