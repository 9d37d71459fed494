"""Attention inside windows: contractions over tensors whose spatial axes are split across
dims, the attention scores of windows, and the additive masks of shifted windows.

``q @ k.transpose(-2, -1)`` over windows (Swin: windows folded into the batch dim, the
tokens of a window on dim -2) gives scores whose dim -1 holds the *key copy* of the token
digits: the scores tensor is laid out as the query map plus a key copy
(:class:`~rfmap.rules.layout_algebra.Layout` with ``key_node``).  Adding a constant mask
to it (Swin's shifted windows: ``-100`` between tokens from different regions of a window
that wraps around the map's seam; ``-inf`` or a boolean ``attn_mask`` elsewhere) splits the
key groups: a pair whose mask entry is at most :data:`MASKED` (or ``False``) does not
influence the cell -- its softmax weight is below ``exp(-50) ~ 2e-22`` of an unmasked
pair's.  ``scores @ v`` (or ``F.scaled_dot_product_attention``) then makes every query cell
see the key and value cells of its group: per axis a partition
(:class:`~rfmap.core.regroup.Regroup`) of the key and value maps, merged with the query's.
Masks that do not split per axis into groups are ignored (every pair kept, a superset),
and say so in the graph's notes.

Attention whose tokens are every position of the map (global attention) keeps the rule of
:mod:`rfmap.rules.contract`: the whole input, a global branch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from rfmap.core.layers import Merge, Pointwise
from rfmap.core.regroup import Regroup
from rfmap.rules.call import Bind, Call, LayoutError, first_tensor
from rfmap.rules.layout_algebra import Factor, Layout, mix_labels, with_shape
from rfmap.rules.split_axes import emit_drop

#: an additive mask entry at most this large removes the pair (softmax weight < exp(-50))
MASKED = -50.0


def _digits(layout: Layout, dims, key: bool | None = None) -> set:
    return {f.digit() for d in dims for f in layout.dims[d] if f.spatial and (key is None or f.key == key)}


def contract_split(call: Call, operands: list[tuple[Any, Any, str]], out_letters: str, op: str):
    """A contraction (matmul, linear, einsum) of operands of which some are split."""
    spatial = [(v, b, letters, call.layout_of(b, v)) for v, b, letters in operands if isinstance(b, Bind)]
    if len(spatial) == 1:
        return _contract_one(call, *spatial[0], out_letters, op)
    if len(spatial) != 2:
        raise LayoutError("a contraction of more than two maps with split spatial axes")
    a, b = spatial
    if a[3].is_pair:
        return _resolve(call, a, [b], out_letters)
    return _scores(call, a, b, out_letters, op)


def _out_layout(call: Call, layout: Layout, letters: str, out_letters: str, key: bool = False) -> list:
    dims: list[tuple[Factor, ...]] = []
    for letter in out_letters:
        if letter in letters:
            fs = layout.dims[letters.index(letter)]
            dims.append(tuple(replace(f, key=True) if key and f.spatial else f for f in fs))
        else:
            dims.append(())
    return dims


def _contract_one(call: Call, v, b: Bind, letters: str, layout: Layout, out_letters: str, op: str):
    """One map: digits on the dims summed over are dropped (each new cell sees its group)."""
    summed = [d for d, letter in enumerate(letters) if letter not in out_letters]
    node = b
    if any(f.spatial for d in summed for f in layout.dims[d]):
        if layout.is_pair:
            raise LayoutError("it sums attention scores over a dim with spatial digits")
        node, layout = emit_drop(call, b, layout, summed, op)
    dims = _out_layout(call, layout, letters, out_letters)
    call.out_layout = with_shape(replace(layout, dims=tuple(dims)), tuple(int(s) for s in first_tensor(call.out).shape))
    return Pointwise(op=op) if node is b else node


def _scores(call: Call, a, b, out_letters: str, op: str):
    """``q @ k^T`` over windows: the query map with a key copy of its token digits."""
    layout = _pair_layout(call, a, b, out_letters)
    call.out_layout = with_shape(layout, tuple(int(s) for s in first_tensor(call.out).shape))
    return Bind(a[1].node, a[1].dims)


def _pair_layout(call: Call, a, b, out_letters: str) -> Layout:
    (_, _, ql, qlay), (_, kb, kl, klay) = a, b
    if qlay.sizes != klay.sizes or qlay.offsets != klay.offsets or qlay.is_pair or klay.is_pair:
        raise LayoutError("attention between maps of different layouts")
    if any(f.spatial for d, letter in enumerate(ql) if letter not in out_letters for f in qlay.dims[d]) or any(
        f.spatial for d, letter in enumerate(kl) if letter not in out_letters for f in klay.dims[d]
    ):
        raise LayoutError("a product that sums over spatial digits of two maps")
    dims = []
    query_only: set = set()
    key_only: set = set()
    for qf, kf in zip(_out_layout(call, qlay, ql, out_letters), _out_layout(call, klay, kl, out_letters)):
        q_sp = [f for f in qf if f.spatial]
        k_sp = [f for f in kf if f.spatial]
        if q_sp and k_sp:
            if q_sp != k_sp:
                raise LayoutError("the two maps hold different spatial digits on one dim")
            dims.append(qf)  # shared: the window both the query and its keys are in
        elif k_sp:
            key_only |= {f.digit() for f in k_sp}
            dims.append(tuple(replace(f, key=True) if f.spatial else f for f in kf))
        else:
            query_only |= {f.digit() for f in q_sp}
            dims.append(qf if q_sp else (qf or kf))
    if not key_only or key_only != query_only:
        raise LayoutError("a product of two maps whose digits do not pair up as queries and keys")
    return Layout(tuple(dims), qlay.sizes, qlay.offsets, key_node=kb.node, key_labels=(None,) * len(qlay.sizes))


_BATCH = "abcdefgh"


def sdpa_split(call: Call):
    """``F.scaled_dot_product_attention(q, k, v, attn_mask)`` over windows."""
    (q, qb), (k, kb), (v, vb) = [(call.args[i], call.binding_of(i, None)) for i in range(3)]
    if not all(isinstance(b, Bind) for b in (qb, kb, vb)):
        raise LayoutError("attention whose queries, keys or values are not all maps")
    batch = _BATCH[: q.dim() - 2]
    ql, kl, vl = batch + "xj", batch + "yj", batch + "yz"
    layout = _pair_layout(call, (q, qb, ql, call.layout_of(qb, q)), (k, kb, kl, call.layout_of(kb, k)), batch + "xy")
    layout = with_shape(layout, tuple(int(s) for s in q.shape[:-1]) + (int(k.shape[-2]),))
    mask = call.arg(3, "attn_mask")
    if mask is not None:
        value = call.const(mask)
        if value is None:
            call._front.notes.append(f"attention mask at '{call.name}' is computed from the input: every pair kept")
        else:
            value = np.asarray(value)
            layout = with_mask(call, layout, value if value.dtype == bool else value.astype(np.float64) > MASKED)
    if call.arg(5, "is_causal", False):
        call._front.notes.append(f"causal attention at '{call.name}' over windows: every pair of a window kept")
    return _resolve(call, (None, qb, batch + "xy", layout), [(v, vb, vl, call.layout_of(vb, v))], batch + "xz")


def key_groups(layout: Layout) -> list[np.ndarray | None]:
    """Per axis, labels of the groups a query cell attends to (the cells sharing its shared
    digits), refined by the masks seen so far."""
    key_dims_digits = {f.digit() for fs in layout.dims for f in fs if f.key}
    out: list[np.ndarray | None] = []
    for a, n in enumerate(layout.sizes):
        if n == 1:
            out.append(None)
            continue
        query = Layout(tuple(tuple(f for f in fs if not f.key) for fs in layout.dims), layout.sizes, layout.offsets)
        free_dims = [d for d, fs in enumerate(query.dims) if any(f.digit() in key_dims_digits for f in fs if f.axis == a)]
        labels = mix_labels(query, a, free_dims)
        refine = layout.key_labels[a] if layout.key_labels else None
        if labels is not None and refine is not None:
            labels = labels * (int(np.max(refine)) + 1) + np.asarray(refine)
        out.append(labels)
    return out


def _resolve(call: Call, scores, values: list, out_letters: str):
    """``scores @ v``: every query cell sees the key and value cells of its group."""
    _, sb, sl, slay = scores
    (vv, vb, vl, vlay), = values
    summed = [d for d, letter in enumerate(sl) if letter not in out_letters]
    v_summed = [d for d, letter in enumerate(vl) if letter not in out_letters]
    if _digits(slay, summed, key=True) != _digits(vlay, v_summed) or _digits(slay, summed, key=False):
        raise LayoutError("attention weights and values whose token digits do not match")
    if vlay.sizes != slay.sizes or vlay.offsets != slay.offsets or vlay.is_pair:
        raise LayoutError("attention values laid out unlike the scores")
    for letter in out_letters:
        if letter in vl and letter in sl and _digits(vlay, [vl.index(letter)]) != _digits(slay, [sl.index(letter)], False):
            raise LayoutError("attention values in other windows than the scores")
    bind = merge_groups(call, slay, sb, [vb.node])
    query = replace(slay, dims=tuple(tuple(f for f in fs if not f.key) for fs in slay.dims), key_node=None, key_labels=())
    dims = _out_layout(call, query, sl, out_letters)
    for e, letter in enumerate(out_letters):
        if letter in vl and not dims[e]:
            dims[e] = tuple(f for f in vlay.dims[vl.index(letter)] if not f.spatial)
    call.out_layout = with_shape(replace(query, dims=tuple(dims)), tuple(int(s) for s in first_tensor(call.out).shape))
    return bind


def merge_groups(call: Call, layout: Layout, query: Bind, extra: list[str]) -> Bind:
    """The query map merged with the key map (and ``extra`` maps, the values) each seen
    through the key groups (a :class:`Regroup` per map)."""
    groups = key_groups(layout)
    regroup = Regroup(tuple(None if g is None else (tuple(g.tolist()),) * 2 for g in groups), op="window_attention", context=True)
    parts = [query.node]
    for i, node in enumerate(dict.fromkeys([str(layout.key_node), *extra])):
        if all(g is None for g in groups):
            parts.append(node)
            continue
        parts.append(call.emit(f".groups{i}", regroup, Bind(node, query.dims)).node)
    parts = list(dict.fromkeys(parts))
    if len(parts) == 1:
        return call.emit("", Pointwise(op="attention"), Bind(parts[0], query.dims))
    return call.emit("", Merge("mul"), *[Bind(p, query.dims) for p in parts])


def resolve_pair(call: Call, bind: Bind) -> Bind:
    """Attention scores read by an op that does not contract them with values: each query
    cell's scores are taken to depend on the keys of its whole group."""
    layout: Layout = bind.layout
    node = merge_groups(call, layout, bind, [])
    query = replace(layout, dims=tuple(tuple(Factor(None, f.size) if f.key else f for f in fs) for fs in layout.dims),
                    key_node=None, key_labels=())
    return call.bind_for(node.node, query)


# -- masks ------------------------------------------------------------------------------------


def with_mask(call: Call, layout: Layout, allowed: np.ndarray) -> Layout:
    """The scores' layout after a constant mask (``allowed``: which pairs take part, any
    shape broadcasting to the scores'): the key groups split per axis where the mask does
    that exactly; otherwise unchanged (noted)."""
    try:
        allowed = np.broadcast_to(allowed, layout.shape)
    except ValueError:
        return layout
    if allowed.all():
        return layout
    labels = _mask_labels(layout, allowed)
    if labels is None:
        call._front.notes.append(
            f"attention mask at '{call.name}' does not split the windows into regions per axis: every pair kept"
        )
        return layout
    old = layout.key_labels or (None,) * len(layout.sizes)
    merged = []
    for prev, new in zip(old, labels):
        if prev is None:
            merged.append(new)
        elif new is None:
            merged.append(prev)
        else:
            merged.append(np.asarray(prev) * (int(np.max(new)) + 1) + np.asarray(new))
    return replace(layout, key_labels=tuple(merged))


def _cells(layout: Layout, shape_dims: list[int], key: bool) -> list[np.ndarray]:
    """Per axis, the query (or key) cell of every element of the scores restricted to the
    dims ``shape_dims``."""
    key_digits = {f.digit() for fs in layout.dims for f in fs if f.key}
    shape = [layout.shape[d] for d in shape_dims]
    out = []
    for a, n in enumerate(layout.sizes):
        t = np.zeros(shape, dtype=np.int64)
        for i, d in enumerate(shape_dims):
            inner = layout.shape[d]
            pos = np.arange(layout.shape[d], dtype=np.int64)
            for f in layout.dims[d]:
                inner //= f.size
                if f.axis != a:
                    continue
                take = f.key if key else not f.key
                if key and not f.key and f.digit() not in key_digits:
                    take = True  # a shared digit: the key's too
                if take:
                    view = [1] * len(shape)
                    view[i] = -1
                    t = t + (((pos // inner) % f.size) * f.place).reshape(view)
        out.append((t - layout.offsets[a]) % n)
    return out


def _mask_labels(layout: Layout, allowed: np.ndarray) -> list | None:
    """Per axis, region labels such that a pair takes part iff the labels agree on every
    axis (within its window); ``None`` where the mask is not of that form."""
    dims = sorted(d for d, fs in enumerate(layout.dims) if any(f.spatial for f in fs))
    other = tuple(d for d in range(allowed.ndim) if d not in dims)
    allowed = np.asarray(allowed.any(axis=other)) if other else allowed
    q_cells, k_cells = _cells(layout, dims, key=False), _cells(layout, dims, key=True)
    labels, inside = [], np.ones(allowed.shape, dtype=bool)
    for a, n in enumerate(layout.sizes):
        pair = q_cells[a] * n + k_cells[a]
        ok = np.unique(pair[allowed])
        inside &= np.isin(pair, ok)
        comp = _components(n, ok)
        seen = np.unique(pair)
        if not np.array_equal(np.isin(seen, ok), comp[seen // n] == comp[seen % n]):
            return None
        labels.append(None if np.unique(comp).size == 1 else comp)
    if not np.array_equal(inside, allowed):
        return None
    return labels


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of cells ``0..n-1`` linked by ``pairs`` (``a * n + b``)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs.tolist():
        a, b = find(p // n), find(p % n)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
