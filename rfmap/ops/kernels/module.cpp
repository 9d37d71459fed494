// Native CPU loops of the rfmap RoI ops: a plain CPython extension (no PyTorch headers: it
// compiles in seconds), built on first use by rfmap/ops/_native.py, which passes tensors as
// data pointers with their sizes.  Every function releases the GIL, so the ops'
// worker threads (rfmap/ops/_threads.py) run them in parallel on disjoint parts of a result.
//
// With them the ops give exactly what their pure-PyTorch paths give (the tests compare both,
// bit for bit).  The loops:
//   build      a sparse table's levels with the pixel of each window's first maximum
//   query      maxima of sparse-table windows (rectmax.h; rfmap/ops/_rectmax.py), and, when the
//              input needs a gradient, the pixel of the first one in its plane
//   scatter_planes  input gradient of RoI max pooling: each gradient added at its argmax pixel
//              in its plane, in output order within each channel (the order of torch's
//              scatter_add_ on the CPU); bins without a winner add nothing
//   spp_max    spatial pyramid max pooling (spp.h; rfmap/ops/spp.py) with adaptive_max_pool2d's bins
//              and scan (NaN wins, the last one; else the first maximum), optionally its argmax,
//              and its input gradient plane by plane
//   separable  the rows of a separable pooling matrix (sparse.h; rfmap/ops/_sparse.py)
//   transpose  a CSR matrix's transpose, each column's entries in row order
//   transpose_blocks  batched strided transposes: position-sensitive pooling's channel slices
#include <Python.h>

#include <new>

#include "pool.h"
#include "rectmax.h"
#include "sparse.h"
#include "spp.h"

namespace {

using namespace rfmap;

template <typename P>
P* ptr(unsigned long long address) {
    return reinterpret_cast<P*>(static_cast<uintptr_t>(address));
}

// query(table, dtype, base, ys, ny, xs, nx, rois, bins, group, k0, k1, channels, c0, out,
//       pixels, argmax, argmax_bytes)
// dtype: 0 float32, 1 float64; pixels 0: the maxima only (argmax is not read); argmax:
// int16 (argmax_bytes 2) or int32 (4) pixels within the planes
template <typename T>
void query_typed(const T* table, const Windows& w, int64_t group, int64_t k0, int64_t k1, int64_t channels, int64_t c0,
                 T* out, const int32_t* pixels, unsigned long long argmax, long long index_bytes) {
    if (!pixels) {
        query<T, int32_t>(table, w, group, k0, k1, channels, c0, out, nullptr, nullptr);
    } else if (index_bytes == 2) {
        query(table, w, group, k0, k1, channels, c0, out, pixels, ptr<int16_t>(argmax));
    } else {
        query(table, w, group, k0, k1, channels, c0, out, pixels, ptr<int32_t>(argmax));
    }
}

PyObject* py_query(PyObject*, PyObject* args) {
    unsigned long long table, base, ys, xs, out, pixels, argmax;
    long long dtype, ny, nx, rois, bins, group, k0, k1, channels, c0, index_bytes;
    if (!PyArg_ParseTuple(args, "KLKKLKLLLLLLLLKKKL", &table, &dtype, &base, &ys, &ny, &xs, &nx, &rois, &bins,
                          &group, &k0, &k1, &channels, &c0, &out, &pixels, &argmax, &index_bytes))
        return nullptr;
    const Windows w{ptr<const int64_t>(base), ptr<const int64_t>(ys), ptr<const int64_t>(xs), ny, nx, rois, bins};
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        query_typed(ptr<const float>(table), w, group, k0, k1, channels, c0, ptr<float>(out), ptr<const int32_t>(pixels),
                    argmax, index_bytes);
    } else {
        query_typed(ptr<const double>(table), w, group, k0, k1, channels, c0, ptr<double>(out),
                    ptr<const int32_t>(pixels), argmax, index_bytes);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// build(values, dtype, pixels, maps, height, width, levels_y, levels_x, group): the levels of a
// sparse table and its first-maximum pixels (rectmax.h: build)
PyObject* py_build(PyObject*, PyObject* args) {
    unsigned long long values, pixels;
    long long dtype, maps, height, width, levels_y, levels_x, group;
    if (!PyArg_ParseTuple(args, "KLKLLLLLL", &values, &dtype, &pixels, &maps, &height, &width, &levels_y, &levels_x,
                          &group))
        return nullptr;
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        build(ptr<float>(values), ptr<int32_t>(pixels), maps, height, width, levels_y, levels_x, group);
    } else {
        build(ptr<double>(values), ptr<int32_t>(pixels), maps, height, width, levels_y, levels_x, group);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// scatter_planes(grad, argmax, batch, gx, images, rois, channels, bins, area, c0, c1, value_bytes,
//                index_bytes)
PyObject* py_scatter_planes(PyObject*, PyObject* args) {
    unsigned long long grad, argmax, batch, gx;
    long long images, rois, channels, bins, area, c0, c1, value_bytes, index_bytes;
    if (!PyArg_ParseTuple(args, "KKKKLLLLLLLLL", &grad, &argmax, &batch, &gx, &images, &rois, &channels, &bins, &area,
                          &c0, &c1, &value_bytes, &index_bytes))
        return nullptr;
    const int64_t* b = ptr<const int64_t>(batch);
    Py_BEGIN_ALLOW_THREADS;
    if (value_bytes == 4 && index_bytes == 2) {
        scatter_planes(ptr<const float>(grad), ptr<const int16_t>(argmax), b, ptr<float>(gx), images, rois,
                       channels, bins, area, c0, c1);
    } else if (value_bytes == 4) {
        scatter_planes(ptr<const float>(grad), ptr<const int32_t>(argmax), b, ptr<float>(gx), images, rois,
                       channels, bins, area, c0, c1);
    } else if (index_bytes == 2) {
        scatter_planes(ptr<const double>(grad), ptr<const int16_t>(argmax), b, ptr<double>(gx), images, rois,
                       channels, bins, area, c0, c1);
    } else {
        scatter_planes(ptr<const double>(grad), ptr<const int32_t>(argmax), b, ptr<double>(gx), images, rois,
                       channels, bins, area, c0, c1);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// spp_max(input, dtype, planes, chunk, threads, channels, height, width, levels, count, out,
//         argmax, argmax_bytes)
// dtype: 0 float32, 1 float64; the planes are shared out `chunk` at a time among `threads`
// threads (pool.h); levels: int64[count]; argmax: int16 (argmax_bytes 2) or int32 (4)
// (N, C * sum(n^2)), or 0
template <typename T>
struct SppJob {
    const T* input;
    Claims claims;
    int64_t channels, height, width;
    const int64_t* levels;
    int64_t count;
    T* out;
    unsigned long long argmax;
    long long index_bytes;

    static void run(void* self) {
        const SppJob& j = *static_cast<SppJob*>(self);
        if (!j.argmax) {
            spp_max<T, int32_t>(j.input, j.claims, j.channels, j.height, j.width, j.levels, j.count, j.out, nullptr);
        } else if (j.index_bytes == 2) {
            spp_max(j.input, j.claims, j.channels, j.height, j.width, j.levels, j.count, j.out, ptr<int16_t>(j.argmax));
        } else {
            spp_max(j.input, j.claims, j.channels, j.height, j.width, j.levels, j.count, j.out, ptr<int32_t>(j.argmax));
        }
    }
};

PyObject* py_spp_max(PyObject*, PyObject* args) {
    unsigned long long input, levels, out, argmax;
    long long dtype, planes, chunk, threads, channels, height, width, count, index_bytes;
    if (!PyArg_ParseTuple(args, "KLLLLLLLKLKKL", &input, &dtype, &planes, &chunk, &threads, &channels, &height, &width,
                          &levels, &count, &out, &argmax, &index_bytes))
        return nullptr;
    int64_t counter = 0;
    const Claims claims{&counter, 0, planes, threads > 1 ? chunk : planes};
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        SppJob<float> job{ptr<const float>(input), claims, channels, height, width, ptr<const int64_t>(levels), count,
                          ptr<float>(out), argmax, index_bytes};
        Pool::get().run(&SppJob<float>::run, &job, threads);
    } else {
        SppJob<double> job{ptr<const double>(input), claims, channels, height, width, ptr<const int64_t>(levels), count,
                           ptr<double>(out), argmax, index_bytes};
        Pool::get().run(&SppJob<double>::run, &job, threads);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// spp_max_backward(grad, argmax, gx, dtype, argmax_bytes, planes, chunk, threads, channels, area,
//                  levels, count): the planes of gx shared out as in spp_max
template <typename T>
struct SppBackwardJob {
    const T* grad;
    unsigned long long argmax;
    long long index_bytes;
    T* gx;
    Claims claims;
    int64_t channels, area;
    const int64_t* levels;
    int64_t count;

    static void run(void* self) {
        const SppBackwardJob& j = *static_cast<SppBackwardJob*>(self);
        if (j.index_bytes == 2) {
            spp_max_backward(j.grad, ptr<const int16_t>(j.argmax), j.gx, j.claims, j.channels, j.area, j.levels, j.count);
        } else {
            spp_max_backward(j.grad, ptr<const int32_t>(j.argmax), j.gx, j.claims, j.channels, j.area, j.levels, j.count);
        }
    }
};

PyObject* py_spp_max_backward(PyObject*, PyObject* args) {
    unsigned long long grad, argmax, gx, levels;
    long long dtype, index_bytes, planes, chunk, threads, channels, area, count;
    if (!PyArg_ParseTuple(args, "KKKLLLLLLLKL", &grad, &argmax, &gx, &dtype, &index_bytes, &planes, &chunk, &threads,
                          &channels, &area, &levels, &count))
        return nullptr;
    int64_t counter = 0;
    const Claims claims{&counter, 0, planes, threads > 1 ? chunk : planes};
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        SppBackwardJob<float> job{ptr<const float>(grad), argmax, index_bytes, ptr<float>(gx), claims, channels, area,
                                  ptr<const int64_t>(levels), count};
        Pool::get().run(&SppBackwardJob<float>::run, &job, threads);
    } else {
        SppBackwardJob<double> job{ptr<const double>(grad), argmax, index_bytes, ptr<double>(gx), claims, channels,
                                   area, ptr<const int64_t>(levels), count};
        Pool::get().run(&SppBackwardJob<double>::run, &job, threads);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// separable(wy, wx, dtype, slot, rois, ph, pw, height, width, bin_major, block, col, index_bytes, val)
// dtype: 0 float32, 1 float64; col: int32 (index_bytes 4) or int64 (8); slot: int64[rois]
PyObject* py_separable(PyObject*, PyObject* args) {
    unsigned long long wy, wx, slot, col, val;
    long long dtype, rois, ph, pw, height, width, bin_major, block, index_bytes;
    if (!PyArg_ParseTuple(args, "KKLKLLLLLLLKLK", &wy, &wx, &dtype, &slot, &rois, &ph, &pw, &height, &width,
                          &bin_major, &block, &col, &index_bytes, &val))
        return nullptr;
    bool ok = true;
    Py_BEGIN_ALLOW_THREADS;
    try {
        const int64_t* s = ptr<const int64_t>(slot);
        if (dtype == 0 && index_bytes == 4) {
            separable_rows(ptr<const float>(wy), ptr<const float>(wx), s, rois, ph, pw, height, width, bin_major != 0, block,
                           ptr<int32_t>(col), ptr<float>(val));
        } else if (dtype == 0) {
            separable_rows(ptr<const float>(wy), ptr<const float>(wx), s, rois, ph, pw, height, width, bin_major != 0, block,
                           ptr<int64_t>(col), ptr<float>(val));
        } else if (index_bytes == 4) {
            separable_rows(ptr<const double>(wy), ptr<const double>(wx), s, rois, ph, pw, height, width, bin_major != 0, block,
                           ptr<int32_t>(col), ptr<double>(val));
        } else {
            separable_rows(ptr<const double>(wy), ptr<const double>(wx), s, rois, ph, pw, height, width, bin_major != 0, block,
                           ptr<int64_t>(col), ptr<double>(val));
        }
    } catch (const std::bad_alloc&) {
        ok = false;
    }
    Py_END_ALLOW_THREADS;
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

// transpose(crow, col, val, dtype, index_bytes, rows, cols, crow_t, row_t, val_t): dtype and
// index_bytes as in separable (crow, col, crow_t and row_t all of that index type)
PyObject* py_transpose(PyObject*, PyObject* args) {
    unsigned long long crow, col, val, crow_t, row_t, val_t;
    long long dtype, index_bytes, rows, cols;
    if (!PyArg_ParseTuple(args, "KKKLLLLKKK", &crow, &col, &val, &dtype, &index_bytes, &rows, &cols, &crow_t, &row_t,
                          &val_t))
        return nullptr;
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0 && index_bytes == 4) {
        csr_transpose(ptr<const int32_t>(crow), ptr<const int32_t>(col), ptr<const float>(val), rows, cols,
                      ptr<int32_t>(crow_t), ptr<int32_t>(row_t), ptr<float>(val_t));
    } else if (dtype == 0) {
        csr_transpose(ptr<const int64_t>(crow), ptr<const int64_t>(col), ptr<const float>(val), rows, cols,
                      ptr<int64_t>(crow_t), ptr<int64_t>(row_t), ptr<float>(val_t));
    } else if (index_bytes == 4) {
        csr_transpose(ptr<const int32_t>(crow), ptr<const int32_t>(col), ptr<const double>(val), rows, cols,
                      ptr<int32_t>(crow_t), ptr<int32_t>(row_t), ptr<double>(val_t));
    } else {
        csr_transpose(ptr<const int64_t>(crow), ptr<const int64_t>(col), ptr<const double>(val), rows, cols,
                      ptr<int64_t>(crow_t), ptr<int64_t>(row_t), ptr<double>(val_t));
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// transpose_blocks(src, dst, value_bytes, blocks, rows, cols, src_step, src_stride, dst_step,
//                  dst_stride): sparse.h's, for 4- or 8-byte elements
PyObject* py_transpose_blocks(PyObject*, PyObject* args) {
    unsigned long long src, dst;
    long long value_bytes, blocks, rows, cols, src_step, src_stride, dst_step, dst_stride;
    if (!PyArg_ParseTuple(args, "KKLLLLLLLL", &src, &dst, &value_bytes, &blocks, &rows, &cols, &src_step, &src_stride,
                          &dst_step, &dst_stride))
        return nullptr;
    Py_BEGIN_ALLOW_THREADS;
    if (value_bytes == 4) {
        transpose_blocks(ptr<const uint32_t>(src), ptr<uint32_t>(dst), blocks, rows, cols, src_step, src_stride, dst_step,
                         dst_stride);
    } else {
        transpose_blocks(ptr<const uint64_t>(src), ptr<uint64_t>(dst), blocks, rows, cols, src_step, src_stride, dst_step,
                         dst_stride);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"query", py_query, METH_VARARGS, "maxima of sparse-table windows (see rfmap/ops/_rectmax.py)"},
    {"build", py_build, METH_VARARGS, "the levels of a sparse table with first-maximum pixels"},
    {"scatter_planes", py_scatter_planes, METH_VARARGS, "gradient of RoI max pooling: grad added at its argmax pixels"},
    {"spp_max", py_spp_max, METH_VARARGS, "spatial pyramid max pooling (see rfmap/ops/spp.py)"},
    {"spp_max_backward", py_spp_max_backward, METH_VARARGS, "the input gradient of spp_max"},
    {"separable", py_separable, METH_VARARGS, "the rows of a separable pooling matrix (see rfmap/ops/_sparse.py)"},
    {"transpose", py_transpose, METH_VARARGS, "a CSR matrix's transpose, each column's entries in row order"},
    {"transpose_blocks", py_transpose_blocks, METH_VARARGS, "batched strided transposes (position-sensitive layouts)"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rfmap_kernels", "Native loops of the rfmap RoI ops.", -1, methods, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit_rfmap_kernels(void) { return PyModule_Create(&module); }
