"""The network an ERF is measured on: the user's PyTorch module, or a linear twin.

* A **module** -- a ``torch.nn.Module``, a ``"pkg.module:factory"`` string or
  ``"torchvision:NAME"`` -- is run as it is, with its own weights (``weights="as-is"``:
  trained weights if the factory loads them) or, re-weighted, as a copy.  It runs in eval
  mode; the user's module keeps its weights, device and training flag.
* A **linear twin** (:func:`rfmap.erf.twin.to_torch`) is built from rfmap's graph: pointwise
  ops (ReLU, ...) become identities, max pooling average pooling, every convolution gets
  weights of its own (``as-is``: random positive).  It is the only choice for a spec file,
  a zoo name, an ONNX file or a layer list (rfmap reads their geometry, not their weights),
  and asked for with ``twin=True`` for a module.

Torch is imported when a network is prepared.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from rfmap.erf.inputs import Inputs
from rfmap.erf.weights import infer_channels, reweight
from rfmap.errors import RFMapError

__all__ = ["Network", "as_module", "is_factory", "prepare"]

TWIN_NOTE = "linear twin: pointwise ops (ReLU, ...) as identities, max pooling as average pooling"


@dataclass
class Network:
    """What is measured: ``module`` (the user's, a copy, or a twin; ``own``: ours to move and
    re-weight), ``kind`` (``"module"`` or ``"twin"``), ``name`` for display, the input
    ``channels`` and ``dtype``, the twin itself (``None`` for a module) and ``source``, the
    module rfmap analyzes for the TRF (``None`` for a twin, whose analysis it holds)."""

    module: Any
    own: bool
    kind: str
    name: str
    channels: int
    dtype: Any
    twin: Any = None
    source: Any = None
    notes: list[str] = field(default_factory=list)


def is_factory(text: str) -> bool:
    """Whether a source string names a ``pkg.module:factory`` (as :func:`rfmap.frontends.load` reads it)."""
    from rfmap.frontends import SPEC_SUFFIXES, zoo

    lower = text.lower()
    if lower.endswith((*SPEC_SUFFIXES, ".onnx")) or zoo.has(text):
        return False
    return ":" in text and not os.path.exists(text)


def as_module(model: Any) -> tuple[Any, str] | None:
    """``(module, display name)`` for a PyTorch module or a factory string, else ``None``."""
    from rfmap.frontends import _is_torch_module

    if _is_torch_module(model):
        return model, type(model).__name__
    if isinstance(model, str) and is_factory(model):
        from rfmap.frontends.factory import load_factory

        module = load_factory(model)
        return module, f"{type(module).__name__} ({model})"
    return None


def _device_of(model):
    for p in model.parameters():
        return p.device
    return None


def _same_device(a, b) -> bool:
    """``cuda`` and ``cuda:0`` (the current device) are the same; no parameters: any device."""
    if a is None:
        return True
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    import torch

    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def _dtype_of(model):
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _module_network(module, name, weights, device, channels, dtype, inputs: Inputs, notes=()) -> Network:
    import torch

    run, own = module, False
    if weights != "as-is" or not _same_device(_device_of(module), device):
        run, own = copy.deepcopy(module), True
    reweight(run, weights)
    channels = inputs.channels or channels or infer_channels(run)
    dtype = dtype or _dtype_of(run) or torch.float32
    inputs.require_size(None, "an input_size is needed to measure an ERF on noise inputs")
    return Network(run, own, "module", name, int(channels), dtype, source=module, notes=list(notes))


def _twin_network(graph, weights, seed, channels, dtype, inputs: Inputs, of_module: bool) -> Network:
    import torch

    from rfmap.erf.twin import to_torch

    size = inputs.require_size(graph.input_size, f"'{graph.name}' has no default input size: give input_size")
    channels = int(inputs.channels or channels or 3)
    dtype = torch.float64 if dtype is None else dtype
    twin_weights = {"as-is": "positive", "uniform": "uniform", "random": "random"}[weights]
    twin = to_torch(graph, size, channels=channels, weights=twin_weights, seed=seed, dtype=dtype)
    twin.check_sizes = False
    why = "the twin does not carry the module's weights" if of_module else "the source has none of its own"
    note = TWIN_NOTE + (f"; weights random positive ({why})" if weights == "as-is" else "")
    return Network(twin, True, "twin", f"linear twin of {graph.name}", channels, dtype, twin=twin, notes=[note])


def prepare(model: Any, *, twin: bool | None, weights: str, seed: int, channels, dtype, device, inputs: Inputs) -> Network:
    """The network to measure (see the module docstring); ``twin``: ``None`` -- the module
    when there is one, else the twin; ``True`` -- the twin; ``False`` -- the module."""
    found = as_module(model)
    if found is not None and not twin:
        notes = []
        if isinstance(model, str) and model.strip().startswith("torchvision:") and weights == "as-is":
            notes.append(
                "torchvision:NAME builds the model without pretrained weights (PyTorch's initialization); "
                "for trained weights give a factory that loads them"
            )
        return _module_network(*found, weights, device, channels, dtype, inputs, notes)
    if twin is False:
        raise RFMapError(
            f"{model!r} is not a PyTorch module or factory: rfmap reads only its geometry, so its ERF is "
            "measured on its linear twin (twin=True)"
        )
    from rfmap.frontends import load

    if found is not None:
        size = inputs.require_size(None, "an input_size is needed to build the twin of a PyTorch module")
        graph = load(found[0], size)
    else:
        graph = load(model)
    return _twin_network(graph, weights, seed, channels, dtype, inputs, found is not None)
