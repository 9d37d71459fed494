"""A PyTorch twin of an rfmap :class:`~rfmap.core.graph.Graph`: the same geometry, in real ops.

:func:`to_torch` builds a ``torch.nn.Module`` whose nodes are the graph's nodes, each made of
the PyTorch op with the same geometry, as the op registry's ``realize`` facet says
(:mod:`rfmap.rules.torch_realize` for the built-in layers).  Its uses:

* **effective receptive fields** (Luo et al. 2016) of a network given as layers, a spec
  file or the zoo: the magnitude of the input gradient of a cell in a linear copy;
* a **consistency check** of rfmap's geometry against PyTorch's own output sizes (every
  node is checked).  The ground truth for receptive fields in the tests is the gradient
  of models written directly in PyTorch, not of this twin.

Convolutions have no bias.  Weights (``weights``): ``"positive"`` draws each weight
uniformly in ``[0.5, 1.5] / fan_in`` (no cancellation: every tap influences the output),
``"uniform"`` sets every weight to ``1 / fan_in``, ``"random"`` keeps PyTorch's default
initialization; all are reproducible from ``seed``.  ``fan_in`` is ``C_in * prod(kernel)``.

Note on ``mul``: with zero bias a factor that sees only padding is exactly 0, and then the
product hides the other factor's pixels from the gradient.  rfmap's support of a merge is
the union of its inputs' supports, so the twin multiplies ``(a + mul_offset) *
(b + mul_offset)``, the offset playing the part of a bias; ``mul_offset=0`` gives the plain
product.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order.
This module imports torch; ``import rfmap`` does not import it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rfmap.core.analysis import Analysis
from rfmap.core.graph import Graph
from rfmap.core.layers import Layer
from rfmap.core.registry import registry
from rfmap.errors import RFMapError
from rfmap.rules.torch_realize import resolve_padding

__all__ = ["TorchTwin", "layer_module", "resolve_padding", "to_torch"]

WEIGHTS = ("positive", "uniform", "random")
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# -- the twin --------------------------------------------------------------------------


class TorchTwin(nn.Module):
    """A PyTorch model with the geometry of an rfmap graph (built by :func:`to_torch`).

    ``forward(x)`` returns ``{node name: output}`` for every node (the input included);
    :meth:`node_output` computes only what one node needs.  ``x`` is ``(batch, channels,
    *spatial)``.  ``expected_sizes`` holds the spatial sizes rfmap computed for
    ``input_size``; with ``check_sizes`` (the default) a node whose PyTorch output has
    another size raises ``RuntimeError``.
    """

    def __init__(self, graph: Graph, analysis: Analysis, nodes: list[nn.Module], channels: int, dtype):
        super().__init__()
        self.graph = graph
        self.analysis = analysis
        self.input_size = analysis.input_size
        self.channels = channels
        self.dtype = dtype
        self.names = tuple(node.name for node in graph.nodes)
        self.inputs = tuple(node.inputs for node in graph.nodes)
        self.node_modules = nn.ModuleList(nodes)  # one per node after the input
        self.expected_sizes = {row.name: tuple(row.output_size) for row in analysis.layers}
        self.check_sizes = True
        #: channels of every node's output, by node name (set by :func:`to_torch`)
        self.channels_of: dict[str, int] = {}

    def make_input(self, batch: int = 1, fill: str = "ones", seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
        """An input of the built size: ``"ones"`` or ``"positive"`` (uniform in [0.5, 1.5])."""
        shape = (batch, self.channels) + tuple(self.input_size)
        if fill == "ones":
            x = torch.ones(shape, dtype=self.dtype)
        elif fill == "positive":
            gen = torch.Generator().manual_seed(seed)
            x = 0.5 + torch.rand(shape, generator=gen, dtype=self.dtype)
        else:
            raise ValueError(f"fill must be 'ones' or 'positive', got {fill!r}")
        return x.requires_grad_(requires_grad)

    def _run(self, x: torch.Tensor, upto: int | None = None) -> dict[str, torch.Tensor]:
        last = len(self.names) - 1 if upto is None else upto
        needed = self._ancestors(last)
        check = self.check_sizes and tuple(x.shape[2:]) == tuple(self.input_size)
        out: dict[str, torch.Tensor] = {self.names[0]: x}
        for k in range(1, last + 1):
            if k not in needed:
                continue
            name = self.names[k]
            y = self.node_modules[k - 1](*(out[p] for p in self.inputs[k]))
            if check and tuple(y.shape[2:]) != self.expected_sizes[name]:
                raise RuntimeError(
                    f"layer '{name}': PyTorch output size {list(y.shape[2:])} differs from rfmap's "
                    f"{list(self.expected_sizes[name])} (input size {list(self.input_size)})"
                )
            out[name] = y
        return out

    def _ancestors(self, k: int) -> set[int]:
        index = {n: i for i, n in enumerate(self.names)}
        seen, stack = {k}, [k]
        while stack:
            for p in self.inputs[stack.pop()]:
                i = index[p]
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(x)

    def node_output(self, x: torch.Tensor, name: str | int) -> torch.Tensor:
        """The output of one node (by name or index), computing only its ancestors."""
        k = self.analysis._resolve(name)
        return self._run(x, upto=k)[self.names[k]]


def layer_module(
    layer: Layer, ndim: int, c_ins: Sequence[int], channels: int = 2, *, max_as_avg: bool = True, mul_offset: float = 1.0
) -> tuple[nn.Module, int]:
    """The PyTorch module of one layer and its output channel count, as the op registry's
    ``realize`` facet builds it.

    ``c_ins``: channels of each input (one, or several for a merge); ``channels``: output
    channels of convolutions.  The module's ``forward(*inputs)`` resolves padding for the
    actual input shape; weights are PyTorch's defaults (see :func:`to_torch`).  No rfmap
    analysis runs here, so it also builds layers rfmap rejects (to see what PyTorch does).
    """
    op = registry().for_layer(layer)
    realize = None if op is None else op.realize
    if isinstance(realize, str):
        module_name, _, attr = realize.partition(":")
        realize = getattr(importlib.import_module(module_name), attr)
    if realize is None:
        raise RFMapError(f"no PyTorch twin for layer type {type(layer).__name__} (op {layer.op!r})")
    return realize(layer, ndim, list(c_ins), channels, max_as_avg=max_as_avg, mul_offset=mul_offset)


def _init_weights(model: nn.Module, weights: str, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, _CONV_TYPES):
                continue
            w = m.weight
            if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                fan_in = w.shape[0] * math.prod(w.shape[2:])
            else:
                fan_in = w.shape[1] * math.prod(w.shape[2:])
            if weights == "positive":
                w.copy_((0.5 + torch.rand(w.shape, generator=gen, dtype=torch.float64)).to(w.dtype) / fan_in)
            elif weights == "uniform":
                w.fill_(1.0 / fan_in)


def to_torch(
    graph: Graph,
    input_size: int | Sequence[int] | None = None,
    *,
    channels: int = 2,
    weights: str = "positive",
    seed: int = 0,
    max_as_avg: bool = True,
    mul_offset: float = 1.0,
    dtype: Any = None,
) -> TorchTwin:
    """A PyTorch twin of ``graph`` (see the module docstring for how each op is realized).

    ``input_size``: spatial size, an int or ``(H, W)`` (1 to 3 axes); defaults to the
    graph's.  The graph is analyzed first (:class:`rfmap.Analysis`), so a geometry rfmap
    rejects raises :class:`~rfmap.errors.RFMapError` here.  ``channels``: channels of the
    input and of every convolution.  ``weights``: ``"positive"``, ``"uniform"`` or
    ``"random"``; ``seed`` makes them reproducible.  ``max_as_avg``: max pooling becomes
    average pooling, so that the input gradient reaches every tap of the window (the
    support of a max is data dependent).  ``mul_offset``: ``mul`` merges multiply
    ``(a + mul_offset) * (b + mul_offset)`` (see the module docstring).  ``dtype``: default
    ``torch.float64``.
    """
    if weights not in WEIGHTS:
        raise RFMapError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if input_size is None:
        input_size = graph.input_size
    analysis = Analysis(graph, input_size)
    ndim = analysis.ndim
    dtype = torch.float64 if dtype is None else dtype
    c_of: dict[str, int] = {graph.nodes[0].name: int(channels)}
    nodes: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for node in graph.nodes[1:]:
            assert node.layer is not None  # only the input has none (Graph checks it)
            module, c_out = layer_module(
                node.layer, ndim, [c_of[p] for p in node.inputs], int(channels), max_as_avg=max_as_avg, mul_offset=mul_offset
            )
            nodes.append(module)
            c_of[node.name] = c_out
        twin = TorchTwin(graph, analysis, nodes, int(channels), dtype).to(dtype)
    _init_weights(twin, weights, torch.Generator().manual_seed(seed))
    twin.channels_of = c_of
    return twin
