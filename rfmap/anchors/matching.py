"""How many anchors a ground-truth box matches: the closed form and dense sampling.

Boxes here are ``(h, w)`` sizes, lattices ``(step_y, step_x)``; positions are continuous
(pixel ``i`` covers ``[i, i + 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rfmap.core.box import box_iou
from rfmap.core.budget import MAX_TAPS


def expected_matches(gt: Sequence[float], box: Sequence[float], step: Sequence[float], t: float) -> float:
    """Expected number of anchors of one shape with IoU >= ``t`` with a ground-truth box.

    ``gt`` and ``box``: ``(h, w)``; ``step``: the lattice step ``(step_y, step_x)``.  The
    box center is uniform over a lattice period and the lattice unbounded, so the count is
    ``area{(dy, dx): IoU >= t} / (step_y step_x)``.  The intersection is a product of
    per-axis overlaps; along x, ``ov(dx) = min(m, P/2 - |dx|)^+`` with ``m = min(g_w, a_w)``
    and ``P = g_w + a_w``: a plateau of length ``|g_w - a_w|`` and two ramps.  IoU >= t iff
    the intersection reaches ``T = t (A_g + A_a) / (1 + t)``; the set of ``dy`` with
    ``ov_y >= v`` has length ``P_y - 2 v`` (for ``0 < v <= m_y``), and integrating over the
    distribution of ``ov_x`` gives
    ``|g_w - a_w| L_y(T / m_x) + 2 [P_y (m_x - u0) - 2 T ln(m_x / u0)]``, ``u0 = T / m_y``.
    """
    gh, gw = (float(v) for v in gt)
    ah, aw = (float(v) for v in box)
    sy, sx = (float(v) for v in step)
    t = float(t)
    T = t * (gh * gw + ah * aw) / (1 + t)
    mx, my = min(gw, aw), min(gh, ah)
    py = gh + ah
    if T > mx * my * (1 + 1e-12):
        return 0.0

    def length_y(v: float) -> float:
        return py - 2 * v if 0 < v <= my * (1 + 1e-15) else 0.0

    area = abs(gw - aw) * length_y(T / mx)
    u0 = T / my
    if u0 < mx:
        area += 2 * (py * (mx - u0) - 2 * T * math.log(mx / u0))
    return max(area, 0.0) / (sy * sx)


def sampled_matches(gt, box, step, offset, sizes, image, ts, samples: int = 16, allowance=None) -> list[float]:
    """Dense-sampling counterpart of :func:`expected_matches` on the level's real anchor lattice.

    Ground-truth centers lie on a ``samples x samples`` grid over one step near the image
    center; only the anchors within reach of them are compared.  One count per threshold.
    ``allowance``: a :class:`rfmap.core.budget.Allowance` charged with the comparisons, in
    chunks of at most ``MAX_TAPS`` (memory stays bounded).
    """
    gh, gw = gt
    ah, aw = box
    best = min(gh, ah) * min(gw, aw) / max(gh * gw, ah * aw)  # the IoU of concentric boxes
    if best < min(ts) - 1e-12:
        return [0.0 for _ in ts]
    base = [math.floor(image[a] / 2 / step[a]) * step[a] for a in range(2)]
    reach = [(gh + ah) / 2 + step[0], (gw + aw) / 2 + step[1]]
    spans = []
    for a in range(2):  # the anchor indices within reach, one more on each side for rounding
        mid, far = base[a] + step[a] / 2, reach[a] + step[a]
        first, last = (mid - far) / step[a] - offset, (mid + far) / step[a] - offset
        lo = max(0, math.floor(first) - 1) if math.isfinite(first) else 0
        hi = min(int(sizes[a]) - 1, math.ceil(last) + 1) if math.isfinite(last) else int(sizes[a]) - 1
        spans.append((lo, hi))
    cells = [max(hi - lo + 1, 0) for lo, hi in spans]
    if allowance is not None:
        allowance.spend(sum(cells) + math.prod(cells) * samples * samples)
    if 0 in cells:
        return [0.0 for _ in ts]
    centers = []
    for a, (lo, hi) in enumerate(spans):
        c = (np.arange(lo, hi + 1) + offset) * step[a]
        centers.append(c[np.abs(c - base[a] - step[a] / 2) <= reach[a] + step[a]])
    cy, cx = np.meshgrid(centers[0], centers[1], indexing="ij")
    cy, cx = cy.ravel(), cx.ravel()
    anchors = np.stack([cy - ah / 2, cx - aw / 2, cy + ah / 2, cx + aw / 2], axis=1)
    u = (np.arange(samples) + 0.5) / samples
    gy, gx = np.meshgrid(base[0] + u * step[0], base[1] + u * step[1], indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    boxes = np.stack([gy - gh / 2, gx - gw / 2, gy + gh / 2, gx + gw / 2], axis=1)
    counts = np.zeros((len(ts), boxes.shape[0]))
    step_rows = max(1, MAX_TAPS // max(anchors.shape[0], 1))
    for k in range(0, boxes.shape[0], step_rows):  # rows of ground truths, bounded memory
        iou = box_iou(boxes[k : k + step_rows, None], anchors[None, :])
        for j, t in enumerate(ts):
            counts[j, k : k + step_rows] = (iou >= t - 1e-12).sum(axis=1)
    return [float(c.mean()) for c in counts]
