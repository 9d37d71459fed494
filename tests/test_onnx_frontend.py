"""ONNX front end: hand-built graphs (onnx.helper) and models exported from PyTorch."""

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rfmap  # noqa: E402
from rfmap import RFMapError, RFMapWarning  # noqa: E402
from rfmap.core.graph import GraphBuilder  # noqa: E402
from rfmap.core.layers import Conv, ConvTranspose, Pad, Upsample  # noqa: E402
from rfmap.frontends.onnx import from_onnx  # noqa: E402


def table(analysis):
    """The numbers of a table, without names."""
    return [(r.op != "input", r.output_size, r.stride, r.rf, r.padding, r.center0) for r in analysis.layers if r.op not in ("relu", "pointwise", "batchnormalization")]


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def test_conv_pool_auto_pad_resize_slice_concat():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["a"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], ceil_mode=1),
        helper.make_node("Conv", ["p", "w2"], ["b"], name="conv2", kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("Conv", ["p", "w2"], ["c"], name="conv3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["b", "c"], ["d"], name="cat", axis=1),
        helper.make_node("Resize", ["d", "", "scales"], ["e"], name="up", mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Slice", ["e", "starts", "ends", "axes", "steps"], ["f"], name="crop"),
        helper.make_node("Pad", ["f", "pads"], ["g"], name="pad", mode="edge"),
        helper.make_node("GlobalAveragePool", ["g"], ["h"], name="gap"),
    ]
    inits = [
        numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1"),
        numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w2"),
        const("scales", [1, 1, 2, 2], np.float32),
        const("starts", [1, 0]),
        const("ends", [2**63 - 1, 9]),
        const("axes", [2, 3]),
        const("steps", [1, 2]),
        const("pads", [0, 0, 1, 2, 0, 0, 1, 0]),
    ]
    m = model(nodes, [tensor("x", [1, 3, 33, 40])], [tensor("h", [1, 8, 1, 1])], inits)
    a = rfmap.analyze(from_onnx(m))

    b = GraphBuilder("ref", (33, 40))
    x = b.add("conv1", Conv(3, 2, "same_upper"), b.input)
    x = b.add("pool1", Conv(3, 2, ((1, 1), (0, 2)), ceil_mode=True, op="maxpool"), x)
    y = b.add("conv2", Conv(3, 1, 2, 2), x)
    z = b.add("conv3", Conv(3, 1, 1), x)
    x = b.merge("cat", "concat", y, z)
    x = b.add("up", Upsample(scale_factor=2), x)
    x = b.layer("crop", "crop", x, start=(1, 0), stop=(None, 9), step=(1, 2))
    x = b.add("pad", Pad(((1, 1), (2, 0)), "replicate"), x)
    b.layer("gap", "global", x)
    ref = rfmap.analyze(b.build())
    assert table(a) == table(ref)
    assert [r.name for r in a.layers if r.op != "relu"] == [r.name for r in ref.layers]
    assert a.layer("crop").output_size == ref.layer("crop").output_size


def test_nhwc_transposes_from_converters():
    # tf2onnx style: NHWC input -> Transpose to NCHW -> Conv -> Transpose back
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], name="conv", kernel_shape=[5, 3], strides=[1, 2], pads=[2, 1, 2, 1]),
        helper.make_node("Transpose", ["c"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ]
    w = numpy_helper.from_array(np.ones((2, 3, 5, 3), np.float32), "w")
    m = model(nodes, [tensor("x", [1, 20, 30, 3])], [tensor("y", [1, 20, 15, 2])], [w])
    a = rfmap.analyze(from_onnx(m))
    assert a.input_size == (20, 30)
    assert a.output.rf == (5, 3) and a.output.output_size == (20, 15)


def test_dynamic_input_needs_size_and_unsupported_ops_warn():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("MysteryOp", ["a"], ["b"], name="mystery", domain="custom"),
    ]
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    m = model(nodes, [tensor("x", [1, 3, "H", "W"])], [tensor("b", None)], [w])
    m.opset_import.append(helper.make_opsetid("custom", 1))
    with pytest.raises(RFMapError, match="dynamic spatial sizes: give an input size"):
        from_onnx(m)
    with pytest.raises(RFMapError, match="dynamic spatial sizes: give an input size"):
        rfmap.analyze(m)
    with pytest.warns(RFMapWarning, match=r"node 'mystery' \(MysteryOp\)"):
        g = from_onnx(m, (64, 48))
    assert rfmap.analyze(g, (64, 48)).output.rf == (3, 3)
    assert any("MysteryOp" in n for n in g.notes)
    with pytest.raises(RFMapError, match=r"unsupported node 'mystery' \(MysteryOp\)"):
        from_onnx(m, (64, 48), strict=True)


def test_bad_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(RFMapError, match="cannot read ONNX file"):
        rfmap.analyze(str(bad), 32)


torch = pytest.importorskip("torch")


class Tiny(torch.nn.Module):
    """Residual add, dilation, concat, transposed conv, F.pad, ceil-mode pool, global head."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.c3 = nn.Conv2d(8, 8, 3, 1, 2, dilation=2)
        self.up = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        F = torch.nn.functional
        y = torch.relu(self.c1(x))
        z = torch.cat([self.c2(y) + self.c3(y), y], 1)
        u = F.pad(self.up(z), (1, 0, 2, 1))
        u = F.max_pool2d(u, 3, 2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


def export(module, shape):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(shape), f, dynamo=False, opset_version=17)
    return onnx.load_from_string(f.getvalue())


def test_exported_pytorch_model_matches_hand_built_graph(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(export(Tiny(), (1, 3, 32, 48)), str(path))
    a = rfmap.analyze(str(path))
    b = GraphBuilder("ref", (32, 48))
    y = b.add("c1", Conv(3, 2, 1), b.input)
    s = b.merge("add", "add", b.add("c2", Conv(3, 1, 1), y), b.add("c3", Conv(3, 1, 2, 2), y))
    z = b.merge("cat", "concat", s, y)
    u = b.add("pad", Pad(((2, 1), (1, 0))), b.add("up", ConvTranspose(4, 2, 1), z))
    u = b.add("pool", Conv(3, 2, 0, ceil_mode=True, op="maxpool"), u)
    b.layer("gap", "global", u)
    ref = rfmap.analyze(b.build())
    got = [(r.output_size, r.stride, r.rf, r.padding) for r in a.layers if r.op not in ("relu", "flatten", "gemm")]
    want = [(r.output_size, r.stride, r.rf, r.padding) for r in ref.layers]
    assert got == want
    # the same file at another input size (the file's size is only a default)
    assert rfmap.analyze(str(path), (64, 64)).layer("/c1/Conv").output_size == (32, 32)


def test_a_file_with_recorded_shapes_is_analyzed_at_another_size():
    # exporters record every shape at the export size (value_info and the outputs); at
    # another input size those records are stale and must not win over the real sizes
    w = const("w", np.ones((4, 3, 3, 3)), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Mul", ["c", "g"], ["y"])]
    m = model(nodes, [tensor("x", [1, 3, 64, 64])], [tensor("y", [1, 4, 32, 32])], [w])
    m.graph.value_info.extend([tensor("c", [1, 4, 32, 32]), tensor("g", [1, 4, 1, 1])])
    assert rfmap.analyze(from_onnx(m)).output.output_size == (32, 32)
    a = rfmap.analyze(from_onnx(m, (128, 96)))
    assert a.output.output_size == (64, 48) and a.layer("c").rf == (3, 3)
