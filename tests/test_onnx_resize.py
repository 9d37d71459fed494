"""ONNX ``Resize`` follows onnxruntime exactly: every coordinate_transformation_mode, every
nearest_mode, modes nearest/linear/cubic, scales or sizes.

Ground truth is onnxruntime itself: the single-node model runs on a batch of one-hot
inputs (one per input pixel), and the support of an output cell is the set of input pixels
whose one-hot image makes it non-zero.  rfmap's :meth:`Analysis.support` of the same cell,
read from the same ``.onnx`` model by the ONNX front end, must be that set (per axis).
"""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rfmap  # noqa: E402
from rfmap import RFMapError, RFMapWarning  # noqa: E402
from rfmap.frontends.onnx import from_onnx  # noqa: E402

CTM = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "half_pixel_symmetric")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
MODES = [dict(mode="nearest", nearest_mode=m) for m in NEAREST] + [dict(mode="linear")] + [
    dict(mode="cubic", cubic_coeff_a=a, exclude_outside=e) for a in (-0.75, -0.5) for e in (0, 1)
]


def resize_model(shape, op="Resize", opset=19, scales=None, sizes=None, layout="NCHW", **attrs):
    """One Resize node on an input ``[H*W, 1, H, W]``; ``scales``/``sizes`` per tensor dim, or per
    entry of ``axes``.  Inputs: (X, roi, scales, sizes) from opset 11, (X, scales) before.
    ``layout="NHWC"``: the Resize runs between Transposes to channels last and back."""
    h, w = shape
    dims = [h * w, 1, h, w]
    inits, names = [], ["x"]
    if op == "Upsample" and opset < 9:  # scales as an attribute
        attrs["scales"], scales = [float(v) for v in scales], None
    slots = [("roi", None), ("scales", scales), ("sizes", sizes)] if op == "Resize" and opset >= 11 else [("scales", scales)]
    for name, value in slots:
        if value is None:
            names.append("")
            continue
        names.append(name)
        inits.append(numpy_helper.from_array(np.array(value, np.float32 if name == "scales" else np.int64), name))
    while names[-1] == "":
        names.pop()
    nodes = [helper.make_node(op, names, ["y"], name="resize", **attrs)]
    if layout == "NHWC":
        names[0] = "x_nhwc"
        nodes = [helper.make_node("Transpose", ["x"], ["x_nhwc"], perm=[0, 2, 3, 1]),
                 helper.make_node(op, names, ["y_nhwc"], name="resize", **attrs),
                 helper.make_node("Transpose", ["y_nhwc"], ["y"], perm=[0, 3, 1, 2])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def onnxruntime_supports(model, shape):
    """``nz[iy, ix, oy, ox]``: output cell (oy, ox) changes when input pixel (iy, ix) is 1."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    h, w = shape
    k = np.arange(h * w)
    x = np.zeros((h * w, 1, h, w), np.float32)
    x[k, 0, k // w, k % w] = 1
    y = session.run(None, {"x": x})[0]
    return (y[:, 0] != 0).reshape(h, w, *y.shape[2:])


def mismatches(model, shape):
    """Output cells whose rfmap support differs from onnxruntime's (and the sizes)."""
    truth = onnxruntime_supports(model, shape)
    a = rfmap.analyze(from_onnx(model, shape, strict=True))
    assert a.output.output_size == truth.shape[2:], "output size"
    bad = []
    for cell in np.ndindex(*truth.shape[2:]):
        mask = truth[(slice(None), slice(None)) + cell]
        want = (np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0)))
        got = a.support(a.output.name, cell)
        if not all(np.array_equal(g, t) for g, t in zip(got, want)):
            bad.append((cell, [g.tolist() for g in got], [t.tolist() for t in want]))
    return bad


def test_the_issues_example_asymmetric_round_prefer_floor_scale_3():
    m = resize_model((4, 4), scales=[1, 1, 3, 3], mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="round_prefer_floor")
    truth = onnxruntime_supports(m, (4, 4))
    onnxruntime_reads = [int(np.flatnonzero(truth.any(axis=(0, 2))[:, ox])[0]) for ox in range(12)]
    assert onnxruntime_reads == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    a = rfmap.analyze(from_onnx(m))
    assert [a.support(a.output.name, (0, ox))[1].tolist() for ox in range(12)] == [[v] for v in onnxruntime_reads]
    assert mismatches(m, (4, 4)) == []


CONFIGS = {
    "scale3": dict(scales=[1, 1, 3, 3]),
    "down": dict(scales=[1, 1, 0.5, 0.6]),
    "up-fractional": dict(scales=[1, 1, 1.5, 2.5]),
    "mixed": dict(scales=[1, 1, 0.7, 1.3]),
    "thirds": dict(scales=[1, 1, 1 / 3, 2.2]),
    "sizes": dict(sizes=[24, 1, 9, 3]),
    "sizes-odd": dict(sizes=[24, 1, 2, 11]),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("ctm", CTM)
def test_every_mode_matches_onnxruntime(ctm, config):
    for attrs in MODES:
        m = resize_model((4, 6), coordinate_transformation_mode=ctm, **attrs, **CONFIGS[config])
        assert mismatches(m, (4, 6)) == [], attrs


@pytest.mark.parametrize("case", [
    # an axis whose size does not change still goes through the cubic weights, whose
    # float32 residue (cubic_coeff_a=-0.6) reaches the neighbours
    dict(shape=(7, 8), sizes=[56, 1, 7, 6], mode="cubic", cubic_coeff_a=-0.6, exclude_outside=1,
         coordinate_transformation_mode="half_pixel_symmetric"),
    dict(shape=(5, 7), scales=[1, 1, 1.7, 0.4], mode="cubic", cubic_coeff_a=-1.0,
         coordinate_transformation_mode="align_corners"),
    # no dim changes size: a copy, whatever the scale (floor(4 * 1.2) = 4)
    dict(shape=(4, 5), scales=[1, 1, 1.2, 1.1], mode="linear", coordinate_transformation_mode="asymmetric"),
    # ... but one that does leaves the other axis to the kernel
    dict(shape=(4, 5), scales=[1, 1, 1.2, 2.0], mode="cubic", coordinate_transformation_mode="half_pixel"),
    # Resize-10 and Upsample-9: asymmetric, with their own nearest rounding (ceil when shrinking)
    dict(shape=(5, 6), opset=10, scales=[1, 1, 0.6, 1.5], mode="nearest"),
    dict(shape=(5, 6), opset=10, scales=[1, 1, 0.6, 2.5], mode="linear"),
    dict(shape=(5, 6), op="Upsample", opset=9, scales=[1, 1, 1.5, 3], mode="nearest"),
    dict(shape=(5, 6), op="Upsample", opset=9, scales=[1, 1, 2, 1.25], mode="linear"),
    dict(shape=(5, 6), op="Upsample", opset=8, scales=[1, 1, 3, 1.5], mode="nearest"),
    dict(shape=(5, 6), opset=13, scales=[1, 1, 2.5, 0.75], mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
         nearest_mode="ceil"),
    # opset 18: scales or sizes for some axes, keep_aspect_ratio_policy
    dict(shape=(5, 6), opset=18, axes=[3, 2], scales=[1.5, 0.5], mode="linear"),
    dict(shape=(5, 6), opset=18, axes=[-1], sizes=[13], mode="nearest", nearest_mode="round_prefer_ceil"),
    dict(shape=(5, 6), opset=18, axes=[2, 3], sizes=[9, 9], mode="nearest", keep_aspect_ratio_policy="not_larger"),
    dict(shape=(5, 6), opset=19, axes=[2, 3], sizes=[9, 9], mode="cubic", keep_aspect_ratio_policy="not_smaller",
         coordinate_transformation_mode="half_pixel_symmetric"),
    # channels last (onnxruntime's NHWC kernel)
    dict(shape=(5, 6), layout="NHWC", scales=[1, 2.5, 1.5, 1], mode="linear"),
    dict(shape=(5, 6), layout="NHWC", sizes=[30, 3, 11, 1], mode="nearest", nearest_mode="floor",
         coordinate_transformation_mode="align_corners"),
], ids=lambda c: "-".join(str(v) for k, v in c.items() if k in ("op", "opset", "mode", "layout", "axes", "keep_aspect_ratio_policy")))
def test_opsets_axes_policies_layouts_match_onnxruntime(case):
    case = dict(case)
    shape = case.pop("shape")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mismatches(resize_model(shape, **case), shape) == []


def test_periodic_boxes_and_stride_of_the_table():
    """The table's virtual cells continue it with the resize's ratio: scale 1.5 is 2 input
    cells per 3 output cells, the same as F.interpolate's."""
    m = resize_model((4, 6), scales=[1, 1, 1.5, 1.5], mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    a = rfmap.analyze(from_onnx(m))
    assert a.output.stride == (pytest.approx(2 / 3),) * 2 and a.output.output_size == (6, 9)
    ref = rfmap.analyze([{"op": "upsample", "scale_factor": 1.5}], (4, 6))
    assert [(r.stride, r.rf, r.padding, r.center0) for r in a.layers] == [(r.stride, r.rf, r.padding, r.center0) for r in ref.layers]


BAD_ATTRS = [
    (dict(mode="bilinear"), "mode 'bilinear' is not one of nearest, linear, cubic"),
    (dict(coordinate_transformation_mode="half_pixels"), "coordinate_transformation_mode 'half_pixels'"),
    (dict(coordinate_transformation_mode="tf_crop_and_resize"), "tf_crop_and_resize .* not supported"),
    (dict(nearest_mode="round"), "nearest_mode 'round'"),
    (dict(mode="linear", exclude_outside=1), "exclude_outside=1 applies to cubic mode only"),
    (dict(exclude_outside=2, mode="cubic"), "exclude_outside must be 0 or 1"),
    (dict(antialias=1), "antialias=1 applies to linear and cubic"),
    (dict(keep_aspect_ratio_policy="fit"), "keep_aspect_ratio_policy.{1,3}fit"),
    (dict(cubic_coeff_a="x", mode="cubic"), "cubic_coeff_a must be a number"),
]


@pytest.mark.parametrize("attrs,message", BAD_ATTRS, ids=[m[:24] for _, m in BAD_ATTRS])
def test_unknown_attribute_values_raise_naming_the_node(attrs, message):
    m = resize_model((4, 6), scales=[1, 1, 2, 2], **attrs)
    with pytest.raises(RFMapError, match=f"node 'resize' \\(Resize\\).*{message}"):
        from_onnx(m)


def test_bad_scales_and_sizes_raise():
    with pytest.raises(RFMapError, match="node 'resize'.*(exactly one of scales and sizes|Either `sizes` or `scales`)"):
        from_onnx(resize_model((4, 6), scales=[1, 1, 2, 2], sizes=[1, 1, 8, 12]))
    with pytest.raises(RFMapError, match="node 'resize'.*(scales has 3 entries for a rank-4|'scales' must be same as rank)"):
        from_onnx(resize_model((4, 6), scales=[1, 2, 2]))
    with pytest.raises(RFMapError, match="must be positive"):
        from_onnx(resize_model((4, 6), scales=[1, 1, -2, 2]))
    with pytest.raises(RFMapError, match="negative axes"):
        from_onnx(resize_model((4, 6), opset=18, axes=[-1, -2], sizes=[9, 9], keep_aspect_ratio_policy="not_larger"))


def test_antialias_is_not_modelled_and_says_so():
    m = resize_model((4, 6), opset=18, scales=[1, 1, 0.5, 0.5], mode="linear", antialias=1)
    with pytest.raises(RFMapError, match="unsupported node 'resize' \\(Resize\\): antialiased"):
        from_onnx(m, strict=True)
    with pytest.warns(RFMapWarning, match="antialiased"):
        g = from_onnx(m)
    assert rfmap.analyze(g).output.rf == (4, 6)  # treated as global: every cell sees the whole input


def test_the_layer_is_a_spec_op_too():
    """``op: onnx_resize`` in a layer list: the same table without an ONNX file."""
    a = rfmap.analyze([{"op": "onnx_resize", "scales": 3, "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                        "nearest_mode": "round_prefer_floor"}], (4,))
    assert [int(a.support(a.output.name, (o,))[0][0]) for o in range(12)] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    with pytest.raises(RFMapError, match="nearest_mode 'nearest' is not one of"):
        rfmap.analyze([{"op": "onnx_resize", "scales": 2, "nearest_mode": "nearest"}], (4,))
    with pytest.raises(RFMapError, match="cubic_coeff_a must be a number"):
        rfmap.analyze([{"op": "onnx_resize", "scales": 2, "mode": "cubic", "cubic_coeff_a": "a"}], (4,))
