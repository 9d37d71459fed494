"""Bad arguments raise RFMapError (a ValueError) naming the problem and the offending box.

The checks that need the boxes' values run inside the registered ops' kernels
(tests/ops/test_library.py runs them through compiled, exported and scripted modules)."""

import pytest
import torch

from rfmap import RFMapError
from rfmap.ops import (
    MultiScaleRoIAlign,
    PSRoIAlign,
    RoIAlign,
    RoIPool,
    SpatialPyramidPool,
    ps_roi_align,
    ps_roi_pool,
    roi_align,
    roi_pool,
    spp_pool,
)

X = torch.zeros(2, 4, 8, 8)
GOOD = torch.tensor([[0, 1.0, 1, 4, 4], [1, 0, 0, 7, 7], [0, 2, 2, 3, 3]])
OPS = [
    pytest.param(roi_pool, id="roi_pool"),
    pytest.param(roi_align, id="roi_align"),
    pytest.param(ps_roi_pool, id="ps_roi_pool"),
    pytest.param(ps_roi_align, id="ps_roi_align"),
]


def with_row(k: int, row) -> torch.Tensor:
    boxes = GOOD.clone()
    boxes[k] = torch.tensor(row, dtype=boxes.dtype)
    return boxes


def raises(op, *args, match):
    with pytest.raises(RFMapError, match=match) as info:
        op(*args)
    assert isinstance(info.value, ValueError)
    assert info.value.args[0].startswith(op.__name__ + ":")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "k, row, match",
    [
        (2, [0, float("nan"), 1, 4, 4], r"box 2 has a value that is not finite"),
        (1, [1, 0, 0, float("inf"), 7], r"box 1 has a value that is not finite"),
        (2, [float("nan"), 0, 0, 1, 1], r"box 2 has a value that is not finite"),
        (1, [2, 0, 0, 1, 1], r"box 1 has batch index 2, out of range for a batch of 2"),
        (0, [-1, 0, 0, 1, 1], r"box 0 has batch index -1, out of range"),
        (2, [0.5, 0, 0, 1, 1], r"box 2 has a batch index that is not an integer: 0.5"),
        (1, [1, 0, 0, 1e9, 1], r"box 1 .* leaves the supported range"),
    ],
)
def test_bad_boxes(op, k, row, match):
    raises(op, X, with_row(k, row), 2, match=match)


@pytest.mark.parametrize("op", OPS)
def test_inverted_boxes_are_computed_not_rejected(op):
    # x2 < x1, y2 < y1: torchvision computes them (values: tests/ops/test_roi_*.py, test_ps_roi.py)
    boxes = torch.tensor([[1, 5.0, 0, 2, 7], [0, 0, 6, 7, 3], [0, 6, 6, 1, 1]])
    assert op(X + 1, boxes, 2).shape == (3, X.shape[1] // (4 if op.__name__.startswith("ps") else 1), 2, 2)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "boxes, match",
    [
        (torch.zeros(3, 4), r"no batch index; pass a Tensor\[K, 5\]"),
        (torch.zeros(3, 6), r"boxes must be a Tensor\[K, 5\] .* got shape \[3, 6\]"),
        (torch.zeros(5), r"got shape \[5\]"),
        (torch.zeros(3, 5, dtype=torch.bool), r"boxes must be a real tensor"),
        (torch.zeros(3, 5, dtype=torch.complex64), r"boxes must be a real tensor"),
        ([torch.zeros(1, 4), torch.zeros(2, 5)], r"boxes\[1\] must be a Tensor\[L, 4\]"),
        ([torch.zeros(1, 4), [1, 2, 3, 4]], r"boxes\[1\] must be a Tensor\[L, 4\]"),
        ([], r"boxes is an empty list"),
        ("boxes", r"boxes must be a Tensor\[K, 5\] or a list of Tensor\[L, 4\], got str"),
        ([torch.zeros(1, 4)] * 3, r"box 2 has batch index 2, out of range for a batch of 2"),
    ],
)
def test_bad_box_containers(op, boxes, match):
    raises(op, X, boxes, 2, match=match)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "input, match",
    [
        (torch.zeros(4, 8, 8), r"input must be a 4-D tensor \(N, C, H, W\), got shape \[4, 8, 8\]"),
        (torch.zeros(2, 4, 8, 8, dtype=torch.int64), r"input must be a floating-point tensor, got torch.int64"),
        (torch.zeros(2, 4, 0, 8), r"input has an empty spatial size \[0, 8\]"),
        ([[1.0]], r"input must be a torch.Tensor, got list"),
    ],
)
def test_bad_input(op, input, match):
    raises(op, input, GOOD, 2, match=match)


@pytest.mark.parametrize("op", OPS)
def test_mismatched_devices(op):
    raises(op, X, GOOD.to("meta"), 2, match=r"boxes are on meta but input is on cpu")
    raises(op, X, [torch.zeros(1, 4), torch.zeros(1, 4, device="meta")], 2, match=r"boxes\[1\] is on meta")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [0, -1, (7, 0), (7,), (7, 7, 7), 1.5, (2.0, 2), True, None])
def test_bad_output_size(op, size):
    raises(op, X, GOOD, size, match=r"output_size must be a positive int or a pair of them")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), float("inf"), "1/16", True, None])
def test_bad_spatial_scale(op, scale):
    raises(op, X, GOOD, 2, scale, match=r"spatial_scale must be")


def test_bad_roi_align_arguments():
    raises(roi_align, X, GOOD, 2, 1.0, 1.5, match=r"sampling_ratio must be an int")
    raises(roi_align, X, GOOD, 2, 1.0, 2, "yes", match=r"aligned must be a bool, got 'yes'")
    raises(ps_roi_align, X, GOOD, 2, 1.0, 1.5, match=r"sampling_ratio must be an int")


@pytest.mark.parametrize("op", [ps_roi_align, ps_roi_pool])
def test_position_sensitive_channels(op):
    raises(op, torch.zeros(2, 6, 8, 8), GOOD, 2, match=r"input has 6 channels, not a multiple of output_size 2 x 2 = 4")
    raises(op, torch.zeros(2, 6, 8, 8), GOOD, (1, 4), match=r"not a multiple of output_size 1 x 4 = 4")


def test_bad_spp_arguments():
    raises(spp_pool, X, (), match=r"levels must be a non-empty sequence of positive ints")
    raises(spp_pool, X, (4, 0), match=r"levels must be")
    raises(spp_pool, X, (2.5,), match=r"levels must be")
    raises(spp_pool, X, (4, 2, 1), "median", match=r"mode must be one of \('max', 'avg'\), got 'median'")
    raises(spp_pool, torch.zeros(3, 8, 8), match=r"input must be a 4-D tensor")
    raises(spp_pool, torch.zeros(1, 3, 8, 8, dtype=torch.int32), match=r"floating-point")


def test_modules_validate_at_construction():
    with pytest.raises(RFMapError, match=r"RoIPool: output_size"):
        RoIPool(0)
    with pytest.raises(RFMapError, match=r"RoIPool: spatial_scale"):
        RoIPool(7, -1.0)
    with pytest.raises(RFMapError, match=r"RoIAlign: sampling_ratio"):
        RoIAlign(7, 1.0, 2.5)
    with pytest.raises(RFMapError, match=r"RoIAlign: aligned"):
        RoIAlign(7, 1.0, 2, 1)
    with pytest.raises(RFMapError, match=r"SpatialPyramidPool: mode"):
        SpatialPyramidPool((4, 2, 1), "sum")
    with pytest.raises(RFMapError, match=r"PSRoIAlign: sampling_ratio"):
        PSRoIAlign(7, 1.0, 2.5)
    with pytest.raises(RFMapError, match=r"MultiScaleRoIAlign: rule must be one of"):
        MultiScaleRoIAlign(["0"], 7, 2, rule="caffe")


def test_integer_boxes_and_valid_edge_cases_are_accepted():
    boxes = GOOD.long()
    assert torch.equal(roi_pool(X, boxes, 2), roi_pool(X, GOOD, 2))
    assert roi_align(X, [torch.zeros(0, 4)] * 2, 3).shape == (0, 4, 3, 3)
    assert roi_align(torch.zeros(2, 0, 8, 8), GOOD, 3).shape == (3, 0, 3, 3)
    assert roi_pool(torch.zeros(2, 0, 8, 8), GOOD, 3).shape == (3, 0, 3, 3)
    assert ps_roi_pool(torch.zeros(2, 0, 8, 8), GOOD, 3).shape == (3, 0, 3, 3)
    assert ps_roi_align(X, [torch.zeros(0, 4)] * 2, 2).shape == (0, 1, 2, 2)
