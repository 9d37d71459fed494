"""rfmap.ops against onnxruntime's RoiAlign and MaxRoiPool, an independent implementation.

What was checked empirically (onnxruntime 1.31) before asserting:

- ``RoiAlign`` (opset 16, ``mode="avg"``) follows torchvision exactly: ``half_pixel`` is
  ``aligned=True`` and ``output_half_pixel`` is ``aligned=False``, including the adaptive grid
  (``sampling_ratio=0``: ``ceil(roi_size / output_size)``), the border rules and the roi size
  clamp (only for ``output_half_pixel``).  One known difference, asserted below: its
  ``spatial_scale`` attribute is a float32, so float64 inputs with a scale that float32
  cannot represent (1/3) are scaled by the rounded value.  Like torchvision's CPU kernel and
  rfmap, a sample outside the map is a zero weight on pixel 0, so an inf or NaN there turns
  the bin into NaN.  (Its ``mode="max"`` takes the maximum of the weighted corners, a
  different op, not compared.)  Inverted boxes (``x2 < x1`` or ``y2 < y1``) are left out of
  the comparison: with ``half_pixel`` and an adaptive grid onnxruntime fails on a box
  inverted along one axis only ("Integer overflow", asserted below; a batch of them
  crashed the process), where torchvision and rfmap give 0.
- ``MaxRoiPool`` (opset 1) follows Caffe's rounding (C ``round()``, inclusive end, bins
  ``[floor(p * bin), ceil((p + 1) * bin))``), so values agree exactly, for signed inputs too,
  and a bin holding only ``-inf`` gives ``-FLT_MAX`` (the C loop's start value) in both.  One
  difference, asserted below: onnxruntime keeps or drops a NaN depending on where it sits in
  the bin (``std::max`` order), where rfmap, like the Caffe and torchvision loops, never
  lets a NaN win.
"""

import numpy as np
import pytest
import torch
from ops_reference import random_rois

from rfmap.ops import roi_align, roi_pool

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def session(op: str, inputs: list[str], dtype=TensorProto.FLOAT, **attrs):
    values = [helper.make_tensor_value_info(n, TensorProto.INT64 if n == "B" else dtype, None) for n in inputs]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["Y"], **attrs)], op, values, [helper.make_tensor_value_info("Y", dtype, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_roi_align(x, rois, output_size, scale, sampling_ratio, aligned):
    s = session(
        "RoiAlign",
        ["X", "R", "B"],
        TensorProto.DOUBLE if x.dtype == np.float64 else TensorProto.FLOAT,
        output_height=output_size[0],
        output_width=output_size[1],
        sampling_ratio=sampling_ratio,
        spatial_scale=scale,
        mode="avg",
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
    )
    return s.run(None, {"X": x, "R": rois[:, 1:].astype(x.dtype), "B": rois[:, 0].astype(np.int64)})[0]


def ort_max_roi_pool(x, rois, output_size, scale):
    s = session("MaxRoiPool", ["X", "R"], pooled_shape=list(output_size), spatial_scale=scale)
    return s.run(None, {"X": x, "R": rois.astype(np.float32)})[0]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
def test_roi_align_matches_onnxruntime(aligned, sampling_ratio):
    rng = np.random.default_rng([sampling_ratio, aligned])
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    rois = random_rois(rng, 64, 2, 9, 11, 1 / 16, inverted=False).float()
    ours = roi_align(torch.from_numpy(x), rois, (3, 4), 1 / 16, sampling_ratio, aligned).numpy()
    theirs = ort_roi_align(x, rois.numpy(), (3, 4), 1 / 16, sampling_ratio, aligned)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_float64_and_the_float32_scale_attribute(aligned):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 7, 8))
    rois = random_rois(rng, 32, 1, 7, 8, 1 / 3, inverted=False)
    theirs = ort_roi_align(x, rois.numpy(), (2, 3), 1 / 3, 2, aligned)
    # onnxruntime scales by float32(1/3); with that scale the results agree to float64 precision
    f32_scale = float(np.float32(1 / 3))
    ours = roi_align(torch.from_numpy(x), rois, (2, 3), f32_scale, 2, aligned).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    exact = roi_align(torch.from_numpy(x), rois, (2, 3), 1 / 3, 2, aligned).numpy()
    assert np.abs(exact - theirs).max() > 1e-9


def test_roi_align_non_finite_pixel_zero_outside_the_samples():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 0, 0] = np.inf
    rois = np.array([[0, 10.0, 10.0, 12.0, 12.0]], dtype=np.float32)  # every sample beyond the map
    assert np.isnan(ort_roi_align(x, rois, (1, 1), 1.0, 1, True)).all()
    assert np.isnan(roi_align(torch.from_numpy(x), torch.from_numpy(rois), 1, 1.0, 1, True).item())


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_non_finite_inputs_like_onnxruntime(aligned):
    rng = np.random.default_rng([11, aligned])
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.05] = -np.inf
    rois = random_rois(rng, 64, 2, 9, 11, 1 / 16, inverted=False).float()
    ours = roi_align(torch.from_numpy(x), rois, (3, 4), 1 / 16, 2, aligned).numpy()
    theirs = ort_roi_align(x, rois.numpy(), (3, 4), 1 / 16, 2, aligned)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)  # NaN and -inf at the same places


def test_roi_align_box_inverted_along_one_axis():
    x = np.ones((1, 1, 8, 8), dtype=np.float32)
    rois = np.array([[0, 5.0, 1.0, 2.0, 6.0]], dtype=np.float32)  # x2 < x1, y2 > y1
    with pytest.raises(Exception, match="Integer overflow"):
        ort_roi_align(x, rois, (2, 2), 1.0, 0, True)
    assert roi_align(torch.from_numpy(x), torch.from_numpy(rois), 2, 1.0, 0, True).abs().sum() == 0
    assert ort_roi_align(x, rois, (2, 2), 1.0, 2, True).tolist() == [[[[1, 1], [1, 1]]]]  # fixed grid: fine
    assert roi_align(torch.from_numpy(x), torch.from_numpy(rois), 2, 1.0, 2, True).tolist() == [[[[1, 1], [1, 1]]]]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 16])
def test_roi_pool_matches_max_roi_pool(signed, scale):
    rng = np.random.default_rng([signed, int(1 / scale)])
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    x = x if signed else np.abs(x) + 0.01
    rois = random_rois(rng, 64, 2, 9, 11, scale).float()  # rounding ties (n + 0.5 cells), inverted boxes
    ours = roi_pool(torch.from_numpy(x), rois, (3, 4), scale).numpy()
    np.testing.assert_array_equal(ours, ort_max_roi_pool(x, rois.numpy(), (3, 4), scale))


def test_roi_pool_rounding_tie_like_onnxruntime():
    # 8/16 = 0.5 -> cell 1 in both (C round, half away from zero)
    x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    rois = np.array([[0, 8.0, 8.0, 8.0, 8.0]], dtype=np.float32)
    assert ort_max_roi_pool(x, rois, (1, 1), 1 / 16).item() == 9
    assert roi_pool(torch.from_numpy(x), torch.from_numpy(rois), 1, 1 / 16).item() == 9


def test_roi_pool_non_finite_inputs_and_max_roi_pool():
    rois = np.array([[0, 0.0, 0.0, 3.0, 3.0]], dtype=np.float32)
    minus_inf = np.full((1, 1, 4, 4), -np.inf, dtype=np.float32)
    assert (ort_max_roi_pool(minus_inf, rois, (2, 2), 1.0) == -np.finfo(np.float32).max).all()
    assert (roi_pool(torch.from_numpy(minus_inf), torch.from_numpy(rois), 2).numpy() == -np.finfo(np.float32).max).all()
    nan_first = np.ones((1, 1, 4, 4), dtype=np.float32)
    nan_first[0, 0, 0, 0] = np.nan  # first in its bin: onnxruntime drops it, as rfmap does
    assert ort_max_roi_pool(nan_first, rois, (2, 2), 1.0)[0, 0, 0, 0] == 1
    assert roi_pool(torch.from_numpy(nan_first), torch.from_numpy(rois), 2)[0, 0, 0, 0].item() == 1
    nan_last = np.ones((1, 1, 4, 4), dtype=np.float32)
    nan_last[0, 0, 1, 1] = np.nan  # last in its bin: onnxruntime keeps it, rfmap does not
    assert np.isnan(ort_max_roi_pool(nan_last, rois, (2, 2), 1.0)[0, 0, 0, 0])
    assert roi_pool(torch.from_numpy(nan_last), torch.from_numpy(rois), 2)[0, 0, 0, 0].item() == 1
