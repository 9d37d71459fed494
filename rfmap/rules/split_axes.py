"""Rules for tensors whose spatial axes are split across dims (windows folded into the
batch, tokens, space-to-depth in the channels, channels-last blocks, pending rolls).

Where such a tensor (a :class:`~rfmap.rules.call.Bind` with a
:class:`~rfmap.rules.layout_algebra.Layout`) reaches an op, the front end calls
:func:`route`: rules written for split layouts (marked ``layout_aware``) read the layout
themselves; indexing, padding and pointwise ops of the other rule families have their
split-layout versions in :mod:`rfmap.rules.split_ops`; any other rule gets the tensor after pending rolls are applied
(a permutation of the cells), and where its axes are
still split, only a rule that reads its input through :meth:`Call.standard` (convolutions,
pooling, resizing) may take it -- :func:`standardize` then turns the layout back into a map
(a pixel unshuffle or shuffle where the layout is one, else a :class:`~rfmap.core.regroup.Regroup`).
Otherwise the op is unsupported and treated as global, saying which op and why.

The helpers :func:`emit_mix` and :func:`emit_drop` are what mixing a dim means for the
digits on it (see :mod:`rfmap.core.regroup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rfmap.core.layers import Expand, GlobalOp, Merge, PixelShuffle, PixelUnshuffle, Pointwise
from rfmap.core.regroup import Regroup
from rfmap.rules.call import Bind, Call, LayoutError, first_tensor
from rfmap.rules.layout_algebra import Layout, drop_digits, mix_labels, relabel, with_shape, without_dims


class NeedsMap(Exception):
    """A split-layout rule declines: the op needs the map itself (pending rolls applied)."""


def layout_aware(fn: Callable) -> Callable:
    """Mark a converter that reads split layouts itself (``call.layout_of``)."""
    fn.layout_aware = True  # type: ignore[attr-defined]
    return fn


def is_split(bind: Any) -> bool:
    return isinstance(bind, Bind) and bind.layout is not None


def has_split(call: Call) -> bool:
    return any(b.layout is not None for _, b in call.inputs)


def _plain(bind: Bind) -> Bind:
    return Bind(bind.node, bind.dims)


# -- the router ----------------------------------------------------------------------------


def dispatch(call: Call, convert: Callable) -> Any:
    """How the front end converts a call: split layouts through :func:`route`; a
    concatenation of pieces of one map along an axis (``torch.roll`` as ONNX writes it:
    two slices concatenated) as the permutation it is; everything else by its rule."""
    if has_split(call):
        return route(call, convert)
    if call.op_name in ("cat", "concat", "concatenate"):
        from rfmap.rules.split_ops import concat_pieces

        pieces = concat_pieces(call)
        if pieces is not None:
            return pieces
    return convert(call)


def route(call: Call, convert: Callable) -> Any:
    """Convert a call that reads a tensor with split axes (see the module docstring)."""
    if getattr(convert, "layout_aware", False):
        return convert(call)
    generic = _generic().get(convert)
    if generic is not None:
        try:
            return generic(call)
        except NeedsMap:
            pass
    for _v, b in list(call.inputs):
        if is_split(b):
            call.rebind(b, settle(call, b))
    if not any(is_split(b) for _, b in call.inputs):
        return convert(call)
    if not all(b is call.bind or not is_split(b) for _, b in call.inputs):
        raise LayoutError(f"it reads tensors whose spatial axes are split across dims ({_describe(call)})")
    split = call.bind
    call.virtual_ok = True  # a 1x1 convolution reads any layout: see standardize
    result = convert(call)
    if getattr(call, "virtual", None) is not None:
        return _pointwise_or_raise(call, split, result)
    if any(is_split(b) for _, b in call.inputs):
        raise LayoutError(f"its rule cannot follow spatial axes split across dims ({_describe(call)})")
    return result


def _pointwise_or_raise(call: Call, split: Bind, result: Any):
    """A rule read a split layout as a map it could not make (:func:`standardize`): fine
    where its layer keeps every position where it is (a 1x1 convolution, as in MobileViT's
    patches); otherwise the op is unsupported."""
    from rfmap.core.layers import Layer

    sizes, reason = call.virtual
    if isinstance(result, Layer) and not result.merge:
        maps = result.axis_maps(sizes)
        if all(m.n_out == m.n_in and np.array_equal(m.window(np.arange(m.n_in))[0], np.arange(m.n_in))
               and np.array_equal(m.window(np.arange(m.n_in))[1], np.arange(m.n_in)) for m in maps):
            call.rebind(call.bind, split)
            call.out_layout = _out_layout(call, call.layout_of(split, call.x))
            call.out_dims = None
            return Pointwise(op=call.op_name)
    raise LayoutError(reason)


def _describe(call: Call) -> str:
    for _, b in call.inputs:
        if is_split(b):
            return f"layout {b.layout.describe()}"
    return "layout"


# -- settling rolls, standard layouts ----------------------------------------------------------


def settle(call: Call, bind: Bind) -> Bind:
    """Apply pending rolls (a permutation of the cells per rolled axis, so that boxes
    stay at the cells' real positions): the returned bind's layout has no offsets (plain
    where it can be)."""
    if is_split(bind) and bind.layout.is_pair:
        from rfmap.rules.window_attention import resolve_pair

        bind = resolve_pair(call, bind)
    layout: Layout = bind.layout
    if layout is None or not any(layout.offsets):
        return bind
    groups = []
    for n, off in zip(layout.sizes, layout.offsets):
        cells = np.arange(n, dtype=np.int64)
        groups.append(None if off == 0 else (tuple(cells.tolist()), tuple(((cells - off) % n).tolist())))
    node = call.emit(".roll", Regroup(tuple(groups), op="roll"), _plain(bind))
    settled = Layout(layout.dims, layout.sizes, (0,) * len(layout.sizes))
    return call.bind_for(node.node, settled)


def standardize(call: Call) -> Bind:
    """Make the input a map on the last ``rank`` dims for a convolution, pooling or resize:
    digits of an axis on the channel dim are mixed by the op (dropped: a pixel unshuffle);
    channels on an axis's dim become new inner cells (a pixel shuffle)."""
    bind = settle(call, call.bind)
    layout = call.layout_of(bind, call.x)
    n = call.ndim
    want = call.standard_dims()
    if n != call.rank + 2:
        raise LayoutError(f"a rank-{n} tensor with split spatial axes read as a map")
    groups, sizes, named = [], [], []
    try:
        for a in range(call.rank):
            got = _standard_axis(layout, a, want[a])
            groups.append(got[:2])
            sizes.append(len(got[1]))
            named.append(got[2])
        if any(f.spatial for f in layout.dims[0]):
            raise LayoutError("a convolution over tensors whose batch dim holds spatial positions (windows)")
    except LayoutError as exc:
        if not getattr(call, "virtual_ok", False):
            raise
        # the op may still keep every position (a 1x1 convolution): read the tensor's own dims
        call.virtual = (tuple(int(call.x.shape[d]) for d in want), f"{exc} ({layout.describe()})")
        virtual = Bind(bind.node, want)
        call.rebind(call.bind, virtual)
        return virtual
    if all(k is not None and k[0] == named[0][0] for k in named):
        layer: Any = (PixelUnshuffle if named[0][0] == "unshuffle" else PixelShuffle)(tuple(k[1] for k in named))
    else:
        layer = Regroup(tuple(groups), op="space_to_depth")
    node = call.emit(".layout", layer, _plain(bind), dims=want)
    if tuple(call.sizes(node)) != tuple(sizes):
        raise LayoutError("the layout's cells do not match the tensor's")
    new = Bind(node.node, want)
    call.rebind(call.bind, new)
    return new


def as_map(call: Call, bind: Bind) -> Bind:
    """A model's output whose axes are split (channels-last after patch merging, with the
    2x2 neighbours still in the channels): the map of the tensor's own grid -- each axis on
    the dim of its outermost digit, the digits on other dims (the channels) mixed away -- so
    that its cells are the tensor's.  Unchanged where the tensor has no such grid (windows)."""
    bind = settle(call, bind)
    layout: Layout | None = bind.layout
    if layout is None:
        return bind
    homes: list[int | None] = []
    for a, n in enumerate(layout.sizes):
        digits = layout.factors(a)
        homes.append(None if n == 1 or not digits else max(digits, key=lambda df: df[1].place)[0])
    taken = [h for h in homes if h is not None]
    if len(set(taken)) != len(taken) or 0 in taken:
        return bind
    droppable = {d for d in range(1, len(layout.dims)) if d not in taken}
    try:
        got = [None if h is None else _standard_axis(layout, a, h, droppable) for a, h in enumerate(homes)]
    except LayoutError:
        return bind
    groups = tuple(None if g is None else g[:2] for g in got)
    node = call.emit(".grid", Regroup(groups, op="space_to_depth"), _plain(bind), dims=tuple(homes))
    return Bind(node.node, tuple(homes))


def _standard_axis(layout: Layout, axis: int, dim: int, droppable: set[int] | None = None):
    """Per axis: ``(in_group, out_group, named)`` of the map a convolution reads along tensor
    dim ``dim`` (digits on the ``droppable`` dims, default the channels, are mixed away);
    ``named`` is ``("unshuffle", r)``/``("shuffle", r)`` where it is one."""
    n = layout.sizes[axis]
    on_dim = layout.dims[dim]
    if any(f.spatial and f.axis != axis for f in on_dim):
        raise LayoutError(f"dim {dim} holds digits of another spatial axis")
    others = [(d, f) for d, f in layout.factors(axis) if d != dim]
    if any(d not in (droppable or {1}) for d, _ in others) or any(f.key for f in on_dim):
        raise LayoutError(f"digits of spatial axis {axis} are on dims other than {dim} and the channels")
    # the new cells: positions along ``dim``; each reads the cell whose kept digits they hold
    kept = [f for f in on_dim if f.spatial]
    if [f.place for f in kept] != sorted((f.place for f in kept), reverse=True):
        raise LayoutError(f"dim {dim} holds the digits of spatial axis {axis} out of order")
    m = int(np.prod([f.size for f in on_dim])) if on_dim else 1
    pos = np.arange(m, dtype=np.int64)
    cell_of_pos = np.zeros(m, dtype=np.int64)
    inner = m
    for f in on_dim:
        inner //= f.size
        if f.spatial:
            cell_of_pos += ((pos // inner) % f.size) * f.place
    t = layout.positions(axis)
    kept_of_cell = np.zeros(n, dtype=np.int64)
    for f in kept:
        kept_of_cell += ((t // f.place) % f.size) * f.place
    named = None
    if not others and len(on_dim) == 2 and on_dim[0].spatial and not on_dim[1].spatial and on_dim[0].place == 1:
        named = ("shuffle", on_dim[1].size)
    elif len(on_dim) == 1 and on_dim[0].spatial and len(others) == 1 and others[0][1].place == 1:
        named = ("unshuffle", others[0][1].size)
    elif len(on_dim) == 1 and on_dim[0].spatial and not others:
        named = ("unshuffle", 1)
    return tuple(kept_of_cell.tolist()), tuple(cell_of_pos.tolist()), named


# -- mixing and dropping digits ----------------------------------------------------------------


def _all_digits_on(layout: Layout, dims: set[int]) -> bool:
    live = [a for a, n in enumerate(layout.sizes) if n > 1]
    return bool(live) and all(d in dims for a in live for d, _ in layout.factors(a))


def emit_mix(call: Call, bind: Bind, layout: Layout, dims: Sequence[int], op: str) -> Bind:
    """Every cell also sees the cells that differ from it only in the digits on tensor
    dims ``dims`` (attention, softmax, layer norm over them).  Where those are all the digits
    of every axis, the whole map: a global branch merged with the local path, as for any op
    over all positions (so ``exclude_global`` can leave it out)."""
    if _all_digits_on(layout, set(dims)):
        stats = call.emit(".stats", GlobalOp(op=f"{op}_stats"), _plain(bind))
        expanded = call.emit(".expand", Expand(call.sizes(bind)), stats)
        node = call.emit("", Merge("mul"), _plain(bind), expanded)
        return Bind(node.node, bind.dims, bind.layout)
    groups = []
    for a in range(len(layout.sizes)):
        labels = mix_labels(layout, a, dims)
        groups.append(None if labels is None else (tuple(labels.tolist()),) * 2)
    if all(g is None for g in groups):
        return bind
    node = call.emit(f".{op}" if op != call.op_name else "", Regroup(tuple(groups), op=op, context=True), _plain(bind))
    return Bind(node.node, bind.dims, bind.layout)


def emit_drop(call: Call, bind: Bind, layout: Layout, dims: Sequence[int], op: str) -> tuple[Bind, Layout]:
    """Sum the digits on tensor dims ``dims`` away (a linear layer or reduction over them):
    each new cell sees the cells with its remaining digits.  Returns the new map's bind and
    its layout (the dims ``dims`` keep their non-spatial factors)."""
    if _all_digits_on(layout, set(dims)):  # nothing of the map is left: a global op (flatten + linear)
        node = call.emit(f".{op}" if op != call.op_name else "", GlobalOp(op=op), _plain(bind))
        flat = Layout(tuple(tuple(f for f in fs if not f.spatial) for fs in layout.dims), (1,) * len(layout.sizes),
                      (0,) * len(layout.sizes))
        return Bind(node.node, (None,) * len(layout.sizes)), flat
    groups: list[Any] = []
    for a in range(len(layout.sizes)):
        got = drop_digits(layout, a, dims)
        if got is None:
            groups.append(None)
            continue
        owner, n_new, new = got
        groups.append((tuple(owner.tolist()), tuple(range(n_new))))
        layout = relabel(layout, a, new, dims, n_new)
    if all(g is None for g in groups):
        return bind, layout
    node = call.emit(f".{op}" if op != call.op_name else "", Regroup(tuple(groups), op=op), _plain(bind))
    return Bind(node.node, bind.dims), layout


def mix_split(call: Call, dims: Any, op: str):
    """Softmax, layer norm, normalization over tensor dims ``dims`` of a split layout."""
    dims = [call.norm_dim(int(d)) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    bind = call.bind
    layout = call.layout_of()
    if layout.is_pair:
        key_dims = {d for d, fs in enumerate(layout.dims) if any(f.key for f in fs)}
        on = {d for d in dims if any(f.spatial for f in layout.dims[d])}
        if on <= key_dims:  # softmax over the keys: the scores stay scores
            call.out_layout = layout
            return Pointwise(op=call.op_name)
        bind = settle(call, bind)
        layout = call.layout_of(bind, call.x)
    out = emit_mix(call, bind, layout, dims, op)
    call.out_layout = layout
    return Pointwise(op=call.op_name) if out is call.bind else out


def reduce_split(call: Call, dims: Sequence[int], keepdim: bool):
    """A reduction over tensor dims ``dims`` of a split layout: their digits are dropped."""
    bind = settle(call, call.bind) if call.bind.layout.is_pair else call.bind
    layout = call.layout_of(bind, call.x)
    node, new = emit_drop(call, bind, layout, dims, call.op_name)
    new = without_dims(new, dims, keep_size_one=keepdim)
    call.out_layout = with_shape(new, tuple(int(v) for v in first_tensor(call.out).shape))
    return Pointwise(op=call.op_name) if node is call.bind else node


def _out_layout(call: Call, layout: Layout, out: Any = None) -> Layout:
    return with_shape(layout, tuple(int(v) for v in first_tensor(call.out if out is None else out).shape))


def _generic() -> dict[Callable, Callable]:
    from rfmap.rules.split_ops import generic_rules

    return generic_rules()
