"""The effective receptive field as a heatmap, with the theoretical RF box and the 1 and 2
sigma ellipses of a Gaussian fit (:func:`plot_erf`).

Coordinates: pixel-index convention (see :mod:`rfmap.viz.figures`); boxes are inclusive
``(y0, x0, y1, x1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rfmap.erf import gaussian_fit
from rfmap.errors import RFMapError
from rfmap.viz._canvas import INK, MUTED, figure_for, fmt_center, frame, rect

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

def _erf_fields(erf_map: Any, trf_box: Any, sigma: Any, center: Any) -> tuple[np.ndarray, Any, Any, Any]:
    """Accept a plain array, or an object/mapping with ``map`` (and maybe ``sigma``, ``center``, ``trf_box``)."""
    get: Callable[..., Any]
    if isinstance(erf_map, Mapping):
        get = erf_map.get
    elif hasattr(erf_map, "map"):
        def get(key: str, default: Any = None) -> Any:
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


def _sigma_pair(sigma: Any) -> tuple[float, float]:
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
    cy, cx = (float(v) for v in center)
    fig, ax = figure_for(ax, (6.6, 5.6))
    vmax = values.max() or 1.0
    im = ax.imshow(values, extent=(-0.5, w - 0.5, h - 0.5, -0.5), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest", zorder=0)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cbar.set_label("|gradient| (ERF)", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ax.add_patch(rect(0, 0, w - 1, h - 1, fill=False, edgecolor=MUTED, linewidth=1, zorder=1, gid="image-border"))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    handles = []
    boxes = []
    if trf_box is not None:
        b = [int(v) for v in trf_box]
        if len(b) != 4:
            raise RFMapError(f"trf_box must be (y0, x0, y1, x1), got {trf_box!r}")
        boxes.append(b)
        ax.add_patch(rect(b[1], b[0], b[3], b[2], fill=False, edgecolor="#56B4E9", linewidth=2, linestyle=(0, (5, 3)), zorder=3, gid="trf-box"))
        handles.append(Line2D([], [], color="#56B4E9", linewidth=2, linestyle=(0, (5, 3)), label=f"theoretical RF {b[2] - b[0] + 1}x{b[3] - b[1] + 1}"))
    styles: tuple[tuple[int, Literal["-", "--"]], ...] = ((1, "-"), (2, "--"))
    for k, style in styles:
        ax.add_patch(
            Ellipse((cx, cy), 2 * k * sx, 2 * k * sy, fill=False, edgecolor="white", linewidth=1.6, linestyle=style, zorder=4, gid=f"sigma-{k}")
        )
        handles.append(Line2D([], [], color=MUTED, linewidth=1.6, linestyle=style, label=f"{k} sigma" + (" (from moments)" if estimated and k == 1 else "")))
    ax.plot([cx], [cy], marker="+", color="white", markersize=10, zorder=5, linestyle="none", gid="erf-center")
    frame(ax, (h, w), boxes)
    ax.set_title(
        title or f"effective receptive field · sigma {fmt_center(round(sy, 2))} x {fmt_center(round(sx, 2))} px",
        fontsize=10, loc="left", color=INK,
    )
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=3, frameon=False)
    return fig
