"""Statistics of an ERF map (numpy only): the moment-matched Gaussian, centered squares
holding a fraction of the mass, and RepLKNet's high-contribution area ratio.

A map is any non-negative array (1-D to 3-D); its "mass" is the map normalized to sum 1.
Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W) order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rfmap.errors import RFMapError

__all__ = [
    "NORMALIZE",
    "THRESHOLDS",
    "area_ratio",
    "gaussian_fit",
    "radial_mass",
    "replknet_area_ratio",
    "square_side",
]

#: The mass fractions reported by :meth:`rfmap.erf.ERF.statistics` (0.9545 = +-2 sigma of a Gaussian).
THRESHOLDS = (0.2, 0.3, 0.5, 0.9, 0.9545, 0.99)
#: How :func:`area_ratio` fixes the map's units before ``log10(x + 1)``.
NORMALIZE = ("max", "sum", "none")


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


def replknet_area_ratio(data: np.ndarray, t: float) -> tuple[int, float] | None:
    """RepLKNet's high-contribution area ratio of a 2-D map, as ``analyze_erf.py`` reads it.

    Ding et al. (CVPR 2022), repository DingXiaoH/RepLKNet-pytorch, ``erf/analyze_erf.py``
    (``get_rectangle``): around the pixel ``(H // 2, W // 2)``, the squares of side
    ``2 i + 1`` for ``i = 1 .. H // 2 - 1`` (side 1 is never tried); the first whose sum
    exceeds ``t`` of the map's total (strictly) gives ``(side, side**2 / (H W))``; ``None``
    when none does.  ``data`` is the map as the protocol leaves it (``log10(x + 1)``, then
    divided by its max).  Squares are clipped at the map's border (equal to RepLKNet's
    slicing for square maps; for ``W < H`` their negative slice starts would wrap around).
    """
    p = np.asarray(data, dtype=np.float64)
    if p.ndim != 2:
        raise RFMapError(f"the RepLKNet area ratio needs a 2-D map, got shape {list(p.shape)}")
    total = float(p.sum())
    if not total > 0:
        raise RFMapError("the ERF map is zero everywhere: the cell does not depend on the input")
    h, w = p.shape
    sides = np.arange(3, 2 * (h // 2) - 1 + 1, 2, dtype=np.int64)  # 2i + 1 for i = 1 .. h//2 - 1
    if sides.size == 0:
        return None
    sums = _centered_sums(p, (2 * (h // 2), 2 * (w // 2)), sides)
    hit = np.flatnonzero(sums / total > float(t))
    if hit.size == 0:
        return None
    side = int(sides[hit[0]])
    return side, side / h * side / w


def radial_mass(erf_map: np.ndarray, radii: Sequence[float], center: Sequence[float] | None = None) -> tuple[float, ...]:
    """The fraction of the mass within Euclidean distance ``r`` (inclusive) of ``center``,
    for each ``r``; ``center`` defaults to the pixel ``(H // 2, W // 2)`` (OpenERF's)."""
    p = _as_mass(erf_map)
    if center is None:
        center = tuple(n // 2 for n in p.shape)
    if len(center) != p.ndim:
        raise RFMapError(f"center {list(center)} has {len(center)} coordinates, the map has {p.ndim} axes")
    grids = np.indices(p.shape, dtype=np.float64)
    dist = np.sqrt(sum((g - float(c)) ** 2 for g, c in zip(grids, center)))
    return tuple(float(p[dist <= float(r)].sum()) for r in radii)
