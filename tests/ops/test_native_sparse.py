"""The native loops of the linear RoI ops' sparse matrices (rfmap/ops/kernels/sparse.h) against
the PyTorch code they replace, bit for bit: a separable matrix's entries (zeros, -0.0, NaN,
products that underflow), a CSR transpose (each column's entries in row order), the layout of
position-sensitive gradients; and roi_align, ps_roi_align and ps_roi_pool, forward and
backward, on both."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_native import _assert_same, _native_module, _rois, _run, _special_map

from rfmap.ops import _sparse, ps_roi_align, ps_roi_pool, roi_align


def _weights(shape, seed, dtype):
    """``[K, P, L]`` axis weights: most zero, some -0.0 (not an entry), NaN (an entry) and the
    smallest normal number (two of them make a product that underflows to 0: still an entry)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    w[torch.rand(shape, generator=g) < 0.6] = 0
    flat = w.view(-1)
    for value, count in ((-0.0, 9), (float("nan"), 3), (torch.finfo(dtype).tiny, 40)):
        flat[torch.randint(0, flat.numel(), (count,), generator=g)] = value
    return w


@pytest.mark.parametrize("block", [0, 3 * 9 * 11])  # RoI-major; bin-major, bin p's columns from p * block
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index", [torch.int32, torch.int64])
def test_separable_entries_native_equal_pytorch(block, dtype, index):
    native = _native_module()
    rois, ph, pw, height, width = 23, 3, 4, 9, 11
    wy, wx = _weights((rois, ph, height), 1, dtype), _weights((rois, pw, width), 2, dtype)
    slot = torch.randint(0, 3, (rois,), generator=torch.Generator().manual_seed(3))
    total = int(((wy != 0).sum(-1).unsqueeze(2) * (wx != 0).sum(-1).unsqueeze(1)).sum())
    col, val = torch.empty(total, dtype=index), torch.empty(total, dtype=dtype)
    native.separable(wy.data_ptr(), wx.data_ptr(), int(dtype == torch.float64), slot.data_ptr(), rois, ph, pw, height,
                     width, int(block > 0), block, col.data_ptr(), col.element_size(), val.data_ptr())  # fmt: skip
    col_t, val_t = torch.empty_like(col), torch.empty_like(val)
    _sparse._separable_entries(wy, wx, slot, height, width, block, col_t, val_t)
    _assert_same([col, val], [col_t, val_t])
    assert bool(val.isnan().any()) and bool((val == 0).any())  # NaN and underflowed products are entries
    assert int(col.max()) >= (block * (ph * pw - 1) if block else 2 * height * width)  # the last bin's block, image 2


@pytest.mark.parametrize("bin_major", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_separable_matrix_native_equals_pytorch(bin_major, dtype, monkeypatch):
    """The whole matrix (its row pointers, int32 indices) from a batch that uses images 1 and
    3 of 4: their columns are those of two images."""
    wy, wx = _weights((17, 2, 7), 4, dtype), _weights((17, 3, 5), 5, dtype)
    batch = torch.tensor([1, 3] * 8 + [3])

    def parts():
        m = _sparse.PoolingMatrix.separable(wy, wx, batch, 7, 5, bin_major=bin_major)
        return m.crow, m.col, m.val, m.images

    native, pytorch = _run(parts, True, monkeypatch), _run(parts, False, monkeypatch)
    _assert_same(native, pytorch)
    assert native[1].dtype == torch.int32 and int(native[1].max()) < (6 if bin_major else 1) * 2 * 7 * 5


def _random_csr(rows, cols, seed, dtype, index):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(rows, cols, generator=g, dtype=dtype)
    dense[torch.rand(rows, cols, generator=g) < 0.7] = 0
    dense[::5] = 0  # empty rows
    dense[:, ::7] = 0  # and columns
    rows_, cols_ = dense.nonzero(as_tuple=True)  # row-major order
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), (dense != 0).sum(1).cumsum(0)])
    return _sparse._csr(crow.to(index), cols_.to(index), dense[rows_, cols_], (rows, cols)), dense


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index", [torch.int32, torch.int64])
@pytest.mark.parametrize("rows, cols", [(37, 53), (1, 9), (0, 4), (6, 0)])
def test_transpose_native_equals_pytorch(rows, cols, dtype, index, monkeypatch):
    s, dense = _random_csr(rows, cols, 6, dtype, index)

    def parts():
        t = _sparse.transpose(s)
        return t.crow_indices(), t.col_indices(), t.values()

    native, pytorch = _run(parts, True, monkeypatch), _run(parts, False, monkeypatch)
    _assert_same(native, pytorch)
    crow, row, values = native
    assert crow.dtype == row.dtype == index and crow.numel() == cols + 1
    t = _sparse._csr(crow, row, values, (cols, rows))
    assert torch.equal(t.to_dense(), dense.T)
    for c in range(cols):  # each column's entries in row order: products with it are deterministic
        assert row[crow[c] : crow[c + 1]].tolist() == sorted(row[crow[c] : crow[c + 1]].tolist())


def _op_results(op, x, rois, dtype):
    xg = x.to(dtype).requires_grad_()
    y = op(xg, rois.to(dtype))
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(dtype))
    with torch.no_grad():
        plain = op(x.to(dtype), rois.to(dtype))
    return y.detach(), xg.grad, plain


OPS = {
    "roi_align": lambda x, r: roi_align(x, r, (5, 4), 1 / 8, 2),
    "roi_align adaptive aligned": lambda x, r: roi_align(x, r, (3, 5), 1 / 8, 0, True),
    "ps_roi_align": lambda x, r: ps_roi_align(x, r, (3, 2), 1 / 8, 2),
    "ps_roi_pool": lambda x, r: ps_roi_pool(x, r, (2, 3), 1 / 8),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kind", ["random", "special"])
@pytest.mark.parametrize("name", list(OPS))
def test_linear_ops_native_equal_pytorch(name, kind, dtype, monkeypatch):
    """Three images, the middle one without RoIs; NaN and infinities in the maps (the reads
    with weight 0 of position-sensitive RoIAlign)."""
    x = _special_map((3, 24, 13, 17), 8, kind)
    rois = _rois(30, 9, 17 * 8, 13 * 8, 3)
    rois[:, 0] = torch.where(rois[:, 0] == 1, 2.0, rois[:, 0])
    native = _run(lambda: _op_results(OPS[name], x, rois, dtype), True, monkeypatch)
    pytorch = _run(lambda: _op_results(OPS[name], x, rois, dtype), False, monkeypatch)
    _assert_same(native, pytorch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 14), st.integers(1, 14)),
    pooled=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    k=st.integers(0, 12),
    sampling=st.integers(-1, 3),
    seed=st.integers(0, 2**16),
)
def test_position_sensitive_ops_native_equal_pytorch_on_random_shapes(shape, pooled, k, sampling, seed, monkeypatch):
    n, c_out, height, width = shape
    x = torch.randn((n, c_out * pooled[0] * pooled[1], height, width), generator=torch.Generator().manual_seed(seed))
    rois = _rois(k, seed, width * 4, height * 4, n)
    for op in (lambda t, r: ps_roi_align(t, r, pooled, 1 / 4, sampling), lambda t, r: ps_roi_pool(t, r, pooled, 1 / 4)):
        native = _run(lambda op=op: _op_results(op, x, rois, torch.float32), True, monkeypatch)
        pytorch = _run(lambda op=op: _op_results(op, x, rois, torch.float32), False, monkeypatch)
        _assert_same(native, pytorch)
