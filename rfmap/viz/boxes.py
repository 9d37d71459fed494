"""Receptive fields over the input image: the RF boxes of chosen cells
(:func:`plot_rf_boxes`) and the grid of every cell's RF center (:func:`plot_center_grid`).

Coordinates: pixel-index convention (see :mod:`rfmap.viz.figures`); artists carry the
``gid`` listed there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rfmap.core.budget import MAX_GRID_POINTS, check_picture
from rfmap.errors import RFMapError
from rfmap.viz._canvas import INK, MUTED, PALETTE, draw_canvas, figure_for, fmt_center, frame, layer_title, outside_parts, rect
from rfmap.viz._data import axis_cells, layer_row, parse_cells, require_2d

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rfmap.core.analysis import Analysis


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
    size = (analysis.input_size[0], analysis.input_size[1])
    fig, ax = figure_for(ax, (10.0, 6.2))
    note = draw_canvas(ax, size, image)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    boxes = []
    handles: list[Artist] = []
    for k, cell in enumerate(chosen):
        color = PALETTE[k % len(PALETTE)]
        tag = f"{cell[0]},{cell[1]}"
        box = analysis.rf_box(row.name, cell)
        boxes.append(box)
        y0, x0, y1, x1 = box
        z = 3 + k * 0.01
        ax.add_patch(rect(x0, y0, x1, y1, fill=False, edgecolor=color, linewidth=1.6, linestyle=(0, (4, 3)), zorder=z, gid=f"rf-box {tag}"))
        iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, size[0] - 1), min(x1, size[1] - 1)
        if iy0 <= iy1 and ix0 <= ix1:
            ax.add_patch(
                rect(ix0, iy0, ix1, iy1, facecolor=color, alpha=0.10, edgecolor="none", zorder=z, gid=f"rf-fill {tag}")
            )
            ax.add_patch(
                rect(ix0, iy0, ix1, iy1, fill=False, edgecolor=color, linewidth=2.2, zorder=z + 0.001, gid=f"rf-box-inside {tag}")
            )
        for part in outside_parts(box, size):
            py0, px0, py1, px1 = part
            ax.add_patch(
                rect(px0, py0, px1, py1, facecolor="none", edgecolor=color, hatch="////", linewidth=0, alpha=0.55, zorder=z, gid=f"padding {tag}")
            )
        sbox = analysis.support_box(row.name, cell) if support else None
        if sbox is not None:
            sy0, sx0, sy1, sx1 = sbox
            ax.add_patch(
                rect(sx0, sy0, sx1, sy1, fill=False, edgecolor=color, linewidth=1.3, linestyle=":", zorder=z + 0.002, gid=f"support {tag}")
            )
        cy, cx = (float(c) for c in analysis.center(row.name, cell))
        ax.plot([cx], [cy], marker="P", markersize=11, color=color, markeredgecolor="white", markeredgewidth=1.2, zorder=z + 0.003, gid=f"center {tag}", linestyle="none")
        label = f"cell ({cell[0]}, {cell[1]}): y {y0}..{y1}, x {x0}..{x1}  ({y1 - y0 + 1}x{x1 - x0 + 1})"
        if support:
            label += "\n    support " + ("none (sees only padding)" if sbox is None else f"y {sbox[0]}..{sbox[2]}, x {sbox[1]}..{sbox[3]}")
        label += f"\n    center ({fmt_center(cy)}, {fmt_center(cx)})"
        handles.append(Patch(facecolor=color, alpha=0.35, edgecolor=color, label=label))
    handles += [
        Line2D([], [], color=MUTED, linewidth=2.2, label="RF box inside the image"),
        Patch(facecolor="none", edgecolor=MUTED, hatch="////", linestyle=(0, (4, 3)), label="RF box in padding"),
    ]
    if support:
        handles.append(Line2D([], [], color=MUTED, linewidth=1.3, linestyle=":", label="support (pixels that matter)"))
    handles.append(Line2D([], [], color=MUTED, marker="P", linestyle="none", markersize=9, label="RF center"))
    frame(ax, size, boxes)
    layer_title(ax, analysis, row)
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
    check_picture(analysis.input_size[0], analysis.input_size[1], "a figure")
    points = row.output_size[0] * row.output_size[1]
    if points > MAX_GRID_POINTS:
        raise RFMapError(
            f"layer '{row.name}' has {points:,} cells, beyond rfmap's limit of {MAX_GRID_POINTS:,} centers in a grid "
            "figure (rfmap.core.budget.MAX_GRID_POINTS); pick a later layer or a smaller input size"
        )
    ay, ax_ = axis_cells(analysis, row.name, support=False)
    size = (analysis.input_size[0], analysis.input_size[1])
    fig, ax = figure_for(ax, (7.0, 6.0))
    note = draw_canvas(ax, size, image)
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
        ax.add_patch(rect(b[1], b[0], b[3], b[2], fill=False, edgecolor=PALETTE[1], linewidth=1.6, linestyle=(0, (4, 3)), zorder=3, gid=f"rf-box {mid[0]},{mid[1]}"))
        ax.plot([cx[mid[1]]], [cy[mid[0]]], marker="P", markersize=11, color=PALETTE[1], markeredgecolor="white", zorder=5, linestyle="none", gid=f"center {mid[0]},{mid[1]}")
    # the distance from the middle cell's center to the next distinct center, per axis
    for axis, centers in ((0, cy), (1, cx)):
        k = mid[axis]
        while k > 0 and centers[k - 1] == centers[k]:
            k -= 1  # first cell of the run sharing this center (after upsampling)
        nxt = next((j for j in range(k + 1, centers.size) if centers[j] != centers[k]), None)
        if nxt is None:
            continue
        c0, c1 = float(centers[k]), float(centers[nxt])
        cells_apart = nxt - k
        text = f"stride {fmt_center(c1 - c0)}" if cells_apart == 1 else f"{fmt_center(c1 - c0)} px / {cells_apart} cells"
        other = float(cx[mid[1]] if axis == 0 else cy[mid[0]])
        p0, p1 = ((other, c0), (other, c1)) if axis == 0 else ((c0, other), (c1, other))
        ax.annotate("", xy=p1, xytext=p0, arrowprops=dict(arrowstyle="<|-|>", color=PALETTE[1], lw=1.4, shrinkA=0, shrinkB=0, mutation_scale=8), zorder=6, gid=f"stride-{'yx'[axis]}")
        mid_pt = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        ax.annotate(
            text, mid_pt, xytext=(-16, 0) if axis == 0 else (0, 14), textcoords="offset points", fontsize=8, color=INK,
            ha="right" if axis == 0 else "center", va="center" if axis == 0 else "bottom", zorder=7,
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=PALETTE[1], linewidth=0.8, alpha=0.92),
            arrowprops=dict(arrowstyle="-", color=PALETTE[1], lw=0.8, shrinkA=0, shrinkB=2),
        )
    boxes.append((int(np.floor(cy.min())), int(np.floor(cx.min())), int(np.ceil(cy.max())), int(np.ceil(cx.max()))))
    frame(ax, size, boxes)
    variable = "" if row.shift_invariant else " (rf varies by cell)"
    layer_title(ax, analysis, row, f" · {n} centers{variable}")
    if note:
        ax.annotate(note, (0, -0.1), xycoords="axes fraction", fontsize=7.5, color=MUTED, va="top")
    return fig
