"""MultiScaleRoIAlign against torchvision's MultiScaleRoIAlign restated with the scalar RoIAlign
loop (tests/ops/fpn_reference.py), including the oblong image of torchvision issue 3747."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from fpn_reference import multiscale_roi_align_reference

from rfmap.ops import MultiScaleRoIAlign, roi_align


def pyramid(rng, sizes, channels=2):
    return [torch.from_numpy(rng.standard_normal((2, channels, h, w))) for h, w in sizes]


def boxes_over(rng, count, height, width):
    """Boxes with sides from 8 pixels to the image size, log-uniform, inside the image."""
    sides = np.exp(rng.uniform(np.log(8), np.log(min(height, width)), (count, 2)))
    x1, y1 = rng.uniform(0, width - sides[:, 0]), rng.uniform(0, height - sides[:, 1])
    return torch.from_numpy(np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1))


FPN = [(100, 136), (50, 68), (25, 34), (13, 17)]  # strides 4 .. 32 on a 400 x 544 batch


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_fpn_pyramid_against_torchvision(sampling_ratio):
    rng = np.random.default_rng(sampling_ratio + 5)
    features = OrderedDict(zip(["0", "1", "2", "3"], pyramid(rng, FPN)))
    boxes = [boxes_over(rng, 14, 400, 544), boxes_over(rng, 9, 380, 500)]
    boxes[0][0] = torch.tensor([10.0, 10, 234, 234])  # exactly 224: P4
    boxes[0][1] = torch.tensor([0.0, 0, 540, 400])  # sqrt(540 * 400) = 465: P5
    image_shapes = [(400, 544), (380, 500)]
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), sampling_ratio)
    out = pooler(features, boxes, image_shapes)
    expected, scales = multiscale_roi_align_reference(list(features.values()), boxes, image_shapes, (3, 2), sampling_ratio)
    assert scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert out.shape == (23, 2, 3, 2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    # every level pooled something, and each row is the RoIAlign of its own level
    levels = pooler.levels(features, boxes, image_shapes)
    assert sorted(set(levels.tolist())) == [0, 1, 2, 3]
    k = int(torch.nonzero(levels == 2)[0, 0])
    rois = torch.cat([torch.zeros(14, 1, dtype=torch.float64), boxes[0]], 1)
    torch.testing.assert_close(out[k], roi_align(features["2"], rois[k : k + 1], (3, 2), 1 / 16, sampling_ratio)[0])


def test_oblong_image_of_torchvision_issue_3747():
    # an image of 100 x 900 resized (min_size = max_size = 100) to 11 x 100 and padded to 32 x 128:
    # ResNet-50-FPN maps of 8 x 32 .. 1 x 4, scales inferred from the height (8 / 11 -> 1)
    rng = np.random.default_rng(3747)
    features = pyramid(rng, [(8, 32), (4, 16), (2, 8), (1, 4)], channels=3)
    boxes = [torch.tensor([[0.0, 0.0, 0.0, 0.0]]).double(), torch.cat([boxes_over(rng, 6, 11, 100), torch.zeros(1, 4).double()])]
    image_shapes = [(11, 100), (11, 100)]
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    out = pooler(dict(zip("0123", features)), boxes, image_shapes)
    expected, scales = multiscale_roi_align_reference(features, boxes, image_shapes, 7, 2)
    assert scales == [1.0, 0.5, 0.25, 0.125]  # torchvision's; the true strides are 4 .. 32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    # the true scales can be given
    fixed = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2, scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32])
    assert not torch.allclose(fixed(dict(zip("0123", features)), boxes, image_shapes), out)


def test_feature_map_selection_single_level_and_aligned():
    rng = np.random.default_rng(9)
    maps = pyramid(rng, FPN)
    boxes = [boxes_over(rng, 5, 400, 544), boxes_over(rng, 4, 400, 544)]
    shapes = [(400, 544)] * 2
    # a dict: the named maps in the dict's order, others ignored
    x = OrderedDict([("0", maps[0]), ("extra", torch.zeros(2, 2, 3, 3)), ("2", maps[2]), ("3", maps[3])])
    out = MultiScaleRoIAlign(["0", "2", "3"], 2, 2)(x, boxes, shapes)
    expected, _ = multiscale_roi_align_reference([maps[0], maps[2], maps[3]], boxes, shapes, 2, 2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    # one map: every box from it, at its scale
    single = MultiScaleRoIAlign(["1"], 2, 2)({"1": maps[1]}, boxes, shapes)
    expected, scales = multiscale_roi_align_reference([maps[1]], boxes, shapes, 2, 2)
    assert scales == [1 / 8]
    np.testing.assert_allclose(single.numpy(), expected, rtol=1e-12, atol=1e-12)
    # aligned (detectron2's ROIAlignV2) and a list of maps
    out = MultiScaleRoIAlign([], 2, 2, aligned=True)(maps, boxes, shapes)
    expected, _ = multiscale_roi_align_reference(maps, boxes, shapes, 2, 2, aligned=True)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_boxes_without_a_level_give_zeros_and_gradients_flow():
    rng = np.random.default_rng(10)
    maps = [m.requires_grad_() for m in pyramid(rng, FPN)]
    boxes = [torch.tensor([[50.0, 60, 40, 200], [0, 0, 540, 400]], dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64)]
    out = MultiScaleRoIAlign([], 2, 2)(maps, boxes, [(400, 544)] * 2)
    assert out[0].abs().sum() == 0 and out[1].abs().sum() > 0  # x2 < x1: negative area, no level
    out.sum().backward()
    assert [bool(m.grad.abs().sum() > 0) for m in maps] == [False, False, False, True]  # 465 px: P5


def test_compile_and_export():
    rng = np.random.default_rng(11)
    maps = pyramid(rng, FPN)
    boxes = [boxes_over(rng, 6, 400, 544), boxes_over(rng, 3, 400, 544)]
    pooler = MultiScaleRoIAlign([], 2, 2)
    expected = pooler(maps, boxes, [(400, 544)] * 2)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pooler = pooler

        def forward(self, maps: list[torch.Tensor], boxes: list[torch.Tensor]):
            return self.pooler(maps, boxes, [(400, 544), (400, 544)])

    program = torch.export.export(Head(), (maps, boxes))
    torch.testing.assert_close(program.module()(maps, boxes), expected)
