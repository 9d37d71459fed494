"""The per-layer table of an :class:`~rfmap.core.analysis.Analysis`: table, JSON, CSV or Markdown.

Rendering only reads the immutable per-layer results (:class:`~rfmap.core.result.LayerGeometry`);
it never computes geometry.  Values follow the pixel-index convention of :mod:`rfmap.core.result`:
``padding`` is the effective padding ``P`` of cell 0 and ``center0`` the center of cell 0's
receptive-field box, in input pixels.

Per-axis values are shown once when every axis agrees (``rf 212``) and as ``HxW`` when they
differ (``rf 7x11``); fractional strides and centers are exact (``15.5``, ``1/3``).

Flags (table and Markdown):

* ``*`` -- not shift-invariant: the RF differs from cell to cell (after upsampling, a
  transposed convolution, adaptive pooling); the largest RF is shown.
* ``!`` -- misaligned: paths merged at or before this layer disagree on stride or center
  (see ``analysis.messages``).
* ``g`` -- global context: the layer sees the output of a global op (global pooling,
  squeeze-excitation, a fully connected layer), so every cell depends on the whole input.
* ``o`` -- an output of the network (besides the last row, which is the first output).

The table is drawn with ``rich`` when colour is wanted and ``rich`` is installed; otherwise
(``color=False``, output that is not a terminal, ``NO_COLOR`` set, or no ``rich``) it is plain
aligned text, which is also what the golden-file tests compare.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from rfmap.core.result import LayerGeometry, axis_names, json_number
from rfmap.errors import RFMapError
from rfmap.render.numbers import fmt_axes, fmt_size
from rfmap.render.table import Table, draw, to_markdown

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
    "o": "an output of the network",
    "t": "axes in another order than the input's (values in the layer's own order)",
}
FLAG_STYLES = {"*": "yellow", "!": "bold red", "g": "cyan", "o": "green", "t": "magenta"}


def flags(row: LayerGeometry, outputs: frozenset[str] = frozenset()) -> str:
    return (("" if row.shift_invariant else "*") + ("" if row.aligned else "!") + ("g" if row.global_context else "")
            + ("o" if row.name in outputs else "") + ("" if row.input_axes is None else "t"))


# -- selection --------------------------------------------------------------------------


def select_layers(analysis: Analysis, layers: str | Iterable[str] | None = None) -> list[LayerGeometry]:
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


def row_cells(row: LayerGeometry, outputs: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The cells of one row of the table, in :data:`COLUMNS` order."""
    return (
        row.name,
        row.op,
        fmt_size(row.output_size),
        fmt_axes(row.stride),
        fmt_axes(row.rf),
        fmt_axes(row.padding),
        fmt_axes(row.center0),
        flags(row, outputs),
    )


def _extra_outputs(analysis: Analysis) -> frozenset[str]:
    """The outputs other than the first (the first is the last row, set apart)."""
    rows = analysis.output_rows()
    return frozenset(row.name for row in rows[1:])


def summary_table(analysis: Analysis, layers=None) -> Table:
    """The per-layer table of ``analysis`` (the selected layers) as a :class:`Table`."""
    selected = select_layers(analysis, layers)
    out = analysis.output
    n_layers = len(analysis.layers) - 1
    shown = f", {len(selected)} shown" if layers is not None else ""
    title = f"{analysis.graph.name} (input {fmt_size(analysis.input_size)}, {n_layers} layer{'s' if n_layers != 1 else ''}{shown})"
    output_row = next((i for i, row in enumerate(selected) if row is out), None)
    extra = _extra_outputs(analysis)
    used = "".join(flags(row, extra) for row in selected)
    legend = "   ".join(f"{f} {text}" for f, text in FLAG_LEGEND.items() if f in used)
    footer = (summary_line(analysis),) + ((f"flags: {legend}",) if legend else ())
    if len(analysis.outputs) > 1:
        footer += ("outputs: " + ", ".join(analysis.outputs),)
    return Table(title, COLUMNS, tuple(row_cells(r, extra) for r in selected), NUMERIC, output_row, footer,
                 tuple(analysis.messages), "flags", FLAG_STYLES)


def summary_line(analysis: Analysis) -> str:
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
    if out.input_axes is not None:
        names = axis_names(len(out.input_axes))
        notes.append("axes are the input's " + ", ".join(names[a] for a in out.input_axes))
    return summary + (f" ({'; '.join(notes)})" if notes else "")


# -- renderers --------------------------------------------------------------------------


def render(analysis: Analysis, fmt: str = "table", layers: str | Iterable[str] | None = None, color: bool | None = None) -> str:
    """The analysis as text.

    ``fmt``: ``"table"`` (for people), ``"json"`` (``analysis.to_dict()`` with only the
    selected layers), ``"csv"`` (one row per layer, per-axis columns ``rf_h, rf_w``, ...) or
    ``"markdown"`` (a GitHub table).  ``layers``: glob patterns selecting rows, see
    :func:`select_layers`.  ``color``: ``None`` to colour only when stdout is a terminal
    (and ``NO_COLOR`` is unset), ``True``/``False`` to force; only the table uses colour.
    The result ends without a newline.
    """
    if fmt == "table":
        return draw([summary_table(analysis, layers)], color)
    if fmt == "json":
        return render_json(analysis, layers)
    if fmt == "csv":
        return render_csv(analysis, layers)
    if fmt == "markdown":
        return to_markdown(summary_table(analysis, layers))
    raise RFMapError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")


def to_dict(analysis: Analysis, layers: str | Iterable[str] | None = None) -> dict:
    """``analysis.to_dict()`` keeping only the selected layers."""
    data = analysis.to_dict()
    if layers is not None:
        keep = {row.name for row in select_layers(analysis, layers)}
        data["layers"] = [entry for entry in data["layers"] if entry["name"] in keep]
    return data


def render_json(analysis: Analysis, layers: str | Iterable[str] | None = None) -> str:
    import json

    return json.dumps(to_dict(analysis, layers), indent=2)


def render_csv(analysis: Analysis, layers: str | Iterable[str] | None = None) -> str:
    """Header plus one row per layer; per-axis columns (``rf_h, rf_w``); fractions as floats."""
    import csv

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
