"""What every figure of :mod:`rfmap.viz.figures` shares: the figure, colours, the input
image or a checkerboard, boxes drawn as rectangles, the frame around them, saving.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i`` and covers
``[i - 0.5, i + 0.5]`` on the picture); boxes are inclusive ``(y0, x0, y1, x1)``.
matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from rfmap.core.budget import check_picture
from rfmap.errors import RFMapError
from rfmap.render import fmt_axes
from rfmap.viz._data import load_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from rfmap.core.analysis import Analysis
    from rfmap.core.result import LayerGeometry

FORMATS = ("png", "svg", "pdf")

#: Colours of successive cells (colour-blind safe, Okabe-Ito), then the fixed roles.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
INK = "#222222"
MUTED = "#6b6b6b"
GRID = "#e4e4e4"
TRF_COLOR = "#C0392B"
ERF_COLOR = "#E69F00"
ANCHOR_COLOR = "#0072B2"


def figure_for(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A new figure of ``size`` inches with one axes, or ``ax`` and its figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RFMapError("figures need matplotlib: pip install 'rfmap[plot]'") from None

    if ax is not None:
        return cast("Figure", ax.figure), ax  # a SubFigure where ax is in one: it draws alike
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> str:
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


def fmt_center(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def rect(x0: float, y0: float, x1: float, y1: float, **kw: Any) -> Rectangle:
    """The inclusive pixel box ``x0..x1``, ``y0..y1`` as a Rectangle (pixel edges at +-0.5)."""
    from matplotlib.patches import Rectangle

    return Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, **kw)


def draw_canvas(ax: Axes, size: tuple[int, int], image: Any) -> str | None:
    """The image (stretched to ``size``) or a neutral checkerboard, and the image border.
    Returns a note when the image was resized."""
    h, w = size
    check_picture(h, w, "a figure")
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    arr = load_image(image)
    note = None
    if arr is not None:
        kw: dict[str, Any] = {"cmap": "gray"} if arr.ndim == 2 else {}
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
    border = rect(0, 0, w - 1, h - 1, fill=False, edgecolor=INK, linewidth=1.2, zorder=1, gid="image-border")
    ax.add_patch(border)
    ax.set_aspect("equal")
    return note


def frame(ax: Axes, size: tuple[int, int], boxes: Sequence[Sequence[int]], pad: float = 0.04) -> None:
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


def outside_parts(box: Sequence[int], size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
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


def layer_title(ax: Axes, analysis: Analysis, row: LayerGeometry, extra: str = "") -> None:
    ax.set_title(
        f"{analysis.graph.name} · layer '{row.name}' ({row.op}, {row.output_size[0]}x{row.output_size[1]} cells)\n"
        f"rf {fmt_axes(row.rf)}, stride {fmt_axes(row.stride)}, padding {fmt_axes(row.padding)}{extra}",
        fontsize=10,
        loc="left",
        color=INK,
    )
