"""ps_roi_align and ps_roi_pool against torchvision's loops (tests/ops/ops_reference.py), the
R-FCN channel layout, gradients and determinism."""

import sys

import numpy as np
import pytest
import torch
from ops_reference import ps_roi_align_reference, ps_roi_pool_reference, random_rois

from rfmap.ops import PSRoIAlign, PSRoIPool, ps_roi_align, ps_roi_pool


def test_bin_reads_its_own_score_map():
    # R-FCN: output bin (ph, pw) of output channel c reads input channel (c * PH + ph) * PW + pw;
    # constant maps make each bin show which channel it read
    x = torch.arange(2 * 2 * 3, dtype=torch.float64).view(1, 12, 1, 1).expand(1, 12, 6, 6).contiguous()
    box = torch.tensor([[0, 0.0, 0, 6, 6]], dtype=torch.float64)
    for op in (ps_roi_align, ps_roi_pool):
        out = op(x, box, (2, 3))
        assert out.shape == (1, 2, 2, 3)
        np.testing.assert_allclose(out[0].flatten(), np.arange(12.0), rtol=1e-14)


def test_hand_computed_bins():
    x = torch.arange(36.0).view(1, 1, 6, 6).expand(1, 4, 6, 6).contiguous()
    # ps_roi_pool: box cells 0..4 -> roi 4 (no + 1), bins of 2 cells: [0, 2), [2, 4)
    out = ps_roi_pool(x, torch.tensor([[0, 0.0, 0, 4, 4]]), 2)
    assert out[0, 0].tolist() == [[3.5, 5.5], [15.5, 17.5]]  # means of 2 x 2 blocks
    # the bins are clipped to [0, W - 1]: the last row and column never count
    out = ps_roi_pool(x, torch.tensor([[0, 0.0, 0, 8, 8]]), 1)
    assert out[0, :, 0, 0].tolist() == [float(np.mean(np.arange(36.0).reshape(6, 6)[:5, :5]))] * 4
    # ps_roi_align: aligned sampling, box (1, 1, 3, 3) with one sample per bin at the bin centre
    out = ps_roi_align(x, torch.tensor([[0, 1.0, 1, 3, 3]]), 2, 1.0, 1)
    assert out[0, 0].tolist() == [[7.0, 8.0], [13.0, 14.0]]  # pixels (1, 1), (1, 2), (2, 1), (2, 2)


def test_zero_size_box_is_nan_in_ps_roi_align():
    # adaptive grid of a zero-size box: 0 samples, 0 / 0 in torchvision's kernel
    x = torch.ones(1, 4, 5, 5)
    assert torch.isnan(ps_roi_align(x, torch.tensor([[0, 2.0, 2, 2, 2]]), 2)).all()
    assert ps_roi_align(x, torch.tensor([[0, 2.0, 2, 2, 2]]), 2, 1.0, 2).tolist() == [[[[1, 1], [1, 1]]]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
def test_ps_roi_align_against_reference(dtype, sampling_ratio):
    rng = np.random.default_rng([sampling_ratio + 2, dtype == torch.float32])
    x = torch.from_numpy(rng.standard_normal((2, 2 * 6, 7, 9))).to(dtype)
    rois = random_rois(rng, 20, 2, 7, 9, 0.5)
    out = ps_roi_align(x, rois, (2, 3), 0.5, sampling_ratio)
    expected = ps_roi_align_reference(x, rois, (2, 3), 0.5, sampling_ratio)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 16])
def test_ps_roi_pool_against_reference(dtype, scale):
    rng = np.random.default_rng([int(1 / scale), dtype == torch.float32])
    x = torch.from_numpy(rng.standard_normal((2, 3 * 4, 8, 9))).to(dtype)
    rois = random_rois(rng, 24, 2, 8, 9, scale)
    out = ps_roi_pool(x, rois, 2, scale)
    expected = ps_roi_pool_reference(x, rois, 2, scale)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", [ps_roi_align, ps_roi_pool])
def test_non_finite_inputs_against_reference(op):
    rng = np.random.default_rng(17)
    x = torch.from_numpy(rng.standard_normal((2, 8, 6, 7)))
    spots = torch.from_numpy(rng.random(x.shape) < 0.1)
    x[spots] = torch.from_numpy(rng.choice([np.inf, -np.inf, np.nan], int(spots.sum())))
    rois = random_rois(rng, 24, 2, 6, 7, 0.5)
    reference = ps_roi_align_reference if op is ps_roi_align else ps_roi_pool_reference
    np.testing.assert_allclose(op(x, rois, 2, 0.5).numpy(), reference(x, rois, 2, 0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", [ps_roi_align, ps_roi_pool])
def test_gradcheck(op):
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.standard_normal((2, 4, 3, 4))).requires_grad_()
    rois = random_rois(rng, 6, 2, 3, 4, 0.5)
    rois = rois[~torch.isnan(ps_roi_align(x.detach(), rois, 2, 0.5)).flatten(1).any(1)]  # 0 / 0 bins: no gradient
    assert torch.autograd.gradcheck(lambda t: op(t, rois, 2, 0.5), (x,))
    assert torch.autograd.gradgradcheck(lambda t: op(t, rois, 2, 0.5), (x,))


@pytest.mark.parametrize("op", [ps_roi_align, ps_roi_pool])
def test_backward_is_deterministic_and_the_transpose(op):
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.standard_normal((2, 16, 12, 12))).float()
    rois = random_rois(rng, 200, 2, 12, 12, 1.0, inverted=False)
    grad = torch.randn(200, 4, 2, 2)
    grads = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        out = op(xg, rois, 2)
        out.backward(torch.where(torch.isnan(out), 0, grad))
        grads.append(xg.grad)
    assert torch.equal(grads[0], grads[1])
    x64 = x.double().requires_grad_()
    out = op(x64, rois, 2)
    g = torch.where(torch.isnan(out), 0, grad.double())
    out.backward(g)
    assert torch.allclose(torch.nansum(out * g), (x64 * x64.grad).sum(), rtol=1e-12)


@pytest.mark.parametrize(
    "op, builder, backward, params",
    [
        (ps_roi_align, "_align_matrix", "_ps_roi_align_backward", (1.0, 3, 3, 2)),
        (ps_roi_pool, "_pool_matrix", "_ps_roi_pool_backward", (1.0, 3, 3)),
    ],
)
def test_backward_reuses_the_forward_matrix_only_for_the_same_boxes(monkeypatch, op, builder, backward, params):
    # as roi_align's: interleaved forward and backward calls rebuild, equal boxes reuse
    module = sys.modules["rfmap.ops.ps_roi"]
    rng = np.random.default_rng(15)
    x = torch.from_numpy(rng.standard_normal((2, 18, 9, 11))).float()
    rois_a, rois_b = random_rois(rng, 20, 2, 9, 11, 1.0), random_rois(rng, 20, 2, 9, 11, 1.0)
    grad = torch.randn(20, 2, 3, 3)
    backward_op = getattr(torch.ops.rfmap, backward)
    expected = [backward_op(grad, rois, *params, 2, 18, 9, 11) for rois in (rois_a, rois_b)]
    built, original = [], getattr(module, builder)
    monkeypatch.setattr(module, builder, lambda *a, **k: built.append(1) or original(*a, **k))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    call = (lambda t, rois: op(t, rois, 3, 1.0, 2)) if op is ps_roi_align else (lambda t, rois: op(t, rois, 3, 1.0))
    out_a, out_b = call(xa, rois_a), call(xb, rois_b)
    out_a.backward(grad)
    out_b.backward(grad)
    assert len(built) == 4
    built.clear()
    xc = x.clone().requires_grad_()
    call(xc, rois_a.clone()).backward(grad)
    assert len(built) == 1
    for got, want in zip((xa.grad, xb.grad, xc.grad), (expected[0], expected[1], expected[0])):
        assert torch.equal(got, want)


def test_gradient_stays_inside_the_forward_bins():
    # torchvision's backward clips bins to [0, W], its forward to [0, W - 1]; here the gradient
    # is the forward's: nothing reaches the last row and column
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    ps_roi_pool(x, torch.tensor([[0, 0.0, 0, 8, 8]]), 1).sum().backward()
    assert x.grad[0, 0, 3].abs().sum() == 0 and x.grad[0, 0, :, 3].abs().sum() == 0
    assert torch.allclose(x.grad[0, 0, :3, :3], torch.full((3, 3), 1 / 9))


def test_modules_and_box_lists():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 8, 6, 7)))
    a, b = torch.tensor([[0.0, 1, 5, 4], [1, 1, 2, 2]], dtype=torch.float64), torch.tensor([[2.0, 0, 6, 5]], dtype=torch.float64)
    rois = torch.tensor([[0, 0.0, 1, 5, 4], [0, 1, 1, 2, 2], [1, 2, 0, 6, 5]], dtype=torch.float64)
    align, pool = PSRoIAlign(2, 0.5, 2), PSRoIPool(2, 0.5)
    assert repr(align) == "PSRoIAlign(output_size=(2, 2), spatial_scale=0.5, sampling_ratio=2)"
    assert repr(pool) == "PSRoIPool(output_size=(2, 2), spatial_scale=0.5)"
    assert torch.equal(align(x, [a, b]), ps_roi_align(x, rois, 2, 0.5, 2))
    assert torch.equal(pool(x, [a, b]), ps_roi_pool(x, rois, 2, 0.5))
    xg = x.clone().requires_grad_()
    pool(xg, rois[:2]).sum().backward()
    assert xg.grad[1].abs().sum() == 0 and xg.grad[0].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_floats_compute_in_float32(dtype):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((2, 8, 9, 13))).to(dtype)
    rois = random_rois(rng, 20, 2, 9, 13, 0.5, inverted=False)
    for op in (ps_roi_align, ps_roi_pool):
        out = op(x, rois, 2, 0.5)
        assert out.dtype == dtype
        torch.testing.assert_close(out, op(x.float(), rois.float(), 2, 0.5).to(dtype), rtol=0, atol=0, equal_nan=True)
