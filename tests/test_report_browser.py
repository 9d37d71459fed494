"""The HTML report in a real browser: headless Chromium driven by Playwright.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``RFMAP_CHROMIUM``) and the
``playwright`` Python package (no browser download: Playwright drives the system
Chromium).  Skipped when either is missing, unless ``RFMAP_REQUIRE_BROWSER=1`` (as in CI),
which turns the skip into a failure.

The test moves the mouse onto the RF center of chosen cells, computed from the canvas
geometry the page exposes (``data-scale``, ``data-x0``, ``data-y0`` on ``#view``: CSS pixels
per input pixel, and the CSS offset of the point (0, 0)), reads the box the page shows
(``#cell-box[data-box]``) and compares it with :meth:`Analysis.rf_box`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import rfmap
from rfmap.core.graph import Graph
from rfmap.core.layers import conv
from rfmap.errors import RFMapWarning
from rfmap.viz._data import encode_png
from rfmap.viz.report import write_report

SPECS = Path(__file__).parent / "golden" / "specs"
CHROMIUM = os.environ.get("RFMAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRED = os.environ.get("RFMAP_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why:
        if REQUIRED:
            pytest.fail(f"RFMAP_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A report open in the browser, with every request and dialog recorded."""

    def __init__(self, browser, path: Path, width: int = 1400, height: int = 1100):
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = page = self.context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", on_dialog)
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]")

    def select(self, name: str) -> None:
        self.page.click(f"#layers-body tr[data-index='{self.index(name)}']")
        shown = self.page.eval_on_selector("#layer-select", "e => e.options[e.selectedIndex].textContent")
        assert shown.startswith(name) or shown.startswith(f"\u2068{name}\u2069")  # bidi-isolated names

    def index(self, name: str) -> int:
        return self.page.eval_on_selector_all("#layers-body tr", "rows => rows.map(r => r.dataset.layer)").index(name)

    def hover(self, y: float, x: float) -> dict:
        """Move the mouse to the input point (y, x) (pixel-index) and read what the page shows."""
        view = self.page.locator("#view")
        view.scroll_into_view_if_needed()
        box = view.bounding_box()
        scale, x0, y0 = (float(v) for v in self.page.eval_on_selector("#view", "e => [e.dataset.scale, e.dataset.x0, e.dataset.y0]"))
        self.page.mouse.move(box["x"] + x0 + x * scale, box["y"] + y0 + y * scale)
        return self.shown()

    def shown(self) -> dict:
        return self.page.eval_on_selector("#cell-box", "e => Object.assign({text: e.textContent}, e.dataset)")

    def close(self) -> None:
        self.context.close()


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def check_cells(page: Page, analysis, layer: str, cells) -> None:
    page.select(layer)
    for cell in cells:
        cy, cx = (float(c) for c in analysis.center(layer, cell))
        shown = page.hover(cy, cx)
        point = tuple(float(v) for v in shown["point"].split(","))
        assert point == pytest.approx((cy, cx), abs=1e-3)
        # the page's cell is the API's nearest cell to the point it computed from the mouse
        expected = analysis.nearest_cell(layer, point)
        assert ints(shown["cell"]) == expected
        assert shown["layer"] == layer
        assert ints(shown["box"]) == analysis.rf_box(layer, expected)
        y0, x0, y1, x1 = analysis.rf_box(layer, expected)
        assert shown["text"] == f"y {y0}..{y1}, x {x0}..{x1}"
        support = analysis.support_box(layer, expected)
        assert (ints(shown["support"]) if shown["support"] else None) == support


def assert_offline(page: Page) -> None:
    assert page.requests, "the page load itself is a request"
    bad = [u for u in page.requests if not (u.startswith("file:") or u.startswith("data:"))]
    assert bad == [], f"network requests: {bad}"
    assert page.errors == []


def test_boxes_under_the_mouse_equal_the_api(browser, chain, tmp_path):
    img = tmp_path / "img.png"
    yy, xx = np.mgrid[0:30, 0:44]
    img.write_bytes(encode_png(np.dstack([xx * 5, yy * 8, np.full_like(xx, 160)]).astype(np.uint8)))
    path = Path(write_report(chain, tmp_path / "chain.html", image=img))
    page = Page(browser, path)
    try:
        assert page.page.eval_on_selector("#view", "e => e.dataset.image") == "loaded"
        for layer in ("c1", "p1", "c2", "c3"):
            h, w = chain.layer(layer).output_size
            # corners (reaching into padding), a border cell, the middle
            check_cells(page, chain, layer, [(0, 0), (h - 1, w - 1), (0, w // 2), (h // 2, w // 2)])
        page.page.screenshot(path=str(tmp_path / "chain.png"), full_page=True)
        assert_offline(page)
    finally:
        page.close()


def test_vgg16_and_a_screenshot(browser, tmp_path):
    analysis = rfmap.analyze(SPECS / "vgg16.yaml")
    path = Path(write_report(analysis, tmp_path / "vgg16.html"))
    page = Page(browser, path)
    try:
        check_cells(page, analysis, "conv5_3", [(0, 0), (13, 13), (7, 7), (13, 2)])
        check_cells(page, analysis, "pool1", [(0, 0), (111, 111), (50, 3)])
        check_cells(page, analysis, "pool5", [(0, 0), (3, 6)])
        # selected row highlighted; the select box follows
        assert page.page.eval_on_selector("tr.selected", "e => e.dataset.layer") == "pool5"
        page.page.select_option("#layer-select", str(page.index("conv4_3")))
        assert page.page.eval_on_selector("tr.selected", "e => e.dataset.layer") == "conv4_3"
        # the corner cell's box reaches into padding: the badge says so
        page.hover(*(float(c) for c in analysis.center("conv4_3", (0, 0))))
        assert page.page.eval_on_selector("#pad-badge", "e => e.hidden") is False
        page.hover(*(float(c) for c in analysis.center("conv4_3", (14, 14))))
        assert page.page.eval_on_selector("#pad-badge", "e => e.hidden") is True
        page.page.screenshot(path=str(tmp_path / "vgg16.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'vgg16.png'}")
        assert_offline(page)
    finally:
        page.close()


def test_upsampling_and_merges(browser, tmp_path):
    """Non-shift-invariant layers (repeated centers) and a misaligned merge."""
    decoder = rfmap.analyze(SPECS / "upsample.toml")
    page = Page(browser, Path(write_report(decoder, tmp_path / "decoder.html")))
    try:
        check_cells(page, decoder, "up", [(0, 0), (1, 1), (2, 5), (31, 31), (16, 9)])
        check_cells(page, decoder, "deconv", [(0, 0), (15, 15), (7, 8)])
        assert_offline(page)
    finally:
        page.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        mis = rfmap.analyze(SPECS / "misaligned.yaml")
    page = Page(browser, Path(write_report(mis, tmp_path / "mis.html")))
    try:
        check_cells(page, mis, "sum", [(0, 0), (15, 23), (8, 8)])
        assert page.page.eval_on_selector("#warnings", "e => e.hidden") is False
        assert page.page.eval_on_selector("#warning-list", "e => e.textContent") == "".join(mis.messages)
        assert page.page.eval_on_selector_all("tr.misaligned", "rows => rows.map(r => r.dataset.layer)") == ["sum"]
    finally:
        page.close()


def test_erf_overlay(browser, chain, tmp_path):
    h, w = chain.input_size
    yy, xx = np.mgrid[0:h, 0:w]
    peak = (20, 30)
    m = np.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / (2 * 3.0**2))
    erf = {"map": m, "layer": "c2", "cell": (5, 7), "sigma": 3.0, "center": peak}
    page = Page(browser, Path(write_report(chain, tmp_path / "erf.html", erf=erf)))
    try:
        p = page.page
        assert p.eval_on_selector("#erf-toggle", "e => e.hidden") is False
        page.select("c2")  # the ERF's layer: its cell is shown first
        assert ints(page.shown()["cell"]) == (5, 7)
        assert ints(page.shown()["box"]) == chain.rf_box("c2", (5, 7))
        pixel = """e => { const s = Number(e.dataset.scale), r = window.devicePixelRatio || 1;
            const x = Math.round((Number(e.dataset.x0) + PX * s) * r), y = Math.round((Number(e.dataset.y0) + PY * s) * r);
            return Array.from(e.getContext('2d').getImageData(x, y, 1, 1).data); }"""
        pixel = pixel.replace("PX", str(int(peak[1]))).replace("PY", str(int(peak[0])))
        on = p.eval_on_selector("#view", pixel)
        p.click("#show-erf")
        off = p.eval_on_selector("#view", pixel)
        r, g, b, _ = off
        assert b > r, off  # the grey canvas, tinted blue by the box
        r, g, b, _ = on
        assert r > b + 15 and g > b + 15, on  # the bright (yellow) end of the colour map
        assert sum(abs(x - y) for x, y in zip(on, off)) > 30
        p.click("#show-erf")
        p.screenshot(path=str(tmp_path / "erf.png"), full_page=True)
        assert_offline(page)
    finally:
        page.close()


def test_keyboard_pins_and_moves_the_cell(browser, chain, tmp_path):
    page = Page(browser, Path(write_report(chain, tmp_path / "k.html")))
    try:
        page.select("c2")
        page.hover(*(float(c) for c in chain.center("c2", (2, 3))))
        page.page.mouse.down()  # a click where the mouse is pins the cell (and focuses the canvas)
        page.page.mouse.up()
        assert ints(page.shown()["cell"]) == (2, 3)
        page.page.keyboard.press("ArrowRight")
        page.page.keyboard.press("ArrowDown")
        page.page.keyboard.press("ArrowDown")
        shown = page.shown()
        assert ints(shown["cell"]) == (4, 4)
        assert ints(shown["box"]) == chain.rf_box("c2", (4, 4))
        page.page.mouse.move(5, 5)  # pinned: moving away changes nothing
        assert ints(page.shown()["cell"]) == (4, 4)
    finally:
        page.close()


def test_script_in_a_layer_name_is_text(browser, tmp_path):
    evil = "<script>alert(1)</script>"
    evil2 = '"><img src=x onerror=alert(2)>'
    g = Graph.chain([(evil, conv(3, 2, 1)), (evil2, conv(3))], name="<b>net</b><script>alert(3)</script>", input_size=(20, 24))
    analysis = rfmap.analyze(g)
    page = Page(browser, Path(write_report(analysis, tmp_path / "evil.html")))
    try:
        p = page.page
        names = p.eval_on_selector_all("#layers-body tr td:first-child", "tds => tds.map(td => td.textContent)")
        assert names == [evil, evil2]
        assert p.eval_on_selector("#title", "e => e.textContent") == "<b>net</b><script>alert(3)</script>"
        assert p.title() == "<b>net</b><script>alert(3)</script> — receptive fields"
        options = p.eval_on_selector_all("#layer-select option", "os => os.map(o => o.textContent)")
        assert options[0].startswith(evil)
        page.select(evil)
        assert page.hover(3, 3)["layer"] == evil
        assert p.eval_on_selector("#cell-index", "e => e.textContent").count(evil) == 1
        # nothing ran: no dialog, no element made from a name
        p.wait_for_timeout(200)
        assert page.dialogs == []
        assert p.eval_on_selector_all("body img, body b", "es => es.length") == 0
        assert p.eval_on_selector_all("script", "es => es.length") == 2
        assert_offline(page)
    finally:
        page.close()


def test_narrow_window(browser, chain, tmp_path):
    """On a narrow screen the table goes below the explorer and the canvas still fits."""
    page = Page(browser, Path(write_report(chain, tmp_path / "n.html")), width=420, height=900)
    try:
        p = page.page
        width = p.eval_on_selector("#view", "e => e.getBoundingClientRect().width")
        assert width <= 420
        ex = p.eval_on_selector(".explorer", "e => e.getBoundingClientRect().bottom")
        table = p.eval_on_selector("#layers", "e => e.getBoundingClientRect().top")
        assert table > ex
        check_cells(page, chain, "c3", [(0, 0), (2, 4)])
        p.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
    finally:
        page.close()


def test_hostile_names_and_title_are_text(browser, tmp_path):
    """Script ends, template slots, rich markup and a bidi override in names and the title:
    nothing runs, the page loads, every name shows as written, isolated from its neighbours."""
    names = ["</script><script>alert(1)</script>", "{{DATA}}", "[bold red]x[/]", "\u202eevil", "<!--", "{{TITLE}}"]
    title = "{{DATA}}</title><script>alert(2)</script>\u202e"
    g = Graph.chain([(n, conv(3, 2, 1) if k < 2 else conv(3)) for k, n in enumerate(names)], name="{{TITLE}}", input_size=(40, 36))
    analysis = rfmap.analyze(g)
    page = Page(browser, Path(write_report(analysis, tmp_path / "hostile.html", title=title)))
    try:
        p = page.page
        p.wait_for_timeout(200)
        assert page.dialogs == [] and page.errors == []
        assert p.eval_on_selector_all("#layers-body tr td:first-child", "tds => tds.map(td => td.textContent)") == names
        assert p.eval_on_selector("#title", "e => e.textContent") == "{{TITLE}}"
        assert p.title() == "\u2068" + title + "\u2069"  # the override cannot run past the title
        options = p.eval_on_selector_all("#layer-select option", "os => os.map(o => o.textContent)")
        assert options[3].startswith("\u2068\u202eevil\u2069  (")  # isolated inside the option's sentence
        assert options[0].startswith(names[0] + "  (")
        page.select("\u202eevil")
        page.hover(20, 18)
        assert "'\u2068\u202eevil\u2069'" in p.eval_on_selector("#cell-index", "e => e.textContent")
        assert p.eval_on_selector("#layers-body td.name", "e => getComputedStyle(e).unicodeBidi") == "isolate"
        assert p.eval_on_selector_all("script", "es => es.length") == 2
        assert p.eval_on_selector_all("body b, body img", "es => es.length") == 0
        assert_offline(page)
    finally:
        page.close()
