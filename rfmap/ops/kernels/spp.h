// Spatial pyramid max pooling (the loop of rfmap/ops/spp.py).
#pragma once

#include <memory>

#include "common.h"

namespace rfmap {

// Spatial pyramid max pooling of the planes of an (N, C, H, W) input that a thread claims
// (common.h: Claims; whole blocks of kLanes planes but for the last), kLanes planes at a
// time, each SIMD lane one plane.  Per level n, bin (i, j) spans rows [i H / n, ceil((i + 1)
// H / n)) and columns [j W / n, ceil((j + 1) W / n)).  The result is adaptive_max_pool2d's
// (start at -inf with the bin's first pixel, take a value that is greater or NaN): the last
// NaN if any, else the first maximum in row-major order.
// Without NaN in a block (the common case) a level's maxima are taken down the rows of each
// plane in its natural layout first (a bin's rows, kLanes columns at a time), then the
// reduced rows are transposed 8 x 8 in registers so that the maxima along the columns work
// on kLanes planes at once; the bin's argmax is the smallest pixel among its columns' first
// maxima that equal its maximum.  A level whose bins are unions of g x g bins of a finer
// level (SPP-net's 3, 2, 1 on 6 for a 13 x 13 map) is pooled from the coarsest such level:
// the maximum of maxima and, likewise, the smallest pixel among the equal ones.
// A block with NaN is computed by the scan itself on interleaved planes (pixel-major,
// plane-minor), along each bin's rows then down its column of row results; without an
// argmax, grouped levels are still pooled from finer ones (NaN propagates through maxima).
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

// The pixel of a merged bin's first maximum, for blocks without NaN: among its parts (a
// coarser bin's fine bins, a bin's columns; each with its maximum x and the pixel of its first
// maximum in row-major order), the smallest pixel of those whose maximum equals the merged
// bin's m (a bin of -inf alone: its first pixel, the smallest of all).  One part at a time,
// from id = kNone; an unsigned minimum, the parts that do not qualify as all ones.
constexpr int32_t kNone = -1;

template <typename T>
__attribute__((always_inline)) inline void first_pixel(typename Lanes<T>::Values x, Ids index,
                                                       typename Lanes<T>::Values m, Ids& id) {
    typedef uint32_t Unsigned __attribute__((vector_size(32)));
    const Unsigned candidate = Unsigned(__builtin_convertvector(x != m, Ids) | index), now = Unsigned(id);
    id = Ids(candidate < now ? candidate : now);
}

struct Level {       // one level of the pyramid, in the order it is computed (finest first)
    int64_t n;       // bins per axis
    int64_t done;    // its first bin among all levels' bins (the order of the output)
    const int64_t* cols;  // bin j spans columns [cols[2j], cols[2j + 1]); rows likewise
    const int64_t* rows;
    int64_t from;    // the finer level (index into the plan) whose bins it groups, or -1
    int64_t group;   // g: bin (i, j) = fine bins [i g, (i + 1) g) x [j g, (j + 1) g)
};

// A level whose bins are unions of g x g bins of a finer level, from that level's results
// (bv, bi: all levels' bins, kLanes planes each): the maximum of maxima; its argmax (Index, in a
// block without NaN), the first of the fine bins' first maxima that equal it; without Index,
// NaN propagates as in the direct scan.
template <typename T, bool Index, bool NaN>
__attribute__((always_inline)) inline void grouped_level(const Level& level, const Level& fine,
                                                         typename Lanes<T>::Values* __restrict__ bv,
                                                         Ids* __restrict__ bi) {
    typedef typename Lanes<T>::Values V;
    const int64_t n = level.n, g = level.group;
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            const int64_t first = fine.done + i * g * fine.n + j * g;
            V m = bv[first];
            Ids none{};
            for (int64_t a = 0; a < g; ++a) {  // the fine bins after the first, row by row
                for (int64_t b = a == 0; b < g; ++b) take<T, false, NaN>(bv[first + a * fine.n + b], none, m, none);
            }
            bv[level.done + i * n + j] = m;
            if (Index) {
                Ids id = Ids{} + kNone;
                for (int64_t a = 0; a < g; ++a) {
                    for (int64_t b = 0; b < g; ++b) {
                        first_pixel<T>(bv[first + a * fine.n + b], bi[first + a * fine.n + b], m, id);
                    }
                }
                bi[level.done + i * n + j] = id;
            }
        }
    }
}

// Every level from interleaved pixels (px: pixel-major, plane-minor), adaptive_max_pool2d's scan
// itself (blocks with NaN): along the rows of each bin first, then down the bin's column of row
// results; with NaN and Index no level is grouped (the first of the maxima is not the scan's).
template <typename T, bool Index, bool NaN>
__attribute__((always_inline)) inline void scanned_levels(const typename Lanes<T>::Values* __restrict__ px,
                                                          int64_t width, int64_t height, const Level* plan,
                                                          int64_t count, typename Lanes<T>::Values* __restrict__ rv,
                                                          Ids* __restrict__ ri, typename Lanes<T>::Values* __restrict__ bv,
                                                          Ids* __restrict__ bi) {
    typedef typename Lanes<T>::Values V;
    for (int64_t v = 0; v < count; ++v) {
        const Level& level = plan[v];
        const int64_t n = level.n, *cols = level.cols, *rows = level.rows;
        if (level.from >= 0 && !(Index && NaN)) {
            grouped_level<T, Index, NaN>(level, plan[level.from], bv, bi);
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

// to[c][l] = r[l][c]: kLanes vectors of kLanes elements stored transposed (32-bit elements
// through the 8 x 8 transpose in registers)
template <typename V>
__attribute__((always_inline)) inline void store_transposed(V* r, V* __restrict__ to) {
#ifdef RFMAP_SHUFFLES
    if constexpr (sizeof(r[0][0]) == 4) {
        transpose8(r);
        for (int64_t c = 0; c < kLanes; ++c) to[c] = r[c];
        return;
    }
#endif
    for (int64_t c = 0; c < kLanes; ++c) {
        for (int64_t l = 0; l < kLanes; ++l) to[c][l] = r[l][c];
    }
}

// Down the rows of kLanes planes (natural layout; plane l at `planes[l]`, readable up to its
// last row's last chunk) for a level's row bins, kLanes columns at a time (a chunk; lanes past
// the last column hold what follows in memory, never used): for bin i and column w, each
// plane's maximum down the bin's rows, and (Index) the pixel h * width + w of its first
// maximum down the column, into pv[i span + w] and pi (span = chunks kLanes, the padded row;
// pixel-major, plane-minor: 32-bit values are transposed 8 x 8 in registers).  Check: returns
// whether a pixel is NaN (each row is checked once, by the first bin that holds it; the bins
// cover every row).
template <typename T, bool Index, bool Check>
__attribute__((always_inline)) inline bool down_rows(const T* const* planes, int64_t width,
                                                     const int64_t* rows, int64_t n,
                                                     typename Lanes<T>::Values* __restrict__ pv, Ids* __restrict__ pi) {
    typedef typename Lanes<T>::Values V;
    V sum[kLanes] = {};  // NaN if a value read is NaN (or +inf and -inf are: checked again by the caller's scan)
    const int64_t chunks = (width + kLanes - 1) / kLanes, span = chunks * kLanes;
    const Ids iota{0, 1, 2, 3, 4, 5, 6, 7};
    for (int64_t i = 0, fresh = 0; i < n; ++i) {  // rows below `fresh` are checked
        const int64_t h0 = rows[2 * i], h1 = rows[2 * i + 1];
        for (int64_t k = 0, start = h0 * width; k < chunks; ++k, start += kLanes) {
            V m[kLanes];
            Ids id[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) {
                m[l] = *reinterpret_cast<const typename Lanes<T>::Unaligned*>(planes[l] + start);
                if (Index) id[l] = iota + int32_t(start);
                if (Check && h0 >= fresh) sum[l] += m[l];
            }
            for (int64_t h = h0 + 1, at = start + width; h < h1; ++h, at += width) {
                const Ids pixel = iota + int32_t(at);  // larger than any pixel of the rows above
                for (int64_t l = 0; l < kLanes; ++l) {
                    const V x = *reinterpret_cast<const typename Lanes<T>::Unaligned*>(planes[l] + at);
                    if (Check && h >= fresh) sum[l] += x;
                    // take x where greater: the pixel, as the larger of the two (no blends)
                    if (Index) {
                        const Ids taken = pixel & __builtin_convertvector(x > m[l], Ids);
                        id[l] = taken > id[l] ? taken : id[l];
                    }
                    m[l] = x > m[l] ? x : m[l];
                }
            }
            store_transposed(m, pv + i * span + k * kLanes);
            if (Index) store_transposed(id, pi + i * span + k * kLanes);
        }
        fresh = std::max(fresh, h1);
    }
    typename Lanes<T>::Mask nan{};
    for (int64_t l = 0; l < kLanes; ++l) nan |= sum[l] != sum[l];
    bool any = false;
    for (int64_t l = 0; l < kLanes; ++l) any |= nan[l] != 0;
    return any;
}

// Along the columns of each row bin's results (pv, pi: n x span, interleaved): bin (i, j) of a
// level from its columns' maxima; its argmax (Index), the first of the columns' first maxima
// that equal the maximum (the smallest pixel: the first in row-major order)
template <typename T, bool Index>
__attribute__((always_inline)) inline void across_columns(const typename Lanes<T>::Values* __restrict__ pv,
                                                          const Ids* __restrict__ pi, int64_t width, const Level& level,
                                                          typename Lanes<T>::Values* __restrict__ bv,
                                                          Ids* __restrict__ bi) {
    typedef typename Lanes<T>::Values V;
    const int64_t n = level.n, *cols = level.cols, span = (width + kLanes - 1) / kLanes * kLanes;
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            const int64_t w0 = i * span + cols[2 * j], w1 = i * span + cols[2 * j + 1];
            V m = pv[w0];
            for (int64_t w = w0 + 1; w < w1; ++w) m = pv[w] > m ? pv[w] : m;
            bv[level.done + i * n + j] = m;
            if (Index) {
                Ids id = Ids{} + kNone;
                for (int64_t w = w0; w < w1; ++w) first_pixel<T>(pv[w], pi[w], m, id);
                bi[level.done + i * n + j] = id;
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
            V r[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) {
                r[l] = *reinterpret_cast<const typename Lanes<T>::Unaligned*>(source[l] + p);
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

// Scratch memory of one thread of spp_max, for the plan's widest level; what only some blocks
// need (the copy of the input's last planes, the buffers of the scan of blocks with NaN: kLanes
// planes' worth each) is allocated on first use.
template <typename T>
struct SppScratch {
    const int64_t lane, area, height, widest;  // lane: one plane's down_rows results (widest x span)
    Buffer<T> across, best;                    // down_rows' results; all levels' bins (kLanes rows of padding)
    Buffer<int32_t> across_at, at;             // their argmax (with one)
    SppScratch(int64_t height, int64_t width, int64_t widest, int64_t bins, bool argmax)
        : lane(widest * (width + kLanes - 1) / kLanes * kLanes), area(height * width), height(height), widest(widest),
          across(kLanes * lane), best((bins + kLanes) * kLanes), across_at(argmax ? kLanes * lane : 0),
          at(argmax ? (bins + kLanes) * kLanes : 0) {}

    T* copy() { return get(copy_, kLanes * (area + 1)); }  // kLanes planes and a chunk past them
    T* pixels() { return get(pixels_, area * kLanes); }
    T* rows() { return get(rows_, height * widest * kLanes); }
    int32_t* where() { return get(where_, height * widest * kLanes); }

  private:
    template <typename U>
    static U* get(std::unique_ptr<Buffer<U>>& buffer, int64_t n) {
        if (!buffer) buffer.reset(new Buffer<U>(n));
        return buffer->data;
    }
    std::unique_ptr<Buffer<T>> copy_, pixels_, rows_;
    std::unique_ptr<Buffer<int32_t>> where_;
};

// Every level of kLanes planes (`lanes` of them real; the others repeat the first; `limit`
// elements from the first may be read, else they are copied) into
// s.best (bins x kLanes, level after level in `plan`'s order of `done`) and, with Index, their
// argmax into s.at.  A level that groups a finer one's bins is pooled from it; any other, down
// the rows of each plane in its natural layout first (down_rows), then, interleaved, along the
// columns (across_columns): the bin's maximum, and its first maximum in row-major order as the
// smallest pixel among the columns' first maxima down the rows.  A block with NaN (found while
// the first level goes down the rows) is computed by adaptive_max_pool2d's scan itself
// (scanned_levels), for the NaN's propagation and argmax.
template <typename T, bool Index>
RFMAP_CLONES void spp_block(const T* __restrict__ planes, int64_t lanes, int64_t limit, int64_t height,
                            int64_t width, const Level* plan, int64_t count, SppScratch<T>& s) {
    typedef typename Lanes<T>::Values V;
    V* bv = reinterpret_cast<V*>(s.best.data);
    Ids* bi = reinterpret_cast<Ids*>(s.at.data);
    const int64_t area = height * width;
    const int64_t span = (width + kLanes - 1) / kLanes * kLanes;
    if ((lanes - 1) * area + (height - 1) * width + span > limit) {  // the input's last chunk would be overread
        T* copy = s.copy();
        std::memcpy(copy, planes, sizeof(T) * lanes * area);
        std::fill_n(copy + lanes * area, kLanes, T(0));  // what the last chunk reads past the planes
        planes = copy;
    }
    const T* source[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) source[l] = planes + (l < lanes ? l : 0) * area;
    for (int64_t v = 0; v < count; ++v) {  // plan[0], the finest level, is never grouped
        const Level& level = plan[v];
        if (level.from >= 0) {
            grouped_level<T, Index, false>(level, plan[level.from], bv, bi);
            continue;
        }
        V* pv = reinterpret_cast<V*>(s.across.data);
        Ids* pi = reinterpret_cast<Ids*>(s.across_at.data);
        if (v > 0) {
            down_rows<T, Index, false>(source, width, level.rows, level.n, pv, pi);
        } else if (down_rows<T, Index, true>(source, width, level.rows, level.n, pv, pi)) {
            V* px = reinterpret_cast<V*>(s.pixels());
            interleave<T>(planes, lanes, area, px);
            scanned_levels<T, Index, true>(px, width, height, plan, count, reinterpret_cast<V*>(s.rows()),
                                           reinterpret_cast<Ids*>(s.where()), bv, bi);
            return;
        }
        across_columns<T, Index>(pv, pi, width, level, bv, bi);
    }
}

// out[l size + k] = U(results[k][l]): a level's `size` bins, kLanes lanes each, as the rows of
// kLanes consecutive planes (32-bit lanes: 8 x 8 tiles transposed in registers; `results` is
// readable kLanes rows past its last)
template <typename U, typename V>
__attribute__((always_inline)) inline void store_level(const V* __restrict__ results, int64_t size, U* __restrict__ out) {
#ifdef RFMAP_SHUFFLES
    if constexpr (sizeof(results[0][0]) == 4) {
        typedef U Row __attribute__((vector_size(sizeof(U) * kLanes), aligned(sizeof(U))));
        for (int64_t k0 = 0; k0 < size; k0 += kLanes) {
            V r[kLanes];
            for (int64_t k = 0; k < kLanes; ++k) r[k] = results[k0 + k];
            transpose8(r);
            if (k0 + kLanes <= size) {
                for (int64_t l = 0; l < kLanes; ++l) {
                    *reinterpret_cast<Row*>(out + l * size + k0) = __builtin_convertvector(r[l], Row);
                }
            } else {
                for (int64_t l = 0; l < kLanes; ++l) {
                    for (int64_t k = 0; k < kLanes; ++k) {  // not a copy loop (no call to memcpy)
                        if (k < size - k0) out[l * size + k0 + k] = U(r[l][k]);
                    }
                }
            }
        }
        return;
    }
#endif
    for (int64_t l = 0; l < kLanes; ++l) {
        for (int64_t k = 0; k < size; ++k) out[l * size + k] = U(results[k][l]);
    }
}

// A block's results (s.best, s.at) for kLanes consecutive planes of one image, from plane q, into
// out (N, C * bins) and argmax (or null): level after level, each a (C, n, n) block
template <typename T, typename I>
RFMAP_CLONES void store_levels(const SppScratch<T>& s, const int64_t* levels, int64_t count, int64_t bins,
                               int64_t channels, int64_t q, T* out, I* argmax) {
    const typename Lanes<T>::Values* bv = reinterpret_cast<const typename Lanes<T>::Values*>(s.best.data);
    const Ids* bi = reinterpret_cast<const Ids*>(s.at.data);
    for (int64_t v = 0, o = q / channels * channels * bins, b = 0; v < count; ++v) {
        const int64_t size = levels[v] * levels[v], at = o + q % channels * size;
        store_level(bv + b, size, out + at);
        if (argmax) store_level(bi + b, size, argmax + at);
        o += channels * size;
        b += size;
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
        for (int64_t f = k - 1; f >= 0 && level.from < 0; --f) {  // the coarsest that groups: fewest bins to merge
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
    SppScratch<T> scratch(height, width, widest, bins, argmax != nullptr);
    const int64_t stride = (bins + kLanes - 1) / kLanes * kLanes;  // one lane's results, padded
    const Buffer<T> values(stride * kLanes);
    const Buffer<int32_t> pixel(argmax ? stride * kLanes : 0);
    for (int64_t first, last; claims.next(first, last);) {
        for (int64_t q = first; q < last; q += kLanes) {
            const int64_t lanes = std::min(last - q, kLanes);
            const int64_t limit = (claims.end - q) * area;  // elements readable from the block's first plane
            if (argmax) {
                spp_block<T, true>(input + q * area, lanes, limit, height, width, plan.data(), count, scratch);
            } else {
                spp_block<T, false>(input + q * area, lanes, limit, height, width, plan.data(), count, scratch);
            }
            const int64_t c = q % channels;
            if (lanes == kLanes && c + kLanes <= channels) {  // kLanes channels of one image: one block of out per level
                store_levels(scratch, levels, count, bins, channels, q, out, argmax);
                continue;
            }
            if (argmax) transpose(scratch.at.data, bins, kLanes, pixel.data, stride);
            transpose(scratch.best.data, bins, kLanes, values.data, stride);
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
