"""``--input`` for sources of any rank: the source's number of spatial axes is read first
(a zoo entry's or spec file's default input size, an ONNX file's input rank), so
``--input 16000`` on a 1-D source and ``--input 8x64x64`` on a 3-D one mean what they say,
while ``3x512x512`` and ``1,3,512,512`` on a 2-D source still drop batch and channels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import assert_one_error, run

from rfmap.cli.common import source_rank

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper


def conv_model(dims, kernel, pads, name="conv") -> onnx.ModelProto:
    """One Conv over an input of shape ``dims`` (N, C, spatial...); ``None`` is dynamic."""
    spatial = len(dims) - 2
    w = numpy_helper.from_array(np.ones((1, 1, *(kernel,) * spatial), dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name=name, kernel_shape=[kernel] * spatial, pads=pads)
    shape = [d if d is not None else f"d{i}" for i, d in enumerate(dims)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", [x], [y], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def write(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def onnx_file(tmp_path):
    def save(name, model):
        path = tmp_path / name
        onnx.save(model, str(path))
        return str(path)

    return save


SPEC_3D = "name: c3d\ninput: [16, 112, 112]\nlayers:\n  - {name: c1, op: conv, kernel: 3, stride: [1, 2, 2], padding: 1}\n"


def summary_json(capsys, *argv):
    status, out, err = run(capsys, "summary", *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def test_source_rank(write, onnx_file):
    assert source_rank("vgg16") == 2 and source_rank("wavenet") == 1 and source_rank("fcn8s") == 2
    assert source_rank(write("c3d.yaml", SPEC_3D)) == 3
    assert source_rank(write("free.yaml", "layers:\n  - {name: c, op: conv, kernel: 3}\n")) is None
    assert source_rank(write("bad.yaml", "layers: [")) is None  # its error comes when it is analyzed
    assert source_rank(onnx_file("c3.onnx", conv_model([1, 1, 16, 32, 32], 3, [1] * 6))) == 3
    assert source_rank(onnx_file("c1.onnx", conv_model([1, 1, None], 5, [2, 2]))) == 1
    assert source_rank(write("junk.onnx", "not a model")) is None
    assert source_rank("torchvision:resnet50") is None  # traced at the size given: 2-D rules


@pytest.mark.parametrize(
    "source, text, expected",
    [
        ("wavenet", "16000", [16000]),
        ("wavenet", "1x1x16000", [16000]),
        ("tcn", "1,300", [300]),
        ("vgg16", "3x512x512", [512, 512]),
        ("vgg16", "1,3,512,512", [512, 512]),
        ("vgg16", "224", [224, 224]),
        ("fcn8s", "3x333x480", [333, 480]),
    ],
)
def test_zoo_sources(capsys, source, text, expected):
    data = summary_json(capsys, source, "--input", text)
    assert data["input_size"] == expected


def test_three_d_spec(capsys, write):
    path = write("c3d.yaml", SPEC_3D)
    for text in ("8x64x64", "1x1x8x64x64", "1,8,64,64"):
        data = summary_json(capsys, path, "--input", text)
        assert data["input_size"] == [8, 64, 64] and data["layers"][0]["output_size"] == [8, 32, 32], text
    assert summary_json(capsys, path, "--input", "20")["input_size"] == [20, 20, 20]
    assert_one_error(*run(capsys, "summary", path, "--input", "64x64"), "--input", "3 axes")


def test_three_d_onnx_accepts_input(capsys, onnx_file):
    static = onnx_file("c3.onnx", conv_model([1, 1, 16, 32, 32], 3, [1] * 6))
    dynamic = onnx_file("c3d.onnx", conv_model([1, 1, None, None, None], 3, [0] * 6))
    data = summary_json(capsys, static, "--input", "8x64x64")
    assert data["input_size"] == [8, 64, 64] and data["layers"][-1]["output_size"] == [8, 64, 64]
    assert summary_json(capsys, static)["input_size"] == [16, 32, 32]
    data = summary_json(capsys, dynamic, "--input", "1x1x8x64x40")
    assert data["input_size"] == [8, 64, 40] and data["layers"][-1]["output_size"] == [6, 62, 38]
    assert summary_json(capsys, dynamic, "--input", "9")["input_size"] == [9, 9, 9]


def test_one_d_onnx_accepts_a_length(capsys, onnx_file):
    path = onnx_file("c1.onnx", conv_model([1, 1, None], 5, [2, 2]))
    data = summary_json(capsys, path, "--input", "16000")
    assert data["input_size"] == [16000] and data["layers"][-1]["output_size"] == [16000]
    assert data["layers"][-1]["rf"] == [5]
    status, out, _ = run(capsys, "cell", path, "conv", "--at", "0", "--input", "100", "--format", "json")
    assert status == 0 and json.loads(out)["box"] == [-2, 2]
