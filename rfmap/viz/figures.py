"""Figures of receptive fields (matplotlib, imported only when a figure is drawn).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no backend switch: it renders with Agg), so it works in scripts, servers and
notebooks alike.  Save it with :func:`save` (PNG, SVG or PDF by the file's suffix) or
``fig.savefig``.  Each function also takes ``ax=`` to draw into an existing axes.

Coordinates follow the pixel-index convention of :mod:`rfmap.core.result`: pixel ``i`` is the
point ``i`` and covers ``[i - 0.5, i + 0.5]`` on the picture, so the inclusive box
``y0..y1`` is drawn from ``y0 - 0.5`` to ``y1 + 0.5``; the image's first pixel is at the
top left.  An image whose size differs from the analysis' input size is stretched to it
(the network sees the resized image).

Artists carry a ``gid`` so that programs (and the tests) can find them:
``image-border``, ``rf-box i,j`` (the whole theoretical box, dashed), ``rf-box-inside i,j``
(its part inside the image, solid), ``padding i,j`` (hatched parts in padding), ``support i,j``
and ``center i,j``; ``centers``, ``stride-y``/``stride-x``; ``trf-box``, ``sigma-1``/``sigma-2``;
``anchors``, ``trf``, ``erf``, ``stride``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rfmap.core.budget import MAX_GRID_POINTS, check_picture
from rfmap.core.result import axis_names
from rfmap.erf import gaussian_fit
from rfmap.errors import RFMapError
from rfmap.render import fmt_axes
from rfmap.viz._data import axis_cells, layer_row, load_image, parse_cells, require_2d

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rfmap.core.analysis import Analysis

__all__ = ["plot_rf_boxes", "plot_center_grid", "plot_growth", "plot_erf", "plot_anchors", "save", "FORMATS"]

FORMATS = ("png", "svg", "pdf")

#: Colours of successive cells (colour-blind safe, Okabe-Ito), then the fixed roles.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
INK = "#222222"
MUTED = "#6b6b6b"
GRID = "#e4e4e4"
TRF_COLOR = "#C0392B"
ERF_COLOR = "#E69F00"
ANCHOR_COLOR = "#0072B2"


# -- plumbing -----------------------------------------------------------------------------


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RFMapError("figures need matplotlib: pip install 'rfmap[plot]'") from None

    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> str:
    """Write ``fig`` as PNG, SVG or PDF, chosen by the suffix of ``path``; returns the path."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 1 <= dpi <= 600:
        raise RFMapError(f"dpi must be a number in 1..600, got {dpi!r:.40}")
    if ext not in FORMATS:
        raise RFMapError(f"cannot write '{path}': the file name must end in {', '.join('.' + f for f in FORMATS)}")
    try:
        fig.savefig(path, format=ext, dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.15)
    except OSError as exc:
        raise RFMapError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path


def _fmt_center(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _rect(x0: float, y0: float, x1: float, y1: float, **kw):
    """The inclusive pixel box ``x0..x1``, ``y0..y1`` as a Rectangle (pixel edges at +-0.5)."""
    from matplotlib.patches import Rectangle

    return Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, **kw)


def _draw_canvas(ax: Axes, size: tuple[int, int], image: Any) -> str | None:
    """The image (stretched to ``size``) or a neutral checkerboard, and the image border.
    Returns a note when the image was resized."""
    h, w = size
    check_picture(h, w, "a figure")
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    arr = load_image(image)
    note = None
    if arr is not None:
        kw = {"cmap": "gray"} if arr.ndim == 2 else {}
        ax.imshow(arr, extent=extent, interpolation="nearest" if max(h, w) <= 256 else "antialiased", zorder=0, **kw)
        if arr.shape[:2] != (h, w):
            note = f"image {arr.shape[0]}x{arr.shape[1]} shown resized to the input {h}x{w}"
    else:
        tile = max(1, int(round(max(h, w) / 16)))
        f = max(1, -(-max(h, w) // 1024))  # one board pixel per f x f input pixels: at most 1024 x 1024
        yy, xx = np.mgrid[0:h:f, 0:w:f]
        board = np.where((yy // tile + xx // tile) % 2 == 0, 0.95, 0.88)
        shown = (-0.5, board.shape[1] * f - 0.5, board.shape[0] * f - 0.5, -0.5)
        ax.imshow(np.dstack([board] * 3), extent=shown, interpolation="nearest", zorder=0)
    border = _rect(0, 0, w - 1, h - 1, fill=False, edgecolor=INK, linewidth=1.2, zorder=1, gid="image-border")
    ax.add_patch(border)
    ax.set_aspect("equal")
    return note


def _frame(ax: Axes, size: tuple[int, int], boxes: Sequence[Sequence[int]], pad: float = 0.04) -> None:
    """Limits that show the image and every box, with a small margin; y grows downwards."""
    h, w = size
    y0 = min([0] + [b[0] for b in boxes]) - 0.5
    x0 = min([0] + [b[1] for b in boxes]) - 0.5
    y1 = max([h - 1] + [b[2] for b in boxes]) + 0.5
    x1 = max([w - 1] + [b[3] for b in boxes]) + 0.5
    m = pad * max(y1 - y0, x1 - x0)
    ax.set_xlim(x0 - m, x1 + m)
    ax.set_ylim(y1 + m, y0 - m)
    ax.set_xlabel("x (input pixels)")
    ax.set_ylabel("y (input pixels)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8, colors=MUTED)
    for spine in ax.spines.values():
        spine.set_color(GRID)


def _outside_parts(box: Sequence[int], size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The parts of the inclusive box ``(y0, x0, y1, x1)`` outside the image, as at most four
    disjoint inclusive boxes: the bands above and below, then left and right of the image rows."""
    y0, x0, y1, x1 = box
    h, w = size
    parts = []
    if y0 < 0:
        parts.append((y0, x0, min(y1, -1), x1))
    if y1 > h - 1:
        parts.append((max(y0, h), x0, y1, x1))
    r0, r1 = max(y0, 0), min(y1, h - 1)
    if r0 <= r1:
        if x0 < 0:
            parts.append((r0, x0, r1, min(x1, -1)))
        if x1 > w - 1:
            parts.append((r0, max(x0, w), r1, x1))
    return parts


def _title(ax: Axes, analysis: Analysis, row, extra: str = "") -> None:
    ax.set_title(
        f"{analysis.graph.name} · layer '{row.name}' ({row.op}, {row.output_size[0]}x{row.output_size[1]} cells)\n"
        f"rf {fmt_axes(row.rf)}, stride {fmt_axes(row.stride)}, padding {fmt_axes(row.padding)}{extra}",
        fontsize=10,
        loc="left",
        color=INK,
    )


# -- RF boxes -----------------------------------------------------------------------------


def plot_rf_boxes(
    analysis: Analysis,
    layer: Any,
    cells: Any = None,
    image: Any = None,
    *,
    support: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """The receptive fields of ``cells`` of ``layer`` drawn over ``image``.

    ``cells``: ``(i, j)`` or a list of them (default: the corner cell and the middle cell).
    ``image``: a file path or an array (``H x W``, ``H x W x 3|4``); ``None`` draws a neutral
    checkerboard of the input size.  Each cell gets its theoretical RF box (``analysis.rf_box``;
    dashed where it falls into padding, the padding part hatched), the bounding box of its
    support (``analysis.support_box``, dotted; the pixels that really influence the cell) and
    its center (``+``).
    """
    require_2d(analysis, "plot_rf_boxes")
    row = layer_row(analysis, layer)
    chosen = parse_cells(cells, row.output_size, row.name)
    size = tuple(analysis.input_size)
    fig, ax = _figure(ax, (10.0, 6.2))
    note = _draw_canvas(ax, size, image)  # type: ignore[arg-type]
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    boxes = []
    handles = []
    for k, cell in enumerate(chosen):
        color = PALETTE[k % len(PALETTE)]
        tag = f"{cell[0]},{cell[1]}"
        box = analysis.rf_box(row.name, cell)
        boxes.append(box)
        y0, x0, y1, x1 = box
        z = 3 + k * 0.01
        ax.add_patch(_rect(x0, y0, x1, y1, fill=False, edgecolor=color, linewidth=1.6, linestyle=(0, (4, 3)), zorder=z, gid=f"rf-box {tag}"))
        iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, size[0] - 1), min(x1, size[1] - 1)
        if iy0 <= iy1 and ix0 <= ix1:
            ax.add_patch(
                _rect(ix0, iy0, ix1, iy1, facecolor=color, alpha=0.10, edgecolor="none", zorder=z, gid=f"rf-fill {tag}")
            )
            ax.add_patch(
                _rect(ix0, iy0, ix1, iy1, fill=False, edgecolor=color, linewidth=2.2, zorder=z + 0.001, gid=f"rf-box-inside {tag}")
            )
        for part in _outside_parts(box, size):  # type: ignore[arg-type]
            py0, px0, py1, px1 = part
            ax.add_patch(
                _rect(px0, py0, px1, py1, facecolor="none", edgecolor=color, hatch="////", linewidth=0, alpha=0.55, zorder=z, gid=f"padding {tag}")
            )
        sbox = analysis.support_box(row.name, cell) if support else None
        if sbox is not None:
            sy0, sx0, sy1, sx1 = sbox
            ax.add_patch(
                _rect(sx0, sy0, sx1, sy1, fill=False, edgecolor=color, linewidth=1.3, linestyle=":", zorder=z + 0.002, gid=f"support {tag}")
            )
        cy, cx = (float(c) for c in analysis.center(row.name, cell))
        ax.plot([cx], [cy], marker="P", markersize=11, color=color, markeredgecolor="white", markeredgewidth=1.2, zorder=z + 0.003, gid=f"center {tag}", linestyle="none")
        label = f"cell ({cell[0]}, {cell[1]}): y {y0}..{y1}, x {x0}..{x1}  ({y1 - y0 + 1}x{x1 - x0 + 1})"
        if support:
            label += "\n    support " + ("none (sees only padding)" if sbox is None else f"y {sbox[0]}..{sbox[2]}, x {sbox[1]}..{sbox[3]}")
        label += f"\n    center ({_fmt_center(cy)}, {_fmt_center(cx)})"
        handles.append(Patch(facecolor=color, alpha=0.35, edgecolor=color, label=label))
    handles += [
        Line2D([], [], color=MUTED, linewidth=2.2, label="RF box inside the image"),
        Patch(facecolor="none", edgecolor=MUTED, hatch="////", linestyle=(0, (4, 3)), label="RF box in padding"),
    ]
    if support:
        handles.append(Line2D([], [], color=MUTED, linewidth=1.3, linestyle=":", label="support (pixels that matter)"))
    handles.append(Line2D([], [], color=MUTED, marker="P", linestyle="none", markersize=9, label="RF center"))
    _frame(ax, size, boxes)  # type: ignore[arg-type]
    _title(ax, analysis, row)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0, handlelength=2.2)
    if note:
        ax.annotate(note, (0, -0.1), xycoords="axes fraction", fontsize=7.5, color=MUTED, va="top")
    return fig


# -- the grid of centers -----------------------------------------------------------------


def plot_center_grid(
    analysis: Analysis,
    layer: Any,
    image: Any = None,
    *,
    box: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """The RF centers of every cell of ``layer`` over ``image`` (or a checkerboard), with the
    effective stride marked between the middle cell and its neighbours and (``box``) the RF
    box of the middle cell for scale.  Centers come from ``analysis.rf_box``, so they are
    exact also where the RF varies from cell to cell."""
    require_2d(analysis, "plot_center_grid")
    row = layer_row(analysis, layer)
    check_picture(*analysis.input_size, "a figure")
    points = row.output_size[0] * row.output_size[1]
    if points > MAX_GRID_POINTS:
        raise RFMapError(
            f"layer '{row.name}' has {points:,} cells, beyond rfmap's limit of {MAX_GRID_POINTS:,} centers in a grid "
            "figure (rfmap.core.budget.MAX_GRID_POINTS); pick a later layer or a smaller input size"
        )
    ay, ax_ = axis_cells(analysis, row.name, support=False)
    size = tuple(analysis.input_size)
    fig, ax = _figure(ax, (7.0, 6.0))
    note = _draw_canvas(ax, size, image)  # type: ignore[arg-type]
    cy, cx = ay.centers, ax_.centers
    n = cy.size * cx.size
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    span = max(size)
    spacing = min(
        np.min(np.diff(np.unique(cy))) if np.unique(cy).size > 1 else span,
        np.min(np.diff(np.unique(cx))) if np.unique(cx).size > 1 else span,
    )
    # marker diameter ~ 30% of the spacing between centers (the axes are ~360 points wide)
    s = float(np.clip((0.3 * spacing / span * 360) ** 2, 0.5, 50.0))
    ax.scatter(xx.ravel(), yy.ravel(), s=s, c=PALETTE[0], edgecolors="white", linewidths=0.4 if s > 6 else 0, zorder=4, gid="centers")
    mid = (cy.size // 2, cx.size // 2)
    boxes = []
    if box:
        b = (int(ay.lo[mid[0]]), int(ax_.lo[mid[1]]), int(ay.hi[mid[0]]), int(ax_.hi[mid[1]]))
        boxes.append(b)
        ax.add_patch(_rect(b[1], b[0], b[3], b[2], fill=False, edgecolor=PALETTE[1], linewidth=1.6, linestyle=(0, (4, 3)), zorder=3, gid=f"rf-box {mid[0]},{mid[1]}"))
        ax.plot([cx[mid[1]]], [cy[mid[0]]], marker="P", markersize=11, color=PALETTE[1], markeredgecolor="white", zorder=5, linestyle="none", gid=f"center {mid[0]},{mid[1]}")
    # the distance from the middle cell's center to the next distinct center, per axis
    for axis, centers in ((0, cy), (1, cx)):
        k = mid[axis]
        while k > 0 and centers[k - 1] == centers[k]:
            k -= 1  # first cell of the run sharing this center (after upsampling)
        nxt = next((j for j in range(k + 1, centers.size) if centers[j] != centers[k]), None)
        if nxt is None:
            continue
        a, b = float(centers[k]), float(centers[nxt])
        cells_apart = nxt - k
        text = f"stride {_fmt_center(b - a)}" if cells_apart == 1 else f"{_fmt_center(b - a)} px / {cells_apart} cells"
        other = float(cx[mid[1]] if axis == 0 else cy[mid[0]])
        p0, p1 = ((other, a), (other, b)) if axis == 0 else ((a, other), (b, other))
        ax.annotate("", xy=p1, xytext=p0, arrowprops=dict(arrowstyle="<|-|>", color=PALETTE[1], lw=1.4, shrinkA=0, shrinkB=0, mutation_scale=8), zorder=6, gid=f"stride-{'yx'[axis]}")
        mid_pt = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        ax.annotate(
            text, mid_pt, xytext=(-16, 0) if axis == 0 else (0, 14), textcoords="offset points", fontsize=8, color=INK,
            ha="right" if axis == 0 else "center", va="center" if axis == 0 else "bottom", zorder=7,
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=PALETTE[1], linewidth=0.8, alpha=0.92),
            arrowprops=dict(arrowstyle="-", color=PALETTE[1], lw=0.8, shrinkA=0, shrinkB=2),
        )
    boxes.append((int(np.floor(cy.min())), int(np.floor(cx.min())), int(np.ceil(cy.max())), int(np.ceil(cx.max()))))
    _frame(ax, size, boxes)  # type: ignore[arg-type]
    variable = "" if row.shift_invariant else " (rf varies by cell)"
    _title(ax, analysis, row, f" · {n} centers{variable}")
    if note:
        ax.annotate(note, (0, -0.1), xycoords="axes fraction", fontsize=7.5, color=MUTED, va="top")
    return fig


# -- growth with depth -------------------------------------------------------------------


def plot_growth(analysis: Analysis, *, log: bool = False, layers: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """RF size (top) and effective stride (bottom) of every layer, in network order.

    Per axis when the axes differ anywhere (``H`` and ``W`` lines), one line otherwise.
    ``log``: logarithmic (base 2) y axes.  Layers that see the whole input through a global op
    (stride 0) are shaded and left out of the stride panel; layers whose RF varies from cell to
    cell show their largest RF (hollow markers).  ``ax``: a pair of axes (RF, stride) to draw
    into.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows = [r for r in analysis.layers[1:] if layers is None or r.name in set(layers)]
    if not rows:
        raise RFMapError("plot_growth: no layers to draw")
    if ax is None:
        n = len(rows)
        fig = Figure(figsize=(min(max(6.5, 0.28 * n + 2.5), 18), 6.2), dpi=100, layout="constrained")
        ax_rf, ax_st = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    else:
        ax_rf, ax_st = ax  # type: ignore[misc]
        fig = ax_rf.figure
    x = np.arange(1, len(rows) + 1)
    names = axis_names(analysis.ndim)
    rf = np.array([r.rf for r in rows], dtype=float)
    stride = np.array([[float(s) for s in r.stride] for r in rows], dtype=float)
    glob = np.array([all(s == 0 for s in r.stride) for r in rows])
    varies = np.array([not r.shift_invariant for r in rows])
    stride_plot = np.where(stride > 0, stride, np.nan)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: dict[str, Any] = {}
    handles_differ = any(bool(np.any((d != d[:, :1]) & ~np.isnan(d))) for d in (rf, stride_plot))
    for axp, data, what in ((ax_rf, rf, "rf"), (ax_st, stride_plot, "stride")):
        differ = bool(np.any((data != data[:, :1]) & ~np.isnan(data)))
        series = [(a, PALETTE[a], names[a]) for a in range(analysis.ndim)] if differ else [(0, PALETTE[0] if analysis.ndim == 1 or not handles_differ else INK, " = ".join(names))]
        for a, color, label in series:
            values = data[:, a]
            axp.plot(x, values, color=color, linewidth=1.8, zorder=3, gid=f"{what}-{label}")
            axp.scatter(x[~varies], values[~varies], s=22, color=color, zorder=4)
            if varies.any():
                axp.scatter(x[varies], values[varies], s=30, facecolors="white", edgecolors=color, linewidths=1.5, zorder=4)
            handles.setdefault(label, Line2D([], [], color=color, marker="o", markersize=4, linewidth=1.8, label=label))
        if what == "rf":
            sizes = analysis.input_size if differ else analysis.input_size[:1]
            for a, size in enumerate(sizes):
                if len(set(analysis.input_size)) == 1 and a > 0:
                    break
                axp.axhline(size, color=MUTED, linewidth=1, linestyle=(0, (4, 3)), zorder=2)
                tag = f"{names[a]} " if len(set(analysis.input_size)) > 1 else ""
                axp.annotate(
                    f"input {tag}{size}", (0.005, size), xycoords=("axes fraction", "data"), fontsize=8, color=MUTED,
                    va="bottom", ha="left", bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8), zorder=5,
                )
    if len(handles) == 1:
        handles = {}  # a single line needs no legend
    for axp in (ax_rf, ax_st):
        for k in np.flatnonzero(glob):
            axp.axvspan(x[k] - 0.5, x[k] + 0.5, color="#f1e7d0", zorder=0, linewidth=0)
        axp.grid(True, color=GRID, linewidth=0.8, zorder=1)
        axp.set_axisbelow(True)
        for spine in ("top", "right"):
            axp.spines[spine].set_visible(False)
        axp.tick_params(labelsize=8, colors=MUTED)
        if log:
            axp.set_yscale("log", base=2)
            axp.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            axp.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            axp.set_ylim(bottom=0)
    ax_rf.set_ylabel("RF size (pixels)")
    ax_st.set_ylabel("effective stride")
    ax_rf.set_title(
        f"{analysis.graph.name}: receptive field and stride by depth (input {'x'.join(map(str, analysis.input_size))})",
        fontsize=10, loc="left", color=INK,
    )
    extra = []
    if varies.any():
        extra.append(Line2D([], [], marker="o", color=MUTED, markerfacecolor="white", linestyle="none", label="rf varies by cell (largest)"))
    if glob.any():
        extra.append(Patch(color="#f1e7d0", label="global context (stride 0)"))
    legend = list(handles.values()) + extra
    if legend:
        ax_rf.legend(handles=legend, fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(legend), borderaxespad=0.2)
        ax_rf.set_title(ax_rf.get_title(loc="left"), fontsize=10, loc="left", color=INK, pad=20)
    step = max(1, math.ceil(len(rows) / 60))
    ax_st.set_xticks(x[::step])
    ax_st.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=7.5)
    ax_st.set_xlim(0.4, len(rows) + 0.6)
    ax_st.set_xlabel("layer")
    return fig  # type: ignore[return-value]


# -- effective receptive field -----------------------------------------------------------


def _erf_fields(erf_map: Any, trf_box, sigma, center):
    """Accept a plain array, or an object/mapping with ``map`` (and maybe ``sigma``, ``center``, ``trf_box``)."""
    if isinstance(erf_map, Mapping):
        get = erf_map.get
    elif hasattr(erf_map, "map"):
        def get(key, default=None):  # noqa: ANN001
            return getattr(erf_map, key, default)
    else:
        return np.asarray(erf_map), trf_box, sigma, center
    arr = np.asarray(get("map"))
    if trf_box is None:
        trf_box = get("trf_box", None)
    if sigma is None:
        sigma = get("sigma", None)
    if center is None:
        center = get("center", None)
    if center is None:
        center = get("mean", None)  # rfmap.erf.ERF: the center of mass of its Gaussian fit
    return arr, trf_box, sigma, center


def _sigma_pair(sigma) -> tuple[float, float]:
    s = np.asarray(sigma, dtype=float).ravel()
    if s.size == 1:
        return float(s[0]), float(s[0])
    if s.size == 2:
        return float(s[0]), float(s[1])
    raise RFMapError(f"sigma must be one number or a (sigma_y, sigma_x) pair, got {sigma!r}")


def erf_moments(erf_map: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Center ``(y, x)`` and standard deviations ``(sigma_y, sigma_x)`` of ``|erf_map|`` as a
    distribution over pixel positions (pixel-index convention)."""
    w = np.abs(np.nan_to_num(np.asarray(erf_map, dtype=float)))
    if w.sum() <= 0:
        raise RFMapError("the ERF map is zero everywhere: no center or sigma to draw")
    (my, mx), (sy, sx) = gaussian_fit(w)
    return (my, mx), (sy, sx)


def plot_erf(
    erf_map: Any,
    trf_box: Sequence[int] | None = None,
    sigma: Any = None,
    center: Sequence[float] | None = None,
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The effective receptive field: a heatmap of ``|erf_map|`` (``H x W``, input pixels) with
    the theoretical RF box ``trf_box`` ``(y0, x0, y1, x1)`` (inclusive, may reach outside the
    map) and the 1 and 2 sigma ellipses of a Gaussian around ``center``.

    ``sigma``: one number or ``(sigma_y, sigma_x)``; ``None`` estimates both (and ``center``
    when not given) from the map's moments (center of mass, standard deviation).
    ``erf_map`` may also be an object or mapping with ``map`` and optionally ``sigma``,
    ``center`` (or ``mean``) and ``trf_box``, such as an :class:`rfmap.erf.ERF`.
    """
    arr, trf_box, sigma, center = _erf_fields(erf_map, trf_box, sigma, center)
    if arr.ndim != 2 or arr.size == 0:
        raise RFMapError(f"the ERF map must be a 2-D array (H x W), got shape {list(arr.shape)}")
    values = np.abs(np.nan_to_num(arr.astype(float)))
    h, w = values.shape
    estimated = sigma is None
    if sigma is None or center is None:
        m_center, m_sigma = erf_moments(values)
        center = m_center if center is None else center
        sigma = m_sigma if sigma is None else sigma
    sy, sx = _sigma_pair(sigma)
    cy, cx = (float(v) for v in center)  # type: ignore[union-attr]
    fig, ax = _figure(ax, (6.6, 5.6))
    vmax = values.max() or 1.0
    im = ax.imshow(values, extent=(-0.5, w - 0.5, h - 0.5, -0.5), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest", zorder=0)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cbar.set_label("|gradient| (ERF)", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ax.add_patch(_rect(0, 0, w - 1, h - 1, fill=False, edgecolor=MUTED, linewidth=1, zorder=1, gid="image-border"))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    handles = []
    boxes = []
    if trf_box is not None:
        b = [int(v) for v in trf_box]
        if len(b) != 4:
            raise RFMapError(f"trf_box must be (y0, x0, y1, x1), got {trf_box!r}")
        boxes.append(b)
        ax.add_patch(_rect(b[1], b[0], b[3], b[2], fill=False, edgecolor="#56B4E9", linewidth=2, linestyle=(0, (5, 3)), zorder=3, gid="trf-box"))
        handles.append(Line2D([], [], color="#56B4E9", linewidth=2, linestyle=(0, (5, 3)), label=f"theoretical RF {b[2] - b[0] + 1}x{b[3] - b[1] + 1}"))
    for k, style in ((1, "-"), (2, "--")):
        ax.add_patch(
            Ellipse((cx, cy), 2 * k * sx, 2 * k * sy, fill=False, edgecolor="white", linewidth=1.6, linestyle=style, zorder=4, gid=f"sigma-{k}")
        )
        handles.append(Line2D([], [], color=MUTED, linewidth=1.6, linestyle=style, label=f"{k} sigma" + (" (from moments)" if estimated and k == 1 else "")))
    ax.plot([cx], [cy], marker="+", color="white", markersize=10, zorder=5, linestyle="none", gid="erf-center")
    _frame(ax, (h, w), boxes)
    ax.set_title(
        title or f"effective receptive field · sigma {_fmt_center(round(sy, 2))} x {_fmt_center(round(sx, 2))} px",
        fontsize=10, loc="left", color=INK,
    )
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=3, frameon=False)
    return fig


# -- anchors ------------------------------------------------------------------------------


def _get(level: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if isinstance(level, Mapping) and key in level:
            return level[key]
        if not isinstance(level, Mapping) and hasattr(level, key):
            return getattr(level, key)
    return default


def _side(value: Any) -> float | None:
    """A size as one side length: a number, or ``sqrt(h * w)`` of an ``(h, w)`` pair."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        return float(arr[0])
    if arr.size == 2:
        return float(math.sqrt(arr[0] * arr[1]))
    raise RFMapError(f"a size must be a number or an (h, w) pair, got {value!r}")


def plot_anchors(levels: Sequence[Any], *, ax: Axes | None = None) -> Figure:
    """Anchor sizes against the theoretical and effective RF, one row per pyramid level.

    ``levels``: mappings (or objects) with ``stride``, ``anchors`` (sizes: numbers or
    ``(h, w)`` pairs), ``trf`` (the theoretical RF size) and optionally ``erf`` (an effective
    RF size, e.g. the 4 sigma span) and ``name``.  The levels of an
    :class:`rfmap.anchors.AnchorReport` (``step``, ``boxes``, ``trf``, ``erf_span``), or the
    report itself, work too.  Pairs are drawn as the side ``sqrt(h * w)`` of the square of
    the same area.  Sizes are in input pixels on a log-2 axis.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    if hasattr(levels, "levels"):  # a report holding its levels (rfmap.anchors.AnchorReport)
        levels = levels.levels  # type: ignore[union-attr]
    if not levels:
        raise RFMapError("plot_anchors: no levels")
    parsed = []
    for k, level in enumerate(levels):
        name = _get(level, "name", "level", default=None)
        stride = _side(_get(level, "stride", "step", "effective_stride"))
        # "boxes" first: rfmap.anchors.LevelReport has (h, w) boxes and an anchor *count*
        anchors = _get(level, "boxes", "anchor_sizes", "sizes", "anchors", default=()) or ()
        if isinstance(anchors, (int, float)):
            anchors = [anchors]
        sides = [s for s in (_side(a) for a in anchors) if s is not None]
        trf = _side(_get(level, "trf", "rf"))
        erf = _side(_get(level, "erf", "erf_size", "erf_span"))
        if stride is None and trf is None and not sides:
            raise RFMapError(f"level {k}: give at least one of stride, anchors, trf")
        parsed.append((str(name) if name is not None else (f"stride {_fmt_center(stride)}" if stride else f"level {k}"), stride, sides, trf, erf))
    n = len(parsed)
    fig, ax = _figure(ax, (7.4, max(2.6, 0.62 * n + 1.6)))
    ys = np.arange(n)
    values = []
    for y, (_name, stride, sides, trf, erf) in zip(ys, parsed):
        row_values = [v for v in [stride, trf, erf, *sides] if v]
        values += row_values
        if row_values:
            ax.plot([min(row_values), max(row_values)], [y, y], color=GRID, linewidth=6, solid_capstyle="round", zorder=1)
        if stride:
            ax.plot([stride], [y], marker="|", markersize=16, markeredgewidth=2.2, color=MUTED, zorder=3, linestyle="none", gid="stride")
        if sides:
            ax.plot(sides, [y] * len(sides), marker="s", markersize=9, markerfacecolor="none", markeredgewidth=1.8, color=ANCHOR_COLOR, zorder=4, linestyle="none", gid="anchors")
        if erf:
            ax.plot([erf], [y], marker="o", markersize=10, color=ERF_COLOR, zorder=5, linestyle="none", markeredgecolor="white", gid="erf")
        if trf:
            ax.plot([trf], [y], marker="D", markersize=8, color=TRF_COLOR, zorder=5, linestyle="none", markeredgecolor="white", gid="trf")
        notes = []
        if sides and erf:
            lo, hi = min(sides) / erf, max(sides) / erf
            notes.append(f"anchor/ERF {lo:.2g}" + (f"–{hi:.2g}" if hi != lo else ""))
        if sides and trf:
            lo, hi = min(sides) / trf, max(sides) / trf
            notes.append(f"anchor/TRF {lo:.2g}" + (f"–{hi:.2g}" if hi != lo else ""))
        if notes:
            ax.annotate("   ".join(notes), (1.01, y), xycoords=("axes fraction", "data"), fontsize=8, color=MUTED, va="center")
    if not values:
        raise RFMapError("plot_anchors: no sizes to draw")
    ax.set_xscale("log", base=2)
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.set_xlim(lo, hi)
    ticks = [2.0**e for e in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1) if lo <= 2.0**e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(ys, [p[0] for p in parsed], fontsize=9)
    ax.set_ylim(n - 0.5, -0.7)
    ax.set_xlabel("size (input pixels, log scale)")
    ax.grid(True, axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    ax.tick_params(axis="x", labelsize=8, colors=MUTED)
    ax.tick_params(axis="y", length=0)
    handles = [
        Line2D([], [], marker="|", markersize=12, markeredgewidth=2, color=MUTED, linestyle="none", label="stride"),
        Line2D([], [], marker="s", markerfacecolor="none", markeredgewidth=1.6, color=ANCHOR_COLOR, linestyle="none", label="anchor sizes"),
        Line2D([], [], marker="o", color=ERF_COLOR, linestyle="none", label="effective RF"),
        Line2D([], [], marker="D", color=TRF_COLOR, linestyle="none", label="theoretical RF"),
    ]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, fontsize=8, frameon=False, borderaxespad=0.3)
    ax.set_title("anchors against receptive fields", fontsize=10, loc="left", color=INK, pad=22)
    return fig
