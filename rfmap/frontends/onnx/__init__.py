"""ONNX front end: an ``.onnx`` file (or ``onnx.ModelProto``) as a :class:`~rfmap.core.graph.Graph`.

Needs the ``onnx`` package only (no runtime).  Spatial axes are tracked through
``Transpose`` so that the NHWC layouts converters emit (tf2onnx wraps convolutions in
NHWC<->NCHW transposes) are understood.  Geometry-changing ops are mapped onto rfmap layers
(:data:`ONNX_RULES`); elementwise ops with one non-constant input are pointwise, with two or
more they merge paths; ops that collapse the spatial axes (Flatten, Reshape, Gemm, MatMul,
GlobalAveragePool) are global.  Any other op is treated as pointwise, listed in the
graph's ``notes`` and warned about once (``strict=True`` raises instead).

Coordinates: the pixel-index convention of rfmap; ``pads`` follow ONNX
(``[x1_begin, x2_begin, ..., x1_end, x2_end]``), ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable

import numpy as np

from rfmap.errors import RFMapError, RFMapWarning
from rfmap.core.graph import Graph, GraphBuilder
from rfmap.progress import ProgressBar
from rfmap.core.layers import (
    Conv,
    ConvTranspose,
    Crop,
    GlobalOp,
    Layer,
    Merge,
    Pad,
    PixelShuffle,
    PixelUnshuffle,
    Pointwise,
    Upsample,
)

POINTWISE = {
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Softplus", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Identity", "Dropout", "Cast",
    "BatchNormalization", "InstanceNormalization", "LRN", "Softmax", "LogSoftmax", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Not", "QuantizeLinear", "DequantizeLinear", "Celu", "ThresholdedRelu",
}
MERGES = {"Add": "add", "Sum": "add", "Sub": "add", "Mul": "mul", "Div": "mul", "Max": "add", "Min": "add", "Mean": "add"}
GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Gemm", "MatMul", "ReduceMean", "ReduceMax"}


#: graphs with at least this many nodes show a progress bar while they are read
LARGE = 2000


class _Ctx:
    """What a rule may read: attributes, constant inputs, the spatial rank."""

    def __init__(self, node, consts: dict[str, np.ndarray], ndim: int):
        import onnx

        self.node = node
        self.consts = consts
        self.ndim = ndim
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def attr(self, name: str, default=None):
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    def const(self, i: int):
        if i >= len(self.node.input) or not self.node.input[i]:
            return None
        return self.consts.get(self.node.input[i])

    def pads(self):
        auto = self.attr("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            return auto.lower()
        pads = list(self.attr("pads", [0] * (2 * self.ndim)))
        return tuple((pads[a], pads[a + self.ndim]) for a in range(self.ndim))


def _conv(ctx: _Ctx) -> Layer:
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        w = ctx.const(1)
        if w is None:
            raise RFMapError("no kernel_shape and no constant weight")
        kernel = list(w.shape[2:])
    return Conv(tuple(kernel), tuple(ctx.attr("strides", [1] * ctx.ndim)), ctx.pads(), tuple(ctx.attr("dilations", [1] * ctx.ndim)))


def _pool(op: str) -> Callable[[_Ctx], Layer]:
    def rule(ctx: _Ctx) -> Layer:
        kernel = tuple(ctx.attr("kernel_shape"))
        return Conv(
            kernel,
            tuple(ctx.attr("strides", [1] * ctx.ndim)),
            ctx.pads(),
            tuple(ctx.attr("dilations", [1] * ctx.ndim)),
            bool(ctx.attr("ceil_mode", 0)),
            op=op,
        )

    return rule


def _conv_transpose(ctx: _Ctx) -> Layer:
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        kernel = list(ctx.const(1).shape[2:])
    pads = ctx.pads()
    if isinstance(pads, str):
        if pads != "valid":
            raise RFMapError("auto_pad SAME for ConvTranspose is not supported; give explicit pads")
        pads = ((0, 0),) * ctx.ndim
    return ConvTranspose(
        tuple(kernel),
        tuple(ctx.attr("strides", [1] * ctx.ndim)),
        pads,
        tuple(ctx.attr("output_padding", [0] * ctx.ndim)),
        tuple(ctx.attr("dilations", [1] * ctx.ndim)),
    )


def _pad(ctx: _Ctx) -> Layer:
    pads = ctx.const(1)
    pads = list(pads) if pads is not None else list(ctx.attr("pads", []))
    axes = ctx.const(3)
    rank = ctx.ndim + 2
    if axes is not None:
        full = [0] * (2 * rank)
        for j, ax in enumerate(int(a) % rank for a in axes):
            full[ax], full[ax + rank] = pads[j], pads[j + len(axes)]
        pads = full
    if len(pads) != 2 * rank:
        raise RFMapError(f"pads has {len(pads)} entries for a rank-{rank} tensor")
    if any(pads[a] or pads[a + rank] for a in (0, 1)):
        raise RFMapError("padding of the batch or channel axis is not spatial")
    mode = {"constant": "zeros", "edge": "replicate", "wrap": "circular"}.get(ctx.attr("mode", "constant"), "reflect")
    return Pad(tuple((int(pads[a]), int(pads[a + rank])) for a in range(2, rank)), mode)


def _resize(ctx: _Ctx) -> Layer:
    scales = ctx.const(2) if ctx.node.op_type == "Resize" else ctx.const(1)
    sizes = ctx.const(3) if ctx.node.op_type == "Resize" else None
    if ctx.node.op_type == "Upsample" and scales is None:
        scales = ctx.attr("scales")
    mode = ctx.attr("mode", "nearest")
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel" if mode != "nearest" else "asymmetric")
    if ctx.node.op_type == "Upsample":
        ctm = "asymmetric"
    if mode == "nearest" and ctm != "asymmetric":
        mode = "nearest-exact" if ctm in ("half_pixel", "pytorch_half_pixel") else "nearest"
    mode = {"linear": "linear", "cubic": "cubic"}.get(mode, mode)
    align = ctm == "align_corners"
    if sizes is not None and len(sizes):
        return Upsample(size=tuple(int(v) for v in list(sizes)[2:]), mode=mode, align_corners=align)
    if scales is None or not len(scales):
        raise RFMapError("Resize without constant scales or sizes")
    return Upsample(scale_factor=tuple(float(v) for v in list(scales)[2:]), mode=mode, align_corners=align)


def _slice(ctx: _Ctx) -> Layer | None:
    starts, ends = ctx.const(1), ctx.const(2)
    if starts is None:  # opset < 10: attributes
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes, steps = ctx.attr("axes"), None
    else:
        axes, steps = ctx.const(3), ctx.const(4)
    if starts is None or ends is None:
        raise RFMapError("Slice without constant starts/ends")
    rank = ctx.ndim + 2
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
    steps = [1] * len(starts) if steps is None else list(steps)
    start, stop, step = [0] * ctx.ndim, [None] * ctx.ndim, [1] * ctx.ndim
    spatial = False
    big = 2**62
    for a, s, e, st in zip(axes, starts, ends, steps):
        if a < 2:
            continue
        spatial = True
        if int(st) < 0:
            raise RFMapError("Slice with a negative step on a spatial axis is not supported")
        start[a - 2], step[a - 2] = int(s), int(st)
        stop[a - 2] = None if int(e) >= big else int(e)
    return Crop(tuple(start), tuple(stop), tuple(step)) if spatial else None


def _depth_to_space(ctx: _Ctx) -> Layer:
    return PixelShuffle(int(ctx.attr("blocksize")))


def _space_to_depth(ctx: _Ctx) -> Layer:
    return PixelUnshuffle(int(ctx.attr("blocksize")))


#: ONNX op type -> rule building an rfmap layer from the node
ONNX_RULES: dict[str, Callable[[_Ctx], Layer | None]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "LpPool": _pool("lppool"),
    "Pad": _pad,
    "Resize": _resize,
    "Upsample": _resize,
    "Slice": _slice,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
}


def from_onnx(model: Any, input_size=None, *, strict: bool = False) -> Graph:
    """A :class:`Graph` from an ONNX file path or ``ModelProto``.

    ``input_size`` (H, W) overrides the file's input shape (needed when it is dynamic).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise RFMapError("ONNX files need the onnx package: pip install 'rfmap[onnx]'") from None
    name = "onnx-model"
    if not isinstance(model, onnx.ModelProto):
        name = str(model).rsplit("/", 1)[-1].rsplit(".", 1)[0]
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # onnx raises DecodeError, OSError, ...
            raise RFMapError(f"cannot read ONNX file '{model}': {exc}") from None
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    # a bar on a terminal for large files: folding runs onnx's evaluator node by node
    with ProgressBar(len(g.node), f"reading {name}", enabled=len(g.node) >= LARGE) as bar:
        for _ in range(8):  # shapes let more fold, and folded sizes let more shapes be inferred
            before = len(consts)
            _fold_constants(g, consts, _static_shapes(model, consts, input_size))
            bar.advance(len(consts) - before)
            if len(consts) == before:
                break
    inputs = [i for i in g.input if i.name not in consts]
    if not inputs:
        raise RFMapError("the ONNX graph has no input")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    rank = len(dims)
    if rank < 3:
        raise RFMapError(f"input '{inp.name}' has rank {rank}; expected N, C and 1 to 3 spatial axes")
    ndim = rank - 2
    # spatial axes of a tensor: positions in its layout (NCHW: 2, 3)
    layout: dict[str, tuple[int, ...]] = {}
    channels_last = _looks_channels_last(g, inp.name)
    layout[inp.name] = tuple(range(1, rank - 1)) if channels_last else tuple(range(2, rank))
    file_size = [dims[a] for a in layout[inp.name]]
    size = input_size if input_size is not None else (None if None in file_size else tuple(file_size))

    b = GraphBuilder(name, size)
    producer = {inp.name: b.input}
    unsupported: list[str] = []
    used: set[str] = set()
    for k, node in enumerate(g.node):
        if all(o in consts for o in node.output if o):
            continue  # folded
        live = [i for i in node.input if i in producer]
        if not live or node.op_type in ("Shape", "Size"):
            continue  # constants, or shape arithmetic: no pixels flow through it
        node_name = _unique(node.name or node.output[0] or f"{node.op_type}_{k}", used)
        where = f"node '{node_name}' ({node.op_type})"
        out_layout = layout[live[0]]
        try:
            if node.op_type == "Transpose":
                perm = list(_Ctx(node, consts, ndim).attr("perm"))
                out_layout = tuple(perm.index(a) for a in layout[live[0]])
                layer: Layer | None = None
            elif node.op_type in ("Concat", *MERGES) and len(live) >= 2:
                layer = Merge(MERGES.get(node.op_type, "concat"))
            elif node.op_type in ONNX_RULES:
                if layout[live[0]] != tuple(range(2, rank)):
                    raise RFMapError("spatial op on a tensor that is not in NCHW layout")
                layer = ONNX_RULES[node.op_type](_Ctx(node, consts, ndim))
            elif node.op_type in GLOBAL or node.op_type == "Reshape":
                layer = GlobalOp(op=node.op_type.lower())
            elif node.op_type in POINTWISE or node.op_type in MERGES or node.op_type in ("Concat", "Squeeze", "Unsqueeze", "Shape"):
                layer = Pointwise(op=node.op_type.lower())
            else:
                if strict:
                    raise RFMapError(f"unsupported op {node.op_type}")
                unsupported.append(f"{node_name} ({node.op_type})")
                layer = Pointwise(op=node.op_type.lower())
        except RFMapError as exc:
            raise RFMapError(f"{where}: {exc}") from None
        srcs = list(dict.fromkeys(producer[i] for i in live))
        if layer is not None and layer.merge and len(srcs) < 2:
            layer = Pointwise(op=node.op_type.lower())
        if layer is None:
            src = srcs[0]
        else:
            src = b.add(node_name, layer, *(srcs if layer.merge else srcs[:1]))
        for out in node.output:
            producer[out] = src
            layout[out] = out_layout
    if unsupported:
        warnings.warn(
            f"treated as pointwise (no geometry rule): {', '.join(unsupported)}", RFMapWarning, stacklevel=2
        )
    graph = b.build()
    return Graph(graph.nodes, graph.name, graph.input_size, tuple(f"unsupported: {u}" for u in unsupported))


def _static_shapes(model, consts: dict[str, np.ndarray], input_size) -> dict[str, list[int]]:
    """Shapes of the tensors that onnx's shape inference can tell, with the input's spatial
    size set to ``input_size`` where given (so ``Shape`` of a feature map is a constant)."""
    import onnx

    from onnx import numpy_helper

    model = copy.deepcopy(model)
    g = model.graph
    known = {t.name for t in g.initializer}
    folded = [n for n in g.node if n.output and all(o in consts for o in n.output if o)]
    for n in folded:
        g.node.remove(n)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k not in known)
    inputs = [i for i in model.graph.input if i.name not in consts]
    if inputs and input_size is not None:
        dims = inputs[0].type.tensor_type.shape.dim
        sizes = (input_size,) * (len(dims) - 2) if isinstance(input_size, int) else tuple(input_size)
        spatial = range(1, len(dims) - 1) if _looks_channels_last(model.graph, inputs[0].name) else range(2, len(dims))
        if len(sizes) == len(spatial):
            dims[0].dim_value = 1
            for a, n in zip(spatial, sizes):
                dims[a].dim_value = int(n)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a convenience here: without it, shapes stay dynamic
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [d.dim_value for d in dims]
    return out


def _fold_constants(g, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> None:
    """Evaluate the nodes that depend on constants only (pads, scales and slice bounds that
    exporters compute with small subgraphs), with onnx's reference evaluator; ``Shape`` of a
    tensor whose shape is known statically is a constant too."""
    from onnx.reference import ReferenceEvaluator

    for node in g.node:
        if node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            shape = shapes[node.input[0]]
            consts[node.output[0]] = np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], dtype=np.int64)
            continue
        inputs = [i for i in node.input if i]
        if not all(i in consts for i in inputs) or node.op_type in ("RandomNormal", "RandomUniform"):
            continue
        try:
            outs = ReferenceEvaluator(node).run(None, {i: consts[i] for i in inputs})
        except Exception:  # an op the evaluator lacks: leave it dynamic
            continue
        consts.update({o: np.asarray(v) for o, v in zip(node.output, outs) if o})


def _looks_channels_last(g, input_name: str) -> bool:
    """tf2onnx graphs feed the input through a Transpose to NCHW first."""
    for node in g.node:
        if input_name in node.input:
            if node.op_type == "Transpose":
                perm = [a.ints for a in node.attribute if a.name == "perm"]
                return bool(perm) and list(perm[0]) == [0, len(perm[0]) - 1, *range(1, len(perm[0]) - 1)]
            return False
    return False


def _unique(name: str, used: set[str]) -> str:
    base, k = name, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name
