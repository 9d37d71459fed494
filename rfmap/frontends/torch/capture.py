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
3. **Rules** (the op registry, :mod:`rfmap.rules`) turn each op into rfmap layers, tracking
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

import contextlib
import dataclasses
import inspect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.fx
import torch.nn as nn

from rfmap.core.graph import Graph
from rfmap.errors import RFMapError
from rfmap.frontends.convert import one_line
from rfmap.frontends.nodeinfo import NodeInfo, NoSpatialOutput
from rfmap.frontends.torch import targets as T
from rfmap.frontends.torch.run import TracedModel, _ExportRun, _fetch, _FxRun

__all__ = ["NodeInfo", "TracedModel", "from_module", "trace_module"]

DEFAULT_SIZE = 224


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


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
    fx_error: Exception | None = None
    why = ""
    hooked = _hooked_modules(module) if method == "auto" else []
    if hooked:
        # fx does not run the hooks of the modules it keeps whole, so tensors a hook stores
        # (timm's FeatureHookNet) would be missing from its graph
        why = (f"forward hooks on {', '.join(repr(h) for h in hooked[:3])}{' ...' if len(hooked) > 3 else ''} "
               "(torch.fx does not run them); captured with torch.export")
    elif method == "auto" and _rank_of(input_size) in _FX_FAILED.get(module, {}):
        # decided before: torch.fx cannot trace this model at this input rank
        why = _FX_FAILED[module][_rank_of(input_size)]
    elif method in ("auto", "fx"):
        try:
            gm = _symbolic_trace(module)
        except Exception as exc:  # noqa: BLE001 - any tracing failure falls back
            fx_error = exc
            if method == "fx":
                raise RFMapError(f"torch.fx cannot trace {type(module).__name__}: {one_line(exc)}") from None
            why = f"torch.fx could not trace the model ({one_line(exc)}); captured with torch.export"
            _FX_FAILED.setdefault(module, {})[_rank_of(input_size)] = why
        else:
            spec = _InputSpec.from_fx(module, gm, input_size, in_channels)
            try:
                return _with_module_aliases(_FxRun(module, gm, spec, strict).run())
            except NoSpatialOutput as exc:
                if method == "fx":
                    raise
                fx_error = exc
                why = ("the torch.fx graph's outputs do not depend on the input (tensors taken by hooks?); "
                       "captured with torch.export")
    spec = _InputSpec.from_modules(module, input_size, in_channels)
    try:
        ep = _export(module, spec)
    except Exception as exc:  # noqa: BLE001
        where = f"torch.fx: {one_line(fx_error)}; " if fx_error is not None else ""
        raise RFMapError(
            f"cannot capture the graph of {type(module).__name__}: {where}torch.export: {one_line(exc)}"
        ) from None
    run = _ExportRun(module, ep, spec, strict)
    if why:
        run.front.notes.append(why)
    return _with_module_aliases(run.run())


def _hooked_modules(module: nn.Module) -> list[str]:
    """Paths of the submodules with forward hooks (``''`` for the model itself)."""
    return [name for name, m in module.named_modules() if m._forward_hooks]


def _with_module_aliases(traced: TracedModel) -> TracedModel:
    """Name container modules (``layer3``, ``layer3.5``) after the last node they produced,
    so that ``analysis.layer("layer3")`` works as it does for the zoo."""
    names = {n.name for n in traced.graph.nodes} | {a for a, _ in traced.graph.aliases}
    last: dict[str, str] = {}
    for info in traced.infos:  # in graph order: later nodes overwrite
        parts = info.path.split(".") if info.path else []
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix not in names:
                last[prefix] = info.name
    g = traced.graph
    own = dict(g.aliases)  # the outputs' names (dict keys) win over container modules
    merged = {**{k: v for k, v in last.items() if k not in own}, **own}
    graph = Graph(g.nodes, g.name, g.input_size, g.notes, tuple(sorted(merged.items())), g.outputs)
    return dataclasses.replace(traced, graph=graph)


# ---------------------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------------------


class _Tracer(torch.fx.Tracer):
    """fx's tracer, also keeping user-registered module classes whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return T.is_user_leaf(m) or super().is_leaf_module(m, qualname)


def _symbolic_trace(module: nn.Module) -> _Traced:
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


#: models torch.fx failed on, by input rank: the next capture of the same model goes straight
#: to torch.export (the reason is kept for the notes).  Per model, not per class: a wrapper
#: class may trace or not depending on what it wraps.
_FX_FAILED: weakref.WeakKeyDictionary[nn.Module, dict[int | None, str]] = weakref.WeakKeyDictionary()


def _rank_of(input_size: Any) -> int | None:
    return len(input_size) if isinstance(input_size, (list, tuple)) else None


def _export(module: nn.Module, spec: _InputSpec):
    """``torch.export`` of the module itself (not a copy: it traces with fake tensors, so
    nothing runs on data) on an uninitialized example of the input's shape (never touched,
    so a large input costs no memory), with torch's own logging silenced."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    example = torch.empty(spec.shape, dtype=spec.dtype, device=device)
    with _quiet_torch_logs():
        return torch.export.export(module, (example,), strict=False)


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export and dynamo log warnings of their own; rfmap says what matters in one line."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch._dynamo", "torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes",
                                              "torch._subclasses.fake_tensor", "torch._functorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


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
    def build(cls, module, input_size, in_channels, found) -> _InputSpec:
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
    def from_fx(cls, module, gm: _Traced, input_size, in_channels) -> _InputSpec:
        found: tuple[int, int | None] | None = None
        modules = dict(gm.named_modules())
        for node in gm.graph.nodes:
            if node.op == "call_module" and isinstance(modules.get(node.target), _CONV_MODULES):
                m = modules[node.target]
                found = (len(m.kernel_size), _channels_at_input(node, m.in_channels, modules))
                if in_channels is None:
                    spec = cls.build(module, input_size, None, found)
                    probed = _probe_channels(gm, node, m.in_channels, spec)
                    if probed is not None:
                        found = (found[0], probed)
                break
            if node.op == "call_function" and node.target in _CONV_FNS:
                rank, transposed = _CONV_FNS[node.target]
                w = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
                channels = None
                if isinstance(w, torch.fx.Node) and w.op == "get_attr":
                    try:
                        weight = _fetch(gm.root, cast(str, w.target))  # get_attr: an attribute path
                        groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
                        channels = int(weight.shape[0]) if transposed else int(weight.shape[1]) * int(groups)
                    except Exception:  # noqa: BLE001
                        channels = None
                found = (rank, None if channels is None else _channels_at_input(node, channels, modules))
                break
        return cls.build(module, input_size, in_channels, found)

    @classmethod
    def from_modules(cls, module, input_size, in_channels) -> _InputSpec:
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


def _probe_channels(gm: _Traced, conv: torch.fx.Node, channels: int, spec: _InputSpec) -> int | None:
    """Where views and permutes between the input and the first convolution change the
    channel count (a space-to-depth stem written with ``view``/``permute``, as TResNet's, or
    a concatenation of the input with itself),
    the input channel count whose shapes give the convolution its ``channels``: the ops
    before it are run on the meta device for a few candidates.  ``None``: no such ops, or
    no candidate fits."""
    ancestors: list[torch.fx.Node] = []
    stack, seen = [a for a in conv.args[:1] if isinstance(a, torch.fx.Node)], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        ancestors.append(n)
        stack.extend(n.all_input_nodes)
    if not any(n.op in ("call_method", "call_function") for n in ancestors):
        return None
    if any(n.op in ("call_module", "get_attr") for n in ancestors):
        return None
    order = [n for n in gm.graph.nodes if n in seen]
    divisors = [channels // f for f in range(1, channels + 1) if channels % f == 0]  # also cat([x, x]): half
    for c in dict.fromkeys([spec.channels] + [channels // f for f in (4, 9, 16, 64) if channels % f == 0] + [3, 1] + divisors):
        env: dict[torch.fx.Node, Any] = {}
        try:
            for n in order:
                if n.op == "placeholder":
                    env[n] = torch.empty((1, c) + spec.sizes, dtype=spec.dtype, device="meta")
                    continue
                args = torch.fx.node.map_arg(n.args, env.__getitem__)
                kwargs = torch.fx.node.map_arg(n.kwargs, env.__getitem__)
                fn = n.target if n.op == "call_function" else getattr(args[0], n.target)
                env[n] = fn(*args, **kwargs) if n.op == "call_function" else fn(*args[1:], **kwargs)
            x = env[cast(torch.fx.Node, conv.args[0])]
        except Exception:  # noqa: BLE001 - this candidate does not fit the ops
            continue
        if isinstance(x, torch.Tensor) and x.dim() >= 2 and int(x.shape[1]) == channels:
            return c
    return None


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
            channels //= int(cast(int, cur.args[1])) ** 2
        elif cur.target in (torch.nn.functional.pixel_shuffle, torch.pixel_shuffle):
            channels *= int(cast(int, cur.args[1])) ** 2
        inputs = [a for a in cur.args if isinstance(a, torch.fx.Node)]
        if len(inputs) != 1:
            break
        cur = inputs[0]
    return channels
