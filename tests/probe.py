"""Gradient probes: the ground truth for receptive fields.

The input pixels that influence a cell are the support of the input gradient of that
cell.  With a twin built by :func:`rfmap.erf.twin.to_torch` (positive weights, zero bias,
average instead of max pooling, float64) nothing cancels, so a pixel is in the support iff
some path connects it to the cell -- exactly what :meth:`rfmap.Analysis.support` claims.

Coordinates: pixel-index convention, axes in (H, W) order, boxes ``(y0, x0, y1, x1)``
inclusive -- as in rfmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Probe:
    """The gradient support of one cell: per-axis projections, the N-D mask and its box."""

    sets: tuple[np.ndarray, ...]  # per axis, sorted input indices with a non-zero gradient
    mask: np.ndarray  # N-D boolean mask over the input's spatial axes

    @property
    def box(self) -> tuple[int, ...] | None:
        """Bounding box of the support, ``None`` when the gradient is all zero."""
        if any(s.size == 0 for s in self.sets):
            return None
        return tuple(int(s[0]) for s in self.sets) + tuple(int(s[-1]) for s in self.sets)


def _output(model, x: torch.Tensor, layer):
    if hasattr(model, "node_output"):
        return model.node_output(x, layer)
    return model(x)[layer]


def gradient_supports(
    model, input_size: Sequence[int], layer, cells: Sequence[Sequence[int]], *, fill: str = "ones", channels: int | None = None
) -> list[Probe]:
    """Gradient supports of several cells of ``layer`` with one forward and one backward pass.

    The input is a batch with one copy per cell (ones, or positive random values with
    ``fill="positive"``), float64, requiring grad; batch element ``b`` sums the output of
    ``layer`` at ``cells[b]`` over channels, so ``x.grad[b]`` is that cell's input gradient
    (batch elements do not interact).  The gradient is summed (in absolute value) over
    input channels before taking its non-zero positions.
    """
    cells = [tuple(int(v) for v in c) for c in cells]
    sizes = tuple(int(v) for v in input_size)
    c = channels if channels is not None else getattr(model, "channels", 1)
    dtype = getattr(model, "dtype", torch.float64)
    shape = (len(cells), c) + sizes
    if fill == "ones":
        x = torch.ones(shape, dtype=dtype)
    else:
        x = 0.5 + torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x.requires_grad_(True)
    out = _output(model, x, layer)
    batch = torch.arange(len(cells))
    index = (batch, slice(None)) + tuple(torch.tensor([cell[a] for cell in cells]) for a in range(len(sizes)))
    out[index].sum().backward()
    grad = x.grad.abs().sum(dim=1).detach().numpy()
    probes = []
    for b in range(len(cells)):
        mask = grad[b] != 0
        sets = tuple(
            np.flatnonzero(mask.any(axis=tuple(o for o in range(len(sizes)) if o != a))) for a in range(len(sizes))
        )
        probes.append(Probe(sets, mask))
    return probes


def gradient_support(model, input_size: Sequence[int], layer, cell: Sequence[int], **kw) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Per-axis sorted index arrays and the N-D non-zero mask of the input gradient of one cell."""
    probe = gradient_supports(model, input_size, layer, [cell], **kw)[0]
    return probe.sets, probe.mask
