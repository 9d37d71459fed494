"""Rendering: every table and number rfmap prints, from immutable results.

:mod:`rfmap.render.numbers` is the one number formatter, :mod:`rfmap.render.table` the one
table model with its text, rich and Markdown renderers; the other modules turn one kind of
result into tables: :mod:`~rfmap.render.summary` (an analysis), :mod:`~rfmap.render.modules`
(a PyTorch module table), :mod:`~rfmap.render.anchors`, :mod:`~rfmap.render.erf`,
:mod:`~rfmap.render.zoo`.  Rendering never computes geometry.
"""

from __future__ import annotations

from rfmap.render.erf import erf_text
from rfmap.render.modules import MODULE_COLUMNS, render_modules
from rfmap.render.numbers import fmt_axes, fmt_number, fmt_size, measured, measured_axes
from rfmap.render.summary import (
    COLUMNS,
    FLAG_LEGEND,
    FORMATS,
    NUMERIC,
    flags,
    render,
    render_csv,
    render_json,
    row_cells,
    select_layers,
    summary_line,
    summary_table,
    to_dict,
)
from rfmap.render.table import Table, color_wanted, draw

__all__ = [
    "COLUMNS", "FLAG_LEGEND", "FORMATS", "erf_text", "MODULE_COLUMNS", "NUMERIC", "Table", "color_wanted", "draw", "flags",
    "fmt_axes", "fmt_number", "fmt_size", "measured", "measured_axes", "render", "render_csv", "render_json",
    "render_modules", "row_cells", "select_layers", "summary_line", "summary_table", "to_dict",
]
