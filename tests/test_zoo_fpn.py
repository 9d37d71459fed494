"""torchvision's ResNet-50-FPN backbones (Faster R-CNN, RetinaNet): outputs, RFLA's
published receptive fields along the backbone path, and the merged receptive fields
through the top-down path, measured on a plain-PyTorch ResNet-50-FPN written here.

"Backbone path" (RFLA's ``gen_trf``, ``tests/data/published/rfla_resnet50_fpn.md``): the
bottom-up path through the ResNet stages, leaving out the FPN's own convs and its
top-down path.  RFLA's P2..P5 are the stage outputs C2..C5 (``layer1``..``layer4``); its P6
is torchvision RetinaNet's P6, a 3x3/2 conv on P5 (so including P5's lateral 1x1 and 3x3
output conv).  Its P7 (811) counts P7's conv at the stride of its output (128) where the
recurrence counts every other layer at the stride of its input (P6's, 64): rfmap gives 683.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from published import table

import rfmap
from rfmap.frontends import zoo
from rfmap.frontends.zoo.fpn import resnet50_fpn

RFLA = {r["level"]: (int(r["trf"]), int(r["stride"])) for r in table("rfla_resnet50_fpn")}
OUTPUTS = {r["model"]: tuple(r["outputs"].split()) for r in table("torchvision_fpn")}


def analyze(source, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at multiples of 32 every merge is aligned
        return rfmap.analyze(source, size)


def test_outputs_are_named_as_torchvision_returns_them():
    for name, outputs in OUTPUTS.items():
        a = analyze(name)
        assert a.outputs == outputs
        strides = [r.stride[0] for r in a.output_rows()]
        first = 4 if name.startswith("faster") else 8
        assert strides == [first * 2**k for k in range(len(outputs))]
    graph = zoo.get("retinanet-resnet50-fpn")
    assert graph.node("fpn.extra_blocks.p6").inputs == ("fpn.layer_blocks.2",)  # P5, not C5
    assert graph.node("fpn.inner_blocks.0").inputs == ("layer2",)
    pool = zoo.get("fasterrcnn-resnet50-fpn").node("fpn.extra_blocks").layer
    assert (pool.op, pool.kernel, pool.stride, pool.padding) == ("maxpool", 1, 2, 0)


def test_rfla_backbone_path():
    a = analyze("retinanet-resnet50-fpn")
    for level, stage in zip(("P2", "P3", "P4", "P5"), ("layer1", "layer2", "layer3", "layer4")):
        assert (a.layer(stage).rf[0], a.layer(stage).stride[0]) == RFLA[level], level
    assert (a.layer("p6").rf[0], a.layer("p6").stride[0]) == RFLA["P6"]
    # the bottom-up path alone gives the same P6 (P5 has no top-down input)
    bottom_up = analyze(resnet50_fpn("bottom-up", (800, 800), returned_layers=(2, 3, 4), extra="p6p7", top_down=False))
    assert bottom_up.layer("p6").rf == a.layer("p6").rf
    # P7: RFLA adds (3 - 1) * 128 to P6, Distill's recurrence (and the gradient) (3 - 1) * 64
    rf_p7, stride_p7 = RFLA["P7"]
    assert a.layer("p7").stride[0] == stride_p7
    assert a.layer("p7").rf[0] == RFLA["P6"][0] + (3 - 1) * 64 == 683
    assert rf_p7 == RFLA["P6"][0] + (3 - 1) * 128 == 811
    # the FPN outputs on the bottom-up path add the 3x3 output conv: C + 2 * stride
    assert [bottom_up.layer(o).rf[0] for o in ("0", "1", "2")] == [91 + 16, 267 + 32, 427 + 64]


#: rfmap's merged receptive fields through the top-down path (checked against gradients
#: below): every level below P5 sees C5's context
MERGED = {
    "fasterrcnn-resnet50-fpn": {"0": 459, "1": 459, "2": 459, "3": 491, "pool": 491},
    "retinanet-resnet50-fpn": {"0": 459, "1": 459, "2": 491, "p6": 555, "p7": 683},
}


def resnet50_fpn_torch(returned, extra):
    """torchvision's ResNet-50-FPN as plain torch calls (one channel, ones as weights, the
    stem's max pool as an average pool so the gradient reaches every pixel it reads).
    float32 holds the sums exactly enough: every value is a positive sum of ones, at most
    about 1e22, and a zero gradient is a pixel no path reaches."""
    import torch.nn.functional as F

    def conv(t, k, s=1, p=0):
        # a k x k conv with all-ones weights and zero padding sums its window: computed as a
        # sum pool, several times faster than a one-channel conv2d on the CPU
        return F.avg_pool2d(t, k, s, p, count_include_pad=True, divisor_override=1)

    def forward(x):
        t = F.avg_pool2d(conv(x, 7, 2, 3), 3, 2, 1)
        stages = {}
        for stage, (blocks, stride) in enumerate(((3, 1), (4, 2), (6, 2), (3, 2)), start=1):
            for b in range(blocks):
                s = stride if b == 0 else 1
                short = conv(t, 1, s) if b == 0 else t
                t = conv(conv(conv(t, 1), 3, s, 1), 1) + short
            stages[stage] = t
        laterals = [conv(stages[r], 1) for r in returned]
        inner = laterals[-1]
        results = [conv(inner, 3, 1, 1)]
        for lateral in reversed(laterals[:-1]):
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, conv(inner, 3, 1, 1))
        out = {str(k): r for k, r in enumerate(results)}
        if extra == "pool":
            out["pool"] = F.max_pool2d(results[-1], 1, 2, 0)
        else:
            out["p6"] = conv(results[-1], 3, 2, 1)
            out["p7"] = conv(F.relu(out["p6"]), 3, 2, 1)
        return out

    return forward


@pytest.mark.parametrize(
    "name, returned, extra, size",
    [("fasterrcnn-resnet50-fpn", (1, 2, 3, 4), "pool", 704), ("retinanet-resnet50-fpn", (2, 3, 4), "p6p7", 768)],
)
def test_merged_receptive_fields_against_gradients(name, returned, extra, size):
    """One backward pass: batch element b carries the gradient of probe b.  The probes are
    cells near the middle of every output, one per phase of the nearest upsamplings above
    it (the RF varies with the phase), whose RF boxes fit in the image, so the gradient
    support is the whole box and its width the receptive field."""
    torch = pytest.importorskip("torch")
    a = analyze(name, size)
    probes = []
    for out in a.outputs:
        n = a.layer(out).output_size[0]
        period = int(32 // a.layer(out).stride[0]) if a.layer(out).stride[0] < 32 else 1
        start = n // 2 - period // 2
        probes += [(out, (start + d, start + d)) for d in range(period)]
    for out, cell in probes:
        box = a.rf_box(out, cell)
        assert min(box) >= 0 and max(box) < size, (out, cell, box)
    x = torch.ones(len(probes), 1, size, size, dtype=torch.float32, requires_grad=True)
    maps = resnet50_fpn_torch(returned, extra)(x)
    for out in a.outputs:
        assert tuple(maps[out].shape[2:]) == a.layer(out).output_size, out
    sum(maps[out][b, 0][cell] for b, (out, cell) in enumerate(probes)).backward()
    widest: dict[str, int] = {}
    for b, (out, cell) in enumerate(probes):
        g = x.grad[b, 0].numpy() != 0
        rows, cols = np.flatnonzero(g.any(axis=1)), np.flatnonzero(g.any(axis=0))
        ys, xs = a.support(out, cell)
        assert list(ys) == list(rows) and list(xs) == list(cols), (out, cell)
        assert (rows[0], cols[0], rows[-1], cols[-1]) == a.rf_box(out, cell), (out, cell)
        widest[out] = max(widest.get(out, 0), int(rows[-1] - rows[0] + 1))
    assert widest == MERGED[name] == {o: a.layer(o).rf[0] for o in a.outputs}


def test_other_sizes_follow_the_lateral_maps():
    """torchvision interpolates to the lateral map's size: at 600x1000 (not a multiple of
    32) C4 is 38x63 and C5 19x32, the top-down maps are resized to fit, and rfmap says that
    the resized path's stride (1024/63) no longer matches the lateral's (16)."""
    with pytest.warns(rfmap.RFMapWarning, match="'fpn.merge.1'.*stride 16 vs 1024/63"):
        a = rfmap.analyze("retinanet-resnet50-fpn", (600, 1000))
    assert [a.layer(o).output_size for o in a.outputs] == [(75, 125), (38, 63), (19, 32), (10, 16), (5, 8)]
    b = analyze("fasterrcnn-resnet50-fpn", (608, 1024))  # padded to multiples of 32: aligned
    assert b.layer("pool").output_size == (10, 16)
