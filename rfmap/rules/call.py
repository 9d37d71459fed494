"""What an op's converter sees: one call of the op, from either front end.

A converter (``convert(call)``, see :mod:`rfmap.core.registry`) reads the op's arguments
and its input and output shapes from a :class:`Call` and returns

* a :class:`~rfmap.core.layers.Layer`: the op's node reads the op's first spatial tensor
  (or, for a :class:`~rfmap.core.layers.Merge`, all of them);
* :data:`SAME`: no node, the output is the input map (a no-op, a permute, a channel reshape);
* a :class:`Bind` the converter built itself with :meth:`Call.emit` (several nodes);
* a list of them, one per element, for ops that return several tensors.

Tensors are anything with ``.shape`` and ``.dim()``: PyTorch tensors on the ``meta`` device
(shapes only) from the PyTorch front end, :class:`TensorInfo` from the ONNX front end.
This module imports neither torch nor onnx.

Where the spatial axes are: a :class:`Bind` names the rfmap node whose map a tensor is and,
per spatial axis (H, W order), the tensor dim holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from rfmap.core.layers import Expand, GlobalOp, Layer, Merge, Reduce


class _Same:
    def __repr__(self) -> str:
        return "SAME"


#: A converter's answer for an op that changes no geometry and needs no node of its own.
SAME = _Same()


@dataclass(frozen=True)
class Bind:
    """Where a tensor's spatial axes are: the rfmap node whose map it is, and per spatial
    axis the tensor dim holding it (``None``: reduced away, the map is 1 cell wide there;
    two axes on one dim: flattened together, row-major, as in ``x.flatten(2)``).

    ``layout``: where an axis is split into digits on several dims, shares a dim with
    channels, or is rolled (windows, space-to-depth, shifted windows), a
    :class:`rfmap.rules.layout_algebra.Layout` says where each digit is; ``dims`` then only
    names the dim of each axis's outermost digit, and the rules that read such tensors use
    the layout (:mod:`rfmap.rules.split_axes`)."""

    node: str
    dims: tuple[int | None, ...]
    layout: Any = None


class LayoutError(Exception):
    """The op moves spatial axes in a way the engine cannot follow (an axis split in two,
    concatenated along, or H and W swapped); the front end then treats it as unsupported."""


class PooledInput(LayoutError):
    """The op (a convolution, a pooling) reads a pooled vector -- every spatial axis reduced
    to one cell, its tensor dims holding channels -- as if it were a map (ECA's ``Conv1d``
    across channels): it acts on non-spatial dims, so the front end makes it pointwise on
    the one-cell map."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor known by its shape (and, for constants, its value): what the ONNX front end
    hands to converters in place of a PyTorch meta tensor."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    value: Any = None

    def dim(self) -> int:
        return len(self.shape)


#: types already found to be tensors (the check below, once per type)
_TENSOR_TYPES: set[type] = set()


def is_tensor(value: Any) -> bool:
    """A tensor of either front end (anything with ``.shape`` and ``.dim()``)."""
    kind = type(value)
    if kind in _TENSOR_TYPES:
        return True
    if hasattr(value, "shape") and callable(getattr(value, "dim", None)):
        _TENSOR_TYPES.add(kind)
        return True
    return False


_NESTED = (list, tuple, dict)


def distinct(call: Call) -> list[tuple[Any, Bind]]:
    """The spatial arguments of a call, one per distinct map."""
    seen, out = set(), []
    for v, b in call.inputs:
        if b.node not in seen:
            seen.add(b.node)
            out.append((v, b))
    return out


def leaves(obj: Any) -> list:
    """The leaves of nested lists, tuples and dicts, in order."""
    if isinstance(obj, dict):
        obj = list(obj.values())
    elif not isinstance(obj, (list, tuple)):
        return [obj]
    out: list = []
    for item in obj:
        if isinstance(item, _NESTED):
            out.extend(leaves(item))
        else:
            out.append(item)
    return out


def first_tensor(out: Any) -> Any:
    for leaf in leaves(out):
        if is_tensor(leaf):
            return leaf
    return out


def as_ints(value: Any, n: int) -> tuple:
    """A per-dim argument (an int, or a list/tuple/Size of ints) as an ``n``-tuple."""
    if isinstance(value, (list, tuple)):
        value = tuple(int(v) if _intlike(v) else v for v in value)
        return value * n if len(value) == 1 else value
    return (value,) * n


def _intlike(v: Any) -> bool:
    return not isinstance(v, bool) and hasattr(v, "__index__")


def right_aligned(dims: Sequence[int | None], in_ndim: int, out_ndim: int) -> tuple[int | None, ...]:
    """Dims of a tensor broadcast from rank ``in_ndim`` to ``out_ndim`` (numpy's rule)."""
    shift = out_ndim - in_ndim
    return tuple(None if d is None or d + shift < 0 else d + shift for d in dims)


def _slots(dims: Sequence[int | None], want: Sequence[int]) -> tuple[int | None, ...]:
    """Per place of ``want``, the dim an axis of ``dims`` must hold to sit there (``None``
    where no axis of ``dims`` is at that dim: an axis reduced away goes there)."""
    held = set(d for d in dims if d is not None)
    return tuple(w if w in held else None for w in want)


def _ascending(dims: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """``dims`` with the held dims in ascending order (``None`` places kept); ``dims`` itself
    where two axes share a dim (flattened together: their order is the layout's)."""
    live = [d for d in dims if d is not None]
    if len(set(live)) != len(live):
        return dims
    ordered = iter(sorted(live))
    return tuple(None if d is None else next(ordered) for d in dims)


def _perm(dims: tuple[int | None, ...], target: Sequence[int | None]) -> tuple[int, ...]:
    """The permutation of the axes of ``dims`` that puts axis ``perm[j]`` at ``target[j]``
    (axes without a dim fill the ``None`` places in order)."""
    spare = iter(a for a, d in enumerate(dims) if d is None)
    return tuple(dims.index(d) if d is not None else next(spare) for d in target)


class Call:
    """One call of an op, as a converter sees it (from the PyTorch or the ONNX front end).

    ``kind``: ``module``, ``function``, ``method``, ``aten`` (torch.export) or ``onnx``.
    ``args``/``kwargs``: the concrete arguments -- for PyTorch the call's own (tensors on
    the meta device, ints for shapes), for ONNX the node's inputs (constants as numpy
    arrays, others as :class:`TensorInfo`) and its attributes as keywords.  ``out``: the
    output.  ``module``: the called module (PyTorch module calls).  ``path``: the module
    path (``layer3.5.conv2``; for a function, the module whose ``forward`` called it; for
    ONNX, the node name).  ``name``: the node name the op will get.  ``x`` is the first
    tensor argument that carries spatial axes and ``bind`` says where they are.  A
    converter may set ``out_dims`` (the output's spatial dims) and add nodes with :meth:`emit`.
    """

    def __init__(self, *, kind, target, name, path, module, args, kwargs, arg_binds, kwarg_binds, out, rank, front,
                 op_name: str | None = None, opset: int | None = None):
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
        #: a converter's answer for where the output's digits are (see :class:`Bind`)
        self.out_layout: Any = None
        #: a split layout read by a rule written for maps (see rfmap.rules.split_axes.route)
        self.virtual_ok = False
        self.virtual: Any = None
        self._front = front
        self._op_name = op_name
        #: ONNX: the opset of the node's domain (its ops changed meaning between opsets)
        self.opset = opset
        if kwargs or kwarg_binds:
            vals = leaves(list(self.args) + list(self.kwargs.values()))
            binds = leaves(list(arg_binds) + list(kwarg_binds.values()))
        else:
            vals, binds = leaves(self.args), leaves(arg_binds)
        #: ``(value, Bind)`` of every argument that carries spatial axes, in argument order
        self.inputs: list[tuple[Any, Bind]] = [(v, b) for v, b in zip(vals, binds) if isinstance(b, Bind)]
        #: the first of them: rules only see calls with a spatial argument (a call without one,
        #: as the front end's own helpers build, passes its bindings explicitly)
        self.x: Any
        self.bind: Bind
        self.x, self.bind = self.inputs[0] if self.inputs else (None, cast(Bind, None))

    # -- arguments ------------------------------------------------------------------------

    def arg(self, index: int | None, name: str | None, default: Any = None) -> Any:
        """Argument ``name`` (keyword; an ONNX attribute) or at position ``index``, else ``default``."""
        if name is not None and name in self.kwargs:
            return self.kwargs[name]
        if index is not None and index < len(self.args):
            return self.args[index]
        return default

    def param(self, name: str, default: Any = None) -> Any:
        """A parameter by name, wherever the front end has it: a keyword argument or ONNX
        attribute, else an attribute of the called module."""
        if name in self.kwargs:
            return self.kwargs[name]
        if self.module is not None and hasattr(self.module, name):
            return getattr(self.module, name)
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
        """A short name for the op (``conv2d``, ``Conv2d``, ``view``, ``Conv``)."""
        return self._op_name or str(self.target)

    # -- shapes ---------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return self.x.dim()

    def norm_dim(self, dim: int, ndim: int | None = None) -> int:
        n = self.ndim if ndim is None else ndim
        dim = int(dim)
        if not -n <= dim < n:
            raise LayoutError(f"dim {dim} is out of range for a {n}-d tensor")
        return dim + n if dim < 0 else dim

    def axes_on(self, dims, bind: Bind | None = None, ndim: int | None = None) -> tuple[int, ...]:
        """The spatial axes held by tensor dims ``dims`` (negative dims allowed)."""
        bind = bind or self.bind
        if isinstance(dims, int) or _intlike(dims):
            dims = (int(dims),)
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
        t = first_tensor(self.out if out is None else out)
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
                    rd = right_aligned(b.dims, v.dim(), t.dim())
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
        if b.layout is not None:
            from rfmap.rules.split_axes import standardize

            return standardize(self)
        if b.dims == want:
            return b
        live = [d for d in b.dims if d is not None]
        if len(set(live)) == len(live) and set(live) <= set(want):
            b = self._reorder(b, _slots(b.dims, want))
            if b.dims == want:
                return b
        if all(d is None or d == w for d, w in zip(b.dims, want)) and len(set(live)) == len(live):
            size = tuple(int(self.x.shape[w]) for w in want)
            if all(n == 1 for n in self.sizes(b)) and any(n != 1 for n in size):
                raise PooledInput(f"it reads a pooled vector (no spatial extent left) of shape {list(self.x.shape)}")
            node = self.emit(".expand", Expand(size), b)
            self.bind = Bind(node.node, want)
            self.inputs[0] = (self.x, self.bind)
            return self.bind
        raise LayoutError(f"its spatial axes are at dims {list(b.dims)} of a {self.ndim}-d tensor, not the last {self.rank}")

    def in_order(self, bind: Bind, suffix: str = ".permute") -> Bind:
        """``bind`` with its spatial axes in the order of the tensor dims holding them: where a
        ``transpose`` put W before H, a :class:`~rfmap.core.permute.Permute` node (named
        ``name + suffix``) reorders the engine's axes (1-cell axes reduced away keep their places)."""
        if bind.layout is not None:
            return bind
        return self._reorder(bind, _ascending(bind.dims), suffix)

    def same_order(self) -> None:
        """Where the maps a call reads hold the spatial axes at dims in different orders (one
        of them transposed), each is put in its tensor's own order (:meth:`in_order`), so an
        elementwise op or a concatenation reads them alike.  Maps that then run along the
        input's axes in different orders (``x + x.transpose(-1, -2)``: a cell sees a cross,
        no box) raise :class:`LayoutError`."""
        if len(self.inputs) < 2:
            return
        binds = list({id(b): b for _, b in self.inputs}.values())
        if len(binds) < 2 or any(b.layout is not None for b in binds):
            return
        if not self._front.orders and len({b.dims for b in binds}) == 1:
            return  # no map transposed (the common case)
        targets = [_ascending(b.dims) for b in binds]
        orders = set()
        for b, target in zip(binds, targets):  # the engine's axis order each would have, before any node is added
            if all(n == 1 for n in self.sizes(b)):
                continue  # a 1-cell map (a global branch) takes the others' order
            order = self._front.orders.get(b.node, tuple(range(len(b.dims))))
            orders.add(tuple(order[a] for a in _perm(b.dims, target)))
        if len(orders) > 1:
            raise LayoutError("its inputs run along the input's spatial axes in different orders (one is transposed)")
        for b, target in zip(binds, targets):
            new = self._reorder(b, target)
            if new is not b:
                self.rebind(b, new)

    def _reorder(self, bind: Bind, dims: tuple[int | None, ...], suffix: str = ".permute") -> Bind:
        """A :class:`Bind` whose axis ``j`` is at dim ``dims[j]``: the axes of ``bind`` permuted
        (a node only where the order changes; axes without a dim fill the ``None`` places)."""
        if tuple(dims) == bind.dims:
            return bind
        perm = _perm(bind.dims, dims)
        if perm == tuple(range(len(perm))):
            return bind
        from rfmap.core.permute import Permute

        node = self.emit(suffix, Permute(perm), bind, dims=tuple(bind.dims[a] for a in perm))
        if self.bind is bind:
            self.rebind(bind, node)
        return node

    # -- layouts and constants ------------------------------------------------------------

    def layout_of(self, bind: Bind | None = None, value: Any = None):
        """The :class:`~rfmap.rules.layout_algebra.Layout` of ``bind`` (default: the input)."""
        from rfmap.rules.layout_algebra import Layout

        if bind is None:
            bind, value = self.bind, self.x
        if bind.layout is not None:
            return bind.layout
        if value is None:
            value = next((v for v, b in self.inputs if b is bind), self.x)
        return Layout.from_dims(bind.dims, tuple(int(v) for v in value.shape), self.sizes(bind))

    def bind_for(self, node: str, layout) -> Bind:
        """A :class:`Bind` of ``node`` laid out as ``layout`` (the plain form where it is one)."""
        dims = layout.simple()
        if dims is not None:
            return Bind(node, dims)
        return Bind(node, layout.approx_dims(), layout)

    def const(self, value: Any):
        """The value of a constant argument (an attention mask, a bias table) as a numpy
        array, where the front end knows it; else ``None``."""
        if isinstance(value, TensorInfo):
            return value.value
        if isinstance(value, np.ndarray):  # also a folded ONNX constant, which answers .dim()
            return value.view(np.ndarray)
        if hasattr(value, "__array__") and not is_tensor(value):
            return value
        getter = getattr(self._front, "const_value", None)
        return None if getter is None else getter(value)

    def rebind(self, old: Bind, new: Bind) -> None:
        """Read ``new`` wherever the call read ``old`` (a layout settled by a helper node)."""

        def swap(obj):
            if obj is old:
                return new
            if isinstance(obj, (list, tuple)):
                return type(obj)(swap(o) for o in obj)
            if isinstance(obj, dict):
                return {k: swap(v) for k, v in obj.items()}
            return obj

        self.arg_binds = swap(self.arg_binds)
        self.kwarg_binds = swap(self.kwarg_binds)
        self.inputs = [(v, new if b is old else b) for v, b in self.inputs]
        if self.bind is old:
            self.bind = new

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
