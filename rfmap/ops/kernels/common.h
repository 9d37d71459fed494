// Shared by the native loops of the rfmap RoI ops (see module.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
// one copy of a loop per instruction set, chosen when the library loads (AVX2: 4 keys or 8
// floats per instruction; the default build keeps to SSE2, which every x86-64 has)
#define RFMAP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RFMAP_CLONES
#endif

namespace rfmap {

// scratch memory aligned for any SIMD register (the vector types' loads and stores assume it)
template <typename U>
struct Buffer {
    U* data;
    explicit Buffer(int64_t n) : data(static_cast<U*>(::operator new(sizeof(U) * n + 64, std::align_val_t(64)))) {}
    ~Buffer() { ::operator delete(data, std::align_val_t(64)); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

// dst[0 .. n) = src[0 .. n) for a large result written once: with SSE2, the whole cache
// lines of dst are written with non-temporal stores (they go to memory without being read
// first, and do not evict the caller's working set), the partial lines at both ends with
// plain stores (a line is never written both ways); the caller ends its run of such copies
// with stream_fence().
template <typename U>
inline void stream_copy(U* __restrict__ dst, const U* __restrict__ src, int64_t n) {
#if defined(__SSE2__)
    char* d = reinterpret_cast<char*>(dst);
    const char* s = reinterpret_cast<const char*>(src);
    const int64_t bytes = n * int64_t(sizeof(U));
    const int64_t head = std::min<int64_t>(bytes, (64 - reinterpret_cast<uintptr_t>(d) % 64) % 64);
    const int64_t lines = (bytes - head) / 64 * 64;
    std::memcpy(d, s, head);
    for (int64_t i = head; i < head + lines; i += 16) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    }
    std::memcpy(d + head + lines, s + head + lines, bytes - head - lines);
#else
    std::memcpy(dst, src, sizeof(U) * n);
#endif
}

inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

constexpr int64_t kLanes = 8;  // 32-bit lanes of the SIMD registers the loops are written for

// kLanes values (of kLanes planes, or channels; GCC/Clang vector extensions: SIMD registers of
// the instruction set the clone is built for), the comparison masks of their type, kLanes
// int32 pixel indices
template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
    typedef float Values __attribute__((vector_size(32)));
    typedef float Unaligned __attribute__((vector_size(32), aligned(4)));  // Values at any float's address
    typedef int32_t Mask __attribute__((vector_size(32)));
};
template <>
struct Lanes<double> {
    typedef double Values __attribute__((vector_size(64)));
    typedef double Unaligned __attribute__((vector_size(64), aligned(8)));
    typedef int64_t Mask __attribute__((vector_size(64)));
};
typedef int32_t Ids __attribute__((vector_size(32)));

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define RFMAP_SHUFFLES 1
// r[k][l] <- r[l][k]: an 8 x 8 tile of 32-bit lanes transposed in registers
template <typename V>
__attribute__((always_inline)) inline void transpose8(V* r) {
    V t[kLanes], u[kLanes];
    for (int64_t l = 0; l < kLanes; l += 2) {
        t[l] = __builtin_shufflevector(r[l], r[l + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[l + 1] = __builtin_shufflevector(r[l], r[l + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int64_t l = 0; l < kLanes; l += 4) {
        u[l] = __builtin_shufflevector(t[l], t[l + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[l + 1] = __builtin_shufflevector(t[l], t[l + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[l + 2] = __builtin_shufflevector(t[l + 1], t[l + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[l + 3] = __builtin_shufflevector(t[l + 1], t[l + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int64_t k = 0; k < 4; ++k) {
        r[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}
#endif
#endif

// dst[c * stride + r] = src[r * cols + c] for a rows x cols matrix; 32-bit elements go 8 x 8
// tiles at a time (in registers), the rest one by one.
template <typename U>
RFMAP_CLONES void transpose(const U* __restrict__ src, int64_t rows, int64_t cols, U* __restrict__ dst, int64_t stride) {
    int64_t r0 = 0, c0 = 0;
#ifdef RFMAP_SHUFFLES
    if constexpr (sizeof(U) == 4) {
        typedef U V __attribute__((vector_size(32), aligned(4)));
        for (r0 = 0; r0 + kLanes <= rows; r0 += kLanes) {
            for (c0 = 0; c0 + kLanes <= cols; c0 += kLanes) {
                V t[kLanes];
                for (int64_t i = 0; i < kLanes; ++i) t[i] = *reinterpret_cast<const V*>(src + (r0 + i) * cols + c0);
                transpose8(t);
                for (int64_t i = 0; i < kLanes; ++i) *reinterpret_cast<V*>(dst + (c0 + i) * stride + r0) = t[i];
            }
            for (int64_t c = c0; c < cols; ++c) {  // the columns right of the last tile
                for (int64_t r = r0; r < r0 + kLanes; ++r) dst[c * stride + r] = src[r * cols + c];
            }
        }
    }
#endif
    for (int64_t r = r0; r < rows; ++r) {  // the rows below the last tile
        for (int64_t c = 0; c < cols; ++c) dst[c * stride + r] = src[r * cols + c];
    }
}

// Work shared by the threads that run one loop: each claims the next `chunk` items of
// [begin, end) from a counter (starting at 0) that all of them increment, until none are
// left, so a thread that starts late or is held up takes less of the work.
struct Claims {
    int64_t* counter;
    int64_t begin, end, chunk;
    // the next span [first, last) for the calling thread; false when none is left
    bool next(int64_t& first, int64_t& last) {
        first = begin + __atomic_fetch_add(counter, chunk, __ATOMIC_RELAXED);
        last = std::min(end, first + chunk);
        return first < end;
    }
};

}  // namespace rfmap
