// Maxima over integer rectangles from a sparse table, and the max pooling gradient
// (the loops of rfmap/ops/_rectmax.py).
#pragma once

#include "common.h"

namespace rfmap {

struct Windows {  // the table rows of a grid of ny x nx windows per bin: base + ys[jy] + xs[jx]
    const int64_t* base;   // [K, P]
    const int64_t* ys;     // [ny, K, P]
    const int64_t* xs;     // [nx, K, P]
    int64_t ny, nx, rois, bins;
};

// Level (a, b) of a sparse table from two windows of the level below, values and the pixels
// of their first maxima together: the greater value wins, and on a tie the smaller pixel (the
// first in row-major order).  n: elements of contiguous [positions, group] runs.
template <typename T>
RFMAP_CLONES void combine(const T* __restrict__ v1, const T* __restrict__ v2, const int32_t* __restrict__ p1,
                          const int32_t* __restrict__ p2, T* __restrict__ v, int32_t* __restrict__ p, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const T a = v1[i], b = v2[i];
        const int32_t pa = p1[i], pb = p2[i], tie = pa < pb ? pa : pb;
        v[i] = b > a ? b : a;
        p[i] = b > a ? pb : (a > b ? pa : tie);
    }
}

// Fill the levels (a, b) <= (levels_y, levels_x) of a sparse table over `maps` maps of height x
// width (rfmap/ops/_rectmax.py's _SparseTable: level (a, b) at rows offset[a, b] + (i H_a + h)
// W_b + w, levels in row-major order) from level (0, 0), the maps themselves; `pixels` gets
// the pixel h * width + w of each window's first maximum.
template <typename T>
void build(T* values, int32_t* pixels, int64_t maps, int64_t height, int64_t width, int64_t levels_y,
           int64_t levels_x, int64_t group) {
    const int64_t columns = levels_x + 1, area = height * width;
    std::vector<int64_t> offset((levels_y + 1) * columns);
    for (int64_t a = 0, total = 0; a <= levels_y; ++a) {
        for (int64_t b = 0; b <= levels_x; ++b) {
            offset[a * columns + b] = total;
            total += maps * (height - (int64_t(1) << a) + 1) * (width - (int64_t(1) << b) + 1);
        }
    }
    for (int64_t i = 0; i < maps; ++i) {
        for (int64_t q = 0; q < area; ++q) std::fill_n(pixels + (i * area + q) * group, group, int32_t(q));
    }
    for (int64_t a = 0; a <= levels_y; ++a) {
        const int64_t rows = height - (int64_t(1) << a) + 1;
        for (int64_t b = a ? 0 : 1; b <= levels_x; ++b) {
            const int64_t cols = width - (int64_t(1) << b) + 1, at = offset[a * columns + b];
            for (int64_t i = 0; i < maps; ++i) {
                if (b) {  // from (a, b - 1): windows side by side, 2^(b-1) columns apart
                    const int64_t below = width - (int64_t(1) << (b - 1)) + 1, shift = int64_t(1) << (b - 1);
                    for (int64_t h = 0; h < rows; ++h) {
                        const int64_t from = offset[a * columns + b - 1] + (i * rows + h) * below, to = at + (i * rows + h) * cols;
                        combine(values + from * group, values + (from + shift) * group, pixels + from * group,
                                pixels + (from + shift) * group, values + to * group, pixels + to * group, cols * group);
                    }
                } else {  // from (a - 1, 0): windows one above the other, 2^(a-1) rows apart
                    const int64_t below = height - (int64_t(1) << (a - 1)) + 1, shift = (int64_t(1) << (a - 1)) * width;
                    const int64_t from = offset[(a - 1) * columns] + i * below * width, to = at + i * rows * width;
                    combine(values + from * group, values + (from + shift) * group, pixels + from * group,
                            pixels + (from + shift) * group, values + to * group, pixels + to * group, rows * width * group);
                }
            }
        }
    }
}

// The maximum over a bin's windows (`values`: a table without NaN) and, with `pixels`, the
// pixel of its first occurrence: the smallest first-maximum pixel among the windows that hold
// it.  kLanes channels at a time in registers, every window in turn (`rows`: scratch for the
// windows' table rows).
template <typename T>
RFMAP_CLONES void max_rows(const T* __restrict__ values, const int32_t* __restrict__ pixels, const Windows& w,
                           int64_t group, int64_t k, int64_t p, T* __restrict__ best, int32_t* __restrict__ at,
                           int64_t* __restrict__ rows) {
    typedef typename Lanes<T>::Values V;
    typedef T Loose __attribute__((vector_size(sizeof(V)), aligned(sizeof(T))));  // unaligned loads
    typedef int32_t LooseIds __attribute__((vector_size(32), aligned(4)));
    const int64_t kp = k * w.bins + p, plane = w.rois * w.bins, count = w.ny * w.nx;
    for (int64_t jy = 0, j = 0; jy < w.ny; ++jy) {
        for (int64_t jx = 0; jx < w.nx; ++jx, ++j) {
            rows[j] = (w.base[kp] + w.ys[jy * plane + kp] + w.xs[jx * plane + kp]) * group;
        }
    }
    int64_t c = 0;
    for (; c + kLanes <= group; c += kLanes) {
        V b = *reinterpret_cast<const Loose*>(values + rows[0] + c);
        if (!pixels) {
            for (int64_t j = 1; j < count; ++j) {
                const V v = *reinterpret_cast<const Loose*>(values + rows[j] + c);
                b = v > b ? v : b;
            }
            *reinterpret_cast<Loose*>(best + c) = b;
            continue;
        }
        Ids a = *reinterpret_cast<const LooseIds*>(pixels + rows[0] + c);
        for (int64_t j = 1; j < count; ++j) {
            const V v = *reinterpret_cast<const Loose*>(values + rows[j] + c);
            const Ids q = *reinterpret_cast<const LooseIds*>(pixels + rows[j] + c);
            const Ids greater = __builtin_convertvector(v > b, Ids), equal = __builtin_convertvector(v == b, Ids);
            a = greater ? q : (equal ? (q < a ? q : a) : a);
            b = v > b ? v : b;
        }
        *reinterpret_cast<Loose*>(best + c) = b;
        *reinterpret_cast<LooseIds*>(at + c) = a;
    }
    for (; c < group; ++c) {  // the channels after the last whole register
        T b = values[rows[0] + c];
        int32_t a = pixels ? pixels[rows[0] + c] : 0;
        for (int64_t j = 1; j < count; ++j) {
            const T v = values[rows[j] + c];
            if (pixels) {
                const int32_t q = pixels[rows[j] + c];
                a = v > b ? q : (v == b && q < a ? q : a);
            }
            b = v > b ? v : b;
        }
        best[c] = b;
        if (pixels) at[c] = a;
    }
}

// Tables without NaN (the caller replaced it with -FLT_MAX, which no value beats): for RoIs
// k0 .. k1 - 1 and channels c0 .. c0 + group - 1, out[k, c, p] = the maximum over the
// bin's windows and, when `pixels` (the table of first-maximum pixels) is given,
// argmax[k, c, p] = the pixel h * W + w of its first occurrence in the RoI's plane (-1 for a
// bin holding only -FLT_MAX: no winner).  A RoI's results, one contiguous (group, bins) block of the
// (K, C, bins) outputs, are found bin by bin as (bins, group) tiles, transposed, and
// streamed out.
template <typename T, typename I>
void query(const T* table, const Windows& w, int64_t group, int64_t k0, int64_t k1, int64_t channels, int64_t c0,
           T* out, const int32_t* pixels, I* argmax) {
    const T lost = -std::numeric_limits<float>::max();
    const int64_t size = w.bins * group;
    std::vector<T> tile(size), values(size);
    std::vector<int32_t> at(pixels ? size : 0), where(pixels ? size : 0);
    std::vector<I> index(pixels && sizeof(I) != 4 ? size : 0);
    std::vector<int64_t> rows(w.ny * w.nx);
    for (int64_t k = k0; k < k1; ++k) {
        for (int64_t p = 0; p < w.bins; ++p) {
            max_rows(table, pixels, w, group, k, p, tile.data() + p * group, pixels ? at.data() + p * group : nullptr,
                     rows.data());
        }
        const int64_t start = (k * channels + c0) * w.bins;
        transpose(tile.data(), w.bins, group, values.data(), w.bins);
        stream_copy(out + start, values.data(), size);
        if (!pixels) continue;
        for (int64_t e = 0; e < size; ++e) at[e] = tile[e] == lost ? -1 : at[e];
        transpose(at.data(), w.bins, group, where.data(), w.bins);
        if constexpr (sizeof(I) == 4) {
            stream_copy(argmax + start, reinterpret_cast<const I*>(where.data()), size);
        } else {
            for (int64_t e = 0; e < size; ++e) index[e] = I(where[e]);
            stream_copy(argmax + start, index.data(), size);
        }
    }
    stream_fence();
}

// The input gradient of RoI max pooling, channels c0 .. c1 - 1 of a (K, C, bins) gradient:
// the planes (n, c) of gx (N, C, H * W) zeroed, then grad[k, c, i] added at pixel
// argmax[k, c, i] of plane (batch[k], c), nothing for -1 (no winner), in (k, i) order; tasks
// over disjoint channels write disjoint planes.
template <typename T, typename I>
void scatter_planes(const T* grad, const I* argmax, const int64_t* batch, T* gx, int64_t images, int64_t rois,
                    int64_t channels, int64_t bins, int64_t area, int64_t c0, int64_t c1) {
    for (int64_t n = 0; n < images; ++n) std::fill_n(gx + (n * channels + c0) * area, (c1 - c0) * area, T(0));
    for (int64_t k = 0; k < rois; ++k) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t at = (k * channels + c) * bins;
            T* plane = gx + (batch[k] * channels + c) * area;
            for (int64_t i = 0; i < bins; ++i) {
                if (argmax[at + i] >= 0) plane[argmax[at + i]] += grad[at + i];
            }
        }
    }
}

}  // namespace rfmap
