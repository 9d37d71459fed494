"""Padding, cropping and slicing: ``F.pad`` and the pad modules, indexing, ``narrow``,
``select``, ``split``/``chunk``/``unbind``; ONNX ``Pad``, ``Slice``, ``Split``, ``Gather``.

Layers: :class:`~rfmap.core.layers.Pad`, :class:`~rfmap.core.layers.Crop`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfmap.core.layers import Crop, Pad, Pointwise
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import SAME, Bind, Call, LayoutError, is_tensor, leaves
from rfmap.rules.common import REALIZE, crop_for, onnx_rules, torch_rules
from rfmap.rules.erf_moments import window_moments
from rfmap.rules.onnx_attrs import attr_axis, attr_ints, attr_str, check_axes, const, const_ints

#: ONNX Pad's modes (rfmap's layers take these spellings too)
ONNX_PAD_MODES = ("constant", "reflect", "edge", "wrap")

# -- padding ------------------------------------------------------------------------------


def pad_pairs(pad: Sequence[int], bind: Bind, ndim: int) -> tuple[tuple[int, int], ...]:
    """``F.pad``'s flat list (last dim first) as per-axis (left, right) pairs of the map."""
    pairs = [(0, 0)] * len(bind.dims)
    pad = [int(p) for p in pad]
    if len(pad) % 2:
        raise RFMapError(f"pad has an odd number of entries ({len(pad)})")
    for i in range(len(pad) // 2):
        d = ndim - 1 - i
        axes = [a for a, ad in enumerate(bind.dims) if ad == d]
        if not axes:
            continue
        if len(axes) > 1:
            raise LayoutError("it pads a dim that holds several spatial axes")
        pairs[axes[0]] = (pad[2 * i], pad[2 * i + 1])
    return tuple(pairs)


def pad_layer(call: Call, pairs, mode):
    if all(p == (0, 0) for p in pairs):
        return Pointwise(op="pad")
    return Pad(pairs, mode)


def pad_fn(call: Call):
    # F.pad(input, pad, mode='constant', value=None)
    return pad_layer(call, pad_pairs(call.arg(1, "pad"), call.bind, call.ndim), call.arg(2, "mode", "constant"))


def aten_pad_mode(mode: str):
    def rule(call: Call):
        pad = call.arg(1, "padding" if mode != "constant" else "pad")
        return pad_layer(call, pad_pairs(pad, call.bind, call.ndim), mode)

    return rule


def pad_module(call: Call):
    m = call.module
    name = type(m).__name__
    mode = "reflect" if name.startswith("Reflection") else "replicate" if name.startswith("Replication") else (
        "circular" if name.startswith("Circular") else "constant"
    )
    return pad_layer(call, pad_pairs(m.padding, call.bind, call.ndim), mode)


def onnx_pad(call: Call):
    """ONNX ``Pad``: ``pads`` (input since opset 11, else attribute) ``[x1_begin, x2_begin,
    ..., x1_end, x2_end]`` over all dims (or over ``axes``); modes constant, reflect, edge, wrap."""
    mode = attr_str(call, "mode", "constant", ONNX_PAD_MODES)
    rank = call.ndim
    pads = const_ints(call, 1, "pads")
    if pads is None:
        if len(call.args) > 1 and call.args[1] is not None:
            raise LayoutError("Pad with pads computed at run time")
        pads = attr_ints(call, "pads")
        if pads is None:
            raise RFMapError("Pad without pads")
    axes = const_ints(call, 3, "axes")
    if axes is not None:
        if len(pads) != 2 * len(axes):
            raise RFMapError(f"pads has {len(pads)} entries for {len(axes)} axes")
        full = [0] * (2 * rank)
        for j, ax in enumerate(check_axes(call, axes, "axes")):
            full[ax], full[ax + rank] = pads[j], pads[j + len(axes)]
        pads = tuple(full)
    if len(pads) != 2 * rank:
        raise RFMapError(f"pads has {len(pads)} entries for a rank-{rank} tensor")
    pairs = [(0, 0)] * len(call.bind.dims)
    for d in range(rank):
        if pads[d] == 0 and pads[d + rank] == 0:
            continue
        axes_here = [a for a, ad in enumerate(call.bind.dims) if ad == d]
        if not axes_here:  # batch or channels: no geometry
            continue
        if len(axes_here) > 1:
            raise LayoutError("it pads a dim that holds several spatial axes")
        pairs[axes_here[0]] = (pads[d], pads[d + rank])
    return pad_layer(call, tuple(pairs), mode)


# -- slicing ------------------------------------------------------------------------------


def _as_int(v: Any):
    if is_tensor(v):
        return None if getattr(getattr(v, "device", None), "type", "") == "meta" else int(v.item())
    return None if v is None else int(v)


def _expand_index(call: Call, idx: tuple) -> list:
    ndim = call.ndim
    consuming = sum(1 for e in idx if e is not None and e is not Ellipsis and not isinstance(e, bool))
    for e in idx:
        if is_tensor(e) and "bool" in str(getattr(e, "dtype", "")):
            consuming += e.dim() - 1
    entries: list = []
    for e in idx:
        if e is Ellipsis:
            entries.extend([slice(None)] * (ndim - consuming))
        else:
            entries.append(e)
    entries.extend([slice(None)] * (ndim - sum(1 for e in entries if e is not None)))
    return entries


def getitem(call: Call):
    seq_bind = call.arg_binds[0]
    if isinstance(seq_bind, (list, tuple)):  # an element of a tuple output
        return seq_bind[call.args[1]]
    idx = call.args[1]
    b = call.bind
    entries = _expand_index(call, idx if isinstance(idx, tuple) else (idx,))
    if sum(1 for e in entries if is_tensor(e) or isinstance(e, (list, bool))) > 1:
        raise LayoutError("advanced indexing with several index tensors")
    per_dim: dict[int, tuple] = {}
    dim_map: dict[int, int | None] = {}
    d_in, d_out = 0, 0
    for e in entries:
        if e is None:
            d_out += 1
            continue
        if isinstance(e, slice):
            per_dim[d_in] = (_as_int(e.start), _as_int(e.stop), _as_int(e.step))
            dim_map[d_in] = d_out
            d_out += 1
        elif hasattr(e, "__index__") and not isinstance(e, bool) and not is_tensor(e):
            i = int(e) % int(call.x.shape[d_in])
            per_dim[d_in] = (i, i + 1, 1)
            dim_map[d_in] = None
        else:  # one index tensor / list on a dim
            if any(ad == d_in for ad in b.dims):
                raise LayoutError("it indexes a spatial dim with a tensor")
            dim_map[d_in] = d_out
            d_out += e.dim() if is_tensor(e) else 1
        d_in += 1
    new_dims = tuple(None if d is None else dim_map.get(d, d) for d in b.dims)
    if call.out.dim() != d_out:
        raise LayoutError("indexing moved dims in a way rfmap does not follow")
    crop = crop_for(call, per_dim, b)
    call.out_dims = new_dims
    return SAME if crop is None else crop


def narrow(call: Call):
    dim = call.norm_dim(int(call.arg(1, "dim")))
    start = int(call.arg(2, "start"))
    length = int(call.arg(3, "length"))
    if start < 0:
        start %= int(call.x.shape[dim])
    crop = crop_for(call, {dim: (start, start + length, 1)}, call.bind)
    return SAME if crop is None else crop


def _drop_dim(dims, dim: int):
    return tuple(None if d == dim else (d - 1 if d is not None and d > dim else d) for d in dims)


def select(call: Call):
    dim = call.norm_dim(int(call.arg(1, "dim")))
    i = int(call.arg(2, "index")) % int(call.x.shape[dim])
    crop = crop_for(call, {dim: (i, i + 1, 1)}, call.bind)
    call.out_dims = _drop_dim(call.bind.dims, dim)
    return SAME if crop is None else crop


def aten_slice(call: Call):
    # aten.slice.Tensor(input, dim=0, start=None, end=None, step=1)
    dim = call.norm_dim(int(call.arg(1, "dim", 0)))
    start, end, step = call.arg(2, "start"), call.arg(3, "end"), call.arg(4, "step", 1)
    if end is not None and end > int(call.x.shape[dim]):
        end = None
    crop = crop_for(call, {dim: (start, end, step)}, call.bind)
    return SAME if crop is None else crop


def onnx_slice(call: Call):
    """ONNX ``Slice``: ``starts``, ``ends``, ``axes``, ``steps`` (inputs since opset 10)."""
    starts, ends = const_ints(call, 1, "starts"), const_ints(call, 2, "ends")
    if starts is None and len(call.args) > 1:
        raise LayoutError("Slice with bounds computed at run time")
    if starts is None:  # opset < 10: attributes
        starts, ends = attr_ints(call, "starts"), attr_ints(call, "ends")
        axes, steps = attr_ints(call, "axes"), None
    else:
        axes, steps = const_ints(call, 3, "axes"), const_ints(call, 4, "steps")
    if starts is None or ends is None or len(starts) != len(ends):
        raise RFMapError("Slice needs starts and ends of equal length")
    axes = tuple(range(len(starts))) if axes is None else check_axes(call, axes, "axes")
    steps = (1,) * len(starts) if steps is None else steps
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise RFMapError("Slice's starts, ends, axes and steps differ in length")
    per_dim = {}
    for d, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise RFMapError("Slice with step 0")
        n = int(call.x.shape[d])
        if st < 0 and any(ad == d for ad in call.bind.dims):
            raise LayoutError("a negative step reverses a spatial axis")
        a, b, _ = slice(s, e, st).indices(n)
        per_dim[d] = (a, b, st)
    crop = crop_for(call, per_dim, call.bind)
    return SAME if crop is None else crop


def split_pieces(call: Call, dim: int, lengths: Sequence[int], keep: bool):
    b = call.bind
    on_axis = [a for a, d in enumerate(b.dims) if d == dim]
    outs = [o for o in leaves(call.out) if is_tensor(o)]
    if not on_axis:
        dims = b.dims if keep else _drop_dim(b.dims, dim)
        node = call.emit("", Pointwise(op=call.op_name), b)
        return [Bind(node.node, dims) for _ in outs]
    if len(on_axis) > 1:
        raise LayoutError("it splits a dim that holds several spatial axes")
    pieces, start = [], 0
    for i, n in enumerate(lengths):  # one crop per piece; pieces nobody reads are dropped later
        crop = crop_for(call, {dim: (start, start + n, 1)}, b)
        dims = b.dims if keep else _drop_dim(b.dims, dim)
        pieces.append(call.emit(f".{i}", crop, b, dims=dims) if crop is not None else Bind(b.node, dims))
        start += n
    return pieces


def split(call: Call):
    if call.kind == "onnx":
        dim = attr_axis(call, "axis", 0)
    else:
        dim = call.norm_dim(int(call.arg(2, "dim", 0)))
    lengths = [int(o.shape[dim]) for o in leaves(call.out) if is_tensor(o)]
    return split_pieces(call, dim, lengths, keep=True)


def unbind(call: Call):
    dim = call.norm_dim(int(call.arg(1, "dim", 0)))
    return split_pieces(call, dim, [1] * int(call.x.shape[dim]), keep=False)


def onnx_gather(call: Call):
    """ONNX ``Gather`` with constant indices: one index or a contiguous range on a spatial
    dim is a crop; on another dim the map passes through."""
    dim = attr_axis(call, "axis", 0)
    idx = const(call, 1)
    if call.binding_of(1, None) is not None:
        raise LayoutError("Gather with indices that depend on the input")
    if not any(ad == dim for ad in call.bind.dims):
        width = 0 if idx is None else getattr(idx, "ndim", 0)
        call.out_dims = tuple(None if d is None else (d + width - 1 if d > dim else d) for d in call.bind.dims)
        return SAME
    if idx is None:
        raise LayoutError("Gather on a spatial dim with indices computed at run time")
    n = int(call.x.shape[dim])
    if any(not -n <= int(v) < n for v in idx.ravel()):
        raise RFMapError(f"Gather indices {idx.ravel().tolist()[:8]} are out of range for a dim of size {n}")
    flat = [int(v) % n for v in idx.ravel()]
    if getattr(idx, "ndim", 0) == 0:
        call.out_dims = _drop_dim(call.bind.dims, dim)
        return crop_for(call, {dim: (flat[0], flat[0] + 1, 1)}, call.bind)
    if idx.ndim == 1 and flat == list(range(flat[0], flat[0] + len(flat))):
        return crop_for(call, {dim: (flat[0], flat[0] + len(flat), 1)}, call.bind) or SAME
    raise LayoutError("Gather of scattered positions along a spatial dim")


OPS = [
    OpDef(
        "pad", Pad, layer=Pad,
        torch=torch_rules(["F.pad", "torch.constant_pad_nd", "aten.pad"], pad_fn)
        + torch_rules([f"nn.{kind}Pad{d}d" for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular")
                       for d in (1, 2, 3)], pad_module)
        + torch_rules(["aten.constant_pad_nd"], aten_pad_mode("constant"))
        + torch_rules([f"aten.reflection_pad{d}d" for d in (1, 2, 3)], aten_pad_mode("reflect"))
        + torch_rules([f"aten.replication_pad{d}d" for d in (1, 2, 3)], aten_pad_mode("replicate"))
        + torch_rules(["aten._pad_circular"], aten_pad_mode("circular")),
        onnx=onnx_rules(["Pad"], onnx_pad),
        realize=f"{REALIZE}:pad", erf=window_moments,
        description="explicit padding per axis (left, right), negative crops; mode zeros/constant, reflect, replicate/edge, circular/wrap",
    ),
    OpDef(
        "crop", Crop, aliases=("slice",), layer=Crop,
        torch=torch_rules(["operator.getitem"], getitem)
        + torch_rules(["torch.narrow", "Tensor.narrow", "aten.narrow"], narrow)
        + torch_rules(["torch.select", "Tensor.select", "aten.select"], select)
        + torch_rules(["aten.slice"], aten_slice),
        onnx=onnx_rules(["Slice"], onnx_slice) + onnx_rules(["Gather"], onnx_gather),
        realize=f"{REALIZE}:crop", erf=window_moments,
        description="slicing x[start:stop:step] per axis (Python's rules for negative and missing bounds)",
    ),
    OpDef(
        "split", None,
        torch=torch_rules(["torch.split", "Tensor.split", "torch.chunk", "Tensor.chunk", "aten.split",
                           "aten.split_with_sizes", "aten.chunk"], split)
        + torch_rules(["torch.unbind", "Tensor.unbind", "aten.unbind"], unbind),
        onnx=onnx_rules(["Split"], split),
        description="pieces of a tensor along a dim: crops along a spatial dim",
    ),
]
