"""A feature pyramid's level report as tables (``rfmap levels``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfmap.render.numbers import fmt_axes, fmt_size, measured, measured_axes
from rfmap.render.table import Table, draw

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.mapping.pyramid import Pyramid


def pyramid_tables(p: Pyramid) -> list[Table]:
    cols = ("level", "k", "map", "stride", "TRF", "TRF backbone", "ERF sigma")
    rows = tuple(
        (lv.name, str(lv.k), fmt_size(lv.output_size), fmt_axes(lv.stride), fmt_axes(lv.trf),
         "-" if lv.trf_backbone is None else fmt_axes(lv.trf_backbone),
         "-" if lv.erf_sigma is None else measured_axes(lv.erf_sigma))
        for lv in p.levels
    )
    tables = [Table(f"{p.network} at {fmt_size(p.input_size)}: {len(p.levels)} levels", cols, rows, frozenset(cols[1:]),
                    footer=("TRF: through the whole network (top-down path included); TRF backbone: bottom-up path only; "
                            "ERF sigma: closed form (linear network, uniform weights), where one exists",))]
    if p.assignments:
        rules = tuple(p.assignments[0].levels)
        a_cols = ("box (x1, y1, x2, y2)", "size", *rules)
        a_rows = tuple(
            (", ".join(measured(v, 6) for v in a.box), measured(a.size, 5), *(a.levels[r] or "-" for r in rules))
            for a in p.assignments
        )
        tables.append(Table("level of each box: sqrt(w h) by each library's rule", a_cols, a_rows, frozenset({"size"})))
    return tables


def render_pyramid(p: Pyramid, fmt: str = "table", color: bool | None = None) -> str:
    import json

    if fmt == "json":
        return json.dumps(p.to_dict(), indent=2)
    return draw(pyramid_tables(p), color, [f"note: {n}" for n in p.notes])
