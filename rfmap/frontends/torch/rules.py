"""The one registry of PyTorch op rules: torch target -> the rfmap layer it is.

A rule is keyed by what a traced graph calls:

* a module class (``nn.Conv2d``) for the leaf modules ``torch.fx`` keeps whole; a
  subclass uses the nearest registered base class;
* a function (``F.conv2d``, ``torch.cat``, ``operator.add``) for function calls;
* a string (``"view"``, ``"flatten"``) for tensor methods (``torch.Tensor.view`` works too);
* an ATen op (``torch.ops.aten.conv2d``) for graphs captured by ``torch.export``.

A converter takes one :class:`OpCall` -- the op's concrete arguments (tensors are on the
``meta`` device: shapes only), its output, the module and its path -- and returns

* a :class:`~rfmap.core.layers.Layer` (``Conv``, ``Pad``, ``Pointwise``, ``GlobalOp``, ``Merge``, ...):
  the op's node reads the op's first spatial tensor (or, for a ``Merge``, all of them);
* :data:`SAME`: no node, the output is the input map (a no-op, a channel reshape);
* a :class:`Bind` the converter built itself with :meth:`OpCall.emit` (several nodes);
* a list of Binds, one per element, for ops that return several tensors.

Users extend the table with :func:`register` (re-exported as ``rfmap.register_torch_op``)::

    rfmap.register_torch_op(MyAttention, "global")          # every output sees the input
    rfmap.register_torch_op(MyBlurPool, lambda call: rfmap.core.layers.conv(3, stride=2, padding=1))

Registering a module class also keeps ``torch.fx`` from tracing into it.  An op without a
rule is *unsupported*: ``strict`` analyses raise, others treat it as pointwise (or, when it
changes the spatial shape, as global) and list it.

Coordinates are not touched here: layers carry kernel/stride/padding in the pixel-index
convention of :mod:`rfmap.core.axis`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from rfmap.core.axis import Global, Identity
from rfmap.errors import RFMapError
from rfmap.core.layers import (
    AdaptivePool,
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

__all__ = [
    "SAME",
    "Bind",
    "Expand",
    "LayoutError",
    "OpCall",
    "Reduce",
    "Rule",
    "lookup",
    "register",
    "register_torch_op",
    "registered",
    "unregister",
]


# ---------------------------------------------------------------------------------------
# what converters work with
# ---------------------------------------------------------------------------------------


class _Same:
    def __repr__(self) -> str:
        return "SAME"


#: A converter's answer for an op that changes no geometry and needs no node of its own.
SAME = _Same()


@dataclass(frozen=True)
class Bind:
    """Where a traced tensor's spatial axes are: the rfmap node whose map it is, and per
    spatial axis the tensor dim holding it (``None``: reduced away, the map is 1 cell wide
    there; two axes on one dim: flattened together, row-major, as in ``x.flatten(2)``)."""

    node: str
    dims: tuple[int | None, ...]


class LayoutError(Exception):
    """The op moves spatial axes in a way the engine cannot follow (an axis split in two,
    concatenated along, or H and W swapped); the front end then treats it as unsupported."""


@dataclass(frozen=True)
class Expand(Layer):
    """Broadcasting a 1-cell-wide map to ``size`` cells (``expand``, a broadcasting add/mul):
    every output cell sees the one input cell."""

    size: Any
    op: str = "expand"

    def axis_maps(self, sizes):
        maps = []
        for n, m in zip(sizes, self.size):
            if m == n:
                maps.append(Identity(n, n))
            elif n == 1:
                maps.append(Global(1, m))
            else:
                raise RFMapError(f"cannot broadcast {n} cells to {m}")
        return tuple(maps)


@dataclass(frozen=True)
class Reduce(Layer):
    """Reduction over some spatial axes (``x.mean(dim=2)``, a linear layer over W): those
    axes become 1 cell that sees the whole axis; the others are untouched."""

    axes: tuple[int, ...]
    op: str = "reduce"

    def axis_maps(self, sizes):
        return tuple(Global(n, 1) if a in self.axes else Identity(n, n) for a, n in enumerate(sizes))


def _flatten(obj: Any) -> list:
    if isinstance(obj, (list, tuple)):
        return [leaf for item in obj for leaf in _flatten(item)]
    if isinstance(obj, dict):
        return [leaf for item in obj.values() for leaf in _flatten(item)]
    return [obj]


class OpCall:
    """One traced call, as a converter sees it.

    ``args``/``kwargs`` are the concrete arguments (tensors on the ``meta`` device, ints for
    shapes), ``out`` the concrete output, ``module`` the called module (``None`` for
    functions), ``path`` its module path (``layer3.5.conv2``; for a function, the module
    whose ``forward`` called it), ``name`` the node name the op will get.  ``x`` is the
    first tensor argument that carries the input's spatial axes and ``bind`` says where
    they are.  A converter may set ``out_dims`` (the output's spatial dims) and may add
    nodes of its own with :meth:`emit`.
    """

    def __init__(self, *, kind, target, name, path, module, args, kwargs, arg_binds, kwarg_binds, out, rank, front):
        self.kind = kind
        self.target = target
        self.name = name
        self.path = path
        self.module = module
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.arg_binds = arg_binds
        self.kwarg_binds = kwarg_binds
        self.out = out
        self.rank = rank
        self.out_dims: tuple[int | None, ...] | None = None
        self._front = front
        vals = _flatten(list(self.args) + list(self.kwargs.values()))
        binds = _flatten(list(arg_binds) + list(kwarg_binds.values()))
        #: ``(value, Bind)`` of every argument that carries spatial axes, in argument order
        self.inputs: list[tuple[Any, Bind]] = [(v, b) for v, b in zip(vals, binds) if isinstance(b, Bind)]
        if self.inputs:
            self.x, self.bind = self.inputs[0]
        else:
            self.x, self.bind = None, None

    # -- arguments ------------------------------------------------------------------------

    def arg(self, index: int | None, name: str | None, default: Any = None) -> Any:
        """Argument ``name`` (keyword) or at position ``index``, else ``default``."""
        if name is not None and name in self.kwargs:
            return self.kwargs[name]
        if index is not None and index < len(self.args):
            return self.args[index]
        return default

    def binding_of(self, index: int | None, name: str | None):
        """The :class:`Bind` (or ``None``) of argument ``name`` / at ``index``."""
        if name is not None and name in self.kwarg_binds:
            return self.kwarg_binds[name]
        if index is not None and index < len(self.arg_binds):
            return self.arg_binds[index]
        return None

    @property
    def op_name(self) -> str:
        """A short name for the op (``conv2d``, ``Conv2d``, ``view``)."""
        return target_name(self.module if self.module is not None else self.target)

    # -- shapes ---------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return self.x.dim()

    def norm_dim(self, dim: int, ndim: int | None = None) -> int:
        n = self.ndim if ndim is None else ndim
        return dim + n if dim < 0 else dim

    def axes_on(self, dims, bind: Bind | None = None, ndim: int | None = None) -> tuple[int, ...]:
        """The spatial axes held by tensor dims ``dims`` (negative dims allowed)."""
        bind = bind or self.bind
        if isinstance(dims, int):
            dims = (dims,)
        ds = {self.norm_dim(int(d), ndim) for d in dims}
        return tuple(a for a, d in enumerate(bind.dims) if d is not None and d in ds)

    def standard_dims(self, ndim: int | None = None) -> tuple[int, ...]:
        """Where a convolution expects the spatial axes: the last ``rank`` dims."""
        n = self.ndim if ndim is None else ndim
        return tuple(range(n - self.rank, n))

    def sizes(self, bind: Bind | None = None) -> tuple[int, ...]:
        """The engine's spatial sizes of the map behind ``bind`` (default: the input)."""
        return self._front.sizes[(bind or self.bind).node]

    def out_sizes(self, dims: Sequence[int | None], out: Any = None) -> tuple[int, ...]:
        """Spatial sizes of the output (or ``out``) at ``dims`` (1 where an axis is gone;
        axes flattened into one dim take their sizes from an input laid out the same way)."""
        t = _first_tensor(self.out if out is None else out)
        counts: dict[int, int] = {}
        for d in dims:
            if d is not None:
                counts[d] = counts.get(d, 0) + 1
        res = []
        for a, d in enumerate(dims):
            if d is None:
                res.append(1)
            elif counts[d] == 1:
                res.append(int(t.shape[d]))
            else:
                for v, b in self.inputs:
                    rd = _right_aligned(b.dims, v.dim(), t.dim())
                    if rd[a] == d and sum(1 for x in rd if x == d) == counts[d]:
                        res.append(self.sizes(b)[a])
                        break
                else:
                    raise LayoutError("cannot tell the sizes of spatial axes flattened into one dim")
        return tuple(res)

    def standard(self) -> Bind:
        """Make the input's spatial axes the last ``rank`` dims (convolutions need that),
        broadcasting axes that were reduced away; raises :class:`LayoutError` otherwise."""
        want = self.standard_dims()
        b = self.bind
        if b.dims == want:
            return b
        if all(d is None or d == w for d, w in zip(b.dims, want)) and len(set(d for d in b.dims if d is not None)) == sum(
            d is not None for d in b.dims
        ):
            size = tuple(int(self.x.shape[w]) for w in want)
            node = self.emit(".expand", Expand(size), b)
            self.bind = Bind(node.node, want)
            self.inputs[0] = (self.x, self.bind)
            return self.bind
        raise LayoutError(f"its spatial axes are at dims {list(b.dims)} of a {self.ndim}-d tensor, not the last {self.rank}")

    # -- building ------------------------------------------------------------------------

    def emit(self, suffix: str, layer: Layer, *inputs: Bind, dims=None) -> Bind:
        """Add a node ``name + suffix`` (``suffix=""``: the op's own name) reading ``inputs``."""
        node = self._front.emit(self, self.name + suffix, layer, [b.node for b in inputs])
        return Bind(node, tuple(inputs[0].dims if dims is None else dims))

    def mix(self, axes: Sequence[int], op: str, bind: Bind | None = None) -> Bind:
        """An output that keeps its cells but whose every cell also sees all of ``axes``
        (group/instance/layer norm, softmax or attention over positions): the local path
        merged with a global branch, so that ``exclude_global`` can show the local field."""
        bind = bind or self.bind
        axes = tuple(sorted(set(axes)))
        if not axes:
            return bind
        live = {a for a, d in enumerate(bind.dims) if d is not None}
        if not live <= set(axes):
            # along some axes only: each cell sees its whole row/column (itself included);
            # no global branch to set apart, so no merge
            reduced = self.emit(".reduce", Reduce(axes, op=op), bind)
            return self.emit("", Expand(self.sizes(bind)), reduced, dims=bind.dims)
        stats = self.emit(".stats", GlobalOp(op=f"{op}_stats"), bind)
        expanded = self.emit(".expand", Expand(self.sizes(bind)), stats)
        return self.emit("", Merge("mul"), bind, expanded, dims=bind.dims)


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A converter; ``same_shape``: the op keeps its first argument's shape, ``broadcast``:
    its output has the broadcast shape of its tensor arguments (either way the front end
    need not run it); ``user``: registered through :func:`register`."""

    converter: Callable[[OpCall], Any]
    same_shape: bool = False
    user: bool = False
    broadcast: bool = False


_RULES: dict[Any, Rule] = {}


def _key(target: Any) -> Any:
    if isinstance(target, str):
        return target
    if isinstance(target, type):
        return target
    objclass = getattr(target, "__objclass__", None)
    if objclass is not None and issubclass(objclass, torch._C.TensorBase):
        return target.__name__  # torch.Tensor.view -> "view"
    if getattr(target, "__qualname__", "").startswith(("Tensor.", "TensorBase.")):
        return target.__name__
    return target


def _as_converter(converter: Any, target: Any) -> Callable[[OpCall], Any]:
    if isinstance(converter, Layer):
        return lambda call: converter
    if isinstance(converter, str):
        kind = converter.lower()
        if kind == "pointwise":
            return lambda call: Pointwise(op=call.op_name)
        if kind == "global":
            return _global_rule
        if kind in ("add", "mul", "concat"):
            return lambda call: _merge_or_pointwise(call, kind)
        if kind == "same":
            return lambda call: SAME
        raise RFMapError(f"rule for {target_name(target)}: {converter!r} is not one of pointwise, global, add, mul, concat, same")
    if not callable(converter):
        raise RFMapError(f"rule for {target_name(target)}: a converter must be callable, a Layer or a string")
    return converter


def register(target: Any, converter: Any = None, *, same_shape: bool = False, replace: bool = True):
    """Register the rule for a torch op (also usable as a decorator: ``@register(MyBlock)``).

    ``target``: a module class, a function, a tensor method (``"view"`` or
    ``torch.Tensor.view``) or an ATen op.  ``converter``: ``converter(call: OpCall)``
    returning a :class:`~rfmap.core.layers.Layer`, :data:`SAME`, a :class:`Bind` or a list
    of them (see the module docstring); or a Layer (always that layer); or one of the
    strings ``"pointwise"``, ``"global"``, ``"add"``, ``"mul"``, ``"concat"``, ``"same"``.
    ``same_shape``: the op's output has its input's shape (it then need not be run).
    A registered module class is kept whole when tracing (a leaf).
    """
    if converter is None:

        def decorator(fn):
            register(target, fn, same_shape=same_shape, replace=replace)
            return fn

        return decorator
    key = _key(target)
    if not replace and key in _RULES:
        raise RFMapError(f"a rule for {target_name(target)} is already registered (pass replace=True)")
    _RULES[key] = Rule(_as_converter(converter, target), same_shape, user=True)
    return converter


#: The name the package exports: ``rfmap.register_torch_op(target, converter)``.
register_torch_op = register


def unregister(target: Any) -> None:
    """Remove a rule (built-in or registered)."""
    _RULES.pop(_key(target), None)


def registered(target: Any) -> bool:
    return _key(target) in _RULES


def lookup(target: Any) -> Rule | None:
    """The rule for a module instance, a module class, a function, a method name or an ATen op."""
    if isinstance(target, nn.Module):
        target = type(target)
    if isinstance(target, type):
        for cls in target.__mro__:
            rule = _RULES.get(cls)
            if rule is not None:
                return rule
            if cls is nn.Module:
                break
        return None
    key = _key(target)
    try:
        rule = _RULES.get(key)
    except TypeError:  # unhashable target
        return None
    if rule is None and isinstance(target, torch._ops.OpOverload):
        rule = _RULES.get(target.overloadpacket)
        if rule is None and torch.Tag.pointwise in target.tags:
            rule = Rule(_elementwise_rule("add"))
    return rule


def is_user_leaf(module: nn.Module) -> bool:
    """A module class the user registered: traced as one call, not traced into."""
    rule = _RULES.get(type(module))
    return rule is not None and rule.user


def target_name(target: Any) -> str:
    """Readable name of a torch target (``Conv2d``, ``conv2d``, ``view``, ``aten.conv2d``)."""
    if isinstance(target, nn.Module):
        return type(target).__name__
    if isinstance(target, type):
        return target.__name__
    if isinstance(target, str):
        return target
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target).split(".")[1] if str(target).startswith("aten.") else str(target)
    return getattr(target, "__name__", None) or repr(target)


def _add(targets: Sequence[Any], converter: Callable[[OpCall], Any], same_shape: bool = False, broadcast: bool = False) -> None:
    for t in targets:
        if t is None:
            continue
        _RULES[_key(t)] = Rule(converter, same_shape, broadcast=broadcast)


def _aten(*names: str) -> list:
    out = []
    for n in names:
        try:
            out.append(getattr(torch.ops.aten, n))
        except (AttributeError, RuntimeError):
            pass
    return out


# ---------------------------------------------------------------------------------------
# helpers shared by the rules
# ---------------------------------------------------------------------------------------


def _tuple(value: Any, n: int) -> tuple:
    if isinstance(value, (list, tuple, torch.Size)):
        value = tuple(int(v) if isinstance(v, (int, torch.SymInt)) else v for v in value)
        if len(value) == 1:
            return value * n
        return value
    return (value,) * n


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def _global_rule(call: OpCall):
    """Every output sees the whole input (and every input map, when there are several)."""
    call.out_dims = (None,) * call.rank
    binds = _distinct(call)
    if len(binds) > 1:
        flat = [_flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(binds)]
        return call.emit("", Merge("add"), *flat, dims=call.out_dims)
    return GlobalOp(op=call.op_name)


def _flat_global(call: OpCall, value, bind: Bind, suffix: str) -> Bind:
    """``bind`` reduced to one cell (a global op) unless it already is one."""
    if all(d is None for d in bind.dims):
        return bind
    return call.emit(suffix, GlobalOp(op=call.op_name), bind, dims=(None,) * len(bind.dims))


def _distinct(call: OpCall) -> list[tuple[Any, Bind]]:
    seen, out = set(), []
    for v, b in call.inputs:
        if b.node not in seen:
            seen.add(b.node)
            out.append((v, b))
    return out


def _right_aligned(dims, in_ndim: int, out_ndim: int):
    shift = out_ndim - in_ndim
    return tuple(None if d is None or d + shift < 0 else d + shift for d in dims)


def _broadcast_dims(call: OpCall, out: Any = None) -> tuple[int | None, ...]:
    """Output dims of an elementwise op: the inputs' dims, right-aligned like broadcasting."""
    out = call.out if out is None else out
    result: list[int | None] = [None] * call.rank
    for v, b in call.inputs:
        for a, d in enumerate(_right_aligned(b.dims, v.dim(), out.dim())):
            if d is None:
                continue
            if result[a] is None:
                result[a] = d
            elif result[a] != d:
                raise LayoutError(f"its inputs hold spatial axis {a} at different dims ({result[a]} and {d})")
    return tuple(result)


def _merge_or_pointwise(call: OpCall, op: str):
    """An elementwise op of several tensors: a merge of the distinct maps among them."""
    dims = _broadcast_dims(call)
    call.out_dims = dims
    binds = _distinct(call)
    if len(binds) == 1:
        v, b = binds[0]
        want = call.out_sizes(dims)
        if call.sizes(b) != want or _right_aligned(b.dims, v.dim(), call.out.dim()) != dims:
            return call.emit("", Expand(want), b, dims=dims)
        return Pointwise(op=call.op_name)
    return Merge(op)


def _elementwise_rule(op: str):
    def rule(call: OpCall):
        return _merge_or_pointwise(call, op)

    return rule


def _pointwise_rule(call: OpCall):
    if len(_distinct(call)) > 1 or (_is_tensor(call.out) and call.out.dim() != call.ndim):
        return _merge_or_pointwise(call, "add")
    return Pointwise(op=call.op_name)


def _same_rule(call: OpCall):
    if _is_tensor(call.out) and call.out.dim() != call.ndim:
        return _reshape_rule(call)
    return SAME


# ---------------------------------------------------------------------------------------
# convolution, pooling, resampling, padding
# ---------------------------------------------------------------------------------------


def _conv_module(call: OpCall):
    m = call.module
    call.standard()
    pad = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    mode = getattr(m, "padding_mode", "zeros")
    return Conv(tuple(m.kernel_size), tuple(m.stride), pad, tuple(m.dilation), op="conv", pad_mode=mode)


def _conv_fn(call: OpCall):
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    pad = call.arg(4, "padding", 0)
    pad = pad if isinstance(pad, str) else _tuple(pad, n)
    return Conv(k, _tuple(call.arg(3, "stride", 1), n), pad, _tuple(call.arg(5, "dilation", 1), n), op="conv")


def _output_padding(call: OpCall, k, s, p, d) -> tuple[int, ...]:
    """PyTorch's effective output padding, read off the traced output size (``forward``
    may take an ``output_size``)."""
    ins = call.sizes()
    outs = call.out_sizes(call.standard_dims(call.out.dim()))
    return tuple(o - ((n - 1) * si - 2 * pi + di * (ki - 1) + 1) for o, n, ki, si, pi, di in zip(outs, ins, k, s, p, d))


def _conv_transpose_module(call: OpCall):
    m = call.module
    call.standard()
    k, s, p, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.padding), tuple(m.dilation)
    return ConvTranspose(k, s, p, _output_padding(call, k, s, p, d), d)


def _conv_transpose_fn(call: OpCall):
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    s = _tuple(call.arg(3, "stride", 1), n)
    p = _tuple(call.arg(4, "padding", 0), n)
    d = _tuple(call.arg(7, "dilation", 1), n)
    return ConvTranspose(k, s, p, _output_padding(call, k, s, p, d), d)


def _aten_convolution(call: OpCall):
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    s, p, d = _tuple(call.arg(3, "stride"), n), _tuple(call.arg(4, "padding"), n), _tuple(call.arg(5, "dilation"), n)
    if call.arg(6, "transposed", False):
        return ConvTranspose(k, s, p, _output_padding(call, k, s, p, d), d)
    return Conv(k, s, p, d, op="conv")


def _stride_or_kernel(stride, kernel, n):
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return _tuple(kernel, n)
    return _tuple(stride, n)


def _max_pool_module(call: OpCall):
    m = call.module
    call.standard()
    n = call.rank
    return Conv(
        _tuple(m.kernel_size, n), _stride_or_kernel(m.stride, m.kernel_size, n), _tuple(m.padding, n),
        _tuple(m.dilation, n), bool(m.ceil_mode), op="maxpool",
    )


def _avg_pool_module(call: OpCall):
    m = call.module
    call.standard()
    n = call.rank
    return Conv(
        _tuple(m.kernel_size, n), _stride_or_kernel(m.stride, m.kernel_size, n), _tuple(m.padding, n), 1,
        bool(m.ceil_mode), op="avgpool",
    )


def _lp_pool_module(call: OpCall):
    m = call.module
    call.standard()
    n = call.rank
    return Conv(_tuple(m.kernel_size, n), _stride_or_kernel(m.stride, m.kernel_size, n), 0, 1, bool(m.ceil_mode), op="lppool")


def _max_pool_fn(call: OpCall):
    # F.max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)
    call.standard()
    n = call.rank
    k = call.arg(1, "kernel_size")
    layer = Conv(
        _tuple(k, n), _stride_or_kernel(call.arg(2, "stride"), k, n), _tuple(call.arg(3, "padding", 0), n),
        _tuple(call.arg(4, "dilation", 1), n), bool(call.arg(5, "ceil_mode", False)), op="maxpool",
    )
    return layer


def _avg_pool_fn(call: OpCall):
    # F.avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None)
    call.standard()
    n = call.rank
    k = call.arg(1, "kernel_size")
    return Conv(
        _tuple(k, n), _stride_or_kernel(call.arg(2, "stride"), k, n), _tuple(call.arg(3, "padding", 0), n), 1,
        bool(call.arg(4, "ceil_mode", False)), op="avgpool",
    )


def _lp_pool_fn(call: OpCall):
    # F.lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False)
    call.standard()
    n = call.rank
    k = call.arg(2, "kernel_size")
    return Conv(_tuple(k, n), _stride_or_kernel(call.arg(3, "stride"), k, n), 0, 1, bool(call.arg(4, "ceil_mode", False)), op="lppool")


def _max_unpool(call: OpCall):
    """Max unpooling (SegNet): each output cell may receive any input cell whose pooling
    window covers it -- a transposed window; which one does depends on the data."""
    call.standard()
    n = call.rank
    if call.module is not None:
        m = call.module
        k, s, p = m.kernel_size, m.stride, m.padding
    else:
        k, s, p = call.arg(2, "kernel_size"), call.arg(3, "stride"), call.arg(4, "padding", 0)
    k = _tuple(k, n)
    s = _stride_or_kernel(s, k, n)
    p = _tuple(p, n)
    return ConvTranspose(k, s, p, _output_padding(call, k, s, p, (1,) * n), 1, op="max_unpool")


def _adaptive(call: OpCall, kind: str):
    call.standard()
    outs = call.out_sizes(call.standard_dims(_first_tensor(call.out).dim()), _first_tensor(call.out))
    call.out_dims = call.standard_dims(_first_tensor(call.out).dim())
    if all(o == 1 for o in outs):
        return GlobalOp(op=f"global_{kind}")
    return AdaptivePool(outs, op=f"adaptive_{kind}")


def _first_tensor(out: Any):
    for leaf in _flatten(out):
        if _is_tensor(leaf):
            return leaf
    return out


def _adaptive_avg(call):
    return _adaptive(call, "avgpool")


def _adaptive_max(call):
    return _adaptive(call, "maxpool")


def _interpolate(call: OpCall, size, scale, mode, align_corners, recompute=None, antialias=False):
    call.standard()
    n = call.rank
    ins = call.sizes()
    outs = call.out_sizes(call.standard_dims(call.out.dim()))
    mode = str(mode)
    if mode == "area":
        return AdaptivePool(outs, op="area")
    if antialias and mode in ("bilinear", "bicubic", "linear", "trilinear") and any(o < i for o, i in zip(outs, ins)):
        raise LayoutError("antialiased downsampling has a wider kernel than rfmap models")
    align = bool(align_corners) if mode not in ("nearest", "nearest-exact") else False
    if scale is not None and not recompute:
        scales = _tuple(scale, n)
        if any(s is None for s in scales):
            return Upsample(size=outs, mode=mode, align_corners=align)
        return Upsample(scale_factor=tuple(float(s) for s in scales), mode=mode, align_corners=align)
    return Upsample(size=outs, mode=mode, align_corners=align)


def _interpolate_fn(call: OpCall):
    # F.interpolate(input, size=None, scale_factor=None, mode='nearest', align_corners=None, recompute_scale_factor=None, antialias=False)
    return _interpolate(
        call, call.arg(1, "size"), call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"), call.arg(4, "align_corners"),
        call.arg(5, "recompute_scale_factor"), call.arg(6, "antialias", False),
    )


def _upsample_fn(call: OpCall):
    # F.upsample(input, size, scale_factor, mode, align_corners); upsample_nearest(input, size, scale_factor)
    return _interpolate(call, call.arg(1, "size"), call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"), call.arg(4, "align_corners"))


def _upsample_bilinear_fn(call: OpCall):
    return _interpolate(call, call.arg(1, "size"), call.arg(2, "scale_factor"), "bilinear", True)


def _upsample_module(call: OpCall):
    m = call.module
    return _interpolate(call, m.size, m.scale_factor, m.mode, m.align_corners, getattr(m, "recompute_scale_factor", None))


def _aten_upsample(mode: str, has_align: bool):
    def rule(call: OpCall):
        # aten.upsample_*.vec(input, output_size, [align_corners,] scale_factors)
        scales = call.arg(3 if has_align else 2, "scale_factors")
        align = call.arg(2, "align_corners", False) if has_align else False
        out_size = call.arg(1, "output_size")
        return _interpolate(call, out_size, None if out_size is not None else scales, mode, align)

    return rule


def _pad_pairs(call: OpCall, pad: Sequence[int], bind: Bind, ndim: int):
    """F.pad's flat list (last dim first) as per-axis (left, right) pairs of the map."""
    pairs = [(0, 0)] * len(bind.dims)
    pad = [int(p) for p in pad]
    for i in range(len(pad) // 2):
        d = ndim - 1 - i
        axes = [a for a, ad in enumerate(bind.dims) if ad == d]
        if not axes:
            continue
        if len(axes) > 1:
            raise LayoutError("it pads a dim that holds several spatial axes")
        pairs[axes[0]] = (pad[2 * i], pad[2 * i + 1])
    return tuple(pairs)


_PAD_MODES = {"constant": "zeros", "zeros": "zeros", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _pad_layer(call: OpCall, pad, mode):
    pairs = _pad_pairs(call, pad, call.bind, call.ndim)
    if all(p == (0, 0) for p in pairs):
        return Pointwise(op="pad")
    return Pad(pairs, _PAD_MODES.get(str(mode), str(mode)))


def _pad_fn(call: OpCall):
    # F.pad(input, pad, mode='constant', value=None)
    return _pad_layer(call, call.arg(1, "pad"), call.arg(2, "mode", "constant"))


def _aten_pad_mode(mode: str):
    def rule(call: OpCall):
        return _pad_layer(call, call.arg(1, "padding" if mode != "constant" else "pad"), mode)

    return rule


def _pad_module(call: OpCall):
    m = call.module
    name = type(m).__name__
    mode = "reflect" if name.startswith("Reflection") else "replicate" if name.startswith("Replication") else (
        "circular" if name.startswith("Circular") else "constant"
    )
    return _pad_layer(call, m.padding, mode)


def _pixel_shuffle(call: OpCall):
    call.standard()
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    return PixelShuffle(int(r))


def _pixel_unshuffle(call: OpCall):
    call.standard()
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    return PixelUnshuffle(int(r))


def _unfold(call: OpCall):
    """im2col: the columns are the windows of a convolution, flattened row-major into dim 2."""
    call.standard()
    n = call.rank
    if call.module is not None:
        m = call.module
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    else:
        k, d, p, s = call.arg(1, "kernel_size"), call.arg(2, "dilation", 1), call.arg(3, "padding", 0), call.arg(4, "stride", 1)
    call.out_dims = (call.out.dim() - 1,) * n
    return Conv(_tuple(k, n), _tuple(s, n), _tuple(p, n), _tuple(d, n), op="unfold")


def _fold(call: OpCall):
    """col2im: a transposed convolution from the grid of windows to the image."""
    n = call.rank
    b = call.bind
    if len(set(b.dims)) != 1 or b.dims[0] != call.ndim - 1:
        raise LayoutError("fold reads a tensor whose last dim is not the grid of windows")
    if call.module is not None:
        m = call.module
        size, k, d, p, s = m.output_size, m.kernel_size, m.dilation, m.padding, m.stride
    else:
        size, k, d, p, s = (call.arg(1, "output_size"), call.arg(2, "kernel_size"), call.arg(3, "dilation", 1),
                            call.arg(4, "padding", 0), call.arg(5, "stride", 1))
    k, d, p, s = _tuple(k, n), _tuple(d, n), _tuple(p, n), _tuple(s, n)
    ins = call.sizes()
    outs = _tuple(size, n)
    op_ = tuple(o - ((i - 1) * si - 2 * pi + di * (ki - 1) + 1) for o, i, ki, si, pi, di in zip(outs, ins, k, s, p, d))
    call.out_dims = call.standard_dims(call.out.dim())
    return ConvTranspose(k, s, p, op_, d, op="fold")


# ---------------------------------------------------------------------------------------
# slicing, splitting, layout (view, permute, flatten)
# ---------------------------------------------------------------------------------------


def _crop_for(call: OpCall, per_dim: dict[int, tuple], bind: Bind):
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


def _as_int(v):
    if isinstance(v, torch.Tensor):
        return int(v.item()) if v.device.type != "meta" else None
    return None if v is None else int(v)


def _getitem(call: OpCall):
    seq_bind = call.arg_binds[0]
    if isinstance(seq_bind, (list, tuple)):  # an element of a tuple output
        idx = call.args[1]
        return seq_bind[idx]
    idx = call.args[1]
    b = call.bind
    if not isinstance(idx, tuple):
        idx = (idx,)
    ndim = call.ndim
    consuming = sum(1 for e in idx if e is not None and e is not Ellipsis and not (isinstance(e, bool)))
    for e in idx:
        if _is_tensor(e) and e.dtype == torch.bool:
            consuming += e.dim() - 1
    entries: list = []
    for e in idx:
        if e is Ellipsis:
            entries.extend([slice(None)] * (ndim - consuming))
        else:
            entries.append(e)
    entries.extend([slice(None)] * (ndim - sum(1 for e in entries if e is not None)))
    advanced = [e for e in entries if _is_tensor(e) or isinstance(e, (list, bool))]
    if len(advanced) > 1:
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
            d_in += 1
            d_out += 1
        elif isinstance(e, (int, torch.SymInt)) and not isinstance(e, bool):
            i = int(e) % int(call.x.shape[d_in])
            per_dim[d_in] = (i, i + 1, 1)
            dim_map[d_in] = None
            d_in += 1
        else:  # one index tensor / list on a dim
            if any(ad == d_in for ad in b.dims):
                raise LayoutError("it indexes a spatial dim with a tensor")
            width = e.dim() if _is_tensor(e) else 1
            dim_map[d_in] = d_out
            d_in += 1
            d_out += width
    new_dims = tuple(None if d is None else dim_map.get(d, d) for d in b.dims)
    if call.out.dim() != d_out:
        raise LayoutError("indexing moved dims in a way rfmap does not follow")
    crop = _crop_for(call, per_dim, b)
    call.out_dims = new_dims
    return SAME if crop is None else crop


def _narrow(call: OpCall):
    dim = call.norm_dim(int(call.arg(1, "dim")))
    start = int(call.arg(2, "start"))
    length = int(call.arg(3, "length"))
    start %= int(call.x.shape[dim]) if start < 0 else 10**18
    crop = _crop_for(call, {dim: (start, start + length, 1)}, call.bind)
    return SAME if crop is None else crop


def _select(call: OpCall):
    dim = call.norm_dim(int(call.arg(1, "dim")))
    i = int(call.arg(2, "index")) % int(call.x.shape[dim])
    crop = _crop_for(call, {dim: (i, i + 1, 1)}, call.bind)
    call.out_dims = tuple(None if d == dim else (d - 1 if d is not None and d > dim else d) for d in call.bind.dims)
    return SAME if crop is None else crop


def _aten_slice(call: OpCall):
    # aten.slice.Tensor(input, dim=0, start=None, end=None, step=1)
    dim = call.norm_dim(int(call.arg(1, "dim", 0)))
    start, end, step = call.arg(2, "start"), call.arg(3, "end"), call.arg(4, "step", 1)
    n = int(call.x.shape[dim])
    if end is not None and end > n:
        end = None
    crop = _crop_for(call, {dim: (start, end, step)}, call.bind)
    return SAME if crop is None else crop


def _split_pieces(call: OpCall, dim: int, lengths: Sequence[int], keep: bool):
    b = call.bind
    on_axis = [a for a, d in enumerate(b.dims) if d == dim]
    outs = [o for o in _flatten(call.out) if _is_tensor(o)]
    if not on_axis:
        dims = b.dims if keep else tuple(None if d is None else (d - 1 if d > dim else d) for d in b.dims)
        node = call.emit("", Pointwise(op=call.op_name), b)
        return [Bind(node.node, dims) for _ in outs]
    if len(on_axis) > 1:
        raise LayoutError("it splits a dim that holds several spatial axes")
    pieces, start = [], 0
    for i, n in enumerate(lengths):  # one crop per piece; pieces nobody reads are dropped later
        crop = _crop_for(call, {dim: (start, start + n, 1)}, b)
        dims = b.dims if keep else tuple(None if d == dim else (d - 1 if d is not None and d > dim else d) for d in b.dims)
        pieces.append(call.emit(f".{i}", crop, b, dims=dims) if crop is not None else Bind(b.node, dims))
        start += n
    return pieces


def _split(call: OpCall):
    dim = call.norm_dim(int(call.arg(2, "dim", 0)))
    lengths = [int(o.shape[dim]) for o in _flatten(call.out) if _is_tensor(o)]
    return _split_pieces(call, dim, lengths, keep=True)


def _chunk(call: OpCall):
    dim = call.norm_dim(int(call.arg(2, "dim", 0)))
    lengths = [int(o.shape[dim]) for o in _flatten(call.out) if _is_tensor(o)]
    return _split_pieces(call, dim, lengths, keep=True)


def _unbind(call: OpCall):
    dim = call.norm_dim(int(call.arg(1, "dim", 0)))
    return _split_pieces(call, dim, [1] * int(call.x.shape[dim]), keep=False)


def _virtual(shape: Sequence[int], bind: Bind, sizes: Sequence[int]):
    """Split dims that hold several spatial axes back into one dim per axis.

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
        if prod != n:
            raise LayoutError("a dim holds spatial axes and something else")
        for a in axes:  # row-major: the lower axis is the outer one
            vdim_of[a] = len(vshape)
            spatial.add(len(vshape))
            vshape.append(int(sizes[a]))
    return vshape, vdim_of, spatial


def _reshape_dims(call: OpCall, in_shape, out_shape, bind: Bind):
    """Where the spatial axes land after a reshape (view, flatten, unflatten, squeeze...).

    Row-major bookkeeping: an input dim ``v`` spans the prefix products ``p_in[v]..p_in[v+1]``.
    An axis stays whole where an output dim has its size and prefix; it is flattened into
    output dim ``e`` when ``e``'s span holds it.  Returns ``(dims, collapsed)``;
    ``collapsed`` when an axis was flattened together with a non-spatial dim (as in
    ``x.flatten(1)``) -- the output then sees the map globally.
    """
    sizes = call.sizes(bind)
    vshape, vdim_of, spatial = _virtual(in_shape, bind, sizes)
    out_shape = [int(v) for v in out_shape]
    p_in = [math.prod(vshape[:i]) for i in range(len(vshape) + 1)]
    p_out = [math.prod(out_shape[:i]) for i in range(len(out_shape) + 1)]
    axis_of = {v: a for a, v in vdim_of.items()}
    dims: list[int | None] = [None] * len(bind.dims)
    used: set[int] = set()
    collapsed = False
    last = -1
    for a, v in sorted(vdim_of.items(), key=lambda kv: kv[1]):
        n = vshape[v]
        if n == 1:
            cands = [e for e in range(len(out_shape)) if out_shape[e] == 1 and p_out[e] == p_in[v] and e not in used and e > last]
            if cands:
                dims[a] = cands[0]
                used.add(cands[0])
                last = cands[0]
            continue
        cands = [e for e in range(len(out_shape)) if out_shape[e] == n and p_out[e] == p_in[v] and e not in used]
        if cands:
            dims[a] = cands[0]
            used.add(cands[0])
            last = cands[0]
            continue
        hosts = [e for e in range(len(out_shape)) if p_out[e] <= p_in[v] and p_in[v + 1] <= p_out[e + 1] and out_shape[e] > 1]
        if not hosts:
            raise LayoutError(f"it splits spatial axis {a} over several dims")
        e = hosts[0]
        inside = [w for w in range(len(vshape)) if p_out[e] <= p_in[w] and p_in[w + 1] <= p_out[e + 1] and vshape[w] > 1]
        if math.prod(vshape[w] for w in inside) != out_shape[e]:
            raise LayoutError(f"it splits spatial axis {a} over several dims")
        if all(w in spatial for w in inside):
            order = [axis_of[w] for w in inside]
            if order != sorted(order):
                raise LayoutError("it flattens the spatial axes in an order other than (H, W)")
            dims[a] = e
            last = e
        else:
            collapsed = True
    return tuple(dims), collapsed


def _reshape_rule(call: OpCall):
    out = _first_tensor(call.out)
    dims, collapsed = _reshape_dims(call, tuple(call.x.shape), tuple(out.shape), call.bind)
    if collapsed:
        call.out_dims = (None,) * len(dims)
        return GlobalOp(op="flatten")
    call.out_dims = dims
    if call.kind == "module":
        return Pointwise(op=call.op_name)
    return SAME


def _permute_rule(perm_of: Callable[[OpCall], Sequence[int]]):
    def rule(call: OpCall):
        perm = [call.norm_dim(int(p)) for p in perm_of(call)]
        call.out_dims = tuple(None if d is None else perm.index(d) for d in call.bind.dims)
        return SAME

    return rule


def _permute_args(call: OpCall):
    dims = call.arg(1, "dims")
    if isinstance(dims, (list, tuple)) and not (len(call.args) > 2 and isinstance(call.args[2], int)):
        return dims
    return call.args[1:]


def _transpose_args(call: OpCall):
    n = call.ndim
    d0 = call.norm_dim(int(call.arg(1, "dim0")))
    d1 = call.norm_dim(int(call.arg(2, "dim1")))
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


def _movedim_args(call: OpCall):
    n = call.ndim
    src = call.arg(1, "source")
    dst = call.arg(2, "destination")
    src = [call.norm_dim(int(s)) for s in _tuple(src, 1)] if not isinstance(src, int) else [call.norm_dim(src)]
    dst = [call.norm_dim(int(s)) for s in _tuple(dst, 1)] if not isinstance(dst, int) else [call.norm_dim(dst)]
    rest = [d for d in range(n) if d not in src]
    perm: list[int | None] = [None] * n
    for s, t in zip(src, dst):
        perm[t] = s
    it = iter(rest)
    return [p if p is not None else next(it) for p in perm]


def _t_args(call: OpCall):
    return list(range(call.ndim))[::-1]


def _mT_args(call: OpCall):
    perm = list(range(call.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return perm


def _getattr_rule(call: OpCall):
    attr = call.args[1]
    if attr in ("T", "mT", "H", "mH"):
        return _permute_rule(_t_args if attr in ("T", "H") else _mT_args)(call)
    if attr in ("data", "real"):
        return SAME
    raise LayoutError(f"tensor attribute {attr!r}")


def _expand_rule(call: OpCall):
    out = call.out
    dims = _right_aligned(call.bind.dims, call.ndim, out.dim())
    std = call.standard_dims(out.dim())
    # axes reduced away (None) come back where a convolution expects them
    dims = tuple(d if d is not None else (std[a] if out.shape[std[a]] > 1 else None) for a, d in enumerate(dims))
    want = call.out_sizes(dims)
    call.out_dims = dims
    if want != call.sizes():
        return Expand(want)
    return SAME


def _tile(call: OpCall, bind: Bind, reps: Sequence[int], suffix: str) -> Bind:
    """Tile ``reps[a]`` times along each axis: circular pads that at most double the map."""
    sizes = list(call.sizes(bind))
    targets = [n * r for n, r in zip(sizes, reps)]
    k = 0
    while sizes != targets:
        pads = tuple((0, min(n, t - n)) for n, t in zip(sizes, targets))
        bind = call.emit(f"{suffix}{k}" if True else "", Pad(pads, "circular"), bind)
        sizes = [n + p[1] for n, p in zip(sizes, pads)]
        k += 1
    return bind


def _repeat_rule(call: OpCall):
    reps = call.args[1:] if len(call.args) > 2 else _tuple(call.arg(1, "repeats"), 1)
    reps = [int(r) for r in (reps[0] if len(reps) == 1 and isinstance(reps[0], (list, tuple)) else reps)]
    out = call.out
    dims = _right_aligned(call.bind.dims, call.ndim, out.dim())
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


def _roll_rule(call: OpCall):
    """``torch.roll``: a circular pad on the left, then the first ``n`` cells."""
    shifts = call.arg(1, "shifts")
    dims = call.arg(2, "dims")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        raise LayoutError("roll without dims flattens the tensor")
    shifts, dims = _tuple(shifts, 1), _tuple(dims, 1)
    if len(shifts) == 1 and len(dims) > 1:
        shifts = shifts * len(dims)
    pads = [(0, 0)] * len(call.bind.dims)
    sizes = call.sizes()
    for s, d in zip(shifts, dims):
        for a in call.axes_on(int(d)):
            pads[a] = (int(s) % sizes[a], 0)
    if all(p == (0, 0) for p in pads):
        return SAME
    padded = call.emit(".pad", Pad(tuple(pads), "circular"), call.bind)
    return call.emit("", Crop(0, tuple(sizes), 1), padded)


# ---------------------------------------------------------------------------------------
# merges, reductions, normalization, contractions
# ---------------------------------------------------------------------------------------


def _cat_rule(stack: bool):
    def rule(call: OpCall):
        tensors = call.arg(0, "tensors")
        dim = int(call.arg(1, "dim", 0))
        nd = tensors[0].dim() + (1 if stack else 0)
        dim = dim + nd if dim < 0 else dim
        dims: tuple | None = None
        for v, b in call.inputs:
            if any(d == dim for d in b.dims) and not stack:
                raise LayoutError("it concatenates along a spatial dim")
            bd = b.dims if not stack else tuple(None if d is None else (d + 1 if d >= dim else d) for d in b.dims)
            if dims is None:
                dims = bd
            elif bd != dims:
                merged = tuple(x if x is not None else y for x, y in zip(dims, bd))
                for x, y in zip(dims, bd):
                    if x is not None and y is not None and x != y:
                        raise LayoutError("its inputs hold the spatial axes at different dims")
                dims = merged
        call.out_dims = dims
        binds = _distinct(call)
        if len(binds) == 1:
            return Pointwise(op="stack" if stack else "cat")
        want = call.out_sizes(dims)
        fitted = []
        for v, b in binds:
            fitted.append(b if call.sizes(b) == want else call.emit(f".expand{len(fitted)}", Expand(want), b))
        return call.emit("", Merge("concat"), *fitted, dims=dims)

    return rule


def _reduce_dims(call: OpCall, dim, keepdim: bool):
    """A reduction over tensor dims ``dim`` (``None`` or ``[]``: all)."""
    n = call.ndim
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        red = set(range(n))
    elif isinstance(dim, (list, tuple)):
        red = {call.norm_dim(int(d)) for d in dim}
    else:
        red = {call.norm_dim(int(dim))}
    b = call.bind
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


def _pairwise_reduce(call: OpCall):
    """cosine_similarity / pairwise_distance along a (channel) dim."""
    dim = call.module.dim if call.module is not None and hasattr(call.module, "dim") else call.arg(2, "dim", 1 if call.kind != "module" else -1)
    if len(_distinct(call)) == 1:
        return _reduce_dims(call, dim, bool(call.arg(None, "keepdim", False)))
    if call.axes_on(int(dim)):
        raise LayoutError("it reduces two maps along a spatial dim")
    return _merge_or_pointwise(call, "mul")


def _reduction(dim_index: int = 1, keep_index: int = 2, dim_name: str = "dim"):
    def rule(call: OpCall):
        dim = call.arg(dim_index, dim_name)
        if _is_tensor(dim):  # torch.max(x, y): elementwise
            return _merge_or_pointwise(call, "add")
        keep = bool(call.arg(keep_index, "keepdim", False))
        return _reduce_dims(call, dim, keep)

    return rule


def _mix_on_dims(call: OpCall, dims, op: str):
    axes = call.axes_on(dims)
    if not axes:
        return Pointwise(op=call.op_name)
    return call.mix(axes, op)


def _softmax_rule(call: OpCall):
    if call.module is not None:
        dim = call.module.dim
        if dim is None:
            dim = 0 if call.ndim in (0, 1, 3) else 1
    else:
        dim = call.arg(1, "dim")
        if dim is None:
            dim = 0 if call.ndim in (0, 1, 3) else 1
    return _mix_on_dims(call, int(dim), call.op_name)


def _dim_rule(default_dim: int, index: int = 1, name: str = "dim"):
    def rule(call: OpCall):
        dim = call.arg(index, name, default_dim)
        return _mix_on_dims(call, int(dim), call.op_name)

    return rule


def _group_norm(call: OpCall):
    """Statistics over channels and all positions: every cell also sees the whole map."""
    return _mix_on_dims(call, tuple(range(2, call.ndim)), "group_norm")


def _instance_norm_module(call: OpCall):
    m = call.module
    if m.track_running_stats and not m.training:
        return Pointwise(op=type(m).__name__)
    return _mix_on_dims(call, tuple(range(2, call.ndim)), "instance_norm")


def _instance_norm_fn(call: OpCall):
    if not call.arg(5, "use_input_stats", True):
        return Pointwise(op="instance_norm")
    return _mix_on_dims(call, tuple(range(2, call.ndim)), "instance_norm")


def _layer_norm(call: OpCall):
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    k = len(_tuple(shape, 1)) if not isinstance(shape, int) else 1
    return _mix_on_dims(call, tuple(range(call.ndim - k, call.ndim)), "layer_norm")


def _contract(call: OpCall, operands: list[tuple[Any, Any, str]], out_letters: str, op: str):
    """A tensor contraction (matmul, linear, einsum): ``operands`` are ``(value, bind, letters)``.

    The first operand with spatial axes keeps them where its letters land in the output;
    an axis summed over is reduced (each output sees that whole axis).  A summed axis whose
    output dim takes a new letter of its own (``nn.Linear`` over W) stays there, each output
    seeing the whole axis.  Other operands whose axes land elsewhere (the keys in the
    attention scores ``q @ k^T``) join as a global branch.
    """
    spatial_ops = [(v, b, letters) for v, b, letters in operands if isinstance(b, Bind)]
    known = {c for _, _, letters in operands for c in letters}
    v0, b0, l0 = spatial_ops[0]
    dims: list[int | None] = [None] * call.rank
    reduced: list[int] = []
    kept_sizes: dict[int, int] = {}
    out_t = _first_tensor(call.out)
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
        parts.append(b if agree else _flat_global(call, v, b, f".global{i}"))
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


def _matmul_rule(call: OpCall):
    a, b = call.args[0], call.args[1]
    ba, bb = call.arg_binds[0], call.arg_binds[1]
    na, nb = a.dim(), b.dim()
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


def _linear_rule(call: OpCall):
    x = call.x
    letters = _LETTERS[: x.dim()]
    out_letters = letters[:-1] + "z"
    return _contract(call, [(x, call.bind, letters)], out_letters, "linear")


def _bilinear_rule(call: OpCall):
    x1, x2 = call.args[0], call.args[1]
    l1 = _LETTERS[: x1.dim()]
    l2 = l1[:-1] + "y"
    out = l1[:-1] + "z"
    return _contract(call, [(x1, call.arg_binds[0], l1), (x2, call.arg_binds[1], l2)], out, "bilinear")


def _einsum_rule(call: OpCall):
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


def _attention(call: OpCall, q_index: int, kv_indices: Sequence[int], seq_dim: int):
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
        flat = [_flat_global(call, v, b, f".kv{i}") for i, (v, b) in enumerate(kv.values())]
        if isinstance(qb, Bind):
            want = call.sizes(qb)
            ex = [call.emit(f".expand{i}", Expand(want), g) for i, g in enumerate(flat)]
            result = call.emit("", Merge("mul"), qb, *ex, dims=qb.dims) if ex else call.emit("", Pointwise(op=call.op_name), qb)
        else:
            dims = (None,) * call.rank
            result = flat[0] if len(flat) == 1 else call.emit("", Merge("mul"), *flat, dims=dims)
    if isinstance(call.out, (tuple, list)):
        return [result] + [Bind(result.node, (None,) * call.rank) if _is_tensor(o) else None for o in list(call.out)[1:]]
    return result


def _mha_rule(call: OpCall):
    m = call.module
    seq = 1 if getattr(m, "batch_first", False) else 0
    if call.args[0].dim() == 2:
        seq = 0
    return _attention(call, 0, [1, 2], seq)


def _sdpa_rule(call: OpCall):
    return _attention(call, 0, [1, 2], -2 + call.args[0].dim())


def _batch_first(m) -> bool:
    for owner in (m, getattr(m, "self_attn", None), getattr(getattr(m, "layers", [None])[0], "self_attn", None),
                  getattr(getattr(m, "encoder", None), "layers", [None])[0]):
        if owner is not None and hasattr(owner, "batch_first"):
            return bool(owner.batch_first)
        if owner is not None and hasattr(owner, "self_attn"):
            return bool(owner.self_attn.batch_first)
    return False


def _transformer_layer_rule(call: OpCall):
    m = call.module
    seq = 1 if _batch_first(m) else 0
    if call.x.dim() == 2:
        seq = 0
    extra = [1] if len(call.args) > 1 and isinstance(call.arg_binds[1], Bind) else []
    return _attention(call, 0, [0] + extra, seq)


def _rnn_rule(call: OpCall):
    """Recurrent layers: every step may see the whole sequence (bidirectional), or at least
    all earlier steps; rfmap does not model causality, so this over-approximates."""
    m = call.module
    seq = 1 if getattr(m, "batch_first", False) else 0
    if call.x.dim() == 2:
        seq = 0
    return _attention(call, 0, [0], seq)


def _glu_rule(call: OpCall):
    dim = call.module.dim if call.module is not None else call.arg(1, "dim", -1)
    dim = call.norm_dim(int(dim))
    axes = call.axes_on(dim)
    if not axes:
        return Pointwise(op="glu")
    half = int(call.x.shape[dim]) // 2
    a = call.emit(".a", _crop_for(call, {dim: (0, half, 1)}, call.bind), call.bind)
    b = call.emit(".b", _crop_for(call, {dim: (half, 2 * half, 1)}, call.bind), call.bind)
    return call.emit("", Merge("mul"), a, b)


def _grid_sample_rule(call: OpCall):
    """Sampling at data-dependent positions: every output may see any input cell."""
    ins = [_flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(_distinct(call))]
    g = ins[0] if len(ins) == 1 else call.emit(".merge", Merge("mul"), *ins, dims=(None,) * call.rank)
    dims = call.standard_dims(call.out.dim())
    return call.emit("", Expand(call.out_sizes(dims)), g, dims=dims)


def _no_node_rule(call: OpCall):
    """Tensors whose values do not depend on the input (``zeros_like``, ``new_ones``)."""
    return None


# ---------------------------------------------------------------------------------------
# the built-in table
# ---------------------------------------------------------------------------------------

_POINTWISE_MODULES = [
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.Tanhshrink,
    nn.Softplus, nn.Softsign, nn.Threshold, nn.LogSigmoid, nn.Softmax2d, nn.ChannelShuffle,
]
for _name in ("LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d"):
    if hasattr(nn, _name):
        _POINTWISE_MODULES.append(getattr(nn, _name))
try:
    from torch.ao.quantization import DeQuantStub, QuantStub

    _POINTWISE_MODULES += [QuantStub, DeQuantStub]
except ImportError:  # pragma: no cover
    pass


def _module_pointwise(call: OpCall):
    if len(_distinct(call)) > 1:
        return _merge_or_pointwise(call, "add")
    return Pointwise(op=type(call.module).__name__)


_add(_POINTWISE_MODULES, _module_pointwise, same_shape=True)
_add([nn.Conv1d, nn.Conv2d, nn.Conv3d], _conv_module)
_add([nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d], _conv_transpose_module)
_add([nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d], _max_pool_module)
_add([nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d], _avg_pool_module)
_add([nn.LPPool1d, nn.LPPool2d, getattr(nn, "LPPool3d", None)], _lp_pool_module)
_add([nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d, F.max_unpool1d, F.max_unpool2d, F.max_unpool3d], _max_unpool)
_add([nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d], _adaptive_avg)
_add([nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d], _adaptive_max)
_add([nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d], _upsample_module)
_add(
    [getattr(nn, f"{kind}Pad{d}d", None) for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular") for d in (1, 2, 3)],
    _pad_module,
)
_add([nn.PixelShuffle], _pixel_shuffle)
_add([nn.PixelUnshuffle], _pixel_unshuffle)
_add([nn.Unfold], _unfold)
_add([nn.Fold], _fold)
_add([nn.Flatten, nn.Unflatten], _reshape_rule)
_add([nn.Linear, nn.LazyLinear], _linear_rule)
_add([nn.Bilinear], _bilinear_rule)
_add([nn.Softmax, nn.Softmin, nn.LogSoftmax], _softmax_rule)
_add([nn.GLU], _glu_rule)
_add([nn.GroupNorm], _group_norm)
_add([nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d], _instance_norm_module)
_add([nn.LayerNorm, getattr(nn, "RMSNorm", None)], _layer_norm)
_add([nn.MultiheadAttention], _mha_rule)
_add([nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer],
     _transformer_layer_rule)
_add([nn.RNN, nn.LSTM, nn.GRU], _rnn_rule)
_add([nn.CosineSimilarity, nn.PairwiseDistance], _pairwise_reduce)

# functions
_add([F.conv1d, F.conv2d, F.conv3d], _conv_fn)
_add([F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d], _conv_transpose_fn)
_add([F.max_pool1d, F.max_pool2d, F.max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices, F.max_pool3d_with_indices,
      torch.max_pool1d, torch.max_pool2d, torch.max_pool3d], _max_pool_fn)
_add([F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, torch.avg_pool1d], _avg_pool_fn)
_add([F.lp_pool1d, F.lp_pool2d, getattr(F, "lp_pool3d", None)], _lp_pool_fn)
_add([F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.adaptive_avg_pool1d], _adaptive_avg)
_add([F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.adaptive_max_pool1d_with_indices,
      F.adaptive_max_pool2d_with_indices, F.adaptive_max_pool3d_with_indices, torch.adaptive_max_pool1d], _adaptive_max)
_add([F.interpolate], _interpolate_fn)
_add([F.upsample, F.upsample_nearest], _upsample_fn)
_add([F.upsample_bilinear], _upsample_bilinear_fn)
_add([F.pad, torch.constant_pad_nd], _pad_fn)
_add([F.pixel_shuffle, torch.pixel_shuffle], _pixel_shuffle)
_add([F.pixel_unshuffle, torch.pixel_unshuffle], _pixel_unshuffle)
_add([F.unfold], _unfold)
_add([F.fold], _fold)
_add([F.linear], _linear_rule)
_add([F.bilinear], _bilinear_rule)
_add([torch.matmul, torch.bmm, torch.mm, operator.matmul, "matmul", "bmm", "mm", "__matmul__"], _matmul_rule)
_add([torch.einsum], _einsum_rule)
_add([F.softmax, F.softmin, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"], _softmax_rule)
_add([F.normalize], _dim_rule(1, index=2))
_add([F.glu, "glu"], _glu_rule)
_add([F.group_norm, torch.group_norm], _group_norm)
_add([F.instance_norm], _instance_norm_fn)
_add([F.layer_norm, torch.layer_norm, getattr(F, "rms_norm", None)], _layer_norm)
_add([F.scaled_dot_product_attention], _sdpa_rule)
_add([F.grid_sample], _grid_sample_rule)
_add([F.cosine_similarity, F.pairwise_distance], _pairwise_reduce)
_add([torch.cat, torch.concat, torch.concatenate], _cat_rule(stack=False))
_add([torch.stack], _cat_rule(stack=True))
_add([operator.getitem], _getitem)
_add([getattr], _getattr_rule)
_add([torch.narrow, "narrow"], _narrow)
_add([torch.select, "select"], _select)
_add([torch.split, "split"], _split)
_add([torch.chunk, "chunk"], _chunk)
_add([torch.unbind, "unbind"], _unbind)
_add([torch.flatten, "flatten", torch.reshape, "reshape", "view", "view_as", "reshape_as", torch.squeeze, "squeeze",
      torch.unsqueeze, "unsqueeze", "unflatten", torch.unflatten, torch.atleast_2d, torch.atleast_3d], _reshape_rule)
_add([torch.permute, "permute"], _permute_rule(_permute_args))
_add([torch.transpose, "transpose", torch.swapaxes, "swapaxes", torch.swapdims, "swapdims"], _permute_rule(_transpose_args))
_add([torch.movedim, "movedim", torch.moveaxis, "moveaxis"], _permute_rule(_movedim_args))
_add([torch.t, "t"], _permute_rule(_t_args))
_add(["expand", "expand_as", torch.broadcast_to, "broadcast_to"], _expand_rule)
_add(["repeat", torch.tile, "tile"], _repeat_rule)
_add([torch.roll, "roll"], _roll_rule)
_add([torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like,
      torch.randint_like, "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"], _no_node_rule)

_MEAN_LIKE = ("mean", "sum", "nansum", "nanmean", "prod", "amax", "amin", "logsumexp", "std", "var", "norm", "all", "any",
              "count_nonzero", "argmax", "argmin", "median", "nanmedian", "mode", "max", "min", "aminmax", "std_mean", "var_mean")
for _name in _MEAN_LIKE:
    dim_index = 2 if _name in ("norm",) else 1
    keep_index = 3 if _name in ("norm",) else 2
    if _name in ("std", "var", "std_mean", "var_mean"):
        _rule = _reduction(1, 3)
    elif _name == "norm":
        _rule = _reduction(2, 3)
    else:
        _rule = _reduction(dim_index, keep_index)
    _add([getattr(torch, _name, None), _name], _rule)

# elementwise: one tensor -> pointwise, several -> a merge
_ADD_LIKE = ("add", "sub", "subtract", "rsub", "maximum", "minimum", "fmax", "fmin", "where", "lerp", "addcmul", "addcdiv",
             "clamp", "clip", "masked_fill", "masked_scatter", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
             "logical_or", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "hypot", "atan2", "copysign",
             "heaviside", "nextafter", "remainder", "fmod", "floor_divide", "xlogy", "ldexp", "isclose")
_MUL_LIKE = ("mul", "multiply", "div", "divide", "true_divide", "pow", "float_power")
_BROADCAST_SAFE = ("add", "sub", "subtract", "rsub", "maximum", "minimum", "fmax", "fmin", "mul", "multiply", "div",
                   "divide", "true_divide")
for _name in _ADD_LIKE:
    _add([getattr(torch, _name, None), _name, _name + "_", f"__{_name}__", f"__r{_name}__", f"__i{_name}__"],
         _elementwise_rule("add"), broadcast=_name in _BROADCAST_SAFE)
for _name in _MUL_LIKE:
    _add([getattr(torch, _name, None), _name, _name + "_", f"__{_name}__", f"__r{_name}__", f"__i{_name}__"],
         _elementwise_rule("mul"), broadcast=_name in _BROADCAST_SAFE)
_add([operator.add, operator.iadd, operator.sub, operator.isub], _elementwise_rule("add"), broadcast=True)
_add([operator.mod, operator.floordiv, operator.and_, operator.or_, operator.xor, operator.iand, operator.ior,
      operator.ixor, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, operator.imod,
      operator.ifloordiv], _elementwise_rule("add"))
_add([operator.mul, operator.imul, operator.truediv, operator.itruediv], _elementwise_rule("mul"), broadcast=True)
_add([operator.pow, operator.ipow], _elementwise_rule("mul"))
_add(["__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rdiv__", "__truediv__", "__itruediv__", "__div__"],
     _elementwise_rule("mul"), broadcast=True)
_add(["__rpow__"], _elementwise_rule("mul"))

_UNARY = (
    "relu", "relu6", "relu_", "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "hardtanh", "hardtanh_",
    "hardswish", "hardsigmoid", "hardshrink", "softshrink", "tanhshrink", "leaky_relu", "leaky_relu_", "prelu", "rrelu",
    "rrelu_", "softplus", "softsign", "threshold", "threshold_", "logsigmoid", "sigmoid", "tanh", "sigmoid_", "tanh_",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm",
    "local_response_norm", "channel_shuffle", "native_channel_shuffle", "abs", "absolute", "neg", "negative", "exp",
    "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tan", "asin", "acos",
    "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sign", "sgn", "ceil", "floor", "round", "trunc", "frac", "erf",
    "erfc", "erfinv", "reciprocal", "nan_to_num", "clamp_min", "clamp_max", "logit", "isnan", "isinf", "isfinite",
    "positive", "signbit", "i0", "sinc", "deg2rad", "rad2deg", "bitwise_not", "logical_not", "conj", "angle",
)
_NO_OPS = ("contiguous", "clone", "detach", "detach_", "to", "type", "type_as", "float", "double", "half", "bfloat16",
           "int", "long", "bool", "cpu", "cuda", "requires_grad_", "float_", "pin_memory", "coalesce", "resolve_conj",
           "resolve_neg", "align_as", "as_contiguous")
for _name in _UNARY:
    fns = [getattr(torch, _name, None), getattr(F, _name, None), getattr(torch.special, _name, None)]
    _add([f for f in fns if f is not None and callable(f)] + [_name, _name + "_"], _pointwise_rule, same_shape=True)
_add(list(_NO_OPS) + [torch.clone, torch.detach], _same_rule)

# ATen ops (graphs from torch.export); pointwise-tagged ATen ops need no entry
_add(_aten("conv1d", "conv2d", "conv3d"), _conv_fn)
_add(_aten("convolution", "_convolution"), _aten_convolution)
_add(_aten("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), _conv_transpose_fn)
_add(_aten("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
           "max_pool3d_with_indices"), _max_pool_fn)
_add(_aten("avg_pool1d", "avg_pool2d", "avg_pool3d"), _avg_pool_fn)
_add(_aten("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
           "_adaptive_avg_pool3d"), _adaptive_avg)
_add(_aten("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"), _adaptive_max)
_add(_aten("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d"), _aten_upsample("nearest", False))
_add(_aten("_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"),
     _aten_upsample("nearest-exact", False))
_add(_aten("upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d"), _aten_upsample("bilinear", True))
_add(_aten("upsample_bicubic2d"), _aten_upsample("bicubic", True))
_add(_aten("pad"), _pad_fn)
_add(_aten("constant_pad_nd"), _aten_pad_mode("constant"))
_add(_aten("reflection_pad1d", "reflection_pad2d", "reflection_pad3d"), _aten_pad_mode("reflect"))
_add(_aten("replication_pad1d", "replication_pad2d", "replication_pad3d"), _aten_pad_mode("replicate"))
_add(_aten("_pad_circular"), _aten_pad_mode("circular"))
_add(_aten("pixel_shuffle"), _pixel_shuffle)
_add(_aten("pixel_unshuffle"), _pixel_unshuffle)
_add(_aten("im2col"), _unfold)
_add(_aten("cat", "concat", "concatenate"), _cat_rule(stack=False))
_add(_aten("stack"), _cat_rule(stack=True))
_add(_aten("slice"), _aten_slice)
_add(_aten("select"), _select)
_add(_aten("narrow"), _narrow)
_add(_aten("split", "split_with_sizes", "chunk"), _split)
_add(_aten("unbind"), _unbind)
_add(_aten("view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "unsqueeze", "squeeze_", "unsqueeze_",
           "view_as", "reshape_as"), _reshape_rule)
_add(_aten("permute"), _permute_rule(lambda call: call.arg(1, "dims")))
_add(_aten("transpose", "swapaxes", "swapdims"), _permute_rule(_transpose_args))
_add(_aten("t", "numpy_T"), _permute_rule(_t_args))
_add(_aten("movedim"), _permute_rule(_movedim_args))
_add(_aten("expand", "expand_as", "broadcast_to"), _expand_rule)
_add(_aten("repeat"), _repeat_rule)
_add(_aten("roll"), _roll_rule)
_add(_aten("linear"), _linear_rule)
_add(_aten("matmul", "bmm", "mm"), _matmul_rule)
_add(_aten("einsum"), _einsum_rule)
_add(_aten("_softmax", "softmax", "_log_softmax", "log_softmax"), _softmax_rule)
_add(_aten("group_norm", "native_group_norm"), _group_norm)
_add(_aten("instance_norm"), _instance_norm_fn)
_add(_aten("layer_norm", "native_layer_norm", "rms_norm"), _layer_norm)
_add(_aten("scaled_dot_product_attention"), _sdpa_rule)
_add(_aten("grid_sampler", "grid_sampler_2d", "grid_sampler_3d"), _grid_sample_rule)
_add(_aten("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
           "native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "dropout", "native_dropout", "feature_dropout",
           "alpha_dropout", "channel_shuffle", "native_channel_shuffle", "hardtanh", "hardtanh_", "relu6", "gelu",
           "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_", "elu", "elu_",
           "leaky_relu", "leaky_relu_", "softplus", "prelu", "_prelu_kernel", "clamp", "clamp_", "clamp_min",
           "clamp_max", "threshold", "glu_jvp", "local_response_norm"), _pointwise_rule)
_add(_aten("clone", "contiguous", "alias", "detach", "_to_copy", "to", "lift_fresh_copy", "_assert_tensor_metadata",
           "dropout_", "lift_fresh"), _same_rule)
for _name in _MEAN_LIKE:
    if _name in ("std", "var", "std_mean", "var_mean"):
        _rule = _reduction(1, 3)
    elif _name == "norm":
        _rule = _reduction(2, 3)
    else:
        _rule = _reduction(1, 2)
    _add(_aten(_name), _rule)
_add(_aten("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
           "new_empty", "new_full"), _no_node_rule)
