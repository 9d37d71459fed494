"""FCN-32s, FCN-16s, FCN-8s as released in Caffe: structure, sizes at any input size, and
gradient supports of a plain-PyTorch FCN written here from the prototxts' description
(``tests/data/published/fcn_caffe.md``).  The crop offsets themselves are checked in
``test_crop.py``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from published import table

import rfmap
from rfmap.core.layers import ConvTranspose, Crop
from rfmap.frontends import zoo

CROPS = table("fcn_caffe")
NETS = ("fcn32s", "fcn16s", "fcn8s")


def analyze(name, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)
        return rfmap.analyze(name, size)


def offsets(net):
    return {r["crop"]: int(r["offset"]) for r in CROPS if r["net"] == net}


def fcn_torch(net: str):
    """The released FCN as plain torch calls (one channel, ones as weights, average pools
    rounding up like Caffe's), returning every named map."""
    import torch
    import torch.nn.functional as F

    crop = offsets(net)

    def conv(t, k=3, pad=1):
        return F.conv2d(t, torch.ones(1, 1, k, k, dtype=t.dtype), padding=pad)

    def deconv(t, k, s):
        return F.conv_transpose2d(t, torch.ones(1, 1, k, k, dtype=t.dtype), stride=s)

    def caffe_crop(t, like, offset):
        h, w = like.shape[2:]
        assert t.shape[2] >= offset + h and t.shape[3] >= offset + w
        return t[:, :, offset : offset + h, offset : offset + w]

    def forward(x):
        m = {"data": x}
        t = conv(x, pad=100)  # conv1_1
        for stage, n in enumerate((2, 2, 3, 3, 3), start=1):
            for _ in range(n - (stage == 1)):
                t = conv(t)
            t = m[f"pool{stage}"] = F.avg_pool2d(t, 2, 2, ceil_mode=True)
        t = m["score_fr"] = conv(conv(t, 7, 0), 1, 0)  # fc6 7x7, fc7 1x1, score_fr 1x1
        if net == "fcn32s":
            up = m["upscore"] = deconv(t, 64, 32)
        else:
            up = m["upscore2"] = deconv(t, 4, 2)
            m["score_pool4c"] = caffe_crop(m["pool4"], up, crop["score_pool4c"])
            t = m["fuse_pool4"] = up + m["score_pool4c"]
            if net == "fcn16s":
                up = m["upscore16"] = deconv(t, 32, 16)
            else:
                up = m["upscore_pool4"] = deconv(t, 4, 2)
                m["score_pool3c"] = caffe_crop(m["pool3"], up, crop["score_pool3c"])
                t = m["fuse_pool3"] = up + m["score_pool3c"]
                up = m["upscore8"] = deconv(t, 16, 8)
        m["score"] = caffe_crop(up, x, crop["score"])
        return m

    return forward


def test_the_zoo_holds_the_released_crops_and_deconvolutions():
    kernels = {"upscore": (64, 32), "upscore2": (4, 2), "upscore16": (32, 16), "upscore_pool4": (4, 2), "upscore8": (16, 8)}
    for net in NETS:
        graph = zoo.get(net)
        assert graph.node("conv1_1").layer.padding == 100 and graph.node("fc6").layer.kernel == 7
        assert all(graph.node(f"pool{i}").layer.ceil_mode for i in range(1, 6))
        for node in graph.nodes:
            if isinstance(node.layer, ConvTranspose):
                assert (node.layer.kernel, node.layer.stride, node.layer.padding) == (*kernels[node.name], 0)
        crops = {n.name: n.layer for n in graph.nodes if isinstance(n.layer, Crop)}
        assert {name: c.start for name, c in crops.items()} == offsets(net)
        assert graph.outputs == ("score",) and graph.node(graph.output_nodes[0]).name == "score"
        assert dict(graph.aliases)["data"] == "input"


@pytest.mark.parametrize(
    "net, size", [(n, (500, 500)) for n in NETS] + [("fcn8s", (333, 480)), ("fcn16s", (64, 97)), ("fcn32s", (1, 3))]
)
def test_sizes_and_gradient_supports_match_pytorch(net, size):
    torch = pytest.importorskip("torch")
    a = analyze(net, size)
    h, w = size
    cells = [(0, 0), (h // 2, w // 3), (h - 1, w - 1), (min(7, h - 1), max(w - 20, 0))]
    x = torch.ones(len(cells), 1, *size, dtype=torch.float64, requires_grad=True)
    maps = fcn_torch(net)(x)
    for name, t in maps.items():
        assert tuple(t.shape[2:]) == a.layer(name).output_size, (net, size, name)
    assert a.layer("score").output_size == size
    # batch element b carries cell b's gradient (batch elements do not interact)
    sum(maps["score"][b, 0][cell] for b, cell in enumerate(cells)).backward()
    for b, cell in enumerate(cells):
        g = x.grad[b, 0].numpy() != 0
        ys, xs = a.support("score", cell)
        assert list(ys) == list(np.flatnonzero(g.any(axis=1))) and list(xs) == list(np.flatnonzero(g.any(axis=0)))


def test_receptive_fields():
    """rfmap's numbers for the output (not published): FCN-32s' score sees 436 pixels, the
    skip nets 468 (the deconvolutions widen pool5's 212 and fc6's 7x7 window)."""
    assert analyze("fcn32s").layer("score").rf == (436, 436)
    for net in ("fcn16s", "fcn8s"):
        assert analyze(net).layer("score").rf == (468, 468)
    assert analyze("fcn8s").layer("score_pool3c").rf == (44, 44)  # pool3's


def test_rfmap_flags_the_fuse_layers_by_rf_center():
    """Caffe aligns the two inputs of ``fuse_pool4`` by kernel centers; rfmap's alignment
    check compares the centers of cell 0's receptive field, which after a deconvolution of
    kernel 2s stand for a whole period of cells, so it reports 8 (and 4) pixels apart."""
    with pytest.warns(rfmap.RFMapWarning) as caught:
        rfmap.analyze("fcn8s")
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "'fuse_pool3'" in messages[0] and "-19.5 vs -23.5" in messages[0]
    assert "'fuse_pool4'" in messages[1] and "-3.5 vs -11.5" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rfmap.analyze("fcn32s")  # no merge, no message


def test_a_crop_past_the_end_names_the_layer():
    from rfmap.core.layers import conv
    from rfmap.frontends.zoo._registry import SizedBuilder
    from rfmap.frontends.zoo.fcn import caffe_crop

    b = SizedBuilder("t", (10, 10))
    x = b.add("c", conv(3), b.input)
    with pytest.raises(rfmap.RFMapError, match="layer 'crop' .*runs past its end"):
        caffe_crop(b, "crop", x, b.input, 1)
    # conv1_1's padding of 100 lets any image through: pool5 is at least 7x7, fc6 1x1
    assert analyze("fcn32s", 1).layer("fc6").output_size == (1, 1)
