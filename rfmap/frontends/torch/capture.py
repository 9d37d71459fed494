"""PyTorch front end: the model a user already has, as written, becomes a :class:`Graph`.

How a module is read:

1. **Capture** the real graph with ``torch.fx.symbolic_trace`` (leaf modules are the
   ``torch.nn`` ones and any class registered with :func:`rfmap.register_torch_op`;
   ``forward`` arguments with defaults are fixed to their defaults).  Models fx cannot
   trace (Python control flow on shapes, iterating over a tensor, ...) fall back to
   ``torch.export.export(..., strict=False)`` on a meta-device copy, whose ATen graph
   the same rule table reads.  If both fail, an :class:`~rfmap.errors.RFMapError` names
   both failures.
2. **Shapes** come from running the captured graph on the ``meta`` device (shapes only, no
   data): the cost does not depend on the input size, and shape-dependent arguments
   (``F.interpolate(x, size=skip.shape[-2:])``, slice bounds, ``view`` sizes) are
   concrete.  Parameters are swapped for meta tensors only for the call that reads them;
   ops that keep their input's shape (activations, batch norm) are not run at all.  An op
   with no meta kernel is run once on zeros of its real input shape (listed in ``notes``).
3. **Rules** (:mod:`rfmap.frontends.torch.rules`) turn each op into rfmap layers, tracking
   where each tensor's spatial axes are (so ``permute``, ``flatten(2)``, channel shuffles
   and ``view`` back are followed).  Every node's size from the engine is checked against
   the size PyTorch computed, so a rule that disagrees with PyTorch raises instead of
   giving wrong numbers.

Node names are module paths for module calls (``layer3.5.conv2``; a module called again
gets ``_1``, ``_2``: ``layer1.0.relu_2``) and fx's readable names for functions and
methods (``add``, ``cat_1``, ``interpolate``, ``flatten``).  Nodes a rule adds are named
after the op with a suffix (``mul.expand``, ``gn.stats``).

Unsupported ops (no rule): ``strict=True`` raises naming the op and the module path;
otherwise the op is treated as pointwise when it keeps the spatial size (as global when it
does not, or when it moves spatial axes in a way rfmap cannot follow: an axis split in two,
a concatenation along H or W), listed in ``Graph.notes`` and warned about once per model.

Global context: global pooling, ``flatten`` + linear, means over positions, attention,
softmax over positions and group/instance/layer norm over positions make every cell see the
whole input; those that keep the cells add a global branch merged with the local path, so
``exclude_global=True`` shows the local field.  Over-approximations (documented, not
guessed): recurrent layers over positions (causal ones see only earlier positions),
``grid_sample`` and ``max_unpool`` (data-dependent positions), ``torch.where`` (both branches).
Batch norm is taken in eval mode (pointwise).

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order.
"""

from __future__ import annotations

import dataclasses

import copy
import inspect
import operator
import re
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.fx
import torch.nn as nn
from torch.fx.node import map_arg

from rfmap.errors import RFMapError, RFMapWarning
from rfmap.core.graph import Graph, Node
from rfmap.core.layers import Layer, Pointwise, GlobalOp, Merge
from rfmap.frontends.torch import rules as R
from rfmap.frontends.torch.rules import SAME, Bind, Expand, LayoutError, OpCall

__all__ = ["ModuleRow", "NodeInfo", "TracedModel", "from_module", "module_table", "trace_module"]

DEFAULT_SIZE = 224


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """Where an rfmap node came from.

    ``path``: the module path of a module call (``layer3.5.conv2``), or, for a function,
    the module whose ``forward`` called it (``layer3.5``; ``""`` at the top).  ``kind``:
    ``module``, ``function``, ``method``, ``aten`` (torch.export), or ``helper`` for nodes a
    rule adds.  ``shape``: the full output shape (batch 1).  ``module_type``: the class name of a
    module call.  ``first_call``: false for a module called again (its parameters are
    counted once).
    """

    name: str
    path: str
    kind: str
    op: str
    shape: tuple[int, ...] | None
    module_type: str | None = None
    params: int = 0
    first_call: bool = True
    owner: str = ""


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


def from_module(
    module: nn.Module,
    input_size: int | Sequence[int] | None = None,
    *,
    strict: bool = False,
    in_channels: int | None = None,
) -> Graph:
    """The :class:`Graph` of a ``torch.nn.Module``, captured for one input size.

    ``input_size``: an int or a tuple of spatial sizes, (H, W) in 2-D (default 224 per
    axis); the spatial rank and the number of input channels come from the first
    convolution (``in_channels`` overrides the latter; default 2-D, 3 channels).  The graph
    is exact for that size (``F.interpolate(size=...)`` and slices are read there);
    ``Graph.input_size`` records it.  ``strict``: an op without a rule raises instead of
    being treated as pointwise.  Coordinates: pixel-index convention, (H, W) order.
    """
    return trace_module(module, input_size, strict=strict, in_channels=in_channels).graph


def trace_module(
    module: nn.Module,
    input_size: int | Sequence[int] | None = None,
    *,
    strict: bool = False,
    in_channels: int | None = None,
    method: str = "auto",
) -> TracedModel:
    """Like :func:`from_module`, also returning where each node came from.

    ``method``: ``"auto"`` (torch.fx, then torch.export), ``"fx"`` or ``"export"``.
    """
    if not isinstance(module, nn.Module):
        raise RFMapError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if method not in ("auto", "fx", "export"):
        raise RFMapError(f"method must be 'auto', 'fx' or 'export', got {method!r}")
    fx_error = None
    if method in ("auto", "fx"):
        try:
            gm = _symbolic_trace(module)
        except Exception as exc:  # noqa: BLE001 - any tracing failure falls back
            fx_error = exc
            if method == "fx":
                raise RFMapError(f"torch.fx cannot trace {type(module).__name__}: {_one_line(exc)}") from None
        else:
            spec = _InputSpec.from_fx(module, gm, input_size, in_channels)
            return _with_module_aliases(_FxRun(module, gm, spec, strict).run())
    spec = _InputSpec.from_modules(module, input_size, in_channels)
    try:
        ep = _export(module, spec)
    except Exception as exc:  # noqa: BLE001
        where = f"torch.fx: {_one_line(fx_error)}; " if fx_error is not None else ""
        raise RFMapError(
            f"cannot capture the graph of {type(module).__name__}: {where}torch.export: {_one_line(exc)}"
        ) from None
    run = _ExportRun(module, ep, spec, strict)
    if fx_error is not None:
        run.front.notes.append(f"torch.fx could not trace the model ({_one_line(fx_error)}); captured with torch.export")
    return _with_module_aliases(run.run())


def _with_module_aliases(traced: TracedModel) -> TracedModel:
    """Name container modules (``layer3``, ``layer3.5``) after the last node they produced,
    so that ``analysis.layer("layer3")`` works as it does for the zoo."""
    names = {n.name for n in traced.graph.nodes}
    last: dict[str, str] = {}
    for info in traced.infos:  # in graph order: later nodes overwrite
        parts = info.path.split(".") if info.path else []
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix not in names:
                last[prefix] = info.name
    g = traced.graph
    graph = Graph(g.nodes, g.name, g.input_size, g.notes, tuple(sorted(last.items())))
    return dataclasses.replace(traced, graph=graph)


# ---------------------------------------------------------------------------------------
# module table (torchinfo-style rows with receptive-field columns)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleRow:
    """One row of :func:`module_table`: a module (or a block, or a function call) with its
    output shape, parameter count and the receptive field of the node it produced.

    ``name``: the module path (``layer3.5.conv2``), the block (``layer3`` at ``depth=1``),
    or a function's node name (``add``).  ``path``: the module (for a function, the module
    whose ``forward`` called it; ``""`` at the top).  ``depth``: nesting level as in
    torchinfo (``layer3.5.conv2``: 3; a function called in ``layer3.5``: 3).
    ``node``: the rfmap node whose geometry the row shows (the block's last output node).
    ``geometry``: that node's :class:`~rfmap.core.result.LayerGeometry` (rf, stride,
    padding per axis, pixel-index convention).
    """

    name: str
    type: str
    path: str
    depth: int
    node: str
    output_shape: tuple[int, ...] | None
    params: int
    geometry: Any

    @property
    def rf(self):
        return self.geometry.rf

    @property
    def stride(self):
        return self.geometry.stride

    @property
    def padding(self):
        return self.geometry.padding

    @property
    def output_size(self):
        return self.geometry.output_size

    def to_dict(self) -> dict:
        from rfmap.core.result import json_number

        return {
            "name": self.name,
            "type": self.type,
            "path": self.path,
            "depth": self.depth,
            "node": self.node,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "params": self.params,
            "rf": list(self.rf),
            "stride": [json_number(s) for s in self.stride],
            "padding": list(self.padding),
            "global_context": self.geometry.global_context,
        }


def module_table(
    module: nn.Module,
    input_size: int | Sequence[int] | None = None,
    depth: int | None = None,
    *,
    strict: bool = False,
    in_channels: int | None = None,
    exclude_global: bool = False,
) -> list[ModuleRow]:
    """Rows in the spirit of torchinfo: one per module call (module path, class, output
    shape with batch 1, parameters) with the RF columns of the node it produced; function
    calls (``add``, ``cat``) get rows of their own.  ``depth=N`` collapses rows to blocks
    of ``N`` path components (``layer3``), each taking the row of the block's last output
    node and the block's parameter count.  The last row is the model's output.
    """
    from rfmap.core.analysis import Analysis

    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise RFMapError(f"depth must be a positive integer, got {depth!r}")
    traced = trace_module(module, input_size, strict=strict, in_channels=in_channels)
    analysis = Analysis(traced.graph, traced.graph.input_size, exclude_global=exclude_global)
    infos = {i.name: i for i in traced.infos}
    order = {n.name: k for k, n in enumerate(traced.graph.nodes)}
    groups: dict[str, list[str]] = {}
    kinds: dict[str, NodeInfo] = {}
    for node in traced.graph.nodes[1:]:
        info = infos[node.name]
        if info.kind == "helper" and depth is None:
            continue
        if depth is None:
            key = node.name
        else:
            parts = info.path.split(".") if info.path else []
            key = ".".join(parts[:depth]) if parts else (info.owner or node.name)
        groups.setdefault(key, []).append(node.name)
        kinds.setdefault(key, info)
    output = traced.graph.output.name
    rows = []
    for key, names in groups.items():
        last = max(names, key=order.__getitem__)
        if depth is not None and output in names:
            last = output
        info = infos[last]
        first = kinds[key]
        levels = len(info.path.split(".")) if info.path else 0
        if depth is None:
            params = info.params if info.first_call else 0
            typ = info.module_type or info.op
            row_depth = levels if info.kind == "module" else levels + 1
            path = info.path
        else:
            is_module = bool(first.path) and key == ".".join(first.path.split(".")[:depth])
            if is_module:
                try:
                    sub = module.get_submodule(key)
                except AttributeError:
                    sub = None
                params = sum(p.numel() for p in sub.parameters()) if sub is not None else 0
                typ = type(sub).__name__ if sub is not None else first.op
                row_depth = len(key.split("."))
                path = key
            else:
                params = sum(infos[n].params for n in names if infos[n].first_call)
                typ = first.module_type or first.op
                row_depth = 1
                path = first.path
        rows.append(ModuleRow(key, typ, path, row_depth, last, info.shape, params, analysis.layer(last)))
    rows.sort(key=lambda r: order[r.node])
    return rows


# ---------------------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------------------


class _Tracer(torch.fx.Tracer):
    """fx's tracer, also keeping user-registered module classes whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return R.is_user_leaf(m) or super().is_leaf_module(m, qualname)


def _symbolic_trace(module: nn.Module) -> "_Traced":
    concrete = {}
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise RFMapError(
                f"{type(module).__name__}.forward takes more than one input ('{p.name}' has no default); "
                "rfmap analyzes models with one image input"
            )
        concrete[p.name] = p.default
    tracer = _Tracer()
    graph = tracer.trace(module, concrete_args=concrete or None)
    return _Traced(tracer.root, graph)


@dataclass
class _Traced:
    """What a GraphModule would hold (the root module and the graph), without compiling code."""

    root: nn.Module
    graph: torch.fx.Graph

    def named_modules(self):
        return self.root.named_modules()


def _export(module: nn.Module, spec: "_InputSpec"):
    meta_module = copy.deepcopy(module).to("meta")
    example = torch.empty(spec.shape, dtype=spec.dtype, device="meta")
    return torch.export.export(meta_module, (example,), strict=False)


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


_CONV_MODULES = (nn.modules.conv._ConvNd,)
_CONV_FNS = {
    torch.nn.functional.conv1d: (1, False),
    torch.nn.functional.conv2d: (2, False),
    torch.nn.functional.conv3d: (3, False),
    torch.nn.functional.conv_transpose1d: (1, True),
    torch.nn.functional.conv_transpose2d: (2, True),
    torch.nn.functional.conv_transpose3d: (3, True),
}


@dataclass
class _InputSpec:
    rank: int
    channels: int
    sizes: tuple[int, ...]
    dtype: torch.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.channels) + self.sizes

    @classmethod
    def build(cls, module, input_size, in_channels, found) -> "_InputSpec":
        rank, channels = found if found is not None else (None, None)
        if input_size is not None and not isinstance(input_size, (int,)):
            try:
                sizes = tuple(int(v) for v in input_size)
            except (TypeError, ValueError):
                raise RFMapError(f"input size must be an int or a tuple of ints, got {input_size!r}") from None
            if rank is not None and len(sizes) != rank:
                raise RFMapError(
                    f"input size {list(sizes)} has {len(sizes)} axes, but the model's first convolution is {rank}-d"
                )
            rank = len(sizes)
        else:
            rank = rank or 2
            sizes = (DEFAULT_SIZE if input_size is None else int(input_size),) * rank
        if not 1 <= rank <= 3 or any(v < 1 for v in sizes):
            raise RFMapError(f"input size must have 1 to 3 positive entries, got {input_size!r}")
        channels = int(in_channels) if in_channels is not None else (channels or 3)
        dtype = torch.float32
        for p in module.parameters():
            if p.is_floating_point():
                dtype = p.dtype
                break
        return cls(rank, channels, sizes, dtype)

    @classmethod
    def from_fx(cls, module, gm: "_Traced", input_size, in_channels) -> "_InputSpec":
        found = None
        modules = dict(gm.named_modules())
        for node in gm.graph.nodes:
            if node.op == "call_module" and isinstance(modules.get(node.target), _CONV_MODULES):
                m = modules[node.target]
                found = (len(m.kernel_size), _channels_at_input(node, m.in_channels, modules))
                break
            if node.op == "call_function" and node.target in _CONV_FNS:
                rank, transposed = _CONV_FNS[node.target]
                w = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
                channels = None
                if isinstance(w, torch.fx.Node) and w.op == "get_attr":
                    try:
                        weight = _fetch(gm.root, w.target)
                        groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
                        channels = int(weight.shape[0]) if transposed else int(weight.shape[1]) * int(groups)
                    except Exception:  # noqa: BLE001
                        channels = None
                found = (rank, None if channels is None else _channels_at_input(node, channels, modules))
                break
        return cls.build(module, input_size, in_channels, found)

    @classmethod
    def from_modules(cls, module, input_size, in_channels) -> "_InputSpec":
        found = None
        factor = 1  # pixel (un)shuffles registered before the first convolution
        for m in module.modules():
            if isinstance(m, nn.PixelUnshuffle):
                factor *= m.downscale_factor**2
            elif isinstance(m, nn.PixelShuffle):
                factor = factor // m.upscale_factor**2 or 1
            if isinstance(m, _CONV_MODULES):
                channels = m.in_channels // factor if m.in_channels % factor == 0 else m.in_channels
                found = (len(m.kernel_size), channels)
                break
        return cls.build(module, input_size, in_channels, found)


def _channels_at_input(node: torch.fx.Node, channels: int, modules: dict) -> int:
    """Undo pixel (un)shuffles between the input and the first convolution."""
    cur = node.args[0] if node.args else None
    while isinstance(cur, torch.fx.Node) and cur.op != "placeholder":
        m = modules.get(cur.target) if cur.op == "call_module" else None
        if isinstance(m, nn.PixelUnshuffle):
            channels //= m.downscale_factor**2
        elif isinstance(m, nn.PixelShuffle):
            channels *= m.upscale_factor**2
        elif cur.target in (torch.nn.functional.pixel_unshuffle, torch.pixel_unshuffle):
            channels //= int(cur.args[1]) ** 2
        elif cur.target in (torch.nn.functional.pixel_shuffle, torch.pixel_shuffle):
            channels *= int(cur.args[1]) ** 2
        inputs = [a for a in cur.args if isinstance(a, torch.fx.Node)]
        if len(inputs) != 1:
            break
        cur = inputs[0]
    return channels


def _fetch(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        return torch.empty_like(value, device="meta")
    return value


def _leaves(obj: Any) -> list:
    if isinstance(obj, (list, tuple)):
        return [leaf for item in obj for leaf in _leaves(item)]
    if isinstance(obj, dict):
        return [leaf for item in obj.values() for leaf in _leaves(item)]
    return [obj]


def _has_bind(*structs) -> bool:
    return any(isinstance(leaf, Bind) for s in structs for leaf in _leaves(s))


def _has_tensor(obj) -> bool:
    return any(isinstance(leaf, torch.Tensor) for leaf in _leaves(obj))


# ---------------------------------------------------------------------------------------
# conversion (shared by the fx and export paths)
# ---------------------------------------------------------------------------------------


class _Front:
    """Collects rfmap nodes, their engine sizes and where they came from."""

    def __init__(self, spec: _InputSpec, strict: bool):
        self.spec = spec
        self.strict = strict
        self.nodes: list[Node] = [Node("input", None)]
        self.sizes: dict[str, tuple[int, ...]] = {"input": spec.sizes}
        self.infos: dict[str, NodeInfo] = {}
        self.taken: set[str] = {"input"}
        self.node_names: set[str] = {"input"}
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self._current: dict = {}

    # names ------------------------------------------------------------------------------

    def reserve(self, base: str) -> str:
        name = base or "op"
        k = 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    # nodes ------------------------------------------------------------------------------

    def emit(self, call: OpCall, name: str, layer: Layer, inputs: list[str]) -> str:
        if name in self.node_names or (name != call.name and name in self.taken):
            name = self.reserve(name)
        else:
            self.taken.add(name)
        where = self._where(call)
        if not inputs:
            raise RFMapError(f"{where}: the rule added a node with no input")
        if layer.merge:
            sizes = self.sizes[inputs[0]]
            for other in inputs[1:]:
                if self.sizes[other] != sizes:
                    raise RFMapError(
                        f"{where}: inputs '{inputs[0]}' {list(sizes)} and '{other}' {list(self.sizes[other])} differ in size"
                    )
            inputs = list(dict.fromkeys(inputs))
            if len(inputs) == 1:
                layer = Pointwise(op=layer.op)
        else:
            if len(inputs) != 1:
                raise RFMapError(f"{where}: a {layer.op} node takes one input, got {len(inputs)}")
            try:
                maps = layer.axis_maps(self.sizes[inputs[0]])
            except RFMapError as exc:
                raise RFMapError(f"{where}: {exc} (input size {list(self.sizes[inputs[0]])})") from None
            sizes = tuple(m.n_out for m in maps)
        self.nodes.append(Node(name, layer, tuple(inputs)))
        self.node_names.add(name)
        self.sizes[name] = sizes
        primary = name == call.name
        module = call.module
        self.infos[name] = NodeInfo(
            name=name,
            path=call.path,
            kind=call.kind if primary else "helper",
            op=call.op_name if primary else layer.op,
            shape=None,
            module_type=type(module).__name__ if module is not None and primary else None,
            params=self._current.get("params", 0) if primary else 0,
            first_call=self._current.get("first_call", True) if primary else False,
            owner=call.name,
        )
        return name

    def _where(self, call: OpCall) -> str:
        if call.kind == "module":
            return f"module '{call.path}' ({call.op_name})"
        inside = f" in module '{call.path}'" if call.path else ""
        return f"op '{call.name}' ({call.op_name}){inside}"

    # one traced call --------------------------------------------------------------------

    def convert(self, *, kind, target, base, path, module, args, kwargs, arg_binds, kwarg_binds, out, rule, params=0,
                first_call=True, own_node=False):
        """The binding of a traced call's output (``None``: it carries no spatial axes).

        ``own_node``: the output gets a node of its own named ``base`` even when the rule
        adds none (a module call keeps its row).
        """
        if not _has_bind(arg_binds, kwarg_binds) or not _has_tensor(out):
            return None
        name = self.reserve(base)
        self._current = {"params": params, "first_call": first_call, "own_node": own_node or kind == "module"}
        call = OpCall(kind=kind, target=target, name=name, path=path, module=module, args=args, kwargs=kwargs,
                      arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out, rank=self.spec.rank, front=self)
        if rule is None:
            return self._finish(call, self._unsupported(call, ""), rule_based=False)
        n_before = len(self.nodes)
        try:
            result = rule.converter(call)
        except LayoutError as exc:
            del self.nodes[n_before:]
            return self._finish(call, self._unsupported(call, f": {exc}"), rule_based=False)
        except RFMapError:
            raise
        except Exception as exc:  # noqa: BLE001 - a rule crashed: say which
            raise RFMapError(f"{self._where(call)}: the rfmap rule failed ({_one_line(exc)})") from None
        return self._finish(call, result, rule_based=True)

    def _unsupported(self, call: OpCall, reason: str):
        where = self._where(call)
        if self.strict:
            raise RFMapError(
                f"unsupported {where}{reason}; register a rule with rfmap.register_torch_op "
                "(or analyze with strict=False to treat it as pointwise)"
            )
        out = R._first_tensor(call.out)
        dims = call.bind.dims if out.dim() == call.ndim else R._right_aligned(call.bind.dims, call.ndim, out.dim())
        binds = R._distinct(call)
        if not reason and self._fits(Bind(call.bind.node, dims), out) and all(
            call.sizes(b) == call.sizes() for _, b in binds
        ):
            self.unsupported.append(f"{where}: no rule, treated as pointwise")
            call.out_dims = dims
            return Merge("add") if len(binds) > 1 else Pointwise(op=call.op_name)
        self.unsupported.append(f"{where}{reason or ': no rule, and it changes the spatial size'}; treated as global")
        call.out_dims = (None,) * self.spec.rank
        if len(binds) > 1:
            flat = [R._flat_global(call, v, b, f".global{i}") for i, (v, b) in enumerate(binds)]
            return call.emit("", Merge("add"), *flat, dims=call.out_dims)
        return GlobalOp(op=call.op_name)

    def _fits(self, bind: Bind, tensor: Any) -> bool:
        if not isinstance(tensor, torch.Tensor):
            return False
        sizes = self.sizes[bind.node]
        if len(sizes) != len(bind.dims):
            return False
        groups: dict[int, int] = {}
        for a, d in enumerate(bind.dims):
            if d is None:
                if sizes[a] != 1:
                    return False
                continue
            if not 0 <= d < tensor.dim():
                return False
            groups[d] = groups.get(d, 1) * sizes[a]
        return all(int(tensor.shape[d]) == n for d, n in groups.items())

    def _finish(self, call: OpCall, result, rule_based: bool):
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
        if call.out_dims is not None and isinstance(result, Bind) and result.dims != call.out_dims and len(
            call.out_dims
        ) == len(result.dims):
            result = Bind(result.node, call.out_dims)
        if self._current.get("own_node") and result.node != call.name and call.name not in self.node_names:
            node = self.emit(call, call.name, Pointwise(op=call.op_name), [result.node])  # a module keeps its row
            result = Bind(node, result.dims)
        return self._mirror(call, result, out, rule_based)

    def _default_dims(self, call: OpCall):
        out = R._first_tensor(call.out)
        if out.dim() == call.ndim:
            return call.bind.dims
        return R._right_aligned(call.bind.dims, call.ndim, out.dim())

    def _apply(self, call: OpCall, layer: Layer) -> Bind:
        if layer.merge:
            dims = call.out_dims if call.out_dims is not None else R._broadcast_dims(call, R._first_tensor(call.out))
            want = call.out_sizes(dims, R._first_tensor(call.out))
            fitted = []
            for i, (v, b) in enumerate(R._distinct(call)):
                if self.sizes[b.node] != want:
                    b = call.emit(f".expand{i}", Expand(want), b)
                fitted.append(b.node)
            node = self.emit(call, call.name, layer, fitted)
            return Bind(node, dims)
        node = self.emit(call, call.name, layer, [call.bind.node])
        dims = call.out_dims if call.out_dims is not None else self._default_dims(call)
        return Bind(node, dims)

    def _element(self, call: OpCall, r, tensor):
        if r is None or not isinstance(tensor, torch.Tensor):
            return None
        if r is SAME:
            r = Bind(call.bind.node, self._default_dims(call))
        if isinstance(r, Layer):
            r = self._apply(call, r)
        if isinstance(r, Bind) and self._fits(r, tensor):
            return r
        return None

    def _mirror(self, call: OpCall, bind: Bind, out, rule_based: bool):
        if isinstance(out, torch.Tensor):
            if not self._fits(bind, out):
                raise RFMapError(self._mismatch(call, bind, out))
            self._record_shape(bind, out)
            return bind
        if isinstance(out, (list, tuple)):
            elems = []
            first = True
            for o in out:
                if isinstance(o, torch.Tensor) and self._fits(bind, o):
                    elems.append(bind)
                    if first:
                        self._record_shape(bind, o)
                        first = False
                elif isinstance(o, (list, tuple)):
                    elems.append(self._mirror(call, bind, o, rule_based) if _has_tensor(o) else None)
                else:
                    elems.append(None)
            if not any(e is not None for e in _leaves(elems)):
                raise RFMapError(self._mismatch(call, bind, R._first_tensor(out)))
            return elems
        return None

    def _mismatch(self, call: OpCall, bind: Bind, out) -> str:
        sizes = self.sizes[bind.node]
        shape = list(out.shape) if isinstance(out, torch.Tensor) else out
        return (
            f"{self._where(call)}: the rfmap rule gives spatial size {list(sizes)} at dims {list(bind.dims)}, "
            f"but PyTorch's output has shape {shape}"
        )

    def _record_shape(self, binds, tensors):
        if isinstance(binds, list):
            for b, t in zip(binds, tensors):
                if isinstance(b, Bind):
                    self._record_shape(b, t)
            return
        info = self.infos.get(binds.node)
        if info is not None and info.shape is None and isinstance(tensors, torch.Tensor):
            self.infos[binds.node] = _replace(info, shape=tuple(int(v) for v in tensors.shape))

    # the graph --------------------------------------------------------------------------

    def build(self, outputs: Any, name: str, method: str, values: Any = None) -> TracedModel:
        pairs = [(b, v) for b, v in zip(_leaves(outputs), _leaves(values)) if isinstance(b, Bind)]
        if not pairs:
            raise RFMapError(f"{name}: the model's output does not depend on its input's spatial positions")
        leaves = [b for b, _ in pairs]
        main = self._materialize(*pairs[0])
        leaves[0] = Bind(main, leaves[0].dims)
        keep: set[str] = set()
        by_name = {n.name: n for n in self.nodes}
        stack = [b.node for b in leaves]
        while stack:
            n = stack.pop()
            if n in keep:
                continue
            keep.add(n)
            stack.extend(by_name[n].inputs)
        nodes = [n for n in self.nodes if n.name in keep]
        idx = next(i for i, n in enumerate(nodes) if n.name == main)
        if idx != len(nodes) - 1:
            later = nodes[idx + 1:]
            if any(main in n.inputs for n in later):
                alias = self.reserve("output")
                nodes.append(Node(alias, Pointwise(op="output"), (main,)))
                self.infos[alias] = NodeInfo(alias, "", "helper", "output", self.infos[main].shape if main in self.infos else None)
            else:
                nodes.append(nodes.pop(idx))
        notes = [f"captured with {'torch.fx.symbolic_trace' if method == 'fx' else 'torch.export'} "
                 f"for input shape {list(self.spec.shape)}"] + self.notes
        notes += [f"unsupported: {u}" for u in self.unsupported]
        if self.unsupported:
            warnings.warn(
                f"{name}: {len(self.unsupported)} op(s) without an rfmap rule: "
                + "; ".join(self.unsupported[:5])
                + (" ..." if len(self.unsupported) > 5 else "")
                + " (see Graph.notes; strict=True raises)",
                RFMapWarning,
                stacklevel=4,
            )
        graph = Graph(tuple(nodes), name, self.spec.sizes, tuple(notes))
        infos = tuple(self.infos[n.name] for n in nodes[1:] if n.name in self.infos)
        return TracedModel(graph, self.spec.shape, method, infos, tuple(self.unsupported))


    def _materialize(self, bind: Bind, value: Any) -> str:
        """The output's node; axes reduced away that the output tensor still has (a map
        rebuilt from a global vector) are broadcast back to their size."""
        rank = self.spec.rank
        if not isinstance(value, torch.Tensor) or value.dim() < rank + 2 or all(d is not None for d in bind.dims):
            return bind.node
        std = tuple(range(value.dim() - rank, value.dim()))
        used = {d for d in bind.dims if d is not None}
        size = list(self.sizes[bind.node])
        for a, d in enumerate(bind.dims):
            if d is None and std[a] not in used:
                size[a] = int(value.shape[std[a]])
        if tuple(size) == self.sizes[bind.node]:
            return bind.node
        name = self.reserve(f"{bind.node}.expand")
        self.nodes.append(Node(name, Expand(tuple(size)), (bind.node,)))
        self.node_names.add(name)
        self.sizes[name] = tuple(size)
        self.infos[name] = NodeInfo(name, self.infos[bind.node].path if bind.node in self.infos else "", "helper",
                                    "expand", tuple(int(v) for v in value.shape), owner=bind.node)
        return name


def _replace(info: NodeInfo, **changes) -> NodeInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _can_skip(args, arg_binds) -> bool:
    """A same-shape op whose output is its first argument's shape: no need to run it."""
    if not args or not isinstance(args[0], torch.Tensor):
        return False
    first = args[0]
    for v in _leaves(list(args[1:])):
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
    tensors = [v for v in _leaves([list(args), kwargs]) if isinstance(v, torch.Tensor)]
    if not tensors or any(not t.is_floating_point() for t in tensors):
        return None
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        return None
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _inplace(kind: str, target: Any, module: Any, kwargs: dict) -> bool:
    if kind == "method":
        return isinstance(target, str) and target.endswith("_") and not target.endswith("__")
    if kind == "module":
        return bool(getattr(module, "inplace", False))
    if kind == "aten":
        name = getattr(getattr(target, "_schema", None), "name", "")
        return name.endswith("_") and not name.endswith("__")
    if target in (operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
                  operator.ipow, operator.iand, operator.ior, operator.ixor):
        return True
    return bool(kwargs.get("inplace", False))


class _FxRun:
    """Runs an fx graph on the meta device and converts it node by node."""

    def __init__(self, module: nn.Module, gm: "_Traced", spec: _InputSpec, strict: bool):
        self.module = module
        self.gm = gm
        self.spec = spec
        self.front = _Front(spec, strict)
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = {}
        self.real_fallbacks: list[str] = []
        self._metas: dict[int, torch.Tensor] = {}

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
                env[node] = _meta(_fetch(self.gm.root, node.target))
                binds[node] = None
                continue
            if op == "output":
                outputs = map_arg(node.args[0], lambda n: binds.get(n))
                values = map_arg(node.args[0], lambda n: env.get(n))
                break
            args = map_arg(node.args, env.__getitem__)
            kwargs = map_arg(node.kwargs, env.__getitem__)
            arg_binds = map_arg(node.args, lambda n: binds.get(n))
            kwarg_binds = map_arg(node.kwargs, lambda n: binds.get(n))
            module = self.modules[node.target] if op == "call_module" else None
            kind = {"call_module": "module", "call_function": "function", "call_method": "method"}[op]
            target = module if module is not None else node.target
            rule = R.lookup(target)
            spatial = _has_bind(arg_binds, kwarg_binds)
            out = None
            if spatial and rule is not None:
                if rule.same_shape and _can_skip(args, arg_binds):
                    out = args[0]
                elif rule.broadcast:
                    out = _broadcast_out(args, kwargs)
            if out is None:
                out = self._execute(node, kind, module, args, kwargs)
            env[node] = out
            if not spatial:
                binds[node] = None
                continue
            path = node.target if module is not None else _enclosing(node)
            params, first_call = 0, True
            if module is not None:
                count = self.calls.get(node.target, 0)
                self.calls[node.target] = count + 1
                first_call = count == 0
                params = sum(p.numel() for p in module.parameters())
            else:
                params = sum(
                    int(_fetch(self.gm.root, a.target).numel())
                    for a in node.all_input_nodes
                    if a.op == "get_attr" and isinstance(_fetch(self.gm.root, a.target), nn.Parameter)
                )
            base = node.target if module is not None else node.name
            binds[node] = self.front.convert(
                kind=kind, target=target, base=base, path=path, module=module, args=args, kwargs=kwargs,
                arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out, rule=rule, params=params, first_call=first_call,
            )
            if _inplace(kind, node.target, module, kwargs) and node.args and isinstance(node.args[0], torch.fx.Node):
                if isinstance(binds.get(node.args[0]), Bind) and isinstance(binds[node], Bind):
                    binds[node.args[0]] = binds[node]
        if self.real_fallbacks:
            self.front.notes.append(
                "run on zeros of the real input shape (no meta kernel): " + ", ".join(self.real_fallbacks)
            )
        return self.front.build(outputs, type(self.module).__name__, "fx", values)

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
                    f"{_one_line(meta_exc)}"
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


def _enclosing(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    last = list(stack.values())[-1]
    return last[0] if isinstance(last, tuple) else str(last)


class _ExportRun:
    """Converts a ``torch.export`` ATen graph (shapes from its fake tensors)."""

    def __init__(self, module: nn.Module, ep, spec: _InputSpec, strict: bool):
        self.module = module
        self.ep = ep
        self.spec = spec
        self.front = _Front(spec, strict)

    def run(self) -> TracedModel:
        graph = self.ep.graph
        user_inputs = list(self.ep.graph_signature.user_inputs)
        binds: dict[torch.fx.Node, Any] = {}
        standard = tuple(range(2, 2 + self.spec.rank))
        groups = self._module_calls(graph)
        calls: dict[str, int] = {}
        outputs = None
        for node in graph.nodes:
            if node.op == "placeholder":
                binds[node] = Bind("input", standard) if user_inputs and node.name == user_inputs[0] else None
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
            if not _has_bind(arg_binds, kwarg_binds):
                binds[node] = None
                continue
            path, mtype, key, is_last = groups.get(node, ("", None, None, False))
            module = None
            if mtype is not None:
                try:
                    module = self.module.get_submodule(path)
                except AttributeError:
                    module = None
            op_name = R.target_name(node.target)
            fn = node.meta.get("torch_fn")
            if module is not None and is_last:
                count = calls.get(path, 0)
                calls[path] = count + 1
                base = path
                params = sum(p.numel() for p in module.parameters()) if count == 0 else 0
                first_call = count == 0
            elif module is not None:
                base, params, first_call = f"{path}.{op_name}", 0, False
            else:
                base = re.sub(r"_\d+$", "", fn[0]).strip("_") if fn else op_name
                params, first_call = 0, True
            kind = "aten"
            rule = R.lookup(node.target)
            result = self.front.convert(
                kind=kind, target=node.target, base=base, path=path, module=None,
                args=args, kwargs=kwargs, arg_binds=arg_binds, kwarg_binds=kwarg_binds, out=out, rule=rule,
                params=params, first_call=first_call, own_node=module is not None and is_last,
            )
            if module is not None and is_last and isinstance(result, Bind) and result.node in self.front.infos:
                info = self.front.infos[result.node]
                self.front.infos[result.node] = _replace(info, kind="module", module_type=type(module).__name__)
            binds[node] = result
            if _inplace(kind, node.target, None, kwargs) and node.args and isinstance(node.args[0], torch.fx.Node):
                if isinstance(binds.get(node.args[0]), Bind) and isinstance(result, Bind):
                    binds[node.args[0]] = result
        return self.front.build(outputs, type(self.module).__name__, "export", values)

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
        for key, node in last_of.items():
            path, typ, k, _ = info[node]
            info[node] = (path, typ, k, True)
        return info
