"""Modules calling the RoI ops export to standard ONNX with both torch.onnx exporters, and the
exported models, run in onnxruntime, give the eager ops' numbers."""

import io
import warnings

import numpy as np
import pytest
import torch
from ops_reference import random_rois
from torch import nn

from rfmap import RFMapError
from rfmap.ops import onnx_translation_table, ps_roi_align, roi_align, roi_pool, spp_pool

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class Head(nn.Module):
    """RoIAlign in both coordinate conventions and grids, RoI pooling, and SPP on a map whose
    levels are partly regular windows (13: n = 1) and partly not (10 x 13: n = 2, 3, 4)."""

    def forward(self, f: torch.Tensor, boxes: torch.Tensor):
        return (
            roi_align(f, boxes, (2, 3), 0.5, 0, True),
            roi_align(f, boxes, 3, 0.5, 2, False),
            roi_pool(f, boxes, (3, 2), 0.5),
            spp_pool(f, [4, 2, 1], "max"),
            spp_pool(f, [3, 1], "avg"),
        )


def inputs():
    rng = np.random.default_rng(4)
    f = torch.from_numpy(rng.standard_normal((2, 4, 10, 13)).astype(np.float32))
    boxes = random_rois(rng, 40, 2, 10, 13, 0.5, inverted=False).float()  # onnxruntime fails on inverted ones
    return f, boxes


def export(model, args, dynamo: bool, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(model, args, dynamo=True, verbose=False, **kwargs).model_proto
        buffer = io.BytesIO()
        torch.onnx.export(model, args, buffer, dynamo=False, opset_version=17, **kwargs)
        return onnx.load_from_string(buffer.getvalue())


def run(model_proto, *args):
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)})


def attributes(model_proto, op_type):
    return [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in model_proto.graph.node if n.op_type == op_type]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_export_standard_onnx_and_run_in_onnxruntime(dynamo):
    model = Head().eval()
    f, boxes = inputs()
    proto = export(model, (f, boxes), dynamo)
    op_types = {n.op_type for n in proto.graph.node}
    assert {"RoiAlign", "MaxRoiPool", "MaxPool", "AveragePool", "ReduceMax"} <= op_types
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)  # standard operators only
    align = sorted(attributes(proto, "RoiAlign"), key=lambda a: a["output_height"])
    assert [a["coordinate_transformation_mode"] for a in align] == [b"half_pixel", b"output_half_pixel"]
    assert [a["sampling_ratio"] for a in align] == [0, 2] and all(a["mode"] == b"avg" for a in align)
    assert attributes(proto, "MaxRoiPool")[0]["pooled_shape"] == [3, 2]
    for got, want in zip(run(proto, f, boxes), model(f, boxes)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_exported_program_with_the_translation_table():
    model = Head().eval()
    f, boxes = inputs()
    program = torch.export.export(model, (f, boxes))
    assert torch.ops.rfmap.roi_align.default in {n.target for n in program.graph.nodes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(program, dynamo=True, custom_translation_table=onnx_translation_table()).model_proto
    assert {"RoiAlign", "MaxRoiPool", "MaxPool"} <= {n.op_type for n in proto.graph.node}
    for got, want in zip(run(proto, f, boxes), model(f, boxes)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_position_sensitive_ops_refuse_onnx_export():
    class PS(nn.Module):
        def forward(self, f, boxes):
            return ps_roi_align(f, boxes, 2, 0.5)

    f, boxes = inputs()
    with pytest.raises(RFMapError, match="ps_roi_align: ONNX has no position-sensitive RoI pooling operator"):
        export(PS(), (f, boxes), dynamo=False)


def test_multiscale_roi_align_exports_with_a_dynamic_box_count():
    from rfmap.ops import MultiScaleRoIAlign

    class Pooler(nn.Module):
        def __init__(self):
            super().__init__()
            self.pooler = MultiScaleRoIAlign([], 2, 2)

        def forward(self, p2, p3, p4, p5, boxes):
            return self.pooler([p2, p3, p4, p5], [boxes], [(400, 544)])

    rng = np.random.default_rng(12)
    maps = [torch.from_numpy(rng.standard_normal((1, 2, h, w)).astype(np.float32)) for h, w in [(100, 136), (50, 68), (25, 34), (13, 17)]]
    sides = np.exp(rng.uniform(np.log(8), np.log(400), (16, 2)))
    corners = rng.uniform(0, 140, (16, 2))
    boxes = torch.from_numpy(np.concatenate([corners, corners + sides], 1).astype(np.float32))
    model = Pooler().eval()
    names = ["p2", "p3", "p4", "p5", "boxes"]
    proto = export(model, (*maps, boxes), dynamo=False, input_names=names, dynamic_axes={"boxes": {0: "k"}})
    assert "RoiAlign" in {n.op_type for n in proto.graph.node}
    for rows in (boxes, boxes[:5]):
        np.testing.assert_allclose(run(proto, *maps, rows)[0], model(*maps, rows).numpy(), rtol=1e-5, atol=1e-5)
