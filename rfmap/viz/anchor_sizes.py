"""Anchor sizes against the theoretical and effective receptive fields, one row per
pyramid level (:func:`plot_anchors`); sizes in input pixels on a log-2 axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rfmap.errors import RFMapError
from rfmap.viz._canvas import ANCHOR_COLOR, ERF_COLOR, GRID, INK, MUTED, TRF_COLOR, figure_for, fmt_center

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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


#: one level as drawn: its label, stride, anchor sides, theoretical and effective RF sizes
_Level = tuple[str, float | None, list[float], float | None, float | None]


def plot_anchors(levels: Sequence[Any], *, ax: Axes | None = None) -> Figure:
    """Anchor sizes against the theoretical and effective RF, one row per pyramid level.

    ``levels``: mappings (or objects) with ``stride``, ``anchors`` (sizes: numbers or
    ``(h, w)`` pairs), ``trf`` (the theoretical RF size) and optionally ``erf`` (an effective
    RF size, e.g. the 4 sigma span) and ``name``.  The levels of an
    :class:`rfmap.anchors.AnchorReport` (``step``, ``boxes``, ``trf``, ``erf_span``), or the
    report itself, work too.  Pairs are drawn as the side ``sqrt(h * w)`` of the square of
    the same area.  Sizes are in input pixels on a log-2 axis.
    """
    if hasattr(levels, "levels"):  # a report holding its levels (rfmap.anchors.AnchorReport)
        levels = levels.levels
    if not levels:
        raise RFMapError("plot_anchors: no levels")
    parsed = [_parse_level(k, level) for k, level in enumerate(levels)]
    n = len(parsed)
    fig, ax = figure_for(ax, (7.4, max(2.6, 0.62 * n + 1.6)))
    ys = np.arange(n)
    values: list[float] = []
    for y, level in zip(ys, parsed):
        values += _draw_level(ax, float(y), level)
    if not values:
        raise RFMapError("plot_anchors: no sizes to draw")
    _size_axis(ax, values)
    ax.set_yticks(ys, [p[0] for p in parsed], fontsize=9)
    ax.set_ylim(n - 0.5, -0.7)
    ax.set_xlabel("size (input pixels, log scale)")
    ax.grid(True, axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    ax.tick_params(axis="x", labelsize=8, colors=MUTED)
    ax.tick_params(axis="y", length=0)
    _legend(ax)
    ax.set_title("anchors against receptive fields", fontsize=10, loc="left", color=INK, pad=22)
    return fig


def _parse_level(k: int, level: Any) -> _Level:
    """Level ``k`` (a mapping or an object) as sizes in input pixels (see :func:`plot_anchors`)."""
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
    label = str(name) if name is not None else (f"stride {fmt_center(stride)}" if stride else f"level {k}")
    return label, stride, sides, trf, erf


def _draw_level(ax: Axes, y: float, level: _Level) -> list[float]:
    """One row: the span of its sizes, the stride, anchors, ERF and TRF markers, and the
    anchor/ERF and anchor/TRF ratios at the right; returns the sizes drawn."""
    _name, stride, sides, trf, erf = level
    row_values = [v for v in [stride, trf, erf, *sides] if v]
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
    return row_values


def _size_axis(ax: Axes, values: list[float]) -> None:
    """A log-2 x axis around ``values``, ticks at the powers of 2 inside it."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.set_xlim(lo, hi)
    ticks = [2.0**e for e in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1) if lo <= 2.0**e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Axes) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="|", markersize=12, markeredgewidth=2, color=MUTED, linestyle="none", label="stride"),
        Line2D([], [], marker="s", markerfacecolor="none", markeredgewidth=1.6, color=ANCHOR_COLOR, linestyle="none", label="anchor sizes"),
        Line2D([], [], marker="o", color=ERF_COLOR, linestyle="none", label="effective RF"),
        Line2D([], [], marker="D", color=TRF_COLOR, linestyle="none", label="theoretical RF"),
    ]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, fontsize=8, frameon=False, borderaxespad=0.3)
