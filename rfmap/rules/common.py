"""Converter building blocks shared by the op families (both front ends use them)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rfmap.core.layers import Crop, Expand, GlobalOp, Layer, Merge, Pointwise, Reduce
from rfmap.core.registry import OnnxRule, TorchRule
from rfmap.rules.call import SAME, Bind, Call, LayoutError, distinct, first_tensor, is_tensor, right_aligned
from rfmap.rules.split_axes import has_split, layout_aware, mix_split, reduce_split
from rfmap.rules.split_ops import elementwise_split

#: where the PyTorch realizations of the layers live (imported only to build a twin)
REALIZE = "rfmap.rules.torch_realize"


def torch_rules(targets, convert, **flags) -> tuple[TorchRule, ...]:
    """One :class:`TorchRule` per target, all with ``convert``."""
    return tuple(TorchRule(t, convert, **flags) for t in targets)


def onnx_rules(types, convert) -> tuple[OnnxRule, ...]:
    return tuple(OnnxRule(t, convert) for t in types)


def input_shape(target: Any, args: tuple, kwargs: dict) -> tuple[int, ...]:
    """A :class:`TorchRule` ``shape`` for ops whose output has their input's shape whatever
    their other tensors (per-channel weights do not broadcast from the right): the op need
    not run (``F.batch_norm``'s meta kernel is a Python decomposition, 2.5 ms a call)."""
    return tuple(args[0].shape)


def nd(prefix: str, dims=(1, 2, 3)) -> list[str]:
    """``nd("nn.Conv")`` -> ``["nn.Conv1d", "nn.Conv2d", "nn.Conv3d"]``."""
    return [f"{prefix}{d}d" for d in dims]


def flat_global(call: Call, value, bind: Bind, suffix: str) -> Bind:
    """``bind`` reduced to one cell (a global op) unless it already is one."""
    if all(d is None for d in bind.dims):
        return bind
    return call.emit(suffix, GlobalOp(op=call.op_name), bind, dims=(None,) * len(bind.dims))


@layout_aware
def global_rule(call: Call):
    """Every output sees the whole input (and every input map, when there are several)."""
    call.out_dims = (None,) * call.rank
    binds = distinct(call)
    if len(binds) > 1:
        flat = [flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(binds)]
        return call.emit("", Merge("add"), *flat, dims=call.out_dims)
    return GlobalOp(op=call.op_name)


def broadcast_dims(call: Call, out: Any = None) -> tuple[int | None, ...]:
    """Output dims of an elementwise op: the inputs' dims, right-aligned like broadcasting."""
    out = call.out if out is None else out
    result: list[int | None] = [None] * call.rank
    for v, b in call.inputs:
        for a, d in enumerate(right_aligned(b.dims, v.dim(), out.dim())):
            if d is None:
                continue
            if result[a] is None:
                result[a] = d
            elif result[a] != d:
                raise LayoutError(f"its inputs hold spatial axis {a} at different dims ({result[a]} and {d})")
    return tuple(result)


def merge_or_pointwise(call: Call, op: str):
    """An elementwise op of several tensors: a merge of the distinct maps among them."""
    if has_split(call):
        return elementwise_split(call, op)
    call.same_order()
    dims = broadcast_dims(call)
    call.out_dims = dims
    binds = distinct(call)
    if len(binds) == 1:
        v, b = binds[0]
        want = call.out_sizes(dims)
        if call.sizes(b) != want or right_aligned(b.dims, v.dim(), call.out.dim()) != dims:
            return call.emit("", Expand(want), b, dims=dims)
        return Pointwise(op=call.op_name)
    return Merge(op)


def elementwise(op: str) -> Callable[[Call], Any]:
    """The converter of an elementwise op that merges its maps by ``op`` (add or mul)."""

    @layout_aware
    def rule(call: Call):
        return merge_or_pointwise(call, op)

    return rule


def plain_pointwise(fn: Callable) -> Callable:
    """Mark a converter whose answer, for a call on one map (no split layout) that returns a
    tensor of that map's shape, is ``Pointwise(op=call.op_name)``: the front end answers such
    calls (activations, batch norms: half of a CNN's calls) without running the converter."""
    fn.plain_pointwise = True  # type: ignore[attr-defined]
    return fn


@plain_pointwise
@layout_aware
def pointwise(call: Call):
    """An op that changes no geometry (a merge when it reads several maps)."""
    if has_split(call):
        return elementwise_split(call, "add")
    if len(distinct(call)) > 1 or (is_tensor(call.out) and call.out.dim() != call.ndim):
        return merge_or_pointwise(call, "add")
    return Pointwise(op=call.op_name)


def crop_for(call: Call, per_dim: dict[int, tuple], bind: Bind) -> Crop | None:
    """A Crop layer for ``{tensor dim: (start, stop, step)}`` on the spatial dims of ``bind``."""
    starts, stops, steps = [0] * len(bind.dims), [None] * len(bind.dims), [1] * len(bind.dims)
    touched = False
    for d, (a0, a1, st) in per_dim.items():
        axes = [a for a, ad in enumerate(bind.dims) if ad == d]
        if not axes:
            continue
        if len(axes) > 1:
            raise LayoutError("it slices a dim that holds several spatial axes")
        if (a0, a1, st) in ((0, None, 1), (None, None, None), (None, None, 1), (0, None, None)):
            continue
        if st is not None and st < 1:
            raise LayoutError(f"slice step {st}")
        starts[axes[0]], stops[axes[0]], steps[axes[0]] = (0 if a0 is None else a0), a1, (1 if st is None else st)
        touched = True
    return Crop(tuple(starts), tuple(stops), tuple(steps)) if touched else None


def reduce_dims(call: Call, dim, keepdim: bool):
    """A reduction over tensor dims ``dim`` (``None`` or ``[]``: all)."""
    n = call.ndim
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        red = set(range(n))
    elif isinstance(dim, (list, tuple)):
        red = {call.norm_dim(int(d)) for d in dim}
    else:
        red = {call.norm_dim(int(dim))}
    b = call.bind
    if b.layout is not None:
        return reduce_split(call, sorted(red), keepdim)
    axes = tuple(a for a, d in enumerate(b.dims) if d is not None and d in red)
    if keepdim:
        dims = b.dims
    else:
        dims = tuple(None if d is None or d in red else d - sum(1 for r in red if r < d) for d in b.dims)
    call.out_dims = dims
    if not axes:
        return Pointwise(op=call.op_name)
    live = {a for a, d in enumerate(b.dims) if d is not None}
    if live <= set(axes):
        return GlobalOp(op=call.op_name)
    return Reduce(axes, op=call.op_name)


def mix_on_dims(call: Call, dims, op: str):
    """Every cell also sees the whole of the spatial axes on tensor dims ``dims`` (where
    axes are split across dims: the cells that differ only in the digits on them)."""
    if call.bind.layout is not None:
        return mix_split(call, dims, op)
    axes = call.axes_on(dims)
    if not axes:
        return Pointwise(op=call.op_name)
    return call.mix(axes, op)


def no_node(call: Call):
    """Tensors whose values do not depend on the input (``zeros_like``, ``new_ones``)."""
    return None


def kind_converter(kind: str) -> Callable[[Call], Any]:
    """The converter of a kind string: pointwise, global, add, mul, concat or same."""
    if kind == "pointwise":
        return lambda call: Pointwise(op=call.op_name)
    if kind == "global":
        return global_rule
    if kind == "same":
        return lambda call: SAME
    return elementwise(kind)


def default_converter(build: Callable[..., Layer] | None, kind: str | None) -> Callable[[Call], Any]:
    """A converter for an op registered without one: a kind's converter, or the factory
    called with its keyword parameters read by name from the call (:meth:`Call.param`)."""
    if kind is not None:
        return kind_converter(kind)
    assert build is not None
    try:
        names = [
            p.name for p in inspect.signature(build).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        names = []

    def convert(call: Call):
        params = {}
        for name in names:
            value = call.param(name, _MISSING)
            if value is not _MISSING:
                params[name] = _plain(value)
        layer = build(**params)
        if not layer.merge:
            call.standard()
        return layer

    return convert


_MISSING = object()


def _plain(value: Any) -> Any:
    """Module attributes and ONNX attributes as plain Python values (tuples of ints, ...)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "tolist") and not is_tensor(value):
        return _plain(value.tolist())
    if isinstance(value, bytes):
        return value.decode()
    return value


def first_out(call: Call):
    return first_tensor(call.out)
