"""A measured ERF as text (``rfmap erf``): what was measured (network, weights, protocol,
inputs, and whether the inputs can change the map), the fit, the theory, and tables: the
centered squares holding a fraction of the map's mass, and the protocol's own numbers.

Reads an :class:`rfmap.erf.ERF`; computes nothing but the formatting of its statistics.
Coordinates: pixel-index convention, (H, W) order, boxes inclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rfmap.render.numbers import fmt_size, measured, measured_axes
from rfmap.render.table import Table, draw

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.erf import ERF

__all__ = ["erf_tables", "erf_text", "linearity_line", "mass_table", "network_line"]


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{measured(100 * ratio, 4)}%"


def mass_table(result: ERF) -> Table:
    """Per mass fraction ``t``: the side of the smallest centered square holding it and
    RepLKNet's area ratio, of the map and of ``log10(x + 1)`` of the max-normalized map."""
    stats = result.statistics()
    rows = tuple(
        (f"{s['t']:g}", str(s["side"]), _percent(s["area_ratio"]), _percent(s["area_ratio_log"]))
        for s in stats["squares"]
    )
    columns = ("mass t", "square side", "area ratio", "area ratio (log)")
    return Table(
        f"centered squares (center {measured_axes(stats['square_center'])}) holding a fraction t of the map's mass",
        columns,
        rows,
        frozenset(columns[1:]),
        footer=("area ratio = side^2 / image area; (log): of log10(x + 1) of the max-normalized map",),
    )


def _protocol_table(result: ERF) -> Table | None:
    metrics = result.protocol_metrics()
    if "area_ratio" in metrics:  # replknet2022
        columns = ("t", "side", "area ratio")
        rows = tuple(
            (f"{r['t']:g}", "-" if r["side"] is None else str(r["side"]), _percent(r["area_ratio"]))
            for r in metrics["area_ratio"]
        )
        return Table(
            "replknet2022: high-contribution area ratio of log10(x + 1) / max, squares around (H//2, W//2)",
            columns, rows, frozenset(columns[1:]),
        )
    if "radial_cumulative_mass" in metrics:  # openerf
        radial = ("radius px", "mass")
        masses = tuple((str(r["radius"]), measured(r["mass"], 4)) for r in metrics["radial_cumulative_mass"])
        center = ", ".join(str(c) for c in metrics["center"])
        return Table(
            f"openerf: mass of the sum-1 map within a radius of ({center}); "
            f"center of mass {measured_axes(metrics['center_of_mass'])}",
            radial, masses, frozenset(radial),
        )
    return None


def erf_tables(result: ERF) -> list[Table]:
    """The mass table, then the protocol's own table where it has one."""
    extra = _protocol_table(result)
    return [mass_table(result)] + ([extra] if extra is not None else [])


def network_line(result: ERF) -> str:
    """What ran: the module itself or rfmap's linear twin, and its weights."""
    if result.network == "module":
        what = "the PyTorch module itself"
    elif result.network == "twin":
        what = "rfmap's linear twin (the source's geometry in PyTorch ops)"
    else:
        what = "unspecified"
    weights = {
        "as-is": "its own weights" if result.network == "module" else "random positive weights (as-is)",
        "random": "Kaiming-normal weights re-drawn per batch",
        "uniform": "uniform weights 1/fan_in",
    }.get(result.weights, f"weights {result.weights}")
    return f"{what}, {weights}"


def linearity_line(result: ERF) -> str:
    """Whether the inputs (and ``--n``) can change the map, and why."""
    ops = f" ({', '.join(result.nonlinear_ops)})" if result.nonlinear_ops else ""
    if result.linearity == "linear" and result.inputs_matter is False:
        line = "linear: the input gradient is the same for every input, so the inputs and --n cannot change the map"
        if result.weights == "random":
            line += " (--n only averages over weight draws)"
        return line
    if result.linearity == "linear":
        return f"linear, but the {result.protocol} target is not (relu of the cell): inputs matter"
    if result.linearity == "nonlinear":
        return f"nonlinear{ops}: inputs matter"
    return f"not shown to be linear{ops}: inputs may matter"


def _header(result: ERF) -> list[str]:
    lines = [
        f"ERF of {result.model}, layer '{result.layer or 'output'}', cell {tuple(result.cell)}, "
        + f"input {fmt_size(result.input_size)}",
        f"  network     {network_line(result)}",
        f"  linearity   {linearity_line(result)}",
        f"  protocol    {result.protocol}, aggregate {result.aggregate}",
        f"  inputs      {result.inputs or f'{result.n} inputs'}",
        f"  sigma       {measured_axes(result.sigma, 3)} px  (center of mass {measured_axes(result.mean)})",
    ]
    if result.closed_form is not None:
        lines.append(f"  closed form {measured_axes(result.closed_form, 3)} px  (linear network, uniform weights)")
    trf_size, trf_ratio = result.trf_size, result.trf_ratio
    if result.trf_box is not None and trf_size is not None and trf_ratio is not None:  # all three or none
        lines.append(f"  TRF         {fmt_size(trf_size)} px, box {tuple(result.trf_box)}")
        lines.append(f"  4 sigma/TRF {measured_axes(trf_ratio, 3)}")
    lines.extend(f"  note: {note}" for note in result.notes)
    return lines


def erf_text(result: ERF, written: Sequence[str] = ()) -> str:
    """The lines ``rfmap erf`` prints, then ``wrote PATH`` for each file written."""
    lines = _header(result) + [""] + draw(erf_tables(result), color=False).splitlines()
    lines.extend(f"wrote {path}" for path in written)
    return "\n".join(lines)
