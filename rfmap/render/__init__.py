"""Rendering of an :class:`~rfmap.core.analysis.Analysis`: a table, JSON, CSV or Markdown.

Rendering only reads the immutable per-layer results (:class:`~rfmap.core.result.LayerGeometry`);
it never computes geometry.  Values follow the pixel-index convention of :mod:`rfmap.core.result`:
``padding`` is the effective padding ``P`` of cell 0 and ``center0`` the center of cell 0's
receptive-field box, in input pixels.

Per-axis values are shown once when every axis agrees (``rf 212``) and as ``HxW`` when they
differ (``rf 7x11``); fractional strides and centers are written ``1/2``.

Flags (table and Markdown):

* ``*`` -- not shift-invariant: the RF differs from cell to cell (after upsampling, a
  transposed convolution, adaptive pooling); the largest RF is shown.
* ``!`` -- misaligned: paths merged at or before this layer disagree on stride or center
  (see ``analysis.messages``).
* ``g`` -- global context: the layer sees the output of a global op (global pooling,
  squeeze-excitation, a fully connected layer), so every cell depends on the whole input.

The table is drawn with ``rich`` when colour is wanted and ``rich`` is installed; otherwise
(``color=False``, output that is not a terminal, ``NO_COLOR`` set, or no ``rich``) it is plain
aligned text, which is also what the golden-file tests compare.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from rfmap.errors import RFMapError
from rfmap.core.result import LayerGeometry, axis_names, fmt_number, json_number

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.core.analysis import Analysis

FORMATS = ("table", "json", "csv", "markdown")

COLUMNS = ("layer", "op", "output", "stride", "rf", "padding", "center0", "flags")
#: Columns whose values are numbers (right-aligned).
NUMERIC = frozenset({"output", "stride", "rf", "padding", "center0", "params", "output shape"})

FLAG_LEGEND = {
    "*": "rf varies by cell (largest shown)",
    "!": "misaligned paths",
    "g": "global context",
}


# -- values -----------------------------------------------------------------------------


def fmt_axes(values: Sequence[Fraction | int]) -> str:
    """One value when every axis agrees, else ``HxW`` (``DxHxW`` in 3-D)."""
    texts = [fmt_number(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def fmt_size(values: Sequence[int]) -> str:
    """A map size, always every axis: ``224x224``."""
    return "x".join(str(int(v)) for v in values)


def flags(row: LayerGeometry) -> str:
    return ("" if row.shift_invariant else "*") + ("" if row.aligned else "!") + ("g" if row.global_context else "")


# -- selection --------------------------------------------------------------------------


def select_layers(analysis: "Analysis", layers: str | Iterable[str] | None = None) -> list[LayerGeometry]:
    """The layers (input row excluded) whose names match any of the glob patterns.

    ``layers``: ``None`` for all, or fnmatch-style patterns, comma-separated in one string
    (``"conv5*,pool5"``) or given as a list.  Matching is case-sensitive; rows stay in
    network order.  A pattern may also match an alias of a layer (a PyTorch container
    module such as ``layer4`` names its last node).  A pattern that matches no layer raises
    :class:`RFMapError`.
    """
    rows = list(analysis.layers[1:])
    if layers is None:
        return rows
    known: dict[str, list[str]] = {row.name: [row.name] for row in rows}
    for alias, target in analysis.graph.aliases:
        known.setdefault(target, []).append(alias)

    def matches(row: LayerGeometry, pattern: str) -> bool:
        return any(fnmatchcase(name, pattern) for name in known.get(row.name, [row.name]))

    parts = layers.split(",") if isinstance(layers, str) else list(layers)
    patterns = [p.strip() for p in parts if p and p.strip()]
    if not patterns:
        raise RFMapError(f"--layers: no pattern given in {layers!r}")
    for pattern in patterns:
        if not any(matches(row, pattern) for row in rows):
            names = [row.name for row in rows]
            shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
            raise RFMapError(f"layer pattern '{pattern}' matches no layer of '{analysis.graph.name}' (layers: {shown})")
    return [row for row in rows if any(matches(row, p) for p in patterns)]


# -- the table model --------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    title: str
    rows: tuple[tuple[str, ...], ...]
    output_row: int | None  # index in rows of the network's output, if shown
    footer: tuple[str, ...]
    warnings: tuple[str, ...]
    columns: tuple[str, ...] = COLUMNS


def row_cells(row: LayerGeometry) -> tuple[str, ...]:
    """The cells of one row of the table, in :data:`COLUMNS` order."""
    return (
        row.name,
        row.op,
        fmt_size(row.output_size),
        fmt_axes(row.stride),
        fmt_axes(row.rf),
        fmt_axes(row.padding),
        fmt_axes(row.center0),
        flags(row),
    )


def _model(analysis: "Analysis", layers) -> _Table:
    selected = select_layers(analysis, layers)
    out = analysis.output
    n_layers = len(analysis.layers) - 1
    shown = f", {len(selected)} shown" if layers is not None else ""
    title = f"{analysis.graph.name} (input {fmt_size(analysis.input_size)}, {n_layers} layer{'s' if n_layers != 1 else ''}{shown})"
    output_row = next((i for i, row in enumerate(selected) if row is out), None)
    summary = summary_line(analysis)
    used = "".join(flags(row) for row in selected)
    legend = "   ".join(f"{f} {text}" for f, text in FLAG_LEGEND.items() if f in used)
    footer = (summary,) + ((f"flags: {legend}",) if legend else ())
    return _Table(title, tuple(row_cells(r) for r in selected), output_row, footer, tuple(analysis.messages))


def summary_line(analysis: "Analysis") -> str:
    """One line on the network's output: size, rf, stride, padding, center0 and notes."""
    out = analysis.output
    summary = (
        f"output '{out.name}' {fmt_size(out.output_size)}: rf {fmt_axes(out.rf)}, stride {fmt_axes(out.stride)}, "
        f"padding {fmt_axes(out.padding)}, center0 {fmt_axes(out.center0)}"
    )
    notes = []
    if not out.shift_invariant:
        notes.append("rf varies by cell, largest shown")
    if out.global_context:
        notes.append("global context")
    if not out.aligned:
        notes.append("misaligned paths")
    return summary + (f" ({'; '.join(notes)})" if notes else "")


# -- renderers --------------------------------------------------------------------------


def render(analysis: "Analysis", fmt: str = "table", layers: str | Iterable[str] | None = None, color: bool | None = None) -> str:
    """The analysis as text.

    ``fmt``: ``"table"`` (for people), ``"json"`` (``analysis.to_dict()`` with only the
    selected layers), ``"csv"`` (one row per layer, per-axis columns ``rf_h, rf_w``, ...) or
    ``"markdown"`` (a GitHub table).  ``layers``: glob patterns selecting rows, see
    :func:`select_layers`.  ``color``: ``None`` to colour only when stdout is a terminal
    (and ``NO_COLOR`` is unset), ``True``/``False`` to force; only the table uses colour.
    The result ends without a newline.
    """
    if fmt == "table":
        model = _model(analysis, layers)
        if color is None:
            color = _stdout_is_color_terminal()
        if color:
            try:
                return _rich_table(model)
            except ImportError:
                pass
        return _plain_table(model)
    if fmt == "json":
        return render_json(analysis, layers)
    if fmt == "csv":
        return render_csv(analysis, layers)
    if fmt == "markdown":
        return _markdown(_model(analysis, layers))
    raise RFMapError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")


def _stdout_is_color_terminal() -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def to_dict(analysis: "Analysis", layers: str | Iterable[str] | None = None) -> dict:
    """``analysis.to_dict()`` keeping only the selected layers."""
    data = analysis.to_dict()
    if layers is not None:
        keep = {row.name for row in select_layers(analysis, layers)}
        data["layers"] = [entry for entry in data["layers"] if entry["name"] in keep]
    return data


def render_json(analysis: "Analysis", layers: str | Iterable[str] | None = None) -> str:
    return json.dumps(to_dict(analysis, layers), indent=2)


def render_csv(analysis: "Analysis", layers: str | Iterable[str] | None = None) -> str:
    """Header plus one row per layer; per-axis columns (``rf_h, rf_w``); fractions as floats."""
    rows = select_layers(analysis, layers)
    suffixes = [name.lower() for name in axis_names(analysis.ndim)]
    per_axis = ("output", "stride", "rf", "padding", "center0")
    header = ["layer", "op"] + [f"{col}_{s}" for col in per_axis for s in suffixes]
    header += ["shift_invariant", "aligned", "global_context"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values = (row.output_size, row.stride, row.rf, row.padding, row.center0)
        writer.writerow(
            [row.name, row.op]
            + [json_number(v) for vals in values for v in vals]
            + [str(row.shift_invariant).lower(), str(row.aligned).lower(), str(row.global_context).lower()]
        )
    return buf.getvalue().rstrip("\n")


def _plain_table(model: _Table) -> str:
    """Aligned text; the output row sits below a rule of its own."""
    widths = [len(c) for c in model.columns]
    for cells in model.rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if col in NUMERIC else c.ljust(w) for col, c, w in zip(model.columns, cells, widths)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [model.title, "", line(model.columns), rule]
    for i, cells in enumerate(model.rows):
        if i == model.output_row and i > 0:
            lines.append(rule)
        lines.append(line(cells))
    if not model.rows:
        lines.append("(no layers)")
    lines.append("")
    lines.extend(model.footer)
    lines.extend(f"warning: {msg}" for msg in model.warnings)
    return "\n".join(lines)


def _rich_table(model: _Table) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    flag_styles = {"*": "yellow", "!": "bold red", "g": "cyan"}

    def flag_text(text: str) -> Text:
        out = Text()
        for f in text:
            out.append(f, style=flag_styles.get(f, ""))
        return out

    # The network's output is always the last row when it is shown: it goes in the footer,
    # below a rule, in bold.
    body = list(model.rows)
    foot = body.pop() if model.output_row is not None else None
    table = Table(
        box=box.SIMPLE,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        show_footer=foot is not None,
        footer_style="bold",
    )
    for k, col in enumerate(model.columns):
        footer = "" if foot is None else (flag_text(foot[k]) if col == "flags" else foot[k])
        table.add_column(col, footer=footer, justify="right" if col in NUMERIC else "left", no_wrap=True)
    for cells in body:
        table.add_row(Text(cells[0], style="cyan"), *cells[1:-1], flag_text(cells[-1]))
    plain_width = max(len(s) for s in _plain_table(model).splitlines())
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=plain_width + 8, highlight=False, soft_wrap=True)
    console.print(Text(model.title, style="bold"))
    console.print()
    console.print(table)
    for text in model.footer:
        console.print(Text(text))
    for msg in model.warnings:
        console.print(Text(f"warning: {msg}", style="yellow"))
    return buf.getvalue().rstrip("\n")


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _markdown(model: _Table) -> str:
    align = {True: "--:", False: ":--"}
    lines = [f"**{_md_escape(model.title)}**", ""]
    lines.append("| " + " | ".join(model.columns) + " |")
    lines.append("|" + "|".join(align[col in NUMERIC] for col in model.columns) + "|")
    for i, cells in enumerate(model.rows):
        texts = [_md_escape(c) for c in cells]
        if i == model.output_row:
            texts = [f"**{t}**" if t else t for t in texts]
        lines.append("| " + " | ".join(texts) + " |")
    lines.append("")
    lines.extend(f"- {_md_escape(text)}" for text in model.footer)
    lines.extend(f"- **warning:** {_md_escape(msg)}" for msg in model.warnings)
    return "\n".join(line.rstrip() for line in lines)


# -- the module table of a PyTorch model ---------------------------------------------------

MODULE_COLUMNS = ("module", "type", "output shape", "params", "output", "stride", "rf", "padding", "flags")


def render_modules(rows: Sequence[Any], fmt: str = "table", title: str = "model", color: bool | None = None) -> str:
    """A torchinfo-style table of :func:`rfmap.frontends.torch.table.module_table` rows (one per
    module, or per block at a given depth; the last row is the model's output)."""
    if fmt == "json":
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
    model = _Table(
        f"{title} ({len(rows)} rows)", cells, len(cells) - 1 if cells else None,
        (f"parameters in the rows shown: {total:,}",), (), MODULE_COLUMNS,
    )
    if fmt == "markdown":
        return _markdown(model)
    if fmt == "csv":
        raise RFMapError("--depth tables come as table, json or markdown")
    if color is None:
        color = _stdout_is_color_terminal()
    if color:
        try:
            return _rich_table(model)
        except ImportError:
            pass
    return _plain_table(model)
