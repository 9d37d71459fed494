"""The published numbers vendored in ``tests/data/published``: each file cites its source and
holds the numbers in Markdown tables, read here so that tests take them from one place."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PUBLISHED = Path(__file__).parent / "data" / "published"


@cache
def table(name: str) -> tuple[dict[str, str], ...]:
    """The rows of the first Markdown table in ``tests/data/published/<name>.md``, as dicts
    keyed by the header's column names (cells as strings, stripped)."""
    lines = (PUBLISHED / f"{name}.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("|")]
    if len(rows) < 3:
        raise AssertionError(f"{name}.md has no table")
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]
    return tuple(dict(zip(header, row)) for row in body)


def ints(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``."""
    return tuple(int(v) for v in text.split(","))
