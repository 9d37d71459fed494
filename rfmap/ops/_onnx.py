"""ONNX export of the RoI ops as standard ONNX operators.

- ``roi_align`` -> ``RoiAlign`` (opset 16, ``mode="avg"``): ``aligned=True`` is
  ``coordinate_transformation_mode="half_pixel"``, ``aligned=False`` is
  ``"output_half_pixel"``; an adaptive ``sampling_ratio`` (``<= 0``) is ``0``.  The batch
  column of the boxes becomes the int64 ``batch_indices`` input.
- ``roi_pool`` -> ``MaxRoiPool`` (opset 1) with ``pooled_shape`` and ``spatial_scale``.
- ``spp_pool`` -> per level one ``MaxPool`` / ``AveragePool`` where the level's bins are a
  regular window grid on the exported map size, otherwise ``Slice`` + ``ReduceMax`` /
  ``ReduceMean`` per bin row and column (:func:`rfmap.ops.spp.spp_standard_ops`).

Both exporters work on a module that calls the ops: ``torch.onnx.export(..., dynamo=False)``
(TorchScript-based: the symbolic functions below, registered for the ``rfmap::`` ops) and
``torch.onnx.export(..., dynamo=True)`` (the public functions emit the ONNX node with
``torch.onnx.ops.symbolic`` while exporting).  Where onnxruntime's kernels differ from rfmap
(non-finite inputs, ``MaxRoiPool``'s NaN handling, a float32 ``spatial_scale`` attribute) see
tests/ops/test_onnxruntime_crosscheck.py.  The data checks of the boxes are not part of an
exported model; onnxruntime checks batch indices itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

ROI_ALIGN_OPSET = 16


def _roi_align_attrs(spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int, aligned: bool) -> dict[str, Any]:
    return {
        "coordinate_transformation_mode": "half_pixel" if aligned else "output_half_pixel",
        "mode": "avg",
        "output_height": pooled_h,
        "output_width": pooled_w,
        "sampling_ratio": max(sampling_ratio, 0),
        "spatial_scale": spatial_scale,
    }


def roi_align_symbolic(
    input: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int, aligned: bool
) -> Tensor:
    """``RoiAlign`` for the dynamo-based exporter (``torch.onnx.ops.symbolic``)."""
    attrs = _roi_align_attrs(spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    coords = rois[:, 1:].to(input.dtype)
    batch = rois[:, 0].to(torch.int64)
    shape = (rois.shape[0], input.shape[1], pooled_h, pooled_w)
    return torch.onnx.ops.symbolic(
        "RoiAlign", (input, coords, batch), attrs, dtype=input.dtype, shape=shape, version=ROI_ALIGN_OPSET
    )


def roi_pool_symbolic(input: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int) -> Tensor:
    """``MaxRoiPool`` for the dynamo-based exporter (``torch.onnx.ops.symbolic``)."""
    attrs: dict[str, Any] = {"pooled_shape": [pooled_h, pooled_w], "spatial_scale": spatial_scale}
    shape = (rois.shape[0], input.shape[1], pooled_h, pooled_w)
    return torch.onnx.ops.symbolic(
        "MaxRoiPool", (input, rois.to(input.dtype)), attrs, dtype=input.dtype, shape=shape, version=ROI_ALIGN_OPSET
    )


# -- the TorchScript-based exporter ----------------------------------------------------


def _columns(g, rois, columns: list[int]):
    return g.op("Gather", rois, g.op("Constant", value_t=torch.tensor(columns)), axis_i=1)


def _roi_align_ts(g, input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned):
    batch = g.op("Cast", _columns(g, rois, [0]), to_i=torch.onnx.TensorProtoDataType.INT64)
    batch = g.op("Squeeze", batch, g.op("Constant", value_t=torch.tensor([1])))
    coords = g.op("CastLike", _columns(g, rois, [1, 2, 3, 4]), input)
    attrs = _roi_align_attrs(spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    return g.op("RoiAlign", input, coords, batch, **{_typed(k, v): v for k, v in attrs.items()})


def _roi_pool_ts(g, input, rois, spatial_scale, pooled_h, pooled_w, with_argmax):
    out = g.op("MaxRoiPool", input, g.op("CastLike", rois, input), pooled_shape_i=[pooled_h, pooled_w], spatial_scale_f=spatial_scale)
    return out, None


def _typed(name: str, value) -> str:
    """TorchScript ``g.op`` attribute names carry their type: ``_s``, ``_i``, ``_f``."""
    return name + ("_s" if isinstance(value, str) else "_f" if isinstance(value, float) else "_i")


def register_torchscript_symbolics() -> None:
    """Register the symbolic functions of the TorchScript-based exporter for the ``rfmap`` ops."""
    from torch.onnx import symbolic_helper

    align = symbolic_helper.parse_args("v", "v", "f", "i", "i", "i", "b")(_roi_align_ts)
    pool = symbolic_helper.parse_args("v", "v", "f", "i", "i", "b")(_roi_pool_ts)
    torch.onnx.register_custom_op_symbolic("rfmap::roi_align", align, ROI_ALIGN_OPSET)
    torch.onnx.register_custom_op_symbolic("rfmap::roi_pool", pool, ROI_ALIGN_OPSET)


# -- the dynamo-based exporter on a graph that holds the rfmap ops ------------------------


def onnx_translation_table() -> dict:
    """Translations of ``torch.ops.rfmap.roi_align`` / ``roi_pool`` / ``spp_pool`` into
    standard ONNX, for ``torch.onnx.export(program, dynamo=True,
    custom_translation_table=...)`` on a ``torch.export`` program that holds the ops (a
    module is exported without it: its calls emit the ONNX nodes themselves).  Needs
    onnxscript, which the dynamo-based exporter needs anyway.  ``spp_pool`` needs a static
    map size."""
    from onnxscript import INT64, opset18

    # traced, the opset's ops also take Python constants and attribute dicts, which its
    # signatures (onnxscript's tensor types) do not say
    op: Any = opset18

    def roi_align(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int, aligned: bool):
        batch = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=INT64.dtype)
        coords = op.CastLike(op.Slice(rois, [1], [5], [1]), input)
        attrs = _roi_align_attrs(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
        return op.RoiAlign(input, coords, batch, **attrs)

    def roi_pool(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int, with_argmax: bool):
        out = op.MaxRoiPool(input, op.CastLike(rois, input), pooled_shape=[pooled_height, pooled_width], spatial_scale=spatial_scale)
        return out, op.Shape(out)  # the argmax output has no ONNX counterpart (inference only)

    def spp_pool(input, levels: list[int], mode: str, with_argmax: bool):
        from .spp import _bins, _regular_windows

        height, width = int(input.shape[2]), int(input.shape[3])
        reduce = op.ReduceMax if mode == "max" else op.ReduceMean
        parts = []
        for n in levels:
            ky, kx = _regular_windows(n, height), _regular_windows(n, width)
            if ky is not None and kx is not None:
                window = {"kernel_shape": [ky[0], kx[0]], "strides": [ky[1], kx[1]]}
                pooled = op.MaxPool(input, **window)[0] if mode == "max" else op.AveragePool(input, **window)
            else:
                rows = op.Concat(*[reduce(op.Slice(input, [a], [b], [2]), [2]) for a, b in _bins(n, height)], axis=2)
                pooled = op.Concat(*[reduce(op.Slice(rows, [a], [b], [3]), [3]) for a, b in _bins(n, width)], axis=3)
            parts.append(op.Reshape(pooled, [0, -1]))  # (N, C * n * n)
        return op.Concat(*parts, axis=1), op.Shape(input)

    ops = torch.ops.rfmap
    return {ops.roi_align.default: roi_align, ops.roi_pool.default: roi_pool, ops.spp_pool.default: spp_pool}
