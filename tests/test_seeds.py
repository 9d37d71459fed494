"""Every receptive-field number the seed documents state, reproduced through ``rfmap.analyze``.

The seeds are in /work/shared/seeds/ (Chinese blog posts); each test quotes the file and
line it checks.  Where a seed is wrong, the test checks the correct value and says, in a
comment, what the seed says and why it is wrong (see also REFERENCE.md, "Where the seeds
are wrong").  RoI pooling numbers (seed 002's [2, 3, 13, 25], seed 004) are tested with
the RoI pooling code, not here.

Conventions: rfmap uses the pixel-index convention (pixel i is the point i; cell i of a
layer sees ``-P + i*S .. -P + i*S + r - 1``).  Seed 003's ``start`` is rfmap's center + 0.5;
the R-CNN-minus-R formula in seed 000 is 1-based (center + 1).

Seed files:
  000 = 000_a9453e6882eb46c0.txt (Zhihu, "原始图片中的ROI如何映射到feature map?")
  001 = 001_fc0b0b41e3185fde.txt ("感受野 深度理解")
  002 = 002_e0f9a337d3a2860b.txt ("CNN 中的 Feature Map")
  003 = 003_16404244bda43b0d.txt ("关于感受野 (Receptive field) 你该知道的事")
  004 = 004_492153741771f50a.txt ("关于RoI pooling 层")
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import pytest

import rfmap
from rfmap.core.graph import Graph
from rfmap.core.layers import conv
from rfmap.frontends.layerlist import from_layer_list

# -- the seeds' layer lists ------------------------------------------------------------

# 000 lines 140-148 (net_struct).  The extracted text lost entries (the VGG16 list shows 16
# entries for 18 names, AlexNet 7 for 8); the printed tables (lines 176-209) show the full
# lists: VGG16 "D" with 2x2/2 pools, and AlexNet with pool5 = [3, 2, 0].
ALEXNET_000 = [[11, 4, 0], [3, 2, 0], [5, 1, 2], [3, 2, 0], [3, 1, 1], [3, 1, 1], [3, 1, 1], [3, 2, 0]]
ALEXNET_000_NAMES = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
VGG16_000 = (
    [[3, 1, 1], [3, 1, 1], [2, 2, 0]] * 2 + ([[3, 1, 1]] * 3 + [[2, 2, 0]]) * 3
)
VGG16_000_NAMES = [
    "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
    "conv3_1", "conv3_2", "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4",
    "conv5_1", "conv5_2", "conv5_3", "pool5",
]  # fmt: skip
# 000 line 147
ZF5_000 = [[7, 2, 3], [3, 2, 1], [5, 2, 2], [3, 2, 1], [3, 1, 1], [3, 1, 1], [3, 1, 1]]
ZF5_000_NAMES = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5"]
# 003 lines 126-128
ALEXNET_003 = [[11, 4, 0], [3, 2, 0], [5, 1, 2], [3, 2, 0], [3, 1, 1], [3, 1, 1], [3, 1, 1], [3, 2, 0], [6, 1, 0], [1, 1, 0]]
ALEXNET_003_NAMES = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6-conv", "fc7-conv"]


@cache
def _analyze(layers: tuple, names: tuple, size: int) -> rfmap.Analysis:
    graph = from_layer_list([list(t) for t in layers], names=list(names), input_size=size)
    return rfmap.analyze(graph)


def seed_net(layers, names, size) -> rfmap.Analysis:
    return _analyze(tuple(tuple(t) for t in layers), tuple(names), size)


def chain(*layers, size=64) -> rfmap.Analysis:
    """A chain of [k, s, p] or [k, s, p, d] layers named l1, l2, ..."""
    return rfmap.analyze(from_layer_list([list(t) for t in layers], input_size=size))


def start(a: rfmap.Analysis, layer) -> Fraction:
    """Seed 003's ``start``: the center of cell 0 plus 0.5 (same on both axes here)."""
    c = a.layer(layer).center0
    assert c[0] == c[1]
    return c[0] + Fraction(1, 2)


def right_padding(a: rfmap.Analysis, layer) -> int:
    """Effective padding on the right: how far the last cell's box reaches past the input."""
    n = a.layer(layer).output_size[1]
    return a.rf_box(layer, (0, n - 1))[3] - (a.input_size[1] - 1)


# =====================================================================================
# Seed 000
# =====================================================================================


def test_000_vgg16_printed_table():
    """000 lines 176-192: "Layer Name = conv1_2, Output size = 224, Stride = 1, RF size = 5" ..."""
    a = seed_net(VGG16_000, VGG16_000_NAMES, 224)
    # (output size, stride, RF) as the seed prints them, with its three wrong RFs corrected
    printed = {
        "conv1_2": (224, 1, 5),  # line 176
        "pool1": (112, 2, 6),  # line 177
        # line 178 prints "conv2_1 ... RF size = 16": wrong.  conv2_1 adds (3-1)*2 = 4 to
        # pool1's 6, so 10 (REFERENCE.md); the seed's own next row (conv2_2 14) is smaller
        # than 16, which a deeper layer of a chain can never be.
        "conv2_1": (112, 2, 10),
        "conv2_2": (112, 2, 14),  # line 179
        "pool2": (56, 4, 16),  # line 180
        "conv3_1": (56, 4, 24),  # line 181
        "conv3_2": (56, 4, 32),  # line 182
        # line 183 prints "conv3_3 ... RF size = 46": wrong, 32 + 2*4 = 40; the seed's pool3
        # (44, line 184) is smaller than its conv3_3.
        "conv3_3": (56, 4, 40),
        "pool3": (28, 8, 44),  # line 184
        # line 185 prints "conv4_1 ... RF size = 66": wrong, 44 + 2*8 = 60; 66 would make its
        # conv4_2 (76, line 186) grow by 10, not by a multiple of the stride 8.
        "conv4_1": (28, 8, 60),
        "conv4_2": (28, 8, 76),  # line 186
        "conv4_3": (28, 8, 92),  # line 187
        "pool4": (14, 16, 100),  # line 188
        "conv5_1": (14, 16, 132),  # line 189
        "conv5_2": (14, 16, 164),  # line 190
        "conv5_3": (14, 16, 196),  # line 191
        "pool5": (7, 32, 212),  # line 192
    }
    for layer, (n, s, r) in printed.items():
        row = a.layer(layer)
        assert (row.output_size, row.stride, row.rf) == ((n, n), (s, s), (r, r)), layer
    # the seed's wrong values, for the record
    assert a.layer("conv2_1").rf[0] != 16 and a.layer("conv3_3").rf[0] != 46 and a.layer("conv4_1").rf[0] != 66
    # the zoo's vgg16 agrees with the seed's list
    zoo = rfmap.analyze("vgg16")
    for layer in printed:
        assert zoo.layer(layer).rf == a.layer(layer).rf and zoo.layer(layer).padding == a.layer(layer).padding


def test_000_zf5_printed_table():
    """000 lines 194-200: "conv1, Output size = 112, Stride = 2, RF size = 7" ... "conv5 ... 14, 16, 139"."""
    a = seed_net(ZF5_000, ZF5_000_NAMES, 224)
    printed = [
        ("conv1", 112, 2, 7),  # line 194
        ("pool1", 56, 4, 11),  # line 195
        ("conv2", 28, 8, 27),  # line 196
        ("pool2", 14, 16, 43),  # line 197
        ("conv3", 14, 16, 75),  # line 198
        ("conv4", 14, 16, 107),  # line 199
        ("conv5", 14, 16, 139),  # line 200
    ]
    for layer, n, s, r in printed:
        row = a.layer(layer)
        assert (row.output_size, row.stride, row.rf) == ((n, n), (s, s), (r, r)), layer
    # the zoo's zf5 has the same RFs and strides; its sizes differ because Caffe's pools
    # round up (pool1 57, conv5 15), where the seed's script (integer division) rounds down
    zoo = rfmap.analyze("zf5")
    for layer, _n, s, r in printed:
        assert zoo.layer(layer).rf == (r, r) and zoo.layer(layer).stride == (s, s)
    assert zoo.layer("conv5").output_size == (15, 15)


def test_000_alexnet_printed_table():
    """000 lines 202-209: AlexNet at imsize = 224 (line 150): "conv1, Output size = 54, Stride = 4, RF size = 11" ..."""
    a = seed_net(ALEXNET_000, ALEXNET_000_NAMES, 224)
    printed = [
        ("conv1", 54, 4, 11),  # line 202
        ("pool1", 26, 8, 19),  # line 203
        ("conv2", 26, 8, 51),  # line 204
        ("pool2", 12, 16, 67),  # line 205
        ("conv3", 12, 16, 99),  # line 206
        ("conv4", 12, 16, 131),  # line 207
        ("conv5", 12, 16, 163),  # line 208
        ("pool5", 5, 32, 195),  # line 209
    ]
    for layer, n, s, r in printed:
        row = a.layer(layer)
        assert (row.output_size, row.stride, row.rf) == ((n, n), (s, s), (r, r)), layer


def test_000_scripts_out_from_in_and_in_from_out():
    """000 lines 152-167: outFromIn (floor division, total stride) and inFromOut (RF = (RF-1)*stride + fsize)."""

    def out_from_in(isz, net, layernum):  # line 152, with Python 2's integer division
        totstride, insize = 1, isz
        for layer in range(layernum):
            fsize, stride, pad = net[layer]
            insize = (insize - fsize + 2 * pad) // stride + 1
            totstride *= stride
        return insize, totstride

    def in_from_out(net, layernum):  # line 162
        rf = 1
        for layer in reversed(range(layernum)):
            fsize, stride, pad = net[layer]
            rf = (rf - 1) * stride + fsize
        return rf

    for net, names in [(VGG16_000, VGG16_000_NAMES), (ZF5_000, ZF5_000_NAMES), (ALEXNET_000, ALEXNET_000_NAMES)]:
        a = seed_net(net, names, 224)
        for i, layer in enumerate(names, start=1):
            n, s = out_from_in(224, net, i)
            row = a.layer(layer)
            assert row.output_size == (n, n) and row.stride == (s, s) and row.rf == (in_from_out(net, i),) * 2


def test_000_spp_stride_and_centers_zf5():
    """000 line 33 (SPP-net): pad floor(p/2) everywhere; "a response centered at (x', y') ... its
    effective receptive field in the image domain is centered at (x, y) = (Sx', Sy')"; "S = 16 for
    ZF-5 on conv5".  Also lines 88-90 (He's tutorial: "the response at (x, y) has a receptive field
    centered at (Sx, Sy)")."""
    a = seed_net(ZF5_000, ZF5_000_NAMES, 224)
    assert a.layer("conv5").stride == (16, 16)
    for i in range(14):
        assert a.center("conv5", (i, i)) == (16 * i, 16 * i)
    # every layer of the list pads floor(k/2): each intermediate map is centered too
    for layer, s in zip(ZF5_000_NAMES, (2, 4, 8, 16, 16, 16, 16)):
        assert a.center(layer, (3, 5)) == (3 * s, 5 * s)


def test_000_zf5_rf_139_and_the_offsets_63_75():
    """000 line 58: "x_conv5 = floor((x - 139/2 + 63)/16) + 1 ... 139/2 is the radius of the receptive
    field, 16 is the effective stride, and 63 is an offset ... computed by the top-left corner of the
    receptive field"; bottom-right "ceil((x + 139/2 - 75)/16) - 1".

    139 and 16 are ZF-5's conv5 RF and stride.  The offsets say that cell 0's RF spans pixels
    -63..75 (63 + 75 = 138 = 139 - 1).  That is not the padding of seed 000's own list
    (floor(k/2) everywhere puts cell 0 at -69..69): it fits a ZF-5 padded by 1 in every layer,
    as reproduced here.  The projection formulas themselves (SPP-net window mapping) are not an
    rfmap computation and are not tested.
    """
    a = seed_net(ZF5_000, ZF5_000_NAMES, 224)
    assert a.layer("conv5").rf == (139, 139) and a.layer("conv5").stride == (16, 16)
    assert 63 + 75 == a.layer("conv5").rf[0] - 1
    assert a.rf_box("conv5", (0, 0)) == (-69, -69, 69, 69)  # seed 000's list: centered on 0
    pad1 = chain([7, 2, 1], [3, 2, 1], [5, 2, 1], [3, 2, 1], [3, 1, 1], [3, 1, 1], [3, 1, 1], size=224)
    assert pad1.rf_box(-1, (0, 0)) == (-63, -63, 75, 75)


def test_000_one_layer_rf_of_n_outputs():
    """000 line 62: n outputs of a layer (kernel k, stride s) cover n + (n-1)*(s-1) + 2*((k-1)/2) inputs."""
    for k, s in [(3, 1), (3, 2), (5, 2), (7, 3), (11, 4)]:
        a = chain([k, s, 0], size=100)
        for n in (1, 2, 5):
            first, last = a.rf_box(-1, (0, 0)), a.rf_box(-1, (n - 1, n - 1))
            covered = last[3] - first[1] + 1
            assert covered == n + (n - 1) * (s - 1) + 2 * ((k - 1) // 2)


def test_000_output_size_formula_and_its_inverse():
    """000 line 108: output = (input - kernel + 2*padding)/stride + 1;
    line 117: input = (output - 1)*stride - 2*padding + kernel."""
    for n, k, s, p in [(224, 3, 1, 1), (224, 7, 2, 3), (227, 11, 4, 0), (32, 5, 1, 0), (28, 2, 2, 0), (13, 3, 2, 0)]:
        out = chain([k, s, p], size=n).output.output_size[0]
        assert out == (n - k + 2 * p) // s + 1
        if (n - k + 2 * p) % s == 0:  # the inverse holds where the division is exact
            assert (out - 1) * s - 2 * p + k == n


def test_000_rf_does_not_depend_on_padding():
    """000 line 130 writes r_i = s_i*(r_{i+1} - 1) + k_i - 2*padding for the RF ("博文作者忘了加上padding
    本文在这里补上").  Wrong: that is the input-size formula of line 117; the RF does not depend on
    padding (the commenters say so, lines 434 and 489), and the seed's own code (line 166) has
    RF = (RF - 1)*stride + fsize.  With the -2*padding term VGG16's pool5 would come out
    212 - 2*P = 212 - 2*90 = 32."""
    a = seed_net(VGG16_000, VGG16_000_NAMES, 224)
    unpadded = seed_net([[k, s, 0] for k, s, _ in VGG16_000], VGG16_000_NAMES, 224)
    for layer in VGG16_000_NAMES:
        assert a.layer(layer).rf == unpadded.layer(layer).rf
    r = 1
    for k, s, p in reversed(VGG16_000):
        r = s * (r - 1) + k - 2 * p
    assert r == 32 != a.layer("pool5").rf[0] == 212


def test_000_center_mapping_p_i():
    """000 line 223: p_i = s_i * p_{i+1} + ((k_i - 1)/2 - padding); composed from layer to layer."""
    for net, names in [(VGG16_000, VGG16_000_NAMES), (ZF5_000, ZF5_000_NAMES), (ALEXNET_000, ALEXNET_000_NAMES)]:
        a = seed_net(net, names, 224)
        for depth in range(1, len(net) + 1):
            layer = names[depth - 1]
            n = a.layer(layer).output_size[0]
            for i in sorted({0, 1, n // 2, n - 1}):
                p = Fraction(i)
                for k, s, pad in reversed(net[:depth]):
                    p = s * p + (Fraction(k - 1, 2) - pad)
                assert a.center(layer, (i, i)) == (p, p), (layer, i)


def test_000_rcnn_minus_r_general_solution():
    """000 lines 92-94 and 243-245 (Lenc & Vedaldi, 1-based): i_0 = alpha_L*(i_L - 1) + beta_L,
    alpha_L = prod S_p, beta_L = 1 + sum_p (prod_{q<p} S_q)((F_p - 1)/2 - P_p)."""
    betas = {}
    for label, net, names in [
        ("vgg16", VGG16_000, VGG16_000_NAMES),
        ("zf5", ZF5_000, ZF5_000_NAMES),
        ("alexnet", ALEXNET_000, ALEXNET_000_NAMES),
    ]:
        a = seed_net(net, names, 224)
        alpha, beta = 1, Fraction(1)
        for (k, s, p), layer in zip(net, names):
            beta += alpha * (Fraction(k - 1, 2) - p)
            alpha *= s
            assert a.layer(layer).stride[0] == alpha
            n = a.layer(layer).output_size[0]
            for i_l in (1, 2, n):  # 1-based cells; rfmap's centers are 0-based
                assert a.center(layer, (i_l - 1, i_l - 1))[0] + 1 == alpha * (i_l - 1) + beta
        betas[label] = beta
    # ZF-5 pads floor(F/2) with odd F everywhere: beta = 1, "centered at (Sx, Sy)" (lines 88-90);
    # VGG16's unpadded 2x2 pools shift by half a cell each (beta = 1 + 31/2); AlexNet's
    # unpadded conv1 and pools put cell 1's center at pixel 34 (1-based).
    assert betas == {"vgg16": 1 + Fraction(31, 2), "zf5": 1, "alexnet": 34}


def test_000_comment_composition_p1_6p3_plus_7():
    """000 line 426 (a reader): "p1 = 2*p2 + 1, p2 = 3*p3 + 3, 以及 p1 = 6*p3 + 7 这三个套那个公式，感觉不对"
    -- doubting beta_L.  The composition and the formula agree: two layers with s = 2,
    (k-1)/2 - p = 1 (k = 3, p = 0) and s = 3, (k-1)/2 - p = 3 (k = 7, p = 0) give p1 = 6*p3 + 7
    (0-based), i.e. beta = 8 in the 1-based formula: 1 + 1*1 + 2*3 = 8."""
    a = chain([3, 2, 0], [7, 3, 0], size=100)
    for i in range(a.output.output_size[0]):
        assert a.center(-1, (i, i))[0] == 6 * i + 7
        assert a.center(-1, (i, i))[0] + 1 == 6 * ((i + 1) - 1) + (1 + 1 * 1 + 2 * 3)
    # and each layer alone: p1 = 2*p2 + 1, p2 = 3*p3 + 3
    assert chain([3, 2, 0], size=100).center(-1, (4, 4))[0] == 2 * 4 + 1
    assert chain([7, 3, 0], size=100).center(-1, (4, 4))[0] == 3 * 4 + 3


def test_000_spp_simple_solution_even_kernels():
    """000 lines 254-257: with padding floor(k/2), p_i = s_i*p_{i+1} for odd k and
    s_i*p_{i+1} - 0.5 for even k."""
    for k, s in [(3, 1), (3, 2), (5, 2), (7, 2), (2, 2), (4, 2), (6, 1)]:
        a = chain([k, s, k // 2], size=64)
        shift = Fraction(0) if k % 2 else Fraction(-1, 2)
        for i in (0, 3, 10):
            assert a.center(-1, (i, i))[0] == s * i + shift


# =====================================================================================
# Seed 001
# =====================================================================================


def test_001_output_size_valid_and_same():
    """001 lines 32-40: N = (W - F + 2P)/S + 1, rounded down ("valid"); "same": N = ceil(W/S)."""
    for w in (7, 8, 224, 225, 600):
        for f, s in [(3, 1), (3, 2), (5, 2), (7, 4), (2, 2)]:
            valid = rfmap.analyze(Graph.chain([("l", conv(f, s, 0))], input_size=(w, w))).output
            assert valid.output_size[0] == math.floor((w - f) / s) + 1
            same = rfmap.analyze(Graph.chain([("l", conv(f, s, "same_upper"))], input_size=(w, w))).output
            assert same.output_size[0] == math.ceil(w / s)


def test_001_stride_is_the_product_of_strides():
    """001 lines 44-46: a layer's stride is the product of the strides before it (its input
    jump; line 71: feature_stride_l = prod_{i<=l} stride_i)."""
    a = seed_net(VGG16_000, VGG16_000_NAMES, 224)
    jump = 1
    for (_k, s, _p), row in zip(VGG16_000, a.layers[1:]):
        jump *= s
        assert row.stride == (jump, jump)


def test_001_three_3x3_layers():
    """001 line 52: three layers with kernel_size=3, stride=1 see 7x7; lines 75-91: RF 3, 5, 7
    (RF_{l+1} = RF_l + (k-1)*feature_stride_l, line 69); line 65 and line 136: two stacked 3x3
    see 5x5."""
    a = chain([3, 1, 1], [3, 1, 1], [3, 1, 1])
    assert [row.rf[0] for row in a.layers[1:]] == [3, 5, 7]


def test_001_dilated_rf_formula():
    """001 line 95: RF_{l+1} = RF_l + (kernel_size_{l+1} - 1) * feature_stride_l * dilation_{l+1}."""
    layers = [[3, 2, 1, 1], [3, 1, 2, 2], [3, 2, 4, 4], [3, 1, 6, 6], [5, 1, 4, 2]]
    a = chain(*layers, size=128)
    r, j = 1, 1
    for (k, s, _p, d), row in zip(layers, a.layers[1:]):
        r += (k - 1) * j * d
        j *= s
        assert row.rf[0] == r
    # SSD300's fc6 (3x3, dilation 6) on pool5 (stride 16)
    ssd = rfmap.analyze("ssd300")
    assert ssd.layer("fc6").rf[0] == ssd.layer("pool5").rf[0] + (3 - 1) * 16 * 6


def test_001_equivalent_single_conv():
    """001 line 61: an FCN's receptive field is that of one big conv with kernel r, padding P, stride S."""
    for name, layer in [("vgg16", "conv5_3"), ("rpn-vgg16", "rpn_conv")]:
        a = rfmap.analyze(name)
        r, s, p = a.layer(layer).rf[0], a.layer(layer).stride[0], a.layer(layer).padding[0]
        single = rfmap.analyze(Graph.chain([("big", conv(r, s, p))], input_size=(224, 224))).output
        assert (single.rf[0], single.stride[0], single.padding[0]) == (r, s, p)
        assert single.output_size == a.layer(layer).output_size
        for i in (0, 5, 13):
            assert rfmap.analyze(Graph.chain([("big", conv(r, s, p))], input_size=(224, 224))).rf_box(
                "big", (i, i)
            ) == a.rf_box(layer, (i, i))


def seed_padding(n_out: int, stride: int, w: int, r: int) -> Fraction:
    """001 line 101: P from N = (W - F + 2P)/S + 1, i.e. P = ((N-1)*S - W + F)/2 with F = r."""
    return Fraction((n_out - 1) * stride - w + r, 2)


def test_001_faster_rcnn_vgg16_rpn():
    """001 lines 99-106: VGG16 conv5_3 + RPN at 224: "r = ... = 156", "S = 2x2x2x2 = 16",
    "P = ((14-1)x16-224+228)/2 = 106"; "padding=106 ... 156x156 ... stride=16".

    r = 156 is wrong (REFERENCE.md): the seed's expression (line 102) leaves out layers; the
    backward recurrence r_in = s*r_out + (k - s) over all 13 convs and 4 pools plus the 3x3 RPN
    conv gives 228, the Faster R-CNN paper's value -- and the seed's own P formula uses 228.
    """
    a = rfmap.analyze("rpn-vgg16")
    row = a.layer("rpn_conv")
    assert row.rf == (228, 228) != (156, 156)
    assert row.stride == (16, 16)
    assert row.output_size == (14, 14)
    assert row.padding == (106, 106)
    assert seed_padding(14, 16, 224, 228) == 106
    assert right_padding(a, "rpn_conv") == 106  # VGG16 at 224 is symmetric
    r = 1
    for k, s in [(3, 1)] + [(k, s) for k, s, _ in reversed(VGG16_000[:-1])]:  # rpn conv, conv5_3 .. conv1_1
        r = s * r + (k - s)
    assert r == 228


def test_001_resnet50_c4_rpn():
    """001 lines 108-114: ResNet-50 conv4_6 + RPN: "r = ... = 299", "S = 2x2x2x2 = 16",
    "P = ((14-1)x16-224+299)/2 = 141.5"; line 114: "P不是整数,表示conv7x7 s2卷积有多余部分 ...
    paddding=142".

    r and S are right (the stride sits on the 3x3 conv, torchvision layout).  The seed's P is the
    mean of the left and right effective paddings, not the left padding: the floors at the
    stride-2 layers (conv1, maxpool, layer2.0 and layer3.0's 3x3) drop 1 + 2 + 4 + 8 = 15 pixels
    on the right, so cell 0's RF starts 149 pixels left of the image (rfmap's P) and the last
    cell's ends 134 pixels right of it; (149 + 134)/2 = 141.5.  "padding=142" on the left is wrong.
    """
    a = rfmap.analyze("rpn-resnet50-c4")
    row = a.layer("rpn_conv")
    assert row.rf == (299, 299) and row.stride == (16, 16) and row.output_size == (14, 14)
    assert seed_padding(14, 16, 224, 299) == Fraction(283, 2)  # 141.5
    assert row.padding == (149, 149)
    assert right_padding(a, "rpn_conv") == 134
    assert Fraction(row.padding[1] + right_padding(a, "rpn_conv"), 2) == Fraction(283, 2)
    # the seed's expression (line 110), inside out: rpn 3x3, layer3 (1 + 5 3x3), layer2, layer1, maxpool, conv1
    assert ((((1 + 2 + 2 * 5) * 2 + 1 + 2 * 3) * 2 + 1 + 2 * 3) * 2 + 1) * 2 + 5 == 299
    # rfmap's zoo resnet50's C4 plus a 3x3 conv: the same
    assert rfmap.analyze("resnet50").layer("layer3").rf[0] + 2 * 16 == 299


def test_001_resnet101_c4_rpn():
    """001 lines 116-122: ResNet-101 conv4_23 + RPN: "r = ... = 843", "S = 16",
    "P = ((14-1)x16-224+843)/2 = 413.5", "paddding=414".  As for ResNet-50: the mean of left
    (421) and right (406) paddings is 413.5; the left padding is 421.  Line 129: 843 is
    "3.7倍" (3.7 times) the input 224."""
    a = rfmap.analyze("rpn-resnet101-c4")
    row = a.layer("rpn_conv")
    assert row.rf == (843, 843) and row.stride == (16, 16) and row.output_size == (14, 14)
    assert seed_padding(14, 16, 224, 843) == Fraction(827, 2)
    assert row.padding == (421, 421) and right_padding(a, "rpn_conv") == 406
    assert ((((1 + 2 + 2 * 22) * 2 + 1 + 2 * 3) * 2 + 1 + 2 * 3) * 2 + 1) * 2 + 5 == 843
    assert math.floor(10 * 843 / 224) / 10 == 3.7


# =====================================================================================
# Seed 002
# =====================================================================================


def test_002_lenet_sizes():
    """002 lines 144-149: input 32x32, kernel 5x5, stride 1, padding 0: "conv1_h=(32-5)/1 + 1 = 28";
    lines 161-165: S2 pools 2x2 with stride 2, each S2 point sees a 2x2 C1 region ("感受野"):
    "pool1_h = (28-2)/2+1 = 14"."""
    a = rfmap.analyze("lenet5")
    assert a.layer("conv1").output_size == (28, 28)
    assert a.layer("pool1").output_size == (14, 14)
    # 2x2 of C1 = 6x6 of the input
    assert a.layer("pool1").rf == (6, 6) and a.layer("conv1").rf == (5, 5)
    two = chain([2, 2, 0], size=28)
    assert two.output.rf == (2, 2) and two.output.output_size == (14, 14)


def test_002_non_overlapping_10x10_filters():
    """002 line 138: a 1000x1000 image, 10x10 filters with stride 10: "(1000x1000)/(10x10)=100x100"."""
    a = chain([10, 10, 0], size=1000)
    assert a.output.output_size == (100, 100)
    assert a.output.rf == (10, 10) and a.output.stride == (10, 10)


def test_002_faster_rcnn_600x800_feature_map():
    """002 line 173: image (600, 800), conv feature map (38, 50); line 184: spatial_scale 0.0625.

    38 x 50 is py-faster-rcnn's VGG16 conv5_3 (Caffe pools round up: 75 -> 38); the scale is
    1/stride = 1/16.  The seed writes "spatial_scale=round(38/600)=round(50/800)=0.0625": wrong
    as written (38/600 = 0.0633, and round() of either gives 0); the scale is the reciprocal of
    the total stride (seed 004 line 41: "大小为所有stride的乘积分之一"), not a size ratio.
    """
    a = rfmap.analyze("rpn-vgg16", (600, 800))
    row = a.layer("conv5_3")
    assert row.output_size == (38, 50)
    assert row.stride == (16, 16)
    assert 1 / row.stride[0] == Fraction(1, 16) == Fraction("0.0625")
    assert Fraction(38, 600) != Fraction(1, 16) and round(38 / 600) == 0


# =====================================================================================
# Seed 003
# =====================================================================================


def test_003_two_3x3_stride2_layers():
    """003 line 53: a 5x5 image, 3x3 conv with stride 2 and padding 1 gives a 3x3 map, RF 3; a second
    identical layer gives RF 7x7.  Line 61: on a 9x9 input the second layer's output is 3x3 and
    its center cell sees 7x7."""
    a = chain([3, 2, 1], [3, 2, 1], size=5)
    assert a.layer(1).output_size == (3, 3) and a.layer(1).rf == (3, 3)
    assert a.layer(2).rf == (7, 7)
    b = chain([3, 2, 1], [3, 2, 1], size=9)
    assert b.layer(1).output_size == (5, 5)
    assert b.layer(2).output_size == (3, 3)
    assert b.rf_box(2, (1, 1)) == (1, 1, 7, 7)  # the center cell: 7x7, inside the 9x9 image
    assert b.support_box(2, (1, 1)) == (1, 1, 7, 7)


def test_003_vgg_quote():
    """003 line 65 (VGG paper): two stacked 3x3 layers see 5x5, three see 7x7."""
    a = chain([3, 1, 1], [3, 1, 1], [3, 1, 1])
    assert a.layer(2).rf == (5, 5) and a.layer(3).rf == (7, 7)


def test_003_starts_of_the_example():
    """003 lines 87-89: the input has jump 1, r 1, start 0.5; lines 97-99: after the first and
    second 3x3/2/1 layers start_1 = start_2 = 0.5 and r = 7; line 101: with a 4x4 second kernel
    (other settings unchanged) r = 9 and start_2 = 1.5.

    (The 1.5 uses the stated padding 1 on the left, as PyTorch does.  The seed's own script,
    lines 139-146, would recompute the left padding from the output size: on the 5x5 example
    the 4x4 layer has one output, actualP = 1, pL = 0, start = 3.5.)"""
    a = chain([3, 2, 1], [3, 2, 1], size=5)
    assert a.layers[0].stride == (1, 1) and a.layers[0].rf == (1, 1) and start(a, 0) == Fraction(1, 2)
    assert start(a, 1) == start(a, 2) == Fraction(1, 2)
    b = chain([3, 2, 1], [4, 2, 1], size=5)
    assert b.layer(2).rf == (9, 9)
    assert start(b, 2) == Fraction(3, 2)
    assert seed003_script([[3, 2, 1], [4, 2, 1]], 5)[-1][3] == Fraction(7, 2)


def seed003_script(convnet, imsize):
    """003 lines 130-147 (outFromIn), exactly: the left padding is recomputed as
    floor(actualP/2) with actualP = (n_out-1)*s - n_in + k."""
    layer = (imsize, 1, 1, Fraction(1, 2))
    out = []
    for k, s, p in convnet:
        n_in, j_in, r_in, start_in = layer
        n_out = math.floor((n_in - k + 2 * p) / s) + 1
        actual_p = (n_out - 1) * s - n_in + k
        p_l = math.floor(actual_p / 2)
        layer = (n_out, j_in * s, r_in + (k - 1) * j_in, start_in + (Fraction(k - 1, 2) - p_l) * j_in)
        out.append(layer)
    return out


def test_003_formulas_on_alexnet():
    """003 lines 79-84: j_out = j_in*s, r_out = r_in + (k-1)*j_in, start_out = start_in + ((k-1)/2 - p)*j_in."""
    a = seed_net(ALEXNET_003, ALEXNET_003_NAMES, 227)
    j, r, st = 1, 1, Fraction(1, 2)
    for (k, s, p), layer in zip(ALEXNET_003, ALEXNET_003_NAMES):
        j, r, st = j * s, r + (k - 1) * j, st + (Fraction(k - 1, 2) - p) * j
        assert a.layer(layer).stride[0] == j and a.layer(layer).rf[0] == r and start(a, layer) == st


def test_003_alexnet_227_table():
    """003 lines 126-128 and 182-184: seed 003's AlexNet list at imsize = 227 (the printed
    table is an image; REFERENCE.md lists it): conv1 n=55 j=4 r=11 start=5.5 ... fc7-conv 1/32/355/113.5."""
    expected = {
        "conv1": (55, 4, 11, Fraction(11, 2)),
        "pool1": (27, 8, 19, Fraction(19, 2)),
        "conv2": (27, 8, 51, Fraction(19, 2)),
        "pool2": (13, 16, 67, Fraction(35, 2)),
        "conv3": (13, 16, 99, Fraction(35, 2)),
        "conv4": (13, 16, 131, Fraction(35, 2)),
        "conv5": (13, 16, 163, Fraction(35, 2)),
        "pool5": (6, 32, 195, Fraction(67, 2)),
        "fc6-conv": (1, 32, 355, Fraction(227, 2)),
        "fc7-conv": (1, 32, 355, Fraction(227, 2)),
    }
    a = seed_net(ALEXNET_003, ALEXNET_003_NAMES, 227)
    script = dict(zip(ALEXNET_003_NAMES, seed003_script(ALEXNET_003, 227)))
    zoo = rfmap.analyze("alexnet-caffe")
    for layer, (n, j, r, st) in expected.items():
        row = a.layer(layer)
        assert (row.output_size[0], row.stride[0], row.rf[0], start(a, layer)) == (n, j, r, st), layer
        # at 227 the seed's script agrees with PyTorch/Caffe padding
        assert script[layer] == (n, j, r, st)
        z = zoo.layer(layer.replace("-conv", ""))
        assert (z.output_size[0], z.stride[0], z.rf[0], z.center0[0] + Fraction(1, 2)) == (n, j, r, st)


def test_003_center_of_a_feature():
    """003 line 177: "center: (start+idx_x*j, start+idx_y*j)"."""
    a = seed_net(ALEXNET_003, ALEXNET_003_NAMES, 227)
    for layer in ("conv1", "pool2", "conv5", "pool5"):
        row = a.layer(layer)
        for i in range(0, row.output_size[0], 3):
            assert a.center(layer, (i, i))[0] + Fraction(1, 2) == start(a, layer) + i * row.stride[0]


def test_003_actual_p_convention_is_wrong_at_224():
    """003 lines 139-146: the script recomputes the left padding as floor(actualP/2),
    actualP = (n_out-1)*s - n_in + k.  At 224, conv1 (11/4/0) has 54 outputs, actualP = -1,
    pL = -1 and the script says start = 6.5.  PyTorch and Caffe pad nothing on the left and drop
    the 1 leftover pixel on the right: cell 0 sees pixels 0..10, center 5, start 5.5 (REFERENCE.md)."""
    a = seed_net(ALEXNET_003[:8], ALEXNET_003_NAMES[:8], 224)
    assert a.layer("conv1").output_size == (54, 54)
    assert start(a, "conv1") == Fraction(11, 2)
    assert a.rf_box("conv1", (0, 0)) == (0, 0, 10, 10)
    script = seed003_script(ALEXNET_003[:8], 224)
    assert script[0][3] == Fraction(13, 2)  # the seed's convention: 6.5, off by one pixel
    # sizes, jumps and RFs agree; only starts differ
    for row, (n, j, r, _) in zip(a.layers[1:], script):
        assert (row.output_size[0], row.stride[0], row.rf[0]) == (n, j, r)


# =====================================================================================
# Seed 004
# =====================================================================================


def test_004_spatial_scale_is_one_over_the_total_stride():
    """004 line 41: "原始坐标*spacial_scale(大小为所有stride的乘积分之一)"; line 60: a feature map
    1/16 of the input.  VGG16's conv5_3 (Faster R-CNN's RoI pooling input): 4 pools of stride 2."""
    a = rfmap.analyze("rpn-vgg16")
    assert a.layer("conv5_3").stride == (16, 16)
    assert math.prod(s for _, s, _ in VGG16_000[:-1]) == 16
    for size in [(224, 224), (600, 800), (600, 1000)]:
        b = rfmap.analyze("rpn-vgg16", size)
        h, w = b.layer("conv5_3").output_size
        assert (h, w) == (-(-size[0] // 16), -(-size[1] // 16))  # Caffe's ceil pools: 1/16 of the input, rounded up


@pytest.mark.parametrize("layers", [VGG16_000, ZF5_000, ALEXNET_000])
def test_seed_lists_load_as_plain_layer_lists(layers):
    """The lists as the seeds write them ([k, s, p]) load directly (default names layer1, ...)."""
    a = rfmap.analyze(layers, 224)
    assert len(a.layers) == len(layers) + 1
    assert a.layer(f"layer{len(layers)}").rf == seed_net(layers, [f"l{i}" for i in range(len(layers))], 224).output.rf
