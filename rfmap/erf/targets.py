"""Where the measured layer's output is taken: every named layer or output of the network.

A target runs the network on a batch and returns the layer's output ``(N, C, *spatial)``,
computing no more of the network than it needs.

* In a **twin** (:class:`rfmap.erf.twin.TorchTwin`) every graph node can be measured, by
  name, alias (a container module, a named output such as ``'0'`` or ``'pool'``) or index,
  whether or not it leads to the first output: :meth:`TorchTwin.node_output` runs only the
  node's ancestors.
* In a **module** a layer is, in this order: a submodule path (``layer3.1.conv2``; a
  forward hook takes its first output tensor and stops the pass); a later call of a
  submodule called several times, as rfmap's PyTorch front end names it (``relu_2``: the
  third call of ``relu``); a named output of the model (a key of the dict it returns, or
  an index of a returned tuple, as a string); or a node of rfmap's graph of the module
  that is a function or method call (``add``, ``cat_1``), run with ``torch.fx`` up to that
  node.  ``None``: the model's output (its first tensor).

Torch is imported when a target is built.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from rfmap.errors import RFMapError

__all__ = ["Target", "module_target", "twin_target"]


class _Stop(Exception):
    """Raised once the layer's output is captured (skips the rest of the forward pass)."""

    def __init__(self, value: Any = None):
        super().__init__()
        self.value = value


def first_tensor(value: Any):
    """The first tensor in a (nested) tensor, dict, list or tuple, or ``None``."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def _hint(name: str, names) -> str:
    close = difflib.get_close_matches(str(name), [str(n) for n in names], n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _failed(module, x, exc: Exception) -> RFMapError:
    first = (str(exc).strip().splitlines() or [""])[0]
    return RFMapError(
        f"running {type(module).__name__} on an input of shape {list(x.shape)} failed: {type(exc).__name__}: {first}"
    )


def _guarded(module, run):
    """``run`` with the model's own failures (wrong channels, too small an input) as one RFMapError."""

    def call(x):
        try:
            return run(x)
        except (RFMapError, _Stop):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward failed
            raise _failed(module, x, exc) from None

    return call


class Target:
    """The output of one layer: ``target(x)`` runs the network and returns it.

    ``name``: the layer as the user gave it (``None``: the model's output); ``how``: how
    it is reached, in words (``"submodule body.2"``, ``"output 'p3'"``, ...)."""

    def __init__(self, name: str | None, how: str, run):
        self.name, self.how, self._run = name, how, run

    def __call__(self, x):
        return self._run(x)


def twin_target(twin, layer: str | int | None) -> Target:
    """A node of a twin (default: the graph's first output)."""
    graph = twin.graph
    name = graph.output.name if layer is None else layer
    try:
        k = twin.analysis._resolve(name)
    except RFMapError:
        names = list(twin.names) + [a for a, _ in graph.aliases]
        raise RFMapError(f"no layer named '{name}' in '{graph.name}'{_hint(str(name), names)}") from None
    if k == 0:
        raise RFMapError(f"layer '{name}' is the input: pick a layer after it")
    node = twin.names[k]
    return Target(str(name), f"node {node} of the twin", _guarded(twin, lambda x: twin.node_output(x, k)))


def _hook_run(module, sub, path: str, call: int):
    """Run ``module`` until the ``call``-th call (from 0) of ``sub`` and return its output."""

    def run(x):
        seen = [0]

        def hook(_mod, _inp, out):
            if seen[0] == call:
                raise _Stop(first_tensor(out))
            seen[0] += 1

        handle = sub.register_forward_hook(hook)
        try:
            module(x)
        except _Stop as stop:
            return stop.value
        finally:
            handle.remove()
        if seen[0] == 0:
            raise RFMapError(f"layer '{path}' was not called in the forward pass of {type(module).__name__}")
        raise RFMapError(f"layer '{path}' was called {seen[0]} times in the forward pass, not {call + 1}")

    return run


def _outputs(module, probe) -> dict[str, Any]:
    """The model's named outputs: dict keys, or tuple/list indices as strings."""
    import torch

    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # noqa: BLE001 - the user's forward failed
        raise _failed(module, probe, exc) from None
    if isinstance(out, dict):
        return {str(k): k for k in out}
    if isinstance(out, (list, tuple)):
        return {str(i): i for i in range(len(out))}
    return {}


def _output_run(module, key):
    def run(x):
        out = module(x)
        return first_tensor(out if key is None else out[key])

    return run


def _fx_run(module, node_name: str):
    """Run ``module`` with ``torch.fx`` (rfmap's tracer) up to the node ``node_name``, or ``None``."""
    import torch.fx

    try:
        from rfmap.frontends.torch.capture import _symbolic_trace

        traced = _symbolic_trace(module)
    except Exception:  # noqa: BLE001 - a model fx cannot trace has no function nodes to offer
        return None, []
    names = [n.name for n in traced.graph.nodes if n.op in ("call_function", "call_method")]
    if node_name not in names:
        return None, names
    gm = torch.fx.GraphModule(traced.root, traced.graph)

    class UpTo(torch.fx.Interpreter):
        def run_node(self, n):
            value = super().run_node(n)
            if n.name == node_name:
                raise _Stop(first_tensor(value))
            return value

    def run(x):
        try:
            UpTo(gm).run(x)
        except _Stop as stop:
            return stop.value
        raise RFMapError(f"layer '{node_name}' was not reached")  # pragma: no cover - fx runs every node

    return run, names


def module_target(module, layer: str | None, probe) -> Target:
    """A layer or output of a PyTorch module (see the module docstring); ``probe``: one input
    of the right shape, run (without gradients) only to list the model's named outputs."""
    if layer is None:
        return Target(None, "the model's output", _guarded(module, _output_run(module, None)))
    layer = str(layer)
    modules = {name: m for name, m in module.named_modules() if name}
    if layer in modules:
        return Target(layer, f"submodule {layer}", _guarded(module, _hook_run(module, modules[layer], layer, 0)))
    again = re.fullmatch(r"(.+)_(\d+)", layer)
    if again and again.group(1) in modules:
        path, call = again.group(1), int(again.group(2))
        return Target(layer, f"call {call + 1} of submodule {path}", _guarded(module, _hook_run(module, modules[path], path, call)))
    outputs = _outputs(module, probe)
    if layer in outputs:
        return Target(layer, f"output {layer!r}", _guarded(module, _output_run(module, outputs[layer])))
    run, fx_names = _fx_run(module, layer)
    if run is not None:
        return Target(layer, f"node {layer} (torch.fx)", _guarded(module, run))
    names = list(modules) + list(outputs) + fx_names
    raise RFMapError(f"no layer named '{layer}' in {type(module).__name__}{_hint(layer, names)}")
