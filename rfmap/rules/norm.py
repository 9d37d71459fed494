"""Ops that see whole axes: reductions (``mean``, ``sum``, ``amax``, ..., ONNX ``Reduce*``,
``ArgMax``), softmax over a dim, and normalizations with statistics over positions
(group/instance/layer norm, ``F.normalize``; ONNX ``InstanceNormalization``,
``GroupNormalization``, ``LayerNormalization``, ``LpNormalization``, ``MeanVarianceNormalization``).

Axis-aware: they are global only over the spatial axes on the dims they reduce; over
channels they are pointwise; over a dim that holds some digits of an axis (the tokens of a
window, the 2x2 blocks of patch merging) each cell sees the cells differing in those digits.  Ops that keep their cells add a global branch merged with
the local path (so ``exclude_global`` shows the local field).
"""

from __future__ import annotations

from rfmap.core.layers import Merge, Pointwise, Reduce
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import Call, LayoutError, as_ints, distinct, is_tensor
from rfmap.rules.common import (
    crop_for,
    input_shape,
    merge_or_pointwise,
    mix_on_dims,
    onnx_rules,
    reduce_dims,
    torch_rules,
)
from rfmap.rules.onnx_attrs import attr_axis, attr_flag, attr_int, attr_ints, check_axes, const_ints
from rfmap.rules.split_axes import layout_aware

MEAN_LIKE = ("mean", "sum", "nansum", "nanmean", "prod", "amax", "amin", "logsumexp", "std", "var", "norm", "all", "any",
             "count_nonzero", "argmax", "argmin", "median", "nanmedian", "mode", "max", "min", "aminmax", "std_mean",
             "var_mean")
ONNX_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
               "ReduceLogSumExp", "ReduceSumSquare")


def reduction(dim_index: int = 1, keep_index: int = 2, dim_name: str = "dim"):
    @layout_aware
    def rule(call: Call):
        dim = call.arg(dim_index, dim_name)
        if is_tensor(dim):  # torch.max(x, y): elementwise
            return merge_or_pointwise(call, "add")
        keep = bool(call.arg(keep_index, "keepdim", False))
        return reduce_dims(call, dim, keep)

    return rule


def reduce_shape(target, args, kwargs):
    """Output shape of ``x.mean(dim, keepdim)`` and its float kin (sum, amax, ...), or ``None``."""
    if len(args) < 1 or set(kwargs) - {"dim", "keepdim"} or len(args) > 3:
        return None
    x = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    n = x.dim()
    if dim is None or not isinstance(keep, bool):
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim) if isinstance(dim, (list, tuple)) else None
    if not dims or not all(isinstance(d, int) and -n <= d < n for d in dims):
        return None
    red = {d % n for d in dims}
    return tuple(1 if i in red else int(v) for i, v in enumerate(x.shape) if keep or i not in red)


#: reductions whose output is a float tensor of the reduced shape (no indices, no tuples)
_SHAPED = ("mean", "sum", "amax", "amin", "nansum", "nanmean", "logsumexp")


def _reduction_for(name: str):
    if name in ("std", "var", "std_mean", "var_mean"):
        return reduction(1, 3)
    if name == "norm":
        return reduction(2, 3)
    return reduction(1, 2)


def pairwise_reduce(call: Call):
    """cosine_similarity along ``dim`` (default 1), pairwise_distance along the last dim."""
    distance = "distance" in call.op_name.lower()
    if distance:
        dim = -1
        keep = call.module.keepdim if call.module is not None else call.arg(4, "keepdim", False)
    else:
        dim = call.module.dim if call.module is not None else call.arg(2, "dim", 1)
        keep = False
    layer = reduce_dims(call, dim, bool(keep))
    binds = distinct(call)
    if len(binds) == 1 or not call.axes_on(int(dim)):
        return layer if len(binds) == 1 else merge_or_pointwise(call, "mul")
    call.same_order()
    binds = distinct(call)
    if any(b.dims != call.bind.dims for _, b in binds):
        raise LayoutError("its two maps hold the spatial axes at different dims")
    parts = [call.emit(f".reduce{i}", layer, b, dims=call.out_dims) for i, (_, b) in enumerate(binds)]
    return call.emit("", Merge("mul"), *parts, dims=call.out_dims)


@layout_aware
def softmax(call: Call):
    if call.module is not None:
        dim = call.module.dim
    else:
        dim = call.arg(1, "dim")
    if dim is None:  # PyTorch's legacy implicit dim
        dim = 0 if call.ndim in (0, 1, 3) else 1
    return mix_on_dims(call, int(dim), call.op_name)


def dim_rule(default_dim: int, index: int = 1, name: str = "dim"):
    @layout_aware
    def rule(call: Call):
        return mix_on_dims(call, int(call.arg(index, name, default_dim)), call.op_name)

    return rule


@layout_aware
def group_norm(call: Call):
    """Statistics over channels and all positions: every cell also sees the whole map."""
    return mix_on_dims(call, tuple(range(1, call.ndim)), "group_norm")


def _running_stats(call: Call, op: str):
    """Normalization with stored statistics: pointwise (whatever the layout)."""
    call.out_layout = call.bind.layout
    return Pointwise(op=op)


@layout_aware
def instance_norm_module(call: Call):
    m = call.module
    if m.track_running_stats and not m.training:
        return _running_stats(call, type(m).__name__)
    return mix_on_dims(call, tuple(range(2, call.ndim)), "instance_norm")


@layout_aware
def instance_norm_fn(call: Call):
    if not call.arg(5, "use_input_stats", True):
        return _running_stats(call, "instance_norm")
    return mix_on_dims(call, tuple(range(2, call.ndim)), "instance_norm")


@layout_aware
def layer_norm(call: Call):
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    k = 1 if isinstance(shape, int) else len(as_ints(shape, 1))
    return mix_on_dims(call, tuple(range(call.ndim - k, call.ndim)), "layer_norm")


def glu(call: Call):
    dim = call.module.dim if call.module is not None else call.arg(1, "dim", -1)
    dim = call.norm_dim(int(dim))
    if not call.axes_on(dim):
        return Pointwise(op="glu")
    half = int(call.x.shape[dim]) // 2
    first, second = crop_for(call, {dim: (0, half, 1)}, call.bind), crop_for(call, {dim: (half, 2 * half, 1)}, call.bind)
    assert first is not None and second is not None  # the dim holds an axis (above): both halves crop it
    a = call.emit(".a", first, call.bind)
    b = call.emit(".b", second, call.bind)
    return call.emit("", Merge("mul"), a, b)


# -- ONNX ---------------------------------------------------------------------------------


@layout_aware
def onnx_reduce(call: Call):
    """``Reduce*``: ``axes`` (attribute, or input 1 since opset 18 and for ReduceSum since
    13), ``keepdims`` (default 1), ``noop_with_empty_axes``."""
    axes = const_ints(call, 1, "axes")
    if axes is None and len(call.args) > 1 and call.args[1] is not None:
        raise LayoutError("reduction axes computed at run time")
    if axes is None:
        axes = attr_ints(call, "axes")
    axes = check_axes(call, axes or (), "axes")
    keep = attr_flag(call, "keepdims", 1)
    if not axes and attr_flag(call, "noop_with_empty_axes"):
        return Pointwise(op=call.op_name)
    return reduce_dims(call, list(axes), keep)


@layout_aware
def onnx_arg_reduce(call: Call):
    attr_flag(call, "select_last_index")
    return reduce_dims(call, attr_axis(call, "axis", 0), attr_flag(call, "keepdims", 1))


@layout_aware
def onnx_softmax(call: Call):
    """Softmax, LogSoftmax, Hardmax: over ``axis`` (default -1) since opset 13; before, over
    the dims from ``axis`` (default 1) on, flattened."""
    if call.opset is not None and call.opset < 13:
        start = attr_axis(call, "axis", 1)
        return mix_on_dims(call, tuple(range(start, call.ndim)), call.op_name)
    return mix_on_dims(call, attr_axis(call, "axis", -1), call.op_name)


@layout_aware
def onnx_instance_norm(call: Call):
    return mix_on_dims(call, tuple(range(2, call.ndim)), "instance_norm")


@layout_aware
def onnx_group_norm(call: Call):
    groups = attr_int(call, "num_groups")
    channels = int(call.x.shape[1]) if call.ndim > 1 else 0
    if groups is None or groups < 1 or channels % groups:
        raise RFMapError(f"attribute num_groups must be a positive divisor of the {channels} channels, got {groups!r}")
    return mix_on_dims(call, tuple(range(2, call.ndim)), "group_norm")


@layout_aware
def onnx_layer_norm(call: Call):
    axis = attr_axis(call, "axis", -1)
    return mix_on_dims(call, tuple(range(axis, call.ndim)), "layer_norm")


@layout_aware
def onnx_lp_norm(call: Call):
    p = attr_int(call, "p", 2)
    if p not in (1, 2):
        raise RFMapError(f"attribute p must be 1 or 2, got {p}")
    return mix_on_dims(call, attr_axis(call, "axis", -1), "lp_norm")


@layout_aware
def onnx_mvn(call: Call):
    axes = check_axes(call, attr_ints(call, "axes", default=(0, 2, 3)), "attribute axes")
    return mix_on_dims(call, axes, "mean_variance_norm")


OPS = [
    OpDef(
        "reduce", lambda axes, op="reduce": Reduce(axes, op=op), layer=Reduce,
        torch=tuple(r for name in MEAN_LIKE for r in torch_rules([f"torch.{name}", f"Tensor.{name}", f"aten.{name}"],
                                                                   _reduction_for(name),
                                                                   shape=reduce_shape if name in _SHAPED else None))
        + torch_rules(["nn.CosineSimilarity", "nn.PairwiseDistance", "F.cosine_similarity", "F.pairwise_distance"],
                      pairwise_reduce),
        onnx=onnx_rules(ONNX_REDUCE, onnx_reduce) + onnx_rules(["ArgMax", "ArgMin"], onnx_arg_reduce),
        realize="rfmap.rules.torch_realize:reduce",
        description="reduction over spatial axes (indices of spatial axes): each cell sees the whole axes reduced",
    ),
    OpDef(
        "softmax", None,
        torch=torch_rules(["nn.Softmax", "nn.Softmin", "nn.LogSoftmax", "F.softmax", "F.softmin", "F.log_softmax",
                           "torch.softmax", "torch.log_softmax", "Tensor.softmax", "Tensor.log_softmax"], softmax,
                          same_shape=True)
        + torch_rules(["aten._softmax", "aten.softmax", "aten._log_softmax", "aten.log_softmax"], softmax)
        + torch_rules(["F.normalize"], dim_rule(1, index=2))
        + torch_rules(["nn.GLU", "F.glu", "Tensor.glu"], glu),
        onnx=onnx_rules(["Softmax", "LogSoftmax", "Hardmax"], onnx_softmax) + onnx_rules(["LpNormalization"], onnx_lp_norm),
        description="softmax and normalization along a dim: global over the spatial axes on it",
    ),
    OpDef(
        "norm", None,
        torch=torch_rules(["nn.GroupNorm"], group_norm, same_shape=True)
        + torch_rules(["F.group_norm", "torch.group_norm"], group_norm, same_shape=True, shape=input_shape)
        + torch_rules(["aten.group_norm", "aten.native_group_norm"], group_norm)
        + torch_rules(["nn.InstanceNorm1d", "nn.InstanceNorm2d", "nn.InstanceNorm3d"], instance_norm_module, same_shape=True)
        + torch_rules(["F.instance_norm"], instance_norm_fn, same_shape=True, shape=input_shape) + torch_rules(["aten.instance_norm"], instance_norm_fn)
        + torch_rules(["nn.LayerNorm", "nn.RMSNorm", "F.layer_norm", "torch.layer_norm", "F.rms_norm"], layer_norm, same_shape=True)
        + torch_rules(["aten.layer_norm", "aten.native_layer_norm", "aten.rms_norm"], layer_norm),
        onnx=onnx_rules(["InstanceNormalization"], onnx_instance_norm) + onnx_rules(["GroupNormalization"], onnx_group_norm)
        + onnx_rules(["LayerNormalization", "RMSNormalization"], onnx_layer_norm)
        + onnx_rules(["MeanVarianceNormalization"], onnx_mvn),
        description="normalization with statistics over positions (group, instance, layer norm): global over those axes",
    ),
]
