"""The front ends agree: a zoo network and its PyTorch twin, and a PyTorch model and its ONNX
export, give the same tables (issue 3: "identical tables").

Node names differ between front ends (a twin's modules are numbered, ONNX names nodes
``/layer1/layer1.0/conv1/Conv``), so the comparison is (a) the output row, and (b) the
geometry of every layer, matched by module path where the front ends share one, or as the
set of distinct per-layer geometries otherwise.
"""

import io
import warnings

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import torch_models as tm  # noqa: E402

import rfmap  # noqa: E402
from rfmap.erf.twin import to_torch  # noqa: E402
from rfmap.frontends import zoo  # noqa: E402


def geometry(row):
    return (row.output_size, row.stride, row.rf, row.padding, row.center0)


class LastNode(torch.nn.Module):
    """A twin that returns its last node, as a user's model returns its output."""

    def __init__(self, twin, name):
        super().__init__()
        self.twin, self.name = twin, name

    def forward(self, x):
        return self.twin.node_output(x, self.name)


ZOO = [name for name in zoo.names() if name not in ("resnet101", "resnet152")]  # the deep ones add time only


@pytest.mark.parametrize("name", ZOO)
def test_zoo_and_its_pytorch_twin_give_the_same_table(name):
    graph = zoo.get(name)
    expected = rfmap.analyze(graph)
    twin = to_torch(graph, graph.input_size, channels=2, weights="positive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)
        got = rfmap.analyze(LastNode(twin, graph.output.name), graph.input_size)
    assert geometry(got.output) == geometry(expected.output)
    # the twin computes the output's ancestors only (SSD's other heads are side branches)
    ancestors = {graph.output.name}
    for node in reversed(graph.nodes):
        if node.name in ancestors:
            ancestors.update(node.inputs)
    want = {geometry(r) for r in expected.layers if r.name in ancestors}
    have = {geometry(r) for r in got.layers}
    assert want <= have
    # the twin adds steps of its own: an asymmetric padding (causal convs) is an F.pad before
    # the conv, a crop of H and W (the FCNs' Caffe crops) one slice per axis
    assert {r.op for r in got.layers if geometry(r) not in want} <= {"pad", "crop"}


FAMILIES = {
    "resnet50": (lambda: tm.resnet50(), 224),
    "inception": (lambda: tm.InceptionNet(), 96),
    "mobilenetv2": (lambda: tm.MobileNetV2Mini(), 96),
    "densenet": (lambda: tm.DenseNetMini(), 96),
    "unet": (lambda: tm.UNet(), 96),
    "fpn": (lambda: tm.FPN(), 128),
    "deeplab": (lambda: tm.DeepLabMini(), 97),
    "senet": (lambda: tm.SENet(), 64),
}


def onnx_path(name):
    """ONNX node name '/layer1/layer1.0/downsample/downsample.0/Conv' -> module path
    'layer1.0.downsample.0' (the exporter writes each scope relative to its parent)."""
    path, prev = "", None
    for seg in name.strip("/").split("/")[:-1]:
        if prev is not None and seg.startswith(prev + "."):
            base = path[: len(path) - len(prev)].rstrip(".")
            path = f"{base}.{seg}" if base else seg
        else:
            path = f"{path}.{seg}" if path else seg
        prev = seg
    return path or None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pytorch_model_and_its_onnx_export_give_the_same_table(family):
    build, size = FAMILIES[family]
    model = build().eval()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, first.in_channels, size, size), f, dynamo=False, opset_version=17)
        via_torch = rfmap.analyze(model, size)
        via_onnx = rfmap.analyze(onnx.load_from_string(f.getvalue()))
    assert geometry(via_onnx.output) == geometry(via_torch.output)
    torch_rows = {r.name: r for r in via_torch.layers}
    matched = 0
    for row in via_onnx.layers:
        if row.op != "conv":
            continue
        path = onnx_path(row.name)
        if path in torch_rows:
            assert geometry(row) == geometry(torch_rows[path]), (row.name, path)
            matched += 1
    convs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert matched >= 0.9 * convs, f"matched {matched} of {convs} convolutions by module path"
