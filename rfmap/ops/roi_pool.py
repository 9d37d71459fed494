"""RoI max pooling (Girshick, "Fast R-CNN", 2015) with Caffe's and torchvision's semantics.

Coordinates.  Pixel-index convention: feature cell ``i`` is the point ``i``.  Box corners,
in input-image units, are scaled by ``spatial_scale`` and rounded to cells, and the end
cell is included, so a box covers cells ``xs..xe`` and ``ys..ye``.

Formulas (Caffe ``roi_pooling_layer.cpp``; ``torchvision/csrc/ops/cpu/roi_pool_kernel.cpp``
keeps them), output ``PH x PW`` on an ``H x W`` map, per axis (x shown)::

    xs, xe = round(x1 * spatial_scale), round(x2 * spatial_scale)   C round(): half away from zero
    roi_w = max(xe - xs + 1, 1)
    bin_w = roi_w / PW                                              in the input dtype
    bin pw spans [floor(pw * bin_w) + xs, ceil((pw + 1) * bin_w) + xs), both ends clipped to [0, W]

A bin's value is its maximum, the first one in Caffe's scan order (rows ``h`` outer, columns
``w`` inner) if several are equal; an empty bin gives 0.  The backward pass adds each
output gradient to the input at that first maximum (nothing for an empty bin).
``torch.round`` would be wrong here: it rounds halves to even (8/16 = 0.5 -> 0, not 1).

Two deliberate departures from the C loops, which start from ``-FLT_MAX`` and keep a
strictly greater value: a NaN in a bin makes the bin NaN (the first NaN is the argmax), as
in ``torch.nn.functional.max_pool2d``, where the C loops skip NaNs; and a bin whose values
are all ``-inf`` (or ``-FLT_MAX``) returns that value with its first position as argmax,
where the C loops return ``-FLT_MAX`` with no argmax.

Implementation.  Bins are arbitrary integer rectangles, answered by a two-dimensional
sparse table (range-maximum query): level ``(a, b)`` holds the maximum of every
``2^a x 2^b`` window, so a bin is the maximum of four overlapping windows.  The argmax
rides along in 64-bit keys, value order in the high 32 bits and the reversed pixel index
``h * W + w`` in the low 32 bits, so the largest key is the first maximum.  Keys are built
only when the input needs a gradient.  The backward pass is an ``index_add_`` (deterministic
on CPU; on CUDA under ``torch.use_deterministic_algorithms(True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import RFMapError
from ._boxes import BoxesLike, check_output_size, check_spatial_scale, compute_dtype, prepare, roi_pool_cells

#: Elements of the largest temporary a query allocates at once.
_CHUNK = 1 << 20
#: Elements (positions x channels) of one sparse table; channels are processed in groups.
_TABLE = 1 << 21
_LOW32 = (1 << 32) - 1


def roi_pool(
    input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int], spatial_scale: float = 1.0
) -> Tensor:
    """Fast R-CNN RoI max pooling with Caffe's / torchvision's semantics (see the module docstring).

    ``input``: ``(N, C, H, W)`` float16/bfloat16/float32/float64 (16-bit floats are computed
    in float32 and cast back, which changes no value).  ``boxes``: ``Tensor[K, 5]`` rows
    ``(batch_index, x1, y1, x2, y2)`` or a list of ``Tensor[L_i, 4]``, in input-image units;
    pixel-index convention with corners rounded half away from zero and inclusive ends
    (:func:`rfmap.ops._boxes.roi_pool_cells`).  ``output_size``: ``PH`` or ``(PH, PW)``.
    Returns ``(K, C, PH, PW)``; differentiable in ``input``.

    Example (seed 002, Fast R-CNN): box ``(30, 40, 200, 400)`` at ``spatial_scale=1/16``
    pools cells x 2..13, y 3..25.
    """
    op = "roi_pool"
    pooled_h, pooled_w = check_output_size(op, output_size)
    batch, rois, spatial_scale = prepare(op, input, boxes, spatial_scale)
    cells = roi_pool_cells(rois, spatial_scale)
    top, bottom = bin_edges(cells[:, 1], cells[:, 3], pooled_h, input.shape[2], rois.dtype)
    left, right = bin_edges(cells[:, 0], cells[:, 2], pooled_w, input.shape[3], rois.dtype)
    k, grid = rois.shape[0], (rois.shape[0], pooled_h, pooled_w)
    rows = [t.view(k, pooled_h, 1).expand(grid).reshape(k, pooled_h * pooled_w) for t in (top, bottom)]
    cols = [t.view(k, 1, pooled_w).expand(grid).reshape(k, pooled_h * pooled_w) for t in (left, right)]
    out = RectMax.apply(input, batch, *rows, *cols)
    return out.view(k, out.shape[1], pooled_h, pooled_w)


def bin_edges(start: Tensor, end: Tensor, pooled: int, length: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Caffe's bins along one axis: ``[floor(p * bin) + start, ceil((p + 1) * bin) + start)``
    clipped to ``[0, length]``, ``bin = max(end - start + 1, 1) / pooled`` in ``dtype``.
    ``start``, ``end``: ``[K]`` int64 cells (inclusive).  Returns two ``[K, pooled]`` int64."""
    bin_size = ((end - start + 1).clamp_min(1).to(dtype) / pooled).unsqueeze(1)
    p = torch.arange(pooled, device=start.device, dtype=dtype)
    lo = torch.floor(p * bin_size).long() + start.unsqueeze(1)
    hi = torch.ceil((p + 1) * bin_size).long() + start.unsqueeze(1)
    return lo.clamp(0, length), hi.clamp(0, length)


def _floor_log2(n: Tensor) -> Tensor:
    """``floor(log2(n))`` for int64 ``n >= 1``, exact (``frexp``: ``n = m * 2^e``, ``m`` in [0.5, 1))."""
    return torch.frexp(n.to(torch.float64)).exponent.long() - 1


def _max_keys(x: Tensor) -> Tensor:
    """int64 keys of ``(n, H, W, C)`` maps whose maximum over any window of one map is at the
    window's first maximum in row-major order: value order in the high 32 bits,
    ``2^32 - 1 - (h * W + w)`` in the low 32.  NaN ranks above everything; ``-0.0`` and
    ``0.0`` tie."""
    height, width = x.shape[1:3]
    nan = torch.isnan(x)
    x = torch.where(nan, torch.inf, x + 0.0)  # + 0.0 turns -0.0 into 0.0
    if x.dtype == torch.float32:  # IEEE order as int32: flip the magnitude bits of negatives
        bits = x.view(torch.int32)
        order = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long() + nan
    else:  # float64 has no spare bits: dense ranks (< numel <= _TABLE), NaN one above +inf
        order = torch.unique(x, return_inverse=True)[1] + nan
    pixel = torch.arange(height * width, device=x.device).view(1, height, width, 1)
    return (order << 32) | (_LOW32 - pixel)


class _SparseTable:
    """Layout of a 2-D sparse table (range-maximum query) over ``n`` maps of ``H x W``:
    level ``(a, b)`` holds, at ``(h, w)``, the maximum over rows ``h .. h + 2^a - 1`` and
    columns ``w .. w + 2^b - 1``, stored as rows ``offset[a, b] + (i * H_a + h) * W_b + w``
    of one ``[positions, C]`` tensor (``H_a = H - 2^a + 1``, ``W_b = W - 2^b + 1``)."""

    def __init__(self, maps: int, height: int, width: int, levels_y: int, levels_x: int, device: torch.device):
        self.maps, self.height, self.width, self.columns = maps, height, width, levels_x + 1
        levels = [(a, b) for a in range(levels_y + 1) for b in range(levels_x + 1)]
        self.shapes = [(height - (1 << a) + 1, width - (1 << b) + 1) for a, b in levels]
        sizes = torch.tensor([maps * h * w for h, w in self.shapes], dtype=torch.int64)
        self.positions = int(sizes.sum())
        self.offset = (sizes.cumsum(0) - sizes).view(levels_y + 1, levels_x + 1).to(device)

    def rows(self, slot: Tensor, top: Tensor, bottom: Tensor, left: Tensor, right: Tensor) -> Tensor:
        """Table rows of the four corner windows covering each non-empty rectangle
        ``[top, bottom) x [left, right)`` of map ``slot``: ``[4, *top.shape]`` int64."""
        a, b = _floor_log2(bottom - top), _floor_log2(right - left)
        h_a, w_b = self.height - (1 << a) + 1, self.width - (1 << b) + 1
        base = self.offset[a, b] + slot * h_a * w_b
        return torch.stack([base + r * w_b + c for r in (top, bottom - (1 << a)) for c in (left, right - (1 << b))])

    def build(self, leaf: Tensor) -> Tensor:
        """The table of ``leaf`` ``(n, H, W, C)``: ``[positions, C]``."""
        channels = leaf.shape[-1]
        data = leaf.new_empty(self.positions, channels)
        views, start = [], 0
        for h, w in self.shapes:
            views.append(data[start : start + self.maps * h * w].view(self.maps, h, w, channels))
            start += self.maps * h * w
        views[0].copy_(leaf)
        for i, view in enumerate(views[1:], start=1):
            a, b = divmod(i, self.columns)
            if b:  # from level (a, b - 1), along columns
                prev, s = views[i - 1], 1 << (b - 1)
                torch.maximum(prev[:, :, :-s], prev[:, :, s:], out=view)
            else:  # from level (a - 1, 0), along rows
                prev, s = views[i - self.columns], 1 << (a - 1)
                torch.maximum(prev[:, :-s], prev[:, s:], out=view)
        return data


def plane_offsets(batch: Tensor, channels: int, plane: int) -> Tensor:
    """Flat offsets ``(batch * C + c) * plane`` of the planes ``input[batch[k], c]`` of an
    ``(N, C, H, W)`` tensor, ``[K, C, 1]`` int64 (exact beyond 2^31 elements)."""
    c = torch.arange(channels, device=batch.device).view(1, -1, 1)
    return (batch.view(-1, 1, 1) * channels + c) * plane


class RectMax(torch.autograd.Function):
    """Max over integer rectangles: ``out[k, c, p]`` is the maximum of ``input[batch[k], c]``
    over rows ``[top[k, p], bottom[k, p])`` and columns ``[left[k, p], right[k, p])``, the
    first one in row-major order; 0 (no argmax) for an empty rectangle.  ``(K, C, P)``.

    One sparse table holds every image in use, so RoIs are answered in their own order, in
    chunks, whatever their image; channels go in groups to bound the table's memory.
    """

    @staticmethod
    def forward(ctx, input: Tensor, batch: Tensor, top: Tensor, bottom: Tensor, left: Tensor, right: Tensor) -> Tensor:
        channels, height, width = input.shape[1:]
        want_argmax = ctx.needs_input_grad[0]
        if want_argmax and height * width > _LOW32 + 1:
            raise RFMapError(f"max pooling gradients need H * W <= 2^32, got {height} x {width}")
        rois, bins = top.shape
        empty = (bottom <= top) | (right <= left)
        any_empty = bool(empty.any())
        rect = [torch.where(empty, lo, t) for t, lo in zip((top, bottom, left, right), (0, 1, 0, 1))]
        levels_y = int(_floor_log2(rect[1] - rect[0]).max()) if empty.numel() else 0
        levels_x = int(_floor_log2(rect[3] - rect[2]).max()) if empty.numel() else 0
        images, slot = torch.unique(batch, return_inverse=True)
        table = _SparseTable(images.numel(), height, width, levels_y, levels_x, input.device)
        rows = table.rows(slot.view(-1, 1), *rect)  # [4, K, P]
        x = input if images.numel() == input.shape[0] else input.index_select(0, images)
        x = x.to(compute_dtype(input.dtype)).permute(0, 2, 3, 1)  # (n, H, W, C)
        out = x.new_empty((rois, channels, bins))
        if want_argmax:  # where each output's gradient goes: a flat offset into the input
            size = input.numel()
            target = torch.empty(out.shape, dtype=torch.int64, device=input.device)
            planes = plane_offsets(batch, channels, height * width).transpose(1, 2)  # [K, 1, C]
            first_pixel = (slot * (height * width)).view(-1, 1, 1)
        groups = max(1, -(-channels // max(1, _TABLE // max(1, table.positions))))
        group = max(1, -(-channels // groups))  # channels per group, the groups as even as possible
        step = max(1, _CHUNK // (4 * bins * group))
        for c0 in range(0, channels, group):
            c1 = min(channels, c0 + group)
            leaf = x[..., c0:c1]
            if want_argmax:
                values = leaf.reshape(-1, c1 - c0)
            data = table.build(_max_keys(leaf) if want_argmax else leaf)
            for k0 in range(0, rois, step):
                k1 = min(rois, k0 + step)
                corners = data.index_select(0, rows[:, k0:k1].flatten())
                best = corners.view(4, k1 - k0, bins, c1 - c0).amax(0)
                if want_argmax:
                    pixel = _LOW32 - (best & _LOW32)  # h * W + w of the first maximum
                    best = torch.gather(values, 0, (pixel + first_pixel[k0:k1]).view(-1, c1 - c0)).view(best.shape)
                    pixel += planes[k0:k1, :, c0:c1]
                    if any_empty:  # no gradient: a spare slot past the input
                        pixel.masked_fill_(empty[k0:k1].unsqueeze(2), size)
                    target[k0:k1, c0:c1] = pixel.transpose(1, 2)
                if any_empty:
                    best.masked_fill_(empty[k0:k1].unsqueeze(2), 0)
                out[k0:k1, c0:c1] = best.transpose(1, 2)
        if want_argmax:
            ctx.save_for_backward(target)
            ctx.input_shape, ctx.input_dtype = input.shape, input.dtype
        return out.to(input.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (target,) = ctx.saved_tensors
        flat = grad.new_zeros(ctx.input_shape.numel() + 1, dtype=compute_dtype(ctx.input_dtype))
        flat.index_add_(0, target.flatten(), grad.to(flat.dtype).flatten())
        return flat[:-1].view(ctx.input_shape).to(ctx.input_dtype), None, None, None, None, None


class RoIPool(nn.Module):
    """:func:`roi_pool` as a module (torchvision's ``RoIPool`` signature)."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = check_output_size("RoIPool", output_size)
        self.spatial_scale = check_spatial_scale("RoIPool", spatial_scale)

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
