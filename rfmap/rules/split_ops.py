"""Ops of other rule families on tensors whose spatial axes are split across dims
(:mod:`rfmap.rules.split_axes`): elementwise ops and merges (maps of a subset of the digits
are broadcast; constant masks added to attention scores split their key groups), indexing,
``unbind``/``split``/``select``/slices of non-spatial dims, padding by nothing; and
concatenated pieces of one map along an axis (a roll as ONNX writes it), which is a
rearrangement of its cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rfmap.core.layers import Expand, Merge, Pointwise
from rfmap.core.regroup import Regroup
from rfmap.rules.call import SAME, Bind, Call, LayoutError, distinct, first_tensor, is_tensor, leaves
from rfmap.rules.layout_algebra import Factor, Layout, with_shape, without_dims
from rfmap.rules.split_axes import NeedsMap, _out_layout, _plain, is_split, settle


def pointwise_split(call: Call):
    """An elementwise op: one map keeps its layout (broadcast to the output's shape)."""
    binds = distinct(call)
    if len(binds) > 1:
        return merge_split(call, "add")
    v, b = binds[0]
    call.out_layout = _out_layout(call, call.layout_of(b, v))
    return Pointwise(op=call.op_name)


def elementwise_split(call: Call, op: str):
    """An elementwise op on split layouts; a constant mask added to attention scores (or
    ``masked_fill`` with a very negative value) splits their key groups."""
    binds = distinct(call)
    if len(binds) > 1:
        return merge_split(call, op)
    v, b = binds[0]
    layout = call.layout_of(b, v)
    if layout.is_pair:
        allowed = _mask_of(call)
        if allowed is not None:
            from rfmap.rules.window_attention import with_mask

            layout = with_mask(call, layout, allowed)
    call.out_layout = _out_layout(call, layout)
    return Pointwise(op=call.op_name)


def _mask_of(call: Call) -> np.ndarray | None:
    """Which pairs a constant argument lets through (``None``: no such argument)."""
    from rfmap.rules.window_attention import MASKED

    name = call.op_name.strip("_").lower()
    consts = [call.const(v) for v in leaves(list(call.args) + list(call.kwargs.values()))
              if hasattr(v, "shape") and not any(v is x for x, _ in call.inputs)]
    consts = [np.asarray(c) for c in consts if c is not None]
    if not consts:
        return None
    if name in ("add", "iadd", "radd") and consts[0].dtype != bool:
        return consts[0].astype(np.float64) > MASKED
    if name.startswith("masked_fill") and consts[0].dtype == bool:
        value = call.arg(2, "value")
        value = call.const(value) if is_tensor(value) else value
        if value is not None and float(np.asarray(value)) <= MASKED:
            return ~consts[0]
    return None


def merge_split(call: Call, op: str):
    """An elementwise op of several maps: their digits must be where the others' are (maps of
    one cell are broadcast to the others' cells)."""
    out_shape = tuple(int(v) for v in first_tensor(call.out).shape)
    laid = []
    for v, b in distinct(call):
        b = settle(call, b) if is_split(b) and any(b.layout.offsets) else b
        laid.append((b, with_shape(call.layout_of(b, v), out_shape)))
    ref = max(laid, key=lambda item: sum(f.spatial for fs in item[1].dims for f in fs))[1]
    if ref.is_pair:
        raise LayoutError("it combines attention scores with another map")
    want = _spatial_signature(ref)
    fitted = []
    for i, (b, lay) in enumerate(laid):
        if all(n == 1 for n in lay.sizes):
            b = call.emit(f".expand{i}", Expand(ref.sizes), _plain(b))
        elif _spatial_signature(lay) != want:
            groups = _broadcast_groups(lay, ref)
            if groups is None:
                raise LayoutError(f"its inputs hold spatial digits at different dims ({lay.describe()} vs {ref.describe()})")
            b = call.emit(f".expand{i}", Regroup(groups, op="expand"), _plain(b))
        fitted.append(_plain(b))
    call.out_layout = ref
    if len({b.node for b in fitted}) == 1:
        return call.emit("", Pointwise(op=call.op_name), fitted[0])
    return call.emit("", Merge(op), *fitted)


def _broadcast_groups(small: Layout, ref: Layout):
    """Where ``small`` holds a subset of ``ref``'s digits (the rest broadcast over, as a
    context vector per patch position expanded back to every patch in MobileViT v2), per
    axis the groups that give each cell of ``ref``'s map the cell of ``small``'s it reads;
    ``None`` where the layouts do not nest that way."""
    if any(small.offsets) or small.is_pair or ref.is_pair or len(small.dims) != len(ref.dims):
        return None
    groups: list[Any] = []
    for a, n in enumerate(ref.sizes):
        t = ref.positions(a)
        cell = np.zeros(n, dtype=np.int64)
        for fs, rs in zip(small.dims, ref.dims):
            mine = [f for f in fs if f.axis == a]
            theirs = [f for f in rs if f.axis == a]
            if not mine:
                continue
            if [f.size for f in mine] != [f.size for f in theirs]:
                return None
            for f, r in zip(mine, theirs):
                cell += ((t // r.place) % r.size) * f.place
        if small.sizes[a] == n and np.array_equal(cell, np.arange(n)):
            groups.append(None)
        else:
            groups.append((tuple(range(small.sizes[a])), tuple(cell.tolist())))
    return tuple(groups)


def _spatial_signature(layout: Layout):
    return tuple(tuple((f.axis, f.size, f.place, f.key) for f in fs if f.spatial) for fs in layout.dims), layout.offsets


def _index_entries(call: Call, idx: Any) -> list:
    idx = idx if isinstance(idx, tuple) else (idx,)
    n = call.ndim
    consuming = sum(1 for e in idx if e is not None and e is not Ellipsis)
    entries: list = []
    for e in idx:
        if e is Ellipsis:
            entries.extend([slice(None)] * (n - consuming))
        else:
            entries.append(e)
    entries.extend([slice(None)] * (n - sum(1 for e in entries if e is not None)))
    return entries


def getitem_split(call: Call):
    """Indexing that leaves every dim with spatial digits whole (``qkv[0]``, ``x[:, None]``)."""
    seq_bind = call.arg_binds[0]
    if isinstance(seq_bind, (list, tuple)):
        return seq_bind[call.args[1]]
    layout = call.layout_of()
    dims: list[tuple[Factor, ...]] = []
    d = 0
    for e in _index_entries(call, call.args[1]):
        if e is None:
            dims.append(())
            continue
        size = int(call.x.shape[d])
        spatial = any(f.spatial for f in layout.dims[d])
        if isinstance(e, slice) and slice(e.start, e.stop, e.step).indices(size) == (0, size, 1):
            dims.append(layout.dims[d])
        elif spatial:
            raise LayoutError(f"it indexes dim {d}, which holds spatial digits ({layout.describe()})")
        elif isinstance(e, slice):
            dims.append(())
        elif hasattr(e, "__index__") and not is_tensor(e):
            pass
        else:
            raise LayoutError("advanced indexing of a tensor with split spatial axes")
        d += 1
    call.out_layout = with_shape(Layout(tuple(dims), layout.sizes, layout.offsets, layout.key_node, layout.key_labels),
                                 tuple(int(v) for v in call.out.shape))
    return SAME


def _pieces(call: Call, dim: int, keep: bool):
    layout = call.layout_of()
    if any(f.spatial for f in layout.dims[dim]):
        raise LayoutError(f"it splits dim {dim}, which holds spatial digits ({layout.describe()})")
    outs = [o for o in leaves(call.out) if is_tensor(o)]
    base = layout if keep else without_dims(layout, [dim])
    pieces = []
    for o in outs:
        lay = with_shape(base, tuple(int(v) for v in o.shape))
        pieces.append(call.bind_for(call.bind.node, lay))
    return pieces


def unbind_split(call: Call):
    return _pieces(call, call.norm_dim(int(call.arg(1, "dim", 0))), keep=False)


def split_split(call: Call):
    dim = call.kwargs.get("axis", 0) if call.kind == "onnx" else call.arg(2, "dim", 0)
    return _pieces(call, call.norm_dim(int(dim)), keep=True)


def slice_split(call: Call):
    """A slice (``x.narrow``, ``aten.slice``, ONNX ``Slice``) of dims without spatial digits."""
    layout = call.layout_of()
    out = tuple(int(v) for v in first_tensor(call.out).shape)
    for d, (fs, n) in enumerate(zip(layout.dims, out)):
        if any(f.spatial for f in fs) and int(call.x.shape[d]) != n:
            raise LayoutError(f"it slices dim {d}, which holds spatial digits ({layout.describe()})")
    call.out_layout = with_shape(layout, out)
    return SAME


def select_split(call: Call):
    dim = call.norm_dim(int(call.arg(1, "dim")))
    layout = call.layout_of()
    call.out_layout = without_dims(layout, [dim])
    return SAME


def pad_split(call: Call):
    """``F.pad`` of nothing (Swin pads to whole windows): no op; real padding needs the map."""
    pad = call.arg(1, "pad") if call.module is None else getattr(call.module, "padding", None)
    if pad is not None and all(int(p) == 0 for p in (pad if isinstance(pad, (list, tuple)) else (pad,))):
        call.out_layout = call.layout_of()
        return SAME
    raise NeedsMap()


_GENERIC_CACHE: dict[Callable, Callable] = {}


def generic_rules() -> dict[Callable, Callable]:
    """The split-layout versions of other families' rules (by the rule they replace)."""
    if not _GENERIC_CACHE:
        from rfmap.rules import pointwise, slicing

        pairs = [("getitem", getitem_split), ("unbind", unbind_split), ("split", split_split),
                 ("select", select_split), ("pad_fn", pad_split), ("narrow", slice_split), ("aten_slice", slice_split),
                 ("onnx_slice", slice_split)]
        for name, fn in pairs:
            rule = getattr(slicing, name, None)
            if rule is not None:
                _GENERIC_CACHE[rule] = fn
        module_pointwise = getattr(pointwise, "module_pointwise", None)
        if module_pointwise is not None:
            _GENERIC_CACHE[module_pointwise] = pointwise_split
    return _GENERIC_CACHE


# -- concatenated pieces of one map ---------------------------------------------------------------


def concat_pieces(call: Call) -> Bind | None:
    """``cat([x[..., s:, :], x[..., :s, :]], dim)`` and the like: slices of one map put back
    together along one axis are a rearrangement of its cells (a roll, a swap of halves).
    ``None`` where the call is not that."""
    binds: Any
    if call.kind == "onnx":
        binds, dim = list(call.arg_binds), call.kwargs.get("axis")
        if not isinstance(dim, int) or isinstance(dim, bool):
            return None  # no axis, or a bad one: the Concat rule says which
    else:
        binds, dim = call.arg_binds[0] if call.arg_binds else None, call.arg(1, "dim", 0)
    if not isinstance(binds, (list, tuple)) or len(binds) < 2 or not all(isinstance(b, Bind) for b in binds):
        return None
    if any(b.layout is not None or b.dims != binds[0].dims for b in binds):
        return None
    dim = int(dim) + (first_tensor(call.out).dim() if int(dim) < 0 else 0)
    axes = [a for a, d in enumerate(binds[0].dims) if d == dim]
    if len(axes) != 1:
        return None
    axis = axes[0]
    nodes = {n.name: n for n in call._front.nodes}
    source: Any = None
    cells: list[np.ndarray] = []
    for b in binds:
        node = nodes[b.node]
        crop = node.layer if type(node.layer).__name__ == "Crop" else None
        parent = node.inputs[0] if crop is not None else b.node
        if source not in (None, parent):
            return None
        source = parent
        n_src = call.sizes(Bind(parent, b.dims))
        if crop is None:
            cells.append(np.arange(n_src[axis], dtype=np.int64))
            continue
        maps = crop.axis_maps(n_src)
        for a, m in enumerate(maps):
            o = np.arange(m.n_out, dtype=np.int64)
            idx, valid = m.taps(o)
            if idx.shape[1] != 1 or not valid.all() or (a != axis and not np.array_equal(idx[:, 0], o)):
                return None
            if a == axis:
                cells.append(idx[:, 0])
    n_src = call.sizes(Bind(source, binds[0].dims))
    groups: list[Any] = [None] * len(n_src)
    groups[axis] = (tuple(range(n_src[axis])), tuple(np.concatenate(cells).tolist()))
    call.out_dims = binds[0].dims
    return call.emit("", Regroup(tuple(groups), op="concat_pieces"), Bind(source, binds[0].dims))
