"""rfmap.mapping.levels: FPN level assignment by the torchvision, detectron2 and mmdetection rules and
torchvision's scale inference, on numpy arrays and torch tensors, against the libraries' rules
restated in torch (tests/ops/fpn_reference.py)."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from fpn_reference import detectron2_levels, mmdet_levels, torchvision_infer_scale, torchvision_levels

from rfmap import RFMapError
from rfmap.mapping.levels import RULES, assign_levels, infer_scale, infer_scales


def random_boxes(rng, count, dtype=np.float32):
    """Boxes from 4 to 1600 pixels on a side, log-uniform, and exactly on the level boundaries
    (sides 56 * 2^j, where the epsilon decides) and just below them."""
    sides = np.exp(rng.uniform(np.log(4), np.log(1600), (count, 2)))
    exact = 56.0 * 2.0 ** rng.integers(-1, 6, (count // 4, 1)) * np.ones((1, 2))
    below = np.nextafter(exact.astype(dtype), np.zeros((), dtype)).astype(np.float64)
    sides = np.concatenate([sides, exact, below])
    corner = rng.uniform(-50, 800, sides.shape)
    return np.concatenate([corner, corner + sides], axis=1).astype(dtype)


def reference(rule, boxes: torch.Tensor, lo, hi):
    if rule == "torchvision":
        return torchvision_levels([boxes], lo, hi)
    if rule == "detectron2":
        return detectron2_levels([boxes], lo, hi)
    return mmdet_levels(torch.cat([torch.zeros(len(boxes), 1, dtype=boxes.dtype), boxes], 1), hi - lo + 1)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rules_against_the_libraries_on_tensors_and_arrays(rule, dtype):
    rng = np.random.default_rng([RULES.index(rule), dtype == np.float32])
    boxes = random_boxes(rng, 400, dtype)
    expected = reference(rule, torch.from_numpy(boxes), 2, 5)
    on_tensor = assign_levels(torch.from_numpy(boxes), 2, 5, rule)
    on_array = assign_levels(boxes, 2, 5, rule)
    assert on_tensor.dtype == torch.int64 and on_array.dtype == np.int64
    assert torch.equal(on_tensor, expected)
    np.testing.assert_array_equal(on_array, expected.numpy())
    assert len(set(expected.tolist())) == 4  # every level used


def test_epsilon_placement_differs_between_rules():
    # s / 224 = 2^-1 exactly: log2 is -1 in every rule; a little below, torchvision's 1e-6
    # after the log2 and mmdetection's 1e-6 inside it lift s back to the level above, while
    # detectron2's machine epsilon inside the log2 does not
    sides = np.array([112.0, 111.99997, 111.9997], dtype=np.float32)
    boxes = np.stack([np.zeros(3), np.zeros(3), sides, sides], axis=1).astype(np.float32)
    for rule in RULES:
        assert assign_levels(boxes, 2, 5, rule).tolist() == reference(rule, torch.from_numpy(boxes), 2, 5).tolist()
    assert assign_levels(boxes, 2, 5, "torchvision").tolist() == [1, 1, 0]
    assert assign_levels(boxes, 2, 5, "mmdet").tolist() == [1, 1, 0]
    assert assign_levels(boxes, 2, 5, "detectron2").tolist() == [1, 0, 0]


@pytest.mark.parametrize("rule", RULES)
def test_golden_values_and_clamping(rule):
    # FPN eq. 1 with k0 = 4: 224 -> P4, 112 -> P3, 448 -> P5; levels 2..5 as indices 0..3
    sides = [224, 112, 448, 56, 10, 0, 5000]
    boxes = torch.tensor([[0, 0, s, s] for s in sides], dtype=torch.float32)
    assert assign_levels(boxes, 2, 5, rule).tolist() == [2, 1, 3, 0, 0, 0, 3]


def test_integer_boxes_and_other_pyramids():
    boxes = torch.tensor([[0, 0, 224, 224], [10, 10, 20, 900]])  # sqrt(10 * 890) = 94.3: P2
    assert assign_levels(boxes, 2, 5).tolist() == [2, 0]
    assert assign_levels(boxes.numpy(), 2, 5).tolist() == [2, 0]
    assert assign_levels([[0, 0, 224, 224]], 3, 6).tolist() == [1]  # a list: numpy
    assert assign_levels(boxes.float(), 2, 7, canonical_size=112, canonical_level=5).tolist() == [4, 2]


def test_negative_and_nan_areas_have_no_level():
    boxes = torch.tensor([[10.0, 0, 0, 10], [0, 10, 10, 0], [10, 10, 0, 0], [0, 0, float("nan"), 5]])
    for rule in RULES:
        assert assign_levels(boxes, 2, 5, rule).tolist() == [-1, -1, 2 - 2, -1]  # both inverted: area > 0
        assert assign_levels(boxes.numpy(), 2, 5, rule).tolist() == [-1, -1, 0, -1]
    # the libraries cast NaN to int64: on this CPU no valid level either
    ref = torchvision_levels([boxes], 2, 5)
    assert ((ref[[0, 1, 3]] < 0) | (ref[[0, 1, 3]] > 3)).all()


def test_traceable_with_compile_and_export():
    rng = np.random.default_rng(3)
    boxes = torch.from_numpy(random_boxes(rng, 50))
    compiled = torch.compile(lambda b: assign_levels(b, 2, 5), fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(boxes), assign_levels(boxes, 2, 5))

    class Levels(torch.nn.Module):
        def forward(self, b):
            return assign_levels(b, 2, 5, "detectron2")

    program = torch.export.export(Levels(), (boxes,))
    assert torch.equal(program.module()(boxes), assign_levels(boxes, 2, 5, "detectron2"))


def test_no_array_library_imported_at_module_level():
    tree = ast.parse(Path(__file__).parents[2].joinpath("rfmap", "mapping", "levels.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"numpy", "torch"}


def test_bad_rule():
    with pytest.raises(RFMapError, match=r"rule must be one of \('torchvision', 'detectron2', 'mmdet'\)"):
        assign_levels(np.zeros((1, 4)), 2, 5, "caffe2")
    with pytest.raises(RFMapError, match=r"image_sizes is empty"):
        infer_scales([(10, 10)], [])


def test_infer_scale_like_torchvision():
    rng = np.random.default_rng(8)
    for _ in range(2000):
        image = (int(rng.integers(1, 3000)), int(rng.integers(1, 3000)))
        feature = (max(1, (image[0] >> int(rng.integers(0, 7))) + int(rng.integers(-1, 2))), image[1])
        assert infer_scale(feature, image) == torchvision_infer_scale(feature, image), (feature, image)
    # a Faster R-CNN FPN on an 800 x 1088 batch: strides 4 .. 32
    sizes = [(200, 272), (100, 136), (50, 68), (25, 34)]
    assert infer_scales(sizes, [(800, 1088), (790, 1050)]) == ([1 / 4, 1 / 8, 1 / 16, 1 / 32], 2, 5)


def test_infer_scales_on_an_oblong_image():
    # torchvision issue 3747: an image of 100 x 900 resized to 11 x 100 and padded to 32 x 128;
    # ResNet-50-FPN maps of 8 x 32 .. 1 x 4.  torchvision's height ratio 8 / 11 rounds to 1
    # (the width's 32 / 100 to 1/4, which the old assert compared): rfmap follows torchvision
    sizes = [(8, 32), (4, 16), (2, 8), (1, 4)]
    assert infer_scales(sizes, [(11, 100)]) == ([1.0, 0.5, 0.25, 0.125], 0, 3)
    assert infer_scale((8, 32), (11, 100)) != infer_scale((32, 8), (100, 11))
