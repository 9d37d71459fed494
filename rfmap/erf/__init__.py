"""Effective receptive fields (Luo, Li, Urtasun, Zemel, NIPS 2016), measured and predicted.

The measurement (:func:`erf`): backpropagate a scalar read at one output cell of a layer to
the input, turn the input gradient into a per-pixel map and average it over many inputs
(random noise, a tensor, or a folder of images) and, with ``weights="random"``, over weight
draws.  The scalar and the map are a named protocol's: ``luo2016`` (gradient 1 at the cell;
``|g|``, ``g**2`` or ``relu(g)`` summed over channels), ``replknet2022`` or ``openerf``
(:mod:`~rfmap.erf.protocols`, each with its source).  The network is the user's PyTorch
module with its own weights (a module, ``"pkg.module:factory"``, ``"torchvision:NAME"``) or
rfmap's linear twin of any other source; an ops census says whether it is linear, and so
whether the inputs can change the map at all.  The result, an immutable :class:`ERF`,
carries the map and the statistics read from it:

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

Modules: :mod:`~rfmap.erf.stats` (statistics of a map), :mod:`~rfmap.erf.closed_form`,
:mod:`~rfmap.erf.result` (the immutable :class:`ERF`), :mod:`~rfmap.erf.protocols`,
:mod:`~rfmap.erf.inputs` (noise, a tensor or images), :mod:`~rfmap.erf.weights`,
:mod:`~rfmap.erf.network` (module or twin), :mod:`~rfmap.erf.targets` (where a layer's
output is taken), :mod:`~rfmap.erf.linearity` (the ops census), :mod:`~rfmap.erf.measure`
(the measurement) and :mod:`~rfmap.erf.twin` (PyTorch twins of rfmap graphs).  Rendering:
:mod:`rfmap.render.erf`.  Importing this package imports numpy only; torch is imported
when :func:`erf` runs.
"""

from __future__ import annotations

import importlib
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lazy names below, as type checkers see them
    from rfmap.erf.closed_form import closed_form_moments as closed_form_moments
    from rfmap.erf.closed_form import closed_form_sigma as closed_form_sigma
    from rfmap.erf.inputs import IMAGE_SUFFIXES as IMAGE_SUFFIXES
    from rfmap.erf.measure import erf as erf
    from rfmap.erf.names import AGGREGATES as AGGREGATES
    from rfmap.erf.names import WEIGHTS as WEIGHTS
    from rfmap.erf.protocols import PROTOCOLS as PROTOCOLS
    from rfmap.erf.protocols import Protocol as Protocol
    from rfmap.erf.result import ERF as ERF
    from rfmap.erf.stats import NORMALIZE as NORMALIZE
    from rfmap.erf.stats import THRESHOLDS as THRESHOLDS
    from rfmap.erf.stats import area_ratio as area_ratio
    from rfmap.erf.stats import gaussian_fit as gaussian_fit
    from rfmap.erf.stats import square_side as square_side

#: the public names, each loaded on first use (``import rfmap.erf`` imports no numpy)
_LAZY = {
    "closed_form_moments": "rfmap.erf.closed_form",
    "closed_form_sigma": "rfmap.erf.closed_form",
    "IMAGE_SUFFIXES": "rfmap.erf.inputs",
    "erf": "rfmap.erf.measure",
    "PROTOCOLS": "rfmap.erf.protocols",
    "Protocol": "rfmap.erf.protocols",
    "ERF": "rfmap.erf.result",
    "NORMALIZE": "rfmap.erf.stats",
    "THRESHOLDS": "rfmap.erf.stats",
    "area_ratio": "rfmap.erf.stats",
    "gaussian_fit": "rfmap.erf.stats",
    "square_side": "rfmap.erf.stats",
    "AGGREGATES": "rfmap.erf.names",
    "WEIGHTS": "rfmap.erf.names",
}

__all__ = sorted(_LAZY)


class _CallableModule(_ModuleType):
    """``rfmap.erf`` is this module; calling it measures, as :func:`erf` does (the name
    ``rfmap.erf(model, ...)`` predates the package).  Its public names load on first use."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from rfmap.erf.measure import erf

        return erf(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
            setattr(self, name, value)
            return value
        raise AttributeError(f"module 'rfmap.erf' has no attribute {name!r}")


__import__("sys").modules[__name__].__class__ = _CallableModule
