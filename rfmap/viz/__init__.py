"""Pictures and a report of receptive fields.

* :mod:`rfmap.viz.figures` -- matplotlib figures: :func:`plot_rf_boxes`, :func:`plot_center_grid`,
  :func:`plot_growth`, :func:`plot_erf`, :func:`plot_anchors` (and :func:`save`).
* :mod:`rfmap.viz.report` -- :func:`write_report`: one self-contained HTML file with the
  per-layer table and an interactive explorer of every cell's receptive field.

Nothing here is imported by ``import rfmap``, and matplotlib only when a figure is drawn.
"""

from __future__ import annotations

from typing import Any

_FIGURES = ("plot_rf_boxes", "plot_center_grid", "plot_growth", "plot_erf", "plot_anchors", "save")
_REPORT = ("write_report", "render_report", "report_data")

__all__ = list(_FIGURES + _REPORT)


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        from rfmap.viz import figures

        return getattr(figures, name)
    if name in _REPORT:
        from rfmap.viz import report

        return getattr(report, name)
    raise AttributeError(f"module 'rfmap.viz' has no attribute '{name}'")
