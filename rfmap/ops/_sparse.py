"""Linear pooling ops as sparse matrices: the engine of RoIAlign, PS-RoIAlign, PS-RoIPool and
average spatial pyramid pooling.

A linear pooling op maps an ``(N, C, H, W)`` input to ``(K, C, bins)``: output bin ``p`` of
RoI ``k`` is a weighted sum of the pixels of image ``batch[k]``, the same weights for every
channel.  The weights are a sparse matrix ``S`` (one row per RoI bin, one column per pixel of
the images in use), built from per-axis weights when they factor (``w[k, p, y, x] =
wy[k, ph, y] * wx[k, pw, x]``, which holds for all the ops here).  The forward pass is
``S @ X`` with ``X`` the ``(pixels, C)`` channel-last view of the input, the backward pass
``S^T @ G`` with ``S^T`` built by a stable sort.  Both are CSR products, which compute each
output row in a fixed order, so the backward pass is deterministic.  Indices are int32 where
they fit (what MKL takes without a conversion), int64 beyond.  On the CPU, native loops
(``kernels/sparse.h``, :mod:`rfmap.ops._native`) write ``S``'s entries and transpose it,
with the entries of the PyTorch code, in its order; elsewhere that code runs on the input's
device.

Position-sensitive pooling (R-FCN) reads, for bin ``p``, only the channels ``c * bins + p``:
there the matrix is block diagonal, rows ordered bin-major and bin ``p``'s columns in block
``p``, the pixels of its channel slice, so that one product computes every bin.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from ._boxes import compute_dtype
from ._native import kernels
from ._threads import run_tasks, scratch

#: Elements of the largest temporary a helper allocates at once (memory bound for huge grids).
_CHUNK = 1 << 22
#: Elements of a result block that stays in cache while it is transposed into the output.
_CACHE = 1 << 20


def _native_for(t: Tensor) -> ModuleType | None:
    """The native loops (``kernels/sparse.h``) for values like ``t``'s: on the CPU, float32 or
    float64 (16-bit inputs are computed in float32); ``None`` where the PyTorch code runs."""
    return kernels() if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) else None


def nonzeros(w: Tensor) -> tuple[Tensor, Tensor]:
    """The non-zeros of each row of ``w [..., L]``, left-aligned in increasing index order:
    ``(index int64, value)``, both ``[..., M]`` with ``M`` the longest row, padded with zeros."""
    flat = w.reshape(-1, w.shape[-1])
    keep = flat != 0
    longest = int(keep.sum(1).max()) if flat.numel() else 0
    # entry (r, i) goes to slot rank-within-row; dropped entries to a spare last slot
    slot = torch.where(keep, keep.cumsum(1) - 1, longest)
    index = torch.zeros(flat.shape[0], longest + 1, dtype=torch.int64, device=w.device)
    value = flat.new_zeros(flat.shape[0], longest + 1)
    index.scatter_(1, slot, torch.arange(flat.shape[1], device=w.device).expand_as(slot))
    value.scatter_(1, slot, flat)
    shape = (*w.shape[:-1], longest)
    return index[:, :longest].reshape(shape), value[:, :longest].reshape(shape)


@dataclass(frozen=True)
class PoolingMatrix:
    """A linear pooling op as a CSR matrix ``S``: ``out[k, c, p] = sum_j S[row(k, p), j] X[j, c]``.

    ``row(k, p) = k * bins + p`` (RoI-major) or ``p * rois + k`` (``bin_major``).  Column
    ``j = slot * H * W + y * W + x`` is pixel ``(y, x)`` of image ``images[slot]`` (only the
    images some RoI uses take columns).  Only non-zero weights are stored.

    A ``bin_major`` matrix (position-sensitive pooling) is block diagonal: bin ``p``'s rows
    read column block ``p``, columns ``p * pixels + j``, which stand for the pixels of bin
    ``p``'s own channel slice (:func:`ps_inputs`), so that one product computes every bin.
    """

    crow: Tensor
    col: Tensor
    val: Tensor
    images: Tensor
    rois: int
    bins: int
    height: int
    width: int
    bin_major: bool = False

    @classmethod
    def separable(
        cls, wy: Tensor, wx: Tensor, batch: Tensor, height: int, width: int, bin_major: bool = False
    ) -> PoolingMatrix:
        """Rows ``(k, ph, pw)`` with weight ``wy[k, ph, y] * wx[k, pw, x]`` on image ``batch[k]``.

        Each row is the outer product of the non-zeros of ``wy[k, ph]`` and ``wx[k, pw]``
        (products of two non-zeros, even one that underflows to 0, are kept), so its columns
        come out sorted.  ``bin_major``: rows ``(p, k)``, columns in block ``p`` (see the class).
        On the CPU the native loop writes the rows (``kernels/sparse.h``), else
        :func:`_separable_entries`: the same entries.
        """
        rois, ph_, _ = wy.shape
        pw_ = wx.shape[1]
        images, slot = torch.unique(batch, return_inverse=True)
        # entries per row: the products of the two axes' non-zeros, known before any is made
        count = (wy != 0).sum(-1).unsqueeze(2) * (wx != 0).sum(-1).unsqueeze(1)  # [K, PH, PW]
        count = count.permute(1, 2, 0) if bin_major else count
        crow = torch.cat([count.new_zeros(1), count.flatten().cumsum(0)])
        total = int(crow[-1])
        pixels = images.numel() * height * width
        # int32 indices where they fit: what MKL takes without a conversion at every product
        index = torch.int32 if pixels * (ph_ * pw_ if bin_major else 1) < 2**31 and total < 2**31 else torch.int64
        col = torch.empty(total, dtype=index, device=wy.device)
        val = wy.new_empty(total)
        native = _native_for(wy)
        if native is not None:
            wy, wx = wy.contiguous(), wx.to(wy.dtype).contiguous()
            native.separable(wy.data_ptr(), wx.data_ptr(), int(wy.dtype == torch.float64), slot.contiguous().data_ptr(),
                             rois, ph_, pw_, height, width, int(bin_major), pixels if bin_major else 0,
                             col.data_ptr(), col.element_size(), val.data_ptr())  # fmt: skip
        else:
            _separable_entries(wy, wx, slot, height, width, pixels if bin_major else 0, col, val)
        return cls(crow.to(index), col, val, images, rois, ph_ * pw_, height, width, bin_major)

    @property
    def pixels(self) -> int:
        """The pixels of the images in use (the columns, or a block's, ``bin_major``)."""
        return self.images.numel() * self.height * self.width

    @property
    def columns(self) -> int:
        """The matrix's columns: :attr:`pixels`, once per bin when ``bin_major``."""
        return self.pixels * (self.bins if self.bin_major else 1)

    def row_blocks(self, step: int) -> list[tuple[int, int, int, int]]:
        """``(r0, r1, a, b)``: rows ``r0 .. r1 - 1`` in blocks of ``step`` rows, their entries
        ``a .. b - 1`` (one device-to-host copy for all the blocks)."""
        rows = self.crow.numel() - 1
        starts = list(range(0, rows, step))
        bounds = self.crow[starts + [rows]].tolist() if starts else []
        return [(r0, min(rows, r0 + step), bounds[i], bounds[i + 1]) for i, r0 in enumerate(starts)]

    def block(self, r0: int, r1: int, a: int, b: int) -> Tensor:
        """Rows ``r0 .. r1 - 1`` (entries ``a .. b - 1``) as a CSR tensor."""
        return _csr(self.crow[r0 : r1 + 1] - a, self.col[a:b], self.val[a:b], (r1 - r0, self.columns))

    def csr(self) -> Tensor:
        """The whole matrix as a CSR tensor."""
        return _csr(self.crow, self.col, self.val, (self.crow.numel() - 1, self.columns))


class MatrixMemo:
    """The pooling matrix of an op's last forward call whose input needs a gradient, kept for
    the backward call that follows: that call takes it instead of building it again when its
    arguments are those of the forward call (the boxes compared, not assumed), and either way
    the memo is emptied.  One matrix at most is held per op, and only for inputs that need a
    gradient (an inference pass keeps nothing).

    Arguments: ``(input shape, rois, *params)``, the params hashable (numbers, tuples, dtypes).
    No lock: whatever threads do to the slot, a matrix is only used for the boxes and arguments
    it was made for (at worst one is made again)."""

    def __init__(self) -> None:
        self._entry: tuple[tuple, Tensor, PoolingMatrix] | None = None

    @staticmethod
    def _key(args: tuple) -> tuple:
        shape, rois, *params = args
        return (tuple(shape), *params)

    def keep(self, args: tuple, wanted: bool, matrix: PoolingMatrix) -> None:
        """Hold ``matrix``, made for ``args``, if ``wanted`` (in place of any other)."""
        if wanted:
            self._entry = (self._key(args), args[1].clone(), matrix)

    def take(self, args: tuple, make: Callable[[], PoolingMatrix]) -> PoolingMatrix:
        """The held matrix if it was made for ``args`` (equal boxes), else ``make()``."""
        entry, self._entry = self._entry, None
        rois = args[1]
        if entry is not None and entry[0] == self._key(args):
            saved = entry[1]
            same = saved.shape == rois.shape and saved.dtype == rois.dtype and saved.device == rois.device
            if same and bool(torch.equal(saved, rois)):
                return entry[2]
        return make()


def _separable_entries(wy: Tensor, wx: Tensor, slot: Tensor, height: int, width: int, block: int, col: Tensor, val: Tensor) -> None:
    """:meth:`PoolingMatrix.separable`'s entries in PyTorch, into ``col`` and ``val``: each
    row the outer product of the two axes' non-zeros (:func:`nonzeros`, padded to the longest,
    the products of a padding slot dropped), built in chunks of RoIs to bound memory; with
    ``block`` (``bin_major``: columns per bin) bin after bin, bin ``p``'s columns from
    ``p * block``."""
    rois, ph_, _ = wy.shape
    pw_ = wx.shape[1]
    index = col.dtype
    ycol, yval = nonzeros(wy)
    xcol, xval = nonzeros(wx)
    yoff = ((slot * (height * width)).view(-1, 1, 1) + ycol * width).to(index)  # [K, PH, My]
    xcol = xcol.to(index)
    entries = max(1, ycol.shape[-1] * xcol.shape[-1])
    parts: Iterator[tuple[slice, int | slice]]  # (RoIs, bins) of each block of rows
    if block:  # bin_major, rows (p, k): loop over the bins, then chunks of RoIs
        step = max(1, _CHUNK // entries)
        parts = ((slice(k, k + step), p) for p in range(ph_ * pw_) for k in range(0, rois, step))
    elif ph_ * pw_ * entries <= _CHUNK:
        step = _CHUNK // (ph_ * pw_ * entries)
        parts = ((slice(k, k + step), slice(None)) for k in range(0, rois, step))
    else:  # one RoI is too big: rows of bins at a time
        step = max(1, _CHUNK // (pw_ * entries))
        parts = ((slice(k, k + 1), slice(p, p + step)) for k in range(rois) for p in range(0, ph_, step))
    ykeep, xkeep = yval != 0, xval != 0
    start = 0
    for part, p in parts:
        if isinstance(p, slice):  # [k, ph, pw, My, Mx]
            keep = ykeep[part, p, None, :, None] & xkeep[part, None, :, None, :]
            entries_ = yoff[part, p, None, :, None] + xcol[part, None, :, None, :]
            weights = yval[part, p, None, :, None] * xval[part, None, :, None, :]
        else:  # [k, My, Mx] of bin p
            ph, pw = divmod(p, pw_)
            keep = ykeep[part, ph, :, None] & xkeep[part, pw, None, :]
            entries_ = yoff[part, ph, :, None] + xcol[part, pw, None, :] + p * block
            weights = yval[part, ph, :, None] * xval[part, pw, None, :]
        end = start + int(keep.count_nonzero())
        torch.masked_select(entries_.to(index), keep, out=col[start:end])
        torch.masked_select(weights, keep, out=val[start:end])
        start = end


def _csr(crow: Tensor, col: Tensor, val: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def transpose(s: Tensor) -> Tensor:
    """``s^T`` as a CSR tensor, its entries stably sorted by column: each row of ``s^T``
    keeps the order of ``s``'s rows, so products with it are deterministic."""
    rows, cols = s.shape
    crow, col, values = s.crow_indices(), s.col_indices(), s.values()
    native = _native_for(values) if rows < 2**31 and crow.dtype == col.dtype else None
    if native is not None:  # a counting sort (kernels/sparse.h): the same entries in the same order
        crow, col, values = crow.contiguous(), col.contiguous(), values.contiguous()
        crow_t, row, val = crow.new_empty(cols + 1), col.new_empty(col.numel()), values.new_empty(values.numel())
        native.transpose(crow.data_ptr(), col.data_ptr(), values.data_ptr(), int(values.dtype == torch.float64),
                         col.element_size(), rows, cols, crow_t.data_ptr(), row.data_ptr(), val.data_ptr())  # fmt: skip
        return _csr(crow_t, row, val, (cols, rows))
    order = _stable_order(col, cols)
    index = crow.dtype if rows < 2**31 else torch.int64
    row = torch.repeat_interleave(torch.arange(rows, device=col.device, dtype=index), crow.diff(), output_size=col.numel())
    crow_t = torch.cat([crow.new_zeros(1), torch.bincount(col, minlength=cols).cumsum(0).to(crow.dtype)])
    return _csr(crow_t, row[order], values[order], (cols, rows))


def _stable_order(keys: Tensor, bound: int) -> Tensor:
    """The indices that sort ``keys`` (in ``[0, bound)``) stably.  On the CPU, keys that fit in
    16 bits (maps of up to 65,536 pixels) go to numpy's radix sort, which takes a tenth of
    the time of torch's merge sort (50 against 650 us for 14,000 keys); the order is the same."""
    if keys.device.type == "cpu" and bound <= 1 << 16:
        narrow = keys.to(torch.int16).numpy().view(np.uint16)  # the same bits, read unsigned
        return torch.from_numpy(np.argsort(narrow, kind="stable"))
    return torch.argsort(keys.to(torch.int32) if bound <= 2**31 else keys, stable=True)  # narrower keys sort faster


def _block(bins: int, channels: int) -> int:
    """RoIs per block: ``_CACHE`` elements of ``(bins, C)`` rows."""
    return max(1, _CACHE // max(1, bins * channels))


def channels_last(input: Tensor, images: Tensor) -> Tensor:
    """The images in use of ``input`` as a contiguous ``(pixels, C)`` matrix in the compute dtype."""
    x = input if images.numel() == input.shape[0] else input.index_select(0, images)
    x = x.to(compute_dtype(input.dtype)).permute(0, 2, 3, 1).reshape(x.shape[0] * x.shape[2] * x.shape[3], x.shape[1])
    return x.contiguous()  # row-major: MKL would copy it for every block


def scatter_images(gx: Tensor, images: Tensor, shape: torch.Size) -> Tensor:
    """``gx (n, C, H, W)`` for the images in use, placed in a zero ``shape`` tensor."""
    if images.numel() == shape[0]:
        return gx
    full = gx.new_zeros(shape)
    full[images] = gx
    return full


def pool_forward(x: Tensor, matrix: PoolingMatrix, count: int) -> Tensor:
    """``S @ X`` as ``(K, C, bins)`` for ``x`` :func:`channels_last` (RoI-major matrix), on
    ``count`` threads.

    Blocks of RoIs, so that each block's ``(bins, C)`` rows stay in cache while they are
    transposed into the output."""
    channels, bins = x.shape[1], matrix.bins
    out = x.new_empty((matrix.rois, channels, bins))

    def block(rows):
        r0, r1, a, b = rows
        part = scratch(r1 - r0, channels, x.dtype, x.device)
        torch.addmm(part, matrix.block(*rows), x, beta=0, out=part)  # no zero-fill, no copy of the result
        out[r0 // bins : r1 // bins] = part.view((r1 - r0) // bins, bins, channels).transpose(1, 2)

    run_tasks(block, matrix.row_blocks(_block(bins, channels) * bins), count, x.device)
    return out


def pool_backward(grad: Tensor, matrix: PoolingMatrix, shape: torch.Size, count: int) -> Tensor:
    """``S^T @ G`` for ``grad (K, C, bins)``: the input gradient, ``shape``, in ``grad``'s dtype
    (contiguous), on ``count`` threads.

    Blocks of RoIs, each block's ``S^T`` (a stable sort) times its ``G`` rows, added into one
    partial sum per thread: block ``i`` into partial ``i % count``, in block order, and the
    partials added in order, so the result does not depend on timing."""
    n, channels, height, width = shape
    bins = matrix.bins
    blocks = matrix.row_blocks(_block(bins, channels) * bins)
    parts = min(count, len(blocks)) if grad.device.type == "cpu" else 1
    sums = [grad.new_zeros(matrix.pixels, channels) for _ in range(max(1, parts))]

    def partial(j):
        for r0, r1, a, b in blocks[j::parts]:
            g = scratch(r1 - r0, channels, grad.dtype, grad.device)
            g.view((r1 - r0) // bins, bins, channels).copy_(grad[r0 // bins : r1 // bins].transpose(1, 2))
            torch.addmm(sums[j], transpose(matrix.block(r0, r1, a, b)), g, out=sums[j])

    run_tasks(partial, range(parts), parts, grad.device)
    gx = sums[0]
    for other in sums[1:]:
        gx += other
    return scatter_images(channels_first(gx, matrix.images.numel(), height, width), matrix.images, shape)


def channels_first(x: Tensor, n: int, height: int, width: int) -> Tensor:
    """``x`` ``(n * H * W, C)`` (channel-last pixels) as a contiguous ``(n, C, H, W)`` tensor,
    an image at a time (2-D transposes are torch's fast copy; a 4-D permutation is not)."""
    pixels, channels = height * width, x.shape[1]
    out = x.new_empty(n, channels, height, width)
    for i in range(n):
        out[i].view(channels, pixels).copy_(x[i * pixels : (i + 1) * pixels].t())
    return out


def ps_inputs(input: Tensor, images: Tensor, bins: int) -> Tensor:
    """``(bins, pixels, C / bins)``: slice ``p`` holds the channels ``c * bins + p``, channel-last."""
    x = input if images.numel() == input.shape[0] else input.index_select(0, images)
    n, channels, height, width = x.shape
    x = x.to(compute_dtype(input.dtype)).view(n, channels // bins, bins, height, width)
    return x.permute(2, 0, 3, 4, 1).reshape(bins, n * height * width, channels // bins).contiguous()


def ps_pool_forward(xs: Tensor, matrix: PoolingMatrix) -> Tensor:
    """Position-sensitive ``S @ X``: ``(K, C / bins, bins)``, bin ``p`` from channels ``c * bins + p``,
    for ``xs`` :func:`ps_inputs`: one product of the block-diagonal ``bin_major`` matrix with
    the bins' channel slices one above the other (on the calling thread)."""
    bins, rois = matrix.bins, matrix.rois
    out = torch.sparse.mm(matrix.csr(), xs.view(bins * xs.shape[1], xs.shape[2]))  # rows (p, k)
    return out.view(bins, rois, xs.shape[2]).permute(1, 2, 0).contiguous()


def ps_pool_backward(grad: Tensor, matrix: PoolingMatrix, shape: torch.Size) -> Tensor:
    """``S^T @ G`` of :func:`ps_pool_forward` for ``grad (K, C / bins, bins)``: the input
    gradient, ``shape``, in ``grad``'s dtype (one product, on the calling thread)."""
    n, channels, height, width = shape
    bins, used = matrix.bins, matrix.images.numel()
    g = grad.permute(2, 0, 1).reshape(bins * matrix.rois, channels // bins)  # rows (p, k)
    part = torch.sparse.mm(transpose(matrix.csr()), g)  # rows (p, slot, y, x)
    area, cp = height * width, channels // bins
    native = _native_for(part)
    if native is None:
        gx = part.view(bins, used, height, width, cp).permute(1, 4, 0, 2, 3).reshape(used, channels, height, width)
    else:  # the same moves, a few times faster (kernels/sparse.h: transpose_blocks)
        gx = part.new_empty(used, channels, height, width)
        for i in range(used):  # image i: for each bin p, (area x cp) rows -> channels c * bins + p
            native.transpose_blocks(part[i * area :].data_ptr(), gx[i].data_ptr(), part.element_size(), bins, area, cp,
                                    used * area * cp, cp, area, bins * area)  # fmt: skip
    return scatter_images(gx, matrix.images, shape)
