"""One table model and its renderers: aligned text, rich (colour), Markdown.

Every table rfmap prints (summary, modules, anchors, ERF, zoo) is a :class:`Table` of
strings; renderers never compute.  Model-provided strings (layer names, titles) are text:
rich output uses ``Text`` objects, never markup, so a name such as ``[bold red]`` prints as
written, and every renderer shows control characters (a terminal escape, a newline) and
bidi controls (U+202E RIGHT-TO-LEFT OVERRIDE) as visible escapes (``\x1b``, ``\u202e``, see
:func:`printable`), so a name can neither restyle the terminal nor reorder a line.
Colour is used only when asked for, or when stdout is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

#: control characters (C0, DEL, C1) and the explicit bidi controls (LRM, RLM, ALM, the
#: embeddings, overrides and isolates), each to its escape (a translate table: compiling the
#: equivalent regular expression cost 2 ms at every start of the command line)
_ESCAPES = {
    c: chr(c).encode("unicode_escape").decode("ascii")
    for c in (*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def printable(text: str) -> str:
    """``text`` with control characters and bidi controls written as escapes (``\\x1b``,
    ``\\n``, ``\\u202e``): what a terminal shows is what the string holds."""
    return text.translate(_ESCAPES)


def _clean(t: Table) -> Table:
    """The table with every string :func:`printable`."""
    return Table(
        printable(t.title),
        tuple(printable(c) for c in t.columns),
        tuple(tuple(printable(c) for c in row) for row in t.rows),
        frozenset(printable(c) for c in t.numeric),
        t.highlight_row,
        tuple(printable(x) for x in t.footer),
        tuple(printable(x) for x in t.warnings),
        None if t.flag_column is None else printable(t.flag_column),
        t.flag_styles,
    )


@dataclass(frozen=True)
class Table:
    """A titled table: ``columns`` and ``rows`` of strings; ``numeric`` columns are
    right-aligned; ``highlight_row`` (an index) is set apart (the network's output, last);
    ``footer`` lines and ``warnings`` follow the table; ``flag_column`` holds one-letter
    flags coloured by ``flag_styles``."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[str] = frozenset()
    highlight_row: int | None = None
    footer: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    flag_column: str | None = None
    flag_styles: dict[str, str] = field(default_factory=dict, compare=False)


def color_wanted(color: bool | None) -> bool:
    """``color`` as asked, or (``None``) whether stdout is a colour terminal."""
    if color is not None:
        return color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def draw(tables: Sequence[Table], color: bool | None = None, footer: Sequence[str] = ()) -> str:
    """Tables as text, with rich when colour is wanted and rich is installed."""
    if color_wanted(color):
        try:
            return to_rich(tables, footer)
        except ImportError:
            pass
    return to_text(tables, footer)


def _text_lines(t: Table) -> list[str]:
    widths = [len(c) for c in t.columns]
    for cells in t.rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if col in t.numeric else c.ljust(w) for col, c, w in zip(t.columns, cells, widths)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [t.title, "", line(t.columns), rule]
    for i, cells in enumerate(t.rows):
        if i == t.highlight_row and i > 0:
            lines.append(rule)
        lines.append(line(cells))
    if not t.rows:
        lines.append("(no rows)")
    lines.append("")
    lines.extend(t.footer)
    lines.extend(f"warning: {msg}" for msg in t.warnings)
    return lines


def to_text(tables: Sequence[Table], footer: Sequence[str] = ()) -> str:
    """Aligned plain text; a highlighted row sits below a rule of its own."""
    tables = [_clean(t) for t in tables]
    footer = [printable(x) for x in footer]
    lines: list[str] = []
    for k, t in enumerate(tables):
        if k:
            lines.append("")
        lines.extend(_text_lines(t))
    lines.extend(footer)
    return "\n".join(lines).rstrip("\n")


def to_rich(tables: Sequence[Table], footer: Sequence[str] = ()) -> str:
    """The same tables drawn by rich, in colour; every cell is a ``Text`` (no markup)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    tables = [_clean(t) for t in tables]
    footer = [printable(x) for x in footer]
    width = max(len(s) for s in to_text(tables, footer).splitlines()) + 8
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, highlight=False, soft_wrap=True, markup=False)
    for k, t in enumerate(tables):
        if k:
            console.print()
        console.print(Text(t.title, style="bold"))
        console.print()
        body = list(t.rows)
        foot = body.pop() if t.highlight_row is not None and t.highlight_row == len(t.rows) - 1 and body else None

        def cell(col: str, text: str, first: bool, t=t) -> Text:
            if col == t.flag_column:
                out = Text()
                for f in text:
                    out.append(f, style=t.flag_styles.get(f, ""))
                return out
            return Text(text, style="cyan" if first else "")

        rt = RichTable(box=box.SIMPLE, show_edge=False, pad_edge=False, header_style="bold",
                       show_footer=foot is not None, footer_style="bold")
        for j, col in enumerate(t.columns):
            rt.add_column(Text(col), footer=Text("") if foot is None else cell(col, foot[j], False),
                          justify="right" if col in t.numeric else "left", no_wrap=True)
        for cells in body:
            rt.add_row(*(cell(col, c, j == 0) for j, (col, c) in enumerate(zip(t.columns, cells))))
        console.print(rt)
        for text in t.footer:
            console.print(Text(text))
        for msg in t.warnings:
            console.print(Text(f"warning: {msg}", style="yellow"))
    for line in footer:
        console.print(Text(line, style="yellow" if line.startswith("- ") else ""))
    return buf.getvalue().rstrip("\n")


def _md_escape(text: str) -> str:
    out = text.replace("\\", "\\\\")
    for ch in "|*_`[]<>#":
        out = out.replace(ch, "\\" + ch)
    return out


def to_markdown(t: Table) -> str:
    """A GitHub table; the highlighted row in bold."""
    t = _clean(t)
    align = {True: "--:", False: ":--"}
    lines = [f"**{_md_escape(t.title)}**", ""]
    lines.append("| " + " | ".join(_md_escape(c) for c in t.columns) + " |")
    lines.append("|" + "|".join(align[col in t.numeric] for col in t.columns) + "|")
    for i, cells in enumerate(t.rows):
        texts = [_md_escape(c) for c in cells]
        if i == t.highlight_row:
            texts = [f"**{x}**" if x else x for x in texts]
        lines.append("| " + " | ".join(texts) + " |")
    lines.append("")
    lines.extend(f"- {_md_escape(text)}" for text in t.footer)
    lines.extend(f"- **warning:** {_md_escape(msg)}" for msg in t.warnings)
    return "\n".join(line.rstrip() for line in lines)
