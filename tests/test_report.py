"""The HTML report (rfmap.viz.report): self-contained, exact, and safe with any layer name.

These tests read the page as text and its embedded JSON; tests/test_report_browser.py
drives it in a real browser.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import rfmap
from rfmap.core.graph import Graph
from rfmap.core.layers import conv
from rfmap.errors import RFMapError, RFMapWarning
from rfmap.viz._data import axis_cells, encode_png
from rfmap.viz.report import render_report, report_data, write_report

SPECS = Path(__file__).parent / "golden" / "specs"
EVIL = "<script>alert(1)</script>"


def page_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="rfmap-data">(.*?)</script>', page, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def misaligned():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        return rfmap.analyze(SPECS / "misaligned.yaml")


# -- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["chain", "decoder", "tiny"])
def test_every_box_equals_the_api(spec, chain, tiny):
    analysis = {"chain": chain, "tiny": tiny}.get(spec) or rfmap.analyze(SPECS / "upsample.toml")
    data = report_data(analysis)
    assert [layer["name"] for layer in data["layers"]] == [row.name for row in analysis.layers[1:]]
    for layer, row in zip(data["layers"], analysis.layers[1:]):
        ay, ax = layer["axes"]
        h, w = row.output_size
        assert len(ay["lo"]) == h and len(ax["lo"]) == w
        for i in range(h):
            for j in range(w):
                box = (ay["lo"][i], ax["lo"][j], ay["hi"][i], ax["hi"][j])
                assert box == analysis.rf_box(row.name, (i, j)), (row.name, i, j)


@pytest.mark.parametrize("spec", ["chain", "decoder"])
def test_supports_equal_the_api_for_chains(spec, chain):
    analysis = chain if spec == "chain" else rfmap.analyze(SPECS / "upsample.toml")
    data = report_data(analysis)
    for layer, row in zip(data["layers"], analysis.layers[1:]):
        ay, ax = layer["axes"]
        h, w = row.output_size
        for i in range(h):
            for j in range(w):
                want = analysis.support_box(row.name, (i, j))
                got = None if ay["slo"][i] is None or ax["slo"][j] is None else (ay["slo"][i], ax["slo"][j], ay["shi"][i], ax["shi"][j])
                assert got == want, (row.name, i, j)


def test_nearest_cell_rule_matches_the_api(chain, tiny):
    rng = np.random.default_rng(0)
    for analysis in (chain, tiny, rfmap.analyze(SPECS / "upsample.toml")):
        h, w = analysis.input_size
        for row in analysis.layers[1:]:
            ay, ax = axis_cells(analysis, row.name, support=False)
            for _ in range(25):
                p = (rng.uniform(-8, h + 8), rng.uniform(-8, w + 8))
                assert (ay.nearest(p[0]), ax.nearest(p[1])) == analysis.nearest_cell(row.name, p)
            # on a center, and exactly between two centers (ties: the lower index)
            for i in range(min(4, ay.lo.size)):
                c = float(ay.centers[i])
                assert ay.nearest(c) == analysis.nearest_cell(row.name, (c, 0))[0]
                if i + 1 < ay.lo.size:
                    mid = (c + float(ay.centers[i + 1])) / 2
                    assert ay.nearest(mid) == analysis.nearest_cell(row.name, (mid, 0))[0]


def test_table_columns_are_the_cli_columns(chain):
    from rfmap.render import COLUMNS, render

    data = report_data(chain)
    assert data["columns"] == list(COLUMNS)
    text = render(chain, "table", color=False)
    for layer in data["layers"]:
        # every value of the row appears, in order, on the CLI table's line for the layer
        line = next(line for line in text.splitlines() if line.startswith(layer["name"] + " "))
        assert line.split() == [c for c in layer["cells"] if c]


def test_margin_covers_every_box(chain):
    data = report_data(chain)
    h, w = chain.input_size
    m = data["margin"]
    for layer in data["layers"]:
        ay, ax = layer["axes"]
        assert -min(ay["lo"]) <= m["top"] and max(ay["hi"]) - (h - 1) <= m["bottom"]
        assert -min(ax["lo"]) <= m["left"] and max(ax["hi"]) - (w - 1) <= m["right"]


# -- a self-contained page ----------------------------------------------------------------


def test_page_is_self_contained(chain, tmp_path):
    path = write_report(chain, tmp_path / "r.html")
    page = Path(path).read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page_data(page) == json.loads(json.dumps(report_data(chain)))
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"https?://", page), "no URL may appear in the page"
    assert not re.search(r"<(link|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert not re.search(r"@import|url\(", page)
    assert page.count("<script") == 2  # the data block and the inline script


def test_model_names_are_escaped(tmp_path):
    g = Graph.chain([(EVIL, conv(3, 2, 1)), ("b</script><img src=x onerror=alert(2)>", conv(3))], name="<b>net</b>", input_size=(20, 24))
    page = render_report(rfmap.analyze(g))
    assert EVIL not in page and "<img src=x" not in page and "<b>net</b>" not in page
    assert page.count("</script>") == 2
    assert "<title>&lt;b&gt;net&lt;/b&gt;" in page
    data = page_data(page)
    assert data["layers"][0]["name"] == EVIL  # the name survives, as data
    assert data["name"] == "<b>net</b>"


def test_misalignment_is_flagged(misaligned):
    data = report_data(misaligned)
    assert data["messages"] == list(misaligned.messages) and data["messages"]
    flagged = [layer["name"] for layer in data["layers"] if not layer["aligned"]]
    assert flagged == [row.name for row in misaligned.layers[1:] if not row.aligned] == ["sum"]
    assert "!" in data["layers"][-1]["flags"] and "!" in data["flags"]


def test_default_layer_is_the_last_local_one():
    data = report_data(rfmap.analyze(SPECS / "vgg16.yaml"))
    assert data["layers"][data["default_layer"]]["name"] == "pool5"  # fc6.. see the whole input


# -- images -------------------------------------------------------------------------------


def test_image_file_is_embedded_as_is(chain, tmp_path):
    png = encode_png(np.full((60, 88, 3), 90, np.uint8))
    (tmp_path / "i.png").write_bytes(png)
    data = report_data(chain, image=tmp_path / "i.png")
    import base64

    assert data["image"]["uri"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert (data["image"]["h"], data["image"]["w"]) == (60, 88)


def test_image_array_and_errors(chain, tmp_path):
    data = report_data(chain, image=np.zeros((30, 44), np.float32))
    assert data["image"]["uri"].startswith("data:image/png;base64,")
    assert report_data(chain)["image"] is None
    with pytest.raises(RFMapError, match="cannot read image"):
        report_data(chain, image=tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(RFMapError, match="cannot read image"):
        report_data(chain, image=tmp_path / "bad.png")


# -- ERF ----------------------------------------------------------------------------------


def test_erf_overlay_forms(chain):
    h, w = chain.input_size
    m = np.random.default_rng(0).random((h, w))
    (e,) = report_data(chain, erf=m)["erf"]
    assert e["layer"] == chain.output.name and (e["h"], e["w"]) == (h, w) and e["cell"] is None
    import base64

    raw = np.frombuffer(base64.b64decode(e["data"]), np.uint8).reshape(h, w)
    np.testing.assert_array_equal(raw, np.round(255 * m / m.max()).astype(np.uint8))
    obj = SimpleNamespace(map=m, layer="c2", cell=(1, 2), sigma=(2.0, 3.0), mean=(10.0, 12.0))
    (e,) = report_data(chain, erf=obj)["erf"]
    assert (e["layer"], e["cell"], e["sigma"], e["center"]) == ("c2", [1, 2], [2.0, 3.0], [10.0, 12.0])
    entries = report_data(chain, erf={"c1": m, "c2": {"map": m, "sigma": 4, "cell": (6, 10)}})["erf"]
    assert [x["layer"] for x in entries] == ["c1", "c2"] and entries[1]["sigma"] == [4.0, 4.0]
    assert entries[1]["cell"] == [6, 10]  # a cell of c2 (7x11), not of the output (3x5)
    with pytest.raises(RFMapError, match="must match"):
        report_data(chain, erf=np.ones((5, 5)))
    with pytest.raises(RFMapError, match="not a layer"):
        report_data(chain, erf=SimpleNamespace(map=m, layer="nope"))
    with pytest.raises(RFMapError, match="outside layer"):
        report_data(chain, erf=SimpleNamespace(map=m, layer="c3", cell=(9, 9)))


def test_needs_2d():
    with pytest.raises(RFMapError, match="2-D"):
        report_data(rfmap.analyze([[3, 1, 1]], input_size=(16,)))


def test_write_errors(chain, tmp_path):
    with pytest.raises(RFMapError, match="cannot write"):
        write_report(chain, tmp_path / "no" / "r.html")
