"""Layouts: where a tensor's spatial axes are after ``view``/``reshape``/``flatten``/
``squeeze``, ``permute``/``transpose``/``movedim``, ``expand``/``repeat``, ``roll`` (and the
ONNX ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Transpose``, ``Expand``, ``Tile``).

These ops make no node of their own where they only move axes (``SAME`` with the output's
dims).  Where a reshape splits an axis into digits on several dims (windows, space-to-depth,
patch merging), the layout algebra (:mod:`rfmap.rules.layout_algebra`) follows the digits;
only a reshape that really mixes positions with other dims is global.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rfmap.core.layers import Expand, GlobalOp, Pad, Pointwise
from rfmap.core.permute import Permute
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import SAME, Bind, Call, LayoutError, as_ints, first_tensor, is_tensor, right_aligned
from rfmap.rules.common import REALIZE, no_node, onnx_rules, torch_rules
from rfmap.rules.layout_algebra import with_shape
from rfmap.rules.onnx_attrs import attr_ints, const_ints
from rfmap.rules.split_axes import layout_aware


def _virtual(shape: Sequence[int], bind: Bind, sizes: Sequence[int]):
    """Split dims that hold several spatial axes back into one dim per axis (row-major, the
    lower axis outer), after the outer non-spatial factor such a dim may hold (GroupNorm's
    ``(N, G, C/G * H * W)``: see :func:`_reshape_dims`).

    Returns the virtual shape, the virtual dim of each axis, and which virtual dims are spatial.
    """
    vshape: list[int] = []
    vdim_of: dict[int, int] = {}
    spatial: set[int] = set()
    for d, n in enumerate(shape):
        axes = [a for a, ad in enumerate(bind.dims) if ad == d]
        if len(axes) <= 1:
            if axes:
                vdim_of[axes[0]] = len(vshape)
                spatial.add(len(vshape))
            vshape.append(int(n))
            continue
        prod = math.prod(sizes[a] for a in axes)
        if n % prod:
            raise LayoutError("a dim holds spatial axes and something else")
        if n != prod:
            vshape.append(int(n) // prod)
        for a in axes:
            vdim_of[a] = len(vshape)
            spatial.add(len(vshape))
            vshape.append(int(sizes[a]))
    return vshape, vdim_of, spatial


@dataclass
class _Moved:
    """Where a reshape puts the spatial axes (:func:`_reshape_dims`)."""

    dims: list  # per axis, the output dim (None: gone)
    collapsed: bool = False  # an axis flattened with whole non-spatial dims: global
    split: dict = field(default_factory=dict)  # axis -> r: split into (n/r cells, r phases)
    merged: dict = field(default_factory=dict)  # axis -> r: merged with r inner phases


def _reshape_dims(call: Call, in_shape, out_shape, bind: Bind) -> _Moved:
    """Where the spatial axes land after a reshape (view, flatten, unflatten, squeeze...).

    Row-major bookkeeping: an input dim ``v`` spans the prefix products ``p_in[v]..p_in[v+1]``.
    An axis stays whole where an output dim has its size and prefix; it is flattened into
    output dim ``e`` when ``e``'s span holds it.  Flattened with other spatial axes only, it
    stays there (as in ``x.flatten(2)``), also after the inner part of a split non-spatial dim
    (GroupNorm's ``(N, C, H, W) -> (N, G, C/G * H * W)``); flattened together with whole
    non-spatial dims (``x.flatten(1)``) it is *collapsed*: the output sees the map globally.
    An axis split into ``(n/r, r)`` keeps its cells ``n/r`` wide and the ``r`` phases move
    to a non-spatial dim (a pixel unshuffle written as a reshape); an axis merged with ``r``
    inner phases is refined ``r`` times (a pixel shuffle).
    """
    sizes = call.sizes(bind)
    vshape, vdim_of, spatial = _virtual(in_shape, bind, sizes)
    out_shape = [int(v) for v in out_shape]
    p_in = [math.prod(vshape[:i]) for i in range(len(vshape) + 1)]
    p_out = [math.prod(out_shape[:i]) for i in range(len(out_shape) + 1)]
    axis_of = {v: a for a, v in vdim_of.items()}
    moved = _Moved([None] * len(bind.dims))
    used: set[int] = set()
    last = -1
    live = [v for v in vdim_of.values() if vshape[v] > 1]
    for a, v in sorted(vdim_of.items(), key=lambda kv: kv[1]):
        n = vshape[v]
        if n == 1:
            cands = [e for e in range(len(out_shape)) if out_shape[e] == 1 and p_out[e] == p_in[v] and e not in used and e > last]
            if cands:
                moved.dims[a] = cands[0]
                used.add(cands[0])
                last = cands[0]
            continue
        cands = [e for e in range(len(out_shape)) if out_shape[e] == n and p_out[e] == p_in[v] and e not in used]
        if cands:
            moved.dims[a] = cands[0]
            used.add(cands[0])
            last = cands[0]
            continue
        hosts = [e for e in range(len(out_shape)) if p_out[e] <= p_in[v] and p_in[v + 1] <= p_out[e + 1] and out_shape[e] > 1]
        if not hosts:
            _split(moved, a, v, n, p_in, p_out, out_shape)
            continue
        e = hosts[0]
        inside = [w for w in range(len(vshape)) if p_out[e] <= p_in[w] and p_in[w + 1] <= p_out[e + 1] and vshape[w] > 1]
        prod = math.prod(vshape[w] for w in inside)
        spatial_inside = [w for w in inside if w in spatial]
        if spatial_inside == inside:
            order = [axis_of[w] for w in inside]
            if order != sorted(order):
                raise LayoutError("it flattens the spatial axes in an order other than (H, W)")
            if prod != out_shape[e]:
                # the inner part of a split non-spatial dim before all the axes (GroupNorm)
                if (out_shape[e] % prod or set(inside) != set(live) or len(inside) < 2
                        or p_out[e] in p_in or p_out[e] * out_shape[e] != p_in[inside[-1] + 1]):
                    raise LayoutError(f"it splits spatial axis {a} over several dims")
            moved.dims[a] = e
            last = e
        elif inside[0] == v and p_out[e] == p_in[v] and prod == out_shape[e] and len(spatial_inside) == 1:
            moved.dims[a] = e  # the axis, then phases from a non-spatial dim: a pixel shuffle
            moved.merged[a] = prod // n
            last = e
        else:
            moved.collapsed = True
    return moved


def _split(moved: _Moved, a: int, v: int, n: int, p_in, p_out, out_shape) -> None:
    """Axis ``a`` (virtual dim ``v``, ``n`` cells) spread over several output dims: the outer
    one keeps the cells, the inner ones are phases (a pixel unshuffle)."""
    starts = [e for e in range(len(out_shape)) if p_out[e] == p_in[v]]
    ends = [e for e in range(len(out_shape)) if p_out[e + 1] == p_in[v + 1]]
    if not starts or not ends or ends[-1] < starts[0]:
        raise LayoutError(f"it splits spatial axis {a} over several dims")
    pieces = [e for e in range(starts[0], ends[-1] + 1) if out_shape[e] > 1]
    coarse = pieces[0]
    moved.dims[a] = coarse
    moved.split[a] = n // out_shape[coarse]


@layout_aware
def _reshape_rule(call: Call):
    out = first_tensor(call.out)
    collapsed = False
    if call.bind.layout is None:
        try:
            moved = _reshape_dims(call, tuple(call.x.shape), tuple(out.shape), call.bind)
        except LayoutError:
            moved = None  # an axis split over several dims: the layout algebra follows it
        if moved is not None and not (moved.collapsed or moved.split or moved.merged):
            call.out_dims = tuple(moved.dims)
            return Pointwise(op=call.op_name) if call.kind == "module" else SAME
        collapsed = moved is not None and moved.collapsed
    layout = call.layout_of().reshape(tuple(int(v) for v in out.shape))
    if collapsed and _is_flatten(layout):
        call.out_dims = (None,) * len(call.bind.dims)
        return GlobalOp(op="flatten")
    call.out_layout = layout
    return Pointwise(op=call.op_name) if call.kind == "module" else SAME


def _is_flatten(layout) -> bool:
    """A classifier's flatten: channels and then whole spatial axes in one dim (``x.flatten(1)``),
    read as global, as a linear layer over it will be."""
    for fs in layout.dims:
        if len(fs) > 1 and not fs[0].spatial and all(f.spatial and f.place == 1 for f in fs[1:]):
            return True
    return False


def _permute_rule(perm_of: Callable[[Call], Sequence[int]]):
    @layout_aware
    def rule(call: Call):
        perm = [call.norm_dim(int(p)) for p in perm_of(call)]
        if call.bind.layout is not None:
            call.out_layout = call.bind.layout.permute(perm)
            return SAME
        call.out_dims = tuple(None if d is None else perm.index(d) for d in call.bind.dims)
        moved = Bind(call.bind.node, call.out_dims)
        ordered = call.in_order(moved, suffix="")  # H and W swapped: a node, so the table follows the tensor
        if ordered is moved:
            return SAME
        call.out_dims = ordered.dims
        return ordered

    return rule


def _permute_args(call: Call):
    dims = call.arg(1, "dims")
    if isinstance(dims, (list, tuple)) and not (len(call.args) > 2 and isinstance(call.args[2], int)):
        return dims
    return call.args[1:]


def _transpose_args(call: Call):
    n = call.ndim
    d0 = call.norm_dim(int(call.arg(1, "dim0")))
    d1 = call.norm_dim(int(call.arg(2, "dim1")))
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


def _movedim_args(call: Call):
    n = call.ndim
    src = call.arg(1, "source")
    dst = call.arg(2, "destination")
    src = [call.norm_dim(int(s)) for s in as_ints(src, 1)] if not isinstance(src, int) else [call.norm_dim(src)]
    dst = [call.norm_dim(int(s)) for s in as_ints(dst, 1)] if not isinstance(dst, int) else [call.norm_dim(dst)]
    rest = [d for d in range(n) if d not in src]
    perm: list[int | None] = [None] * n
    for s, t in zip(src, dst):
        perm[t] = s
    it = iter(rest)
    return [p if p is not None else next(it) for p in perm]


def _t_args(call: Call):
    return list(range(call.ndim))[::-1]


def _mT_args(call: Call):
    perm = list(range(call.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return perm


@layout_aware
def _getattr_rule(call: Call):
    attr = call.args[1]
    if attr in ("T", "mT", "H", "mH"):
        return _permute_rule(_t_args if attr in ("T", "H") else _mT_args)(call)
    if attr in ("data", "real"):
        return SAME
    raise LayoutError(f"tensor attribute {attr!r}")


@layout_aware
def _expand_rule(call: Call):
    out = call.out
    if call.bind.layout is not None:
        call.out_layout = with_shape(call.bind.layout, tuple(int(v) for v in out.shape))
        return SAME
    dims = right_aligned(call.bind.dims, call.ndim, out.dim())
    std = call.standard_dims(out.dim())
    # axes reduced away (None) come back where a convolution expects them
    dims = tuple(d if d is not None else (std[a] if out.shape[std[a]] > 1 else None) for a, d in enumerate(dims))
    want = call.out_sizes(dims)
    call.out_dims = dims
    if want != call.sizes():
        return Expand(want)
    return SAME


def _tile(call: Call, bind: Bind, reps: Sequence[int], suffix: str) -> Bind:
    """Tile ``reps[a]`` times along each axis: circular pads that at most double the map."""
    sizes = list(call.sizes(bind))
    targets = [n * r for n, r in zip(sizes, reps)]
    k = 0
    while sizes != targets:
        pads = tuple((0, min(n, t - n)) for n, t in zip(sizes, targets))
        bind = call.emit(f"{suffix}{k}", Pad(pads, "circular"), bind)
        sizes = [n + p[1] for n, p in zip(sizes, pads)]
        k += 1
    return bind


def _repeat_rule(call: Call):
    given: Sequence[Any] = call.args[1:] if len(call.args) > 2 else as_ints(call.arg(1, "repeats"), 1)
    reps = [int(r) for r in (given[0] if len(given) == 1 and isinstance(given[0], (list, tuple)) else given)]
    return _tile_by(call, reps)


@layout_aware
def _roll_rule(call: Call):
    """``torch.roll`` along dims that each hold one whole axis: a pending shift of the axis
    (tensor position ``t`` holds cell ``(t - shift) mod n``), applied where an op needs the
    map itself (a circular pad on the left, then the first ``n`` cells); ops that only
    regroup positions (Swin's shifted windows) read it as it is."""
    shifts = call.arg(1, "shifts")
    dims = call.arg(2, "dims")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        raise LayoutError("roll without dims flattens the tensor")
    shifts, dims = as_ints(shifts, 1), as_ints(dims, 1)
    if len(shifts) == 1 and len(dims) > 1:
        shifts = shifts * len(dims)
    layout = call.layout_of()
    by_axis: dict[int, int] = {}
    for s, d in zip(shifts, dims):
        d = call.norm_dim(int(d))
        spatial = [f for f in layout.dims[d] if f.spatial]
        if not spatial:
            continue
        f = spatial[0]
        if len(layout.dims[d]) != 1 or f.place != 1 or f.size != layout.sizes[f.axis] or f.key:
            raise LayoutError(f"it rolls dim {d}, which holds more than one whole spatial axis ({layout.describe()})")
        by_axis[f.axis] = by_axis.get(f.axis, 0) + int(s)
    if not by_axis:
        call.out_layout = layout if call.bind.layout is not None else None
        return SAME
    call.out_layout = layout.roll(by_axis)
    return SAME


@layout_aware
def _same_rule(call: Call):
    """No-ops (``contiguous``, ``clone``, ``to``); a change of rank is a reshape."""
    if is_tensor(call.out) and call.out.dim() != call.ndim:
        return _reshape_rule(call)
    if call.bind.layout is not None:
        call.out_layout = call.bind.layout
    return SAME


# -- ONNX ---------------------------------------------------------------------------------


@layout_aware
def _onnx_reshape(call: Call):
    """``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``: the output shape is known from
    shape inference; the axes are followed as for ``view``."""
    out = first_tensor(call.out)
    if not is_tensor(out) or any(v is None for v in out.shape):
        raise LayoutError("the output shape is not known statically")
    return _reshape_rule(call)


@layout_aware
def _onnx_transpose(call: Call):
    perm = attr_ints(call, "perm")
    n = call.ndim
    perm = tuple(reversed(range(n))) if perm is None else perm
    if sorted(perm) != list(range(n)):
        raise RFMapError(f"attribute perm {list(perm)} is not a permutation of {n} dims")
    return _permute_rule(lambda c: perm)(call)


@layout_aware
def _onnx_expand(call: Call):
    out = first_tensor(call.out)
    if not is_tensor(out):
        raise LayoutError("the output shape is not known statically")
    return _expand_rule(call)


def _onnx_tile(call: Call):
    reps = const_ints(call, 1, "repeats")
    if reps is None:
        raise LayoutError("Tile with repeats computed at run time")
    if len(reps) != call.ndim:
        raise RFMapError(f"repeats has {len(reps)} entries for a rank-{call.ndim} tensor")
    return _tile_by(call, reps)


def _tile_by(call: Call, reps: Sequence[int]):
    out = call.out
    dims = right_aligned(call.bind.dims, call.ndim, out.dim())
    shift = out.dim() - len(reps)
    sizes = call.sizes()
    per_axis = [reps[d - shift] if d is not None and d - shift >= 0 else 1 for d in dims]
    call.out_dims = dims
    if all(r == 1 for r in per_axis):
        return SAME
    if any(r > 1 and n == 1 for r, n in zip(per_axis, sizes)):
        return Expand(call.out_sizes(dims))
    tiled = _tile(call, call.bind, per_axis, ".tile")
    return call.emit("", Pointwise(op=call.op_name), tiled, dims=dims)


OPS = [
    OpDef(
        "reshape", None,
        torch=torch_rules(["torch.flatten", "Tensor.flatten", "torch.reshape", "Tensor.reshape", "Tensor.view",
                           "Tensor.view_as", "Tensor.reshape_as", "torch.squeeze", "Tensor.squeeze", "torch.unsqueeze",
                           "Tensor.unsqueeze", "Tensor.unflatten", "torch.unflatten", "torch.atleast_2d",
                           "torch.atleast_3d", "nn.Flatten", "nn.Unflatten", "aten.view", "aten.reshape",
                           "aten._unsafe_view", "aten.flatten", "aten.unflatten", "aten.squeeze", "aten.unsqueeze",
                           "aten.squeeze_", "aten.unsqueeze_", "aten.view_as", "aten.reshape_as"], _reshape_rule),
        onnx=onnx_rules(["Reshape", "Flatten", "Squeeze", "Unsqueeze"], _onnx_reshape),
        description="view/reshape/flatten/squeeze: spatial axes followed through splits and merges of other dims",
    ),
    OpDef(
        "permute", Permute, layer=Permute,
        torch=torch_rules(["torch.permute", "Tensor.permute"], _permute_rule(_permute_args))
        + torch_rules(["aten.permute"], _permute_rule(lambda call: call.arg(1, "dims")))
        + torch_rules(["torch.transpose", "Tensor.transpose", "torch.swapaxes", "Tensor.swapaxes", "torch.swapdims",
                       "Tensor.swapdims", "aten.transpose", "aten.swapaxes", "aten.swapdims"], _permute_rule(_transpose_args))
        + torch_rules(["torch.movedim", "Tensor.movedim", "torch.moveaxis", "Tensor.moveaxis", "aten.movedim"],
                      _permute_rule(_movedim_args))
        + torch_rules(["torch.t", "Tensor.t", "aten.t", "aten.numpy_T"], _permute_rule(_t_args))
        + torch_rules(["builtins.getattr"], _getattr_rule),
        onnx=onnx_rules(["Transpose"], _onnx_transpose),
        realize=f"{REALIZE}:permute",
        description="permute/transpose: the spatial axes move with their dims (spec files: the spatial axes' new "
                    "order, axes: [1, 0] swaps H and W)",
    ),
    OpDef(
        "expand", None, layer=Expand,
        torch=torch_rules(["Tensor.expand", "Tensor.expand_as", "torch.broadcast_to", "Tensor.broadcast_to",
                           "aten.expand", "aten.expand_as", "aten.broadcast_to"], _expand_rule),
        onnx=onnx_rules(["Expand"], _onnx_expand),
        realize="rfmap.rules.torch_realize:expand",
        description="broadcast a 1-cell axis to n cells: every cell sees the one input cell",
    ),
    OpDef(
        "tile", None,
        torch=torch_rules(["Tensor.repeat", "torch.tile", "Tensor.tile", "aten.repeat"], _repeat_rule),
        onnx=onnx_rules(["Tile"], _onnx_tile),
        description="tiling: circular padding that repeats the map",
    ),
    OpDef("roll", None, torch=torch_rules(["torch.roll", "Tensor.roll", "aten.roll"], _roll_rule),
          description="circular shift: a circular pad, then the first n cells"),
    OpDef(
        "no_op", None,
        torch=torch_rules([f"Tensor.{n}" for n in ("contiguous", "clone", "detach", "detach_", "to", "type", "type_as",
                                                   "float", "double", "half", "bfloat16", "int", "long", "bool", "cpu",
                                                   "cuda", "requires_grad_", "pin_memory", "coalesce", "resolve_conj",
                                                   "resolve_neg", "align_as")]
                          + ["torch.clone", "torch.detach"]
                          + [f"aten.{n}" for n in ("clone", "contiguous", "alias", "detach", "_to_copy", "to",
                                                   "lift_fresh_copy", "_assert_tensor_metadata", "dropout_", "lift_fresh")],
                          _same_rule),
        description="ops that change neither geometry nor layout",
    ),
    OpDef(
        "constant_like", None,
        torch=torch_rules(["torch.zeros_like", "torch.ones_like", "torch.empty_like", "torch.full_like", "torch.rand_like",
                           "torch.randn_like", "torch.randint_like", "Tensor.new_zeros", "Tensor.new_ones",
                           "Tensor.new_empty", "Tensor.new_full", "Tensor.new_tensor", "aten.zeros_like", "aten.ones_like",
                           "aten.empty_like", "aten.full_like", "aten.rand_like", "aten.randn_like", "aten.new_zeros",
                           "aten.new_ones", "aten.new_empty", "aten.new_full"], no_node),
        onnx=onnx_rules(["Shape", "Size", "ConstantOfShape", "EyeLike", "RandomNormalLike", "RandomUniformLike"], no_node),
        description="tensors whose values do not depend on the input's pixels",
    ),
]
