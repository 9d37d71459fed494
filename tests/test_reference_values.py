"""Golden values from /work/shared/REFERENCE.md, reproduced through ``rfmap.analyze``.

Pixel-index convention (REFERENCE.md, "Coordinates"): cell ``i`` of a layer sees input
pixels ``-P + i*S .. -P + i*S + r - 1``; its center is ``-P + i*S + (r-1)/2``.  Seed 003's
``start`` is that center plus 0.5.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import pytest

import rfmap
from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import Merge, conv, maxpool
from rfmap.frontends import zoo


@cache
def analysis(name: str, size=None) -> rfmap.Analysis:
    return rfmap.analyze(name, size)


def geometry(a: rfmap.Analysis, layer: str) -> tuple:
    """(r, S, P) of a layer, checked to be the same on both axes."""
    row = a.layer(layer)
    assert row.rf[0] == row.rf[1] and row.stride[0] == row.stride[1] and row.padding[0] == row.padding[1]
    return row.rf[0], row.stride[0], row.padding[0]


# -- VGG -------------------------------------------------------------------------------

#: REFERENCE.md, "Receptive-field values": VGG16 at 224, r / S / P per layer
VGG16_TABLE = {
    "conv1_1": (3, 1, 1),
    "conv1_2": (5, 1, 2),
    "pool1": (6, 2, 2),
    "conv2_1": (10, 2, 4),
    "conv2_2": (14, 2, 6),
    "pool2": (16, 4, 6),
    "conv3_1": (24, 4, 10),
    "conv3_2": (32, 4, 14),
    "conv3_3": (40, 4, 18),
    "pool3": (44, 8, 18),
    "conv4_1": (60, 8, 26),
    "conv4_2": (76, 8, 34),
    "conv4_3": (92, 8, 42),
    "pool4": (100, 16, 42),
    "conv5_1": (132, 16, 58),
    "conv5_2": (164, 16, 74),
    "conv5_3": (196, 16, 90),
    "pool5": (212, 32, 90),
}


def test_vgg16_table_exactly():
    a = analysis("vgg16")
    rows = [row.name for row in a.layers[1:]]
    assert rows == list(VGG16_TABLE) + ["fc6", "fc7", "fc8"]
    for layer, expected in VGG16_TABLE.items():
        assert geometry(a, layer) == expected, layer
    sizes = [a.layer(n).output_size[0] for n in VGG16_TABLE]
    assert sizes == [224, 224, 112, 112, 112, 56, 56, 56, 56, 28, 28, 28, 28, 14, 14, 14, 14, 7]


def test_vgg16_fc_layers_are_global_and_last():
    a = analysis("vgg16")
    assert a.output.name == "fc8"
    for fc in ("fc6", "fc7", "fc8"):
        row = a.layer(fc)
        assert row.global_context and row.output_size == (1, 1)
        # fc6 reads all 7x7 pool5 cells: the same box as Caffe's fc6 run as a 7x7 conv (FCN)
        assert row.rf == (212 + 6 * 32,) * 2 == (404, 404)


@pytest.mark.parametrize("name, pool5", [("vgg11", 150), ("vgg13", 156), ("vgg16", 212), ("vgg19", 268)])
def test_vgg_pool5(name, pool5):
    a = analysis(name)
    r, s, _ = geometry(a, "pool5")
    assert (r, s) == (pool5, 32)
    assert a.layer("pool5").output_size == (7, 7)


# -- Faster R-CNN RPN, ZF-5 --------------------------------------------------------------


@pytest.mark.parametrize("name, rf", [("rpn-zf", 171), ("rpn-vgg16", 228)])
def test_faster_rcnn_rpn_effective_receptive_field(name, rf):
    """Faster R-CNN: "171 and 228 pixels for ZF and VGG"."""
    a = analysis(name)
    for layer in ("rpn_conv", "rpn_cls_score", "rpn_bbox_pred"):
        assert geometry(a, layer)[:2] == (rf, 16)


def test_zf5_conv5():
    a = analysis("zf5")
    assert geometry(a, "conv5") == (139, 16, 69)
    # every layer pads floor(k/2): the RF of cell i is centered on 16*i (SPP-net)
    assert a.layer("conv5").center0 == (0, 0)


# -- AlexNet (seed 003's layer list at 227) ------------------------------------------

#: REFERENCE.md: (n, j, r, start) with start = pixel-index center of cell 0 + 0.5
ALEXNET_227 = {
    "conv1": (55, 4, 11, Fraction(11, 2)),
    "pool1": (27, 8, 19, Fraction(19, 2)),
    "conv2": (27, 8, 51, Fraction(19, 2)),
    "pool2": (13, 16, 67, Fraction(35, 2)),
    "conv3": (13, 16, 99, Fraction(35, 2)),
    "conv4": (13, 16, 131, Fraction(35, 2)),
    "conv5": (13, 16, 163, Fraction(35, 2)),
    "pool5": (6, 32, 195, Fraction(67, 2)),
    "fc6": (1, 32, 355, Fraction(227, 2)),
    "fc7": (1, 32, 355, Fraction(227, 2)),
}


@pytest.mark.parametrize("layer", list(ALEXNET_227))
def test_alexnet_caffe_seed003_values(layer):
    a = analysis("alexnet-caffe")
    row = a.layer(layer)
    n, j, r, start = ALEXNET_227[layer]
    assert row.output_size == (n, n)
    assert row.stride == (j, j)
    assert row.rf == (r, r)
    assert row.center0 == (start - Fraction(1, 2),) * 2
    # the center of cell 0's theoretical box is the same number
    assert a.center(layer, (0, 0)) == row.center0


def test_alexnet_pool5_is_rcnn_195():
    """R-CNN quotes 195x195 for AlexNet pool5; torchvision's AlexNet has the same RF."""
    assert analysis("alexnet-caffe").layer("pool5").rf == (195, 195)
    assert analysis("alexnet").layer("features.12").rf == (195, 195)


# -- ResNets -------------------------------------------------------------------------


def test_resnet50_stages():
    a = analysis("resnet50")
    stages = [geometry(a, f"layer{i}")[:2] for i in range(1, 5)]
    assert stages == [(35, 4), (91, 8), (267, 16), (427, 32)]
    assert geometry(a, "layer4")[2] == 213  # final P
    assert [a.layer(f"layer{i}").output_size[0] for i in range(1, 5)] == [56, 28, 14, 7]


@pytest.mark.parametrize("name, layer4", [("resnet18", 435), ("resnet34", 899), ("resnet101", 971), ("resnet152", 1451)])
def test_resnet_layer4(name, layer4):
    a = analysis(name)
    r, s, p = geometry(a, "layer4")
    assert (r, s) == (layer4, 32)
    assert p == (r - 1) // 2  # every kernel is odd and padded by k//2: centered
    assert a.layer("layer4").output_size == (7, 7)


def test_resnet50_chained_in_call_order_would_report_1963():
    """REFERENCE.md: tools that chain modules in call order report 1963 for ResNet-50.

    Chaining every layer of the zoo graph (the projection shortcuts included) in module
    order reproduces that wrong number (with a wrong stride of 256: each projection strides
    again); the DAG gives 427.
    """
    graph = zoo.get("resnet50")
    chain = [(n.name, n.layer) for n in graph.nodes[1:] if not isinstance(n.layer, Merge)]
    chain = [(name, layer) for name, layer in chain if name not in ("avgpool", "fc")]
    wrong = rfmap.analyze(Graph.chain(chain, input_size=(1024, 1024)))  # 224 is too small for stride 256
    assert wrong.layer("layer4").rf == (1963, 1963)
    assert wrong.layer("layer4").stride == (256, 256)
    assert analysis("resnet50").layer("layer4").rf == (427, 427)


def test_resnet50_caffe_last_stage():
    a = analysis("resnet50-caffe")
    assert geometry(a, "res5c")[:2] == (483, 32)
    assert [geometry(a, s)[:2] for s in ("res2c", "res3d", "res4f", "res5c")] == [(35, 4), (99, 8), (291, 16), (483, 32)]


# -- S3FD ----------------------------------------------------------------------------

S3FD = [
    ("conv3_3_norm", 4, 48),
    ("conv4_3_norm", 8, 108),
    ("conv5_3_norm", 16, 228),
    ("fc7", 32, 340),
    ("conv6_2", 64, 468),
    ("conv7_2", 128, 724),
]


def test_s3fd_detection_layers_with_heads():
    a = analysis("s3fd")
    cells = 0
    for source, stride, rf in S3FD:
        for head in ("loc", "conf"):
            assert geometry(a, f"{source}_mbox_{head}")[:2] == (rf, stride)
        h, w = a.layer(f"{source}_mbox_loc").output_size
        assert (h, w) == (640 // stride, 640 // stride)
        cells += h * w
    assert cells == 34125  # one anchor per location at 640x640
    assert [4 * s for _, s, _ in S3FD] == [16, 32, 64, 128, 256, 512]  # anchor = 4 x stride


# -- arithmetic (REFERENCE.md, "Arithmetic") -----------------------------------------


def one(layer, n=None, **kw):
    g = Graph.chain([("l", layer)], input_size=(n or 50,) * 2)
    return rfmap.analyze(g, **kw).layer("l")


@pytest.mark.parametrize(
    "n, k, s, p, d", [(50, 3, 1, 1, 1), (50, 3, 2, 0, 2), (31, 5, 3, 2, 3), (224, 7, 2, 3, 1), (17, 4, 2, 1, 1)]
)
def test_one_layer_arithmetic(n, k, s, p, d):
    row = one(conv(k, s, p, d), n)
    k_eff = d * (k - 1) + 1
    assert row.output_size[0] == (n + 2 * p - k_eff) // s + 1
    assert row.rf[0] == k_eff
    assert row.stride[0] == s
    assert row.padding[0] == p
    assert row.center0[0] == Fraction(k_eff - 1, 2) - p


def test_ceil_mode_drops_a_window_starting_in_the_right_padding():
    # 6 + 1 + 1, k=2, s=2: ceil gives 5 windows, but the 5th would start at 8 >= 6 + 1
    assert one(maxpool(2, 2, 1, ceil_mode=True), 6).output_size[0] == 4
    assert one(maxpool(2, 2, 1, ceil_mode=False), 6).output_size[0] == 4
    assert one(maxpool(3, 2, 0, ceil_mode=True), 112).output_size[0] == 56
    assert one(maxpool(3, 2, 0, ceil_mode=False), 112).output_size[0] == 55


@pytest.mark.parametrize("n", [7, 8, 9, 10, 224, 225])
@pytest.mark.parametrize("k, s", [(3, 2), (2, 2), (5, 1), (4, 3)])
def test_tf_same_padding(n, k, s):
    upper = one(conv(k, s, "same_upper"), n)
    lower = one(conv(k, s, "same_lower"), n)
    n_out = -(-n // s)
    total = max((n_out - 1) * s + k - n, 0)
    assert upper.output_size[0] == lower.output_size[0] == n_out
    assert upper.padding[0] == total // 2
    assert lower.padding[0] == total - total // 2


def test_recurrences_forward_and_backward():
    """j_out = j*s, r_out = r + (k_eff-1)*j, c_out = c + ((k_eff-1)/2 - p)*j; backward r_in = s*r_out + k_eff - s."""
    layers = [(7, 2, 3, 1), (3, 2, 1, 1), (3, 1, 2, 2), (4, 2, 1, 1), (3, 1, 0, 3), (1, 2, 0, 1)]
    a = rfmap.analyze([list(t) for t in layers], 256)
    j, r, c = 1, 1, Fraction(0)
    for (k, s, p, d), row in zip(layers, a.layers[1:]):
        k_eff = d * (k - 1) + 1
        r, c, j = r + (k_eff - 1) * j, c + (Fraction(k_eff - 1, 2) - p) * j, j * s
        assert (row.rf[0], row.center0[0], row.stride[0]) == (r, c, j)
    r_in, s_in, p_in = 1, 1, 0
    for k, s, p, d in reversed(layers):
        k_eff = d * (k - 1) + 1
        r_in, s_in, p_in = s * r_in + (k_eff - s), s * s_in, s * p_in + p
    assert (r_in, s_in, p_in) == (a.output.rf[0], a.output.stride[0], a.output.padding[0])


def test_multipath_alignment():
    """Aligned paths (equal strides and centers): r is the max; misaligned paths warn."""
    b = GraphBuilder("aligned", 64)
    x = b.add("stem", conv(3, 2, 1), b.input)
    y = b.add("a", conv(5, 1, 2), x)
    z = b.add("b", conv(1), x)
    b.merge("sum", "add", y, z)
    a = rfmap.analyze(b.build())
    assert a.layer("sum").aligned and a.layer("sum").rf == a.layer("a").rf
    b = GraphBuilder("shifted", 64)
    x = b.add("stem", conv(3, 2, 1), b.input)
    y = b.add("a", conv(3, 1, 1), x)
    z = b.add("b", conv(2, 1, ((0, 1), (0, 1))), x)  # same size, center shifted by half a cell
    b.merge("sum", "add", y, z)
    with pytest.warns(rfmap.RFMapWarning, match="misaligned"):
        a = rfmap.analyze(b.build())
    assert not a.layer("sum").aligned
    # the union of the paths is still exact: the box spans both
    assert a.rf_box("sum", (3, 3)) == (3 * 2 - 3, 3 * 2 - 3, 3 * 2 + 3, 3 * 2 + 3)
    with pytest.raises(rfmap.RFMapError, match="misaligned"):
        rfmap.analyze(b.build(), strict=True)


def test_rcnn_minus_r_and_spp_offsets():
    """Lenc & Vedaldi (1-based): i_0 = alpha*(i_L - 1) + beta; beta = 1 + sum prod(s) ((F-1)/2 - P)."""
    for name, layer in [("vgg16", "pool5"), ("zf5", "conv5"), ("alexnet-caffe", "pool5"), ("resnet50-caffe", "res5c")]:
        graph = zoo.get(name)
        a = analysis(name)
        # walk the main chain (the first input of each node) back from the layer
        chain, node = [], graph.node(layer)
        while node.layer is not None:
            if hasattr(node.layer, "kernel"):
                chain.append(node.layer)
            node = graph.node(node.inputs[-1] if isinstance(node.layer, Merge) else node.inputs[0])
        chain.reverse()
        alpha, beta, prod = 1, Fraction(1), 1
        for lyr in chain:
            beta += prod * (Fraction(lyr.kernel - 1, 2) - lyr.padding)
            prod *= lyr.stride
            alpha *= lyr.stride
        row = a.layer(layer)
        assert row.stride[0] == alpha
        for i in (1, 2, 5):  # 1-based cell i has 1-based center alpha*(i-1) + beta
            assert a.center(layer, (i - 1, i - 1))[0] + 1 == alpha * (i - 1) + beta
