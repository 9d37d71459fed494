"""Issue 12, one test per report: ONNX files are data.

Constant folding evaluates only small, bounded subgraphs (``Loop``/``If``/``Scan`` never, a
size budget for every folded constant): a 154-byte file that asks for a 40000 x 40000
constant and a 301-byte file with a ``Loop`` of 2^62 trips end in seconds, in bounded
memory (a subprocess with an address-space limit).  Malformed nodes are one RFMapError
naming the node; a small ViT's export reads; 16,000 nodes sharing one name get distinct
names in linear time.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from fuzzing import bounded, run_limited  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rfmap  # noqa: E402
from rfmap.errors import RFMapError  # noqa: E402
from rfmap.frontends.onnx import from_onnx  # noqa: E402


def tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def model(nodes, inputs, outputs, inits=(), opset=17):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)])


def constant_bomb():
    """``y = x + ConstantOfShape([1, 1, 40000, 40000])``: 6.4 GB if it were folded."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
    return model(nodes, [tensor("x", [1, 1, 40000, 40000])], [tensor("y", None)], [const("shape", [1, 1, 40000, 40000])])


def loop_bomb():
    """``y = x * Loop(2^62 trips of v + 1)``: never ends if it were evaluated."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("v_in", [1])],
        [tensor("cond_out", [], TensorProto.BOOL), tensor("v_out", [1])], initializer=[const("one", [1.0], np.float32)],
    )
    nodes = [helper.make_node("Loop", ["trips", "cond", "v0"], ["v"], body=body), helper.make_node("Mul", ["x", "v"], ["y"])]
    inits = [const("trips", 2**62), const("cond", True, np.bool_), const("v0", [0.0], np.float32)]
    return model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor("y", None)], inits)


@pytest.mark.parametrize("make, size", [(constant_bomb, 400), (loop_bomb, 301)])
def test_bombs_end_in_bounded_time_and_memory(tmp_path, make, size):
    path = tmp_path / "bomb.onnx"
    data = make().SerializeToString()
    assert len(data) <= size + 40  # the reports' files were 154 and 301 bytes
    path.write_bytes(data)
    with bounded(seconds=60, memory=1 << 30):
        try:
            a = rfmap.analyze(path)
            assert a.output.output_size in ((40000, 40000), (16, 16))
        except RFMapError:
            pass
    proc = run_limited(["summary", str(path), "--format", "json"], memory=1 << 30, seconds=120)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr


def test_folding_never_evaluates_control_flow_or_oversized_constants():
    from rfmap.frontends.onnx.fold import MAX_ELEMENTS, fold_constants

    consts = {t.name: numpy_helper.to_array(t) for t in loop_bomb().graph.initializer}
    with bounded(seconds=10):
        fold_constants(loop_bomb().graph, consts, {})
    assert "v" not in consts
    consts = {t.name: numpy_helper.to_array(t) for t in constant_bomb().graph.initializer}
    fold_constants(constant_bomb().graph, consts, {})
    assert "big" not in consts and all(v.size <= MAX_ELEMENTS for v in consts.values())


W = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")


def conv_model(node, inits=(W,)):
    return model([node], [tensor("x", [1, 3, 16, 20])], [tensor("y", None)], inits)


def bad_initializer(change):
    t = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    change(t)
    return conv_model(helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3]), [t])


@pytest.mark.parametrize("m, message", [
    (conv_model(helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1])), "node 'conv' \\(Conv\\)"),
    (conv_model(helper.make_node("MaxPool", ["x"], ["y"], name="pool")), "node 'pool' \\(MaxPool\\)"),
    (conv_model(helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=const("k", [3, 3]))), "node 'conv'"),
    (bad_initializer(lambda t: setattr(t, "data_type", 99)), "initializer 'w' cannot be read"),
    (bad_initializer(lambda t: setattr(t, "raw_data", t.raw_data[:10])), "initializer 'w' cannot be read"),
    (conv_model(helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", kernel_shape=[100000000000, 1], strides=[2, 1])),
     "100,000,000,000 taps is beyond rfmap's limit"),
])
def test_malformed_nodes_are_one_error_naming_them(m, message):
    with bounded(seconds=30, memory=1 << 30), pytest.raises(RFMapError, match=message):
        rfmap.analyze(from_onnx(m))


@pytest.mark.parametrize("perm", [None, [0, 1, 3, 2]])
def test_swapped_spatial_axes_are_followed(perm):
    """ONNX's default perm reverses every dim; [0, 1, 3, 2] swaps H and W: the output tensor
    holds W before H, and so does rfmap's output row (20x16, its axes the input's W and H),
    silently and under strict alike; its boxes stay in the image's (H, W) order."""
    kwargs = {} if perm is None else {"perm": perm}
    m = conv_model(helper.make_node("Transpose", ["x"], ["y"], name="t", **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("error", rfmap.RFMapWarning)
        a = rfmap.analyze(from_onnx(m, strict=True))
    assert (a.output.name, a.output.output_size, a.output.input_axes) == ("t", (20, 16), (1, 0))
    assert tuple(a.rf_box("t", (19, 3))) == (3, 19, 3, 19)  # cell (w, h) sees pixel (h, w)
    m = conv_model(helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 2, 3, 1]))  # NHWC keeps H before W
    with warnings.catch_warnings():
        warnings.simplefilter("error", rfmap.RFMapWarning)
        assert rfmap.analyze(from_onnx(m)).output.input_axes is None


def test_huge_geometry_attributes_are_refused_before_shape_inference():
    """A MaxPool kernel of 2**62 made onnx's shape inference fail a C++ assertion downstream
    (the process aborted)."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2**62, 1]),
             helper.make_node("Slice", ["p", "s", "e", "a"], ["y"], name="crop")]
    m = model(nodes, [tensor("x", [1, 3, 16, 20])], [tensor("y", None)], [const("s", [1]), const("e", [9]), const("a", [2])])
    with pytest.raises(RFMapError, match=r"node 'pool' \(MaxPool\): kernel_shape \[4611686018427387904, 1\] is beyond"):
        from_onnx(m)


def test_a_small_vit_export_reads():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 4, 4)
            self.pos = nn.Parameter(torch.zeros(1, 16, 16))
            self.cls = nn.Parameter(torch.zeros(1, 1, 16))
            self.block = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
            return self.head(self.block(t)[:, 0])

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ViT().eval(), (torch.zeros(1, 3, 16, 16),), f, dynamo=False, opset_version=17)
        m = onnx.load_from_string(f.getvalue())
        a = rfmap.analyze(from_onnx(m))
        t = rfmap.analyze(ViT().eval(), 16)
    assert a.output.output_size == t.output.output_size == (1, 1)
    assert a.output.rf == t.output.rf == (16, 16)
    assert a.output.global_context and t.output.global_context


def test_16000_nodes_sharing_one_name():
    """Renaming was quadratic (65 s); names stay distinct.  (Time: benchmarks/bench_scale.py.)"""
    n = 16000
    nodes = [helper.make_node("Relu", [f"t{k}"], [f"t{k + 1}"], name="same") for k in range(n)]
    nodes.insert(0, helper.make_node("Conv", ["x", "w"], ["t0"], name="same", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    m = model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor(f"t{n}", None)], [W])
    with bounded(seconds=300):
        g = from_onnx(m)
    names = [node.name for node in g.nodes]
    assert len(names) == len(set(names)) and len(names) >= 2


@pytest.mark.parametrize("kernel", [18, 2**40])
def test_a_pool_larger_than_its_input_before_a_slice_does_not_abort(kernel):
    """onnx 1.23's shape inference fails a C++ assertion (std::clamp) in a Slice after a pool
    whose kernel is larger than its input, which aborts the process: a real model analyzed
    at too small an --input does that.  rfmap runs the inference in a forked child."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[kernel, 1]),
             helper.make_node("Slice", ["p", "s", "e", "a"], ["y"], name="crop")]
    m = model(nodes, [tensor("x", [1, 3, 16, 20])], [tensor("y", None)], [const("s", [1]), const("e", [9]), const("a", [2])])
    with pytest.raises(RFMapError, match="shape inference crashed|kernel larger"):
        from_onnx(m)
