"""The zoo's listing as a table (``rfmap zoo``)."""

from __future__ import annotations

from collections.abc import Sequence

from rfmap.render.numbers import fmt_size
from rfmap.render.table import Table, draw


def zoo_table(entries: Sequence[tuple[str, str, Sequence[int] | None]], color: bool | None = False) -> str:
    rows = tuple((n, "" if s is None else fmt_size(s), d) for n, d, s in entries)
    table = Table(f"rfmap zoo: {len(rows)} networks", ("name", "input", "description"), rows, frozenset({"input"}))
    return draw([table], color)
