"""Layouts and sequence ops that the agreement test made rfmap follow, against the ground
truth: the support of the input gradient of plain PyTorch models (float64, positive
weights, no ReLU -- nothing cancels).

* a pixel unshuffle written as ``view`` / ``permute`` / ``reshape`` (how exporters write
  it) and a pixel shuffle written the same way;
* a group norm written as ``view(N, G, -1)`` / normalize / ``view`` back (how exporters
  write ``nn.GroupNorm``): every cell sees the whole map;
* a bidirectional GRU over the rows of a map: each cell sees its own row, not the map;
* ``F.pairwise_distance`` of two maps along W (its last dim): each output sees its rows;
* the PyTorch twin of an ONNX ``Resize`` (``rfmap.erf.twin``): its gradient supports are
  the analysis' supports.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from probe import gradient_supports  # noqa: E402
from torch import nn  # noqa: E402

import rfmap  # noqa: E402


class Op(nn.Module):
    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        self.channels = 2
        self.dtype = torch.float64
        for k, v in mods.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


def positive_conv(c_in, c_out, k):
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False).double()
    with torch.no_grad():
        conv.weight.uniform_(0.5, 1.0)
    return conv


def unshuffle_by_reshape(s, x):
    y = s.c(x)
    n, c, h, w = y.shape
    y = y.view(n, c, h // 2, 2, w // 3, 3).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 6, h // 2, w // 3)
    return s.c2(y)


def shuffle_by_reshape(s, x):
    y = s.c(x)  # 8 channels
    n, c, h, w = y.shape
    y = y.view(n, 2, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, 2, h * 2, w * 2)
    return s.c2(y)


def group_norm_by_reshape(s, x):
    y = s.c(x)
    n, c, h, w = y.shape
    g = y.view(n, 2, -1)
    g = g - g.mean(dim=-1, keepdim=True)
    return s.c2(g.view(n, c, h, w))


def gru_over_rows(s, x):
    y = s.c(x)
    n, c, h, w = y.shape
    seq = y.permute(3, 0, 2, 1).reshape(w, n * h, c)  # (W, N*H, C): a sequence per row
    out = s.gru(seq)[0]  # (W, N*H, 2*hidden)
    return out.view(w, n, h, -1).permute(1, 3, 2, 0)


def distance_over_rows(s, x):
    return torch.nn.functional.pairwise_distance(s.c(x), s.c2(x)).unsqueeze(-1)  # (N, C, H, 1)


CASES = {
    "pairwise-distance-over-w": (lambda: Op(distance_over_rows, c=positive_conv(2, 2, 3), c2=positive_conv(2, 2, 1)), (6, 9)),
    "unshuffle-by-reshape": (lambda: Op(unshuffle_by_reshape, c=positive_conv(2, 2, 3), c2=positive_conv(12, 2, 3)), (12, 15)),
    "shuffle-by-reshape": (lambda: Op(shuffle_by_reshape, c=positive_conv(2, 8, 1), c2=positive_conv(2, 2, 3)), (7, 9)),
    "group-norm-by-reshape": (lambda: Op(group_norm_by_reshape, c=positive_conv(2, 4, 3), c2=positive_conv(4, 2, 1)), (9, 11)),
    "gru-over-rows": (lambda: Op(gru_over_rows, c=positive_conv(2, 3, 3), gru=nn.GRU(3, 2, bidirectional=True).double()), (6, 10)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_support_is_the_gradient_support(case):
    build, size = CASES[case]
    torch.manual_seed(0)
    model = build().eval()
    a = rfmap.analyze(model, size, strict=True)
    h, w = a.output.output_size
    cells = sorted({(0, 0), (h - 1, w - 1), (h // 2, w // 3), (1, max(w - 2, 0))})
    probes = gradient_supports(model, size, slice(None), cells, fill="positive")
    for cell, probe in zip(cells, probes):
        got = a.support(a.output.name, cell)
        assert all(np.array_equal(g, t) for g, t in zip(got, probe.sets)), (case, cell, got, probe.sets)
    if case == "gru-over-rows":
        assert a.output.rf[1] > size[1] and a.output.rf[0] == 3  # the whole row, 3 rows (the conv)


def test_the_twin_of_an_onnx_resize_has_its_supports():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from rfmap.erf.twin import to_torch
    from rfmap.frontends.onnx import from_onnx

    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="cubic",
                            coordinate_transformation_mode="half_pixel", exclude_outside=1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array([1, 1, 1.5, 0.6], np.float32), "scales")])
    graph = from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]))
    a = rfmap.analyze(graph)
    twin = to_torch(graph, (5, 7), channels=2, weights="positive")
    h, w = a.output.output_size
    cells = [(y, x) for y in range(h) for x in range(w)]
    probes = gradient_supports(twin, (5, 7), a.output.name, cells, channels=2)
    for cell, probe in zip(cells, probes):
        got = a.support(a.output.name, cell)
        assert all(np.array_equal(g_, t) for g_, t in zip(got, probe.sets)), (cell, got, probe.sets)
