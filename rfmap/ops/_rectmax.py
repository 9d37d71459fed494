"""Maximum over integer rectangles with the first maximum as argmax: the engine of RoI max
pooling (Caffe's and torchvision's loop semantics).

``rect_max`` answers, for every RoI ``k`` and bin ``p``, the maximum of ``input[batch[k], c]``
over rows ``[top, bottom)`` and columns ``[left, right)``, and where it sits, as the C loop
does: the running maximum starts at ``-FLT_MAX`` and takes a strictly greater value, so
the argmax is the first maximum in row-major order, NaN and values ``<= -FLT_MAX`` never win,
and a bin holding only those gives ``-FLT_MAX`` and no argmax.  An empty rectangle gives 0
and no argmax.

Implementation: a two-dimensional sparse table (range-maximum query).  Level ``(a, b)`` holds
the maximum of every ``2^a x 2^b`` window; a rectangle is the maximum of the windows of the
largest level that fits, placed at its corners (four for a table with every level it needs).
The levels kept are capped so that the table has at most ``max(_TABLE, n * H * W)``
positions (``n`` images in use): rectangles wider than the top level are then covered by a
row of windows, so memory stays proportional to the input and the output, and time to the
rectangles' area.  ``-0.0`` and ``0.0`` tie (a zero maximum is ``0.0``).  The backward pass
adds each output gradient at its argmax in output order (deterministic).

Where the argmax comes from: on the CPU with the native loops (:mod:`rfmap.ops._native`,
``kernels/rectmax.h``), a second table beside the values holds the pixel of each window's
first maximum (two windows combine to the greater value, or on a tie to the smaller pixel),
and a bin's argmax is the smallest such pixel among its windows that hold its maximum;
otherwise (PyTorch) the argmax rides along in 64-bit keys, value order in the high 32 bits
and the reversed pixel index ``h * W + w`` in the low 32 bits, so that the largest key is
the first maximum.  Both give the same numbers, bit for bit; the backward scatter is native
too where it can be.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor

from ..errors import RFMapError
from ._boxes import MINUS_FLT_MAX, compute_dtype
from ._native import kernels
from ._threads import run_tasks, scratch

#: Elements of the largest temporary a query allocates at once.
_CHUNK = 1 << 20
#: Positions x channels of one sparse table; channels are processed in groups.
_TABLE = 1 << 21
_LOW32 = (1 << 32) - 1


def pixel_dtype(area: int) -> torch.dtype:
    """The dtype of pixel indices ``h * W + w`` into planes of ``area`` pixels, with -1 for
    "nowhere": int16 while that fits (half the memory and traffic of int32), int32 beyond."""
    return torch.int16 if area <= 1 << 15 else torch.int32


def floor_log2(n: Tensor) -> Tensor:
    """``floor(log2(n))`` for int64 ``n >= 1``, exact (``frexp``: ``n = m * 2^e``, ``m`` in [0.5, 1))."""
    return torch.frexp(n.to(torch.float64)).exponent.long() - 1


def _max_keys(x: Tensor, keys: Tensor) -> Tensor:
    """Write into ``keys`` int64 keys of ``x``, ``(n, H, W, C)`` maps without NaN, whose maximum
    over any window of one map is at the window's first maximum in row-major order: value
    order in the high 32 bits, ``2^32 - 1 - (h * W + w)`` in the low 32; ``-0.0`` and ``0.0``
    tie (``x`` is changed: ``-0.0`` becomes ``0.0``)."""
    height, width = x.shape[1:3]
    x.add_(0.0)  # -0.0 becomes 0.0
    if x.dtype == torch.float32:  # IEEE order as int32: flip the magnitude bits of negatives
        bits = x.view(torch.int32)
        flip = bits >> 31
        flip &= 0x7FFFFFFF
        flip ^= bits
        keys.copy_(flip)
    else:  # float64 has no spare bits: dense ranks (< numel <= max(_TABLE, n * H * W))
        keys.copy_(torch.unique(x, return_inverse=True)[1])
    keys <<= 32
    keys |= _LOW32 - torch.arange(height * width, device=keys.device).view(1, height, width, 1)
    return keys


def _gather_rows(table: Tensor, index: Tensor, out: Tensor) -> Tensor:
    """``table[index]`` into ``out``; 64-bit rows are copied as twice as many 32-bit words
    (torch's ``index_select`` copies those several times faster)."""
    if table.element_size() == 8:
        torch.index_select(table.view(torch.int32), 0, index, out=out.view(torch.int32))
    else:
        torch.index_select(table, 0, index, out=out)
    return out


def _level_sum(length: int, levels: int) -> int:
    return sum(length - (1 << a) + 1 for a in range(levels + 1))


class _SparseTable:
    """Layout of a 2-D sparse table over ``n`` maps of ``H x W`` with levels ``a <= levels_y``,
    ``b <= levels_x``: level ``(a, b)`` holds, at ``(h, w)``, the maximum over rows
    ``h .. h + 2^a - 1`` and columns ``w .. w + 2^b - 1``, stored as rows
    ``offset[a, b] + (i * H_a + h) * W_b + w`` of one ``[positions, C]`` tensor
    (``H_a = H - 2^a + 1``, ``W_b = W - 2^b + 1``)."""

    def __init__(self, maps: int, height: int, width: int, levels_y: int, levels_x: int, device: torch.device):
        self.maps, self.height, self.width = maps, height, width
        self.levels_y, self.levels_x, self.columns = levels_y, levels_x, levels_x + 1
        levels = [(a, b) for a in range(levels_y + 1) for b in range(levels_x + 1)]
        self.shapes = [(height - (1 << a) + 1, width - (1 << b) + 1) for a, b in levels]
        sizes = torch.tensor([maps * h * w for h, w in self.shapes], dtype=torch.int64)
        self.positions = int(sizes.sum())
        self.offset = (sizes.cumsum(0) - sizes).view(levels_y + 1, levels_x + 1).to(device)

    @classmethod
    def fitting(cls, maps: int, height: int, width: int, need_y: int, need_x: int, device) -> _SparseTable:
        """The table with the levels the rectangles need, capped to ``max(_TABLE, n * H * W)`` positions."""
        budget = max(_TABLE, maps * height * width)
        while maps * _level_sum(height, need_y) * _level_sum(width, need_x) > budget and need_y + need_x > 0:
            if need_y >= need_x:
                need_y -= 1
            else:
                need_x -= 1
        return cls(maps, height, width, need_y, need_x, device)

    def rows(self, slot: Tensor, rect: Sequence[Tensor], spell_out: bool) -> _Windows:
        """Table rows of the windows covering each non-empty rectangle ``[top, bottom) x
        [left, right)`` (``rect``, ``[K, P]`` each) of map ``slot``; ``spell_out``: see
        :class:`_Windows`."""
        top, bottom, left, right = rect
        a, ys = _axis_windows(top, bottom, self.levels_y)
        b, xs = _axis_windows(left, right, self.levels_x)
        h_a, w_b = self.height - (1 << a) + 1, self.width - (1 << b) + 1
        return _Windows(self.offset[a, b] + slot * h_a * w_b, ys * w_b, xs, spell_out)

    def build(self, data: Tensor) -> Tensor:
        """Fill the levels of ``data`` ``[positions, C]`` from its first ``n * H * W`` rows,
        level ``(0, 0)``; returns ``data``."""
        channels = data.shape[-1]
        views, start = [], 0
        for h, w in self.shapes:
            views.append(data[start : start + self.maps * h * w].view(self.maps, h, w, channels))
            start += self.maps * h * w
        for i, view in enumerate(views[1:], start=1):
            a, b = divmod(i, self.columns)
            if b:  # from level (a, b - 1), along columns
                prev, s = views[i - 1], 1 << (b - 1)
                torch.maximum(prev[:, :, :-s], prev[:, :, s:], out=view)
            else:  # from level (a - 1, 0), along rows
                prev, s = views[i - self.columns], 1 << (a - 1)
                torch.maximum(prev[:, :-s], prev[:, s:], out=view)
        return data


class _Windows:
    """The table rows of a grid of ``NY x NX`` windows per rectangle: ``base + ys[jy] + xs[jx]``,
    ``[K, P]``, ``[NY, K, P]`` and ``[NX, K, P]`` (repeated windows pad the rectangles that need
    fewer).  With ``spell_out`` (the PyTorch path), small grids are spelled out once and large
    ones (a capped table and big bins) a block at a time, so memory stays bounded; the native
    loops read the three parts themselves."""

    def __init__(self, base: Tensor, ys: Tensor, xs: Tensor, spell_out: bool):
        self.base, self.ys, self.xs = base.contiguous(), ys.contiguous(), xs.contiguous()
        self.count = ys.shape[0] * xs.shape[0]
        self.all = None
        if spell_out and self.count * base.numel() <= 4 * _CHUNK:
            self.all = (base + ys.unsqueeze(1) + xs.unsqueeze(0)).flatten(0, 1)  # [NY * NX, K, P]

    def block(self, w0: int, w1: int, k0: int, k1: int) -> Tensor:
        """Rows of windows ``w0 .. w1 - 1`` of RoIs ``k0 .. k1 - 1``: ``[w1 - w0, k1 - k0, P]``."""
        if self.all is not None:
            return self.all[w0:w1, k0:k1]
        j = torch.arange(w0, w1, device=self.base.device)
        columns = self.xs.shape[0]
        return self.base[k0:k1] + self.ys[j // columns, k0:k1] + self.xs[j % columns, k0:k1]


def _axis_windows(lo: Tensor, hi: Tensor, cap: int) -> tuple[Tensor, Tensor]:
    """Windows of ``2^a`` cells covering ``[lo, hi)`` (``hi > lo``), ``a = min(floor(log2(len)),
    cap)``: ``(a, starts)``, ``starts [count, *lo.shape]``: ``lo, lo + 2^a, ...``, the last one
    ending at ``hi`` (repeated where a range needs fewer windows than the longest)."""
    length = hi - lo
    a = floor_log2(length).clamp_max(cap)
    size = 1 << a
    count = max(1, int(((length + size - 1) >> a).max())) if length.numel() else 1
    j = torch.arange(count, device=lo.device).view(-1, *([1] * lo.dim()))
    return a, torch.minimum(lo + j * size, hi - size)


def rect_max(
    input: Tensor, batch: Tensor, rect: Sequence[Tensor], with_argmax: bool, count: int
) -> tuple[Tensor, Tensor]:
    """``(out, argmax)``: ``out (K, C, P)`` in the compute dtype, the maximum of
    ``input[batch[k], c]`` over rectangle ``p`` of RoI ``k`` (``rect``: ``top, bottom, left,
    right``, ``[K, P]`` int64, half-open); ``argmax (K, C, P)`` (:func:`pixel_dtype`), the pixel
    ``h * W + w`` of the first maximum in its plane ``input[batch[k], c]``, or -1 where there is
    none (empty when not ``with_argmax``).  Channel groups (or, when there
    are few, chunks of RoIs) are tasks for ``count`` threads."""
    channels, height, width = input.shape[1:]
    if with_argmax and height * width > 1 << 31:
        raise RFMapError(f"max pooling gradients need H * W <= 2^31, got {height} x {width}")
    top, bottom, left, right = rect
    rois, bins = top.shape
    empty = (bottom <= top) | (right <= left)
    rect = [torch.where(empty, lo, t) for t, lo in zip(rect, (0, 1, 0, 1))]  # empty: any valid window
    need_y = int(floor_log2(rect[1] - rect[0]).max()) if empty.numel() else 0
    need_x = int(floor_log2(rect[3] - rect[2]).max()) if empty.numel() else 0
    images, slot = torch.unique(batch, return_inverse=True)
    table = _SparseTable.fitting(images.numel(), height, width, need_y, need_x, input.device)
    native = kernels() if input.device.type == "cpu" else None  # the loops of kernels/rectmax.h
    rows = table.rows(slot.view(-1, 1), rect, spell_out=native is None)
    x = input if images.numel() == input.shape[0] else input.index_select(0, images)
    x = x.to(compute_dtype(input.dtype))
    out = x.new_empty((rois, channels, bins))
    index = pixel_dtype(height * width)
    argmax = torch.empty((rois, channels, bins) if with_argmax else (0,), dtype=index, device=input.device)
    query = _Query(x, table, rows, empty, slot, out, argmax, native)
    # channel groups: a table of at most _TABLE elements each, and 4 per thread at least (small
    # tasks: when a thread is held up, the others take what is left)
    per_table = max(1, _TABLE // max(1, table.positions))
    groups = min(channels, max(-(-channels // per_table), 4 * count))
    size = max(1, -(-channels // max(1, groups)))
    spans = [(c0, min(channels, c0 + size)) for c0 in range(0, channels, size)]
    if len(spans) >= count:
        run_tasks(lambda g: query.answer(query.table_of(*g), *g, 0, rois), spans, count, input.device)
    else:
        chunks = query.chunks(size)
        for c0, c1 in spans:
            data = query.table_of(c0, c1)

            def answer(k: tuple[int, int], data: tuple[Tensor, Tensor] = data, c0: int = c0, c1: int = c1) -> None:
                query.answer(data, c0, c1, *k)

            run_tasks(answer, chunks, count, input.device)
    if query.any_empty:  # empty bins (few: clipped at the border) give 0 and no argmax
        k, p = empty.nonzero(as_tuple=True)
        out[k, :, p] = 0
        if with_argmax:
            argmax[k, :, p] = -1
    return out, argmax


class _Query:
    """The pieces of one :func:`rect_max` call that its tasks share."""

    def __init__(self, x, table, rows, empty, slot, out, argmax, native):
        self.x, self.table, self.rows, self.empty = x, table, rows, empty
        self.out, self.argmax, self.with_argmax = out, argmax, argmax.numel() > 0
        height, width = x.shape[2:]
        self.any_empty = bool(empty.any())
        # native loops: a table of values, with the pixels of its windows' first maxima when the
        # argmax is wanted; the state below is the PyTorch path's (64-bit keys)
        self.native, self.lost = native, None
        if native is not None:
            return
        if self.with_argmax:  # float64: the rows of values
            self.slot_pixel = (slot * (height * width)).view(-1, 1, 1) + _LOW32
        start = torch.tensor([MINUS_FLT_MAX], dtype=x.dtype).view(1, 1, 1, 1)
        # keys below this hold -FLT_MAX, the smallest value there is after the substitution
        keys = _max_keys(start, torch.empty(1, 1, 1, 1, dtype=torch.int64))
        self.lost = ((int(keys) >> 32) + 1) << 32 if x.dtype == torch.float32 else None

    def table_of(self, c0: int, c1: int) -> tuple[Tensor, Tensor]:
        """``(table, values)`` of channels ``c0 .. c1 - 1`` (buffers of the calling thread);
        NaN and values ``<= -FLT_MAX`` become ``-FLT_MAX``, the C loop's start, which no value
        beats (``fmax`` ignores NaN).  With the native loops and an argmax wanted, ``values``
        is instead the table of the pixels of its windows' first maxima (int32)."""
        n, _, height, width = self.x.shape
        pixels, group, device = height * width, c1 - c0, self.x.device
        dtype = torch.int64 if self.with_argmax and self.native is None else self.x.dtype
        data = scratch(self.table.positions, group, dtype, device, "table")
        values = scratch(n * pixels, group, self.x.dtype, device, "values") if dtype == torch.int64 else data[: n * pixels]
        for i in range(n):  # 2-D transposes: torch's fast path
            values[i * pixels : (i + 1) * pixels].copy_(self.x[i, c0:c1].reshape(group, pixels).t())
        torch.fmax(values, values.new_tensor(MINUS_FLT_MAX), out=values)
        values.add_(0.0)  # -0.0 becomes 0.0: a zero maximum is 0.0, whichever zero came first
        if dtype == torch.int64:
            _max_keys(values.view(n, height, width, group), data[: n * pixels].view(n, height, width, group))
        elif self.native is not None and self.with_argmax:
            first = scratch(self.table.positions, group, torch.int32, device, "pixels")
            t = self.table
            self.native.build(data.data_ptr(), int(dtype == torch.float64), first.data_ptr(), n, height, width,
                              t.levels_y, t.levels_x, group)  # fmt: skip
            return data, first
        return self.table.build(data), values

    def chunks(self, group: int) -> list[tuple[int, int]]:
        rois, bins = self.empty.shape
        step = max(1, _CHUNK // (self.rows.count * bins * group))
        return [(k0, min(rois, k0 + step)) for k0 in range(0, rois, step)]

    def answer(self, data: tuple[Tensor, Tensor], c0: int, c1: int, r0: int, r1: int) -> None:
        """Write ``out`` (and ``argmax``) for channels ``c0 .. c1 - 1`` of RoIs ``r0 .. r1 - 1``."""
        table, values = data
        if self.native is not None:
            self._answer_native(self.native, data, c0, c1, r0, r1)
            return
        windows, bins, group = self.rows.count, self.empty.shape[1], c1 - c0
        step = max(1, _CHUNK // (windows * bins * group))
        block = max(1, _CHUNK // (bins * group))  # windows per block when one RoI is too big
        for k0 in range(r0, r1, step):
            k1 = min(r1, k0 + step)
            best = scratch((k1 - k0) * bins, group, table.dtype, table.device, "best").view(k1 - k0, bins, group)
            for w0 in range(0, windows, block):
                part = self.rows.block(w0, min(windows, w0 + block), k0, k1)
                found = scratch(part.numel(), group, table.dtype, table.device, "found")
                found = _gather_rows(table, part.flatten(), found).view(*part.shape, group)
                if w0:
                    torch.maximum(best, found.amax(0), out=best)
                else:
                    torch.amax(found, 0, out=best)
            if self.with_argmax:
                best = self._argmax(best, values, c0, c1, k0, k1)
            self.out[k0:k1, c0:c1] = best.transpose(1, 2)  # empty bins: see rect_max

    def _answer_native(self, native: ModuleType, data: tuple[Tensor, Tensor], c0: int, c1: int, r0: int, r1: int) -> None:
        """:meth:`answer` by the native loop (``kernels/rectmax.h``), the same numbers."""
        (table, first), rows = data, self.rows
        native.query(
            table.data_ptr(), int(table.dtype == torch.float64), rows.base.data_ptr(), rows.ys.data_ptr(),
            rows.ys.shape[0], rows.xs.data_ptr(), rows.xs.shape[0], *self.empty.shape,
            c1 - c0, r0, r1, self.x.shape[1], c0, self.out.data_ptr(), first.data_ptr() if self.with_argmax else 0,
            self.argmax.data_ptr() if self.with_argmax else 0, self.argmax.element_size(),
        )  # fmt: skip

    def _argmax(self, best: Tensor, values: Tensor, c0: int, c1: int, k0: int, k1: int) -> Tensor:
        """Write ``argmax`` from the keys ``best`` ``(k, P, group)``; returns their values."""
        rows, group, device = best.shape[0] * best.shape[1], c1 - c0, best.device
        # the low word, 2^32 - 1 - (h * W + w), read as int32 is -1 - (h * W + w)
        target = scratch(rows, group, torch.int32, device, "target").view(best.shape)
        torch.bitwise_not(best.view(torch.int32)[..., 0::2], out=target)
        lost = scratch(rows, group, torch.bool, device, "lost").view(best.shape)
        if self.lost is not None:  # float32: the value is in the high word
            torch.lt(best, self.lost, out=lost)
            found = scratch(rows, group, torch.int32, device, "found32").view(best.shape)
            found.copy_(best.view(torch.int32)[..., 1::2])  # little-endian words: low, high
            flip = scratch(rows, group, torch.int32, device, "flip").view(best.shape)
            torch.bitwise_right_shift(found, 31, out=flip)
            flip &= 0x7FFFFFFF
            found ^= flip  # the inverse of _max_keys' flip
            found = found.view(torch.float32)
        else:  # float64: ranks; read the values
            index = (self.slot_pixel[k0:k1] - (best & _LOW32)).view(-1, group)
            found = torch.gather(values, 0, index).view(best.shape)
            torch.eq(found, MINUS_FLT_MAX, out=lost)
        self.argmax[k0:k1, c0:c1] = target.masked_fill_(lost, -1).transpose(1, 2)
        return found


def argmax_backward(grad: Tensor, argmax: Tensor, batch: Tensor, shape: tuple, count: int = 1) -> Tensor:
    """The input gradient of :func:`rect_max`: ``grad (K, C, PH, PW)`` added at ``argmax`` (same
    shape, pixels of plane ``(batch[k], c)``, -1: nowhere) of an input of ``shape`` ``(N, C,
    H, W)``, in output order, which makes it deterministic.  The native loop splits the
    channels over ``count`` threads (each input element then takes its sums in the same
    order); PyTorch's ``scatter_add_`` runs in index order on the CPU and gives the same sums."""
    n_img, channels, height, width = shape
    total, area = n_img * channels * height * width, height * width
    dtype = compute_dtype(grad.dtype)
    values = grad.to(dtype).contiguous()
    rois = grad.shape[0]
    native = kernels() if grad.device.type == "cpu" else None
    if native is not None:
        gx = grad.new_empty(total, dtype=dtype)  # each task zeroes its channels' planes first
        index, batch = argmax.contiguous(), batch.contiguous()
        step = max(1, -(-channels // (4 * count)))

        def span(c0: int) -> None:
            native.scatter_planes(values.data_ptr(), index.data_ptr(), batch.data_ptr(), gx.data_ptr(), n_img, rois,
                                  channels, grad.shape[2] * grad.shape[3], area, c0, min(channels, c0 + step),
                                  values.element_size(), index.element_size())  # fmt: skip

        run_tasks(span, range(0, channels, step), count, grad.device)
    else:
        gx = grad.new_zeros(total + 1, dtype=dtype)  # a spare element takes the bins without a winner
        plane = batch.view(-1, 1) * channels + torch.arange(channels, device=grad.device).view(1, -1)
        flat = plane.view(rois, channels, 1) * area + argmax.reshape(rois, channels, -1)
        flat = flat.masked_fill_(argmax.reshape(rois, channels, -1) < 0, total)
        gx = gx.scatter_add_(0, flat.flatten(), values.flatten())[:total]
    return gx.view(shape).to(grad.dtype)


def gather_argmax(grad_input: Tensor, argmax: Tensor, batch: Tensor) -> Tensor:
    """The adjoint of :func:`argmax_backward`, ``(K, C, PH, PW)``: ``grad_input (N, C, H, W)``
    at each bin's argmax in plane ``(batch[k], c)``, 0 for a bin without one (-1)."""
    rois, channels = argmax.shape[:2]
    planes = grad_input.flatten(2).index_select(0, batch)  # (K, C, H * W)
    index = argmax.reshape(rois, channels, -1).long()
    found = planes.gather(2, index.clamp(min=0))
    return found.masked_fill(index < 0, 0).view(argmax.shape)
