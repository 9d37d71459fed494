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

from typing import Any, Sequence

from rfmap.core.layers import Expand, GlobalOp, Merge, Pointwise, Reduce
from rfmap.core.registry import OpDef
from rfmap.rules.call import Bind, Call, LayoutError, first_tensor, is_tensor
from rfmap.rules.common import distinct, flat_global, onnx_rules, torch_rules
from rfmap.rules.onnx_attrs import attr_int
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


def _rank(x) -> int:
    """Rank of a tensor of either front end, or of an ONNX constant (a numpy array)."""
    return x.dim() if hasattr(x, "dim") else len(getattr(x, "shape", ()))


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
    operands = call.args[1:]
    binds = call.arg_binds[1:]
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
    """Attention: each query position sees itself and every key/value position."""
    qb = call.binding_of(q_index, None)
    q = call.args[q_index]
    kv = {}
    for i in kv_indices:
        kb = call.binding_of(i, None)
        if isinstance(kb, Bind):
            kv.setdefault(kb.node, (call.args[i], kb))
    if isinstance(qb, Bind) and not call.axes_on(seq_dim % q.dim(), qb, q.dim()) and not any(
        call.axes_on(seq_dim % v.dim(), b, v.dim()) for v, b in kv.values()
    ):
        result = call.emit("", Pointwise(op=call.op_name), qb)  # positions are not the sequence
    else:
        flat = [flat_global(call, v, b, f".kv{i}") for i, (v, b) in enumerate(kv.values())]
        if isinstance(qb, Bind):
            want = call.sizes(qb)
            ex = [call.emit(f".expand{i}", Expand(want), g) for i, g in enumerate(flat)]
            result = call.emit("", Merge("mul"), qb, *ex, dims=qb.dims) if ex else call.emit("", Pointwise(op=call.op_name), qb)
        else:
            dims = (None,) * call.rank
            result = flat[0] if len(flat) == 1 else call.emit("", Merge("mul"), *flat, dims=dims)
    if isinstance(call.out, (tuple, list)):
        return [result] + [Bind(result.node, (None,) * call.rank) if is_tensor(o) else None for o in list(call.out)[1:]]
    return result


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
    all earlier steps; rfmap does not model causality, so this over-approximates."""
    m = call.module
    seq = 1 if getattr(m, "batch_first", False) else 0
    if call.x.dim() == 2:
        seq = 0
    return _attention(call, 0, [0], seq)


def _grid_sample_rule(call: Call):
    """Sampling at data-dependent positions: every output may see any input cell."""
    ins = [flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(distinct(call))]
    g = ins[0] if len(ins) == 1 else call.emit(".merge", Merge("mul"), *ins, dims=(None,) * call.rank)
    dims = call.standard_dims(call.out.dim())
    return call.emit("", Expand(call.out_sizes(dims)), g, dims=dims)


# -- ONNX ---------------------------------------------------------------------------------


@layout_aware
def _onnx_gemm(call: Call):
    a, b = call.args[0], call.args[1]
    la = "zx" if attr_int(call, "transA", 0) else "xz"
    lb = "yz" if attr_int(call, "transB", 0) else "zy"
    ops = [(a, call.binding_of(0, None), la), (b, call.binding_of(1, None), lb)]
    if len(call.args) > 2 and call.args[2] is not None:
        c = call.args[2]
        lc = "xy"[2 - c.dim():] if is_tensor(c) and c.dim() <= 2 else ""
        ops.append((c, call.binding_of(2, None), lc))
    return _contract(call, ops, "xy", "gemm")


@layout_aware
def _onnx_einsum(call: Call):
    eq = str(call.kwargs.get("equation", "")).replace(" ", "")
    if "..." in eq:
        raise LayoutError("einsum with an ellipsis")
    lhs, out_letters = eq.split("->") if "->" in eq else (eq, "".join(
        sorted(c for c in set(eq) if c.isalpha() and eq.count(c) == 1)))
    terms = lhs.split(",")
    return _contract(call, [(v, call.binding_of(i, None), t) for i, (v, t) in enumerate(zip(call.args, terms))],
                     out_letters, "einsum")


def _onnx_rnn(call: Call):
    seq = 1 if attr_int(call, "layout", 0) else 0
    return _attention(call, 0, [0], seq)


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
        torch=torch_rules(["nn.Linear", "nn.LazyLinear", "F.linear", "aten.linear"], _linear_rule)
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
