"""Ops that reorder the spatial axes (``transpose``, ``permute``, ONNX ``Transpose``, the
``permute`` spec op) are followed exactly.

Ground truth: the input gradient of each model below, written with plain ``torch.nn`` and
``torch.nn.functional`` calls (positive weights, float64, average pooling), for every cell of
its output; the output size is PyTorch's, in the tensor's own axis order.  A layer after a
transpose reports its axes in its own order (``LayerGeometry.input_axes`` says which input axis
each runs along); its boxes and supports are in the input image's (H, W) order.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import rfmap  # noqa: E402
from rfmap import RFMapError, RFMapWarning  # noqa: E402
from tests.probe import gradient_supports  # noqa: E402


def positive(model: nn.Module) -> nn.Module:
    """Weights in [0.5, 1.5), no bias: no gradient cancels, so its support is the paths'."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 + torch.rand(p.shape, generator=gen, dtype=p.dtype))
    return model.double()


class Outputs(nn.Module):
    """The model's output under the name ``out`` (what the probe reads)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return {"out": self.model(x)}


class SwapThenStride(nn.Module):
    """The issue's example: conv, H and W swapped, a stride-2 conv (at 8x16 PyTorch's output is 8x4)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.b = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.b(self.a(x).permute(0, 1, 3, 2))


class TransposedSkip(nn.Module):
    """Unequal kernels and strides after a transpose; a skip path of the transposed map, sliced."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, (3, 1), padding=(1, 0), bias=False)
        self.b = nn.Conv2d(1, 1, (1, 5), stride=(1, 2), padding=(0, 2), bias=False)
        self.c = nn.Conv2d(1, 1, 3, stride=2, bias=False)

    def forward(self, x):
        y = self.a(x).transpose(2, 3)
        return self.c(self.b(y) + y[..., ::2])


class TransposedOutput(nn.Module):
    """The network returns its map transposed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, (3, 5), stride=(1, 2), bias=False)

    def forward(self, x):
        return self.a(x).transpose(-1, -2)


class ChannelsLastSwap(nn.Module):
    """To channels-last, H and W swapped there, back to channels-first; then an asymmetric
    pad and a ceil-mode average pool that see the swapped axes."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, (1, 3), bias=False)

    def forward(self, x):
        y = self.a(x).permute(0, 2, 3, 1).transpose(1, 2).permute(0, 3, 1, 2)
        return F.avg_pool2d(F.pad(y, (2, 0, 1, 3)), (3, 2), stride=(2, 3), ceil_mode=True)


class Rotate3d(nn.Module):
    """3-D: the axes rotated (D, H, W) -> (H, W, D) between two strided convs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(1, 1, (3, 1, 1), stride=(2, 1, 1), bias=False)
        self.b = nn.Conv3d(1, 1, (1, 1, 3), stride=(1, 1, 2), padding=(0, 0, 1), bias=False)

    def forward(self, x):
        return self.b(self.a(x).permute(0, 1, 3, 4, 2))


class SwapUpsample(nn.Module):
    """A transpose, then nearest upsampling by unequal factors."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, (3, 1), stride=(2, 1), bias=False)

    def forward(self, x):
        return F.interpolate(self.a(x).transpose(2, 3), scale_factor=(2, 3), mode="nearest")


MODELS = [
    (SwapThenStride, (8, 16)),
    (TransposedSkip, (10, 14)),
    (TransposedOutput, (9, 13)),
    (ChannelsLastSwap, (11, 7)),
    (Rotate3d, (7, 5, 6)),
    (SwapUpsample, (9, 5)),
]


def _strict(model, size):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RFMapWarning)
        return rfmap.analyze(model, input_size=size, strict=True)


@pytest.mark.parametrize("make, size", MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_every_cell_matches_the_gradient(make, size):
    model = positive(make())
    with torch.no_grad():
        shape = tuple(model(torch.zeros((1, 1) + size, dtype=torch.float64)).shape[2:])
    a = _strict(model, size)
    out = a.output
    assert out.output_size == shape, f"rfmap {out.output_size}, PyTorch {shape}"
    assert out.input_axes is not None and out.input_axes != tuple(range(len(size)))
    cells = list(np.ndindex(*shape))
    for cell, probe in zip(cells, gradient_supports(Outputs(model), size, "out", cells)):
        got = a.support(out.name, cell)
        assert [s.tolist() for s in got] == [s.tolist() for s in probe.sets], cell
        box = a.rf_box(out.name, cell)
        d = len(size)
        assert all(box[k] <= s[0] and s[-1] <= box[k + d] for k, s in enumerate(got) if s.size), (cell, box)
        assert a.rf_boxes(out.name, [cell]).tolist() == [list(box)]


def test_the_issue_example_in_numbers():
    """Cell (2, 1) of the 8x4 output sees input rows 0..4 and columns 2..6."""
    a = _strict(positive(SwapThenStride()), (8, 16))
    out = a.output
    assert out.output_size == (8, 4) and out.input_axes == (1, 0)
    assert tuple(a.rf_box(out.name, (2, 1))) == (0, 2, 4, 6)  # (y0, x0, y1, x1): image order
    assert (out.rf, out.stride) == ((5, 5), (2, 2))
    # a point of the image is found in the layer's own axis order
    assert a.nearest_cell(out.name, (3, 4)) == (2, 1)
    # cell i of axis 0 covers columns 2i-2..2i+2, cell j of axis 1 rows 2j-2..2j+2
    assert [c.tolist() for c in a.cells_containing(out.name, (0, 6))] == [[2, 3, 4], [0, 1]]


@pytest.mark.parametrize("make, size", MODELS[:4], ids=[m.__name__ for m, _ in MODELS[:4]])
def test_onnx_export_agrees(make, size, tmp_path):
    """The TorchScript ONNX export (``Transpose`` nodes) gives the same supports and output."""
    model = positive(make()).float()
    path = tmp_path / "m.onnx"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros((1, 1) + size),), buffer, dynamo=False, opset_version=17)
    path.write_bytes(buffer.getvalue())
    a, b = _strict(model, size), _strict(str(path), size)
    assert (a.output.output_size, a.output.rf, a.output.stride, a.output.input_axes) == (
        b.output.output_size, b.output.rf, b.output.stride, b.output.input_axes)
    for cell in np.ndindex(*a.output.output_size):
        assert a.rf_box(a.output.name, cell) == b.rf_box(b.output.name, cell)
        assert all(np.array_equal(p, q) for p, q in zip(a.support(a.output.name, cell), b.support(b.output.name, cell)))


class PlusItsTranspose(nn.Module):
    def forward(self, x):
        return x + x.transpose(2, 3)


def test_a_map_plus_its_transpose_is_no_box():
    """Cell (i, j) of ``x + x.T`` sees (i, j) and (j, i): no per-axis box; treated as global
    with a warning naming the op (strict raises)."""
    with pytest.warns(RFMapWarning, match="different orders"):
        a = rfmap.analyze(PlusItsTranspose(), input_size=(6, 6))
    assert a.output.global_context
    with pytest.raises(RFMapError, match="add.*different orders"):
        rfmap.analyze(PlusItsTranspose(), input_size=(6, 6), strict=True)


def test_engine_refuses_merging_axis_orders():
    from rfmap.core.graph import GraphBuilder
    from rfmap.core.layers import Permute, conv

    b = GraphBuilder("g", (6, 6))
    t = b.add("t", Permute((1, 0)), b.input)
    c = b.add("c", conv(3, padding=1), b.input)
    b.merge("sum", "add", t, c)
    with pytest.raises(RFMapError, match="layer 'sum'.*different orders"):
        rfmap.analyze(b.build())


SPEC = """
name: transposed
input_size: [10, 14]
layers:
  - {name: a, op: conv, kernel: [3, 1], padding: [1, 0]}
  - {name: t, op: permute, axes: [1, 0]}
  - {name: b, op: conv, kernel: [1, 5], stride: [1, 2], padding: [0, 2]}
  - {name: c, op: conv, kernel: 3, stride: 2}
"""


def test_spec_permute_and_its_twin(tmp_path):
    """A spec file's ``permute`` equals the PyTorch model written with ``transpose``, and the
    twin built from the spec (``x.permute`` of the spatial dims) has the gradient it claims."""
    from rfmap.erf.twin import to_torch
    from tests.probe import gradient_supports as probes

    path = tmp_path / "t.yaml"
    path.write_text(SPEC)
    spec = rfmap.analyze(str(path))

    class Same(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, (3, 1), padding=(1, 0))
            self.b = nn.Conv2d(1, 1, (1, 5), stride=(1, 2), padding=(0, 2))
            self.c = nn.Conv2d(1, 1, 3, stride=2)

        def forward(self, x):
            return self.c(self.b(self.a(x).transpose(2, 3)))

    module = rfmap.analyze(Same(), input_size=(10, 14))
    assert [(r.output_size, r.rf, r.stride, r.input_axes) for r in spec.layers[1:] if r.op != "permute"] == [
        (r.output_size, r.rf, r.stride, r.input_axes) for r in module.layers[1:] if r.op != "permute"]
    twin = to_torch(spec.graph, (10, 14))
    cells = list(np.ndindex(*spec.output.output_size))
    for cell, probe in zip(cells, probes(twin, (10, 14), "c", cells)):
        assert [s.tolist() for s in spec.support("c", cell)] == [s.tolist() for s in probe.sets], cell


def test_bad_permute_spec_names_the_layer(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("input_size: [8, 8]\nlayers:\n  - {name: t, op: permute, axes: [0, 0]}\n")
    with pytest.raises(RFMapError, match="not a permutation"):
        rfmap.analyze(str(path))


def test_table_json_and_mapper_say_so():
    from rfmap.mapping import Mapper
    from rfmap.render import render

    a = _strict(positive(SwapThenStride()), (8, 16))
    text = render(a, color=False)
    assert "axes are the input's W, H" in text and "t axes in another order" in text
    assert a.to_dict()["layers"][-1]["input_axes"] == [1, 0]
    assert "input_axes" not in a.to_dict()["layers"][0]  # the first conv keeps the input's order
    with pytest.raises(RFMapError, match="transposed"):
        Mapper.from_analysis(a, a.output.name)


def test_closed_form_erf_follows_the_axes():
    """The closed-form sigma of the transposed net equals the plain net's with kernels swapped
    back (per input axis)."""
    from rfmap.erf import closed_form_sigma

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, (3, 1), padding=(1, 0))
            self.c = nn.Conv2d(1, 1, (5, 3), padding=(2, 1))  # (W, H) kernel (3, 5) seen from the image

        def forward(self, x):
            return self.c(self.a(x))

    class Swapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, (3, 1), padding=(1, 0))
            self.c = nn.Conv2d(1, 1, (3, 5), padding=(1, 2))

        def forward(self, x):
            return self.c(self.a(x).transpose(2, 3))

    plain = closed_form_sigma(rfmap.analyze(Plain(), input_size=(20, 30)))
    swapped = closed_form_sigma(rfmap.analyze(Swapped(), input_size=(20, 30)))
    assert swapped == pytest.approx(plain) and plain[0] != pytest.approx(plain[1])


def test_anchors_and_crops_refuse_transposed_maps(tmp_path):
    """Anchors are laid on a map in the image's (H, W) order, and a crop aligns maps held in
    one order: a transposed layer gets a clear error naming it."""
    from rfmap.anchors import analyze_anchors
    from rfmap.mapping.crop import crop_offset

    (tmp_path / "net.yaml").write_text(
        "name: net\ninput: [64, 48]\nlayers:\n"
        "  - {name: c1, op: conv, kernel: 3, stride: 2, padding: 1}\n"
        "  - {name: t, op: permute, axes: [1, 0]}\n"
        "  - {name: c2, op: conv, kernel: 3, stride: 2, padding: 1}\n"
    )
    (tmp_path / "anchors.yaml").write_text(
        "network: net.yaml\nlevels:\n  - {layer: c2, min_size: 16, max_size: 32, aspect_ratios: [2], flip: false}\n"
    )
    with pytest.raises(RFMapError, match="level .*'c2' holds the image's axes transposed"):
        analyze_anchors(tmp_path / "anchors.yaml")
    with pytest.raises(RFMapError, match="'c1' and 'c2' hold the image's axes in different orders"):
        crop_offset(str(tmp_path / "net.yaml"), "c1", "c2")


class GateThenTranspose(nn.Module):
    """A squeeze-excitation gate (1 cell) computed before the transpose, first in the product
    with the transposed map, then a skip add with that map: the merges take the transposed
    map's order (the gate's one cell is the same in either)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, (3, 1), bias=False)
        self.b = nn.Conv2d(1, 1, (1, 3), padding=(0, 1), bias=False)

    def forward(self, x):
        c = self.a(x)
        y = c.transpose(2, 3)
        gated = torch.sigmoid(c.mean((2, 3), keepdim=True)) * y
        return self.b(gated) + y


def test_a_global_gate_takes_the_maps_order():
    size = (9, 6)
    model = positive(GateThenTranspose())
    a = _strict(model, size)
    out = a.output
    assert out.input_axes == (1, 0) and out.output_size == (6, 7)
    cells = list(np.ndindex(*out.output_size))
    for cell, probe in zip(cells, gradient_supports(Outputs(model), size, "out", cells)):
        assert [s.tolist() for s in a.support(out.name, cell)] == [s.tolist() for s in probe.sets], cell
    # through the gate every cell sees the whole image; its box also reaches the padding row
    # of the second conv (unclipped), which runs along H
    assert tuple(a.rf_box(out.name, (0, 0))) == (-1, 0, 8, 5)
    # without the gate: cell (2, 3) is column 2 and rows 2..6 (conv b's taps 2..4 of the
    # transposed map, each reading 3 rows)
    a_local = rfmap.analyze(model, input_size=size, exclude_global=True)
    assert tuple(a_local.rf_box(out.name, (2, 3))) == (2, 2, 6, 2)
