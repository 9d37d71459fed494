"""The measured effective receptive field: an immutable :class:`ERF` (numpy only).

Rendering lives in :mod:`rfmap.render.erf`; the measurement in :mod:`rfmap.erf.measure`.
Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order,
boxes inclusive ``(y0, x0, y1, x1)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from rfmap.erf.stats import THRESHOLDS, area_ratio, gaussian_fit, square_side
from rfmap.errors import RFMapError

__all__ = ["ERF"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ERF:
    """A measured effective receptive field (build it with :func:`rfmap.erf.erf`).

    ``map``: read-only array of the input's spatial shape, the protocol's per-image map
    averaged over the ``n`` inputs (non-negative; for ``luo2016`` the aggregated input
    gradient of the cell summed over channels); :attr:`protocol_map` is the map as the
    protocol's authors analyze it and :meth:`protocol_metrics` what they report.
    ``trf_box``: the theoretical RF box of the same cell (inclusive, unclipped), ``None``
    when the model could not be analyzed; ``rf_center``: its center.  ``closed_form``: the
    sigma that :func:`rfmap.erf.closed_form_sigma` predicts for the network's geometry,
    where it has one.  Statistics are per axis, in pixels, pixel-index coordinates.

    What was measured: ``protocol`` (:mod:`rfmap.erf.protocols`), ``network``
    (``"module"``: the user's PyTorch module; ``"twin"``: rfmap's linear twin of the
    source), ``weights``, ``linearity`` of the network up to the layer (``"linear"``,
    ``"nonlinear"`` or ``"unknown"``, with the ``nonlinear_ops`` found;
    :mod:`rfmap.erf.linearity`) and ``inputs`` (what was averaged over, in words).
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
    protocol: str = "luo2016"
    network: str = ""
    linearity: str = "unknown"
    nonlinear_ops: tuple[str, ...] = field(default=())
    inputs: str = ""

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

    # -- what the inputs can change

    @property
    def inputs_matter(self) -> bool | None:
        """Whether other inputs (or more of them) can change the map: ``False`` when the
        network is linear, the protocol's target is linear in the layer's output and the
        weights are fixed (then the input gradient is the same for every input); ``True``
        when the network is nonlinear or the target is not linear; ``None`` when unknown.
        With ``weights="random"`` a linear network's map still varies with the weight draws."""
        from rfmap.erf.protocols import get_protocol

        if not get_protocol(self.protocol).linear_target or self.linearity == "nonlinear":
            return True
        return False if self.linearity == "linear" else None

    # -- the protocol's own view

    @property
    def protocol_map(self) -> np.ndarray:
        """The map as the protocol's authors analyze and draw it (``replknet2022``:
        ``log10(x + 1)`` divided by the max; ``openerf``: normalized to sum 1)."""
        from rfmap.erf.protocols import get_protocol

        return get_protocol(self.protocol).finish(self.map)

    def protocol_metrics(self) -> dict:
        """The numbers the protocol's authors report (``{}`` for ``luo2016``, whose numbers
        are :meth:`statistics`)."""
        from rfmap.erf.protocols import get_protocol

        return get_protocol(self.protocol).metrics(self.protocol_map)

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
            "protocol": self.protocol,
            "network": self.network,
            "linearity": self.linearity,
            "nonlinear_ops": list(self.nonlinear_ops),
            "inputs_matter": self.inputs_matter,
            "inputs": self.inputs,
            "notes": list(self.notes),
            **self.statistics(),
            "protocol_metrics": self.protocol_metrics(),
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
            f"n={self.n}, protocol={self.protocol}, aggregate={self.aggregate}, weights={self.weights}, "
            f"{self.network}, {self.linearity}>"
        )
