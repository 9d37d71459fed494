"""Coordinate mapping and RoI projection rules, checked against per-cell brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rfmap
from rfmap import RFMapError
from rfmap.mapping import RULES, mapper

NET = [[7, 2, 3], [3, 2, 1], [5, 2, 2], [3, 2, 1], [3, 1, 1], [3, 1, 1], [3, 1, 1]]  # ZF-5, seed 000


@pytest.fixture(scope="module")
def zf5():
    return rfmap.analyze(NET, (224, 288))


def test_seed_002_fast_rcnn_example():
    # seed 002: box (30, 40, 200, 400) at spatial scale 1/16 -> [2, 3, 13, 25]
    # (12.5 rounds half away from zero to 13; 40/16 = 2.5 -> 3)
    m = mapper([[2, 2, 0]] * 4, "layer4", 1024)
    p = m.project(np.array([[30, 40, 200, 400]]), "fast-rcnn")
    assert p.window.tolist() == [[2, 3, 13, 25]]


def test_round_trip_cells_points(zf5):
    m = mapper(zf5, "layer7")
    ys, xs = np.meshgrid(np.arange(14), np.arange(18), indexing="ij")
    cells = np.stack([ys.ravel(), xs.ravel()], axis=1)
    assert np.array_equal(m.point_to_cell(m.cell_to_point(cells)), cells)
    # the centers agree with the per-cell query of the analysis
    for y, x in [(0, 0), (3, 7), (13, 17)]:
        assert tuple(m.cell_to_point(np.array([[y, x]]))[0]) == tuple(float(c) for c in zf5.center("layer7", (y, x)))
        box = m.cell_to_box(np.array([[y, x]]))[0]
        y0, x0, y1, x1 = zf5.rf_box("layer7", (y, x))
        assert box.tolist() == [x0, y0, x1, y1]


def test_point_to_cell_matches_nearest_cell(zf5):
    m = mapper(zf5, "layer7")
    rng = np.random.default_rng(0)
    pts = rng.integers(-50, 300, size=(200, 2))
    got = m.point_to_cell(pts)
    for p, g in zip(pts, got):
        assert tuple(g) == zf5.nearest_cell("layer7", tuple(p))


def brute_window(analysis, layer, box, rule):
    """The window by definition, scanning every cell's RF box (pixel-index convention)."""
    row = analysis.layer(layer)
    h, w = row.output_size
    x1, y1, x2, y2 = box
    picks = []
    for k, (n, lo, hi) in enumerate(((w, x1, x2), (h, y1, y2))):
        cells = []
        for i in range(n):
            idx = (0, i) if k == 0 else (i, 0)
            b = analysis.rf_box(layer, idx)
            c = float(analysis.center(layer, idx)[1 - k])
            if rule == "contain":
                ok = lo <= c <= hi
            else:  # cover
                ok = b[3 - k] >= lo and b[1 - k] <= hi
            if ok:
                cells.append(i)
        picks.append(cells)
    return picks


@settings(max_examples=60, deadline=None)
@given(
    x1=st.integers(-20, 260),
    y1=st.integers(-20, 200),
    w=st.integers(0, 120),
    h=st.integers(0, 120),
    rule=st.sampled_from(["contain", "cover"]),
)
def test_contain_and_cover_match_brute_force(x1, y1, w, h, rule):
    a = rfmap.analyze(NET, (224, 288))
    m = mapper(a, "layer7")
    box = (x1, y1, x1 + w, y1 + h)
    p = m.project(np.array([box], dtype=float), rule)
    xs, ys = brute_window(a, "layer7", box, rule)
    win = p.window[0].tolist()
    if not xs or not ys:
        assert p.empty[0]
    else:
        assert not p.empty[0]
        assert win == [xs[0], ys[0], xs[-1], ys[-1]]


def test_spp_uses_real_offsets():
    # four 2x2/2 pools (as in VGG16's pool4): c0 = 7.5, not 0, and S = 16; a corner at
    # pixel 7 is nearest to cell 0, at 16 nearest to cell 1 (center 23.5 is 7.5 away, cell 0's 8.5)
    m = mapper([[2, 2, 0]] * 4, "layer4", 224)
    assert float(m.axes[0].center0) == 7.5
    p = m.project(np.array([[7, 7, 16, 16]]), "spp")
    assert p.window.tolist() == [[0, 0, 1, 1]]
    # spp-simple ignores the offset: floor(7/16)+1 = 1, ceil(16/16)-1 = 0 -> empty
    assert m.project(np.array([[7, 7, 16, 16]]), "spp-simple").empty.tolist() == [True]


def test_align_is_exact_and_continuous():
    m = mapper([[2, 2, 0]] * 4, "layer4", 256)
    p = m.project(np.array([[8.0, 16.0, 40.0, 48.0]]), "align")
    assert p.window.tolist() == [[0.0, 0.5, 2.0, 2.5]]
    assert p.iou.tolist() == [1.0]


def test_all_rules_vectorized_and_torch():
    torch = pytest.importorskip("torch")
    m = mapper(NET, "layer7", 224)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, size=(1000, 2))
    wh = rng.uniform(1, 100, size=(1000, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    for rule in RULES:
        p = m.project(boxes, rule)
        assert p.window.shape == (1000, 4) and p.iou.shape == (1000,)
        assert ((p.iou >= 0) & (p.iou <= 1)).all()
        pt = m.project(torch.from_numpy(boxes).float(), rule)
        assert isinstance(pt.window, torch.Tensor)
        assert np.allclose(pt.window.numpy(), p.window, atol=1e-4 if rule == "align" else 0)


@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[0, 0, np.nan, 4]], "box 0 has a coordinate that is not finite"),
        ([[0, 0, 4, 4], [5, 0, 4, 4]], r"box 1 \[5.0, 0.0, 4.0, 4.0\] has x2 < x1"),
        ([[0, 0, 4]], r"shape \[N, 4\]"),
    ],
)
def test_bad_boxes(boxes, message):
    m = mapper(NET, "layer7", 224)
    with pytest.raises(RFMapError, match=message):
        m.project(np.array(boxes, dtype=float), "spp")


def test_unknown_rule_and_non_invariant_layer():
    m = mapper(NET, "layer7", 224)
    with pytest.raises(RFMapError, match="unknown rule 'nearest'"):
        m.project(np.zeros((1, 4)), "nearest")
    with pytest.raises(RFMapError, match="sees the whole input"):
        mapper([[3, 2, 1], {"op": "global"}], "layer2", 32)


def _brute_window(a, layer, box, rule):
    """The center rules by their definitions, from Analysis.rf_box of every cell (no mapper code)."""
    row = a.layer(layer)
    h, w = row.output_size
    ys = [a.rf_box(layer, (i, 0)) for i in range(h)]
    xs = [a.rf_box(layer, (0, j)) for j in range(w)]
    axes = {"x": [(b[1], b[3]) for b in xs], "y": [(b[0], b[2]) for b in ys]}
    x1, y1, x2, y2 = box
    out = {}
    for name, lo, hi in (("x", x1, x2), ("y", y1, y2)):
        cells = axes[name]
        centers = [(u + v) / 2 for u, v in cells]
        if rule == "spp":
            def near(t, centers=centers):
                d = [abs(c - t) for c in centers]
                return max(i for i, v in enumerate(d) if v == min(d))  # ties: the upper cell
            out[name] = (near(lo), near(hi))
        else:
            hit = [i for i, (c, (u, v)) in enumerate(zip(centers, cells))
                   if (lo <= c <= hi if rule == "contain" else (v >= lo and u <= hi))]
            out[name] = (min(hit), max(hit)) if hit else None
    if out["x"] is None or out["y"] is None:
        return None
    return [out["x"][0], out["y"][0], out["x"][1], out["y"][1]]


@pytest.mark.parametrize("rule", ["spp", "contain", "cover"])
def test_mapping_on_layers_whose_rf_varies_by_cell(rule):
    # upsampling and a top-down merge: FPN-style levels are not shift-invariant
    b = rfmap.GraphBuilder("fpn", (64, 96))
    c3 = b.layer("c3", "conv", b.input, kernel=3, stride=4, padding=1)
    c4 = b.layer("c4", "conv", c3, kernel=3, stride=2, padding=1)
    up = b.layer("up", "upsample", c4, scale_factor=2)
    lat = b.layer("lat", "conv", c3, kernel=1)
    b.merge("p3", "add", lat, up)
    a = rfmap.analyze(b.build())
    assert not a.layer("p3").shift_invariant
    m = mapper(a, "p3")
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(80):
        x1, y1 = rng.uniform(-20, 90), rng.uniform(-20, 60)
        boxes.append([x1, y1, x1 + rng.uniform(0, 30), y1 + rng.uniform(0, 20)])
    p = m.project(np.array(boxes), rule)
    (ylo, yhi), (xlo, xhi) = a.axis_boxes("p3")
    inside = 0
    for k, box in enumerate(boxes):
        want = _brute_window(a, "p3", box, rule)
        if rule == "spp":  # corners between the first and last centers: nearest real cells
            x1, y1, x2, y2 = box
            if not ((xlo[0] + xhi[0]) / 2 <= x1 <= x2 <= (xlo[-1] + xhi[-1]) / 2
                    and (ylo[0] + yhi[0]) / 2 <= y1 <= y2 <= (ylo[-1] + yhi[-1]) / 2):
                continue
        inside += 1
        if want is None:
            assert p.empty[k], (k, box)
        else:
            assert not p.empty[k] and p.window[k].tolist() == want, (k, box, rule)
    assert inside >= 15


def test_the_per_cell_path_equals_the_affine_formulas():
    from rfmap.mapping import CellAxis, Mapper

    a = rfmap.analyze("vgg16", (224, 320))
    affine = mapper(a, "conv4_3")
    cells = Mapper(tuple(CellAxis(lo, hi, s) for (lo, hi), s in zip(a.axis_boxes("conv4_3"), a.layer("conv4_3").stride)),
                   "conv4_3", (224, 320))
    rng = np.random.default_rng(1)
    x1, y1 = rng.uniform(-40, 330, 500), rng.uniform(-40, 230, 500)
    boxes = np.stack([x1, y1, x1 + rng.uniform(0, 120, 500), y1 + rng.uniform(0, 120, 500)], axis=1)
    for rule in ("spp", "contain", "cover"):
        p, q = affine.project(boxes, rule), cells._project_cells(boxes, lambda v, like_dtype=True: v, rule)
        assert (p.empty == q.empty).all(), rule
        keep = ~p.empty
        assert (p.window[keep] == q.window[keep]).all(), rule
        assert np.allclose(p.back[keep], q.back[keep]), rule


def test_boxes_outside_the_image_get_a_note():
    m = mapper("vgg16", "conv5_3", 224)
    p = m.project(np.array([[30, 40, 200, 200], [30, 40, 200, 400], [300, 300, 400, 400]]), "fast-rcnn")
    notes = p.notes()
    assert notes[0] is None
    assert "box 1 (30, 40, 200, 400) lies partly outside the 224x224 image" in notes[1] and "clipped" in notes[1]
    assert "wholly outside" in notes[2]


def test_between_layers_fpn_style():
    # C3 (stride 8) -> C5 (stride 32): the C5 cell's region on C3, measured in C3 cells
    b = rfmap.GraphBuilder("fpn", 256)
    x = b.layer("c2", "conv", b.input, kernel=3, stride=4, padding=1)
    c3 = b.layer("c3", "conv", x, kernel=3, stride=2, padding=1)
    c4 = b.layer("c4", "conv", c3, kernel=3, stride=2, padding=1)
    b.layer("c5", "conv", c4, kernel=3, stride=2, padding=1)
    a = rfmap.analyze(b.build())
    sub = a.between("c3", "c5")
    assert sub.output.stride == (4, 4)
    assert sub.output.rf == (7, 7)  # 3 + 2*2 on c3 cells
    assert sub.rf_box("c5", (1, 1)) == (1, 1, 7, 7)
    with pytest.raises(RFMapError, match="does not depend"):
        a.between("c5", "c3")


def test_cli_map_json_and_errors(capsys):
    import json

    from rfmap.cli import main

    assert main(["map", "vgg16", "conv5_3", "--box", "30,40,200,400", "--rule", "fast-rcnn", "--input", "1024", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["window"] == [2, 3, 13, 25]  # seed 002's example
    assert main(["map", "vgg16", "conv5_3", "--box", "30,40,20,400"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rfmap: error: box 0 [30.0, 40.0, 20.0, 400.0] has x2 < x1 or y2 < y1"]
    assert main(["map", "vgg16", "conv5_3", "--box", "1,2,3"]) == 2
    assert "expected 4 numbers" in capsys.readouterr().err


def test_fast_rcnn_rounding_is_c_round():
    # C round(): half away from zero, and the largest double below 0.5 rounds to 0
    m = mapper([[1, 1, 0]], "layer1", 64)
    below_half = np.nextafter(0.5, 0)
    p = m.project(np.array([[below_half, 0.5, 1.5, 2.5]]), "fast-rcnn")
    assert p.window.tolist() == [[0, 1, 2, 3]]


def test_cli_map_notes_boxes_outside_and_maps_any_layer(capsys, tmp_path):
    import json

    from rfmap.cli import main

    assert main(["map", "vgg16", "conv5_3", "--box", "30,40,200,400", "--rule", "fast-rcnn"]) == 0
    out = capsys.readouterr().out
    assert "note: box 0 (30, 40, 200, 400) lies partly outside the 224x224 image" in out
    assert "fast-rcnn reads the stride only" in out
    assert main(["map", "vgg16", "conv5_3", "--box", "30,40,200,400", "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert all("outside" in r["note"] for r in results) and {r["uses"] for r in results} >= {"per-cell RF centers (nearest center)"}
    assert main(["map", "vgg16", "conv5_3", "--box", "30,40,200,400", "--strict"]) == 2
    assert "outside the 224x224 image" in capsys.readouterr().err
    spec = tmp_path / "up.yaml"
    spec.write_text("input: [32, 32]\nlayers:\n  - {name: c, op: conv, kernel: 3, stride: 2, padding: 1}\n"
                    "  - {name: up, op: upsample, scale_factor: 2}\n")
    assert main(["map", str(spec), "up", "--box", "4,4,20,12", "--rule", "contain"]) == 0
    out = capsys.readouterr().out
    assert "the RF varies by cell" in out and "-> cells (" in out
