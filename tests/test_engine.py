"""Unit tests of the geometry engine: one-layer arithmetic, graphs, queries and errors.

Ground truth against gradients lives in test_gradient_probe.py; here each expected number
is derived by hand in a comment.
"""

from fractions import Fraction

import numpy as np
import pytest

import rfmap
from rfmap import RFMapError, RFMapWarning
from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import (
    AdaptivePool,
    Conv,
    ConvTranspose,
    Crop,
    GlobalOp,
    Merge,
    Pad,
    PixelShuffle,
    PixelUnshuffle,
    Upsample,
    conv,
    maxpool,
)


def one(layer, n, ndim=1):
    """Analysis of a single layer on an input of size n (per axis)."""
    return rfmap.analyze(Graph.chain([("l", layer)]), (n,) * ndim).layer("l")


@pytest.mark.parametrize(
    "layer, n, size, rf, stride, padding",
    [
        (Conv(3, 1, 1), 10, 10, 3, 1, 1),
        (Conv(3, 2, 0), 10, 4, 3, 2, 0),  # floor((10-3)/2)+1 = 4
        (Conv(3, 1, 2, dilation=2), 10, 10, 5, 1, 2),  # k_eff = 2*(3-1)+1 = 5
        (Conv(4, 2, ((1, 2),)), 9, 5, 4, 2, 1),  # floor((9+1+2-4)/2)+1 = 5
        (maxpool(3, 2, ceil_mode=True), 10, 5, 3, 2, 0),  # ceil((10-3)/2)+1 = 5; window 4 starts at 8 < 10
        (maxpool(2, 2, ceil_mode=True), 5, 3, 2, 2, 0),  # ceil(3/2)+1 = 3
        (maxpool(3, 3, padding=1, ceil_mode=True), 5, 2, 3, 3, 1),  # ceil(4/3)+1=3, but 2*3 >= 5+1 -> 2
        (Conv(3, 2, "same_upper"), 10, 5, 3, 2, 0),  # n_out=5, total=max(4*2+3-10,0)=1 -> (0,1)
        (Conv(3, 2, "same_lower"), 10, 5, 3, 2, 1),  # total 1 -> (1,0)
        (Conv(4, 1, "same"), 10, 10, 4, 1, 1),  # PyTorch: total 3 -> (1, 2)
        (Conv(5, 3, "valid"), 11, 3, 5, 3, 0),
        (Pad(((2, -1),)), 10, 11, 1, 1, 2),
        (Crop(2, None, 3), 10, 3, 1, 3, -2),  # x[2::3] -> 2,5,8
        (PixelUnshuffle(2), 10, 5, 2, 2, 0),
        (AdaptivePool(1), 7, 1, 7, 0, 0),
        (GlobalOp(), 7, 1, 7, 0, 0),
    ],
)
def test_one_layer_arithmetic(layer, n, size, rf, stride, padding):
    g = one(layer, n)
    assert g.output_size == (size,)
    assert g.rf == (rf,)
    assert g.stride == (Fraction(stride),)
    assert g.padding == (padding,)


def test_same_padding_depends_on_input_size():
    # k=3, s=2: n=10 -> total pad 1 (left 0); n=11 -> total 2 (left 1)
    assert one(Conv(3, 2, "same_upper"), 10).padding == (0,)
    assert one(Conv(3, 2, "same_upper"), 11).padding == (1,)


def test_transposed_convolution_phases():
    # k=4, s=2, p=1: output o sees inputs (o+1-t)/2 for t=0..3 where divisible
    g = one(ConvTranspose(4, 2, 1), 8)
    assert g.output_size == (16,)  # (8-1)*2 - 2 + 3 + 1
    assert g.stride == (Fraction(1, 2),)
    assert not g.shift_invariant
    a = rfmap.analyze(Graph.chain([("t", ConvTranspose(4, 2, 1))]), (8,))
    # o=0: (1-t)/2 -> t=1 -> 0, t=3 -> -1 ; o=1: (2-t)/2 -> t=0 -> 1, t=2 -> 0
    assert a.rf_box("t", (0,)) == (-1, 0)
    assert a.rf_box("t", (1,)) == (0, 1)
    assert a.rf_box("t", (15,)) == (7, 8)
    assert a.support_box("t", (15,)) == (7, 7)  # input 8 does not exist


def test_transposed_convolution_with_holes_is_rejected():
    with pytest.raises(RFMapError, match="layer 't'.*no input reaches"):
        rfmap.analyze(Graph.chain([("t", ConvTranspose(1, 2))]), (8, 8))


@pytest.mark.parametrize(
    "layer, box0, box1, rf",
    [
        # nearest x2: cells 0 and 1 both read input 0
        (Upsample(scale_factor=2), (0, 0), (0, 0), 1),
        # bilinear x2 half-pixel: src(0) = -0.25 -> taps -1, 0; src(1) = 0.25 -> 0, 1
        (Upsample(scale_factor=2, mode="bilinear"), (-1, 0), (0, 1), 2),
        # scale 3: src(1) = (1.5)/3 - 0.5 = 0 exactly -> one tap
        (Upsample(scale_factor=3, mode="bilinear"), (-1, 0), (0, 0), 2),
        # align_corners 5 -> 9: src(o) = o/2
        (Upsample(size=9, mode="bilinear", align_corners=True), (0, 0), (0, 1), 2),
        (PixelShuffle(2), (0, 0), (0, 0), 1),
    ],
)
def test_resampling_boxes(layer, box0, box1, rf):
    a = rfmap.analyze(Graph.chain([("u", layer)]), (5,))
    assert a.rf_box("u", (0,)) == box0
    assert a.rf_box("u", (1,)) == box1
    assert a.layer("u").rf == (rf,)


def test_fractional_scale_factor_is_exact():
    # nearest 2 -> 3 (scale 3/2): src = floor(o * 2/3) = 0, 0, 1
    a = rfmap.analyze(Graph.chain([("u", Upsample(scale_factor="3/2"))]), (4,))
    assert a.layer("u").output_size == (6,)
    assert [a.rf_box("u", (o,))[0] for o in range(6)] == [0, 0, 1, 2, 2, 3]
    assert a.layer("u").stride == (Fraction(2, 3),)


def test_per_axis_geometry_is_independent():
    g = one(Conv((3, 5), (1, 2), ((1, 1), (0, 2))), 20, ndim=2)
    assert g.rf == (3, 5)
    assert g.stride == (1, 2)
    assert g.padding == (1, 0)
    assert g.output_size == (20, 9)  # W: floor((20+2-5)/2)+1 = 9


def test_three_dimensional_input():
    a = rfmap.analyze(Graph.chain([("c", Conv((1, 3, 3), 2, (0, 1, 1)))]), (8, 16, 16))
    assert a.output.output_size == (4, 8, 8)
    assert a.output.rf == (1, 3, 3)
    assert len(a.rf_box("c", (1, 1, 1))) == 6


def test_support_excludes_padding_floor_and_holes():
    # conv k3 d2 p0 on 10: cell 0 sees 0, 2, 4 (holes at 1, 3)
    a = rfmap.analyze(Graph.chain([("c", Conv(3, 1, 0, 2))]), (10,))
    assert a.support("c", (0,))[0].tolist() == [0, 2, 4]
    # conv k2 s2 on 5: the last pixel (4) is dropped by the floor
    a = rfmap.analyze(Graph.chain([("c", Conv(2, 2, 0))]), (5,))
    assert a.rf_box("c", (1,)) == (2, 3)
    assert a.output.output_size == (2,)
    # padding 3 then a 1-tap window: cell 0 sees only padding
    a = rfmap.analyze(Graph.chain([("p", Pad(3)), ("c", Conv(2, 1, 0))]), (4,))
    assert a.rf_box("c", (0,)) == (-3, -2)
    assert a.support_box("c", (0,)) is None


def test_residual_graph_union_and_alignment():
    b = GraphBuilder("res", (32, 32))
    x = b.add("stem", conv(3, 2, 1), b.input)
    y = b.add("a", conv(3, 1, 1), x)
    y = b.add("b", conv(3, 1, 1), y)
    b.merge("add", "add", x, y)
    a = rfmap.analyze(b.build())
    # stem: r 3, S 2, P 1; two 3x3 convs add 2*2*2 -> 11, P 1 + 2 + 2 = 5
    assert a.output.rf == (11, 11)
    assert a.output.padding == (5, 5)
    assert a.output.aligned and a.messages == ()


def test_misaligned_paths_warn_name_paths_and_axis_and_strict_raises():
    b = GraphBuilder("mis", (16, 16))
    x = b.add("left", Conv(3, 1, ((1, 1), (2, 0))), b.input)  # W center shifted by one pixel
    y = b.add("right", Conv(3, 1, 1), b.input)
    b.merge("sum", "add", x, y)
    g = b.build()
    with pytest.warns(RFMapWarning, match=r"'left' and 'right' are misaligned on axis W"):
        a = rfmap.analyze(g)
    assert not a.output.aligned
    assert a.layer("left").aligned
    # the union is still exact: cell (0, 0) sees W -2..0 through left and -1..1 through right
    assert a.rf_box("sum", (0, 0)) == (-1, -2, 1, 1)
    with pytest.raises(RFMapError, match="misaligned on axis W"):
        rfmap.analyze(g, strict=True)


def test_concat_and_global_context():
    b = GraphBuilder("se", (16, 16))
    x = b.add("conv", conv(3, 1, 1), b.input)
    s = b.add("squeeze", GlobalOp(op="global_pool"), x)
    s = b.add("excite", Upsample(size=16), s)
    b.merge("scale", "mul", x, s)
    g = b.build()
    a = rfmap.analyze(g)
    assert a.output.global_context
    assert a.output.rf == (18, 18)  # the whole padded extent -1..16
    assert a.messages == ()  # global paths are not alignment-checked
    local = rfmap.analyze(g, exclude_global=True)
    assert local.output.rf == (3, 3)
    assert local.support_box("scale", (5, 5)) == (4, 4, 6, 6)


def test_merge_size_mismatch_names_both_inputs():
    b = GraphBuilder("bad", (16, 16))
    x = b.add("a", conv(3, 2, 1), b.input)
    y = b.add("b", conv(3, 1, 1), b.input)
    b.merge("cat", "concat", x, y)
    with pytest.raises(RFMapError, match=r"layer 'cat' \(concat\): inputs 'a' \[8, 8\] and 'b' \[16, 16\] differ"):
        rfmap.analyze(b.build())


@pytest.mark.parametrize(
    "layers, message",
    [
        ([[3, 0, 1]], r"layer 'layer1' \(conv\): stride must be >= 1"),
        ([[0, 1, 0]], r"layer 'layer1' \(conv\): kernel must be >= 1"),
        ([[3, 1, 1], [40, 1, 0]], r"layer 'layer2' \(conv\): kernel larger than the padded input"),
        ([[3, 1]], r"layer 1 \('layer1'\): expected \[kernel, stride, padding\]"),
        ([{"op": "warp", "kernel": 3}], r"unknown op 'warp'"),
    ],
)
def test_bad_layers_name_the_layer(layers, message):
    with pytest.raises(RFMapError, match=message):
        rfmap.analyze(layers, 32)


def test_cell_queries_check_indices():
    a = rfmap.analyze([[3, 2, 1]], (8, 8))
    with pytest.raises(RFMapError, match=r"cell \[4, 0\] is outside layer 'layer1' of size \[4, 4\]"):
        a.rf_box("layer1", (4, 0))
    with pytest.raises(RFMapError, match="no layer named 'nope'"):
        a.rf_box("nope", (0, 0))
    with pytest.raises(RFMapError, match="2 entries"):
        a.rf_box("layer1", 1)


def test_inverse_queries():
    a = rfmap.analyze([[3, 2, 1], [3, 2, 1]], (32, 32))  # r 7, S 4, P 3
    # cell i sees -3 + 4i .. 3 + 4i: pixel 5 is in cells 1 (1..7) and 2 (5..11)
    assert [c.tolist() for c in a.cells_containing(-1, (5, 5))] == [[1, 2], [1, 2]]
    # centers at 4i: pixel 5 is nearest to cell 1 (4), pixel 6 ties 4 and 8 -> lower
    assert a.nearest_cell(-1, (5, 6)) == (1, 1)
    assert a.nearest_cell(-1, (7, 100)) == (2, 7)
    # round trip: the nearest cell to a cell's center is the cell itself
    for i in range(8):
        c = a.center(-1, (i, i))
        assert a.nearest_cell(-1, c) == (i, i)


def test_period_handles_upsample_then_stride():
    # nearest x3 then stride-2 conv: jump 2/3, period 3
    g = Graph.chain([("up", Upsample(scale_factor=3)), ("c", Conv(3, 2, 1))])
    a = rfmap.analyze(g, (9,))
    boxes = [a.rf_box("c", (o,)) for o in range(a.output.output_size[0])]
    # brute force: conv cell o reads up cells 2o-1..2o+1, which read floor(u/3)
    expect = [((2 * o - 1) // 3, (2 * o + 1) // 3) for o in range(len(boxes))]
    assert boxes == expect
    assert a.output.rf == (max(hi - lo + 1 for lo, hi in expect),)


def test_json_contract():
    a = rfmap.analyze([[3, 1, 1], [2, 2, 0]], (6, 8))
    d = a.to_dict()
    assert d["input_size"] == [6, 8]
    assert [row["name"] for row in d["layers"]] == ["layer1", "layer2"]
    assert d["layers"][-1] == {
        "name": "layer2",
        "op": "conv",
        "output_size": [3, 4],
        "stride": [2, 2],
        "rf": [4, 4],
        "padding": [1, 1],
        "center0": [0.5, 0.5],
        "shift_invariant": True,
        "aligned": True,
    }
    assert a.cell_dict("layer2", (0, 0)) == {"box": [-1, -1, 2, 2], "support": [0, 0, 2, 2], "center": [0.5, 0.5]}


def test_graph_errors():
    b = GraphBuilder()
    b.add("a", conv(3), "missing")
    with pytest.raises(RFMapError, match="layer 'a' \\(conv\\) reads 'missing'"):
        b.build()
    b = GraphBuilder()
    b.add("a", conv(3), b.input)
    b.add("a", conv(3), "a")
    with pytest.raises(RFMapError, match="'a' is used twice"):
        b.build()
    with pytest.raises(RFMapError, match="merges paths but has one input"):
        Graph.chain([("m", Merge("add"))])


def test_register_op():
    from rfmap.core.registry import register_op, unregister_op

    register_op("blur3", lambda: Conv(3, 1, 1, op="blur3"))
    try:
        a = rfmap.analyze([{"op": "blur3"}], 8)
        assert a.output.rf == (3, 3) and a.output.op == "blur3"
        with pytest.raises(RFMapError, match="already registered"):
            register_op("blur3", lambda: Conv(3))
    finally:
        unregister_op("blur3")
    with pytest.raises(RFMapError, match="unknown op 'blur3'"):
        rfmap.analyze([{"op": "blur3"}], 8)


def test_import_is_numpy_only():
    import subprocess
    import sys

    code = "import sys, rfmap; rfmap.analyze([[3,1,1]], 8); print(sorted(m for m in ('torch','onnx','matplotlib','rich','yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_numpy_boxes_are_plain_ints():
    a = rfmap.analyze([[3, 1, 1]], 8)
    assert all(type(v) is int for v in a.rf_box(-1, (1, 1)))
    assert isinstance(a.support(-1, (1, 1))[0], np.ndarray)


def test_cells_containing_after_interleaving_transposed_convolution():
    # kernel 2, stride 2, dilation 3: output o reads (o - 3t)/2 -> cells 1 and 2 see -1 and 1
    a = rfmap.analyze(Graph.chain([("t", ConvTranspose(2, 2, 0, 0, 3))]), (9,))
    assert [a.rf_box("t", (o,)) for o in range(4)] == [(0, 0), (-1, -1), (1, 1), (0, 0)]
    assert a.cells_containing("t", (0,))[0].tolist() == [0, 3]


def test_add_and_mul_broadcast_a_size_one_input():
    # squeeze-excitation as ONNX writes it: x * gap(x), the 1x1 map broadcast over x
    b = GraphBuilder("se", (16, 16))
    x = b.add("conv", conv(3, 1, 1), b.input)
    s = b.add("squeeze", GlobalOp(op="gap"), x)
    b.merge("scale", "mul", x, s)
    g = b.build()
    a = rfmap.analyze(g)
    assert a.output.output_size == (16, 16) and a.messages == ()
    assert a.support_box("scale", (5, 5)) == (0, 0, 15, 15)  # every pixel, through the squeeze
    local = rfmap.analyze(g, exclude_global=True)
    assert local.support_box("scale", (5, 5)) == (4, 4, 6, 6)
    # concat does not broadcast
    b = GraphBuilder("cat", (16, 16))
    x = b.add("conv", conv(3, 1, 1), b.input)
    s = b.add("squeeze", GlobalOp(op="gap"), x)
    b.merge("cat", "concat", x, s)
    with pytest.raises(RFMapError, match=r"inputs 'conv' \[16, 16\] and 'squeeze' \[1, 1\] differ in size"):
        rfmap.analyze(b.build())


def test_rf_boxes_vectorized_matches_per_cell_queries():
    g = Graph.chain([("c", Conv(3, 2, 1)), ("up", Upsample(scale_factor=3, mode="bilinear")), ("t", ConvTranspose(4, 2, 1))])
    a = rfmap.analyze(g, (9, 11))
    h, w = a.output.output_size
    cells = np.array([(i, j) for i in range(h) for j in range(0, w, 5)])
    boxes = a.rf_boxes("t", cells)
    assert boxes.tolist() == [list(a.rf_box("t", tuple(c))) for c in cells]
    with pytest.raises(RFMapError, match=r"cell \[30, 0\] \(row 0\) is outside layer 't'"):
        a.rf_boxes("t", [[30, 0]])


def test_registered_name_wins_over_an_alias_and_sizes_are_checked():
    from rfmap.core.registry import register_op, unregister_op

    register_op("relu", lambda: Conv(3, 1, 1, op="relu3"), replace=True)
    try:
        assert rfmap.analyze([{"op": "relu"}], 8).output.rf == (3, 3)
    finally:
        unregister_op("relu")
    assert rfmap.analyze([{"op": "relu"}], 8).output.rf == (1, 1)
    with pytest.raises(RFMapError, match="exact integer range"):
        rfmap.analyze([[3, 1, 1]], 10**20)
    with pytest.raises(RFMapError, match="input size must be"):
        rfmap.analyze([[3, 1, 1]], True)
    a = rfmap.analyze([[3, 1, 1], [3, 1, 1]], 8)
    assert a.layer("-1") is a.layer(-1) is a.layer("layer2")


# -- results apart from rendering: immutable, messages as data, one box type ---------------


def _misaligned_graph():
    from rfmap.core.graph import GraphBuilder

    b = GraphBuilder("mis", (16, 16))
    x = b.add("a", Conv(3, 1, 1), b.input)
    y = b.add("b", Conv(2, 1, 0), b.input)  # center shifted by half a pixel
    z = b.add("pad", rfmap.core.layers.Pad(((0, 1), (0, 1))), y)
    b.merge("sum", "add", x, z)
    return b.build()


def test_analysis_is_immutable_and_its_constructor_does_not_warn():
    import copy
    import pickle
    import warnings

    graph = _misaligned_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = rfmap.Analysis(graph, 16)  # no warning from the constructor
    assert len(a.messages) == 1 and "misaligned" in a.messages[0]
    with pytest.raises(AttributeError, match="immutable"):
        a.layers = ()
    with pytest.raises(AttributeError, match="immutable"):
        del a.messages
    assert copy.deepcopy(a) is a
    b = pickle.loads(pickle.dumps(a))
    assert b.layers == a.layers and b.messages == a.messages
    with pytest.warns(RFMapWarning, match="misaligned"):
        rfmap.analyze(graph, 16)


def test_boxes_carry_their_axis_order():
    from rfmap.core.box import Box, as_xy, box_iou

    a = rfmap.analyze("vgg16")
    box = a.rf_box("conv5_3", (0, 1))
    assert box == (-90, -74, 105, 121) and box.order == "yx"
    assert (box.y0, box.x0, box.y1, box.x1) == (-90, -74, 105, 121)
    assert box.to("xy") == (-74, -90, 121, 105) and box.to("xy").x1 == -74 and box.to("xy").y2 == 105
    assert as_xy(box) == box.to("xy") and as_xy([box]) == [box.to("xy")]
    assert a.support_box("conv5_3", (0, 1)).order == "yx"
    assert rfmap.analyze([[3, 1, 1]], (9,)).rf_box("layer1", (4,)).order == "x"
    # a yx box handed to the mapper is converted, not read as (x1, y1, x2, y2)
    m = rfmap.mapper("vgg16", "conv5_3", 224)
    yx = Box((40, 30, 400, 200), "yx")
    assert m.project(yx, "fast-rcnn").window.tolist() == m.project([[30, 40, 200, 400]], "fast-rcnn").window.tolist()
    with pytest.raises(RFMapError, match="order"):
        Box((1, 2, 3), "yx")
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 1, 3, 3])) == pytest.approx(1 / 7)
