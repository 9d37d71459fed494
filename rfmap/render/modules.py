"""The module table of a PyTorch model (torchinfo style, with receptive-field columns)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfmap.errors import RFMapError
from rfmap.render.numbers import fmt_axes, fmt_size
from rfmap.render.summary import FLAG_STYLES, NUMERIC, flags
from rfmap.render.table import Table, draw, to_markdown

MODULE_COLUMNS = ("module", "type", "output shape", "params", "output", "stride", "rf", "padding", "flags")


def render_modules(rows: Sequence[Any], fmt: str = "table", title: str = "model", color: bool | None = None) -> str:
    """A torchinfo-style table of :func:`rfmap.frontends.torch.table.module_table` rows (one per
    module, or per block at a given depth; the last row is the model's output)."""
    if fmt == "json":
        import json

        return json.dumps({"modules": [row.to_dict() for row in rows]}, indent=2)
    cells = tuple(
        (
            row.name,
            row.type,
            "x".join(str(v) for v in row.output_shape) if row.output_shape else "-",
            f"{row.params:,}",
            fmt_size(row.output_size),
            fmt_axes(row.stride),
            fmt_axes(row.rf),
            fmt_axes(row.padding),
            flags(row.geometry),
        )
        for row in rows
    )
    total = sum(row.params for row in rows)
    table = Table(f"{title} ({len(rows)} rows)", MODULE_COLUMNS, cells, NUMERIC, len(cells) - 1 if cells else None,
                  (f"parameters in the rows shown: {total:,}",), (), "flags", FLAG_STYLES)
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        raise RFMapError("--depth tables come as table, json or markdown")
    return draw([table], color)
