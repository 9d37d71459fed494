"""Constant folding and static shapes of an ONNX graph, bounded.

Exporters compute pads, scales, slice bounds and reshape targets with small subgraphs of
constants (``Shape`` -> ``Gather`` -> ``Concat``); folding them lets the converters read
those values.  Only small, bounded work is done: control flow (``Loop``, ``If``, ``Scan``)
and random ops are never evaluated, and a node is evaluated only when the size of its
output is known beforehand to stay within :data:`MAX_ELEMENTS` (``ConstantOfShape`` of
40000 x 40000 is left unevaluated, not allocated).  ``Shape`` of a tensor whose shape onnx's
shape inference knows is a constant too.  Evaluation uses onnx's reference evaluator.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, cast

import numpy as np

from rfmap.errors import RFMapError

#: the largest tensor folding may create (elements)
MAX_ELEMENTS = 1 << 22

NEVER = {"Loop", "If", "Scan", "SequenceMap", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
         "Multinomial", "Bernoulli", "Optional", "OptionalGetElement"}
#: ops whose output is never larger than their inputs together (or a small constant)
SMALL = {"Shape", "Size", "Gather", "GatherElements", "Slice", "Concat", "Squeeze", "Unsqueeze", "Cast", "CastLike",
         "Reshape", "Transpose", "Identity", "Constant", "Flatten", "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Neg", "Abs",
         "Floor", "Ceil", "Round", "Sqrt", "Min", "Max", "Sum", "Mean", "Equal", "Less", "Greater", "LessOrEqual",
         "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "ReduceMin", "ReduceMax", "ReduceSum", "ReduceProd",
         "ReduceMean", "Sign", "Clip", "Relu", "Split", "NonZero", "ArgMax", "ArgMin", "Trilu", "CumSum", "Reciprocal"}


def _elements(shape: Any) -> int | None:
    try:
        return math.prod(int(v) for v in shape)
    except (TypeError, ValueError, OverflowError):
        return None


def _predicted(node, values: list[np.ndarray]) -> int | None:
    """Elements of the output of a size-creating op, from its constant inputs."""
    op = node.op_type
    try:
        if op == "ConstantOfShape":
            return _elements(values[0].ravel())
        if op == "Range":
            start, limit, delta = (float(v) for v in values[:3])
            return max(math.ceil((limit - start) / delta), 0) if delta else None
        if op == "Expand":
            return _elements(np.broadcast_shapes(values[0].shape, tuple(int(v) for v in values[1].ravel())))
        if op == "Tile":
            return _elements(np.array(values[0].shape) * values[1].ravel())
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, IndexError):
        return None
    return None


def _evaluate(node: Any, inputs: dict[str, np.ndarray], opset: int | None) -> list[Any]:
    """One node run by onnx's reference evaluator at the model's opset (ops such as
    ``Unsqueeze`` changed their signature between opsets)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    # run() returns a list unless asked for intermediate results (its annotation allows both)
    if opset is None:
        return cast("list[Any]", ReferenceEvaluator(node).run(None, inputs))
    g = helper.make_graph([node], "fold", [helper.make_empty_tensor_value_info(i) for i in node.input if i],
                          [helper.make_empty_tensor_value_info(o) for o in node.output if o])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return cast("list[Any]", ReferenceEvaluator(model).run(None, inputs))


def fold_constants(graph, consts: dict[str, np.ndarray], shapes: dict[str, list[int]], opset: int | None = None) -> None:
    """Evaluate the nodes that depend on constants only, within the size budget."""

    for node in graph.node:
        if node.op_type == "Shape" and node.input and node.input[0] in shapes and node.output[0] not in consts:
            attrs = {a.name: a.i for a in node.attribute}
            shape = shapes[node.input[0]]
            consts[node.output[0]] = np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], dtype=np.int64)
            continue
        inputs = [i for i in node.input if i]
        if node.op_type in NEVER or node.domain not in ("", "ai.onnx") or not all(i in consts for i in inputs):
            continue
        if all(o in consts for o in node.output if o):
            continue
        known = [shapes.get(o) for o in node.output if o]
        sizes = [_elements(s) for s in known if s is not None]
        if len(sizes) == len(known):
            budget_ok = all(s is not None and s <= MAX_ELEMENTS for s in sizes)
        elif node.op_type in SMALL:
            budget_ok = sum(consts[i].size for i in inputs) <= MAX_ELEMENTS
        else:
            predicted = _predicted(node, [consts[i] for i in inputs])
            budget_ok = predicted is not None and predicted <= MAX_ELEMENTS
        if not budget_ok:
            continue
        try:
            outs = _evaluate(node, {i: consts[i] for i in inputs}, opset)
        except Exception:  # noqa: BLE001 - an op the evaluator lacks or rejects: leave it dynamic
            continue
        if any(v is None or np.asarray(v).dtype == object or np.asarray(v).size > MAX_ELEMENTS for v in outs):
            continue  # no value (an evaluator that returned None, strings) or too large: left dynamic
        consts.update({o: np.asarray(v) for o, v in zip(node.output, outs) if o})


def static_shapes(model, consts: dict[str, np.ndarray], input_name: str, spatial: tuple[int, ...],
                  input_size: tuple[int, ...] | None, known: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Shapes of the tensors that onnx's shape inference can tell, with the input's spatial
    axes (at tensor dims ``spatial``) set to ``input_size`` where given (so ``Shape`` of a
    feature map is a constant), and the shapes in ``known`` taken as given."""
    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    g = model.graph
    if known:
        kept = [vi for vi in g.value_info if vi.name not in known]
        del g.value_info[:]
        g.value_info.extend(kept)
        g.value_info.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in known.items())
    initialized = {t.name for t in g.initializer}
    for n in [n for n in g.node if n.output and all(o in consts for o in n.output if o)]:
        g.node.remove(n)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k not in initialized)
    if input_size is not None:
        for inp in g.input:
            if inp.name == input_name:
                dims = inp.type.tensor_type.shape.dim
                resized = any(dims[a].dim_value != int(n) for a, n in zip(spatial, input_size))
                if dims:
                    dims[0].dim_value = 1
                for a, n in zip(spatial, input_size):
                    dims[a].dim_value = int(n)
                if resized:  # the shapes the exporter recorded are those of another input size
                    _forget_recorded_shapes(g, known or {})
    return _isolated(_infer, model)


def _forget_recorded_shapes(g, known: dict[str, list[int]]) -> None:
    """Drop the intermediate and output shapes a file records (they hold for the size it was
    exported at, and inference keeps a recorded shape where it disagrees), except ``known``."""
    kept = [vi for vi in g.value_info if vi.name in known]
    del g.value_info[:]
    g.value_info.extend(kept)
    for out in g.output:
        if out.name not in known and out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _infer(model) -> dict[str, list[int]]:
    """onnx's shape inference.  Data propagation computes the values of 1-D tensors (shapes)
    in onnx's C++ code, at any length: a Range of 10^12 values multiplied by a feature map
    takes the machine down; it runs only when a first pass without it shows no 1-D tensor
    beyond the budget."""
    import onnx

    try:
        shapes = _shapes(onnx.shape_inference.infer_shapes(model))
        if not any(len(s) == 1 and s[0] > MAX_ELEMENTS for s in shapes.values()):
            shapes = _shapes(onnx.shape_inference.infer_shapes(model, data_prop=True))
    except Exception:  # noqa: BLE001 - inference is a convenience: without it, shapes stay dynamic
        return {}
    return shapes


def _isolated(fn, *args) -> dict[str, list[int]]:
    """``fn(*args)`` in a forked child where the platform forks: onnx's shape inference aborts
    the process on some malformed graphs (onnx 1.23: a Slice after a pool whose kernel is
    larger than its input fails a C++ assertion), which must not take rfmap down.  A child
    that dies or fails means no shapes (they stay dynamic)."""
    import faulthandler
    import pickle

    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        return fn(*args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without cleanup handlers
        status = 1
        try:
            os.close(read)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 2)  # an assertion's message is not rfmap's to print
            faulthandler.disable()  # nor a traceback dump into a stream saved elsewhere (pytest's)
            data = pickle.dumps(fn(*args))
            with os.fdopen(write, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise RFMapError(f"onnx's shape inference crashed on this graph (signal {os.WTERMSIG(status)}); a kernel larger "
                         "than its input (at this input size) makes onnx 1.23 abort")
    if status != 0 or not data:
        return {}
    return pickle.loads(data)


def _shapes(inferred) -> dict[str, list[int]]:
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [d.dim_value for d in dims]
    return out
