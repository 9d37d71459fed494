"""Anchor design against receptive fields: published values reproduced, match counts, flags.

* S3FD (Zhang et al., ICCV 2017, Table 1): RF with the 3x3 heads 48/108/228/340/468/724 and
  34,125 anchors at 640x640, from the bundled rfmap/anchors/configs/s3fd.yaml (and the same geometry as
  the zoo's ``s3fd``); the authors' prototxt (fc6 pad 3) keeps the RFs but not the count;
* Faster R-CNN RPN (Ren et al., NIPS 2015): RF 171 (ZF) and 228 (VGG16);
* SSD300 (Liu et al., ECCV 2016): the offsets between RF centers and default-box centers
  ((i + 0.5) / f_k * 300), and 8,732 default boxes;
* expected matches: the closed form against brute-force IoU counting.
"""

from __future__ import annotations

import argparse
import copy
import json
import math

import numpy as np
import pytest

import rfmap
from rfmap.anchors import (
    DATA,
    AnchorReport,
    analyze_anchors,
    builtin_configs,
    expected_matches,
    load_config,
    render_anchors,
)
from rfmap.errors import RFMapError

yaml = pytest.importorskip("yaml")

S3FD_RF = (48, 108, 228, 340, 468, 724)


def s3fd_data() -> dict:
    return yaml.safe_load((DATA / "s3fd.yaml").read_text())


def test_bundled_configs():
    assert {"s3fd", "ssd300", "rpn-vgg16"} <= set(builtin_configs())


# -- S3FD ------------------------------------------------------------------------------------------


def test_s3fd_rf_column_and_anchor_count():
    report = analyze_anchors("s3fd")
    assert [lv.trf_head[0] for lv in report.levels] == list(S3FD_RF)
    assert [lv.trf[0] for lv in report.levels] == [40, 92, 196, 276, 340, 468]  # without the heads
    assert [lv.step[0] for lv in report.levels] == [4, 8, 16, 32, 64, 128]
    assert [lv.effective_stride[0] for lv in report.levels] == [4, 8, 16, 32, 64, 128]
    assert [lv.feature_size for lv in report.levels] == [(n, n) for n in (160, 80, 40, 20, 10, 5)]
    assert report.total_anchors == 34_125
    assert [lv.boxes for lv in report.levels] == [((s, s),) for s in (16, 32, 64, 128, 256, 512)]
    # equal-proportion interval principle: the anchor is 4 x stride everywhere
    assert all(lv.density == (4.0,) for lv in report.levels)
    assert not any(f.code in ("uneven_density", "anchor_larger_than_trf") for f in report.all_flags)
    # VGG's same convs and 2x2 pools center cell i at (i + 0.5) * stride: offset 0 on the first
    # four levels; conv6_2 and conv7_2 (3x3/2 pad 1 on even maps) are off by stride/4 and 3/8
    assert [lv.offset_first[0] for lv in report.levels] == [0, 0, 0, 0, -16, -48]
    assert {f.level for f in report.all_flags if f.code == "misaligned_centers"} == {"conv6_2", "conv7_2"}
    suggested = report.suggestion
    assert [s.size for s in suggested] == [16, 32, 64, 128, 256, 512]
    assert [s.anchor_offset[0] for s in suggested] == [0.5, 0.5, 0.5, 0.5, 0.25, 0.125]
    assert report.level("fc7").anchor_to_trf == ((128 / 340, 128 / 340),)


def test_s3fd_config_network_matches_the_zoo():
    analysis = rfmap.analyze("s3fd")
    report = analyze_anchors("s3fd")
    zoo_heads = ["conv3_3_norm", "conv4_3_norm", "conv5_3_norm", "fc7", "conv6_2", "conv7_2"]
    for lv, head in zip(report.levels, zoo_heads):
        row = analysis.layer(f"{head}_mbox_loc")
        assert lv.trf_head == row.rf
        assert lv.feature_size == row.output_size
        assert lv.rf_center0 == tuple(float(c) + 0.5 for c in row.center0)


def test_s3fd_authors_prototxt_fc6_pad_3_keeps_the_rfs_but_not_the_count():
    data = s3fd_data()
    for layer in data["network"]["layers"]:
        if layer["name"] == "fc6":
            layer["padding"] = 3
    report = analyze_anchors(data)
    assert [lv.trf_head[0] for lv in report.levels] == list(S3FD_RF)
    assert [lv.feature_size[0] for lv in report.levels] == [160, 80, 40, 24, 12, 6]
    assert report.total_anchors == 25_600 + 6_400 + 1_600 + 576 + 144 + 36 == 34_356
    assert [lv.offset_first[0] for lv in report.levels] == [0, 0, 0, -64, -80, -112]
    codes = {(f.code, f.level) for f in report.all_flags}
    assert ("anchors_outside_image", "fc7") in codes and ("misaligned_centers", "fc7") in codes


def test_s3fd_matches_exact_against_sampled():
    exact = analyze_anchors("s3fd")
    sampled = analyze_anchors("s3fd", method="sampled", samples=48)
    for (t, a), (t2, b) in zip(exact.matches, sampled.matches):
        assert t == t2
        assert np.allclose(a, b, rtol=0.03, atol=0.02)
    # a face of an anchor's size matches 4 anchors at IoU 0.5, one in between only 1.37:
    # S3FD's argument for scale compensation (a lower threshold, 0.35)
    counts = dict(exact.matches)
    assert counts[0.5][0] == pytest.approx(4.0335, abs=1e-4)
    assert counts[0.5][1] == pytest.approx(1.3726, abs=1e-4)
    assert counts[0.35][1] > counts[0.5][1] * 10


# -- Faster R-CNN RPN ------------------------------------------------------------------------------


def test_rpn_receptive_fields_zoo_and_layer_lists():
    zf = [[7, 2, 3], [3, 2, 1], [5, 2, 2], [3, 2, 1], [3, 1, 1], [3, 1, 1], [3, 1, 1], [3, 1, 1]]
    vgg = [[3, 1, 1]] * 2 + [[2, 2, 0]] + [[3, 1, 1]] * 2 + [[2, 2, 0]] + ([[3, 1, 1]] * 3 + [[2, 2, 0]]) * 2
    vgg = vgg + [[3, 1, 1]] * 3 + [[3, 1, 1]]  # conv5_1..conv5_3, rpn_conv
    assert rfmap.analyze(zf, 224).output.rf == (171, 171)
    assert rfmap.analyze(vgg, 224).output.rf == (228, 228)
    for name, rf in (("rpn-zf", 171), ("rpn-vgg16", 228)):
        if name in rfmap.frontends.zoo.names():
            assert rfmap.analyze(name).layer("rpn_conv").rf == (rf, rf)


def test_rpn_vgg16_config_flags_anchors_larger_than_the_rf():
    report = analyze_anchors("rpn-vgg16")
    (lv,) = report.levels
    assert lv.trf_head == (228, 228) and lv.trf == (196, 196) and lv.step == (16, 16)
    assert lv.anchors_per_cell == 9 and lv.feature_size == (38, 63)
    assert lv.offset_first == (0, 0) and lv.offset_max == 0  # (i + 0.5) * 16 = the RF centers
    (flag,) = [f for f in lv.flags if f.code == "anchor_larger_than_trf"]
    assert "512x512" in flag.message and "128x128" not in flag.message


# -- SSD300 ----------------------------------------------------------------------------------------

SSD_SOURCES = ["conv4_3_norm", "fc7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
SSD_FK = [38, 19, 10, 5, 3, 1]


def test_ssd300_default_box_offsets_from_the_rf_centers():
    analysis = rfmap.analyze("ssd300")
    report = analyze_anchors("ssd300")
    assert report.total_anchors == 8_732
    assert [lv.anchors_per_cell for lv in report.levels] == [4, 6, 6, 6, 4, 4]
    for lv, src, f in zip(report.levels, SSD_SOURCES, SSD_FK):
        row = analysis.layer(src)
        assert lv.feature_size == (f, f)
        c0 = float(row.center0[0]) + 0.5  # continuous coordinates
        stride = float(row.stride[0])
        for i, got in ((0, lv.offset_first[0]), (f - 1, lv.offset_last[0])):
            assert got == pytest.approx(c0 + i * stride - (i + 0.5) / f * 300, abs=1e-9)
    first = [lv.offset_first[0] for lv in report.levels]
    last = [lv.offset_last[0] for lv in report.levels]
    assert first == pytest.approx([2 / 38, 4 / 38, -7, -22, 22, -14], abs=1e-9)
    assert last == pytest.approx([150 / 38, 74 / 19, 11, -6, -50, -14], abs=1e-9)
    # the RF centers of the last three maps are 64 px apart, the default boxes 60 / 100 / 300
    assert [lv.effective_stride[0] for lv in report.levels] == [8, 16, 32, 64, 64, 64]
    flagged = {f.level for f in report.all_flags if f.code == "step_differs_from_stride"}
    assert flagged == set(SSD_SOURCES)


def test_ssd300_with_caffe_steps():
    data = yaml.safe_load((DATA / "ssd300.yaml").read_text())
    for level, step in zip(data["levels"], [8, 16, 32, 64, 100, 300]):
        level["stride"] = step
    report = analyze_anchors(data)
    assert [lv.offset_first[0] for lv in report.levels] == [0, 0, -8, -24, 22, -14]
    assert [lv.offset_last[0] for lv in report.levels] == [0, 0, -8, -24, -50, -14]


# -- expected matches ------------------------------------------------------------------------------


def brute_force(gt, box, step, t, k=96):
    """IoU counting on a lattice for gt centers on a k x k grid over one period."""
    gh, gw = gt
    ah, aw = box
    sy, sx = step
    reach = [int(math.ceil((gh + ah) / sy)) + 2, int(math.ceil((gw + aw) / sx)) + 2]
    iy, ix = np.meshgrid(np.arange(-reach[0], reach[0] + 1), np.arange(-reach[1], reach[1] + 1), indexing="ij")
    cy, cx = (iy * sy).ravel(), (ix * sx).ravel()
    u = (np.arange(k) + 0.5) / k
    total = 0.0
    for dy in u * sy:
        for dx in u * sx:
            ih = np.clip(np.minimum(dy + gh / 2, cy + ah / 2) - np.maximum(dy - gh / 2, cy - ah / 2), 0, None)
            iw = np.clip(np.minimum(dx + gw / 2, cx + aw / 2) - np.maximum(dx - gw / 2, cx - aw / 2), 0, None)
            inter = ih * iw
            iou = inter / (gh * gw + ah * aw - inter)
            total += (iou >= t).sum()
    return total / (k * k)


@pytest.mark.parametrize(
    "gt, box, step, t",
    [
        ((16, 16), (16, 16), (4, 4), 0.5),
        ((22.6, 22.6), (16, 16), (4, 4), 0.35),
        ((20, 40), (32, 32), (8, 8), 0.3),
        ((100, 60), (90, 180), (16, 16), 0.5),
        ((30, 30), (30, 30), (7.9, 7.9), 0.7),
        ((10, 10), (64, 64), (16, 16), 0.5),  # never reaches: 0
    ],
)
def test_expected_matches_closed_form_against_brute_force(gt, box, step, t):
    exact = expected_matches(gt, box, step, t)
    assert exact == pytest.approx(brute_force(gt, box, step, t), rel=0.01, abs=0.01)


def test_expected_matches_limits():
    # t -> 0: every anchor that overlaps at all, (g + a)^2 / step^2
    assert expected_matches((16, 16), (16, 16), (4, 4), 1e-12) == pytest.approx(64, rel=1e-9)
    # t = 1: only exact coincidence, measure zero
    assert expected_matches((16, 16), (16, 16), (4, 4), 1.0) == pytest.approx(0, abs=1e-6)
    assert expected_matches((16, 16), (32, 32), (4, 4), 0.5) == 0


# -- flags, configs, rendering ------------------------------------------------------------------

TINY = {
    "name": "tiny",
    "network": [[3, 2, 1], [3, 2, 1], [3, 2, 1], [3, 2, 1], [3, 2, 1]],
    "input": 128,
    "levels": [
        {"layer": "layer3", "sizes": [32], "head": [{"op": "conv", "kernel": 3, "padding": 1}]},
        {"layer": "layer4", "sizes": [64]},
        {"layer": "layer5", "sizes": [128, 256], "anchor_offset": 0},
    ],
}


def test_flags_and_suggestion_on_a_small_config():
    report = analyze_anchors(TINY)
    assert [lv.step[0] for lv in report.levels] == [8, 16, 32]
    assert [lv.trf[0] for lv in report.levels] == [15, 31, 63]
    assert report.levels[0].trf_head == (31, 31) and report.levels[0].prediction_layer == "layer3_head"
    codes = {(f.code, f.level) for f in report.all_flags}
    assert ("anchor_larger_than_trf", "layer3") in codes  # 32 > 31
    assert ("anchor_larger_than_trf", "layer5") in codes
    # stride-2 pad-1 3x3 convs center cell i at i * stride (+0.5 in continuous coordinates):
    # anchors at (i + 0.5) * step are off by about half a step, anchor_offset 0 fits
    assert [lv.offset_first[0] for lv in report.levels] == [0.5 - 4, 0.5 - 8, 0.5]
    assert ("misaligned_centers", "layer3") in codes and ("misaligned_centers", "layer4") in codes
    assert ("misaligned_centers", "layer5") not in codes  # 0.5 px is within the 1 px tolerance
    assert report.total_anchors == 16 * 16 + 8 * 8 + 2 * 4 * 4
    # RF centers of stride-2 pad-1 3x3 convs: cell 0 at 0 (pixel index) -> 0.5 continuous
    assert report.levels[0].rf_center0 == (0.5, 0.5)
    assert [s.anchor_offset[0] for s in report.suggestion] == [0.5 / 8, 0.5 / 16, 0.5 / 32]
    assert [s.size for s in report.suggestion] == [32, 64, 128]
    dense = analyze_anchors({**TINY, "levels": [{"layer": "layer5", "sizes": [32, 128]}]})
    assert [f.code for f in dense.all_flags].count("uneven_density") == 1  # 32 at stride 32: 1 vs 4


def test_measured_erf_option():
    data = copy.deepcopy(TINY)
    data["network"] = [[3, 1, 1]] * 4
    data["input"] = 33
    data["levels"] = [{"layer": "layer4", "sizes": [8]}]
    closed = analyze_anchors(data).levels[0]
    measured = analyze_anchors({**data, "erf": {"measure": True, "n": 1}}).levels[0]
    assert closed.erf_sigma == pytest.approx((math.sqrt(8 / 3),) * 2, rel=1e-12)
    assert measured.erf_sigma == pytest.approx(closed.erf_sigma, rel=1e-9)
    assert measured.erf_method.startswith("measured") and closed.erf_method == "closed-form"


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(RFMapError, match="unknown key.*anchorz"):
        load_config({**TINY, "anchorz": 1})
    with pytest.raises(RFMapError, match="level 1.*unknown key.*size"):
        load_config({**TINY, "levels": [{"layer": "layer3", "size": [3]}]})
    with pytest.raises(RFMapError, match="no layer named 'conv9'"):
        analyze_anchors({**TINY, "levels": [{"layer": "conv9", "sizes": [3]}]})
    with pytest.raises(RFMapError, match="exactly one of sizes"):
        load_config({**TINY, "levels": [{"layer": "layer3"}]})
    with pytest.raises(RFMapError, match="stride.*'x'"):
        load_config({**TINY, "levels": [{"layer": "layer3", "sizes": [3], "stride": "x"}]})
    with pytest.raises(RFMapError, match="no such anchor config"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(RFMapError, match="network"):
        load_config({"levels": TINY["levels"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: [\n")
    with pytest.raises(RFMapError, match="malformed YAML"):
        load_config(bad)


def test_config_file_with_relative_network_path(tmp_path):
    (tmp_path / "net.yaml").write_text(
        "name: net\ninput: [64, 64]\nlayers:\n"
        "  - {name: c1, op: conv, kernel: 3, stride: 2, padding: 1}\n"
        "  - {name: c2, op: conv, kernel: 3, stride: 2, padding: 1}\n"
    )
    (tmp_path / "anchors.yaml").write_text(
        "network: net.yaml\nlevels:\n  - {layer: c2, min_size: 16, max_size: 32, aspect_ratios: [2], flip: false}\n"
    )
    report = analyze_anchors(tmp_path / "anchors.yaml")
    assert report.input_size == (64, 64) and report.levels[0].anchors_per_cell == 3
    h, w = report.levels[0].boxes[2]
    assert w / h == pytest.approx(2) and h * w == pytest.approx(256)


def test_report_is_immutable_renders_and_serializes():
    report = analyze_anchors("s3fd")
    assert isinstance(report, AnchorReport)
    with pytest.raises(AttributeError):
        report.total_anchors = 1  # type: ignore[misc]
    data = json.loads(render_anchors(report, "json"))
    assert data["total_anchors"] == 34_125
    assert [lv["trf_head"][0] for lv in data["levels"]] == list(S3FD_RF)
    assert data["suggestion"]["rule"].startswith("equal-proportion interval principle")
    text = render_anchors(report, "table", color=False)
    assert "34,125 anchors" in text and "conv7_2" in text and "suggested" in text
    colored = render_anchors(report, "table", color=True)
    assert "conv3_3" in colored
    with pytest.raises(RFMapError, match="format"):
        render_anchors(report, "csv")


def test_cli_anchors(tmp_path):
    from rfmap.cli.anchors import configure as add_anchors_parser
    from rfmap.cli.anchors import run as run_anchors

    p = argparse.ArgumentParser()
    add_anchors_parser(p)
    text = run_anchors(p.parse_args(["s3fd", "--no-color"]))
    assert "34,125 anchors" in text
    data = json.loads(run_anchors(p.parse_args(["rpn-vgg16", "--format", "json", "--input", "800,600"])))
    assert data["input_size"] == [800, 600] and data["levels"][0]["feature_size"] == [50, 38]
    pytest.importorskip("matplotlib")
    out = tmp_path / "anchors.png"
    run_anchors(p.parse_args(["s3fd", "--plot", str(out), "--format", "json"]))
    assert out.read_bytes()[:4] == b"\x89PNG"


# -- a config file is data: it never names code -----------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
@pytest.mark.parametrize("network", ["os:abort", "code:interact", "evil:build", "builtins:exit", "./evil.py:build"])
def test_config_network_never_imports_or_calls_code(tmp_path, monkeypatch, suffix, network):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef build():\n    raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    levels = [{"layer": "layer3", "sizes": [8]}]
    if suffix == ".json":
        text = json.dumps({"network": network, "input": 64, "levels": levels})
    elif suffix == ".toml":
        text = f'network = "{network}"\ninput = 64\n[[levels]]\nlayer = "layer3"\nsizes = [8]\n'
    else:
        text = f"network: '{network}'\ninput: 64\nlevels:\n  - {{layer: layer3, sizes: [8]}}\n"
    cfg = tmp_path / f"cfg{suffix}"
    cfg.write_text(text)
    with pytest.raises(RFMapError, match=r"cfg\.\w+: network: .*never name code"):
        load_config(cfg)
    assert not marker.exists()
    from rfmap.cli import main

    assert main(["anchors", str(cfg)]) == 2
    assert not marker.exists()


def test_config_network_may_be_a_module_passed_by_the_caller():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.Conv2d(4, 4, 3, 2, 1))
    cfg = load_config({"network": "vgg16", "input": 64, "levels": [{"layer": "1", "sizes": [8]}]}, network=net)
    assert cfg.input_size == (64, 64)
