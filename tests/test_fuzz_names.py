"""Hostile names: every string a model provides (network, layer and op names, a report's
title) is text in every output.

Names are drawn from markup (rich's ``[bold red]``, ``[/]``, HTML, Markdown), template slots
(``{{DATA}}``), script ends (``</script>``, ``<!--``), control characters (terminal escapes,
newlines, NUL) and bidi controls (U+202E RIGHT-TO-LEFT OVERRIDE, the isolates), mixed with
ordinary text.  Checked: the plain and coloured tables show them as written, with control
and bidi characters as visible escapes, and never restyle the output; JSON gives them back
exactly; the HTML report embeds them as data (the page's JSON block decodes to the same
names, no slot is filled twice, no markup escapes its element); CLI errors naming them stay
one line.  ``tests/test_report_browser.py`` opens such a report in Chromium.
"""

from __future__ import annotations

import html
import json
import re
import warnings

import pytest
from fuzzing import cli_case, fuzz_settings, profiles
from hypothesis import given
from hypothesis import strategies as st

import rfmap
from rfmap.core.graph import Graph
from rfmap.core.layers import conv
from rfmap.render import render
from rfmap.render.table import printable
from rfmap.viz.report import render_report

pytestmark = pytest.mark.filterwarnings("ignore::rfmap.RFMapWarning")

PIECES = ["[bold red]", "[/]", "[/bold red]", "[link=http://x]", "{{DATA}}", "{{TITLE}}", "</script>", "<script>", "<!--",
          "<b>", "&amp;", "|", "*", "`", "\\", "\x1b[31m", "\x1b]0;pwned\x07", "\n", "\r", "\t", "\x00", "\x7f", "\x9b",
          "\u202e", "\u202d", "\u2066", "\u2069", "\u200f", "\u061c", "abc", "conv", "\u05d0\u05d1", "名", "😀", " "]
names = st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map("".join)

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def network(layer_names, title):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rfmap.analyze(Graph.chain([(n, conv(3, 2, 1)) for n in layer_names], name=title, input_size=(24, 20)))


@pytest.mark.parametrize("examples", profiles(250, 800))
def test_names_are_text_in_every_output(examples):
    @fuzz_settings(examples)
    @given(layer_names=st.lists(names, min_size=1, max_size=3, unique=True), title=names, color=st.booleans())
    def case(layer_names, title, color):
        a = network(layer_names, title)
        table = render(a, "table", color=color)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", table) if color else table  # rich's own colours
        assert not UNSAFE.search(plain.replace("\n", "")), repr(plain)
        for name in layer_names:
            assert printable(name) in plain  # as written, escapes visible
        data = json.loads(render(a, "json"))
        assert [row["name"] for row in data["layers"]] == layer_names
        md = render(a, "markdown")
        assert not UNSAFE.search(md.replace("\n", ""))
        page = render_report(a, title=title)
        check_page(page, layer_names, title)

    case()


def check_page(page: str, layer_names: list[str], title: str) -> None:
    """The report embeds names as data: one JSON block that decodes to them, one script, the
    title escaped inside <title>."""
    blocks = re.findall(r'<script type="application/json" id="rfmap-data">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    data = json.loads(blocks[0])
    assert [layer["name"] for layer in data["layers"]] == layer_names
    assert data["title"] == title
    assert "<" not in blocks[0] and ">" not in blocks[0]
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert page.count("<title>") == 1
    head = page.split("<title>")[1].split("</title>")[0]
    assert "<" not in head and ">" not in head
    assert html.unescape(head) in (title, f"\u2068{title}\u2069")  # bidi-isolated where it needs it


@pytest.mark.parametrize("name", ["[bold red]x[/]", "[/]", "\u202eevil", "a\x1b[2Jb", "x\ny", "{{DATA}}"])
def test_cli_lines_naming_a_hostile_layer(name, tmp_path):
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"input": 16, "layers": [{"name": name, "op": "conv", "kernel": 3}]}))
    status, out, err = cli_case(["cell", str(spec), "nope", "--at", "0,0"])
    assert status == 2 and len(err.splitlines()) == 1 and not UNSAFE.search(err.rstrip("\n"))
    status, out, err = cli_case(["cell", str(spec), name, "--at", "99,0"])
    assert status == 2 and len(err.splitlines()) == 1 and not UNSAFE.search(err.rstrip("\n"))
    assert printable(name.replace("\n", " ")) in err or printable(" ".join(name.split())) in err
    status, out, err = cli_case(["summary", str(spec), "--no-color"])
    assert status == 0 and printable(name) in out


def test_rich_markup_in_names_does_not_restyle():
    a = network(["[bold red]x[/]", "[/]"], "[link=file:///etc/passwd]t[/link]")
    colored = render(a, "table", color=True)
    assert "[bold red]x[/]" in colored and "[/]" in colored and "[link=file:///etc/passwd]t[/link]" in colored
    assert "\x1b]8;" not in colored  # no hyperlink escape was made from the title
