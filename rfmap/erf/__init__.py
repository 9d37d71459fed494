"""Effective receptive fields (Luo, Li, Urtasun, Zemel, NIPS 2016), measured and predicted.

The measurement (:func:`erf`): set the gradient of one output cell of a layer to 1 and every
other output to 0, backpropagate to the input, aggregate the input gradient per pixel
(``|g|``, ``g**2`` or ``relu(g)``, summed over channels) and average it over many inputs
(random noise, a tensor, or a folder of images) and, with ``weights="random"``, over
weight draws.  The result, an immutable :class:`ERF`, carries the map and the statistics
read from it:

* a per-axis Gaussian fit: ``mean`` (the center of mass) and ``sigma`` (the weighted
  standard deviation of the map normalized to sum 1);
* :meth:`ERF.square_side`: the side of the smallest centered square holding a fraction
  ``t`` of the map's mass, and :meth:`ERF.area_ratio`, RepLKNet's "high-contribution area
  ratio" (Ding et al., CVPR 2022): that square's area over the image area;
* ``span`` (``4 sigma``, the +-2 sigma width that holds 95.45% of a Gaussian per axis) and
  ``trf_ratio`` (``span / TRF`` per axis) against the theoretical receptive field
  (``trf_box``) of the same cell, from :func:`rfmap.analyze`.

The prediction (:func:`closed_form_sigma`): in a linear network whose convolutions and
poolings average their window uniformly (weights ``1/fan_in``), the unit-gradient map of a
cell is the distribution of a sum of independent uniform steps, one per layer: layer ``l``
with kernel ``k_l``, dilation ``d_l`` and input jump ``J_l`` (the effective stride of its
input) adds ``(d_l J_l)^2 (k_l^2 - 1) / 12`` to the variance per axis, so
``sigma^2 = sum_l (d_l J_l)^2 (k_l^2 - 1) / 12`` -- exact away from the borders, strides
and dilations included.  ``n`` stacked 3x3 stride-1 convolutions give
``sigma = sqrt(2n/3)``: sigma grows as ``sqrt(n)`` while the TRF grows as ``n``.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W)
order, boxes inclusive ``(y0, x0, y1, x1)``, as everywhere in rfmap.

This module imports numpy only; torch is imported when :func:`erf` runs.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from rfmap.errors import RFMapError
from rfmap.progress import ProgressBar

__all__ = [
    "AGGREGATES",
    "ERF",
    "THRESHOLDS",
    "WEIGHTS",
    "area_ratio",
    "closed_form_sigma",
    "erf",
    "gaussian_fit",
    "square_side",
]

#: How the input gradient ``g`` is turned into a per-pixel contribution (then summed over channels).
AGGREGATES = ("abs", "square", "relu")
#: Weights of the measured network: the model's own, re-drawn per batch, or all equal.
WEIGHTS = ("as-is", "random", "uniform")
#: The mass fractions reported by :meth:`ERF.statistics` (0.9545 = +-2 sigma of a Gaussian).
THRESHOLDS = (0.2, 0.3, 0.5, 0.9, 0.9545, 0.99)
#: Image files read from a folder of inputs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# -- statistics on a map (numpy only) --------------------------------------------------------


def _as_mass(erf_map: np.ndarray) -> np.ndarray:
    m = np.asarray(erf_map, dtype=np.float64)
    if m.ndim < 1:
        raise RFMapError("an ERF map needs at least one axis")
    if not np.all(np.isfinite(m)):
        raise RFMapError("the ERF map has values that are not finite")
    if np.any(m < 0):
        raise RFMapError("the ERF map has negative values (aggregate with abs, square or relu first)")
    total = m.sum()
    if total <= 0:
        raise RFMapError("the ERF map is zero everywhere: the cell does not depend on the input")
    return m / total


def gaussian_fit(erf_map: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, sigma)`` per axis of a non-negative map normalized to sum 1.

    The mean is the center of mass and sigma the weighted standard deviation of each
    axis' marginal: the moment-matched Gaussian (pixel-index coordinates).
    """
    p = _as_mass(erf_map)
    means, sigmas = [], []
    for axis in range(p.ndim):
        marginal = p.sum(axis=tuple(a for a in range(p.ndim) if a != axis))
        idx = np.arange(marginal.size, dtype=np.float64)
        mu = float(np.dot(marginal, idx))
        var = float(np.dot(marginal, (idx - mu) ** 2))
        means.append(mu)
        sigmas.append(math.sqrt(max(var, 0.0)))
    return tuple(means), tuple(sigmas)


def _summed_area(p: np.ndarray) -> np.ndarray:
    s = np.zeros(tuple(n + 1 for n in p.shape), dtype=np.float64)
    s[tuple(slice(1, None) for _ in p.shape)] = p
    for axis in range(p.ndim):
        np.cumsum(s, axis=axis, out=s)
    return s


def _centered_sums(p: np.ndarray, center2: Sequence[int], sides: np.ndarray) -> np.ndarray:
    """Mass of the hypercube of side ``s`` (whole pixels) around ``center2 / 2``, for each ``s``.

    ``center2`` holds twice the center per axis (the center rounded to half pixels).  The
    cube covers pixels ``lo .. lo + s - 1`` with ``lo = floor((center2 - s + 1) / 2)``:
    exactly centered when ``s`` has the parity the center needs (odd around a pixel, even
    around a pixel corner), half a pixel low otherwise.  Parts outside the map add 0.
    """
    sat = _summed_area(p)
    total = np.zeros(sides.shape, dtype=np.float64)
    bounds = []
    for n, c2 in zip(p.shape, center2):
        lo = np.floor((c2 - sides + 1) / 2).astype(np.int64)
        bounds.append((np.clip(lo, 0, n), np.clip(lo + sides, 0, n)))
    d = p.ndim
    for corner in range(1 << d):
        index, sign = [], 1
        for a in range(d):
            if corner >> a & 1:
                index.append(bounds[a][0])
                sign = -sign
            else:
                index.append(bounds[a][1])
        total += sign * sat[tuple(index)]
    return total


def _center2(p: np.ndarray, center: Sequence[float] | None) -> tuple[int, ...]:
    if center is None:
        center, _ = gaussian_fit(p)
    center = tuple(float(c) for c in center)
    if len(center) != p.ndim:
        raise RFMapError(f"center {list(center)} has {len(center)} coordinates, the map has {p.ndim} axes")
    return tuple(int(round(2 * c)) for c in center)


def square_side(erf_map: np.ndarray, t: float = 0.5, center: Sequence[float] | None = None) -> int:
    """Side (pixels) of the smallest square centered at ``center`` holding a fraction ``t`` of the mass.

    ``center``: pixel-index coordinates per axis, rounded to the nearest half pixel;
    ``None`` -- the map's center of mass.  When every axis' center is on a pixel (or every
    one on a pixel corner) only exactly centered squares are tried (odd sides, or even
    sides), as RepLKNet does; otherwise every side, the square sitting half a pixel low on
    the axes whose parity does not fit.  Parts of the square outside the map hold nothing.
    In 1-D and 3-D the "square" is a segment and a cube.
    """
    if not 0 < float(t) <= 1:
        raise RFMapError(f"the mass fraction t must be in (0, 1], got {t!r}")
    p = _as_mass(erf_map)
    c2 = _center2(p, center)
    parities = {c % 2 for c in c2}
    limit = 2 * max(max(p.shape) + abs(c) // 2 + 2 for c in c2) + 1
    sides = np.arange(1, limit + 1, dtype=np.int64)
    if len(parities) == 1:
        want = 1 if parities == {0} else 0  # integer center -> odd sides; half-integer -> even
        sides = sides[sides % 2 == want]
    sums = _centered_sums(p, c2, sides)
    hit = np.flatnonzero(sums >= float(t) * (1 - 1e-12))
    if hit.size == 0:  # pragma: no cover - the largest square covers the whole map
        return int(sides[-1])
    return int(sides[hit[0]])


NORMALIZE = ("max", "sum", "none")


def area_ratio(
    erf_map: np.ndarray,
    t: float = 0.5,
    *,
    transform: str | None = None,
    normalize: str | None = "max",
    center: Sequence[float] | None = None,
) -> float:
    """RepLKNet's high-contribution area ratio: ``square_side(t)**2 / (H * W)``.

    ``transform=None`` (the default) uses the map's own mass: the ratio does not change
    when the map is multiplied by a constant (more inputs, another loss scale, a model with
    larger activations), so maps of different runs compare.  ``transform="log"`` applies
    RepLKNet's ``log10(x + 1)`` first (Ding et al. 2022, ``analyze_erf.py``), which
    compresses large values and so widens the area -- but ``log10(x + 1)`` depends on the
    map's units.  ``normalize`` fixes them before the transform: ``"max"`` (the default)
    divides by the maximum, so values lie in [0, 1] and the ratio is scale-invariant;
    ``"sum"`` divides by the sum (values ~1/(H W): the transform is then nearly linear and
    the ratio close to the untransformed one); ``"none"`` keeps the raw map, which
    reproduces RepLKNet's numbers only for a map accumulated like theirs (mean over images
    of ``relu(g)`` summed over channels) and at their scale.
    """
    p = _as_mass(erf_map)
    if center is None:
        center, _ = gaussian_fit(p)
    if transform is not None:
        if transform not in ("log", "log10"):
            raise RFMapError(f"transform must be None or 'log', got {transform!r}")
        raw = np.asarray(erf_map, dtype=np.float64)
        mode = "none" if normalize is None else normalize
        if mode not in NORMALIZE:
            raise RFMapError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if mode == "max":
            raw = raw / raw.max()
        elif mode == "sum":
            raw = raw / raw.sum()
        p = _as_mass(np.log10(raw + 1.0))
    side = square_side(p, t, center)
    return float(side ** p.ndim / p.size)


# -- the closed form -------------------------------------------------------------------------

# A node's state per axis: polynomials in its cell index (see rfmap.rules.erf_moments); None:
# the node depends on a global op.  Each op's contribution is the registry's ``erf`` facet.

def _evaluate(poly, o: int) -> Fraction:
    return poly[0] + poly[1] * o + poly[2] * o * o


def closed_form_moments(
    source: Any, layer: str | int | None = None, cell: Sequence[int] | None = None, input_size: Any = None
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    """Exact ``(mean, variance)`` per axis of the unit-gradient map of a cell (see :func:`closed_form_sigma`)."""
    from rfmap.core.analysis import Analysis

    if isinstance(source, Analysis):
        analysis = source
    else:
        from rfmap import analyze

        analysis = analyze(source, input_size)
    graph = analysis.graph
    names = [row.name for row in analysis.layers]
    target = names.index(analysis.layer(graph.output.name if layer is None else layer).name)
    row = analysis.layers[target]
    if cell is None:
        cell = tuple(n // 2 for n in row.output_size)
    cell = tuple(int(c) for c in cell)
    if len(cell) != len(row.output_size) or not all(0 <= c < n for c, n in zip(cell, row.output_size)):
        raise RFMapError(f"cell {list(cell)} is outside layer '{row.name}' of size {list(row.output_size)}")
    # the ancestors of the target, in topological order
    index = {name: i for i, name in enumerate(names)}
    needed = {target}
    for k in range(target, 0, -1):
        if k in needed:
            needed.update(index[p] for p in graph.nodes[k].inputs)
    ndim = analysis.ndim
    one, zero = Fraction(1), Fraction(0)
    states: dict[int, Any] = {
        0: tuple(((zero, one, zero), (zero, zero, one)) for _ in range(ndim))
    }
    from rfmap.core.registry import registry

    for k in sorted(needed - {0}):
        node = graph.nodes[k]
        parents = [states[index[p]] for p in node.inputs]
        if node.layer.merge:
            # an equal-weight mixture of the paths (the twin's 1x1 projections keep each
            # path's mass at 1); paths through a global op only add a flat background
            local = [s for s in parents if s is not None]
            if not local:
                states[k] = None
                continue
            states[k] = tuple(
                (
                    tuple(sum(s[a][0][i] for s in local) / len(local) for i in range(3)),
                    tuple(sum(s[a][1][i] for s in local) / len(local) for i in range(3)),
                )
                for a in range(ndim)
            )  # type: ignore[assignment]
            continue
        parent = parents[0]
        if parent is None or getattr(node.layer, "global_context", False):
            states[k] = None
            continue
        in_sizes = analysis.layers[index[node.inputs[0]]].output_size
        maps = node.layer.axis_maps(in_sizes)
        op = registry().for_layer(node.layer)
        contribution = None if op is None else op.erf
        out = []
        for a, m in enumerate(maps):
            moved = None if contribution is None else contribution(m, parent[a])
            if moved is None:
                raise RFMapError(
                    f"layer '{node.name}' ({node.op}): no closed-form ERF for a {type(m).__name__.lower()} "
                    "axis map (only convolutions, poolings, padding, cropping, pointwise ops and merges); "
                    "measure it with rfmap.erf(..., weights='uniform')"
                )
            out.append(moved)
        states[k] = tuple(out)
    final = states[target]
    if final is None:
        raise RFMapError(f"layer '{row.name}' ({row.op}) depends on a global op: its ERF is the whole input")
    means = tuple(_evaluate(final[a][0], cell[a]) for a in range(ndim))
    variances = tuple(_evaluate(final[a][1], cell[a]) - means[a] ** 2 for a in range(ndim))
    return means, variances


def closed_form_sigma(
    source: Any, layer: str | int | None = None, cell: Sequence[int] | None = None, input_size: Any = None
) -> tuple[float, ...]:
    """Predicted ERF sigma per axis: ``sigma^2 = sum_l (d_l J_l)^2 (k_l^2 - 1) / 12``.

    ``source``: an :class:`~rfmap.Analysis` or anything :func:`rfmap.analyze` takes (then
    ``input_size`` as there); ``layer``: default the network's output; ``cell``: default
    the center cell ``n // 2`` per axis.

    Exact for the unit-gradient map of a linear network whose convolutions and poolings
    weight their ``k`` taps equally (``weights="uniform"`` in :func:`erf`, max pooling as
    average pooling), away from the borders (the input taken as unbounded).  ``J_l`` is the
    jump of layer ``l``'s input; strides enter through it, dilations through ``d_l``.
    Merges (a residual ``add``, a ``concat``) are equal-weight mixtures of their paths, so
    the result also holds for multi-path networks -- the variance of a mixture, including
    the spread of its paths' centers when they are misaligned; paths through a global op
    (squeeze-excitation) are left out.  Upsampling, transposed convolutions, pixel
    shuffles and adaptive pooling have no closed form here: they raise
    :class:`~rfmap.errors.RFMapError`.
    """
    _, variances = closed_form_moments(source, layer, cell, input_size)
    return tuple(math.sqrt(float(v)) for v in variances)


# -- the result ------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ERF:
    """A measured effective receptive field (build it with :func:`erf`).

    ``map``: read-only array of the input's spatial shape, the aggregated input gradient of
    the cell averaged over the ``n`` inputs (non-negative).  ``trf_box``: the theoretical
    RF box of the same cell (inclusive, unclipped), ``None`` when the model could not be
    analyzed; ``rf_center``: its center.  ``closed_form``: the sigma that
    :func:`closed_form_sigma` predicts for the network's geometry, where it has one.
    Statistics are per axis, in pixels, pixel-index coordinates.
    """

    map: np.ndarray
    layer: str | None
    cell: tuple[int, ...]
    n: int
    aggregate: str
    weights: str
    input_size: tuple[int, ...]
    trf_box: tuple[int, ...] | None = None
    closed_form: tuple[float, ...] | None = None
    model: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        object.__setattr__(self, "map", _readonly(self.map))

    # -- the Gaussian fit

    @cached_property
    def _fit(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return gaussian_fit(self.map)

    @property
    def mean(self) -> tuple[float, ...]:
        """Center of mass per axis (the Gaussian fit's mean)."""
        return self._fit[0]

    @property
    def sigma(self) -> tuple[float, ...]:
        """Weighted standard deviation per axis of the map normalized to sum 1."""
        return self._fit[1]

    @property
    def span(self) -> tuple[float, ...]:
        """``4 sigma`` per axis: the +-2 sigma width, 95.45% of a Gaussian's mass."""
        return tuple(4 * s for s in self.sigma)

    # -- the theoretical RF

    @property
    def rf_center(self) -> tuple[float, ...] | None:
        """Center of the cell's theoretical RF box, or ``None``."""
        if self.trf_box is None:
            return None
        d = len(self.trf_box) // 2
        return tuple((self.trf_box[a] + self.trf_box[a + d]) / 2 for a in range(d))

    @property
    def trf_size(self) -> tuple[int, ...] | None:
        if self.trf_box is None:
            return None
        d = len(self.trf_box) // 2
        return tuple(self.trf_box[a + d] - self.trf_box[a] + 1 for a in range(d))

    @property
    def trf_ratio(self) -> tuple[float, ...] | None:
        """ERF-to-TRF ratio per axis: ``span / TRF size`` (shrinks as ``1/sqrt(depth)``)."""
        size = self.trf_size
        return None if size is None else tuple(s / r for s, r in zip(self.span, size))

    # -- squares holding a fraction of the mass

    def _center(self, center: Any) -> tuple[float, ...]:
        if center is None or center == "auto":
            return self.rf_center if self.rf_center is not None else self.mean
        if center == "mass":
            return self.mean
        if center == "rf":
            if self.rf_center is None:
                raise RFMapError("this ERF has no theoretical RF (the model could not be analyzed): use center='mass'")
            return self.rf_center
        return tuple(float(c) for c in center)

    def square_side(self, t: float = 0.5, center: Any = "auto") -> int:
        """Side of the smallest centered square holding a fraction ``t`` of the mass.

        ``center``: ``"auto"`` (the cell's RF center when known, else the center of mass),
        ``"rf"``, ``"mass"`` or explicit coordinates.  The RF center is where the network
        looks; the center of mass moves toward the image when the cell is near a border.
        See :func:`square_side`.
        """
        return square_side(self.map, t, self._center(center))

    def area_ratio(
        self, t: float = 0.5, *, transform: str | None = None, normalize: str | None = "max", center: Any = "auto"
    ) -> float:
        """RepLKNet's high-contribution area ratio (see :func:`area_ratio` for the options)."""
        return area_ratio(self.map, t, transform=transform, normalize=normalize, center=self._center(center))

    # -- serialization

    def statistics(self, thresholds: Sequence[float] = THRESHOLDS) -> dict:
        """The numbers ``rfmap erf`` writes: fit, squares and area ratios per threshold."""
        out: dict[str, Any] = {
            "mean": list(self.mean),
            "sigma": list(self.sigma),
            "span": list(self.span),
            "trf_box": None if self.trf_box is None else list(self.trf_box),
            "trf_size": None if self.trf_size is None else list(self.trf_size),
            "rf_center": None if self.rf_center is None else list(self.rf_center),
            "trf_ratio": None if self.trf_ratio is None else list(self.trf_ratio),
            "closed_form_sigma": None if self.closed_form is None else list(self.closed_form),
            "square_center": list(self._center("auto")),
            "squares": [],
        }
        for t in thresholds:
            side = self.square_side(t)
            out["squares"].append(
                {
                    "t": t,
                    "side": side,
                    "area_ratio": self.area_ratio(t),
                    "area_ratio_log": self.area_ratio(t, transform="log"),
                }
            )
        return out

    def to_dict(self, include_map: bool = False) -> dict:
        out = {
            "model": self.model,
            "layer": self.layer,
            "cell": list(self.cell),
            "input_size": list(self.input_size),
            "n": self.n,
            "aggregate": self.aggregate,
            "weights": self.weights,
            "notes": list(self.notes),
            **self.statistics(),
        }
        if include_map:
            out["map"] = self.map.tolist()
        return out

    def to_json(self, indent: int | None = 2, include_map: bool = False) -> str:
        return json.dumps(self.to_dict(include_map), indent=indent)

    def __repr__(self) -> str:
        sig = ", ".join(f"{s:.2f}" for s in self.sigma)
        trf = "" if self.trf_size is None else f", trf {list(self.trf_size)}"
        return (
            f"<ERF of {self.model or 'model'} layer {self.layer!r} cell {list(self.cell)}: sigma ({sig}){trf}, "
            f"n={self.n}, aggregate={self.aggregate}, weights={self.weights}>"
        )


# -- the measurement -------------------------------------------------------------------------


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


def _normalize_size(size: Any, what: str = "input_size") -> tuple[int, ...] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    try:
        out = tuple(int(v) for v in size)
    except (TypeError, ValueError):
        raise RFMapError(f"{what} must be an int or a tuple of ints, got {size!r}") from None
    if not out or any(v < 1 for v in out):
        raise RFMapError(f"{what} must hold positive sizes, got {size!r}")
    return out


def _conv_types():
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _norm_types():
    from torch import nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _fan_in(m) -> int:
    from torch import nn

    w = m.weight
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return int(w.shape[0] // max(m.groups, 1) * math.prod(w.shape[2:]))
    return int(w.shape[1] * math.prod(w.shape[2:]))


def _strip_norms(model) -> None:
    """Replace batch norms by identities (in place, on a copy of the user's model)."""
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _norm_types()):
                setattr(parent, name, nn.Identity())


def _set_uniform(model) -> None:
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _conv_types()):
                m.weight.fill_(1.0 / _fan_in(m))
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def _redraw(model, gen) -> None:
    """Kaiming-normal weights (fan-in, gain sqrt(2)), zero biases, drawn from ``gen`` (CPU)."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _conv_types()):
                std = math.sqrt(2.0 / _fan_in(m))
                w = torch.randn(m.weight.shape, generator=gen, dtype=torch.float64) * std
                m.weight.copy_(w.to(device=m.weight.device, dtype=m.weight.dtype))
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def _infer_channels(model) -> int:
    for m in model.modules():
        if isinstance(m, _conv_types()):
            return int(m.in_channels if hasattr(m, "in_channels") else m.in_features)
    return 3


def _load_image(path: Path):
    """An image as a float array (H, W, C) in [0, 1], read by :func:`rfmap.viz._data.load_image`."""
    from rfmap.viz._data import load_image  # numpy only; imported here so ``import rfmap`` skips rfmap.viz

    raw = load_image(path)
    arr = np.asarray(raw, dtype=np.float64)
    if np.issubdtype(raw.dtype, np.integer) or arr.max(initial=0.0) > 1.0:
        arr = arr / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr[:, :, :3]


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise RFMapError(f"'{folder}': no {', '.join(IMAGE_SUFFIXES)} images in the folder")
    return files


class _Inputs:
    """Batches of inputs: noise, slices of a tensor, or images read lazily from a folder."""

    def __init__(self, inputs, n, channels, size, batch_size, seed, dtype):
        import torch

        self.channels, self.size, self.batch_size, self.dtype = channels, size, batch_size, dtype
        self.seed = seed
        self.kind = "noise"
        self.files: list[Path] = []
        self.tensor = None
        if inputs is None:
            if size is None:
                raise RFMapError("an input_size is needed to measure an ERF on noise inputs")
            self.n = 64 if n is None else int(n)
        elif isinstance(inputs, torch.Tensor):
            t = inputs.detach()
            nd = len(size) if size else 2
            if t.dim() == nd + 1:
                t = t.unsqueeze(0)
            if t.dim() != nd + 2:
                raise RFMapError(f"inputs must have shape (N, C, *spatial) with {nd} spatial axes, got {list(inputs.shape)}")
            self.kind, self.tensor = "tensor", t
            self.n = t.shape[0] if n is None else min(int(n), t.shape[0])
            self.size = tuple(int(v) for v in t.shape[2:])
            self.channels = int(t.shape[1])
        elif isinstance(inputs, (str, os.PathLike)):
            folder = Path(inputs)
            if not folder.is_dir():
                raise RFMapError(f"'{folder}': inputs must be a tensor or a folder of images")
            self.kind, self.files = "images", _image_files(folder)
            self.n = len(self.files) if n is None else min(int(n), len(self.files))
            if self.size is None:
                self.size = tuple(_load_image(self.files[0]).shape[:2])
        else:
            raise RFMapError(f"inputs must be None (noise), a tensor or a folder of images, got {type(inputs).__name__}")
        if self.n < 1:
            raise RFMapError(f"n must be at least 1, got {self.n}")

    def _image_batch(self, files):
        import torch
        import torch.nn.functional as F

        out = []
        for path in files:
            arr = _load_image(path)
            x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float64)
            if x.shape[0] != self.channels:  # grey <-> colour: average, then repeat
                x = x.mean(0, keepdim=True).expand(self.channels, -1, -1)
            if tuple(x.shape[1:]) != tuple(self.size):
                x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0]
            if self.channels == 3:
                mean = torch.tensor(_IMAGENET_MEAN, dtype=x.dtype)[:, None, None]
                std = torch.tensor(_IMAGENET_STD, dtype=x.dtype)[:, None, None]
                x = (x - mean) / std
            out.append(x)
        return torch.stack(out).to(self.dtype)

    def batches(self) -> Iterator:
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        for start in range(0, self.n, self.batch_size):
            b = min(self.batch_size, self.n - start)
            if self.kind == "noise":
                yield torch.randn((b, self.channels) + tuple(self.size), generator=gen, dtype=torch.float32).to(self.dtype)
            elif self.kind == "tensor":
                yield self.tensor[start : start + b].to(self.dtype)
            else:
                yield self._image_batch(self.files[start : start + b])


def _aggregate(g, how: str):
    import torch

    if how == "abs":
        g = g.abs()
    elif how == "square":
        g = g * g
    else:
        g = torch.relu(g)
    return g.sum(dim=(0, 1))


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
        import torch
    except ImportError:
        raise RFMapError("measuring an ERF needs PyTorch: pip install 'rfmap[torch]'") from None

    if weights not in WEIGHTS:
        raise RFMapError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if aggregate not in AGGREGATES:
        raise RFMapError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if int(batch_size) < 1:
        raise RFMapError(f"batch_size must be at least 1, got {batch_size}")
    if channels is not None and int(channels) < 1:
        raise RFMapError(f"channels must be at least 1, got {channels}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise RFMapError(f"'{device}' is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RFMapError(f"device '{device}': CUDA is not available on this machine")
    size = _normalize_size(input_size)
    notes: list[str] = []
    graph = None
    twin = None
    analysis = None
    from rfmap.frontends import _is_torch_module

    if _is_torch_module(model):
        module = model
        model_name = type(model).__name__
        own = False
        if weights != "as-is" or not _same_device(_device_of(model), device):
            module, own = copy.deepcopy(model), True
        if weights != "as-is":
            _strip_norms(module)
            if weights == "uniform":
                _set_uniform(module)
        if channels is None:
            channels = _infer_channels(module)
        if dtype is None:
            dtype = _dtype_of(module) or torch.float32
    else:
        from rfmap.frontends import load
        from rfmap.erf.twin import to_torch

        graph = load(model)
        model_name = graph.name
        size = size or graph.input_size
        if isinstance(inputs, torch.Tensor):  # the twin is built for the tensor's size and channels
            nd = len(size) if size else 2
            if inputs.dim() in (nd + 1, nd + 2):
                size = tuple(int(v) for v in inputs.shape[-nd:])
                channels = int(inputs.shape[-nd - 1])
        if size is None:
            raise RFMapError(f"'{model_name}' has no default input size: give input_size")
        channels = 3 if channels is None else int(channels)
        dtype = torch.float64 if dtype is None else dtype
        twin_weights = {"as-is": "positive", "uniform": "uniform", "random": "random"}[weights]
        twin = to_torch(graph, size, channels=channels, weights=twin_weights, seed=seed, dtype=dtype)
        twin.check_sizes = False
        analysis = twin.analysis
        module, own = twin, True
        if layer is None:
            layer = graph.output.name
        notes.append("rfmap twin: linear, max pooling as average pooling")

    target = _resolve_module(module, layer, twin)
    source = _Inputs(inputs, n, int(channels), size, int(batch_size), seed, dtype)
    size = tuple(source.size)
    was_training = module.training
    module.eval()
    if own:
        module.to(device)
    captured: list = []

    def hook(_mod, _inp, out):
        captured.append(_first_tensor(out))
        raise _Stop

    handle = target.register_forward_hook(hook) if target is not None else None
    acc = None
    cell_index: tuple[int, ...] | None = None
    gen = torch.Generator().manual_seed(seed + 1)
    try:
        with ProgressBar(source.n, f"ERF {model_name}:{layer or 'output'}", progress) as bar:
            for x in source.batches():
                if weights == "random":
                    _redraw(module, gen)
                x = x.to(device).requires_grad_(True)
                captured.clear()
                try:
                    out = module(x)
                except _Stop:
                    out = captured[0]
                else:
                    if target is not None:
                        raise RFMapError(f"layer '{layer}' was not called in the forward pass of {model_name}")
                    out = _first_tensor(out) if not isinstance(out, torch.Tensor) else out
                if out is None:
                    raise RFMapError(f"layer '{layer or 'output'}' of {model_name} returned no tensor")
                if cell_index is None:
                    cell_index = _cell(out, cell, layer, len(size))
                picked = out[(slice(None), slice(None)) + cell_index].sum()
                if not picked.requires_grad:
                    raise RFMapError(f"layer '{layer or 'output'}' of {model_name} does not depend on the input")
                (g,) = torch.autograd.grad(picked, x)
                part = _aggregate(g.detach(), aggregate).to(torch.float64)
                acc = part if acc is None else acc + part
                bar.advance(x.shape[0])
    finally:
        if handle is not None:
            handle.remove()
        module.train(was_training)
    erf_map = (acc / source.n).cpu().numpy()

    trf_box = closed = None
    if analysis is None and trf:
        analysis = _try_analyze(model, size)
    if trf and analysis is not None and cell_index is not None:
        name = layer if layer is not None else analysis.graph.output.name
        try:
            trf_box = tuple(int(v) for v in analysis.rf_box(name, cell_index))
        except Exception:  # noqa: BLE001 - a module name the analysis does not know
            trf_box = None
        if trf_box is not None:
            try:
                closed = closed_form_sigma(analysis, name, cell_index)
            except RFMapError:
                closed = None
    return ERF(
        map=erf_map,
        layer=layer,
        cell=cell_index or (),
        n=source.n,
        aggregate=aggregate,
        weights=weights,
        input_size=size,
        trf_box=trf_box,
        closed_form=closed,
        model=model_name,
        notes=tuple(notes),
    )


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


def _resolve_module(module, layer, twin):
    """The submodule whose output is the layer (``None``: the model's own output)."""
    if layer is None:
        return None
    if twin is not None:
        names = twin.names
        if layer not in names:
            close = difflib.get_close_matches(str(layer), names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise RFMapError(f"no layer named '{layer}' in '{twin.graph.name}'{hint}")
        k = names.index(layer)
        if k == 0:
            raise RFMapError(f"layer '{layer}' is the input: pick a layer after it")
        return twin.node_modules[k - 1]
    modules = dict(module.named_modules())
    if layer not in modules or layer == "":
        close = difflib.get_close_matches(str(layer), [m for m in modules if m], n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise RFMapError(f"no layer named '{layer}' in {type(module).__name__}{hint}")
    return modules[layer]


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


class _CallableModule(__import__("types").ModuleType):
    """``rfmap.erf`` is this module; calling it measures, as :func:`erf` does (the name
    ``rfmap.erf(model, ...)`` predates the package)."""

    def __call__(self, *args: Any, **kwargs: Any) -> "ERF":
        return erf(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
