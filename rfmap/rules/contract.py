"""Contractions and attention: ``matmul``, ``linear``, ``bilinear``, ``einsum``, multi-head
and scaled dot-product attention, transformer layers, recurrent layers, ``grid_sample``
(and ONNX ``MatMul``, ``Gemm``, ``Einsum``, ``RNN``/``LSTM``/``GRU``, ``GridSample``).

A contraction keeps the spatial axes its first spatial operand carries into the output;
an axis summed over is reduced (each output sees that whole axis).  Attention makes every
query position see every key/value position: a global branch merged with the local path,
so that ``exclude_global`` can show the local field -- unless the tokens are windows of the
map (their axes split across dims), where each query sees its window
(:mod:`rfmap.rules.window_attention`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfmap.core.layers import Expand, GlobalOp, Merge, Pointwise, Reduce
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import Bind, Call, LayoutError, distinct, first_tensor, is_tensor
from rfmap.rules.common import flat_global, onnx_rules, torch_rules
from rfmap.rules.onnx_attrs import attr_flag, attr_str
from rfmap.rules.split_axes import layout_aware
from rfmap.rules.window_attention import contract_split, sdpa_split


def _contract(call: Call, operands: list[tuple[Any, Any, str]], out_letters: str, op: str):
    """A tensor contraction (matmul, linear, einsum): ``operands`` are ``(value, bind, letters)``.

    The first operand with spatial axes keeps them where its letters land in the output;
    an axis summed over is reduced (each output sees that whole axis).  A summed axis whose
    output dim takes a new letter of its own (``nn.Linear`` over W) stays there, each output
    seeing the whole axis.  Other operands whose axes land elsewhere (the keys in the
    attention scores ``q @ k^T``) join as a global branch.
    """
    spatial_ops = [(v, b, letters) for v, b, letters in operands if isinstance(b, Bind)]
    if any(b.layout is not None for _, b, _ in spatial_ops):
        return contract_split(call, operands, out_letters, op)
    known = {c for _, _, letters in operands for c in letters}
    v0, b0, l0 = spatial_ops[0]
    dims: list[int | None] = [None] * call.rank
    reduced: list[int] = []
    kept_sizes: dict[int, int] = {}
    out_t = first_tensor(call.out)
    for a, d in enumerate(b0.dims):
        if d is None:
            continue
        letter = l0[d]
        if letter in out_letters:
            dims[a] = out_letters.index(letter)
            continue
        reduced.append(a)
        shared = sum(1 for x in b0.dims if x == d)
        e = d + len(out_letters) - len(l0)
        if shared == 1 and 0 <= e < len(out_letters) and out_letters[e] not in known and 0 <= e < out_t.dim():
            dims[a] = e  # the new dim of a linear layer over this axis: each cell sees the whole axis
            kept_sizes[a] = int(out_t.shape[e])
    call.out_dims = tuple(dims)
    parts: list[Bind] = []
    if reduced:
        live = {a for a, d in enumerate(b0.dims) if d is not None}
        layer = GlobalOp(op=op) if live <= set(reduced) else Reduce(tuple(reduced), op=op)
        r = call.emit(".reduce" if (kept_sizes or len(spatial_ops) > 1) else "", layer, b0,
                      dims=tuple(None if a in reduced else d for a, d in enumerate(b0.dims)))
        if kept_sizes:
            size = tuple(kept_sizes.get(a, n) for a, n in enumerate(call.sizes(r)))
            r = call.emit(".expand" if len(spatial_ops) > 1 else "", Expand(size), r, dims=call.out_dims)
        parts.append(r)
    else:
        parts.append(b0)
    for i, (v, b, letters) in enumerate(spatial_ops[1:], start=1):
        if b.node == b0.node and letters == l0:
            continue
        agree = all(
            d is None or (letters[d] in out_letters and out_letters.index(letters[d]) == dims[a])
            for a, d in enumerate(b.dims)
        )
        parts.append(b if agree else flat_global(call, v, b, f".global{i}"))
    if len(parts) == 1:
        p = parts[0]
        return Pointwise(op=op) if p is b0 else Bind(p.node, call.out_dims)
    want = call.sizes(parts[0]) if call.out_dims == parts[0].dims else call.out_sizes(call.out_dims)
    fitted = []
    for i, p in enumerate(parts):
        if call.sizes(p) != want:
            p = call.emit(f".expand{i}", Expand(want), p)
        fitted.append(p)
    if len({f.node for f in fitted}) == 1:
        return call.emit("", Pointwise(op=op), fitted[0], dims=call.out_dims)
    return call.emit("", Merge("mul"), *fitted, dims=call.out_dims)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _rank(value: Any) -> int:
    """The rank of a tensor argument (an ONNX constant is a numpy array)."""
    return value.dim() if is_tensor(value) else len(value.shape)


@layout_aware
def _matmul_rule(call: Call):
    a, b = call.args[0], call.args[1]
    ba, bb = call.arg_binds[0], call.arg_binds[1]
    na, nb = _rank(a), _rank(b)
    batch = max(na, nb) - 2
    batch_letters = _LETTERS[: max(batch, 0)]
    i, j, k = "x", "y", "z"
    if na == 1:
        la, out_a = j, ""
    else:
        la = batch_letters[len(batch_letters) - (na - 2):] + i + j
        out_a = i
    if nb == 1:
        lb, out_b = j, ""
    else:
        lb = batch_letters[len(batch_letters) - (nb - 2):] + j + k
        out_b = k
    out_batch = batch_letters if max(na, nb) > 2 else ""
    out_letters = out_batch + out_a + out_b
    return _contract(call, [(a, ba, la), (b, bb, lb)], out_letters, "matmul")


@layout_aware
def _linear_rule(call: Call):
    x = call.x
    letters = _LETTERS[: x.dim()]
    out_letters = letters[:-1] + "z"
    return _contract(call, [(x, call.bind, letters)], out_letters, "linear")


def _bilinear_rule(call: Call):
    x1, x2 = call.args[0], call.args[1]
    l1 = _LETTERS[: x1.dim()]
    l2 = l1[:-1] + "y"
    out = l1[:-1] + "z"
    return _contract(call, [(x1, call.arg_binds[0], l1), (x2, call.arg_binds[1], l2)], out, "bilinear")


@layout_aware
def _einsum_rule(call: Call):
    eq = call.args[0].replace(" ", "")
    operands: Sequence[Any] = call.args[1:]
    binds: Sequence[Any] = call.arg_binds[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands, binds = operands[0], binds[0]
    if "..." in eq:
        raise LayoutError("einsum with an ellipsis")
    if "->" in eq:
        lhs, out_letters = eq.split("->")
    else:
        lhs = eq
        counts = {c: lhs.count(c) for c in set(lhs) if c.isalpha()}
        out_letters = "".join(sorted(c for c, n in counts.items() if n == 1))
    terms = lhs.split(",")
    return _contract(call, [(v, b, t) for v, b, t in zip(operands, binds, terms)], out_letters, "einsum")


def _attention(call: Call, q_index: int, kv_indices: Sequence[int], seq_dim: int):
    """Attention: each query position sees itself and every key/value position of its
    sequence -- global over the spatial axes on the sequence dim (``seq_dim``), pointwise
    over those on other dims (a batch of rows, heads).  Returns the output's binding (a
    list for tuple outputs: the first element bound, the others left out)."""
    result = _context(call, q_index, kv_indices, seq_dim)
    if isinstance(call.out, (tuple, list)):
        return [result] + [None for _ in list(call.out)[1:]]
    return result


def _seq_axes(call: Call, value: Any, bind: Bind, seq_dim: int) -> tuple[int, ...]:
    return call.axes_on(seq_dim % value.dim(), bind, value.dim())


def _context(call: Call, q_index: int, kv_indices: Sequence[int], seq_dim: int) -> Bind:
    """The query's map mixed with what it attends to (see :func:`_attention`)."""
    qb = call.binding_of(q_index, None)
    q = call.args[q_index]
    kv: dict[str, tuple[Any, Bind]] = {}
    for i in kv_indices:
        kb = call.binding_of(i, None)
        if isinstance(kb, Bind):
            kv.setdefault(kb.node, (call.args[i], kb))
    if isinstance(qb, Bind) and not _seq_axes(call, q, qb, seq_dim) and not any(
        _seq_axes(call, v, b, seq_dim) for v, b in kv.values()
    ):
        return call.emit("", Pointwise(op=call.op_name), qb)  # positions are not the sequence
    ctx = []
    for i, (v, b) in enumerate(kv.values()):
        axes = _seq_axes(call, v, b, seq_dim)
        live = {a for a, d in enumerate(b.dims) if d is not None}
        if not isinstance(qb, Bind) or live <= set(axes):
            ctx.append(flat_global(call, v, b, f".kv{i}"))
        else:  # a batch of sequences: each sees its own sequence only
            red = call.emit(f".kv{i}", Reduce(axes, op=call.op_name), b, dims=tuple(
                None if a in axes else d for a, d in enumerate(b.dims)))
            ctx.append(red)
    if not isinstance(qb, Bind):
        return ctx[0] if len(ctx) == 1 else call.emit("", Merge("mul"), *ctx, dims=(None,) * call.rank)
    want = call.sizes(qb)
    ex = [call.emit(f".expand{i}", Expand(want), g) if call.sizes(g) != want else g for i, g in enumerate(ctx)]
    return call.emit("", Merge("mul"), qb, *ex, dims=qb.dims)


def _mha_rule(call: Call):
    m = call.module
    seq = 1 if getattr(m, "batch_first", False) else 0
    if call.args[0].dim() == 2:
        seq = 0
    return _attention(call, 0, [1, 2], seq)


@layout_aware
def _sdpa_rule(call: Call):
    if any(b.layout is not None for _, b in call.inputs):
        return sdpa_split(call)
    return _attention(call, 0, [1, 2], -2 + call.args[0].dim())


def _batch_first(m) -> bool:
    for owner in (m, getattr(m, "self_attn", None), getattr(getattr(m, "layers", [None])[0], "self_attn", None),
                  getattr(getattr(m, "encoder", None), "layers", [None])[0]):
        if owner is not None and hasattr(owner, "batch_first"):
            return bool(owner.batch_first)
        if owner is not None and hasattr(owner, "self_attn"):
            return bool(owner.self_attn.batch_first)
    return False


def _transformer_layer_rule(call: Call):
    m = call.module
    seq = 1 if _batch_first(m) else 0
    if call.x.dim() == 2:
        seq = 0
    extra = [1] if len(call.args) > 1 and isinstance(call.arg_binds[1], Bind) else []
    return _attention(call, 0, [0] + extra, seq)


def _rnn_rule(call: Call):
    """Recurrent layers: every step may see the whole sequence (bidirectional), or at least
    all earlier steps; rfmap does not model causality, so this over-approximates.  The final
    states ``h_n`` (``(layers*dirs, batch, hidden)``, also with ``batch_first``) see whole
    sequences."""
    m = call.module
    batched = call.x.dim() == 3
    seq = 1 if batched and getattr(m, "batch_first", False) else 0
    batch = {1 - seq: 1} if batched else {}
    return _recurrent(call, seq, {d: d for d in range(call.x.dim())}, batch)


def _recurrent(call: Call, seq: int, y_dims: dict, h_dims: dict):
    """A recurrent layer's outputs: the per-step output (input dim ``d`` -> output dim
    ``y_dims[d]``) and final states that reduce the sequence (``h_dims``)."""
    if call.axes_on(call.x.dim() - 1):
        raise LayoutError("it mixes the spatial axes held on its feature dim")
    context = _context(call, 0, [0], seq)
    seq_axes = call.axes_on(seq)
    y = Bind(context.node, tuple(None if d is None else y_dims.get(d) for d in context.dims))
    outs = list(call.out) if isinstance(call.out, (tuple, list)) else [call.out]
    result: list = [y]
    if len(outs) > 1:
        last = call.emit(".last", Reduce(seq_axes, op=call.op_name), context) if seq_axes else context
        dims = tuple(None if d is None or a in seq_axes else h_dims.get(d) for a, d in enumerate(context.dims))
        h = Bind(last.node, dims)
        for o in outs[1:]:
            result.append([h for _ in o] if isinstance(o, (tuple, list)) else h)
    return result if isinstance(call.out, (tuple, list)) else y


def _grid_sample_rule(call: Call):
    """Sampling at data-dependent positions: every output may see any input cell."""
    ins = [flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(distinct(call))]
    g = ins[0] if len(ins) == 1 else call.emit(".merge", Merge("mul"), *ins, dims=(None,) * call.rank)
    dims = call.standard_dims(call.out.dim())
    return call.emit("", Expand(call.out_sizes(dims)), g, dims=dims)


def _linear_shape(m, args, kwargs):
    """``nn.Linear`` on an input whose last dim is its ``in_features``: ``(..., out_features)``."""
    x = args[0]
    if kwargs or len(args) != 1 or x.dim() < 1 or int(x.shape[-1]) != m.in_features:
        return None
    return tuple(int(v) for v in x.shape[:-1]) + (m.out_features,)


# -- ONNX ---------------------------------------------------------------------------------


@layout_aware
def _onnx_gemm(call: Call):
    a, b = call.args[0], call.args[1]
    la = "zx" if attr_flag(call, "transA") else "xz"
    lb = "yz" if attr_flag(call, "transB") else "zy"
    ops = [(a, call.binding_of(0, None), la), (b, call.binding_of(1, None), lb)]
    if len(call.args) > 2 and call.args[2] is not None:
        c = call.args[2]
        lc = "xy"[2 - c.dim():] if is_tensor(c) and c.dim() <= 2 else ""
        ops.append((c, call.binding_of(2, None), lc))
    return _contract(call, ops, "xy", "gemm")


@layout_aware
def _onnx_einsum(call: Call):
    eq = attr_str(call, "equation", None)
    if not eq:
        raise RFMapError("attribute equation is required")
    eq = eq.replace(" ", "")
    if "..." in eq:
        raise LayoutError("einsum with an ellipsis")
    lhs, out_letters = eq.split("->") if "->" in eq else (eq, "".join(
        sorted(c for c in set(eq) if c.isalpha() and eq.count(c) == 1)))
    terms = lhs.split(",")
    return _contract(call, [(v, call.binding_of(i, None), t) for i, (v, t) in enumerate(zip(call.args, terms))],
                     out_letters, "einsum")


def _onnx_rnn(call: Call):
    """``RNN``/``GRU``/``LSTM``: X is ``[seq, batch, in]`` (``layout=1``: ``[batch, seq, in]``);
    Y ``[seq, dirs, batch, hidden]`` (``[batch, seq, dirs, hidden]``), Y_h and Y_c
    ``[dirs, batch, hidden]`` (``[batch, dirs, hidden]``)."""
    attr_str(call, "direction", "forward", ("forward", "reverse", "bidirectional"))
    if attr_flag(call, "layout"):
        return _recurrent(call, 1, {0: 0, 1: 1}, {0: 0})
    return _recurrent(call, 0, {0: 0, 1: 2}, {1: 1})


def _onnx_attention(call: Call):
    return _attention(call, 0, [1, 2], -2 + call.args[0].dim())


OPS = [
    OpDef(
        "matmul", None,
        torch=torch_rules(["torch.matmul", "torch.bmm", "torch.mm", "operator.matmul", "Tensor.matmul", "Tensor.bmm",
                           "Tensor.mm", "Tensor.__matmul__", "aten.matmul", "aten.bmm", "aten.mm"], _matmul_rule)
        + torch_rules(["torch.einsum", "aten.einsum"], _einsum_rule),
        onnx=onnx_rules(["MatMul"], _matmul_rule) + onnx_rules(["Einsum"], _onnx_einsum),
        description="matrix products and einsum: summed axes are reduced, kept ones stay in place",
    ),
    OpDef(
        "linear", None,
        torch=torch_rules(["nn.Linear"], _linear_rule, shape=_linear_shape)
        + torch_rules(["nn.LazyLinear", "F.linear", "aten.linear"], _linear_rule)
        + torch_rules(["nn.Bilinear", "F.bilinear"], _bilinear_rule),
        onnx=onnx_rules(["Gemm"], _onnx_gemm),
        description="a linear layer over the last dim: global over the axes it sums",
    ),
    OpDef(
        "attention", None,
        torch=torch_rules(["nn.MultiheadAttention"], _mha_rule)
        + torch_rules(["F.scaled_dot_product_attention", "aten.scaled_dot_product_attention"], _sdpa_rule)
        + torch_rules(["nn.TransformerEncoderLayer", "nn.TransformerDecoderLayer", "nn.TransformerEncoder",
                       "nn.TransformerDecoder", "nn.Transformer"], _transformer_layer_rule)
        + torch_rules(["nn.RNN", "nn.LSTM", "nn.GRU"], _rnn_rule),
        onnx=onnx_rules(["Attention"], _onnx_attention) + onnx_rules(["RNN", "LSTM", "GRU"], _onnx_rnn),
        description="attention and recurrence: every position sees every position of the sequence",
    ),
    OpDef(
        "grid_sample", None,
        torch=torch_rules(["F.grid_sample", "aten.grid_sampler", "aten.grid_sampler_2d", "aten.grid_sampler_3d"],
                          _grid_sample_rule),
        onnx=onnx_rules(["GridSample"], _grid_sample_rule),
        description="sampling at data-dependent positions: every output may see any input cell",
    ),
]
