"""Rendering: every table and number rfmap prints, from immutable results.

:mod:`rfmap.render.numbers` is the one number formatter, :mod:`rfmap.render.table` the one
table model with its text, rich and Markdown renderers; the other modules turn one kind of
result into tables: :mod:`~rfmap.render.summary` (an analysis), :mod:`~rfmap.render.modules`
(a PyTorch module table), :mod:`~rfmap.render.anchors`, :mod:`~rfmap.render.erf`,
:mod:`~rfmap.render.zoo`.  Rendering never computes geometry.

The names below are imported on first use, so printing one kind of result loads the
renderers of that kind only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfmap._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
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

#: the renderers' public names, by the module of :mod:`rfmap.render` that holds them
_MODULES = {
    "erf": ("erf_text",),
    "modules": ("MODULE_COLUMNS", "render_modules"),
    "numbers": ("fmt_axes", "fmt_number", "fmt_size", "measured", "measured_axes"),
    "summary": ("COLUMNS", "FLAG_LEGEND", "FORMATS", "NUMERIC", "flags", "render", "render_csv", "render_json",
                "row_cells", "select_layers", "summary_line", "summary_table", "to_dict"),
    "table": ("Table", "color_wanted", "draw"),
}

__all__ = [
    "COLUMNS", "FLAG_LEGEND", "FORMATS", "erf_text", "MODULE_COLUMNS", "NUMERIC", "Table", "color_wanted", "draw", "flags",
    "fmt_axes", "fmt_number", "fmt_size", "measured", "measured_axes", "render", "render_csv", "render_json",
    "render_modules", "row_cells", "select_layers", "summary_line", "summary_table", "to_dict",
]

__getattr__ = lazy_attributes(__name__, globals(), {
    name: (f"{__name__}.{module}", name) for module, names in _MODULES.items() for name in names
})


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
