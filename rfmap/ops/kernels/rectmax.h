// Maxima over integer rectangles from a sparse table, and the max pooling gradient
// (the loops of rfmap/ops/_rectmax.py).
#pragma once

#include "common.h"

namespace rfmap {

struct Windows {  // the table rows of a grid of ny x nx windows per bin: base + ys[jy] + xs[jx]
    const int64_t* base;  // [K, P]
    const int64_t* ys;    // [ny, K, P]
    const int64_t* xs;    // [nx, K, P]
    int64_t ny, nx, rois, bins;
};

template <typename T>
RFMAP_CLONES void max_rows(const T* __restrict__ table, const Windows& w, int64_t group, int64_t k, int64_t p,
                           T* __restrict__ best) {
    const int64_t kp = k * w.bins + p, plane = w.rois * w.bins;
    const int64_t base = w.base[kp];
    for (int64_t jy = 0; jy < w.ny; ++jy) {
        for (int64_t jx = 0; jx < w.nx; ++jx) {
            const T* __restrict__ row = table + (base + w.ys[jy * plane + kp] + w.xs[jx * plane + kp]) * group;
            if (jy == 0 && jx == 0) {
                std::memcpy(best, row, sizeof(T) * group);
                continue;
            }
            for (int64_t c = 0; c < group; ++c) {
                const T a = row[c], b = best[c];
                best[c] = a > b ? a : b;
            }
        }
    }
}

// The pixel of the first maximum of a rectangle, given the maximum: the smallest h * width + w
// in [top, bottom) x [left, right) whose value equals best[c], per channel (`plane`: the
// table's first level, the map itself as [pixels, group]).  The C loop keeps the first value
// greater than all before it, which is the first occurrence of the maximum.
template <typename T>
RFMAP_CLONES void first_equal(const T* __restrict__ plane, int64_t width, int64_t top, int64_t bottom, int64_t left,
                              int64_t right, int64_t group, const T* __restrict__ best, int32_t* __restrict__ at) {
    for (int64_t c = 0; c < group; ++c) at[c] = std::numeric_limits<int32_t>::max();
    for (int64_t h = top; h < bottom; ++h) {
        for (int64_t w = left; w < right; ++w) {
            const T* __restrict__ row = plane + (h * width + w) * group;
            const int32_t pixel = int32_t(h * width + w);
            for (int64_t c = 0; c < group; ++c) {
                const int32_t hit = row[c] == best[c] ? pixel : std::numeric_limits<int32_t>::max();
                at[c] = hit < at[c] ? hit : at[c];
            }
        }
    }
}

struct Argmax {  // where query() writes the first maxima: flat indices into the input
    const int64_t* rect;   // [4, K, P]: top, bottom, left, right of each bin (non-empty)
    const int64_t* slot;   // [K]: the RoI's image among the table's maps
    const int64_t* batch;  // [K]: its image in the input
    int64_t width, pixels, none;  // none: the index of "no winner"
};

// Float tables (no NaN: the caller replaced it with -FLT_MAX, which no value beats): for RoIs
// k0 .. k1 - 1 and channels c0 .. c0 + group - 1, out[k, c, p] = the maximum over the bin's
// windows and, when `where` is given, argmax[k, c, p] = the flat index of its first occurrence
// (`none` for a bin holding only -FLT_MAX: no winner).  A RoI's results are one contiguous
// (group, bins) block of the (K, C, bins) outputs: they are gathered in buffers of that layout
// (hot in the cache), then copied out in one run.
template <typename T, typename I>
void query(const T* table, const Windows& w, int64_t group, int64_t k0, int64_t k1, int64_t channels, int64_t c0,
           T* out, const Argmax* where, I* argmax) {
    const T lost = -std::numeric_limits<float>::max();
    std::vector<T> best(group), values(w.bins * group);
    std::vector<int32_t> at(group);
    std::vector<I> index(where ? w.bins * group : 0);
    const int64_t plane = w.rois * w.bins;
    for (int64_t k = k0; k < k1; ++k) {
        for (int64_t p = 0; p < w.bins; ++p) {
            max_rows(table, w, group, k, p, best.data());
            for (int64_t c = 0; c < group; ++c) values[c * w.bins + p] = best[c];
            if (!where) continue;
            const int64_t kp = k * w.bins + p, *r = where->rect;
            first_equal(table + where->slot[k] * where->pixels * group, where->width, r[kp], r[plane + kp],
                        r[2 * plane + kp], r[3 * plane + kp], group, best.data(), at.data());
            const int64_t first = (where->batch[k] * channels + c0) * where->pixels;
            for (int64_t c = 0; c < group; ++c) {
                index[c * w.bins + p] = I(best[c] == lost ? where->none : first + c * where->pixels + at[c]);
            }
        }
        const int64_t start = (k * channels + c0) * w.bins;
        std::memcpy(out + start, values.data(), sizeof(T) * values.size());
        if (where) std::memcpy(argmax + start, index.data(), sizeof(I) * index.size());
    }
}

template <typename T, typename I>
void scatter(const T* grad, const I* argmax, T* gx, int64_t outer, int64_t channels, int64_t inner, int64_t c0,
             int64_t c1) {
    for (int64_t a = 0; a < outer; ++a) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t at = (a * channels + c) * inner;
            for (int64_t i = 0; i < inner; ++i) gx[argmax[at + i]] += grad[at + i];
        }
    }
}

}  // namespace rfmap
