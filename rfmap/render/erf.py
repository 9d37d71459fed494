"""A measured ERF as text (``rfmap erf``): what was measured, the fit, the theory, and the
centered squares holding a fraction of the map's mass as a :class:`~rfmap.render.table.Table`.

Reads an :class:`rfmap.erf.ERF`; computes nothing but its statistics' formatting.
Coordinates: pixel-index convention, (H, W) order, boxes inclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rfmap.render.numbers import fmt_size, measured, measured_axes
from rfmap.render.table import Table, draw

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.erf import ERF

__all__ = ["erf_text", "mass_table"]


def _percent(ratio: float) -> str:
    return f"{measured(100 * ratio, 4)}%"


def mass_table(result: ERF) -> Table:
    """Per mass fraction ``t``: the side of the smallest centered square holding it and
    RepLKNet's area ratio, of the map and of ``log10(x + 1)`` of the max-normalized map."""
    stats = result.statistics()
    rows = tuple(
        (f"{s['t']:g}", str(s["side"]), _percent(s["area_ratio"]), _percent(s["area_ratio_log"]))
        for s in stats["squares"]
    )
    center = measured_axes(stats["square_center"])
    columns = ("mass t", "square side", "area ratio", "area ratio (log)")
    return Table(
        f"centered squares (center {center}) holding a fraction t of the map's mass",
        columns,
        rows,
        frozenset(columns[1:]),
        footer=("area ratio = side^2 / image area; (log): of log10(x + 1) of the max-normalized map (RepLKNet)",),
    )


def _header(result: ERF) -> list[str]:
    lines = [
        f"ERF of {result.model}, layer '{result.layer or 'output'}', cell {tuple(result.cell)}, "
        f"input {fmt_size(result.input_size)}",
        f"  {result.n} inputs, weights {result.weights}, aggregate {result.aggregate}",
        f"  sigma       {measured_axes(result.sigma, 3)} px  (center of mass {measured_axes(result.mean)})",
    ]
    if result.closed_form is not None:
        lines.append(f"  closed form {measured_axes(result.closed_form, 3)} px  (linear network, uniform weights)")
    if result.trf_size is not None:
        lines.append(f"  TRF         {fmt_size(result.trf_size)} px, box {tuple(result.trf_box)}")
        lines.append(f"  4 sigma/TRF {measured_axes(result.trf_ratio, 3)}")
    lines.extend(f"  note: {note}" for note in result.notes)
    return lines


def erf_text(result: ERF, written: Sequence[str] = ()) -> str:
    """The lines ``rfmap erf`` prints, then ``wrote PATH`` for each file written."""
    lines = _header(result) + [""] + draw([mass_table(result)], color=False).splitlines()
    lines.extend(f"wrote {path}" for path in written)
    return "\n".join(lines)
