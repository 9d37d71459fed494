"""Slow, obviously-correct loop versions of the ops, written from the published semantics.

Each follows the C++ loop it cites step by step, in scalar arithmetic of the op's compute
dtype (numpy scalars: float32 for 16-bit and 32-bit inputs, float64 for float64), so the
vectorized ops can be compared against them bit for bit where the arithmetic allows.  They
take the ``Tensor[K, 5]`` box form and return float64 numpy arrays.  :func:`random_rois`
draws boxes over the cases that matter.  For tests only.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import torch


def _quiet(fn):
    """Run ``fn`` with numpy's warnings about inf and NaN arithmetic off (the C loops don't warn)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return fn(*args, **kwargs)

    return run


def _scalar_type(input: torch.Tensor) -> type:
    return np.float64 if input.dtype == torch.float64 else np.float32


def _c_round(v) -> int:
    """C ``round()``: halves away from zero, exactly (through ``Fraction``)."""
    f = Fraction(float(v))
    n = math.floor(abs(f) + Fraction(1, 2))
    return n if f >= 0 else -n


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


FLT_MAX = float(np.finfo(np.float32).max)


def _greater(v, best) -> bool:
    """``v`` beats the running maximum ``best``: strictly greater, NaN above everything."""
    return bool(v > best) or (math.isnan(v) and not math.isnan(best))


@_quiet
def roi_pool_reference(input, rois, output_size, spatial_scale=1.0):
    """Fast R-CNN RoI max pooling: Caffe ``ROIPoolingLayer::Forward_cpu``, as kept by
    torchvision's ``roi_pool_forward_kernel_impl``, step by step: the running maximum starts
    at ``-FLT_MAX`` (0 for an empty bin) with argmax -1 and takes a strictly greater value,
    so NaN and values <= ``-FLT_MAX`` never win.  Returns ``(output, argmax)`` (argmax
    ``h * W + w``, -1 for none).
    """
    T = _scalar_type(input)
    x = input.detach().cpu().double().numpy()
    r = rois.detach().cpu().double().numpy()
    _, channels, height, width = x.shape
    ph_, pw_ = _pair(output_size)
    out = np.zeros((len(r), channels, ph_, pw_))
    argmax = np.full((len(r), channels, ph_, pw_), -1, dtype=np.int64)
    s = T(spatial_scale)
    for n, (b, x1, y1, x2, y2) in enumerate(r):
        xs, ys, xe, ye = (_c_round(T(v) * s) for v in (x1, y1, x2, y2))
        roi_w, roi_h = max(xe - xs + 1, 1), max(ye - ys + 1, 1)
        bin_h, bin_w = T(roi_h) / T(ph_), T(roi_w) / T(pw_)
        for ph in range(ph_):
            for pw in range(pw_):
                hs = min(max(math.floor(T(ph) * bin_h) + ys, 0), height)
                he = min(max(math.ceil(T(ph + 1) * bin_h) + ys, 0), height)
                ws = min(max(math.floor(T(pw) * bin_w) + xs, 0), width)
                we = min(max(math.ceil(T(pw + 1) * bin_w) + xs, 0), width)
                empty = he <= hs or we <= ws
                for c in range(channels):
                    best, where = (0.0 if empty else -FLT_MAX), -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = x[int(b), c, h, w]
                            if v > best:
                                best, where = v, h * width + w
                    out[n, c, ph, pw] = best
                    argmax[n, c, ph, pw] = where
    return out, argmax


def _bilinear_taps(y, x, height, width, T, outside=((0, 0, 0.0),) * 4):
    """torchvision ``pre_calc_for_bilinear_interpolate`` for one sample: ``[(row, col, w)]``,
    the four taps with their weights, zero weights included; a sample outside the map reads
    ``outside`` (the CPU roi_align kernel: pixel (0, 0) four times with weight 0)."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return [(r, c, T(w)) for r, c, w in outside]
    y, x = max(y, T(0)), max(x, T(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - T(y_low), x - T(x_low)
    hy, hx = T(1) - ly, T(1) - lx
    return [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx), (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]


@_quiet
def roi_align_reference(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign: torchvision ``roi_align_forward_kernel_impl`` (Caffe2 / detectron2 ROIAlign),
    every tap multiplied by its weight, as the C loop does (so non-finite inputs propagate
    the same way)."""
    T = _scalar_type(input)
    x = input.detach().cpu().double().numpy().astype(T)
    r = rois.detach().cpu().double().numpy()
    _, channels, height, width = x.shape
    ph_, pw_ = _pair(output_size)
    out = np.zeros((len(r), channels, ph_, pw_))
    s, offset = T(spatial_scale), T(0.5 if aligned else 0.0)
    for n, (b, x1, y1, x2, y2) in enumerate(r):
        start_w, start_h = T(x1) * s - offset, T(y1) * s - offset
        roi_w, roi_h = T(x2) * s - offset - start_w, T(y2) * s - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, T(1)), max(roi_h, T(1))
        bin_h, bin_w = roi_h / T(ph_), roi_w / T(pw_)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / T(ph_))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / T(pw_))
        count = T(max(grid_h * grid_w, 1))
        for ph in range(ph_):
            for pw in range(pw_):
                taps = []
                for iy in range(grid_h):
                    y = start_h + T(ph) * bin_h + T(iy + 0.5) * bin_h / T(grid_h)
                    for ix in range(grid_w):
                        xx = start_w + T(pw) * bin_w + T(ix + 0.5) * bin_w / T(grid_w)
                        taps.append(_bilinear_taps(y, xx, height, width, T))
                for c in range(channels):
                    total = T(0)
                    for sample in taps:
                        for row, col, w in sample:
                            total += w * x[int(b), c, row, col]
                    out[n, c, ph, pw] = total / count
    return out


@_quiet
def spp_reference(input, levels=(4, 2, 1), mode="max"):
    """Spatial pyramid pooling (He et al. 2014) with bin ``i`` of ``n`` on an axis of length
    ``a`` spanning ``[floor(i*a/n), ceil((i+1)*a/n))``; output ``(N, C * sum(n*n))``, each
    level flattened as ``(C, n, n)``.  Max: first maximum in row-major order, NaN above all."""
    T = _scalar_type(input)
    x = input.detach().cpu().double().numpy().astype(T)
    batch, channels, height, width = x.shape
    rows = []
    for b in range(batch):
        feats = []
        for n in levels:
            level = np.zeros((channels, n, n))
            for i in range(n):
                for j in range(n):
                    h0, h1 = i * height // n, -(-(i + 1) * height // n)
                    w0, w1 = j * width // n, -(-(j + 1) * width // n)
                    for c in range(channels):
                        window = [x[b, c, h, w] for h in range(h0, h1) for w in range(w0, w1)]
                        if mode == "max":
                            best = window[0]
                            for v in window[1:]:
                                best = v if _greater(v, best) else best
                            level[c, i, j] = best
                        else:
                            level[c, i, j] = sum(window, T(0)) / T(len(window))
            feats.append(level.ravel())
        rows.append(np.concatenate(feats))
    return np.stack(rows)


def random_rois(
    rng: np.random.Generator,
    count: int,
    batch: int,
    height: int,
    width: int,
    spatial_scale: float = 1.0,
    inverted: bool = True,
):
    """``Tensor[count, 5]`` float64 boxes, in image units, over the cases that matter: inside
    the map, partly and fully outside, zero-size, smaller than a cell, much larger than the
    map, corners on half cells (rounding ties for RoI pooling) and inverted (``x2 < x1`` or
    ``y2 < y1``, as proposal stages emit them; left out with ``inverted=False``)."""
    img_w, img_h = width / spatial_scale, height / spatial_scale
    kinds = rng.integers(0, 7 if inverted else 6, count)
    rows = []
    for kind in kinds:
        if kind == 0:  # inside
            x1, y1 = rng.uniform(0, img_w), rng.uniform(0, img_h)
            w, h = rng.uniform(0, img_w - x1), rng.uniform(0, img_h - y1)
        elif kind == 1:  # anywhere near the map, often partly outside, sometimes fully
            x1, y1 = rng.uniform(-0.6 * img_w, 1.4 * img_w), rng.uniform(-0.6 * img_h, 1.4 * img_h)
            w, h = rng.uniform(0, img_w), rng.uniform(0, img_h)
        elif kind == 2:  # zero-size
            x1, y1, w, h = rng.uniform(-1, img_w + 1), rng.uniform(-1, img_h + 1), 0.0, 0.0
        elif kind == 3:  # smaller than a cell
            x1, y1 = rng.uniform(0, img_w), rng.uniform(0, img_h)
            w, h = rng.uniform(0, 1 / spatial_scale, 2)
        elif kind == 4:  # much larger than the map
            x1, y1 = rng.uniform(-3 * img_w, 0), rng.uniform(-3 * img_h, 0)
            w, h = rng.uniform(img_w, 6 * img_w), rng.uniform(img_h, 6 * img_h)
        elif kind == 5:  # corners on half cells: x * spatial_scale = n + 0.5
            x1 = (rng.integers(-2, width + 2) + 0.5) / spatial_scale
            y1 = (rng.integers(-2, height + 2) + 0.5) / spatial_scale
            w, h = rng.integers(0, width + 1) / spatial_scale, rng.integers(0, height + 1) / spatial_scale
        else:  # inverted along one axis or both, by up to the map size
            x1, y1 = rng.uniform(-0.2 * img_w, 1.2 * img_w), rng.uniform(-0.2 * img_h, 1.2 * img_h)
            w, h = rng.uniform(-img_w, img_w), rng.uniform(-img_h, 0.2 * img_h)
        rows.append([rng.integers(0, batch), x1, y1, x1 + w, y1 + h])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)


@_quiet
def ps_roi_align_reference(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1):
    """torchvision ``ps_roi_align_forward_kernel_impl`` step by step: aligned sampling (-0.5),
    no size clamp, a sample outside the map adds 0 without reading, the sum divided by
    ``grid_h * grid_w`` unclamped (0 / 0 = NaN)."""
    T = _scalar_type(input)
    x = input.detach().cpu().double().numpy().astype(T)
    r = rois.detach().cpu().double().numpy()
    _, channels, height, width = x.shape
    ph_, pw_ = _pair(output_size)
    c_out_n = channels // (ph_ * pw_)
    out = np.zeros((len(r), c_out_n, ph_, pw_))
    s = T(spatial_scale)
    for n, (b, x1, y1, x2, y2) in enumerate(r):
        start_w, start_h = T(x1) * s - T(0.5), T(y1) * s - T(0.5)
        roi_w, roi_h = (T(x2) * s - T(0.5)) - start_w, (T(y2) * s - T(0.5)) - start_h
        bin_h, bin_w = roi_h / T(ph_), roi_w / T(pw_)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / T(ph_))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / T(pw_))
        count = grid_h * grid_w
        for c_out in range(c_out_n):
            for ph in range(ph_):
                for pw in range(pw_):
                    c_in = (c_out * ph_ + ph) * pw_ + pw
                    hstart, wstart = T(ph) * bin_h + start_h, T(pw) * bin_w + start_w
                    total = T(0)
                    for iy in range(grid_h):
                        y = hstart + T(iy + 0.5) * bin_h / T(grid_h)
                        for ix in range(grid_w):
                            xx = wstart + T(ix + 0.5) * bin_w / T(grid_w)
                            for row, col, w in _bilinear_taps(y, xx, height, width, T, outside=()):
                                total += w * x[int(b), c_in, row, col]
                    out[n, c_out, ph, pw] = float("nan") if count == 0 else total / T(count)
    return out


@_quiet
def ps_roi_pool_reference(input, rois, output_size, spatial_scale=1.0):
    """torchvision ``ps_roi_pool_forward_kernel_impl`` step by step: corners rounded (C
    ``round()``), ``roi = max(end - start, 1)``, bins ``[floor(p * bin), ceil((p + 1) * bin))``
    plus the start, clipped to ``[0, size - 1]``, the mean of the bin (0 if empty)."""
    T = _scalar_type(input)
    x = input.detach().cpu().double().numpy().astype(T)
    r = rois.detach().cpu().double().numpy()
    _, channels, height, width = x.shape
    ph_, pw_ = _pair(output_size)
    c_out_n = channels // (ph_ * pw_)
    out = np.zeros((len(r), c_out_n, ph_, pw_))
    s = T(spatial_scale)
    for n, (b, x1, y1, x2, y2) in enumerate(r):
        xs, ys, xe, ye = (_c_round(T(v) * s) for v in (x1, y1, x2, y2))
        bin_h, bin_w = T(max(ye - ys, 1)) / T(ph_), T(max(xe - xs, 1)) / T(pw_)
        for c_out in range(c_out_n):
            for ph in range(ph_):
                for pw in range(pw_):
                    hs = min(max(math.floor(T(ph) * bin_h) + ys, 0), height - 1)
                    he = min(max(math.ceil(T(ph + 1) * bin_h) + ys, 0), height - 1)
                    ws = min(max(math.floor(T(pw) * bin_w) + xs, 0), width - 1)
                    we = min(max(math.ceil(T(pw + 1) * bin_w) + xs, 0), width - 1)
                    if he <= hs or we <= ws:
                        continue
                    c_in = (c_out * ph_ + ph) * pw_ + pw
                    total = T(0)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            total += x[int(b), c_in, h, w]
                    out[n, c_out, ph, pw] = total / T((he - hs) * (we - ws))
    return out
