"""ONNX front end: an ``.onnx`` file (or ``onnx.ModelProto``) as a :class:`~rfmap.core.graph.Graph`.

Needs the ``onnx`` package only (no runtime).  The file is read (:mod:`.fold`: bounded
constant folding and static shapes at the input size asked for), then its nodes are walked
in order and each node that reads the input's pixels is converted by the op registry's
ONNX rule for its op type -- the same machinery, converters and layout tracking as the
PyTorch front end (:mod:`rfmap.frontends.convert`), so ``Transpose`` to NHWC and back,
``Reshape``, softmax and reductions over an axis are read exactly as their PyTorch
counterparts.  Ops without a rule are handled as in the PyTorch front end: ``strict``
raises naming the node, otherwise pointwise or global, listed in the notes and warned
about once.

Coordinates: the pixel-index convention of rfmap; ``pads`` follow ONNX
(``[x1_begin, x2_begin, ..., x1_end, x2_end]``), ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rfmap.core.graph import Graph
from rfmap.core.registry import registry
from rfmap.errors import RFMapError
from rfmap.frontends.convert import Front
from rfmap.frontends.onnx.fold import fold_constants, static_shapes
from rfmap.progress import ProgressBar
from rfmap.rules.call import Bind, TensorInfo

#: graphs with at least this many nodes show a progress bar while they are read
LARGE = 2000


def from_onnx(model: Any, input_size=None, *, strict: bool = False) -> Graph:
    """A :class:`Graph` from an ONNX file path or ``ModelProto``.

    ``input_size`` (spatial sizes, (H, W) in 2-D) overrides the file's input shape (needed
    when it is dynamic).
    """
    try:
        import onnx
    except ImportError:
        raise RFMapError("ONNX files need the onnx package: pip install 'rfmap[onnx]'") from None
    name = "onnx-model"
    if not isinstance(model, onnx.ModelProto):
        name = str(model).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        model = _load(str(model))
    _decode_names(model.graph)
    _check_geometry(model.graph)
    return _Walk(model, name, input_size, strict).run()


#: attributes that are sizes; onnx's shape inference overflows on huge ones (a MaxPool
#: kernel of 2**62 made a later Slice fail a C++ assertion, which aborts the process)
_GEOMETRY = ("kernel_shape", "strides", "pads", "dilations", "output_padding", "output_shape")


def _check_geometry(graph) -> None:
    import onnx

    from rfmap.core.budget import MAX_VALUE

    for node in graph.node:
        for a in node.attribute:
            if a.name in _GEOMETRY and a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS):
                values = list(a.ints) if a.type == onnx.AttributeProto.INTS else [a.i]
                if any(abs(v) > MAX_VALUE for v in values):
                    raise RFMapError(f"node '{node.name or node.op_type}' ({node.op_type}): {a.name} {values[:6]} is beyond "
                                     f"rfmap's limit of {MAX_VALUE:,}")


def _decode_names(graph) -> None:
    """Names and op types that are not UTF-8 (protobuf hands them over as bytes) as text."""
    def text(v):
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    for node in graph.node:
        for field in ("name", "op_type", "domain"):
            value = getattr(node, field)
            if isinstance(value, bytes):
                setattr(node, field, text(value))
        for names in (node.input, node.output):
            if any(isinstance(v, bytes) for v in names):
                names[:] = [text(v) for v in names]
    for group in (graph.input, graph.output, graph.initializer, graph.value_info):
        for item in group:
            if isinstance(item.name, bytes):
                item.name = text(item.name)


def _load(path: str):
    import onnx

    try:
        return onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError, ...
        raise RFMapError(f"cannot read ONNX file '{path}': {type(exc).__name__}: {exc}") from None


def _attrs(node) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        try:
            value = onnx.helper.get_attribute_value(a)
        except Exception as exc:  # noqa: BLE001 - a malformed attribute
            raise RFMapError(f"node '{node.name}' ({node.op_type}): attribute {a.name} is malformed ({exc})") from None
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, (list, tuple)):
            value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


class _Constant(np.ndarray):
    """A folded constant as the converters see it: a numpy array that is also a tensor
    (``.dim()``), as a PyTorch constant is in the other front end."""

    def dim(self) -> int:
        return self.ndim

    @property
    def value(self) -> np.ndarray:
        """The constant's value (what ``TensorInfo.value`` holds for the converters)."""
        return self.view(np.ndarray)


class _Reshape(Exception):
    """Read the graph again with tensor ``name`` known to have ``shape``."""

    def __init__(self, name: str, shape: list[int]):
        super().__init__(name)
        self.name, self.shape = name, shape


class _Walk:
    def __init__(self, model, name: str, input_size, strict: bool):
        self.model = model
        self.name = name
        self.strict = strict
        self.input_size = input_size
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        self.consts = {t.name: self._initializer(t) for t in g.initializer}
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
                value = _attrs(node).get("value")
                if isinstance(value, np.ndarray):
                    self.consts[node.output[0]] = value

    @staticmethod
    def _initializer(t):
        from onnx import numpy_helper

        try:
            return numpy_helper.to_array(t)
        except Exception as exc:  # noqa: BLE001 - unknown data type, raw data of the wrong size
            raise RFMapError(f"initializer '{t.name}' cannot be read ({type(exc).__name__}: {exc})") from None

    def _input(self):
        g = self.model.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if not inputs:
            raise RFMapError("the ONNX graph has no input")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if not 3 <= len(dims) <= 5:
            raise RFMapError(f"input '{inp.name}' has rank {len(dims)}; expected N, C and 1 to 3 spatial axes")
        rank = len(dims)
        spatial = tuple(range(1, rank - 1)) if _looks_channels_last(g, inp.name) else tuple(range(2, rank))
        return inp, dims, spatial

    def run(self) -> Graph:
        g = self.model.graph
        inp, dims, spatial = self._input()
        if not g.output:
            raise RFMapError("the ONNX graph has no output")
        ndim = len(spatial)
        size = self.input_size
        if isinstance(size, int):
            size = (size,) * ndim
        if size is None:
            file_size = [dims[a] for a in spatial]
            if None in file_size or any(v < 1 for v in file_size):
                raise RFMapError(f"input '{inp.name}' has dynamic spatial sizes: give an input size")
            size = tuple(file_size)
        size = tuple(int(v) for v in size)
        if len(size) != ndim:
            raise RFMapError(f"input size {list(size)} has {len(size)} axes, the ONNX input has {ndim}")
        # onnx's shape inference misses rules onnxruntime applies (a ceil-mode pool's last
        # window may not start in the right padding): where rfmap's size differs, it is
        # given to the inference as a known shape and the graph is read again
        overrides: dict[str, list[int]] = {}
        base = dict(self.consts)
        for _ in range(32):
            self.consts = dict(base)
            with ProgressBar(len(g.node), f"reading {self.name}", enabled=len(g.node) >= LARGE) as bar:
                for _ in range(8):  # shapes let more fold, and folded sizes let more shapes be inferred
                    before = len(self.consts)
                    self.shapes = static_shapes(self.model, self.consts, inp.name, spatial, size, overrides)
                    fold_constants(g, self.consts, self.shapes, self.opset)
                    bar.advance(len(self.consts) - before)
                    if len(self.consts) == before:
                        break
            try:
                return self._walk(inp, spatial, size)
            except _Reshape as fix:
                overrides[fix.name] = fix.shape
        raise RFMapError("onnx's shape inference keeps disagreeing with rfmap's sizes")

    def _walk(self, inp, spatial, size) -> Graph:
        g = self.model.graph
        self.front = Front(size, self.strict, register_hint="rfmap.register_op(..., onnx=[op_type])",
                           shape_source="onnx shape inference", trust_engine=True)
        binds: dict[str, Any] = {inp.name: Bind("input", spatial)}
        for k, node in enumerate(g.node):
            if all(o in self.consts for o in node.output if o):
                continue  # folded
            self._node(node, k, binds)
        outputs = [binds.get(o.name) for o in g.output]
        values = [self._tensor(o.name) for o in g.output]
        keyed = {o.name: b for o, b in zip(g.output, outputs)} if len(g.output) > 1 else outputs[0]
        keyed_values = {o.name: v for o, v in zip(g.output, values)} if len(g.output) > 1 else values[0]
        graph, _ = self.front.build(keyed, keyed_values, self.name, [f"read from ONNX for input size {list(size)}"])
        return graph

    def _tensor(self, name: str) -> Any:
        if name in self.consts:
            return np.asarray(self.consts[name]).view(_Constant)
        shape = self.shapes.get(name)
        return None if shape is None else TensorInfo(tuple(shape))

    def _node(self, node, k: int, binds: dict) -> None:
        arg_binds = [binds.get(i) if i else None for i in node.input]
        if not any(isinstance(b, Bind) for b in arg_binds):
            return
        node_name = node.name or (node.output[0] if node.output else "") or f"{node.op_type}_{k}"
        where = f"node '{node_name}' ({node.op_type})"
        rule = registry().onnx(node.op_type) if node.domain in ("", "ai.onnx") else None
        args = [self._tensor(i) if i else None for i in node.input]
        for name, a in zip(node.input, args):
            if name and a is None:
                raise RFMapError(f"{where}: the shape of input '{name}' is not known statically")
        outs = [self._tensor(o) if o else None for o in node.output]
        for o, t in zip(node.output, outs):
            if o and t is None:
                if rule is not None:
                    reason = _inference_error(self.model, node_name) or "give an input size, or export with static shapes"
                    raise RFMapError(f"{where}: the shape of output '{o}' is not known statically ({reason})")
                # an op nobody knows, not even shape inference: taken to keep its input's shape
                first = next(a for a, b in zip(args, arg_binds) if isinstance(b, Bind))
                outs = [first if t is None else t for t in outs]
        result = self.front.convert(
            kind="onnx", target=node.op_type, base=node_name, path=node_name, module=None, args=args,
            kwargs=_attrs(node), arg_binds=arg_binds, kwarg_binds={}, out=outs[0] if len(outs) == 1 else outs,
            convert=None if rule is None else rule.convert, op_name=node.op_type.lower(), opset=self.opset,
        )
        results = result if isinstance(result, list) else [result] + [None] * (len(node.output) - 1)
        for o, b, t in zip(node.output, results, outs):
            if o and isinstance(b, Bind) and t is not None:  # a named output has a known shape (above)
                binds[o] = b
                fixed = self.front.corrected_shape(b, t)
                if fixed is not None and list(fixed) != list(t.shape):
                    raise _Reshape(o, list(fixed))


def _inference_error(model, node_name: str) -> str | None:
    """What onnx's shape inference says about node ``node_name`` in strict mode (an invalid
    attribute value, say), if anything."""
    import onnx

    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - InferenceError, ValidationError, ...
        text = " ".join(str(exc).split())
        key = f"node name: {node_name}): "
        if key in text:
            detail = text.split(key, 1)[1].split(" (op_type:", 1)[0]
            return f"onnx shape inference: {detail.replace('[ShapeInferenceError] ', '')}"[:300]
    return None


def _looks_channels_last(g, input_name: str) -> bool:
    """tf2onnx graphs feed the input through a Transpose to NCHW first."""
    for node in g.node:
        if input_name in node.input:
            if node.op_type == "Transpose":
                perm = [a.ints for a in node.attribute if a.name == "perm"]
                return bool(perm) and list(perm[0]) == [0, len(perm[0]) - 1, *range(1, len(perm[0]) - 1)]
            return False
    return False
