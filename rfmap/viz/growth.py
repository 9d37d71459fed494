"""Receptive-field size and effective stride by depth (:func:`plot_growth`).

Reads the per-layer rows of an :class:`~rfmap.core.analysis.Analysis` (sizes in input
pixels, pixel-index convention); artists carry the ``gid`` ``rf-<axes>`` / ``stride-<axes>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from rfmap.core.result import axis_names
from rfmap.errors import RFMapError
from rfmap.viz._canvas import GRID, INK, MUTED, PALETTE

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from rfmap.core.analysis import Analysis

#: the shading of layers that see the whole input (stride 0)
GLOBAL_COLOR = "#f1e7d0"


def plot_growth(analysis: Analysis, *, log: bool = False, layers: Sequence[str] | None = None,
                ax: Sequence[Axes] | None = None) -> Figure:
    """RF size (top) and effective stride (bottom) of every layer, in network order.

    Per axis when the axes differ anywhere (``H`` and ``W`` lines), one line otherwise.
    ``log``: logarithmic (base 2) y axes.  Layers that see the whole input through a global op
    (stride 0) are shaded and left out of the stride panel; layers whose RF varies from cell to
    cell show their largest RF (hollow markers).  ``ax``: a pair of axes (RF, stride) to draw
    into.
    """
    rows = [r for r in analysis.layers[1:] if layers is None or r.name in set(layers)]
    if not rows:
        raise RFMapError("plot_growth: no layers to draw")
    fig, ax_rf, ax_st = _panels(ax, len(rows))
    x = np.arange(1, len(rows) + 1)
    rf = np.array([r.rf for r in rows], dtype=float)
    stride = np.array([[float(s) for s in r.stride] for r in rows], dtype=float)
    glob = np.array([all(s == 0 for s in r.stride) for r in rows])
    varies = np.array([not r.shift_invariant for r in rows])
    stride_plot = np.where(stride > 0, stride, np.nan)
    handles: dict[str, Line2D] = {}
    one_line = not any(_axes_differ(d) for d in (rf, stride_plot))
    for axp, data, what in ((ax_rf, rf, "rf"), (ax_st, stride_plot, "stride")):
        differ = _draw_series(analysis, axp, x, data, what, varies, handles, one_line)
        if what == "rf":
            _draw_input_sizes(analysis, axp, differ)
    if len(handles) == 1:
        handles = {}  # a single line needs no legend
    for axp in (ax_rf, ax_st):
        _style_panel(axp, x, glob, log)
    ax_rf.set_ylabel("RF size (pixels)")
    ax_st.set_ylabel("effective stride")
    ax_rf.set_title(
        f"{analysis.graph.name}: receptive field and stride by depth (input {'x'.join(map(str, analysis.input_size))})",
        fontsize=10, loc="left", color=INK,
    )
    _legend(ax_rf, list(handles.values()), bool(varies.any()), bool(glob.any()))
    step = max(1, math.ceil(len(rows) / 60))
    ax_st.set_xticks(x[::step])
    ax_st.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=7.5)
    ax_st.set_xlim(0.4, len(rows) + 0.6)
    ax_st.set_xlabel("layer")
    return fig


def _panels(ax: Sequence[Axes] | None, n: int) -> tuple[Figure, Axes, Axes]:
    """The figure and its two panels (RF above stride), new for ``n`` layers or the pair ``ax``."""
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(min(max(6.5, 0.28 * n + 2.5), 18), 6.2), dpi=100, layout="constrained")
        ax_rf, ax_st = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        return fig, ax_rf, ax_st
    ax_rf, ax_st = ax
    return cast("Figure", ax_rf.figure), ax_rf, ax_st  # a SubFigure where the axes are in one


def _axes_differ(data: np.ndarray) -> bool:
    """Some layer's value (rows) differs between the axes (columns)."""
    return bool(np.any((data != data[:, :1]) & ~np.isnan(data)))


def _draw_series(analysis: Analysis, axp: Axes, x: np.ndarray, data: np.ndarray, what: str, varies: np.ndarray,
                 handles: dict[str, Line2D], one_line: bool) -> bool:
    """One line per axis where the axes differ (else one, in ink unless every panel has one
    line), hollow markers where the RF varies by cell; adds their legend entries to
    ``handles``.  Returns whether the axes differ."""
    from matplotlib.lines import Line2D

    names = axis_names(analysis.ndim)
    differ = _axes_differ(data)
    if differ:
        series = [(a, PALETTE[a], names[a]) for a in range(analysis.ndim)]
    else:
        series = [(0, PALETTE[0] if analysis.ndim == 1 or one_line else INK, " = ".join(names))]
    for a, color, label in series:
        values = data[:, a]
        axp.plot(x, values, color=color, linewidth=1.8, zorder=3, gid=f"{what}-{label}")
        axp.scatter(x[~varies], values[~varies], s=22, color=color, zorder=4)
        if varies.any():
            axp.scatter(x[varies], values[varies], s=30, facecolors="white", edgecolors=color, linewidths=1.5, zorder=4)
        handles.setdefault(label, Line2D([], [], color=color, marker="o", markersize=4, linewidth=1.8, label=label))
    return differ


def _draw_input_sizes(analysis: Analysis, axp: Axes, per_axis: bool) -> None:
    """Dashed lines at the input size (per axis where they differ and ``per_axis``)."""
    names = axis_names(analysis.ndim)
    sizes = analysis.input_size if per_axis else analysis.input_size[:1]
    for a, size in enumerate(sizes):
        if len(set(analysis.input_size)) == 1 and a > 0:
            break
        axp.axhline(size, color=MUTED, linewidth=1, linestyle=(0, (4, 3)), zorder=2)
        tag = f"{names[a]} " if len(set(analysis.input_size)) > 1 else ""
        axp.annotate(
            f"input {tag}{size}", (0.005, size), xycoords=("axes fraction", "data"), fontsize=8, color=MUTED,
            va="bottom", ha="left", bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8), zorder=5,
        )


def _style_panel(axp: Axes, x: np.ndarray, glob: np.ndarray, log: bool) -> None:
    """Global layers shaded, a light grid, and a linear (integer ticks from 0) or log-2 y axis."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    for k in np.flatnonzero(glob):
        axp.axvspan(x[k] - 0.5, x[k] + 0.5, color=GLOBAL_COLOR, zorder=0, linewidth=0)
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


def _legend(ax_rf: Axes, lines: list[Line2D], varies: bool, glob: bool) -> None:
    """The legend above the RF panel: the lines, hollow markers and global shading (each when drawn)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend: list[Artist] = list(lines)
    if varies:
        legend.append(Line2D([], [], marker="o", color=MUTED, markerfacecolor="white", linestyle="none", label="rf varies by cell (largest)"))
    if glob:
        legend.append(Patch(color=GLOBAL_COLOR, label="global context (stride 0)"))
    if legend:
        ax_rf.legend(handles=legend, fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(legend), borderaxespad=0.2)
        ax_rf.set_title(ax_rf.get_title(loc="left"), fontsize=10, loc="left", color=INK, pad=20)
