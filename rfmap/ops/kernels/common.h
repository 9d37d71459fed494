// Shared by the native loops of the rfmap RoI ops (see module.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

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


}  // namespace rfmap
