"""roi_pool against the Caffe loop (tests/ops/ops_reference.py), golden values and gradients."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_reference import FLT_MAX, random_rois, roi_pool_reference

from rfmap.ops import RoIPool, _rectmax, roi_pool
from rfmap.ops._boxes import roi_pool_cells, round_half_away_from_zero


def reference_grad(input, rois, output_size, scale, grad):
    """Input gradient of the reference: each output gradient added at its argmax, in order."""
    _, argmax = roi_pool_reference(input, rois, output_size, scale)
    n, c, h, w = input.shape
    k = rois.shape[0]
    plane = (rois[:, 0].long().view(-1, 1, 1) * c + torch.arange(c).view(1, -1, 1)) * (h * w)
    target = (plane + torch.from_numpy(argmax).view(k, c, -1)).flatten()
    keep = torch.from_numpy(argmax).flatten() >= 0
    out = torch.zeros(n * c * h * w, dtype=grad.dtype)
    out.index_add_(0, target[keep], grad.flatten()[keep])
    return out.view(n, c, h, w)


def check_against_reference(x, rois, output_size, scale):
    """Values exactly; gradients at exactly the reference's argmax."""
    expected, _ = roi_pool_reference(x, rois, output_size, scale)
    with torch.no_grad():
        np.testing.assert_array_equal(roi_pool(x, rois, output_size, scale).double().numpy(), expected)
    xg = x.clone().requires_grad_()
    out = roi_pool(xg, rois, output_size, scale)
    np.testing.assert_array_equal(out.detach().double().numpy(), expected)  # the argmax path too
    grad = torch.randn(out.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    out.backward(grad)
    assert torch.equal(xg.grad, reference_grad(x, rois, output_size, scale, grad))


# -- golden values -------------------------------------------------------------------


def test_fast_rcnn_example():
    # box (30, 40, 200, 400) at 1/16 -> cells x 2..13, y 3..25 (200/16 = 12.5 rounds up to 13)
    cells = roi_pool_cells(torch.tensor([[30.0, 40.0, 200.0, 400.0]]), 1 / 16)
    assert cells.tolist() == [[2, 3, 13, 25]]
    assert cells.dtype == torch.int64
    # through the op: a 1x1 pool of a map holding its own flat index is the window's last
    # cell, of its negation the window's first cell
    index = torch.arange(38 * 50, dtype=torch.float32).view(1, 1, 38, 50)
    box = [torch.tensor([[30.0, 40.0, 200.0, 400.0]])]
    assert roi_pool(index, box, 1, 1 / 16).item() == 25 * 50 + 13
    assert -roi_pool(-index, box, 1, 1 / 16).item() == 3 * 50 + 2


def test_round_half_away_from_zero_not_to_even():
    below_half = float(np.nextafter(np.float32(0.5), np.float32(0)))
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 12.5, below_half, -below_half, 3.0])
    assert round_half_away_from_zero(x).tolist() == [1, 2, 3, -1, -3, 13, 0, 0, 3]
    assert torch.round(x)[:3].tolist() == [0, 2, 2]  # what torch.round would have given


def test_half_pixel_rounds_up():
    # x1 = 8 at 1/16 is 0.5 -> cell 1 (C round), not 0 (torch.round)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert roi_pool(x, torch.tensor([[0, 8.0, 8.0, 8.0, 8.0]]), 1, 1 / 16).item() == 5.0
    assert roi_pool(-x, torch.tensor([[0, 8.0, 8.0, 40.0, 40.0]]), 1, 1 / 16).item() == -5.0
    # -0.5 rounds to -1 (not -0): cells -1..1, so the first of 3 bins lies outside the map
    out = roi_pool(x + 1, torch.tensor([[0, -8.0, -8.0, 8.0, 8.0]]), (1, 3), 1 / 16)
    assert out[0, 0, 0].tolist() == [0, 5, 6]  # max over rows 0..1 of columns 0 and 1


def test_hand_computed_bins():
    # 5 x 7 box on a 6 x 8 map, 2 x 3 output: bin_h = 5/2, bin_w = 7/3
    x = torch.arange(48.0).view(1, 1, 6, 8)
    out = roi_pool(x, torch.tensor([[0, 1.0, 0.0, 7.0, 4.0]]), (2, 3))
    # rows [0, 3), [2, 5); cols 1 + [0, 3), 1 + [2, 5), 1 + [4, 7)
    assert out[0, 0].tolist() == [[2 * 8 + 3, 2 * 8 + 5, 2 * 8 + 7], [4 * 8 + 3, 4 * 8 + 5, 4 * 8 + 7]]


# -- against the reference loop ------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("output_size", [(7, 7), (3, 5), (1, 1)])
@pytest.mark.parametrize("scale", [1.0, 0.25, 1 / 16])
def test_random_against_reference(dtype, output_size, scale):
    rng = np.random.default_rng(hash((str(dtype), output_size, scale)) % 2**32)
    x = torch.from_numpy(rng.standard_normal((2, 3, 9, 13))).to(dtype)
    rois = random_rois(rng, 24, 2, 9, 13, scale)
    check_against_reference(x, rois, output_size, scale)


def test_ties_take_the_first_maximum():
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.integers(0, 3, (2, 2, 8, 10)).astype(np.float64))
    rois = random_rois(rng, 30, 2, 8, 10, 0.5)
    check_against_reference(x, rois, (3, 4), 0.5)
    # a constant map: every gradient lands on the first cell of its bin
    flat = torch.zeros(1, 1, 4, 4, requires_grad=True)
    roi_pool(flat, [torch.tensor([[0.0, 0.0, 3.0, 3.0]])], 2).sum().backward()
    assert flat.grad[0, 0].nonzero().tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_and_infinite_inputs_like_the_c_loop(dtype):
    # the loop starts at -FLT_MAX and keeps a strictly greater value: NaN never wins, a bin
    # of -inf (or NaN) gives -FLT_MAX and no gradient
    x = torch.ones(1, 2, 4, 4, dtype=dtype)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = float("nan")
    x[0, 0, 0, 0] = 0.5
    x[0, 0, 2:, 2:] = float("-inf")
    x[0, 0, 2:, :2] = float("nan")
    x[0, 1] = float("-inf")
    x[0, 1, 3, 3] = float("inf")
    box = torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]], dtype=dtype)
    check_against_reference(x, box, 2, 1.0)
    xg = x.clone().requires_grad_()
    out = roi_pool(xg, box, 2)
    assert out[0, 0].tolist() == [[1, 1], [-FLT_MAX, -FLT_MAX]]
    assert out[0, 1].tolist() == [[-FLT_MAX, -FLT_MAX], [-FLT_MAX, float("inf")]]
    out.backward(torch.ones_like(out))
    assert xg.grad[0, 0].nonzero().tolist() == [[0, 2], [1, 1]]  # the first 1 past the NaNs and the 0.5
    assert xg.grad[0, 1].nonzero().tolist() == [[3, 3]]


def test_non_finite_inputs_against_reference():
    rng = np.random.default_rng(31)
    x = torch.from_numpy(rng.standard_normal((2, 3, 7, 9)))
    spots = torch.from_numpy(rng.random(x.shape) < 0.3)
    x[spots] = torch.from_numpy(rng.choice([np.inf, -np.inf, np.nan], int(spots.sum())))
    x[1, 1] = -np.inf
    check_against_reference(x, random_rois(rng, 40, 2, 7, 9, 0.5), (3, 2), 0.5)


def test_half_precision_all_minus_inf_bin():
    # -FLT_MAX is -inf in float16, as in torchvision's kernel for at::Half
    x = torch.full((1, 1, 2, 2), float("-inf"), dtype=torch.float16)
    assert roi_pool(x, torch.tensor([[0, 0.0, 0, 1, 1]]), 1).item() == float("-inf")


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    output_size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    scale=st.sampled_from([1.0, 0.5, 1 / 3, 1 / 16]),
)
def test_property_against_reference(seed, size, output_size, scale):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((2, 2, *size)))
    rois = random_rois(rng, 6, 2, *size, scale)
    check_against_reference(x, rois, output_size, scale)


def test_blocked_paths_agree(monkeypatch):
    # a tiny table and chunk budget: several channel groups, one RoI per chunk
    rng = np.random.default_rng(21)
    x = torch.from_numpy(rng.standard_normal((3, 5, 7, 9)))
    rois = random_rois(rng, 10, 3, 7, 9, 0.5)
    monkeypatch.setattr(_rectmax, "_TABLE", 200)
    monkeypatch.setattr(_rectmax, "_CHUNK", 1)
    check_against_reference(x, rois, (3, 2), 0.5)


def test_capped_table_levels_agree(monkeypatch):
    # a table budget below the levels the bins need: wide bins are covered by rows of windows
    rng = np.random.default_rng(22)
    x = torch.from_numpy(rng.integers(0, 4, (2, 3, 23, 29)).astype(np.float64))  # many ties
    rois = torch.cat([random_rois(rng, 12, 2, 23, 29, 1.0), torch.tensor([[1, -3.0, -2, 40, 30]])])
    table = _rectmax._SparseTable.fitting(2, 23, 29, 4, 4, "cpu")
    assert (table.levels_y, table.levels_x) == (4, 4)
    monkeypatch.setattr(_rectmax, "_TABLE", 1)  # budget: the images themselves, level (0, 0)
    table = _rectmax._SparseTable.fitting(2, 23, 29, 4, 4, "cpu")
    assert (table.levels_y, table.levels_x) == (0, 0)
    check_against_reference(x, rois, (2, 3), 1.0)
    monkeypatch.setattr(_rectmax, "_TABLE", 5 * 2 * 23 * 29)  # some levels, not all
    check_against_reference(x, rois, (2, 3), 1.0)
    monkeypatch.setattr(_rectmax, "_CHUNK", 50)  # and windows in blocks
    check_against_reference(x, rois, (2, 3), 1.0)


# -- gradients, dtypes, determinism, shapes ------------------------------------------


def test_gradcheck_away_from_ties():
    rng = np.random.default_rng(3)
    # distinct values far apart compared with gradcheck's eps
    x = torch.from_numpy(rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.01).requires_grad_()
    rois = random_rois(rng, 8, 2, 5, 6, 0.5)
    assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (3, 2), 0.5), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_floats_match_float32(dtype):
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.standard_normal((2, 3, 9, 13))).to(dtype)
    rois = random_rois(rng, 20, 2, 9, 13, 0.5)
    expected = roi_pool(x.float(), rois.float(), 4, 0.5).to(dtype)
    out = roi_pool(x, rois, 4, 0.5)
    assert out.dtype == dtype
    assert torch.equal(out, expected)
    xg = x.clone().requires_grad_()
    roi_pool(xg, rois, 4, 0.5).sum().backward()
    xf = x.float().requires_grad_()
    roi_pool(xf, rois.float(), 4, 0.5).sum().backward()
    assert xg.grad.dtype == dtype and torch.equal(xg.grad, xf.grad.to(dtype))


def test_backward_is_deterministic():
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.standard_normal((2, 8, 12, 12))).float()
    rois = random_rois(rng, 200, 2, 12, 12, 1.0)  # many overlapping boxes: shared argmaxes
    grad = torch.randn(200, 8, 5, 5)
    grads = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        roi_pool(xg, rois, 5).backward(grad)
        grads.append(xg.grad)
    assert torch.equal(grads[0], grads[1])


def test_no_boxes():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = roi_pool(x, torch.zeros(0, 5), (2, 4))
    assert out.shape == (0, 3, 2, 4)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert roi_pool(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 3, 2, 2)


def test_box_list_equals_batch_column():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 7)))
    a, b = torch.tensor([[0.0, 1, 5, 4], [1, 1, 2, 2]]), torch.tensor([[2.0, 0, 6, 5]])
    rois = torch.tensor([[0, 0.0, 1, 5, 4], [0, 1, 1, 2, 2], [1, 2, 0, 6, 5]])
    assert torch.equal(roi_pool(x, [a, b], 3), roi_pool(x, rois, 3))


def test_channels_last_and_unused_images():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((3, 4, 6, 7)))
    rois = torch.tensor([[2, 0.0, 1, 5, 4], [2, 1, 1, 3, 6]], dtype=torch.float64)
    expected = roi_pool(x, rois, 2)
    assert torch.equal(roi_pool(x.to(memory_format=torch.channels_last), rois, 2), expected)
    xg = x.clone().requires_grad_()
    roi_pool(xg, rois, 2).sum().backward()
    assert xg.grad[:2].abs().sum() == 0 and xg.grad[2].abs().sum() > 0


def test_int64_indexing_past_2_31_elements():
    # a stride-0 batch of 2^22 images of 64 x 32 x 32: 2^38 elements, none allocated
    image = torch.randn(1, 64, 32, 32)
    x = image.expand(2**22, -1, -1, -1)
    box = torch.tensor([[2.0, 3.0, 27.5, 30.0]])
    rois = torch.cat([torch.full((1, 1), 2.0**22 - 1), box], dim=1)
    assert torch.equal(roi_pool(x, rois, 4), roi_pool(image, [box], 4))
    # gradient targets: pixels h * W + w in the RoI's plane, the same for every image; the
    # backward adds (batch * C + c) * H * W in int64
    out, argmax = torch.ops.rfmap.roi_pool(x, rois, 1.0, 4, 4, True)
    _, expected = torch.ops.rfmap.roi_pool(image, rois * torch.tensor([0, 1, 1, 1, 1]), 1.0, 4, 4, True)
    assert argmax.dtype == torch.int16 and torch.equal(argmax, expected)
    grad = torch.randn(out.shape)
    gx = torch.ops.rfmap._roi_pool_backward(grad, argmax, rois[:, :1] * 0 + 1, 2, 64, 32, 32)  # image 1 of 2
    plane = torch.ops.rfmap._roi_pool_backward(grad, argmax, rois * 0, 1, 64, 32, 32)
    assert torch.equal(gx[1], plane[0]) and not gx[0].any() and plane.abs().sum() > 0


def test_module():
    m = RoIPool((7, 7), 1 / 16)
    assert repr(m) == "RoIPool(output_size=(7, 7), spatial_scale=0.0625)"
    x = torch.randn(1, 2, 10, 10)
    rois = torch.tensor([[0, 0.0, 0, 100, 100]])
    assert torch.equal(m(x, rois), roi_pool(x, rois, 7, 1 / 16))
    assert RoIPool(3).output_size == (3, 3)
