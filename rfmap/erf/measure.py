"""Measuring an effective receptive field (Luo et al. 2016): set the gradient of one output
cell to 1, backpropagate to the input, aggregate per pixel, average over inputs.

The network measured is either the user's PyTorch module (a copy when it is re-weighted or
moved) or, for any other rfmap source, its linear PyTorch twin
(:func:`rfmap.erf.twin.to_torch`).  Coordinates: pixel-index convention, (H, W) order.
Imports torch when :func:`erf` runs.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rfmap.erf.closed_form import closed_form_sigma
from rfmap.erf.inputs import Inputs, normalize_size
from rfmap.erf.result import ERF
from rfmap.erf.weights import WEIGHTS, infer_channels, redraw, reweight
from rfmap.errors import RFMapError
from rfmap.progress import ProgressBar

__all__ = ["AGGREGATES", "erf"]

#: How the input gradient ``g`` is turned into a per-pixel contribution (then summed over channels).
AGGREGATES = ("abs", "square", "relu")


@dataclass
class _Network:
    """The network being measured and how to reach the layer's output."""

    module: Any
    own: bool  # a copy (or a twin): may be moved and re-weighted
    target: Any  # the submodule whose output is the layer (None: the model's output)
    name: str
    channels: int
    dtype: Any
    layer: str | None
    analysis: Any = None
    notes: list[str] = field(default_factory=list)


class _Stop(Exception):
    """Raised by the forward hook once the layer's output is captured (skips the rest)."""


def _first_tensor(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _check_options(weights, aggregate, batch_size, channels) -> None:
    if weights not in WEIGHTS:
        raise RFMapError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if aggregate not in AGGREGATES:
        raise RFMapError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if int(batch_size) < 1:
        raise RFMapError(f"batch_size must be at least 1, got {batch_size}")
    if channels is not None and int(channels) < 1:
        raise RFMapError(f"channels must be at least 1, got {channels}")


def _torch_device(device: Any):
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise RFMapError(f"'{device}' is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RFMapError(f"device '{device}': CUDA is not available on this machine")
    return device


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


def _close(name: str, names) -> str:
    close = difflib.get_close_matches(str(name), list(names), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _module_network(model, layer, weights, device, channels, dtype, inputs: Inputs) -> _Network:
    import torch

    module, own = model, False
    if weights != "as-is" or not _same_device(_device_of(model), device):
        module, own = copy.deepcopy(model), True
    reweight(module, weights)
    target = None
    if layer is not None:
        modules = dict(module.named_modules())
        if layer not in modules or layer == "":
            hint = _close(layer, [m for m in modules if m])
            raise RFMapError(f"no layer named '{layer}' in {type(module).__name__}{hint}")
        target = modules[layer]
    channels = inputs.channels or channels or infer_channels(module)
    dtype = dtype or _dtype_of(module) or torch.float32
    inputs.require_size(None, "an input_size is needed to measure an ERF on noise inputs")
    return _Network(module, own, target, type(model).__name__, int(channels), dtype, layer)


def _twin_network(source, layer, weights, seed, channels, dtype, inputs: Inputs) -> _Network:
    import torch

    from rfmap.erf.twin import to_torch
    from rfmap.frontends import load

    graph = load(source)
    size = inputs.require_size(graph.input_size, f"'{graph.name}' has no default input size: give input_size")
    channels = int(inputs.channels or channels or 3)
    dtype = torch.float64 if dtype is None else dtype
    twin_weights = {"as-is": "positive", "uniform": "uniform", "random": "random"}[weights]
    twin = to_torch(graph, size, channels=channels, weights=twin_weights, seed=seed, dtype=dtype)
    twin.check_sizes = False
    layer = graph.output.name if layer is None else layer
    names = twin.names
    if layer not in names:
        raise RFMapError(f"no layer named '{layer}' in '{graph.name}'{_close(layer, names)}")
    k = names.index(layer)
    if k == 0:
        raise RFMapError(f"layer '{layer}' is the input: pick a layer after it")
    notes = ["rfmap twin: linear, max pooling as average pooling"]
    return _Network(twin, True, twin.node_modules[k - 1], graph.name, channels, dtype, layer, twin.analysis, notes)


def _aggregate(g, how: str):
    import torch

    if how == "abs":
        g = g.abs()
    elif how == "square":
        g = g * g
    else:
        g = torch.relu(g)
    return g.sum(dim=(0, 1))


def _cell(out, cell, layer, ndim) -> tuple[int, ...]:
    spatial = tuple(int(v) for v in out.shape[2:])
    if len(spatial) != ndim:
        raise RFMapError(
            f"layer '{layer or 'output'}' has output shape {list(out.shape)}: expected (N, C) and {ndim} spatial axes"
        )
    if cell is None:
        return tuple(n // 2 for n in spatial)
    idx = tuple(int(c) for c in cell)
    if len(idx) != ndim or not all(0 <= i < n for i, n in zip(idx, spatial)):
        raise RFMapError(f"cell {list(idx)} is outside layer '{layer or 'output'}' of size {list(spatial)}")
    return idx


def _forward(net: _Network, x, captured: list):
    import torch

    captured.clear()
    try:
        out = net.module(x)
    except _Stop:
        return captured[0]
    if net.target is not None:
        raise RFMapError(f"layer '{net.layer}' was not called in the forward pass of {net.name}")
    return out if isinstance(out, torch.Tensor) else _first_tensor(out)


def _accumulate(net: _Network, inputs: Inputs, opts: dict, device, progress: bool):
    """The summed aggregated input gradients and the cell, running every batch of ``inputs``."""
    import torch

    captured: list = []

    def hook(_mod, _inp, out):
        captured.append(_first_tensor(out))
        raise _Stop

    handle = net.target.register_forward_hook(hook) if net.target is not None else None
    acc, cell_index = None, None
    gen = torch.Generator().manual_seed(opts["seed"] + 1)
    what = net.layer or "output"
    batches = inputs.batches(net.channels, net.dtype, opts["batch_size"], opts["seed"])
    try:
        with ProgressBar(inputs.n, f"ERF {net.name}:{what}", progress) as bar:
            for x in batches:
                if opts["weights"] == "random":
                    redraw(net.module, gen)
                x = x.to(device).requires_grad_(True)
                out = _forward(net, x, captured)
                if out is None:
                    raise RFMapError(f"layer '{what}' of {net.name} returned no tensor")
                if cell_index is None:
                    cell_index = _cell(out, opts["cell"], net.layer, len(inputs.size))
                picked = out[(slice(None), slice(None)) + cell_index].sum()
                if not picked.requires_grad:
                    raise RFMapError(f"layer '{what}' of {net.name} does not depend on the input")
                (g,) = torch.autograd.grad(picked, x)
                part = _aggregate(g.detach(), opts["aggregate"]).to(torch.float64)
                acc = part if acc is None else acc + part
                bar.advance(x.shape[0])
    finally:
        if handle is not None:
            handle.remove()
    return acc, cell_index


def _try_analyze(model, size):
    """rfmap's analysis of a torch module, or ``None`` when its front end cannot read it."""
    import warnings

    try:
        from rfmap import analyze

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return analyze(model, size)
    except Exception:  # noqa: BLE001 - any front-end failure means "no TRF"
        return None


def _theory(analysis, layer, cell_index) -> tuple[tuple[int, ...] | None, tuple[float, ...] | None]:
    """The cell's theoretical RF box and closed-form sigma, where the analysis has them."""
    if analysis is None or cell_index is None:
        return None, None
    name = layer if layer is not None else analysis.graph.output.name
    try:
        trf_box = tuple(int(v) for v in analysis.rf_box(name, cell_index))
    except Exception:  # noqa: BLE001 - a module name the analysis does not know
        return None, None
    try:
        return trf_box, closed_form_sigma(analysis, name, cell_index)
    except RFMapError:
        return trf_box, None


def erf(
    model: Any,
    layer: str | None = None,
    input_size: int | Sequence[int] | None = None,
    inputs: Any = None,
    n: int | None = None,
    weights: str = "as-is",
    aggregate: str = "abs",
    cell: Sequence[int] | None = None,
    batch_size: int = 16,
    device: Any = "cpu",
    progress: bool = True,
    *,
    seed: int = 0,
    channels: int | None = None,
    dtype: Any = None,
    trf: bool = True,
) -> ERF:
    """Measure the effective receptive field of one cell of ``layer`` (Luo et al. 2016).

    ``model``: a ``torch.nn.Module``, or any rfmap source (zoo name, layer list, spec file,
    :class:`~rfmap.Graph`), which is then built with :func:`rfmap.erf.twin.to_torch` as a
    linear twin with ``channels`` channels (default 3) in float64.  ``layer``: a module name
    (``dict(model.named_modules())``; a forward hook captures its first output, so models
    returning dicts or tuples work) or a graph node name for sources; ``None`` -- the model's
    output (a tensor) or the graph's last node.  ``cell``: the output cell (default the
    center, ``size // 2`` per axis).

    ``inputs``: ``None`` -- ``n`` (default 64) standard-normal noise images of
    ``input_size``; a tensor ``(N, C, *spatial)``; or a folder of PNG/JPEG images (Pillow
    if installed, else matplotlib, which reads PNG), resized to ``input_size`` when given
    and, for 3 channels, standardized with the ImageNet mean and std.  ``n`` caps how many
    are used.

    ``weights``: ``"as-is"`` (the model's own; for an rfmap source the twin's positive
    weights), ``"random"`` (convolution and linear weights re-drawn for every batch,
    Kaiming-normal, biases 0, batch norms removed) or ``"uniform"`` (every weight
    ``1/fan_in``, biases 0, batch norms removed: the network of :func:`closed_form_sigma`
    when it is also linear).  The user's model is never modified: re-weighted models are
    copies, and the model runs in eval mode (its training flag is restored).

    ``aggregate``: ``"abs"`` (``|g|``), ``"square"`` (``g^2``) or ``"relu"`` (``max(g, 0)``),
    summed over channels; the map is the mean over inputs.  Each batch backpropagates one
    unit gradient at the cell for every image (``out[:, :, cell].sum()``), computing only
    the input gradient; the forward pass stops at ``layer``.  ``device``: where it runs.
    ``progress``: a rich progress bar on a terminal.  ``seed``: noise and weight draws.
    ``channels``: input channels (default: the first convolution's, 3 for sources);
    ``dtype``: of inputs and twin (default: the model's; float64 for sources).  ``trf``:
    look up the cell's theoretical RF and closed-form sigma (for a torch module this traces
    it once with rfmap's PyTorch front end; ``False`` skips that).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RFMapError("measuring an ERF needs PyTorch: pip install 'rfmap[torch]'") from None
    from rfmap.frontends import _is_torch_module

    _check_options(weights, aggregate, batch_size, channels)
    device = _torch_device(device)
    size = normalize_size(input_size)
    is_module = _is_torch_module(model)
    source = Inputs(inputs, n, size)
    if is_module:
        net = _module_network(model, layer, weights, device, channels, dtype, source)
    else:
        net = _twin_network(model, layer, weights, seed, channels, dtype, source)
    opts = {"seed": seed, "weights": weights, "aggregate": aggregate, "cell": cell, "batch_size": int(batch_size)}
    was_training = net.module.training
    net.module.eval()
    if net.own:
        net.module.to(device)
    try:
        acc, cell_index = _accumulate(net, source, opts, device, progress)
    finally:
        net.module.train(was_training)
    analysis = net.analysis
    if analysis is None and trf and is_module:
        analysis = _try_analyze(model, source.size)
    trf_box, closed = _theory(analysis if trf else None, net.layer, cell_index)
    return ERF(
        map=(acc / source.n).cpu().numpy(),
        layer=net.layer,
        cell=cell_index or (),
        n=source.n,
        aggregate=aggregate,
        weights=weights,
        input_size=tuple(source.size),
        trf_box=trf_box,
        closed_form=closed,
        model=net.name,
        notes=tuple(net.notes),
    )
