"""One self-contained HTML report of an analysis: the per-layer table and a cell explorer.

:func:`write_report` writes a single file with its script, styles, data and image inlined:
it makes no network request (a Content-Security-Policy forbids them) and opens offline in
any modern browser.  The explorer shows, for the cell under the pointer, its theoretical RF
box (also where it reaches into padding, drawn in the margin around the image), the bounding
box of its support, its center and, where an ERF was computed, the ERF as an overlay.

Exactness: the page does no geometry of its own.  It embeds, per layer and axis, the box of
every cell (``lo``/``hi``, from :meth:`Analysis.rf_box`; boxes are separable per axis) and the
support's bounding box per axis (from :meth:`Analysis.support`, exact for chains, see
:mod:`rfmap.viz._data`); the cell under the pointer is the one whose RF center is nearest
(the rule of :meth:`Analysis.nearest_cell`, ties to the lower index).  Coordinates follow the
pixel-index convention: pixel ``i`` is the point ``i``; boxes are inclusive ``(y0, x0, y1, x1)``.

Names that come from models are data, never markup: the data travels as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and the page
builds its DOM with ``textContent``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from rfmap.core.budget import MAX_REPORT_CELLS, check_picture
from rfmap.errors import RFMapError
from rfmap.render import COLUMNS, FLAG_LEGEND, row_cells, summary_line
from rfmap.viz._data import axis_cells, embed_image, require_2d

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.core.analysis import Analysis

__all__ = ["write_report", "render_report", "report_data"]

TEMPLATE = "report_template.html"
def _erf_entries(analysis: Analysis, erf: Any, default_layer: Any = None) -> list[dict]:
    """ERF inputs as ``{"layer", "cell", "h", "w", "data" (base64 uint8), "max", "sigma", "center"}``.

    ``erf``: a 2-D array (an ERF of the output layer), an object or mapping with ``map`` (and
    maybe ``layer``, ``cell``/``index``, ``sigma``, ``center``/``mean``) such as an
    :class:`rfmap.erf.ERF`, a mapping ``{layer: erf}``, or a list of those.
    """
    if erf is None:
        return []
    if isinstance(erf, (list, tuple)):
        items = list(erf)
        if items and all(np.ndim(v) == 1 for v in items):  # nested lists: one 2-D array
            return _erf_entries(analysis, np.asarray(items, dtype=float))
        return [entry for item in items for entry in _erf_entries(analysis, item, default_layer)]
    if isinstance(erf, Mapping) and "map" not in erf and all(isinstance(k, (str, int)) for k in erf):
        return [entry for key, value in erf.items() for entry in _erf_entries(analysis, value, default_layer=key)]

    plain = not (isinstance(erf, Mapping) or hasattr(erf, "map"))  # a bare array

    def get(key: str, default: Any = None) -> Any:
        if plain:
            return default
        if isinstance(erf, Mapping):
            return erf.get(key, default)
        return getattr(erf, key, default)

    raw = erf if plain else get("map")
    arr = np.abs(np.nan_to_num(np.asarray(raw, dtype=float)))
    if arr.ndim != 2:
        raise RFMapError(f"an ERF map must be 2-D (H x W), got shape {list(arr.shape)}")
    if tuple(arr.shape) != tuple(analysis.input_size):
        raise RFMapError(f"the ERF map is {arr.shape[0]}x{arr.shape[1]}, the input is {analysis.input_size[0]}x{analysis.input_size[1]}: they must match")
    layer = get("layer")
    if layer is None:
        layer = default_layer
    if layer is None:
        layer = analysis.output.name
    else:
        try:
            layer = analysis.layer(layer).name
        except RFMapError:
            raise RFMapError(f"the ERF is of layer '{layer}', which is not a layer of '{analysis.graph.name}'") from None
    cell = get("cell", None)
    if cell is None:
        cell = get("index", None)
    if cell is not None:
        cell = [int(v) for v in cell]
        sizes = analysis.layer(layer).output_size
        if len(cell) != len(sizes) or not all(0 <= c < n for c, n in zip(cell, sizes)):
            raise RFMapError(f"the ERF's cell {cell} is outside layer '{layer}' of size {list(sizes)}")
    vmax = float(arr.max())
    data = np.round(255 * arr / vmax).astype(np.uint8) if vmax > 0 else np.zeros(arr.shape, np.uint8)
    sigma = get("sigma")
    center = get("center")
    if center is None:
        center = get("mean")  # rfmap.erf.ERF: the center of mass of its Gaussian fit

    def floats(v: Any) -> list[float] | None:
        if v is None:
            return None
        a = np.asarray(v, dtype=float).ravel()
        if a.size == 1:
            a = np.repeat(a, 2)
        if a.size < 2 or not np.isfinite(a[:2]).all():
            return None
        return [float(x) for x in a[:2]]

    return [
        {
            "layer": layer,
            "cell": None if cell is None else [int(v) for v in cell],
            "h": int(arr.shape[0]),
            "w": int(arr.shape[1]),
            "data": base64.b64encode(data.tobytes()).decode("ascii"),
            "max": vmax,
            "sigma": floats(sigma),
            "center": floats(center),
        }
    ]


def report_data(analysis: Analysis, image: Any = None, erf: Any = None, *, title: str | None = None) -> dict:
    """Everything the page shows, as plain JSON-able data (see the module docstring)."""
    require_2d(analysis, "the HTML report")
    h, w = analysis.input_size
    check_picture(h, w, "the HTML report")
    n_cells = sum(sum(row.output_size) for row in analysis.layers[1:])
    if n_cells > MAX_REPORT_CELLS:
        raise RFMapError(
            f"the HTML report describes every cell: {n_cells:,} rows and columns over {len(analysis.layers) - 1} layers "
            f"is beyond rfmap's limit of {MAX_REPORT_CELLS:,} (rfmap.core.budget.MAX_REPORT_CELLS); "
            "analyze at a smaller input size"
        )
    embedded = embed_image(image)
    layers: list[dict[str, Any]] = []
    over = [0, 0, 0, 0]  # how far boxes reach past the top, left, bottom, right edges
    for row in analysis.layers[1:]:
        ay, ax = axis_cells(analysis, row.name, support=True)
        axes = []
        for along in (ay, ax):
            slo, shi, empty = along.support_lo, along.support_hi, along.support_empty
            assert slo is not None and shi is not None  # asked for with support=True
            axes.append(
                {
                    "lo": along.lo.tolist(),
                    "hi": along.hi.tolist(),
                    "slo": [None if e else int(v) for v, e in zip(slo, empty)],
                    "shi": [None if e else int(v) for v, e in zip(shi, empty)],
                }
            )
        over = [
            max(over[0], -int(ay.lo.min())),
            max(over[1], -int(ax.lo.min())),
            max(over[2], int(ay.hi.max()) - (h - 1)),
            max(over[3], int(ax.hi.max()) - (w - 1)),
        ]
        cells = list(row_cells(row))  # the table row's texts, its flags last
        layers.append(
            {
                "name": row.name,
                "op": row.op,
                "inputs": list(row.inputs),
                "cells": cells,
                "output": [len(ay.lo), len(ax.lo)],  # in the image's orientation (see axis_cells)
                "flags": cells[-1],
                "aligned": row.aligned,
                "global": row.global_context,
                "shift_invariant": row.shift_invariant,
                "axes": axes,
            }
        )
    # the margin around the image shows padding; at most the image's larger side on each edge
    cap = max(h, w)
    floor = max(2, round(0.03 * max(h, w)))
    margin = [min(max(v, floor), cap) for v in over]
    summary = summary_line(analysis)
    default = next((k for k in range(len(layers) - 1, -1, -1) if not layers[k]["global"] and all(n > 1 for n in layers[k]["output"])), len(layers) - 1)
    used = "".join(layer["flags"] for layer in layers)
    return {
        "format": "rfmap-report/1",
        "version": _version(),
        "title": title or f"{analysis.graph.name} — receptive fields",
        "name": analysis.graph.name,
        "input": [h, w],
        "columns": list(COLUMNS),
        "layers": layers,
        "default_layer": default,
        "messages": list(analysis.messages),
        "summary": summary,
        "flags": {f: text for f, text in FLAG_LEGEND.items() if f in used},
        "margin": {"top": margin[0], "left": margin[1], "bottom": margin[2], "right": margin[3]},
        "image": None if embedded is None else {"uri": embedded.uri, "h": embedded.size[0], "w": embedded.size[1]},
        "erf": _erf_entries(analysis, erf),
    }


def _version() -> str:
    from rfmap import __version__

    return __version__


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` (escaped as ``\\u003c`` ...), so no
    ``</script>`` or ``<!--`` can end or confuse the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def _template() -> str:
    return resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")


def render_report(analysis: Analysis, image: Any = None, erf: Any = None, *, title: str | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`).

    The template's slots are filled in one pass, so a title or a layer name that spells a
    slot (``{{DATA}}``) is text like any other."""
    data = report_data(analysis, image=image, erf=erf, title=title)
    values = {"TITLE": html.escape(isolate_bidi(data["title"])), "DATA": _json_for_script(data)}
    page = _template()
    for key in values:
        if page.count("{{" + key + "}}") != 1:  # pragma: no cover - the template is ours
            raise RFMapError(f"report template must hold {{{{{key}}}}} once")
    return _SLOT.sub(lambda m: values[m.group(1)], page)


_SLOT = re.compile(r"\{\{(TITLE|DATA)\}\}")
#: right-to-left letters and explicit bidi controls: text that can reorder its neighbours
_BIDI = re.compile("[\u0590-\u08ff\u200e\u200f\u202a-\u202e\u2066-\u2069\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]")


def isolate_bidi(text: str) -> str:
    """``text`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE when it holds
    right-to-left letters or bidi controls (Unicode's bidi algorithm then keeps it from
    reordering what surrounds it); other text as it is."""
    return f"\u2068{text}\u2069" if _BIDI.search(text) else text


def write_report(analysis: Analysis, path: str | os.PathLike, image: Any = None, erf: Any = None, *, title: str | None = None) -> str:
    """Write the interactive report of ``analysis`` to ``path`` (one self-contained HTML file).

    ``image``: a file path (PNG, JPEG, GIF, BMP are embedded as they are; other formats are
    decoded with Pillow) or an array ``H x W [x 3|4]``; shown stretched to the input size.
    Without one the page draws a neutral checkerboard of the input size.
    ``erf``: an ERF to overlay: a 2-D array of the input size (then taken as the output
    layer's), an object or mapping with ``map`` (and optionally ``layer``, ``cell``, ``sigma``,
    ``center``/``mean``) such as an :class:`rfmap.erf.ERF`, ``{layer: erf}``, or a list of
    those.  The page shows it over the image when its layer is selected, its cell first.
    Returns the path written.
    """
    text = render_report(analysis, image=image, erf=erf, title=title)
    path = os.fspath(path)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise RFMapError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path
