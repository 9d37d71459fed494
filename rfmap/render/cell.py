"""One cell as text: its theoretical box, support and center (``rfmap cell``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rfmap.render.numbers import fmt_axes, fmt_number, fmt_size

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.core.analysis import Analysis


def axis_letters(ndim: int) -> tuple[str, ...]:
    return {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}.get(ndim) or tuple(f"axis{a}" for a in range(ndim))


def cell_text(analysis: Analysis, layer, index: Sequence[int]) -> str:
    """The lines ``rfmap cell`` prints; boxes inclusive, pixel-index convention."""
    data = analysis.cell_dict(layer, index)
    row = analysis.layer(layer)
    d = analysis.ndim
    axes = axis_letters(d)

    def spans(box) -> str:
        return ", ".join(f"{axes[a]} {box[a]}..{box[a + d]}" for a in range(d))

    box, support = data["box"], data["support"]
    size = [box[a + d] - box[a] + 1 for a in range(d)]
    center = analysis.center(layer, index)
    where = "(" + ", ".join(str(v) for v in index) + ")"
    lines = [
        f"{analysis.graph.name} at input {fmt_size(analysis.input_size)}: "
        f"layer '{row.name}' ({row.op}, output {fmt_size(row.output_size)}), cell {where}",
        f"  rf box   {spans(box)}  ({fmt_size(size)}, unclipped: may reach into padding)",
        "  support  "
        + (f"{spans(support)}  (bounding box of the input pixels that influence the cell)" if support else "none: the cell sees only padding"),
        f"  center   {', '.join(f'{axes[a]} {fmt_number(c)}' for a, c in enumerate(center))}",
        f"  layer    rf {fmt_axes(row.rf)}, stride {fmt_axes(row.stride)}, padding {fmt_axes(row.padding)}"
        + ("" if row.input_axes is None else f" (its axes are the input's {', '.join(axes[a] for a in row.input_axes)})"),
    ]
    return "\n".join(lines)
