"""Figures (rfmap.viz.figures) and the ``rfmap plot`` command.

Artists are found by their ``gid`` (see the module docstring of rfmap.viz.figures) and
their extents compared with the API: a box ``y0..y1`` is drawn from ``y0 - 0.5`` to
``y1 + 0.5`` (pixel ``i`` covers ``[i - 0.5, i + 0.5]``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import rfmap
from rfmap.cli import plot as plot_cmd
from rfmap.cli import report as report_cmd
from rfmap.cli.common import parse_cells
from rfmap.errors import RFMapError
from rfmap.viz import figures as F
from rfmap.viz._data import axis_cells, embed_image, encode_png, image_size, load_image

SPECS = Path(__file__).parent / "golden" / "specs"


@pytest.fixture(scope="module")
def vgg():
    return rfmap.analyze(SPECS / "vgg16.yaml")


@pytest.fixture(scope="module")
def decoder():
    return rfmap.analyze(SPECS / "upsample.toml")


def patches(fig, prefix):
    ax = fig.axes[0]
    return [p for p in ax.patches if (p.get_gid() or "").startswith(prefix)]


def extent(rect):
    """(y0, x0, y1, x1) inclusive pixel box of a Rectangle drawn by the figures."""
    x, y, w, h = rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()
    return (y + 0.5, x + 0.5, y + h - 0.5, x + w - 0.5)


def union_area(boxes):
    return sum((b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in boxes)


# -- plot_rf_boxes ------------------------------------------------------------------------


def test_rf_boxes_match_the_api(chain):
    row = chain.layer("c3")
    h, w = row.output_size
    cells = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
    fig = F.plot_rf_boxes(chain, "c3", cells)
    for cell in cells:
        tag = f"{cell[0]},{cell[1]}"
        (box,) = patches(fig, f"rf-box {tag}")
        assert extent(box) == chain.rf_box("c3", cell)
        (support,) = patches(fig, f"support {tag}")
        assert extent(support) == chain.support_box("c3", cell)
        (center,) = [line for line in fig.axes[0].lines if line.get_gid() == f"center {tag}"]
        cy, cx = chain.center("c3", cell)
        assert (center.get_ydata()[0], center.get_xdata()[0]) == (float(cy), float(cx))
    # three cells: three whole boxes, three supports, the image border
    assert len(patches(fig, "rf-box ")) == 3
    assert len(patches(fig, "image-border")) == 1


def test_padding_part_of_a_border_cell(chain):
    h, w = chain.input_size
    box = chain.rf_box("c3", (0, 0))
    assert box[0] < 0 and box[1] < 0  # the corner cell reaches into padding
    fig = F.plot_rf_boxes(chain, "c3", [(0, 0)])
    pads = [extent(p) for p in patches(fig, "padding 0,0")]
    assert pads, "the part in padding must be drawn"
    assert all(p.get_hatch() for p in patches(fig, "padding 0,0"))
    # the padding parts and the part inside the image tile the box exactly
    (inside,) = patches(fig, "rf-box-inside 0,0")
    y0, x0, y1, x1 = box
    assert extent(inside) == (max(y0, 0), max(x0, 0), min(y1, h - 1), min(x1, w - 1))
    assert union_area(pads) + union_area([extent(inside)]) == union_area([box])
    for p in pads:  # every padding part lies outside the image
        assert p[2] < 0 or p[3] < 0 or p[0] > h - 1 or p[1] > w - 1


def test_interior_cell_has_no_padding_part(vgg):
    fig = F.plot_rf_boxes(vgg, "conv3_3", (28, 28))
    assert patches(fig, "padding") == []
    (inside,) = patches(fig, "rf-box-inside 28,28")
    assert extent(inside) == vgg.rf_box("conv3_3", (28, 28))


def test_limits_show_the_whole_box(vgg):
    fig = F.plot_rf_boxes(vgg, "pool5", [(0, 0), (6, 6)])
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    y1, y0 = ax.get_ylim()  # y grows downwards
    assert x0 < -90.5 and x1 > 313.5 and y0 < -90.5 and y1 > 313.5


def test_default_cells_and_index_layer(chain):
    fig = F.plot_rf_boxes(chain, 4)  # the layer by index (0 is the input): c3, 3x5 cells
    assert chain.layer(4).output_size == (3, 5)
    assert {p.get_gid() for p in patches(fig, "rf-box ")} == {"rf-box 0,0", "rf-box 1,2"}


def test_bad_cells(chain):
    with pytest.raises(RFMapError, match="outside layer 'c3'"):
        F.plot_rf_boxes(chain, "c3", [(99, 0)])
    with pytest.raises(RFMapError, match="pair"):
        F.plot_rf_boxes(chain, "c3", [("a", 0, 1)])
    with pytest.raises(RFMapError, match="no layer named"):
        F.plot_rf_boxes(chain, "nope", [(0, 0)])


def test_image_array_and_file(chain, tmp_path):
    h, w = chain.input_size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 5
    fig = F.plot_rf_boxes(chain, "c2", [(0, 0)], image=rgb)
    (im,) = fig.axes[0].images
    assert im.get_extent() == [-0.5, w - 0.5, h - 0.5, -0.5]
    np.testing.assert_array_equal(np.asarray(im.get_array()), rgb)
    # a file, larger than the input: stretched to the input size, with a note
    path = tmp_path / "img.png"
    path.write_bytes(encode_png(np.kron(rgb, np.ones((2, 2, 1), np.uint8))))
    fig = F.plot_rf_boxes(chain, "c2", [(0, 0)], image=str(path))
    (im,) = fig.axes[0].images
    assert im.get_extent() == [-0.5, w - 0.5, h - 0.5, -0.5]
    assert any("resized" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(RFMapError, match="does not exist"):
        F.plot_rf_boxes(chain, "c2", [(0, 0)], image=str(tmp_path / "missing.png"))
    with pytest.raises(RFMapError, match="H x W"):
        F.plot_rf_boxes(chain, "c2", [(0, 0)], image=np.zeros((4, 4, 2)))


def test_jpeg_image(chain, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "img.jpg"
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(path)
    assert image_size(path.read_bytes()) == (50, 70)
    assert load_image(path).shape == (50, 70, 3)
    assert embed_image(path).uri.startswith("data:image/jpeg;base64,")
    fig = F.plot_rf_boxes(chain, "c1", [(1, 1)], image=path)
    assert len(fig.axes[0].images) == 1


def test_png_encoder_round_trip(tmp_path):
    import matplotlib.image as mpimg

    for arr in (
        np.arange(12 * 7, dtype=np.uint8).reshape(12, 7),
        np.random.default_rng(0).integers(0, 256, (9, 5, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8),
    ):
        path = tmp_path / "x.png"
        path.write_bytes(encode_png(arr))
        assert image_size(path.read_bytes()) == arr.shape[:2]
        back = np.round(mpimg.imread(path) * 255).astype(np.uint8)
        np.testing.assert_array_equal(back, arr)


# -- plot_center_grid ---------------------------------------------------------------------


def test_center_grid(chain):
    fig = F.plot_center_grid(chain, "c2")
    ax = fig.axes[0]
    (dots,) = [c for c in ax.collections if c.get_gid() == "centers"]
    offsets = dots.get_offsets()
    h, w = chain.layer("c2").output_size
    assert len(offsets) == h * w
    got = {(float(y), float(x)) for x, y in offsets}
    want = {tuple(float(c) for c in chain.center("c2", (i, j))) for i in range(h) for j in range(w)}
    assert got == want
    gids = {t.get_gid() for t in ax.texts}
    assert {"stride-y", "stride-x"} <= gids
    labels = [t.get_text() for t in ax.texts]
    stride = int(chain.layer("c2").stride[0])
    assert f"stride {stride}" in labels


def test_center_grid_after_upsampling(decoder):
    """Centers repeat after upsampling: the grid uses the exact per-cell boxes."""
    fig = F.plot_center_grid(decoder, "up")
    (dots,) = [c for c in fig.axes[0].collections if c.get_gid() == "centers"]
    ay, ax = axis_cells(decoder, "up", support=False)
    assert len(dots.get_offsets()) == ay.lo.size * ax.lo.size
    assert any("cells" in t.get_text() for t in fig.axes[0].texts)  # "2 px / 4 cells"


# -- plot_growth --------------------------------------------------------------------------


def test_growth_equal_axes(vgg):
    fig = F.plot_growth(vgg)
    ax_rf, ax_st = fig.axes
    (rf,) = [line for line in ax_rf.lines if (line.get_gid() or "").startswith("rf-")]
    assert list(rf.get_ydata()) == [row.rf[0] for row in vgg.layers[1:]]
    (st,) = [line for line in ax_st.lines if (line.get_gid() or "").startswith("stride-")]
    strides = [float(row.stride[0]) for row in vgg.layers[1:]]
    np.testing.assert_array_equal(st.get_ydata(), [s if s > 0 else np.nan for s in strides])
    assert [t.get_text() for t in ax_st.get_xticklabels()] == [row.name for row in vgg.layers[1:]]


def test_growth_per_axis_and_log(tiny):
    fig = F.plot_growth(tiny, log=True)
    ax_rf, ax_st = fig.axes
    gids = {line.get_gid() for line in ax_rf.lines}
    assert {"rf-H", "rf-W"} <= gids  # kernel 7x5: the axes differ
    for line in ax_rf.lines:
        if line.get_gid() == "rf-W":
            assert list(line.get_ydata()) == [row.rf[1] for row in tiny.layers[1:]]
    assert ax_rf.get_yscale() == "log" and ax_st.get_yscale() == "log"
    assert ax_rf.get_legend() is not None
    # the global layer is shaded
    assert any(p.get_gid() is None and p.get_facecolor()[:3] != (1, 1, 1) for p in ax_rf.patches)


# -- plot_erf -----------------------------------------------------------------------------


def gaussian(h, w, cy, cx, sy, sx):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))


def test_erf_with_box_and_sigma():
    m = gaussian(60, 80, 30, 40, 5, 8)
    fig = F.plot_erf(m, trf_box=(-4, 2, 70, 77), sigma=(5, 8), center=(30, 40))
    ax = fig.axes[0]
    (trf,) = patches(fig, "trf-box")
    assert extent(trf) == (-4, 2, 70, 77)
    e1, e2 = (next(p for p in ax.patches if p.get_gid() == f"sigma-{k}") for k in (1, 2))
    assert (e1.width, e1.height, tuple(e1.center)) == (16, 10, (40, 30))
    assert (e2.width, e2.height) == (32, 20)
    (im,) = ax.images
    assert im.get_extent() == [-0.5, 79.5, 59.5, -0.5]
    # the box reaches outside the map: the limits include it
    assert ax.get_ylim()[1] < -4.5


def test_erf_moments_and_objects():
    m = gaussian(101, 121, 50, 60, 6, 9)
    fig = F.plot_erf(m)
    e1 = next(p for p in fig.axes[0].patches if p.get_gid() == "sigma-1")
    assert e1.width == pytest.approx(18, rel=1e-3) and e1.height == pytest.approx(12, rel=1e-3)
    assert tuple(e1.center) == pytest.approx((60, 50))
    # an object like rfmap.erf.ERF: map, sigma, mean, trf_box
    obj = SimpleNamespace(map=m, sigma=(6.0, 9.0), mean=(50.0, 60.0), trf_box=(0, 0, 100, 120))
    fig = F.plot_erf(obj)
    assert extent(patches(fig, "trf-box")[0]) == (0, 0, 100, 120)
    with pytest.raises(RFMapError, match="2-D"):
        F.plot_erf(np.zeros((2, 3, 4)))
    with pytest.raises(RFMapError, match="zero everywhere"):
        F.plot_erf(np.zeros((5, 5)))
    with pytest.raises(RFMapError, match="sigma"):
        F.plot_erf(m, sigma=(1, 2, 3))


def test_erf_from_the_erf_module(vgg):
    erf_mod = pytest.importorskip("rfmap.erf")
    m = gaussian(224, 224, 119.5, 119.5, 20, 20)
    try:
        e = erf_mod.ERF(map=m, layer="conv5_3", cell=(7, 7), n=1, aggregate="abs", weights="as-is", input_size=(224, 224), trf_box=vgg.rf_box("conv5_3", (7, 7)))
    except TypeError:
        pytest.skip("rfmap.erf.ERF has another constructor")
    fig = F.plot_erf(e)
    assert extent(patches(fig, "trf-box")[0]) == vgg.rf_box("conv5_3", (7, 7))


# -- plot_anchors -------------------------------------------------------------------------


def test_anchors():
    levels = [
        {"name": "P3", "stride": 8, "anchors": [32, 40, 50], "trf": 427, "erf": 60},
        {"name": "P4", "stride": 16, "anchors": [(64, 128), 80], "trf": (811, 811), "erf": None},
        SimpleNamespace(name="P5", stride=32, anchors=[256], trf=1000, erf=200),
    ]
    fig = F.plot_anchors(levels)
    ax = fig.axes[0]
    anchors = [line for line in ax.lines if line.get_gid() == "anchors"]
    assert [len(line.get_xdata()) for line in anchors] == [3, 2, 1]
    assert anchors[1].get_xdata()[0] == pytest.approx(np.sqrt(64 * 128))
    assert len([line for line in ax.lines if line.get_gid() == "erf"]) == 2  # P4 has none
    assert len([line for line in ax.lines if line.get_gid() == "trf"]) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["P3", "P4", "P5"]
    assert ax.get_xscale() == "log"
    # levels shaped like rfmap.anchors.LevelReport: step, boxes (h, w), erf_span, an anchor count
    report = SimpleNamespace(levels=[
        SimpleNamespace(name="conv3_3", step=(4.0, 4.0), trf=(48, 48), boxes=((16.0, 16.0),), erf_span=(20.0, 20.0), anchors=25600),
        SimpleNamespace(name="conv4_3", step=(8.0, 8.0), trf=(100, 100), boxes=((32.0, 32.0), (32.0, 64.0)), erf_span=None, anchors=12800),
    ])
    fig = F.plot_anchors(report)
    ax = fig.axes[0]
    anchors = [line for line in ax.lines if line.get_gid() == "anchors"]
    assert [list(line.get_xdata()) for line in anchors] == [[16.0], [32.0, pytest.approx(np.sqrt(32 * 64))]]
    assert [list(line.get_xdata()) for line in ax.lines if line.get_gid() == "stride"] == [[4.0], [8.0]]
    assert [list(line.get_xdata()) for line in ax.lines if line.get_gid() == "erf"] == [[20.0]]
    with pytest.raises(RFMapError):
        F.plot_anchors([])
    with pytest.raises(RFMapError, match="level 0"):
        F.plot_anchors([{"name": "x"}])


# -- saving -------------------------------------------------------------------------------


def test_save_png_svg_pdf(chain, tmp_path):
    fig = F.plot_rf_boxes(chain, "c3", [(0, 0)])
    png, svg, pdf = (F.save(fig, tmp_path / f"f.{ext}") for ext in ("png", "svg", "pdf"))
    assert Path(png).read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in Path(svg).read_bytes()[:500]
    assert Path(pdf).read_bytes().startswith(b"%PDF")
    with pytest.raises(RFMapError, match="must end in"):
        F.save(fig, tmp_path / "f.gif")


def test_figures_draw_into_given_axes(chain):
    from matplotlib.figure import Figure

    fig = Figure()
    a, b = fig.subplots(1, 2)
    assert F.plot_rf_boxes(chain, "c1", [(0, 0)], ax=a) is fig
    assert F.plot_center_grid(chain, "c1", ax=b) is fig


def test_import_rfmap_does_not_import_matplotlib():
    code = (
        "import sys, rfmap, rfmap.viz, rfmap.viz.report, rfmap.cli.plot, rfmap.cli.report, rfmap.viz._data\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_needs_2d():
    a = rfmap.analyze([[3, 1, 1]], input_size=(16,))
    with pytest.raises(RFMapError, match="2-D"):
        F.plot_rf_boxes(a, 1, [(0, 0)])


# -- rfmap plot / rfmap report (the functions the CLI calls) ------------------------------


def cli(*argv):
    parser = argparse.ArgumentParser(prog="rfmap")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in (plot_cmd, report_cmd):
        p = sub.add_parser(cmd.NAME, help=cmd.HELP)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    args = parser.parse_args([str(a) for a in argv])
    return args._run(args)


def test_cli_plot_kinds(tmp_path):
    spec = SPECS / "vgg16.yaml"
    out = cli("plot", spec, "--layer", "conv5_3", "--cells", "0,0;7,7", "-o", tmp_path / "b.png")
    assert "wrote" in out and (tmp_path / "b.png").read_bytes().startswith(b"\x89PNG")
    cli("plot", spec, "--layer", "conv4_3", "--kind", "grid", "-o", tmp_path / "g.svg")
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()[:500]
    cli("plot", spec, "--kind", "growth", "--log", "-o", tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    img = tmp_path / "img.png"
    img.write_bytes(encode_png(np.full((40, 60, 3), 200, np.uint8)))
    cli("plot", spec, "--layer", "5", "--image", img, "--input", "40,60", "-o", tmp_path / "i.png")
    assert (tmp_path / "i.png").exists()


def test_cli_plot_errors(tmp_path):
    spec = SPECS / "vgg16.yaml"
    with pytest.raises(RFMapError, match="--layer is needed"):
        cli("plot", spec, "-o", tmp_path / "x.png")
    with pytest.raises(RFMapError, match="must end in"):
        cli("plot", spec, "--layer", "conv1_1", "-o", tmp_path / "x.gif")
    with pytest.raises(RFMapError, match="--cells"):
        cli("plot", spec, "--layer", "conv1_1", "--cells", "1;2", "-o", tmp_path / "x.png")
    with pytest.raises(RFMapError, match="outside layer"):
        cli("plot", spec, "--layer", "pool5", "--cells", "7,0", "-o", tmp_path / "x.png")
    with pytest.raises(RFMapError, match="does not exist"):
        cli("plot", spec, "--layer", "pool5", "-o", tmp_path / "nope" / "x.png")
    with pytest.raises(RFMapError, match="does not exist"):
        cli("plot", spec, "--layer", "pool5", "--image", tmp_path / "no.png", "-o", tmp_path / "x.png")
    with pytest.raises(RFMapError, match="applies to --kind boxes"):
        cli("plot", spec, "--kind", "growth", "--cells", "0,0", "-o", tmp_path / "x.png")


def test_cli_input_size_from_the_image(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("layers:\n  - {name: c, op: conv, kernel: 3, stride: 2, padding: 1}\n")
    with pytest.raises(RFMapError, match="no default input size"):
        cli("report", spec, "-o", tmp_path / "r.html")
    img = tmp_path / "img.png"
    img.write_bytes(encode_png(np.zeros((24, 40), np.uint8)))
    cli("report", spec, "--image", img, "-o", tmp_path / "r.html")
    assert '"input":[24,40]' in (tmp_path / "r.html").read_text()


def test_parse_cells():
    assert parse_cells("0,0;7,7") == [(0, 0), (7, 7)]
    assert parse_cells(" 1x2 ; 3,4 ") == [(1, 2), (3, 4)]
    assert parse_cells(None) is None
    with pytest.raises(RFMapError):
        parse_cells(";")
