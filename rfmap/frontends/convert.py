"""Building an rfmap graph from converted calls: what the PyTorch and ONNX front ends share.

A front end walks its framework's graph in order and, for each call whose arguments carry
the input's spatial axes, hands :meth:`Front.convert` the call and the converter the op
registry gives for it.  :class:`Front` adds the nodes the converter asks for, checks every
node's size from the engine against the framework's output shape (a rule that disagrees
with the framework raises instead of giving wrong numbers), and treats ops without a rule
the same way for both front ends: ``strict`` raises naming the op and its module path or
node; otherwise the op is pointwise when it keeps the spatial size and global when it does
not (or when it moves spatial axes in a way rfmap cannot follow), listed in the graph's
notes and warned about once.

Coordinates: pixel-index convention, axes in (H, W) order.
"""

from __future__ import annotations

from typing import Any

from rfmap.core.graph import Graph, Node
from rfmap.core.layers import Expand, GlobalOp, Layer, Merge, Pointwise, resolved_maps
from rfmap.errors import RFMapBug, RFMapError
from rfmap.frontends.nodeinfo import NodeInfo
from rfmap.frontends.outputs import build_graph
from rfmap.rules.call import SAME, Bind, Call, LayoutError, PooledInput, distinct, first_tensor, is_tensor, leaves, right_aligned
from rfmap.rules.common import broadcast_dims, flat_global
from rfmap.rules.split_axes import dispatch, has_split


def has_bind(*structs) -> bool:
    for s in structs:
        if type(s) is tuple and not any(isinstance(v, _NESTED) for v in s):  # flat: no walk
            if any(isinstance(v, Bind) for v in s):
                return True
        elif any(isinstance(leaf, Bind) for leaf in leaves(s)):
            return True
    return False


def has_tensor(obj) -> bool:
    return is_tensor(obj) or (isinstance(obj, _NESTED) and any(is_tensor(leaf) for leaf in leaves(obj)))


_NESTED = (list, tuple, dict)


def _broadcast_sizes(sizes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Per axis the largest size (a 1-cell axis broadcasts; other mismatches are the caller's
    to refuse)."""
    return tuple(max(axis) for axis in zip(*sizes))


def one_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


#: packages whose frames in a traceback are not a user's code
_LIBRARY = {"rfmap", "torch", "numpy", "onnx", "fractions", "math", "functools", "typing", "inspect", "dataclasses", "abc",
            "collections", "builtins", "operator", "re", "contextlib", "copy", "warnings", "enum", "itertools"}


def _in_user_code(exc: BaseException) -> bool:
    """Whether ``exc`` passed through a user's module (a rule registered with
    ``rfmap.register_op`` or ``register_torch_op``): then it is the user's error."""
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".")[0] not in _LIBRARY:
            return True
        tb = tb.tb_next
    return False


#: Pointwise layers by op name (layers are immutable: one per name serves every call)
_POINTWISE: dict[str, Pointwise] = {}


class Front:
    """Collects rfmap nodes, their engine sizes and where they came from."""

    def __init__(self, sizes: tuple[int, ...], strict: bool, *, register_hint: str = "rfmap.register_op",
                 shape_source: str = "PyTorch's output", trust_engine: bool = False):
        self.input_sizes = tuple(sizes)
        self.rank = len(sizes)
        self.strict = strict
        self.register_hint = register_hint
        #: what the framework's shapes are ("PyTorch's output", "onnx shape inference")
        self.shape_source = shape_source
        #: a size from the engine wins over a disagreeing framework shape (noted), where the
        #: framework's shapes are inferred rather than computed by running the op
        self.trust_engine = trust_engine
        self.nodes: list[Node] = [Node("input", None)]
        self.sizes: dict[str, tuple[int, ...]] = {"input": self.input_sizes}
        #: per node whose axes a permute reordered, the input axis each runs along (others: the
        #: input's order; see rfmap.core.permute)
        self.orders: dict[str, tuple[int, ...]] = {}
        self.infos: dict[str, NodeInfo] = {}
        self.taken: set[str] = {"input"}
        self._suffix: dict[str, int] = {}
        self.node_names: set[str] = {"input"}
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self._current: dict = {}
        #: values of small constant tensors (attention masks, bias tables): id -> (tensor, array)
        self.consts: dict[int, tuple[Any, Any]] = {}

    # names ------------------------------------------------------------------------------

    def reserve(self, base: str) -> str:
        """A fresh node name: ``base``, else ``base_1``, ``base_2``, ... (amortized O(1):
        16,000 nodes sharing one name are named in linear time)."""
        base = base or "op"
        name = base
        k = self._suffix.get(base, 0)
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self._suffix[base] = k
        self.taken.add(name)
        return name

    # nodes ------------------------------------------------------------------------------

    def emit(self, call: Call, name: str, layer: Layer, inputs: list[str]) -> str:
        if name in self.node_names or (name != call.name and name in self.taken):
            name = self.reserve(name)
        else:
            self.taken.add(name)
        if not inputs:
            raise RFMapError(f"{self._where(call)}: the rule added a node with no input")
        sizes_of = self.sizes
        if layer.merge:
            sizes = _broadcast_sizes([sizes_of[i] for i in inputs]) if layer.op in ("add", "mul") else sizes_of[inputs[0]]
            for other in inputs:
                if any(m != n and not (m == 1 and layer.op in ("add", "mul")) for m, n in zip(sizes_of[other], sizes)):
                    raise RFMapError(f"{self._where(call)}: inputs '{inputs[0]}' {list(sizes_of[inputs[0]])} and "
                                     f"'{other}' {list(sizes_of[other])} differ in size")
            inputs = list(dict.fromkeys(inputs))
            if len(inputs) == 1:
                layer = Pointwise(op=layer.op)
        else:
            if len(inputs) != 1:
                raise RFMapError(f"{self._where(call)}: a {layer.op} node takes one input, got {len(inputs)}")
            try:
                maps = resolved_maps(layer, sizes_of[inputs[0]])
            except RFMapError as exc:
                raise RFMapError(f"{self._where(call)}: {exc} (input size {list(sizes_of[inputs[0]])})") from None
            sizes = tuple(m.n_out for m in maps)
        self.nodes.append(Node(name, layer, tuple(inputs)))
        self.node_names.add(name)
        sizes_of[name] = sizes
        if self.orders or layer.permutation is not None:  # only once a map was transposed
            self._track_order(name, layer, inputs)
        module = call.module
        if name == call.name:
            current = self._current
            info = NodeInfo(name, call.path, call.kind, call.op_name, None,
                            type(module).__name__ if module is not None else None,
                            current.get("params", 0), current.get("first_call", True), call.name)
        else:
            info = NodeInfo(name, call.path, "helper", layer.op, None, None, 0, False, call.name)
        self.infos[name] = info
        return name

    def _track_order(self, name: str, layer: Layer, inputs: list[str]) -> None:
        """Record the input axis each axis of node ``name`` runs along, where it is not the
        input's order (see :attr:`orders`): its first input's order (a 1-cell map takes the
        others'), permuted by a :class:`~rfmap.core.permute.Permute`."""
        sizes_of = self.sizes
        first = next((i for i in inputs if any(n != 1 for n in sizes_of[i])), inputs[0])
        order = self.orders.get(first, tuple(range(self.rank)))
        if layer.permutation is not None:
            order = tuple(order[a] for a in layer.permutation)
        if order != tuple(range(len(order))):
            self.orders[name] = order

    def _where(self, call: Call) -> str:
        if call.kind == "onnx":
            return f"node '{call.path}' ({call.target})"
        if call.kind == "module":
            return f"module '{call.path}' ({call.op_name})"
        inside = f" in module '{call.path}'" if call.path else ""
        return f"op '{call.name}' ({call.op_name}){inside}"

    # one traced call --------------------------------------------------------------------

    def convert(self, *, kind, target, base, path, module, args, kwargs, arg_binds, kwarg_binds, out, convert, op_name,
                params=0, first_call=True, own_node=False, opset=None):
        """The binding of a traced call's output (``None``: it carries no spatial axes).

        ``own_node``: the output gets a node of its own named ``base`` even when the rule
        adds none (a module call keeps its row).
        """
        if not has_bind(arg_binds, kwarg_binds) or not has_tensor(out):
            return None
        name = self.reserve(base)
        self._current = {"params": params, "first_call": first_call, "own_node": own_node or kind == "module"}
        call = Call(kind=kind, target=target, name=name, path=path, module=module, args=args, kwargs=kwargs,
                    arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out, rank=self.rank, front=self, op_name=op_name,
                    opset=opset)
        if convert is None:
            return self._finish(call, self._unsupported(call, ""), rule_based=False)
        if getattr(convert, "plain_pointwise", False) and len(call.inputs) == 1:
            plain = self._plain_pointwise(call)
            if plain is not None:
                return plain
        n_before = len(self.nodes)
        try:
            result = dispatch(call, convert)
        except PooledInput:
            # an op over the channels of a pooled vector (ECA's Conv1d): pointwise on its one cell
            del self.nodes[n_before:]
            call.out_dims = (None,) * self.rank
            return self._finish(call, Pointwise(op=call.op_name), rule_based=True)
        except LayoutError as exc:
            del self.nodes[n_before:]
            return self._finish(call, self._unsupported(call, f": {exc}"), rule_based=False)
        except RFMapError as exc:  # a bad attribute or argument: name the op that has it
            where = self._where(call)
            if str(exc).startswith(where) or str(exc).startswith(f"unsupported {where}"):
                raise
            raise RFMapError(f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a rule crashed: say which
            if not _in_user_code(exc):  # one of rfmap's rules crashed: a bug, not bad input
                raise RFMapBug(f"{self._where(call)}: rfmap's rule crashed ({one_line(exc)})") from exc
            raise RFMapError(f"{self._where(call)}: the rule registered for it failed ({one_line(exc)})") from None
        return self._finish(call, result, rule_based=True)

    def _plain_pointwise(self, call: Call) -> Bind | None:
        """What :meth:`convert` answers for a :func:`~rfmap.rules.common.plain_pointwise`
        rule on one map whose output is a tensor of the input's shape, without the rule and
        the checks (``None``: not such a call)."""
        bind, out = call.bind, call.out
        if bind.layout is not None or not is_tensor(out) or not is_tensor(call.x) or out.shape != call.x.shape:
            return None
        layer = _POINTWISE.get(call.op_name)
        if layer is None:
            if len(_POINTWISE) >= 4096:  # bounded, whatever names a model makes up
                _POINTWISE.clear()
            layer = _POINTWISE[call.op_name] = Pointwise(op=call.op_name)
        result = Bind(self.emit(call, call.name, layer, [bind.node]), bind.dims)
        self._record_shape(result, out)
        return result

    def _unsupported(self, call: Call, reason: str):
        where = self._where(call)
        if self.strict:
            raise RFMapError(
                f"unsupported {where}{reason}; register a rule with {self.register_hint} "
                "(or analyze with strict=False to treat it as pointwise)"
            )
        out = first_tensor(call.out)
        if has_split(call):
            return self._unsupported_split(call, where, reason, out)
        dims = call.bind.dims if out.dim() == call.ndim else right_aligned(call.bind.dims, call.ndim, out.dim())
        binds = distinct(call)
        if not reason and self._fits(Bind(call.bind.node, dims), out) and all(
            call.sizes(b) == call.sizes() for _, b in binds
        ):
            self.unsupported.append(f"{where}: no rule, treated as pointwise")
            call.out_dims = dims
            return Merge("add") if len(binds) > 1 else Pointwise(op=call.op_name)
        self.unsupported.append(f"{where}{reason or ': no rule, and it changes the spatial size'}; treated as global")
        call.out_dims = (None,) * self.rank
        if len(binds) > 1:
            flat = [flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(binds)]
            return call.emit("", Merge("add"), *flat, dims=call.out_dims)
        return GlobalOp(op=call.op_name)

    def _unsupported_split(self, call: Call, where: str, reason: str, out: Any):
        """An op without a rule (or whose rule cannot follow split axes) on a tensor whose
        spatial axes are split across dims: pointwise where it keeps the tensor's shape and
        reads one map, else global."""
        binds = distinct(call)
        if not reason and len(binds) == 1 and is_tensor(out) and tuple(out.shape) == tuple(call.x.shape):
            self.unsupported.append(f"{where}: no rule, treated as pointwise")
            call.out_layout = call.layout_of()
            return Pointwise(op=call.op_name)
        self.unsupported.append(f"{where}{reason or ': no rule, and it changes the shape'}; treated as global")
        call.out_dims = (None,) * self.rank
        flat = [call.emit(f".global{i}", GlobalOp(op=call.op_name), Bind(b.node, b.dims), dims=call.out_dims)
                for i, (_, b) in enumerate(binds)]
        if len(flat) == 1:
            return flat[0]
        return call.emit("", Merge("add"), *flat, dims=call.out_dims)

    def _fits(self, bind: Bind, tensor: Any) -> bool:
        if not is_tensor(tensor):
            return False
        sizes = self.sizes[bind.node]
        if bind.layout is not None:
            lay = bind.layout
            return tuple(lay.sizes) == tuple(sizes) and lay.shape == tuple(int(v) for v in tensor.shape)
        dims = bind.dims
        if len(sizes) != len(dims):
            return False
        shape = tensor.shape
        if None not in dims and len(set(dims)) == len(dims):  # the common case: one axis per dim
            rank = len(shape)
            return all(d is not None and 0 <= d < rank and shape[d] == n for d, n in zip(dims, sizes))
        groups: dict[int, int] = {}
        shared: dict[int, int] = {}
        for a, d in enumerate(bind.dims):
            if d is None:
                if sizes[a] != 1:
                    return False
                continue
            if not 0 <= d < tensor.dim():
                return False
            groups[d] = groups.get(d, 1) * sizes[a]
            shared[d] = shared.get(d, 0) + 1
        # a dim holding several axes (flattened) may hold an outer non-spatial factor too,
        # where it holds every axis (GroupNorm's (N, G, C/G * H * W))
        packed = len(groups) == 1 and max(shared.values(), default=0) > 1
        return all(int(tensor.shape[d]) == n or (packed and int(tensor.shape[d]) % n == 0) for d, n in groups.items())

    def _finish(self, call: Call, result, rule_based: bool):
        out = call.out
        if isinstance(result, list):
            tensors = [o for o in (list(out) if isinstance(out, (list, tuple)) else [out])]
            binds = [self._element(call, r, o) for r, o in zip(result, tensors)]
            self._record_shape(binds, tensors)
            return binds
        if result is None:
            return None
        if result is SAME:
            dims = call.out_dims if call.out_dims is not None else self._default_dims(call)
            result = Bind(call.bind.node, dims)
        elif isinstance(result, Layer):
            result = self._apply(call, result)
        elif not isinstance(result, Bind):
            raise RFMapError(f"{self._where(call)}: the rule returned {result!r}, not a Layer, SAME or a Bind")
        if call.out_layout is not None:
            result = call.bind_for(result.node, call.out_layout)
        elif call.out_dims is not None and isinstance(result, Bind) and result.dims != call.out_dims and len(
            call.out_dims
        ) == len(result.dims):
            result = Bind(result.node, call.out_dims)
        if self._current.get("own_node") and result.node != call.name and call.name not in self.node_names:
            node = self.emit(call, call.name, Pointwise(op=call.op_name), [result.node])  # a module keeps its row
            result = Bind(node, result.dims, result.layout)
        return self._mirror(call, result, out, rule_based)

    def _default_dims(self, call: Call):
        out = first_tensor(call.out)
        if out.dim() == call.ndim:
            return call.bind.dims
        return right_aligned(call.bind.dims, call.ndim, out.dim())

    def _apply(self, call: Call, layer: Layer) -> Bind:
        if layer.merge and call.out_layout is not None:  # the rule fitted the maps itself
            node = self.emit(call, call.name, layer, [b.node for _, b in distinct(call)])
            return Bind(node, call.out_layout.approx_dims())
        if layer.merge:
            dims = call.out_dims if call.out_dims is not None else broadcast_dims(call, first_tensor(call.out))
            want = call.out_sizes(dims, first_tensor(call.out))
            binds = [b for _v, b in distinct(call)]
            # add and mul broadcast a 1-cell axis in the engine too: no Expand node where the
            # inputs' sizes broadcast to the output's (an SE block's gate)
            broadcasts = layer.op in ("add", "mul") and _broadcast_sizes([self.sizes[b.node] for b in binds]) == want
            fitted = []
            for i, b in enumerate(binds):
                have = self.sizes[b.node]
                if have != want and not (broadcasts and all(h in (1, w) for h, w in zip(have, want))):
                    b = call.emit(f".expand{i}", Expand(want), b)
                fitted.append(b.node)
            node = self.emit(call, call.name, layer, fitted)
            return Bind(node, dims)
        node = self.emit(call, call.name, layer, [call.bind.node])
        dims = call.out_dims if call.out_dims is not None else self._default_dims(call)
        return Bind(node, dims)

    def _element(self, call: Call, r, tensor):
        if r is None or not is_tensor(tensor):
            return None
        if r is SAME:
            r = Bind(call.bind.node, self._default_dims(call))
        if isinstance(r, Layer):
            r = self._apply(call, r)
        if isinstance(r, Bind) and self._fits(r, tensor):
            return r
        return None

    def _mirror(self, call: Call, bind: Bind, out, rule_based: bool):
        if is_tensor(out):
            if not self._fits(bind, out):
                if not (self.trust_engine and self.corrected_shape(bind, out) is not None):
                    raise RFMapError(self._mismatch(call, bind, out))
                self.notes.append(f"{self._mismatch(call, bind, out)}; rfmap's size is used")
            self._record_shape(bind, out)
            return bind
        if isinstance(out, (list, tuple)):
            elems: list[Any] = []  # a Bind, a nested list of them, or None per element
            first = True
            for o in out:
                if is_tensor(o) and self._fits(bind, o):
                    elems.append(bind)
                    if first:
                        self._record_shape(bind, o)
                        first = False
                elif isinstance(o, (list, tuple)):
                    elems.append(self._mirror(call, bind, o, rule_based) if has_tensor(o) else None)
                else:
                    elems.append(None)
            if not any(e is not None for e in leaves(elems)):
                raise RFMapError(self._mismatch(call, bind, first_tensor(out)))
            return elems
        return None

    def _mismatch(self, call: Call, bind: Bind, out) -> str:
        sizes = self.sizes[bind.node]
        shape = list(out.shape) if is_tensor(out) else out
        return (
            f"{self._where(call)}: the rfmap rule gives spatial size {list(sizes)} at dims {list(bind.dims)}, "
            f"but {self.shape_source} has shape {shape}"
        )

    def corrected_shape(self, bind: Bind, out) -> tuple[int, ...] | None:
        """``out``'s shape with the spatial dims of ``bind`` set to the engine's sizes, where
        each axis is on a dim of its own (else ``None``)."""
        if bind.layout is not None:  # digits on several dims: the layout follows the tensor's shapes
            return tuple(bind.layout.shape) if tuple(bind.layout.sizes) == tuple(self.sizes[bind.node]) else None
        dims = [d for d in bind.dims if d is not None]
        if len(set(dims)) != len(dims) or any(not 0 <= d < out.dim() for d in dims):
            return None
        shape = list(out.shape)
        for d, n in zip(bind.dims, self.sizes[bind.node]):
            if d is not None:
                shape[d] = n
        return tuple(shape)

    def _record_shape(self, binds, tensors):
        if isinstance(binds, list):
            for b, t in zip(binds, tensors):
                if isinstance(b, Bind):
                    self._record_shape(b, t)
            return
        info = self.infos.get(binds.node)
        if info is not None and info.shape is None and is_tensor(tensors):
            # the info is this front end's own, not yet handed out: filled in place
            object.__setattr__(info, "shape", tuple(int(v) for v in tensors.shape))

    # the graph --------------------------------------------------------------------------

    def build(self, outputs: Any, values: Any, name: str, notes: list[str]) -> tuple[Graph, tuple]:
        """The graph of the nodes the outputs need, and the infos of its nodes
        (:func:`rfmap.frontends.outputs.build_graph`)."""
        return build_graph(self, outputs, values, name, notes)

    def const_value(self, value: Any):
        """The numpy value of a constant tensor the capture knows (see :meth:`Call.const`)."""
        hit = self.consts.get(id(value))
        return hit[1] if hit is not None and hit[0] is value else None
