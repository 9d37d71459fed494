"""Zoo entries with published numbers: LFFD v1 and VGG-16 as released in Caffe, plus the
generic checks of every entry added with its published numbers (the FCNs, the FPN
backbones and the 1-D causal stacks have their own files: ``test_zoo_fcn.py``,
``test_zoo_fpn.py``, ``test_zoo_sequence.py``).

Golden values come from ``tests/data/published/*.md`` (sources cited there).  Ground truth
for receptive fields is the support of an input gradient of a plain-PyTorch model written
here from the paper's description (ones as weights, average instead of max pooling, so
nothing cancels); no rfmap code builds it.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from published import table
from test_zoo import OUTPUT

import rfmap
from rfmap.core.layers import Conv, Merge
from rfmap.core.registry import registry
from rfmap.frontends import zoo

#: the entries added with published numbers, and the file that checks each family
NEW = {
    "vgg16-caffe": "test_zoo_published.py",
    "lffd-v1": "test_zoo_published.py",
    "fasterrcnn-resnet50-fpn": "test_zoo_fpn.py",
    "retinanet-resnet50-fpn": "test_zoo_fpn.py",
    "fcn32s": "test_zoo_fcn.py",
    "fcn16s": "test_zoo_fcn.py",
    "fcn8s": "test_zoo_fcn.py",
    "wavenet": "test_zoo_sequence.py",
    "tcn": "test_zoo_sequence.py",
}


def analyze(name, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)  # see the families' own tests
        return rfmap.analyze(name, size)


def test_every_entry_is_checked_somewhere():
    assert set(zoo.names()) == set(OUTPUT) | set(NEW)
    assert not set(OUTPUT) & set(NEW)


@pytest.mark.parametrize("name", sorted(NEW))
def test_entry_builds_with_its_name_size_and_outputs(name):
    graph = zoo.get(name)
    assert graph.name == name and graph.input_size == {n: s for n, _, s in zoo.entries()}[name]
    names = [node.name for node in graph.nodes]
    assert len(set(names)) == len(names)
    for node in graph.nodes[1:]:  # every op resolves through the registry
        assert registry().spec(node.op) is not None, (node.name, node.op)
    a = analyze(name)
    assert a.input_size == graph.input_size
    rows = a.output_rows()
    assert len(rows) == len(a.outputs) >= 1 and all(min(r.output_size) >= 1 for r in rows)


# -- LFFD v1 ---------------------------------------------------------------------------

LFFD = table("lffd_v1")


def lffd_torch(x):
    """LFFD v1 as its symbol file describes it (one channel, ones as weights; ReLUs change no
    support on positive values and are left out): returns the eight branch inputs."""
    import torch
    import torch.nn.functional as F

    def conv(t, stride=1, pad=1):
        return F.conv2d(t, torch.ones(1, 1, 3, 3, dtype=t.dtype), stride=stride, padding=pad)

    out = {}
    s = conv(conv(x, 2, 0), 2, 0)  # conv1, conv2: 3x3 stride 2, valid
    for block in ((4, 6, 8, 10), (13, 15), (18,), (21, 23, 25)):
        if block[0] != 4:
            s = conv(s, 2, 0)  # conv11, conv16, conv19
        for n in block:
            s = s + conv(conv(s))  # conv(n-1), conv(n) and the residual add
            out[f"conv{n}"] = s
    return out


def test_lffd_branches_match_the_published_rf_stride_center_and_size():
    a = analyze("lffd-v1")
    assert a.input_size == (640, 640)
    for row in LFFD:
        n = row["branch"]
        for layer in (f"{n}_add", f"{n}_3_score", f"{n}_3_bbox"):
            g = a.layer(layer)
            assert g.rf == (int(row["rf"]),) * 2, layer
            assert g.stride == (int(row["stride"]),) * 2, layer
            # LFFD's center_start is the center of cell 0's unclipped RF box, pixel-index
            assert g.center0 == (int(row["center_start"]),) * 2, layer
            assert g.output_size == (int(row["feature_map"]),) * 2, layer
            assert g.shift_invariant


def test_lffd_structure_and_outputs_in_deploy_order():
    graph = zoo.get("lffd-v1")
    convs = {n.name: n.layer for n in graph.nodes if n.name in {f"conv{i}" for i in range(1, 26)}}
    assert len(convs) == 25 and all(c.kernel == 3 for c in convs.values())
    for i, c in convs.items():
        valid = i in ("conv1", "conv2", "conv11", "conv16", "conv19")
        assert (c.stride, c.padding) == ((2, 0) if valid else (1, 1)), i
    adds = [n for n in graph.nodes if isinstance(n.layer, Merge)]
    assert [n.name for n in adds] == [f"conv{i}_add" for i in (4, 6, 8, 10, 13, 15, 18, 21, 23, 25)]
    assert graph.node("conv4_add").inputs == ("conv2", "conv4")  # conv4 = conv2 + conv4
    a = analyze("lffd-v1")
    assert a.outputs == tuple(f"{r['branch']}_3_{h}" for r in LFFD for h in ("score", "bbox"))
    assert [r.name for r in a.output_rows()] == list(a.outputs)


def test_lffd_against_gradient_supports():
    """The published RF and center of each branch, measured on a plain-PyTorch LFFD: the
    gradient support of the middle cell is the RF box (it fits in 640), exactly where LFFD
    puts it: ``center_start + i * stride``, ``(rf - 1) / 2`` on either side."""
    pytest.importorskip("torch")
    from probe import gradient_supports

    a = analyze("lffd-v1")

    class Model:
        def __call__(self, x):
            return lffd_torch(x)

    for row in LFFD:
        layer, rf, stride = row["branch"], int(row["rf"]), int(row["stride"])
        n = int(row["feature_map"])
        mid = n // 2
        cells = [(mid, mid), (0, 0), (n - 1, mid // 3)]
        probes = gradient_supports(Model(), (640, 640), layer, cells)
        for cell, probe in zip(cells, probes):
            ys, xs = a.support(f"{layer}_add", cell)
            assert list(ys) == list(probe.sets[0]) and list(xs) == list(probe.sets[1]), (layer, cell)
        y0, x0, y1, x1 = probes[0].box
        assert y1 - y0 + 1 == x1 - x0 + 1 == rf, layer
        center = int(row["center_start"]) + mid * stride
        assert Fraction(y0 + y1, 2) == Fraction(x0 + x1, 2) == center, layer


# -- VGG-16 as released in Caffe -------------------------------------------------------


def _vgg16_conv5_3_size(size, ceil_mode):
    """conv5_3's size by PyTorch's own pooling rule, on meta tensors (no compute)."""
    import torch
    import torch.nn.functional as F

    x = torch.empty(1, 1, *size, device="meta")
    w = torch.empty(1, 1, 3, 3, device="meta")
    for stage, n in enumerate((2, 2, 3, 3, 3)):
        if stage:
            x = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode)
        for _ in range(n):
            x = F.conv2d(x, w, padding=1)
    return tuple(x.shape[2:])


def test_vgg16_caffe_rounds_pools_up():
    pytest.importorskip("torch")
    rows = {r["model"]: r for r in table("vgg16_caffe")}
    for model, name, ceil in (("vgg16-caffe", "vgg16-caffe", True), ("vgg16 (torchvision)", "vgg16", False)):
        row = rows[model]
        size = tuple(int(v) for v in row["input"].split("x"))
        want = tuple(int(v) for v in row["conv5_3"].split("x"))
        assert analyze(name, size).layer("conv5_3").output_size == want
        assert _vgg16_conv5_3_size(size, ceil) == want  # PyTorch's rule agrees
    graph = zoo.get("vgg16-caffe")
    pools = [n.layer for n in graph.nodes if n.name.startswith("pool")]
    assert len(pools) == 5 and all(isinstance(p, Conv) and p.ceil_mode for p in pools)
    # receptive fields are those of VGG-16 (rounding changes sizes only)
    a, ref = analyze("vgg16-caffe"), analyze("vgg16")
    for layer in ("conv5_3", "pool5"):
        assert a.layer(layer).rf == ref.layer(layer).rf and a.layer(layer).stride == ref.layer(layer).stride
    assert a.layer("fc6").global_context


@pytest.mark.parametrize("size", [(600, 800), (601, 999), (224, 224)])
def test_vgg16_caffe_sizes_match_pytorch_ceil_mode(size):
    pytest.importorskip("torch")
    assert analyze("vgg16-caffe", size).layer("conv5_3").output_size == _vgg16_conv5_3_size(size, True)


def test_lffd_cli_lists_its_outputs(capsys):
    import json

    from rfmap.cli import main

    assert main(["summary", "lffd-v1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"][:2] == ["conv8_3_score", "conv8_3_bbox"] and len(data["outputs"]) == 16
    rf = {row["name"]: row["rf"] for row in data["layers"]}
    assert [rf[f"{r['branch']}_3_score"][0] for r in LFFD] == [int(r["rf"]) for r in LFFD]


def test_sized_entries_are_rebuilt_for_their_size():
    a = zoo.get("fcn8s", (333, 480))
    assert a.input_size == (333, 480) and zoo.get("fcn8s").input_size == (500, 500)
    assert zoo.get("FCN8s", 320).input_size == (320, 320)
    assert zoo.get("vgg16", 320) is zoo.get("vgg16")  # size-free entries: one graph
    with pytest.raises(rfmap.RFMapError, match="fcn8s"):
        zoo.get("fcn8s", (1, 2, 3))
    assert np.array_equal(analyze("fcn8s", (333, 480)).layer("score").output_size, (333, 480))
