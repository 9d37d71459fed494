"""Fuzzing the ONNX front end: small valid models, mutated, read and analyzed.

Mutations are what broken exporters and hostile files contain: attributes missing, of the
wrong type or length, negative, huge or given as tensors; initializers with an unknown data
type, raw data of the wrong size or missing (a dangling input); inputs renamed; control flow
(``Loop`` of 2^62 trips, ``If``, ``Scan``); constant bombs (``ConstantOfShape`` of
40000 x 40000); input shapes of rank 2 or 6, zero, negative or huge; one name shared by
every node; unknown opsets; and the serialized bytes cut or flipped.  Each case ends in a
:class:`~rfmap.core.graph.Graph` (then analyzed and queried) or one
:class:`rfmap.RFMapError`, within the limits of :mod:`tests.fuzzing`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from fuzzing import api_case, fuzz_settings, profiles  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rfmap.errors import RFMapError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::rfmap.RFMapWarning")


def _tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def base_models() -> list:
    """Three small models that read: a plain CNN with resize, slice, pad and concat; an NHWC
    graph; a decoder with a transposed convolution and a residual add."""
    w = lambda name, shape: numpy_helper.from_array(np.ones(shape, np.float32), name)  # noqa: E731
    a = helper.make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], ceil_mode=1),
        helper.make_node("Conv", ["p", "w2"], ["b"], name="conv2", kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("Concat", ["b", "p"], ["d"], name="cat", axis=1),
        helper.make_node("Resize", ["d", "", "scales"], ["e"], name="up", mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor"),
        helper.make_node("Slice", ["e", "starts", "ends", "axes", "steps"], ["f"], name="crop"),
        helper.make_node("Pad", ["f", "pads"], ["g"], name="pad", mode="edge"),
        helper.make_node("GlobalAveragePool", ["g"], ["h"], name="gap"),
    ], "cnn", [_tensor("x", [1, 3, 33, 40])], [_tensor("h", [1, 8, 1, 1])], initializer=[
        w("w1", (4, 3, 3, 3)), w("w2", (4, 4, 3, 3)), _const("scales", [1, 1, 2, 2], np.float32), _const("starts", [1, 0]),
        _const("ends", [2**63 - 1, 9]), _const("axes", [2, 3]), _const("steps", [1, 2]), _const("pads", [0, 0, 1, 2, 0, 0, 1, 0]),
    ])
    b = helper.make_graph([
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], name="conv", kernel_shape=[5, 3], strides=[1, 2], pads=[2, 1, 2, 1]),
        helper.make_node("AveragePool", ["c"], ["q"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["q"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ], "nhwc", [_tensor("x", [1, 24, 20, 3])], [_tensor("y", None)], initializer=[w("w", (4, 3, 5, 3))])
    c = helper.make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], name="down", kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["a", "w2"], ["u"], name="deconv", kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["u", "x"], ["s"], name="sum"),
        helper.make_node("Shape", ["s"], ["shp"], name="shape"),
        helper.make_node("Reshape", ["s", "shp"], ["r"], name="reshape"),
        helper.make_node("Flatten", ["r"], ["fl"], name="flatten", axis=1),
    ], "decoder", [_tensor("x", [1, 3, 16, 16])], [_tensor("fl", None)], initializer=[w("w1", (3, 3, 4, 4)), w("w2", (3, 3, 4, 4))])
    return [helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]) for g in (a, b, c)]


BASES = [m.SerializeToString() for m in base_models()]
HOSTILE_INTS = [[], [1], [0, 0], [-1, -1], [1, 2, 3, 4, 5, 6, 7], [2**40, 2**40], [2**62, 1], [100000000000, 2], [0]]


def mutate_attribute(rng: random.Random, node) -> None:
    attrs = list(node.attribute)
    kind = rng.choice(["delete", "ints", "float", "string", "tensor", "unknown", "int"])
    if kind == "delete":
        if attrs:
            node.attribute.remove(rng.choice(attrs))
        return
    name = rng.choice([a.name for a in attrs] + ["kernel_shape", "pads", "strides", "perm", "axis", "mode", "dilations"])
    for a in [a for a in attrs if a.name == name]:
        node.attribute.remove(a)
    value = {
        "ints": lambda: rng.choice(HOSTILE_INTS),
        "float": lambda: rng.choice([1.5, float("nan"), float("inf"), 0.0]),
        "string": lambda: rng.choice(["SAME_UPPER", "NOTSET", "bogus", "", "\u202e"]),
        "tensor": lambda: numpy_helper.from_array(np.array(rng.choice([[3, 3], [1], [2**40]]), np.int64)),
        "unknown": lambda: rng.choice([[1, 2], 7, "x"]),
        "int": lambda: rng.choice([0, 1, -1, 2**62, 5]),
    }[kind]()
    typed = {"attr_type": onnx.AttributeProto.INTS} if kind == "ints" else {}
    node.attribute.append(helper.make_attribute(name if kind != "unknown" else "bogus_attr", value, **typed))


def mutate_initializer(rng: random.Random, graph) -> None:
    if not graph.initializer:
        return
    t = rng.choice(list(graph.initializer))
    kind = rng.choice(["dtype", "raw", "dims", "remove"])
    if kind == "dtype":
        t.data_type = rng.choice([0, 99, TensorProto.STRING, TensorProto.COMPLEX128, TensorProto.BFLOAT16])
    elif kind == "raw":
        try:  # an earlier mutation may have left the tensor unreadable: then start from nothing
            raw = t.raw_data or numpy_helper.to_array(t).tobytes()
        except (ValueError, TypeError):
            raw = b""
        t.ClearField("int64_data")
        t.ClearField("float_data")
        t.raw_data = raw[: rng.randrange(len(raw) + 1)] if rng.random() < 0.7 else raw + b"\x00" * 3
    elif kind == "dims":
        del t.dims[:]
        t.dims.extend(rng.choice([[], [0], [2**40], [-1], [1, 1, 1, 1, 1, 1, 1]]))
    else:
        graph.initializer.remove(t)


def insert_bomb(rng: random.Random, graph) -> None:
    """Control flow and constant bombs that feed the network's path."""
    kind = rng.choice(["constant_of_shape", "loop", "if", "scan", "range", "expand"])
    first = graph.node[0].output[0]
    if kind == "constant_of_shape":
        graph.initializer.append(_const("bomb_shape", [1, 1, 40000, 40000]))
        nodes = [helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"], name="bomb")]
    elif kind == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
            "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
            initializer=[_const("one", [1.0], np.float32)],
        )
        graph.initializer.extend([_const("trips", 2**62), _const("cond", True, np.bool_), _const("v0", [0.0], np.float32)])
        nodes = [helper.make_node("Loop", ["trips", "cond", "v0"], ["bomb"], name="loop", body=body)]
    elif kind == "if":
        then = helper.make_graph([helper.make_node("Constant", [], ["t"], value=_const("tv", [1.0], np.float32))], "then", [],
                                 [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
        graph.initializer.append(_const("c", True, np.bool_))
        nodes = [helper.make_node("If", ["c"], ["bomb"], name="if", then_branch=then, else_branch=then)]
    elif kind == "scan":
        body = helper.make_graph([helper.make_node("Identity", ["s_in"], ["s_out"])], "body",
                                 [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1])],
                                 [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1])])
        graph.initializer.append(_const("s0", [0.0], np.float32))
        nodes = [helper.make_node("Scan", ["s0"], ["bomb"], name="scan", body=body, num_scan_inputs=0)]
    elif kind == "range":
        graph.initializer.extend([_const("r0", 0.0, np.float32), _const("r1", 1e12, np.float32), _const("r2", 1.0, np.float32)])
        nodes = [helper.make_node("Range", ["r0", "r1", "r2"], ["bomb"], name="range")]
    else:
        graph.initializer.append(_const("eshape", [1, 1, 2**20, 2**20]))
        nodes = [helper.make_node("Expand", [first, "eshape"], ["bomb"], name="expand")]
    uses = rng.choice(["add", "mul", "ignored"])
    if uses != "ignored":
        nodes.append(helper.make_node(uses.capitalize(), [first, "bomb"], ["bombed"], name="use_bomb"))
        for node in graph.node[1:]:
            node.input[:] = ["bombed" if i == first else i for i in node.input]
    order = [graph.node[0], *nodes, *graph.node[1:]]
    del graph.node[:]
    graph.node.extend(order)


def mutate_input(rng: random.Random, graph) -> None:
    dims = graph.input[0].type.tensor_type.shape.dim
    kind = rng.choice(["value", "param", "rank"])
    if kind == "value" and dims:
        dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 2**40, 2**62, 7])
    elif kind == "param" and dims:
        dims[rng.randrange(len(dims))].dim_param = rng.choice(["H", "", "?"])
    else:
        graph.input[0].CopyFrom(_tensor(graph.input[0].name, rng.choice([[1, 3], [1, 3, 8, 8, 8, 8], [], [1]])))


def mutate(rng: random.Random, data: bytes) -> bytes:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    g = model.graph
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["attribute", "attribute", "initializer", "bomb", "input", "dangling", "names", "opset", "outputs"])
        node = rng.choice(list(g.node))
        if kind == "attribute":
            mutate_attribute(rng, node)
        elif kind == "initializer":
            mutate_initializer(rng, g)
        elif kind == "bomb":
            insert_bomb(rng, g)
        elif kind == "input":
            mutate_input(rng, g)
        elif kind == "dangling" and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(["nowhere", "", node.output[0] if node.output else "x"])
        elif kind == "names":
            for n in g.node:
                n.name = rng.choice(["same", "", "<script>", "\u202e"])
        elif kind == "opset":
            model.opset_import[0].version = rng.choice([1, 6, 99, 0])
        elif kind == "outputs":
            if rng.random() < 0.5:
                del g.output[:]
            else:
                g.output.append(_tensor("nowhere", None))
    out = model.SerializeToString()
    if rng.random() < 0.1:  # the bytes themselves
        k = rng.randrange(len(out) + 1)
        out = out[:k] if rng.random() < 0.5 else out[:k] + bytes([rng.randrange(256)]) + out[k + 1:]
    return out


def exercise(path, size) -> None:
    import rfmap
    from rfmap.frontends.onnx import from_onnx

    graph = api_case(from_onnx, str(path), size)
    if isinstance(graph, RFMapError):
        event("rejected when read")
        return
    analysis = api_case(rfmap.analyze, graph, size)
    if isinstance(analysis, RFMapError):
        event("rejected when analyzed")
        return
    event("analyzed")
    out = analysis.output
    api_case(analysis.rf_box, out.name, tuple(0 for _ in out.output_size))
    api_case(analysis.support, out.name, tuple(n // 2 for n in out.output_size))
    api_case(analysis.to_json)


@pytest.mark.parametrize("examples", profiles(300, 800))
def test_mutated_onnx_models(examples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")

    @fuzz_settings(examples)
    @given(base=st.integers(0, len(BASES) - 1), seed=st.integers(0, 2**32 - 1),
           size=st.sampled_from([None, None, 32, (20, 24), 0, 2**41, (7,)]))
    def case(base, seed, size):
        if os.environ.get("RFMAP_FUZZ_LOG"):  # what ran last, should the process die
            with open(os.environ["RFMAP_FUZZ_LOG"], "a") as fh:
                fh.write(f"{base} {seed} {size!r}\n")
        path = folder / "model.onnx"
        path.write_bytes(mutate(random.Random(seed), BASES[base]))
        exercise(path, size)

    case()


def test_the_bases_read():
    """The mutations start from models that read (so they reach the converters)."""
    import rfmap
    from rfmap.frontends.onnx import from_onnx

    for data in BASES:
        model = onnx.ModelProto()
        model.ParseFromString(data)
        assert len(rfmap.analyze(from_onnx(model)).layers) >= 3
