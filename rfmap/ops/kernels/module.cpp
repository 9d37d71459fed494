// Native CPU loops of the rfmap RoI ops: a plain CPython extension (no PyTorch headers: it
// compiles in seconds), built on first use by rfmap/ops/_native.py, which passes tensors as
// data pointers with their sizes.  Every function releases the GIL, so the ops'
// worker threads (rfmap/ops/_threads.py) run them in parallel on disjoint parts of a result.
//
// With them the ops give exactly what their pure-PyTorch paths give (the tests compare both,
// bit for bit).  The loops:
//   build      a sparse table's levels with the pixel of each window's first maximum
//   query      maxima of sparse-table windows (rectmax.h; rfmap/ops/_rectmax.py), and where the
//              first one sits when the input needs a gradient
//   scatter    input gradient of a max pooling: grad[i] added at argmax[i], in index order
//              within each channel (the order of torch's index_add_ on the CPU); bins without
//              a winner add nothing
//   spp_max    spatial pyramid max pooling (spp.h; rfmap/ops/spp.py) with adaptive_max_pool2d's bins
//              and scan (NaN wins, the last one; else the first maximum), optionally its argmax
#include <Python.h>

#include "rectmax.h"
#include "spp.h"

namespace {

using namespace rfmap;

template <typename P>
P* ptr(unsigned long long address) {
    return reinterpret_cast<P*>(static_cast<uintptr_t>(address));
}

// query(table, dtype, base, ys, ny, xs, nx, rois, bins, group, k0, k1, channels, c0, out,
//       argmax, argmax_bytes, pixels, batch, area, none)
// dtype: 0 float32, 1 float64; argmax 0: the maxima only (then pixels .. none are not read)
template <typename T>
void query_typed(const T* table, const Windows& w, int64_t group, int64_t k0, int64_t k1, int64_t channels, int64_t c0,
                 T* out, const Argmax& where, unsigned long long argmax, long long index_bytes) {
    if (!argmax) {
        query<T, int32_t>(table, w, group, k0, k1, channels, c0, out, nullptr, nullptr);
    } else if (index_bytes == 4) {
        query(table, w, group, k0, k1, channels, c0, out, &where, ptr<int32_t>(argmax));
    } else {
        query(table, w, group, k0, k1, channels, c0, out, &where, ptr<int64_t>(argmax));
    }
}

PyObject* py_query(PyObject*, PyObject* args) {
    unsigned long long table, base, ys, xs, out, argmax, pixels, batch;
    long long dtype, ny, nx, rois, bins, group, k0, k1, channels, c0, index_bytes, area, none;
    if (!PyArg_ParseTuple(args, "KLKKLKLLLLLLLLKKLKKLL", &table, &dtype, &base, &ys, &ny, &xs, &nx, &rois, &bins,
                          &group, &k0, &k1, &channels, &c0, &out, &argmax, &index_bytes, &pixels, &batch, &area,
                          &none))
        return nullptr;
    const Windows w{ptr<const int64_t>(base), ptr<const int64_t>(ys), ptr<const int64_t>(xs), ny, nx, rois, bins};
    const Argmax where{ptr<const int32_t>(pixels), ptr<const int64_t>(batch), area, none};
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        query_typed(ptr<const float>(table), w, group, k0, k1, channels, c0, ptr<float>(out), where, argmax, index_bytes);
    } else {
        query_typed(ptr<const double>(table), w, group, k0, k1, channels, c0, ptr<double>(out), where, argmax,
                    index_bytes);
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

// scatter(grad, argmax, gx, outer, channels, inner, c0, c1, none, value_bytes, index_bytes)
PyObject* py_scatter(PyObject*, PyObject* args) {
    unsigned long long grad, argmax, gx;
    long long outer, channels, inner, c0, c1, none, value_bytes, index_bytes;
    if (!PyArg_ParseTuple(args, "KKKLLLLLLLL", &grad, &argmax, &gx, &outer, &channels, &inner, &c0, &c1, &none,
                          &value_bytes, &index_bytes))
        return nullptr;
    Py_BEGIN_ALLOW_THREADS;
    if (value_bytes == 4 && index_bytes == 4) {
        scatter(ptr<const float>(grad), ptr<const int32_t>(argmax), ptr<float>(gx), outer, channels, inner, c0, c1, none);
    } else if (value_bytes == 4) {
        scatter(ptr<const float>(grad), ptr<const int64_t>(argmax), ptr<float>(gx), outer, channels, inner, c0, c1, none);
    } else if (index_bytes == 4) {
        scatter(ptr<const double>(grad), ptr<const int32_t>(argmax), ptr<double>(gx), outer, channels, inner, c0, c1, none);
    } else {
        scatter(ptr<const double>(grad), ptr<const int64_t>(argmax), ptr<double>(gx), outer, channels, inner, c0, c1, none);
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

// spp_max(input, dtype, q0, q1, channels, height, width, levels, count, out, argmax or 0)
// dtype: 0 float32, 1 float64; levels: int64[count]; argmax int64 (N, C * sum(n^2)) or 0
PyObject* py_spp_max(PyObject*, PyObject* args) {
    unsigned long long input, levels, out, argmax;
    long long dtype, q0, q1, channels, height, width, count;
    if (!PyArg_ParseTuple(args, "KLLLLLLKLKK", &input, &dtype, &q0, &q1, &channels, &height, &width, &levels, &count,
                          &out, &argmax))
        return nullptr;
    Py_BEGIN_ALLOW_THREADS;
    if (dtype == 0) {
        spp_max(ptr<const float>(input), q0, q1, channels, height, width, ptr<const int64_t>(levels), count,
                ptr<float>(out), ptr<int64_t>(argmax));
    } else {
        spp_max(ptr<const double>(input), q0, q1, channels, height, width, ptr<const int64_t>(levels), count,
                ptr<double>(out), ptr<int64_t>(argmax));
    }
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"query", py_query, METH_VARARGS, "maxima of sparse-table windows (see rfmap/ops/_rectmax.py)"},
    {"build", py_build, METH_VARARGS, "the levels of a sparse table with first-maximum pixels"},
    {"scatter", py_scatter, METH_VARARGS, "gradient of a max pooling: grad added at its argmax"},
    {"spp_max", py_spp_max, METH_VARARGS, "spatial pyramid max pooling (see rfmap/ops/spp.py)"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rfmap_kernels", "Native loops of the rfmap RoI ops.", -1, methods, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit_rfmap_kernels(void) { return PyModule_Create(&module); }
