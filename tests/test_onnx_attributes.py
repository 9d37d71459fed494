"""Unknown or out-of-range ONNX attribute values raise one RFMapError naming the node --
never a silent default (Resize's are in tests/test_onnx_resize.py)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rfmap import RFMapError  # noqa: E402
from rfmap.frontends.onnx import from_onnx  # noqa: E402


def one_node(op, inputs=(), inits=None, out_shape=(1, 4, 6, 8), opset=17, **attrs):
    """``x [1, 4, 6, 8] -> op(x, *inputs) -> y``; ``inits`` name constant inputs.  The output's
    shape is declared, so that the converter runs even where onnx's shape inference rejects
    the node (it raises then too: see the last test)."""
    inits = inits or {}
    node = helper.make_node(op, ["x", *inputs], ["y"], name="bad", **attrs)
    g = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None if out_shape is None else list(out_shape))],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


W = {"w": np.ones((4, 4, 3, 3), np.float32)}
CASES = {
    "conv auto_pad": (one_node("Conv", ["w"], W, auto_pad="SAME"), "auto_pad 'SAME' is not one of"),
    "conv negative pads": (one_node("Conv", ["w"], W, kernel_shape=[3, 3], pads=[-1, 0, 0, 0]), "pads must be >= 0"),
    "pool ceil_mode": (one_node("MaxPool", kernel_shape=[2, 2], ceil_mode=2), "ceil_mode must be 0 or 1"),
    "pool count_include_pad": (one_node("AveragePool", kernel_shape=[2, 2], count_include_pad=3),
                               "count_include_pad must be 0 or 1"),
    "pad mode": (one_node("Pad", ["pads"], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1])}, mode="replicate"),
                 "mode 'replicate' is not one of constant, reflect, edge, wrap"),
    "pad axes": (one_node("Pad", ["pads", "", "axes"], {"pads": np.array([1, 1]), "axes": np.array([5])}, opset=18),
                 "axes \\[5\\] is out of range"),
    "depth_to_space mode": (one_node("DepthToSpace", blocksize=2, mode="RCD"), "mode 'RCD' is not one of DCR, CRD"),
    "softmax axis": (one_node("Softmax", axis=4), "axis 4 is out of range for a rank-4"),
    "layer norm axis": (one_node("LayerNormalization", ["s"], {"s": np.ones(8, np.float32)}, axis=-5),
                        "axis -5 is out of range"),
    "lp norm p": (one_node("LpNormalization", p=3), "p must be 1 or 2"),
    "reduce keepdims": (one_node("ReduceMean", axes=[2], keepdims=2, opset=13), "keepdims must be 0 or 1"),
    "reduce axes": (one_node("ReduceMax", axes=[2, 7], opset=13), "axes \\[2, 7\\] is out of range"),
    "argmax axis": (one_node("ArgMax", axis=9), "axis 9 is out of range"),
    "concat axis missing": (one_node("Concat", ["x"]), "attribute axis is required"),
    "gather index": (one_node("Gather", ["i"], {"i": np.array(6)}, axis=2), "Gather indices \\[6\\] are out of range"),
    "slice axes": (one_node("Slice", ["s", "e", "a"], {"s": np.array([0]), "e": np.array([2]), "a": np.array([4])}),
                   "axes \\[4\\] is out of range"),
    "split axis": (one_node("Split", axis=-7), "axis -7 is out of range"),
    "group norm groups": (one_node("GroupNormalization", ["s", "b"], {"s": np.ones(4, np.float32), "b": np.ones(4, np.float32)},
                                   num_groups=3, opset=18), "num_groups must be a positive divisor of the 4 channels"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_attribute_raises_naming_the_node(case):
    model, message = CASES[case]
    with pytest.raises(RFMapError, match=f"node 'bad' \\([A-Za-z]+\\).*{message}"):
        from_onnx(model)


def test_gemm_flag_raises():
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="bad", transA=2)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                          initializer=[numpy_helper.from_array(np.ones((192, 5), np.float32), "w")])
    with pytest.raises(RFMapError, match="node 'bad' \\(Gemm\\).*transA must be 0 or 1"):
        from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_shape_inference_failures_say_why():
    model = one_node("Softmax", axis=4, out_shape=None)
    with pytest.raises(RFMapError, match="node 'bad' \\(Softmax\\).*not known statically \\(onnx shape inference: .*axis"):
        from_onnx(model)


def test_a_converter_error_names_the_pytorch_module_too():
    torch = pytest.importorskip("torch")
    import rfmap

    class Odd(torch.nn.Module):
        def forward(self, x):
            return x

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.odd = Odd()

        def forward(self, x):
            return self.odd(x)

    def convert(call):
        raise RFMapError("parameter k is negative")

    rfmap.register_op("odd_op", convert=convert, torch=[Odd])
    try:
        with pytest.raises(RFMapError, match="module 'odd' \\(Odd\\): parameter k is negative"):
            rfmap.analyze(Net(), (8, 8))
    finally:
        rfmap.core.registry.unregister_op("odd_op")
