"""roi_align against the torchvision loop (tests/ops/ops_reference.py), detectron2's published
values, gradients and the int64 indexing."""

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_reference import random_rois, roi_align_reference

from rfmap.ops import RoIAlign, _samples, _sparse, roi_align
from rfmap.ops._sparse import PoolingMatrix

# -- golden values -------------------------------------------------------------------


def test_detectron2_published_values():
    # detectron2 tests/layers/test_roi_align.py: arange(25) as 5x5, box [1, 1, 3, 3], 4x4 output
    x = torch.arange(25.0).view(1, 1, 5, 5)
    boxes = [torch.tensor([[1.0, 1.0, 3.0, 3.0]])]
    old = roi_align(x, boxes, 4, 1.0, 0, aligned=False)[0, 0]
    assert old[0].tolist() == [7.5, 8, 8.5, 9]
    assert old[-1].tolist() == [15, 15.5, 16, 16.5]
    new = roi_align(x, boxes, 4, 1.0, 0, aligned=True)[0, 0]
    assert new[0].tolist() == [4.5, 5, 5.5, 6]
    assert new[-1].tolist() == [12, 12.5, 13, 13.5]


def test_hand_computed_border_rules():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    one = dict(output_size=1, spatial_scale=1.0, sampling_ratio=1)
    # sample at (2.5, 3.5): y, x >= size - 1 -> the last row/column alone: pixel (2, 3) = 11
    assert roi_align(x, [torch.tensor([[3.0, 2.0, 4.0, 3.0]])], **one).item() == 11
    # sample at (-0.75, -0.75): between -1 and 0 -> clamped to pixel (0, 0)
    assert roi_align(x, [torch.tensor([[-1.0, -1.0, -0.5, -0.5]])], aligned=True, **one).item() == 0
    # sample at (-1.25, 1): below -1 -> contributes 0
    assert roi_align(x, [torch.tensor([[0.5, -1.5, 1.5, -1.0]])], aligned=True, **one).item() == 0
    # sample at (3.0, 1.0) == H: still inside the tolerance band -> row 2
    assert roi_align(x, [torch.tensor([[0.5, 2.5, 0.5, 2.5]])], **one).item() == 9


def test_roi_size_clamped_only_when_not_aligned():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    point = [torch.tensor([[1.0, 1.0, 1.0, 1.0]])]
    # not aligned: the zero-size box becomes 1x1, its sample at (1.5, 1.5)
    assert roi_align(x, point, 1, sampling_ratio=1).item() == 7.5
    # aligned: roi size 0, adaptive grid ceil(0) = 0 samples -> 0 / max(0, 1) = 0
    assert roi_align(x, point, 1, aligned=True).item() == 0
    # aligned with a fixed grid: all samples at the point (0.5, 0.5)
    assert roi_align(x, point, 1, sampling_ratio=2, aligned=True).item() == 2.5


# -- against the reference loop ------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_against_reference(aligned, sampling_ratio, dtype):
    rng = np.random.default_rng([sampling_ratio + 1, aligned, dtype == torch.float32])
    x = torch.from_numpy(rng.standard_normal((2, 3, 7, 9))).to(dtype)
    rois = random_rois(rng, 16, 2, 7, 9, 0.5)
    out = roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    expected = roi_align_reference(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    output_size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    scale=st.sampled_from([1.0, 0.5, 1 / 3, 1 / 16]),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
)
def test_property_against_reference(seed, size, output_size, scale, sampling_ratio, aligned):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((2, 2, *size)))
    rois = random_rois(rng, 5, 2, *size, scale)
    out = roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
    expected = roi_align_reference(x, rois, output_size, scale, sampling_ratio, aligned)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_chunked_paths_agree(monkeypatch):
    # tiny chunks: the sample loop, the matrix build and the forward all run in pieces
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 7))).requires_grad_()
    rois = random_rois(rng, 12, 2, 6, 7, 0.5)

    def run():
        x.grad = None
        out = roi_align(x, rois, 3, 0.5, -1, True)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape))
        return out.detach(), x.grad

    expected = run()
    monkeypatch.setattr(_sparse, "_CHUNK", 64)
    monkeypatch.setattr(_samples, "_CHUNK", 64)
    monkeypatch.setattr(_sparse, "_CACHE", 16)
    for got, want in zip(run(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- non-finite inputs: torchvision's propagation -------------------------------------


def test_zero_weight_reads_propagate_nan():
    # the sample sits on pixel (0, 0): weight 1 there, weight 0 on its right and lower
    # neighbours, which torchvision still multiplies: 0 * NaN = NaN
    x = torch.tensor([[[[1.0, float("nan")], [3.0, 4.0]]]])
    box = torch.tensor([[0, -0.5, -0.5, 0.5, 0.5]])
    assert torch.isnan(roi_align(x, box, 1, 1.0, 1)).all()
    finite = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert roi_align(finite, box, 1, 1.0, 1).item() == 1.0


def test_outside_samples_read_pixel_zero():
    # every sample beyond the map: torchvision's CPU kernel reads pixel (0, 0) with weight 0
    x = torch.ones(1, 2, 4, 4)
    x[0, 0, 0, 0] = float("inf")
    out = roi_align(x, torch.tensor([[0, 10.0, 10.0, 12.0, 12.0]]), 1, 1.0, 1, True)
    assert torch.isnan(out[0, 0]).all() and out[0, 1].item() == 0


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
def test_non_finite_inputs_against_reference(aligned, sampling_ratio):
    rng = np.random.default_rng([sampling_ratio, aligned, 7])
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 7)))
    spots = torch.from_numpy(rng.random(x.shape) < 0.1)
    x[spots] = torch.from_numpy(rng.choice([np.inf, -np.inf, np.nan], int(spots.sum())))
    x[1, 2] = -np.inf  # an all -inf map: -inf where every read has weight > 0, NaN elsewhere
    inside, beyond = [1, 2.0, 2, 9, 8], [1, 20.0, 20, 24, 24]  # samples in the map; all beyond it
    rois = torch.cat([random_rois(rng, 24, 2, 6, 7, 0.5), torch.tensor([inside, beyond])])
    out = roi_align(x, rois, (2, 3), 0.5, sampling_ratio, aligned).numpy()
    expected = roi_align_reference(x, rois, (2, 3), 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)  # NaN and inf where the reference has them
    assert np.isneginf(out[-2, 2]).all() and np.isnan(out[-1, 2]).all()


# -- gradients, dtypes, determinism, shapes ------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck(aligned):
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.standard_normal((2, 1, 4, 5))).requires_grad_()
    rois = random_rois(rng, 6, 2, 4, 5, 0.5)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 3), 0.5, -1, aligned), (x,))
    # the op is linear: its backward too, whose gradient is the op again
    assert torch.autograd.gradgradcheck(lambda t: roi_align(t, rois, (2, 3), 0.5, 2, aligned), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_floats_compute_in_float32(dtype):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((2, 3, 9, 13))).to(dtype)
    rois = random_rois(rng, 20, 2, 9, 13, 0.5)
    out = roi_align(x, rois, 4, 0.5, 2)
    assert out.dtype == dtype
    assert torch.equal(out, roi_align(x.float(), rois.float(), 4, 0.5, 2).to(dtype))
    xg = x.clone().requires_grad_()
    roi_align(xg, rois, 4, 0.5, 2).sum().backward()
    assert xg.grad.dtype == dtype


def test_backward_is_deterministic():
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.standard_normal((2, 16, 12, 12))).float()
    rois = random_rois(rng, 300, 2, 12, 12, 1.0)
    grad = torch.randn(300, 16, 7, 7)
    grads = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        roi_align(xg, rois, 7, 1.0, 2).backward(grad)
        grads.append(xg.grad)
    assert torch.equal(grads[0], grads[1])


def test_backward_reuses_the_forward_matrix_only_for_the_same_boxes(monkeypatch):
    # the backward call takes the forward call's matrix when its boxes and arguments are the
    # same; interleaved calls (two forward passes, then their backward passes) rebuild it
    roi_align_module = sys.modules["rfmap.ops.roi_align"]  # the module (the package exports the function)
    rng = np.random.default_rng(14)
    x = torch.from_numpy(rng.standard_normal((2, 4, 9, 11))).float()
    rois_a, rois_b = random_rois(rng, 20, 2, 9, 11, 1.0), random_rois(rng, 20, 2, 9, 11, 1.0)
    grad = torch.randn(20, 4, 3, 3)
    expected = [
        torch.ops.rfmap._roi_align_backward(grad, rois, 1.0, 3, 3, 2, False, 2, 4, 9, 11) for rois in (rois_a, rois_b)
    ]
    built, original = [], roi_align_module._matrix
    monkeypatch.setattr(roi_align_module, "_matrix", lambda *a: built.append(1) or original(*a))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = roi_align(xa, rois_a, 3, 1.0, 2), roi_align(xb, rois_b, 3, 1.0, 2)
    out_a.backward(grad)  # the memo holds rois_b's matrix: rebuilt
    out_b.backward(grad)  # the memo was emptied: rebuilt
    assert len(built) == 4
    built.clear()
    xc = x.clone().requires_grad_()
    roi_align(xc, rois_a.clone(), 3, 1.0, 2).backward(grad)  # equal boxes: taken from the memo
    assert len(built) == 1
    for got, want in zip((xa.grad, xb.grad, xc.grad), (expected[0], expected[1], expected[0])):
        assert torch.equal(got, want)


def test_backward_is_the_transpose():
    # <roi_align(x), g> == <x, roi_align^T(g)> for a linear op
    rng = np.random.default_rng(13)
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 8))).requires_grad_()
    rois = random_rois(rng, 10, 2, 6, 8, 0.5)
    out = roi_align(x, rois, 3, 0.5, 2, True)
    g = torch.randn(out.shape, dtype=torch.float64)
    out.backward(g)
    assert torch.allclose((out * g).sum(), (x * x.grad).sum(), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Sparse")  # torch's notes on its sparse tensors (beta, checks)
@pytest.mark.parametrize("cols", [7, 40_000, 70_000])  # radix-sorted keys, past 2^15, past 2^16
def test_the_sparse_transpose_keeps_each_columns_rows_in_order(cols):
    # the backward's products run in this order, which makes them deterministic
    g = torch.Generator().manual_seed(3)
    keys = torch.randint(max(0, cols - 9), cols, (500,), generator=g)  # many ties
    assert torch.equal(_sparse._stable_order(keys, cols), torch.argsort(keys, stable=True))
    index = torch.stack([torch.randint(0, 30, (400,), generator=g), torch.randint(max(0, cols - 50), cols, (400,), generator=g)])
    s = torch.sparse_coo_tensor(index, torch.randn(400, dtype=torch.float64, generator=g), (30, cols)).coalesce()
    t = _sparse.transpose(s.to_sparse_csr())
    assert torch.equal(t.to_dense(), s.to_dense().T)
    crow, col = t.crow_indices(), t.col_indices()
    assert all(bool((col[a:b].diff() > 0).all()) for a, b in zip(crow[:-1].tolist(), crow[1:].tolist()))


def test_no_boxes():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = roi_align(x, torch.zeros(0, 5), (2, 4))
    assert out.shape == (0, 3, 2, 4)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_channels_last_unused_images_and_box_lists():
    rng = np.random.default_rng(14)
    x = torch.from_numpy(rng.standard_normal((3, 4, 6, 7)))
    rois = torch.tensor([[2, 0.0, 1, 5, 4], [2, 1, 1, 3, 6]], dtype=torch.float64)
    expected = roi_align(x, rois, 2, 1.0, 2)
    assert torch.allclose(roi_align(x.to(memory_format=torch.channels_last), rois, 2, 1.0, 2), expected)
    empty = torch.zeros(0, 4, dtype=torch.float64)
    assert torch.equal(roi_align(x, [empty, empty, rois[:, 1:]], 2, 1.0, 2), expected)
    xg = x.clone().requires_grad_()
    roi_align(xg, rois, 2, 1.0, 2).sum().backward()
    assert xg.grad[:2].abs().sum() == 0 and xg.grad[2].abs().sum() > 0


def test_int64_indexing_past_2_31_elements():
    # a stride-0 batch of 2^22 images of 32 x 32 x 64: 2^38 elements, none allocated
    image = torch.randn(1, 64, 32, 32)
    x = image.expand(2**22, -1, -1, -1)
    box = torch.tensor([[2.0, 3.0, 27.5, 30.0]])
    rois = torch.cat([torch.full((1, 1), 2.0**22 - 1), box], dim=1)
    out = roi_align(x, rois, 4, 1.0, 2, True)
    assert torch.allclose(out, roi_align(image, [box], 4, 1.0, 2, True), rtol=1e-6, atol=1e-6)
    wy = torch.zeros(3, 2, 1000)
    wy[..., [0, -1]] = 0.5
    matrix = PoolingMatrix.separable(wy, wy, torch.tensor([0, 5, 2**40]), 1000, 1000)
    assert matrix.col.dtype == matrix.crow.dtype == torch.int32  # 3 images in use: 3e6 columns
    assert int(matrix.col.max()) == 2 * 1000 * 1000 + 999 * 1000 + 999  # image slot 2, last pixel
    # 2200 images of 1000 x 1000 in use: columns beyond 2^31, int64 indices
    wy = torch.zeros(2200, 1, 1000)
    wy[..., -1] = 1.0
    matrix = PoolingMatrix.separable(wy, wy, torch.arange(2200) * 7, 1000, 1000)
    assert matrix.col.dtype == matrix.crow.dtype == torch.int64
    assert int(matrix.col.max()) == 2199 * 1000 * 1000 + 999 * 1000 + 999 > 2**31


def test_module():
    m = RoIAlign((7, 7), 1 / 16, 2, True)
    assert repr(m) == "RoIAlign(output_size=(7, 7), spatial_scale=0.0625, sampling_ratio=2, aligned=True)"
    x = torch.randn(1, 2, 10, 10)
    rois = torch.tensor([[0, 0.0, 0, 100, 100]])
    assert torch.equal(m(x, rois), roi_align(x, rois, 7, 1 / 16, 2, True))
