"""Named ERF protocols: which scalar is backpropagated, how the input gradient becomes a
map, and what is read from the map -- each as its authors define it.

A protocol has four parts.  ``target(out, cell)``: the scalar whose input gradient is taken,
from the layer's output ``out`` ``(N, C, *spatial)``, summed over the batch (images are
independent, so each image gets its own gradient).  ``contribution(g, aggregate)``: the
per-image map ``(N, *spatial)`` from the input gradient ``g``; the measured map
(:attr:`rfmap.erf.ERF.map`) is its mean over the inputs.  ``finish(map)``: the map the
authors analyze and draw.  ``metrics(map)``: the numbers they report, read from the
finished map.

* ``luo2016`` -- Luo, Li, Urtasun, Zemel, "Understanding the Effective Receptive Field in
  Deep Convolutional Neural Networks", NIPS 2016: gradient 1 at the cell (every channel),
  0 elsewhere; the input gradient aggregated per pixel (``|g|``, ``g^2`` or ``relu(g)``,
  our choice, ``aggregate=``) and summed over channels; mean over inputs.  No transform.
* ``replknet2022`` -- Ding, Zhang, Han, Ding, "Scaling Up Your Kernels to 31x31",
  CVPR 2022, repository DingXiaoH/RepLKNet-pytorch, ``erf/visualize_erf.py`` and
  ``erf/analyze_erf.py``: target ``relu(out[:, :, H // 2, W // 2]).sum()`` (the center
  cell by default); ``relu(g)`` summed over channels, mean over images; then
  ``log10(x + 1)`` and division by the max; metric: the high-contribution area ratio at
  ``t = 0.2, 0.3, 0.5, 0.99`` (:func:`rfmap.erf.stats.replknet_area_ratio`).  Their
  images: 50 ImageNet-val images resized to 1024x1024 (bicubic), ImageNet normalization;
  images read from a folder under this protocol are resized bicubically.
* ``openerf`` -- OpenERF (2026), repository kmbmjn/OpenERF, ``src/openerf/erf.py``,
  ``feature_ops.py`` and ``metrics.py``: target the center activation averaged over
  channels (``out[:, :, cell].mean(1)``, per image); the input gradient averaged over
  channels, then clamped at 0; summed over images and normalized to sum 1; metrics: the
  radial cumulative mass within 5, 10, 20, 30, 40, 60, 80 px of ``(H // 2, W // 2)`` and
  the center of mass.  (OpenERF fits its Gaussian by least squares with lmfit; rfmap's
  sigma is the moment-matched one of :func:`rfmap.erf.gaussian_fit`.)

Imports nothing heavy: the torch parts use tensor methods only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rfmap.erf.stats import radial_mass, replknet_area_ratio
from rfmap.errors import RFMapError

__all__ = ["AGGREGATES", "PROTOCOLS", "Protocol", "get_protocol"]

from rfmap.erf.names import AGGREGATES  # noqa: E402  (AGGREGATES re-exported)

REPLKNET_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
OPENERF_RADII = (5, 10, 20, 30, 40, 60, 80)


@dataclass(frozen=True)
class Protocol:
    """One way of measuring an ERF (see the module docstring).

    ``aggregate``: the protocol's own gradient aggregate (``None``: the caller's choice
    among :data:`AGGREGATES`); ``linear_target``: whether ``target`` is linear in the
    layer's output (then a linear network's map cannot depend on the inputs);
    ``resize``: how images read from a folder are resized.
    """

    name: str
    summary: str
    source: str
    target: Callable[[Any, tuple[int, ...]], Any]
    contribution: Callable[[Any, str], Any]
    finish: Callable[[np.ndarray], np.ndarray]
    metrics: Callable[[np.ndarray], dict]
    aggregate: str | None = None
    default_aggregate: str = "abs"
    linear_target: bool = True
    resize: str = "bilinear"

    def resolve_aggregate(self, aggregate: str | None) -> str:
        """The aggregate used: the protocol's own, or the caller's (checked)."""
        if self.aggregate is not None:
            if aggregate not in (None, self.aggregate):
                raise RFMapError(
                    f"protocol {self.name} fixes how the gradient is aggregated ({self.aggregate}); "
                    f"aggregate={aggregate!r} applies to luo2016 only"
                )
            return self.aggregate
        aggregate = self.default_aggregate if aggregate is None else aggregate
        if aggregate not in AGGREGATES:
            raise RFMapError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        return aggregate


def _at(out, cell: tuple[int, ...]):
    return out[(slice(None), slice(None)) + tuple(cell)]


def _luo_contribution(g, aggregate: str):
    per_pixel = {"abs": g.abs, "square": lambda: g * g, "relu": lambda: g.clamp(min=0)}[aggregate]()
    return per_pixel.sum(1)


def _replknet_finish(m: np.ndarray) -> np.ndarray:
    logged = np.log10(np.asarray(m, dtype=np.float64) + 1.0)
    top = logged.max()
    return logged / top if top > 0 else logged


def _replknet_metrics(finished: np.ndarray) -> dict:
    rows = []
    for t in REPLKNET_THRESHOLDS:
        found = replknet_area_ratio(finished, t) if finished.ndim == 2 else None
        rows.append({"t": t, "side": None if found is None else found[0], "area_ratio": None if found is None else found[1]})
    return {"area_ratio": rows}


def _openerf_finish(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    total = m.sum()
    return m / total if total > 0 else np.zeros_like(m)


def _openerf_metrics(finished: np.ndarray) -> dict:
    if not finished.sum() > 0:
        raise RFMapError("the ERF map is zero everywhere: the cell does not depend on the input")
    mass = radial_mass(finished, OPENERF_RADII)
    grids = np.indices(finished.shape, dtype=np.float64)
    com = [float((g * finished).sum() / finished.sum()) for g in grids]
    return {
        "radial_cumulative_mass": [{"radius": r, "mass": m} for r, m in zip(OPENERF_RADII, mass)],
        "center_of_mass": com,
        "center": [n // 2 for n in finished.shape],
    }


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "luo2016",
            "gradient 1 at the cell, the input gradient aggregated per pixel and summed over channels, "
            "mean over inputs",
            "Luo et al., NIPS 2016",
            target=lambda out, cell: _at(out, cell).sum(),
            contribution=_luo_contribution,
            finish=lambda m: np.asarray(m, dtype=np.float64),
            metrics=lambda m: {},
        ),
        Protocol(
            "replknet2022",
            "relu of the cell summed over channels; relu(g) summed over channels, mean over images; "
            "log10(x + 1) then divided by the max; area ratio at t = 20/30/50/99%",
            "Ding et al., CVPR 2022; DingXiaoH/RepLKNet-pytorch erf/visualize_erf.py, erf/analyze_erf.py",
            target=lambda out, cell: _at(out, cell).relu().sum(),
            contribution=lambda g, _agg: g.clamp(min=0).sum(1),
            finish=_replknet_finish,
            metrics=_replknet_metrics,
            aggregate="relu",
            linear_target=False,
            resize="bicubic",
        ),
        Protocol(
            "openerf",
            "the cell averaged over channels; the gradient averaged over channels, clamped at 0, "
            "normalized to sum 1; radial mass at 5..80 px",
            "OpenERF (2026); kmbmjn/OpenERF src/openerf/erf.py, feature_ops.py, metrics.py",
            target=lambda out, cell: _at(out, cell).mean(1).sum(),
            contribution=lambda g, _agg: g.mean(1).clamp(min=0),
            finish=_openerf_finish,
            metrics=_openerf_metrics,
            aggregate="relu of the channel mean",
        ),
    )
}


def get_protocol(name: str | Protocol) -> Protocol:
    """A protocol by name (``luo2016``, ``replknet2022``, ``openerf``) or itself."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise RFMapError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]
