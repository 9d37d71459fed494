"""Measuring an effective receptive field: backpropagate a scalar read at one output cell
to the input, turn the input gradient into a per-pixel map, average over inputs.

Which scalar and which map is the protocol's (:mod:`rfmap.erf.protocols`; ``luo2016`` by
default); which network runs is :mod:`rfmap.erf.network`'s (the user's module, or a linear
twin); where the layer's output is taken, :mod:`rfmap.erf.targets`; whether the network is
linear, :mod:`rfmap.erf.linearity`.  Coordinates: pixel-index convention, (H, W) order.
Imports torch when :func:`erf` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

from rfmap.core.plan import normalize_size
from rfmap.erf.closed_form import closed_form_sigma
from rfmap.erf.inputs import Inputs
from rfmap.erf.network import Network, prepare
from rfmap.erf.protocols import AGGREGATES, Protocol, get_protocol
from rfmap.erf.result import ERF
from rfmap.erf.targets import Target, module_target, twin_target
from rfmap.erf.weights import WEIGHTS, redraw
from rfmap.errors import RFMapError
from rfmap.progress import ProgressBar

__all__ = ["AGGREGATES", "erf"]


def _check_options(weights, batch_size, channels) -> None:
    if weights not in WEIGHTS:
        raise RFMapError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
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


@contextmanager
def _eval_on(net: Network, device):
    """The network in eval mode (on ``device`` when it is ours); the training flag restored."""
    was_training = net.module.training
    net.module.eval()
    if net.own:
        net.module.to(device)
    try:
        yield
    finally:
        net.module.train(was_training)


def _probe(net: Network, size: Sequence[int], device, seed: int):
    """One standard-normal input, to list a module's outputs and to take the ops census."""
    import torch

    gen = torch.Generator().manual_seed(seed + 2)
    x = torch.randn((1, net.channels) + tuple(size), generator=gen, dtype=torch.float32)
    return x.to(device=device, dtype=net.dtype)


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


def _accumulate(net: Network, target: Target, proto: Protocol, inputs: Inputs, opts: dict, device, progress: bool):
    """The protocol's per-image maps summed over every input, and the cell."""
    import torch

    acc, cell_index = None, None
    gen = torch.Generator().manual_seed(opts["seed"] + 1)
    what = target.name or "output"
    batches = inputs.batches(net.channels, net.dtype, opts["batch_size"], opts["seed"], proto.resize)
    with ProgressBar(inputs.n, f"ERF {net.name}:{what}", progress) as bar:
        for x in batches:
            if opts["weights"] == "random":
                redraw(net.module, gen)
            x = x.to(device).requires_grad_(True)
            out = target(x)
            if out is None:
                raise RFMapError(f"layer '{what}' of {net.name} returned no tensor")
            if cell_index is None:
                cell_index = _cell(out, opts["cell"], target.name, len(inputs.known_size()))
            scalar = proto.target(out, cell_index)
            if not scalar.requires_grad:
                raise RFMapError(f"layer '{what}' of {net.name} does not depend on the input")
            (g,) = torch.autograd.grad(scalar, x)
            part = proto.contribution(g.detach(), opts["aggregate"]).sum(0).to(torch.float64)
            acc = part if acc is None else acc + part
            bar.advance(x.shape[0])
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


def _measure(net: Network, layer, proto: Protocol, inputs: Inputs, opts: dict, device, progress: bool):
    """Resolve the layer, take the ops census, run every input: ``(target, linearity, sum, cell)``."""
    from rfmap.erf.linearity import linearity

    with _eval_on(net, device):
        probe = _probe(net, inputs.known_size(), device, opts["seed"])
        target = twin_target(net.twin, layer) if net.twin is not None else module_target(net.module, layer, probe)
        lin = linearity(target, probe)
        acc, cell_index = _accumulate(net, target, proto, inputs, opts, device, progress)
    return target, lin, acc, cell_index


def erf(
    model: Any,
    layer: str | None = None,
    input_size: int | Sequence[int] | None = None,
    inputs: Any = None,
    n: int | None = None,
    weights: str = "as-is",
    aggregate: str | None = None,
    cell: Sequence[int] | None = None,
    batch_size: int = 16,
    device: Any = "cpu",
    progress: bool = True,
    *,
    protocol: str | Protocol = "luo2016",
    twin: bool | None = None,
    seed: int = 0,
    channels: int | None = None,
    dtype: Any = None,
    trf: bool = True,
) -> ERF:
    """Measure the effective receptive field of one cell of ``layer``.

    ``model``: a ``torch.nn.Module`` or a ``"pkg.module:factory"`` / ``"torchvision:NAME"``
    string -- run as it is, with its own weights -- or any other rfmap source (zoo name,
    layer list, spec or ONNX file, :class:`~rfmap.Graph`), measured on its linear twin
    (:mod:`rfmap.erf.network`; ``twin=True`` asks for the twin of a module too).  ``layer``:
    any layer or named output (:mod:`rfmap.erf.targets`); ``None`` -- the model's output or
    the graph's first output.  ``cell``: the output cell (default the center,
    ``size // 2`` per axis).

    ``protocol``: ``"luo2016"`` (default), ``"replknet2022"`` or ``"openerf"``
    (:mod:`rfmap.erf.protocols`).  ``aggregate``: for ``luo2016``, ``"abs"`` (default),
    ``"square"`` or ``"relu"`` of the gradient, summed over channels; the other protocols
    fix their own.  ``weights``: ``"as-is"``, ``"random"`` (re-drawn per batch) or
    ``"uniform"`` (:mod:`rfmap.erf.weights`); the user's module is never modified.

    ``inputs``: ``None`` -- ``n`` (default 64) standard-normal noise images of
    ``input_size``; a tensor ``(N, C, *spatial)``; or a folder of PNG/JPEG images, resized
    to ``input_size`` when given (:mod:`rfmap.erf.inputs`).  ``n`` caps how many are used.
    When the network is linear and the protocol's target too, the map is the same for
    every input: :attr:`ERF.inputs_matter` says so.

    ``device``: where it runs; ``progress``: a progress bar on a terminal; ``seed``: noise
    and weight draws; ``channels``: input channels (default: the first convolution's, 3 for
    a twin); ``dtype``: of the inputs (default: the module's; float64 for a twin).
    ``trf``: look up the cell's theoretical RF and closed-form sigma (for a module this
    traces it once with rfmap's PyTorch front end; ``False`` skips that).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RFMapError("measuring an ERF needs PyTorch: pip install 'rfmap[torch]'") from None
    proto = get_protocol(protocol)
    aggregate = proto.resolve_aggregate(aggregate)
    _check_options(weights, batch_size, channels)
    device = _torch_device(device)
    source = Inputs(inputs, n, None if input_size is None else normalize_size(input_size))
    net = prepare(model, twin=twin, weights=weights, seed=seed, channels=channels, dtype=dtype, device=device, inputs=source)
    opts = {"seed": seed, "weights": weights, "aggregate": aggregate, "cell": cell, "batch_size": int(batch_size)}
    target, lin, acc, cell_index = _measure(net, layer, proto, source, opts, device, progress)
    analysis = net.twin.analysis if net.twin is not None else (_try_analyze(net.source, source.size) if trf else None)
    trf_box, closed = _theory(analysis if trf else None, target.name, cell_index)
    return ERF(
        map=(acc / source.n).cpu().numpy(),
        layer=target.name,
        cell=cell_index or (),
        n=source.n,
        aggregate=aggregate,
        weights=weights,
        input_size=source.known_size(),
        trf_box=trf_box,
        closed_form=closed,
        model=net.name,
        notes=tuple(net.notes),
        protocol=proto.name,
        network=net.kind,
        linearity=lin.verdict,
        nonlinear_ops=lin.ops,
        inputs=source.describe(),
    )
