// Spatial pyramid max pooling (the loop of rfmap/ops/spp.py).
#pragma once

#include "common.h"

namespace rfmap {

// Spatial pyramid max pooling of the planes of an (N, C, H, W) input that a thread claims
// (common.h: Claims; whole blocks of kLanes planes but for the last), kLanes planes at a
// time: the planes are interleaved (pixel-major, plane-minor) so that every step below works
// on kLanes planes at once.  Per level n, bin (i, j) spans rows [i H / n, ceil((i + 1) H / n))
// and columns [j W / n, ceil((j + 1) W / n)); its maximum is found along the rows of the bin
// first, then down the bin's column of row results.  The scan of both passes is
// adaptive_max_pool2d's: start at -inf with the bin's first pixel, take a value that is greater
// or NaN, so the result is the last NaN if any, else the first maximum in row-major order.
// A level whose bins are unions of g x g bins of a finer level (SPP-net's 3, 2, 1 on 6 for a
// 13 x 13 map) is pooled from that level: the maximum of maxima, NaN propagating as in the
// direct scan; its argmax, in a block without NaN, the first of the fine bins' first maxima
// that equal it (with NaN in the block, the argmax levels are scanned directly).
// out (N, C * sum(n^2)): level after level, each (C, n, n); argmax: the same layout, the pixel
// h * W + w of each bin's winner in its plane (int16 or int32).

// one step of adaptive_max_pool2d's scan on every lane: take x where greater or NaN (a block
// without NaN skips that test)
template <typename T, bool Index, bool NaN>
__attribute__((always_inline)) inline void take(typename Lanes<T>::Values x, Ids index, typename Lanes<T>::Values& m,
                                                Ids& id) {
    typename Lanes<T>::Mask greater = x > m;
    if (NaN) greater |= x != x;
    m = greater ? x : m;
    if (Index) id = __builtin_convertvector(greater, Ids) ? index : id;
}

// Merge a finer bin's result (x, its pixel) into a coarser bin's (m, id), for blocks without
// NaN: the coarse bin's first maximum is the first among its fine bins' first maxima that
// equal its maximum (a bin of -inf alone keeps its first pixel, which is the smallest of all)
template <typename T>
__attribute__((always_inline)) inline void first_of(typename Lanes<T>::Values x, Ids index, typename Lanes<T>::Values& m,
                                                    Ids& id) {
    const Ids greater = __builtin_convertvector(x > m, Ids), equal = __builtin_convertvector(x == m, Ids);
    const Ids smaller = index < id ? index : id;
    m = x > m ? x : m;
    id = greater ? index : (equal ? smaller : id);
}

struct Level {       // one level of the pyramid, in the order it is computed (finest first)
    int64_t n;       // bins per axis
    int64_t done;    // its first bin among all levels' bins (the order of the output)
    const int64_t* cols;  // bin j spans columns [cols[2j], cols[2j + 1]); rows likewise
    const int64_t* rows;
    int64_t from;    // the finer level (index into the plan) whose bins it groups, or -1
    int64_t group;   // g: bin (i, j) = fine bins [i g, (i + 1) g) x [j g, (j + 1) g)
};

template <typename T, bool Index, bool NaN>
__attribute__((always_inline)) inline void spp_levels(const typename Lanes<T>::Values* __restrict__ px, int64_t width,
                                                      int64_t height, const Level* plan, int64_t count,
                                                      typename Lanes<T>::Values* __restrict__ rv, Ids* __restrict__ ri,
                                                      typename Lanes<T>::Values* __restrict__ bv,
                                                      Ids* __restrict__ bi) {
    typedef typename Lanes<T>::Values V;
    for (int64_t v = 0; v < count; ++v) {
        const Level& level = plan[v];
        const int64_t n = level.n, *cols = level.cols, *rows = level.rows;
        if (level.from >= 0 && !(Index && NaN)) {  // from a finer level's results
            const Level& fine = plan[level.from];
            const int64_t g = level.group;
            for (int64_t i = 0; i < n; ++i) {
                for (int64_t j = 0; j < n; ++j) {
                    V m = bv[fine.done + i * g * fine.n + j * g];
                    Ids id = Index ? bi[fine.done + i * g * fine.n + j * g] : Ids{};
                    for (int64_t a = i * g; a < (i + 1) * g; ++a) {
                        for (int64_t b = j * g; b < (j + 1) * g; ++b) {
                            const int64_t at = fine.done + a * fine.n + b;
                            if (a == i * g && b == j * g) continue;  // the start
                            if (Index) {
                                first_of<T>(bv[at], bi[at], m, id);
                            } else {
                                take<T, false, NaN>(bv[at], id, m, id);
                            }
                        }
                    }
                    bv[level.done + i * n + j] = m;
                    if (Index) bi[level.done + i * n + j] = id;
                }
            }
            continue;
        }
        // a bin's scan starts from its first element (the same as from -inf with the bin's first
        // pixel: that element is taken unless it is -inf, and then the first pixel stays)
        for (int64_t h = 0; h < height; ++h) {  // along the rows
            for (int64_t j = 0; j < n; ++j) {
                const int64_t w0 = h * width + cols[2 * j], w1 = h * width + cols[2 * j + 1];
                V m = px[w0];
                Ids id = Ids{} + int32_t(w0);
                for (int64_t w = w0 + 1; w < w1; ++w) take<T, Index, NaN>(px[w], Ids{} + int32_t(w), m, id);
                rv[h * n + j] = m;
                if (Index) ri[h * n + j] = id;
            }
        }
        for (int64_t i = 0; i < n; ++i) {  // down the columns of row results
            for (int64_t j = 0; j < n; ++j) {
                const int64_t h0 = rows[2 * i], h1 = rows[2 * i + 1];
                V m = rv[h0 * n + j];
                Ids id = Index ? ri[h0 * n + j] : Ids{};
                for (int64_t h = h0 + 1; h < h1; ++h) take<T, Index, NaN>(rv[h * n + j], Index ? ri[h * n + j] : Ids{}, m, id);
                bv[level.done + i * n + j] = m;
                if (Index) bi[level.done + i * n + j] = id;
            }
        }
    }
}

// pixels[p][l] = plane l's pixel p for l < lanes (the first plane's for the others); true if
// any is NaN.  float: 8 x 8 tiles transposed in registers.
template <typename T>
__attribute__((always_inline)) inline bool interleave(const T* __restrict__ planes, int64_t lanes, int64_t area,
                                                      typename Lanes<T>::Values* __restrict__ pixels) {
    typedef typename Lanes<T>::Values V;
    typename Lanes<T>::Mask nan{};
    const T* source[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) source[l] = planes + (l < lanes ? l : 0) * area;
    int64_t p = 0;
#ifdef RFMAP_SHUFFLES
    if constexpr (sizeof(T) == 4) {
        for (; p + kLanes <= area; p += kLanes) {
            typedef float Unaligned __attribute__((vector_size(32), aligned(4)));
            V r[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) {
                r[l] = *reinterpret_cast<const Unaligned*>(source[l] + p);
                nan |= r[l] != r[l];
            }
            transpose8(r);
            for (int64_t k = 0; k < kLanes; ++k) pixels[p + k] = r[k];
        }
    }
#endif
    const int64_t tail = p;
    T* flat = reinterpret_cast<T*>(pixels);
    for (; p < area; ++p) {
        for (int64_t l = 0; l < kLanes; ++l) flat[p * kLanes + l] = source[l][p];
    }
    for (p = tail; p < area; ++p) nan |= pixels[p] != pixels[p];  // once all is stored (no store-to-load stalls)
    bool any = false;
    for (int64_t l = 0; l < kLanes; ++l) any |= nan[l] != 0;
    return any;
}

template <typename T, bool Index>
RFMAP_CLONES void spp_block(const T* __restrict__ planes, int64_t lanes, int64_t height, int64_t width, const Level* plan,
                            int64_t count, T* pixels, T* rows, int32_t* where, T* best, int32_t* at) {
    typedef typename Lanes<T>::Values V;
    V* px = reinterpret_cast<V*>(pixels);
    V* rv = reinterpret_cast<V*>(rows);
    V* bv = reinterpret_cast<V*>(best);
    Ids* ri = reinterpret_cast<Ids*>(where);
    Ids* bi = reinterpret_cast<Ids*>(at);
    if (interleave<T>(planes, lanes, height * width, px)) {
        spp_levels<T, Index, true>(px, width, height, plan, count, rv, ri, bv, bi);
    } else {
        spp_levels<T, Index, false>(px, width, height, plan, count, rv, ri, bv, bi);
    }
}

// The levels in the order they are computed (finest first), each with its bin edges and, when
// its bins are unions of a computed level's bins, that level.
std::vector<Level> spp_plan(const int64_t* levels, int64_t count, int64_t height, int64_t width,
                            std::vector<int64_t>& edges) {
    std::vector<int64_t> order(count), done(count);
    for (int64_t v = 0, total = 0; v < count; total += levels[v] * levels[v], ++v) {
        order[v] = v;
        done[v] = total;
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return levels[a] > levels[b]; });
    edges.assign(0, 0);
    for (int64_t v : order) {
        for (int64_t length : {width, height}) {
            for (int64_t j = 0; j < levels[v]; ++j) {
                edges.push_back(j * length / levels[v]);
                edges.push_back(((j + 1) * length + levels[v] - 1) / levels[v]);
            }
        }
    }
    std::vector<Level> plan;
    for (int64_t k = 0, e = 0; k < count; e += 4 * levels[order[k]], ++k) {
        const int64_t n = levels[order[k]];
        Level level{n, done[order[k]], edges.data() + e, edges.data() + e + 2 * n, -1, 0};
        for (int64_t f = 0; f < k && level.from < 0; ++f) {
            const Level& fine = plan[f];
            const int64_t g = fine.n / n;
            bool unions = fine.n % n == 0 && fine.n > n;
            for (int64_t i = 0; unions && i < n; ++i) {
                unions = fine.cols[2 * i * g] == level.cols[2 * i] && fine.cols[2 * ((i + 1) * g - 1) + 1] == level.cols[2 * i + 1] &&
                         fine.rows[2 * i * g] == level.rows[2 * i] && fine.rows[2 * ((i + 1) * g - 1) + 1] == level.rows[2 * i + 1];
            }
            if (unions) {
                level.from = f;
                level.group = g;
            }
        }
        plan.push_back(level);
    }
    return plan;
}

// One plane's results (`values`, and the argmax's `pixels` when `argmax` is given) into
// out (N, C * bins): level after level, each a (C, n, n) block
template <typename T, typename I>
inline void spp_store(const T* values, const int32_t* pixels, int64_t plane, int64_t channels, const int64_t* levels,
                      int64_t count, int64_t bins, T* out, I* argmax) {
    const int64_t c = plane % channels;
    for (int64_t v = 0, o = plane / channels * channels * bins, b = 0; v < count; ++v) {
        const int64_t size = levels[v] * levels[v], at = o + c * size;
        for (int64_t k = 0; k < size; ++k) out[at + k] = values[b + k];
        if (argmax) {
            for (int64_t k = 0; k < size; ++k) argmax[at + k] = I(pixels[b + k]);
        }
        o += channels * size;
        b += size;
    }
}

template <typename T, typename I>
void spp_max(const T* input, Claims claims, int64_t channels, int64_t height, int64_t width,
             const int64_t* levels, int64_t count, T* out, I* argmax) {
    std::vector<int64_t> edges;
    const std::vector<Level> plan = spp_plan(levels, count, height, width, edges);
    int64_t bins = 0, widest = 0;
    for (int64_t v = 0; v < count; ++v) {
        bins += levels[v] * levels[v];
        widest = std::max(widest, levels[v]);
    }
    const int64_t area = height * width;
    const Buffer<T> pixels(area * kLanes), rows(height * widest * kLanes), best(bins * kLanes);
    const Buffer<int32_t> where(argmax ? height * widest * kLanes : 0), at(argmax ? bins * kLanes : 0);
    const int64_t stride = (bins + kLanes - 1) / kLanes * kLanes;  // one lane's results, padded
    const Buffer<T> values(stride * kLanes);
    const Buffer<int32_t> pixel(argmax ? stride * kLanes : 0);
    for (int64_t first, last; claims.next(first, last);) {
        for (int64_t q = first; q < last; q += kLanes) {
            const int64_t lanes = std::min(last - q, kLanes);
            if (argmax) {
                spp_block<T, true>(input + q * area, lanes, height, width, plan.data(), count, pixels.data, rows.data,
                                   where.data, best.data, at.data);
                transpose(at.data, bins, kLanes, pixel.data, stride);
            } else {
                spp_block<T, false>(input + q * area, lanes, height, width, plan.data(), count, pixels.data, rows.data,
                                    nullptr, best.data, nullptr);
            }
            transpose(best.data, bins, kLanes, values.data, stride);
            for (int64_t l = 0; l < lanes; ++l) {
                spp_store(values.data + l * stride, argmax ? pixel.data + l * stride : nullptr, q + l, channels, levels,
                          count, bins, out, argmax);
            }
        }
    }
}

// The input gradient of spp_max for the planes a thread claims: each plane of gx (N, C, H, W)
// gets, from zero, the gradients of its bins (grad (N, C * sum(n^2)) in spp_max's layout)
// added at their argmax (pixels in the plane), level after level and bin after bin: the order
// of a scatter in the order of grad's elements, so the sums are the same.
template <typename T, typename I>
void spp_max_backward(const T* grad, const I* argmax, T* gx, Claims claims, int64_t channels, int64_t area,
                      const int64_t* levels, int64_t count) {
    int64_t bins = 0;
    for (int64_t v = 0; v < count; ++v) bins += levels[v] * levels[v];
    for (int64_t first, last; claims.next(first, last);) {
        for (int64_t q = first; q < last; ++q) {
            const int64_t c = q % channels, start = q * area;
            T* plane = gx + start;
            std::fill_n(plane, area, T(0));
            for (int64_t v = 0, o = q / channels * channels * bins; v < count; ++v) {
                const int64_t size = levels[v] * levels[v], at = o + c * size;
                for (int64_t k = 0; k < size; ++k) plane[argmax[at + k]] += grad[at + k];
                o += channels * size;
            }
        }
    }
}

}  // namespace rfmap
