// The sparse pooling matrices of the linear RoI ops (rfmap/ops/_sparse.py): a separable matrix's
// rows and a CSR matrix's transpose, both exactly the PyTorch path's entries in its order; and
// the strided transposes that put a position-sensitive gradient in the input's channel order.
#pragma once

#include <vector>

#include "common.h"

namespace rfmap {

// The columns and weights of a separable pooling matrix (PoolingMatrix.separable), written in
// row order into col and val: row (k, ph, pw) -- RoI after RoI, each bin after bin, or with
// bin_major bin after bin, each RoI after RoI -- holds, for each y with wy[k, ph, y] != 0 and,
// for each, each x with wx[k, pw, x] != 0 (both increasing), the column slot[k] H W + y W + x
// (plus (ph PW + pw) block: a bin_major matrix is block diagonal, bin after bin) with weight
// wy[k, ph, y] * wx[k, pw, x] (a product in T, as torch computes it; the test is on the
// factors, so a product that underflows to 0 is kept, and NaN counts as non-zero).
// wy: (rois, ph, height), wx: (rois, pw, width), contiguous; col and val hold the sum over the
// rows of (non-zeros of wy's row) x (non-zeros of wx's row) entries.
template <typename T, typename I>
void separable_rows(const T* wy, const T* wx, const int64_t* slot, int64_t rois, int64_t ph, int64_t pw, int64_t height,
                    int64_t width, bool bin_major, int64_t block, I* col, T* val) {
    // the non-zeros of every row of wy and of wx, found once: row r's are [start[r], start[r + 1])
    auto gather = [](const T* w, int64_t rows, int64_t length, std::vector<int32_t>& at, std::vector<int64_t>& start) {
        start.assign(rows + 1, 0);
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t i = 0; i < length; ++i) {
                if (w[r * length + i] != T(0)) at.push_back(int32_t(i));
            }
            start[r + 1] = int64_t(at.size());
        }
    };
    std::vector<int32_t> ys, xs;
    std::vector<int64_t> ystart, xstart;
    gather(wy, rois * ph, height, ys, ystart);
    gather(wx, rois * pw, width, xs, xstart);
    auto row = [&](int64_t k, int64_t a, int64_t b) {
        const int64_t base = slot[k] * height * width + (a * pw + b) * block, yr = k * ph + a, xr = k * pw + b;
        for (int64_t i = ystart[yr]; i < ystart[yr + 1]; ++i) {
            const T weight = wy[yr * height + ys[i]];
            const int64_t at = base + ys[i] * width;
            for (int64_t j = xstart[xr]; j < xstart[xr + 1]; ++j) {
                *col++ = I(at + xs[j]);
                *val++ = weight * wx[xr * width + xs[j]];
            }
        }
    };
    if (bin_major) {
        for (int64_t a = 0; a < ph; ++a) {
            for (int64_t b = 0; b < pw; ++b) {
                for (int64_t k = 0; k < rois; ++k) row(k, a, b);
            }
        }
    } else {
        for (int64_t k = 0; k < rois; ++k) {
            for (int64_t a = 0; a < ph; ++a) {
                for (int64_t b = 0; b < pw; ++b) row(k, a, b);
            }
        }
    }
}

// The transpose of a rows x cols CSR matrix (crow from 0, col, val) as a CSR matrix: crow_t
// (cols + 1), the row of each entry (row_t) and its value (val_t), each column's entries in
// the order of the rows (a stable counting sort by column: products with the transpose are
// deterministic).  crow_t serves as each column's cursor while the entries are placed.
template <typename T, typename I>
void csr_transpose(const I* crow, const I* col, const T* val, int64_t rows, int64_t cols, I* crow_t, I* row_t,
                   T* val_t) {
    std::fill_n(crow_t, cols + 1, I(0));
    const int64_t entries = int64_t(crow[rows]);
    for (int64_t e = 0; e < entries; ++e) ++crow_t[col[e] + 1];
    for (int64_t c = 0; c < cols; ++c) crow_t[c + 1] += crow_t[c];  // crow_t[c]: column c's first entry
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t e = crow[r]; e < crow[r + 1]; ++e) {
            const I at = crow_t[col[e]]++;
            row_t[at] = I(r);
            val_t[at] = val[e];
        }
    }
    for (int64_t c = cols; c > 0; --c) crow_t[c] = crow_t[c - 1];  // each cursor ended at the next column's first
    crow_t[0] = 0;
}

// Batched strided transposes, for the channel slices of position-sensitive pooling
// (rfmap/ops/_sparse.py: ps_pool_backward): for each block b,
// dst[b dst_step + j dst_stride + i] = src[b src_step + i src_stride + j], i < rows, j < cols,
// a tile at a time (both sides' lines stay in cache while a tile is moved).
template <typename T>
void transpose_blocks(const T* __restrict__ src, T* __restrict__ dst, int64_t blocks, int64_t rows, int64_t cols,
                      int64_t src_step, int64_t src_stride, int64_t dst_step, int64_t dst_stride) {
    constexpr int64_t kTile = 16;
    for (int64_t b = 0; b < blocks; ++b) {
        const T* s = src + b * src_step;
        T* d = dst + b * dst_step;
        for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
            const int64_t i1 = std::min(rows, i0 + kTile);
            for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
                const int64_t j1 = std::min(cols, j0 + kTile);
                for (int64_t j = j0; j < j1; ++j) {
                    for (int64_t i = i0; i < i1; ++i) d[j * dst_stride + i] = s[i * src_stride + j];
                }
            }
        }
    }
}

}  // namespace rfmap
