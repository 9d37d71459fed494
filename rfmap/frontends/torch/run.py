"""Running a captured PyTorch graph on the meta device and converting it call by call.

Shapes come from running the captured graph on the ``meta`` device (shapes only, no
data): the cost does not depend on the input size, and shape-dependent arguments
(``F.interpolate(x, size=skip.shape[-2:])``, slice bounds, ``view`` sizes) are concrete.
Parameters are swapped for meta tensors only for the call that reads them; ops that keep
their input's shape (activations, batch norm) are not run at all.  An op with no meta
kernel is run once on zeros of its real input shape (listed in the notes).  Each call is
converted by its rule in the op registry (:mod:`rfmap.frontends.torch.targets`).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx
import torch.nn as nn
from torch.fx.node import map_arg

from rfmap.core.graph import Graph
from rfmap.errors import RFMapError
from rfmap.frontends.convert import Front, has_bind, one_line
from rfmap.frontends.nodeinfo import NodeInfo
from rfmap.frontends.torch import targets as T
from rfmap.rules.call import Bind, leaves

#: constants up to this many elements keep their values for the rules (attention masks)
CONST_LIMIT = 1 << 22


#: fx node ops -> the kinds of rfmap's calls
_KINDS = {"call_module": "module", "call_function": "function", "call_method": "method"}

#: argument values passed as they are (fx's map_arg walks every argument with pytree: the
#: common flat tuple of nodes and numbers is read here in one loop)
_PLAIN = (int, float, bool, str, type(None))


def _args_and_binds(args: tuple, env: dict, binds: dict) -> tuple[Any, Any]:
    """``args`` with each fx node replaced by its value (``env``) and by its binding
    (``binds``, ``None`` where it has none)."""
    if type(args) is tuple:
        values, bound = [], []
        for a in args:
            if type(a) is torch.fx.Node:
                values.append(env[a])
                bound.append(binds.get(a))
            elif type(a) in _PLAIN:
                values.append(a)
                bound.append(a)
            else:
                break
        else:
            return tuple(values), tuple(bound)
    return map_arg(args, env.__getitem__), map_arg(args, binds.get)


def _fetch(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        return torch.empty_like(value, device="meta")
    return value


@dataclass(frozen=True)
class TracedModel:
    """A captured model: the rfmap graph and where each node came from."""

    graph: Graph
    input_shape: tuple[int, ...]
    method: str  # "fx" or "export"
    infos: tuple[NodeInfo, ...]
    unsupported: tuple[str, ...] = ()

    def info(self, name: str) -> NodeInfo:
        for i in self.infos:
            if i.name == name:
                return i
        raise RFMapError(f"no layer named '{name}'")


def finish(front: Front, spec, outputs, values, name: str, method: str) -> TracedModel:
    capture = "torch.fx.symbolic_trace" if method == "fx" else "torch.export"
    notes = [f"captured with {capture} for input shape {list(spec.shape)}"]
    graph, infos = front.build(outputs, values, name, notes)
    return TracedModel(graph, spec.shape, method, infos, tuple(front.unsupported))


def _can_skip(args, arg_binds) -> bool:
    """A same-shape op whose output is its first argument's shape: no need to run it."""
    if not args or not isinstance(args[0], torch.Tensor):
        return False
    first = args[0]
    for v in leaves(list(args[1:])):
        if isinstance(v, torch.Tensor):
            if v.dim() > first.dim():
                return False
            try:
                if torch.broadcast_shapes(first.shape, v.shape) != first.shape:
                    return False
            except RuntimeError:
                return False
    return True


def _broadcast_out(args, kwargs):
    """The output of an elementwise op of floating-point tensors, without running it."""
    tensors = [v for v in leaves([list(args), kwargs]) if isinstance(v, torch.Tensor)]
    if not tensors or any(not t.is_floating_point() for t in tensors):
        return None
    shape = _broadcast_shape([tuple(t.shape) for t in tensors])
    if shape is None:
        return None
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """numpy's broadcast of shapes (``None`` where they do not broadcast)."""
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for s in shapes:
        for i, n in enumerate(s, rank - len(s)):
            if n != 1:
                if out[i] not in (1, n):
                    return None
                out[i] = n
    return tuple(out)


def _inplace(kind: str, target: Any, module: Any, kwargs: dict) -> bool:
    if kind == "method":
        return isinstance(target, str) and target.endswith("_") and not target.endswith("__")
    if kind == "module":
        return bool(vars(module).get("inplace", False))  # a plain attribute (nn.ReLU(inplace=True))
    if kind == "aten":
        name = getattr(getattr(target, "_schema", None), "name", "")
        return name.endswith("_") and not name.endswith("__")
    if target in (operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
                  operator.ipow, operator.iand, operator.ior, operator.ixor):
        return True
    return bool(kwargs.get("inplace", False))


class _FxRun:
    """Runs an fx graph on the meta device and converts it node by node."""

    def __init__(self, module: nn.Module, gm: Any, spec: Any, strict: bool):
        self.module = module
        self.gm = gm
        self.spec = spec
        self.front = Front(spec.sizes, strict, register_hint="rfmap.register_op")
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = {}
        self.real_fallbacks: list[str] = []
        self._metas: dict[int, torch.Tensor] = {}
        #: real values of small constants (buffers, parameters, what is computed from them)
        self.values: dict[torch.fx.Node, Any] = {}

    def run(self) -> TracedModel:
        env: dict[torch.fx.Node, Any] = {}
        binds: dict[torch.fx.Node, Any] = {}
        first = True
        outputs = None
        spec = self.spec
        standard = tuple(range(2, 2 + spec.rank))
        for node in self.gm.graph.nodes:
            op = node.op
            if op == "placeholder":
                if first:
                    env[node] = torch.empty(spec.shape, dtype=spec.dtype, device="meta")
                    binds[node] = Bind("input", standard)
                    first = False
                else:
                    env[node] = node.args[0] if node.args else None
                    binds[node] = None
                continue
            if op == "get_attr":
                real = _fetch(self.gm.root, node.target)
                env[node] = _meta(real)
                binds[node] = None
                self._keep_value(node, env[node], real)
                continue
            if op == "output":
                outputs = map_arg(node.args[0], lambda n: binds.get(n))
                values = map_arg(node.args[0], lambda n: env.get(n))
                break
            args, arg_binds = _args_and_binds(node.args, env, binds)
            if node.kwargs:
                kwargs = map_arg(node.kwargs, env.__getitem__)
                kwarg_binds = map_arg(node.kwargs, binds.get)
            else:
                kwargs, kwarg_binds = {}, {}
            module = self.modules[node.target] if op == "call_module" else None
            kind = _KINDS[op]
            target = module if module is not None else node.target
            rule = T.lookup(target)
            spatial = has_bind(arg_binds, kwarg_binds)
            out = None
            if spatial and rule is not None:
                if rule.same_shape and _can_skip(args, arg_binds):
                    out = args[0]
                elif rule.broadcast:
                    out = _broadcast_out(args, kwargs)
                elif rule.shape is not None and isinstance(args[0] if args else None, torch.Tensor):
                    shape = rule.shape(module if module is not None else target, args, kwargs)
                    out = None if shape is None else torch.empty(shape, dtype=args[0].dtype, device="meta")
            if out is None:
                out = self._execute(node, kind, module, args, kwargs)
            env[node] = out
            if not spatial:
                binds[node] = None
                self._const_value(node, kind, module, out, env)
                continue
            path = node.target if module is not None else _enclosing(node)
            params, first_call = 0, True
            if module is not None:
                count = self.calls.get(node.target, 0)
                self.calls[node.target] = count + 1
                first_call = count == 0  # a module's parameters are counted by the module table
            else:
                params = self._params_read_by(node)
            base = node.target if module is not None else node.name
            binds[node] = self.front.convert(
                kind=kind, target=target, base=base, path=path, module=module, args=args, kwargs=kwargs,
                arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out, convert=None if rule is None else rule.convert,
                op_name=T.target_name(target), params=params, first_call=first_call,
            )
            if _inplace(kind, node.target, module, kwargs) and node.args and isinstance(node.args[0], torch.fx.Node):
                if isinstance(binds.get(node.args[0]), Bind) and isinstance(binds[node], Bind):
                    binds[node.args[0]] = binds[node]
        if self.real_fallbacks:
            self.front.notes.append(
                "run on zeros of the real input shape (no meta kernel): " + ", ".join(self.real_fallbacks)
            )
        return finish(self.front, self.spec, outputs, values, type(self.module).__name__, "fx")

    def _params_read_by(self, node: torch.fx.Node) -> int:
        """Parameters a function call reads directly (``F.conv2d(x, self.weight)``)."""
        total = 0
        for a in node.all_input_nodes:
            value = _fetch(self.gm.root, str(a.target)) if a.op == "get_attr" else None
            if isinstance(value, nn.Parameter):
                total += int(value.numel())
        return total

    def _keep_value(self, node, meta, real) -> None:
        """Remember the value of a small constant tensor (an attention mask, a bias table)
        for the rules that read values (see :meth:`rfmap.rules.call.Call.const`)."""
        if not isinstance(real, torch.Tensor) or real.device.type == "meta" or real.numel() > CONST_LIMIT:
            return
        self.values[node] = real.detach()
        if isinstance(meta, torch.Tensor):
            value = real.detach().cpu()
            value = value.float() if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64) else value
            self.front.consts[id(meta)] = (meta, value.numpy())

    def _const_value(self, node, kind, module, meta, env) -> None:
        """Compute a node whose inputs are all constants of known value (cheap: small tensors)
        or plain Python values (sizes read off the maps' shapes)."""
        known = {}
        for n in node.all_input_nodes:
            if n in self.values:
                known[n] = self.values[n]
            elif n in env and not any(isinstance(v, torch.Tensor) for v in leaves(env[n])):
                known[n] = env[n]
            else:
                return
        if not known:
            return
        name = str(node.target).lower()
        if any(w in name for w in ("rand", "normal", "bernoulli", "dropout", "empty", "uniform")):
            return
        args = map_arg(node.args, known.__getitem__)
        kwargs = map_arg(node.kwargs, known.__getitem__)
        try:
            with torch.no_grad():
                if kind == "module":
                    real = module(*args, **kwargs)
                elif kind == "function":
                    real = node.target(*args, **kwargs)
                else:
                    real = getattr(args[0], node.target)(*args[1:], **kwargs)
        except Exception:  # noqa: BLE001 - values are a refinement; shapes come from the meta run
            return
        if isinstance(real, torch.Tensor):
            self._keep_value(node, meta, real)
        elif not isinstance(real, (list, tuple, dict)):
            self.values[node] = real

    def _execute(self, node, kind, module, args, kwargs):
        try:
            return self._call(kind, node.target, module, args, kwargs)
        except Exception as meta_exc:  # noqa: BLE001 - no meta kernel: try real zeros once
            try:
                real_args = _to_real(args)
                real_kwargs = _to_real(kwargs)
                with torch.no_grad():
                    if kind == "module":
                        out = module(*real_args, **real_kwargs)
                    elif kind == "function":
                        out = node.target(*real_args, **real_kwargs)
                    else:
                        out = getattr(real_args[0], node.target)(*real_args[1:], **real_kwargs)
            except Exception:  # noqa: BLE001
                where = f"module '{node.target}'" if kind == "module" else f"op '{node.name}'"
                raise RFMapError(
                    f"cannot run {where} of {type(self.module).__name__} for input shape {list(self.spec.shape)}: "
                    f"{one_line(meta_exc)}"
                ) from None
            self.real_fallbacks.append(str(node.target) if kind == "module" else node.name)
            return _to_meta_tree(out)

    def _call(self, kind, target, module, args, kwargs):
        if kind == "function":
            return target(*args, **kwargs)
        if kind == "method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        saved = []
        try:  # the module's parameters and buffers as meta tensors, for this call only
            for sub in module.modules():
                for store in (sub._parameters, sub._buffers):
                    for k, v in store.items():
                        if v is not None and v.device.type != "meta":
                            saved.append((store, k, v))
                            meta = self._metas.get(id(v))
                            if meta is None:
                                meta = self._metas[id(v)] = torch.empty_like(v, device="meta")
                            store[k] = meta
            return module(*args, **kwargs)
        finally:
            for store, k, v in reversed(saved):
                store[k] = v


def _to_real(obj):
    if isinstance(obj, torch.Tensor) and obj.device.type == "meta":
        return torch.zeros(obj.shape, dtype=obj.dtype)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_real(o) for o in obj) if not hasattr(obj, "_fields") else type(obj)(*[_to_real(o) for o in obj])
    if isinstance(obj, dict):
        return {k: _to_real(v) for k, v in obj.items()}
    return obj


def _to_meta_tree(obj):
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta_tree(o) for o in obj) if not hasattr(obj, "_fields") else type(obj)(*[_to_meta_tree(o) for o in obj])
    if isinstance(obj, dict):
        return {k: _to_meta_tree(v) for k, v in obj.items()}
    return obj


#: higher-order ops of torch.export that run a subgraph under a context (``with
#: torch.autocast(...)``, ``with torch.no_grad()``), by name: what they compute is the subgraph
_WRAPPERS = ("wrap_with_autocast", "wrap_with_set_grad_enabled")


def inline_wrapped_subgraphs(gm: Any) -> None:
    """Replace, in place, each call of a context-wrapping higher-order op (EfficientViT runs
    its attention under ``torch.autocast(enabled=False)``) by the nodes of its subgraph, so
    that every op inside is converted by its own rule instead of the wrapper being one
    unknown op."""
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or getattr(node.target, "__name__", "") not in _WRAPPERS:
            continue
        k = next((i for i, a in enumerate(node.args)
                  if isinstance(a, torch.fx.Node) and a.op == "get_attr"
                  and isinstance(getattr(gm, str(a.target), None), torch.fx.GraphModule)), None)
        if k is None:
            continue
        body = getattr(gm, str(node.args[k].target))
        inputs = [n for n in body.graph.nodes if n.op == "placeholder"]
        operands = node.args[k + 1:]
        if len(inputs) != len(operands):
            continue
        with graph.inserting_before(node):
            result = graph.graph_copy(body.graph, dict(zip(inputs, operands)))
        results = result if isinstance(result, (list, tuple)) else (result,)
        for user in list(node.users):
            if user.op == "call_function" and user.target is operator.getitem and isinstance(user.args[1], int):
                user.replace_all_uses_with(results[user.args[1]])
                graph.erase_node(user)
        if not node.users:
            graph.erase_node(node)


def _enclosing(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    last = list(stack.values())[-1]
    return last[0] if isinstance(last, tuple) else str(last)


class _ExportRun:
    """Converts a ``torch.export`` ATen graph (shapes from its fake tensors)."""

    def __init__(self, module: nn.Module, ep, spec: Any, strict: bool):
        self.module = module
        self.ep = ep
        self.spec = spec
        self.front = Front(spec.sizes, strict, register_hint="rfmap.register_op")

    def run(self) -> TracedModel:
        graph = self.ep.graph
        inline_wrapped_subgraphs(self.ep.graph_module)
        user_inputs = list(self.ep.graph_signature.user_inputs)
        binds: dict[torch.fx.Node, Any] = {}
        standard = tuple(range(2, 2 + self.spec.rank))
        groups = self._module_calls(graph)
        calls: dict[str, int] = {}
        outputs = None
        owners = self._state_names()
        values: dict[torch.fx.Node, Any] = {}
        for node in graph.nodes:
            if node.op == "placeholder":
                binds[node] = Bind("input", standard) if user_inputs and node.name == user_inputs[0] else None
                if node.name in owners:
                    self._keep(values, node, _fetch(self.module, owners[node.name]))
                continue
            if node.op == "output":
                outputs = map_arg(node.args[0], lambda n: binds.get(n))
                values = map_arg(node.args[0], lambda n: n.meta.get("val"))
                break
            if node.op != "call_function":
                binds[node] = None
                continue
            val = lambda n: n.meta.get("val")  # noqa: E731
            args = map_arg(node.args, val)
            kwargs = map_arg(node.kwargs, val)
            arg_binds = map_arg(node.args, lambda n: binds.get(n))
            kwarg_binds = map_arg(node.kwargs, lambda n: binds.get(n))
            out = node.meta.get("val")
            if not has_bind(arg_binds, kwarg_binds):
                binds[node] = None
                self._compute(values, node)
                continue
            path, mtype, key, is_last = groups.get(node, ("", None, None, False))
            module = None
            if mtype is not None:
                try:
                    module = self.module.get_submodule(path)
                except AttributeError:
                    module = None
            op_name = T.target_name(node.target)
            fn = node.meta.get("torch_fn")
            if module is not None and is_last:
                count = calls.get(path, 0)
                calls[path] = count + 1
                base = path
                params = 0  # counted by the module table
                first_call = count == 0
            elif module is not None:
                base, params, first_call = f"{path}.{op_name}", 0, False
            else:
                base = re.sub(r"_\d+$", "", fn[0]).strip("_") if fn else op_name
                params, first_call = 0, True
            kind = "aten"
            rule = T.lookup(node.target)
            result = self.front.convert(
                kind=kind, target=node.target, base=base, path=path, module=None,
                args=args, kwargs=kwargs, arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out,
                convert=None if rule is None else rule.convert, op_name=op_name,
                params=params, first_call=first_call, own_node=module is not None and is_last,
            )
            if module is not None and is_last and isinstance(result, Bind) and result.node in self.front.infos:
                info = self.front.infos[result.node]
                self.front.infos[result.node] = replace(info, kind="module", module_type=type(module).__name__)
            binds[node] = result
            if _inplace(kind, node.target, None, kwargs) and node.args and isinstance(node.args[0], torch.fx.Node):
                if isinstance(binds.get(node.args[0]), Bind) and isinstance(result, Bind):
                    binds[node.args[0]] = result
        return finish(self.front, self.spec, outputs, values, type(self.module).__name__, "export")

    def _state_names(self) -> dict[str, str]:
        """Placeholder name -> the module's parameter or buffer it lifts."""
        sig = self.ep.graph_signature
        names: dict[str, str] = {}
        for mapping in (getattr(sig, "inputs_to_parameters", {}), getattr(sig, "inputs_to_buffers", {})):
            names.update(mapping)
        return names

    def _keep(self, values: dict, node, real) -> None:
        if not isinstance(real, torch.Tensor) or real.device.type == "meta" or real.numel() > CONST_LIMIT:
            return
        values[node] = real.detach()
        fake = node.meta.get("val")
        if isinstance(fake, torch.Tensor):
            value = real.detach().cpu()
            value = value.float() if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64) else value
            self.front.consts[id(fake)] = (fake, value.numpy())

    def _compute(self, values: dict, node) -> None:
        """The value of an ATen op on constants of known value (attention masks)."""
        known = {}
        for n in node.all_input_nodes:
            if n in values:
                known[n] = values[n]
            elif not isinstance(n.meta.get("val"), torch.Tensor) and n.meta.get("val") is not None:
                known[n] = n.meta["val"]
            else:
                return
        name = str(node.target).lower()
        if not known or any(w in name for w in ("rand", "normal", "bernoulli", "dropout", "empty", "uniform")):
            return
        try:
            with torch.no_grad():
                real = node.target(*map_arg(node.args, known.__getitem__), **map_arg(node.kwargs, known.__getitem__))
        except Exception:  # noqa: BLE001 - values are a refinement; shapes come from the fake tensors
            return
        self._keep(values, node, real)

    def _module_calls(self, graph) -> dict:
        """Per node: (module path, leaf module type, call key, last op of that call)."""
        info = {}
        last_of: dict[str, torch.fx.Node] = {}
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            stack = node.meta.get("nn_module_stack") or {}
            if not stack:
                continue
            key, (path, typ) = list(stack.items())[-1]
            typ = typ if isinstance(typ, str) else f"{typ.__module__}.{typ.__qualname__}"
            leaf = typ.startswith("torch.nn.") and not typ.endswith(("Sequential", "ModuleList", "ModuleDict"))
            info[node] = (path, typ if leaf else None, key, False)
            if leaf:
                last_of[key] = node
        for node in last_of.values():
            path, typ, k, _ = info[node]
            info[node] = (path, typ, k, True)
        return info
