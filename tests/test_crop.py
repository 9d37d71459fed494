"""Crop offsets (``rfmap.mapping.crop`` and ``rfmap crop``): the FCN offsets Caffe's
``coord_map`` wrote into the released prototxts (``tests/data/published/fcn_caffe.md``),
recomputed from the graphs, at any input size; the RF-center convention; errors."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction

import pytest
from published import table
from test_cli import assert_one_error, run

import rfmap
from rfmap.core.graph import GraphBuilder
from rfmap.core.layers import (
    ConvTranspose,
    Crop,
    Merge,
    Upsample,
    avgpool,
    conv,
    maxpool,
)
from rfmap.frontends import zoo
from rfmap.mapping.crop import Affine, coord_map, crop_offset

CROPS = table("fcn_caffe")


def analyze(source, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)  # FCN-16s/8s: see test_zoo_fcn.py
        return rfmap.analyze(source, size)


@pytest.mark.parametrize("size", [(500, 500), (333, 480), (1, 1), (1024, 77)])
def test_caffe_convention_gives_the_released_fcn_offsets(size):
    for row in CROPS:
        a = analyze(row["net"], size)
        got = crop_offset(a, row["cropped"], row["reference"])
        want = int(row["offset"])
        assert got.offset == (want, want) and got.is_crop, row
        assert got.convention == "caffe"
        # the zoo holds the released value; the analysis recomputed it from the layers
        assert zoo.get(row["net"], size).node(row["crop"]).layer.start == want


def test_the_maps_meet_where_caffe_walks_them():
    a = analyze("fcn8s")
    assert crop_offset(a, "score_pool4", "upscore2").common == "pool4"
    assert crop_offset(a, "score_pool3", "upscore_pool4").common == "pool3"
    assert crop_offset(a, "upscore8", "data").common == "input"
    # coord_map itself: upscore8 cell x is input pixel x - 31
    assert coord_map(a, "upscore8", "input") == (Affine(Fraction(1), Fraction(-31)),) * 2
    assert coord_map(a, "pool5", "input") == (Affine(Fraction(32), Fraction(-167, 2)),) * 2


def test_rf_center_convention_differs_after_deconvolutions():
    """rfmap's RF centers: FCN-32s' upscore cells 0..31 share one receptive field, centered
    at -3.5, so the centers line up at 3.5, where Caffe's kernel centers give 19."""
    a = analyze("fcn32s")
    assert a.layer("upscore").center0 == (Fraction(-7, 2),) * 2 and a.layer("upscore").stride == (1, 1)
    r = crop_offset(a, "upscore", "data", convention="rf-center")
    assert r.offset == (Fraction(7, 2),) * 2 and not r.is_crop and r.common is None
    got = {
        (row["net"], row["crop"]): crop_offset(analyze(row["net"]), row["cropped"], row["reference"], convention="rf-center").offset[0]
        for row in CROPS
    }
    assert got == {
        ("fcn32s", "score"): Fraction(7, 2),
        ("fcn16s", "score_pool4c"): Fraction(11, 2),
        ("fcn16s", "score"): Fraction(39, 2),
        ("fcn8s", "score_pool4c"): Fraction(11, 2),
        ("fcn8s", "score_pool3c"): Fraction(19, 2),
        ("fcn8s", "score"): Fraction(39, 2),
    }


CHAINS = [
    [conv(3)],
    [conv(7, 2, 3), maxpool(3, 2, 1), conv(3, 1, 1), conv(3, 2, 0)],
    [conv(5, 1, 0, dilation=2), avgpool(2, 2), conv(4, 2, 1)],
    [conv((3, 5), (1, 2), (0, 2)), Crop(start=(2, 1)), conv(1, 2)],
]


@pytest.mark.parametrize("layers", CHAINS)
def test_both_conventions_agree_on_window_chains(layers):
    """Without transposed convolutions the RF of a cell is one window whose center is the
    composed kernel center: cropping the input to the last map gives the same offset."""
    g = GraphBuilder("chain", (64, 80))
    x = g.input
    for k, layer in enumerate(layers):
        x = g.add(f"l{k}", layer, x)
    a = analyze(g.build())
    stride = a.layer(x).stride
    caffe = coord_map(a, x, "input")
    assert tuple(m.scale for m in caffe) == stride
    assert tuple(m.shift for m in caffe) == a.layer(x).center0  # cell 0 sits at its RF center
    # a map that sees the input one to one: crop the input to align with it
    same = GraphBuilder("same", (40, 40))
    y = same.add("valid", conv((3, 5)), same.input)
    b = analyze(same.build())
    for convention in ("caffe", "rf-center"):
        assert crop_offset(b, "input", y, convention=convention).offset == (1, 2)


@pytest.mark.parametrize("k, s, p, d", [(3, 1, 1, 1), (4, 2, 1, 1), (16, 8, 4, 1), (3, 2, 0, 3), (64, 32, 0, 1)])
def test_a_deconvolution_undoes_its_convolution(k, s, p, d):
    g = GraphBuilder("inverse", (97, 97))
    x = g.add("down", conv(k, s, p, dilation=d), g.input)
    g.add("up", ConvTranspose(k, s, p, dilation=d), x)
    a = analyze(g.build())
    assert coord_map(a, "up", "input") == (Affine(Fraction(1), Fraction(0)),) * 2


def test_errors_name_the_layers():
    a = analyze("fcn8s")
    with pytest.raises(rfmap.RFMapError, match="'score_pool3' and 'upscore2' differ in scale on axis H"):
        crop_offset(a, "score_pool3", "upscore2")
    with pytest.raises(rfmap.RFMapError, match="strides 8 and 16"):
        crop_offset(a, "score_pool3", "upscore2", convention="rf-center")
    with pytest.raises(rfmap.RFMapError, match="no layer named 'nope'"):
        crop_offset(a, "nope", "score")
    with pytest.raises(rfmap.RFMapError, match="unknown convention 'kernel'"):
        crop_offset(a, "score", "data", convention="kernel")
    g = GraphBuilder("up", (32, 32))
    x = g.add("c", conv(3, 2, 1), g.input)
    g.add("resize", Upsample(scale_factor=2), x)
    with pytest.raises(rfmap.RFMapError, match=r"layer 'resize' \(upsample\): has no affine coordinate map"):
        crop_offset(analyze(g.build()), "resize", "input")
    # a causal residual add: its inputs' kernel centers differ, Caffe's walk has no answer
    with pytest.raises(rfmap.RFMapError, match=r"layer 'residual_block_0' \(add\): paths .* different coordinate maps"):
        crop_offset(analyze("tcn"), "Slice_Output", "input")


def test_a_merge_of_aligned_paths_passes():
    g = GraphBuilder("res", (30, 30))
    x = g.add("a", conv(3, 1, 1), g.input)
    y = g.add("b", conv(5, 1, 2), g.input)
    g.add("sum", Merge("add"), x, y)
    assert crop_offset(analyze(g.build()), "sum", "input").offset == (0, 0)


# -- the command line -------------------------------------------------------------------


def test_cli_text(capsys):
    status, out, err = run(capsys, "crop", "fcn32s", "upscore", "data", "--convention", "all")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "fcn32s at input 500x500: crop 'upscore' (544x544) to line up with 'data' (500x500)"
    assert lines[1].split()[:3] == ["caffe", "offset", "19"] and "'input'" in lines[1]
    assert lines[2].split()[:3] == ["rf-center", "offset", "3.5"] and "no crop" in lines[2]


def test_cli_json_at_another_size(capsys):
    status, out, _ = run(capsys, "crop", "fcn8s", "score_pool3", "upscore_pool4", "--input", "333x480", "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert data["input_size"] == [333, 480]
    assert data["results"] == [
        {"cropped": "score_pool3", "reference": "upscore_pool4", "convention": "caffe", "offset": [9, 9], "is_crop": True, "common": "pool3"}
    ]
    status, out, _ = run(capsys, "crop", "fcn32s", "upscore", "data", "--convention", "rf-center", "--format", "json")
    assert json.loads(out)["results"][0]["offset"] == [3.5, 3.5]


def test_cli_errors(capsys):
    assert_one_error(*run(capsys, "crop", "vgg16", "conv5_3", "input"), "'conv5_3' and 'input' differ in scale")
    assert_one_error(*run(capsys, "crop", "fcn32s", "upscore", "nowhere"), "no layer named 'nowhere'")
