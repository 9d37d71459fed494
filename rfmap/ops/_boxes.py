"""Box formats, argument validation and the Fast R-CNN box rounding shared by the RoI ops.

Box formats (torchvision's, :func:`torchvision.ops.roi_align`):

- a ``Tensor[K, 5]`` of rows ``(batch_index, x1, y1, x2, y2)``;
- a list of ``Tensor[L_i, 4]`` rows ``(x1, y1, x2, y2)``, one tensor per image ``i``.

Coordinates are in input-image units and are multiplied by ``spatial_scale`` to reach the
feature map; what a coordinate *means* (pixel index or continuous) is up to each op, see
:mod:`rfmap.ops.roi_pool` and :mod:`rfmap.ops.roi_align`.  Boxes with ``x2 < x1`` or
``y2 < y1`` are valid input: each op computes them the way torchvision's kernels do.

Validation happens in two places.  The public functions check what a tracer can see
(types, shapes, dtypes, devices, the scalar arguments) before calling the registered op;
the op's kernel checks what needs the data (:func:`check_rois`: non-finite coordinates,
batch indices that are not integers in ``[0, N)``, coordinates beyond
``MAX_SCALED_COORD``) when it runs.  So the data checks also run inside a graph made by
``torch.compile``, ``torch.export`` or ``torch.jit.script`` (they are part of the op, not of
the traced code); an exported ONNX model has the ONNX runtime's own checks instead.

Every problem raises :class:`rfmap.RFMapError` (a :class:`ValueError`) whose message names the
op and, for a bad box, the index of the first offending row of the ``[K, 5]`` form.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Union

import torch
from torch import Tensor

from ..errors import RFMapError

BoxesLike = Union[Tensor, Sequence[Tensor]]

#: Largest magnitude a scaled box coordinate may have.  Every integer up to 2**24 is exact
#: in float32, so cell indices and bin edges stay exact in every supported dtype.
MAX_SCALED_COORD = 2**24

#: ``-FLT_MAX``, the start value of the C max-pooling loops (Caffe, torchvision).
MINUS_FLT_MAX = -3.4028234663852886e38


def divide(x: Tensor, n: int) -> Tensor:
    """``x / n`` rounded as one IEEE division, on every device.  CUDA divides a tensor by a
    Python number as a product with its reciprocal, which can be one ulp off (11 / 7 in
    float32 gives 1.5714287, not 1.5714285), and Caffe's ``ceil(7 * bin)`` then moves a bin's
    edge by a whole cell; a divisor tensor of ``x``'s shape gets the true quotient."""
    return x / torch.full_like(x, n)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the ops compute in: float32 for 16-bit floats, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def round_half_away_from_zero(x: Tensor) -> Tensor:
    """C ``round()``: halves go away from zero (``torch.round`` rounds them to even).

    ``x - trunc(x)`` is exact in floating point, so unlike ``floor(|x| + 0.5)`` this is
    right for the largest float below 0.5 too.
    """
    t = torch.trunc(x)
    return t + torch.sign(x) * ((x - t).abs() >= 0.5).to(x.dtype)


def as_rois(op: str, boxes: BoxesLike) -> Tensor:
    """``boxes`` in the ``Tensor[K, 5]`` form (a list of ``[L_i, 4]`` gets its batch column)."""
    if isinstance(boxes, Tensor):
        if boxes.dim() == 2 and boxes.shape[1] == 4:
            raise RFMapError(
                f"{op}: boxes of shape {list(boxes.shape)} have no batch index; pass a Tensor[K, 5] "
                "(batch_index, x1, y1, x2, y2) or a list with one Tensor[L, 4] per image"
            )
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise RFMapError(
                f"{op}: boxes must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape {list(boxes.shape)}"
            )
        _check_box_dtype(op, "boxes", boxes)
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise RFMapError(f"{op}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if not boxes:
        raise RFMapError(f"{op}: boxes is an empty list; pass one Tensor[L, 4] per image (L may be 0)")
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
            shape = list(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise RFMapError(f"{op}: boxes[{i}] must be a Tensor[L, 4] (x1, y1, x2, y2), got {shape}")
        _check_box_dtype(op, f"boxes[{i}]", b)
        if b.device != boxes[0].device:
            raise RFMapError(f"{op}: boxes[{i}] is on {b.device}, boxes[0] on {boxes[0].device}")
    dtype = torch.promote_types(boxes[0].dtype, torch.float32)  # batch indices exact up to 2^24
    rows = [torch.cat([torch.full_like(b[:, :1], i, dtype=dtype), b.to(dtype)], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rows)


def _check_box_dtype(op: str, name: str, b: Tensor) -> None:
    if b.dtype == torch.bool or b.is_complex():
        raise RFMapError(f"{op}: {name} must be a real tensor (floating point or integer), got {b.dtype}")


def check_input(op: str, input: Tensor) -> None:
    """``input`` is a real floating-point ``(N, C, H, W)`` tensor with ``H, W >= 1``."""
    if not isinstance(input, Tensor):
        raise RFMapError(f"{op}: input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise RFMapError(f"{op}: input must be a 4-D tensor (N, C, H, W), got shape {list(input.shape)}")
    if not input.is_floating_point():
        raise RFMapError(f"{op}: input must be a floating-point tensor, got {input.dtype}")
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise RFMapError(f"{op}: input has an empty spatial size {list(input.shape[2:])}")


def check_rois(op: str, rois: Tensor, batch_size: int, spatial_scale: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The data checks of ``[K, 5]`` rois for a batch of ``batch_size``, run by each op's kernel.

    Rejects a shape other than ``[K, 5]``, non-finite values, a batch index that is not an
    integer in ``[0, N)`` and scaled coordinates beyond ``MAX_SCALED_COORD``.  Returns
    ``(batch int64 [K], boxes [K, 4])``, the boxes in ``dtype`` (the op's compute dtype,
    :func:`compute_dtype`) and *not* yet scaled, so that each op multiplies by
    ``spatial_scale`` in that dtype, as the C++ kernels do.
    """
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise RFMapError(f"{op}: boxes must be a Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape {list(rois.shape)}")
    _check_box_dtype(op, "boxes", rois)
    r = rois.detach().to(torch.float64)

    def first(bad: Tensor) -> int | None:
        return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None

    if (k := first(~torch.isfinite(r).all(dim=1))) is not None:
        raise RFMapError(f"{op}: box {k} has a value that is not finite: {r[k].tolist()}")
    b = r[:, 0]
    if (k := first(b != torch.floor(b))) is not None:
        raise RFMapError(f"{op}: box {k} has a batch index that is not an integer: {b[k].item()}")
    if (k := first((b < 0) | (b >= batch_size))) is not None:
        raise RFMapError(f"{op}: box {k} has batch index {int(b[k])}, out of range for a batch of {batch_size}")
    if (k := first((r[:, 1:] * spatial_scale).abs().amax(dim=1) > MAX_SCALED_COORD)) is not None:
        raise RFMapError(
            f"{op}: box {k} {r[k, 1:].tolist()} times spatial_scale {spatial_scale} leaves the supported "
            f"range of +-{MAX_SCALED_COORD} feature cells"
        )
    return b.to(torch.int64), rois[:, 1:].detach().to(dtype)


def check_output_size(op: str, output_size: int | Sequence[int]) -> tuple[int, int]:
    """``output_size`` as a ``(PH, PW)`` pair of positive ints."""
    pair: tuple[Any, ...]
    if isinstance(output_size, numbers.Integral):
        pair = (output_size, output_size)
    else:
        pair = tuple(output_size) if isinstance(output_size, Sequence) else ()
    if len(pair) != 2 or not all(_is_int(v) and v > 0 for v in pair):
        raise RFMapError(f"{op}: output_size must be a positive int or a pair of them, got {output_size!r}")
    return int(pair[0]), int(pair[1])


def check_spatial_scale(op: str, spatial_scale: float) -> float:
    """``spatial_scale`` as a finite positive float."""
    if not isinstance(spatial_scale, numbers.Real) or isinstance(spatial_scale, bool):
        raise RFMapError(f"{op}: spatial_scale must be a real number, got {spatial_scale!r}")
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise RFMapError(f"{op}: spatial_scale must be finite and > 0, got {spatial_scale!r}")
    return float(spatial_scale)


def check_sampling(op: str, sampling_ratio: int) -> int:
    """``sampling_ratio`` as an int (``<= 0``: adaptive)."""
    if not _is_int(sampling_ratio):
        raise RFMapError(f"{op}: sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    return int(sampling_ratio)


def check_flag(op: str, name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise RFMapError(f"{op}: {name} must be a bool, got {value!r}")
    return value


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def prepare(op: str, input: Tensor, boxes: BoxesLike, spatial_scale: float) -> tuple[Tensor, float]:
    """The static checks of an RoI op's arguments; returns ``(rois [K, 5], spatial_scale)``."""
    check_input(op, input)
    spatial_scale = check_spatial_scale(op, spatial_scale)
    rois = as_rois(op, boxes)
    if rois.device != input.device:
        raise RFMapError(f"{op}: boxes are on {rois.device} but input is on {input.device}")
    return rois, spatial_scale


def roi_pool_cells(boxes: Tensor, spatial_scale: float) -> Tensor:
    """Feature cells ``(xs, ys, xe, ye)`` (inclusive, int64) that Fast R-CNN RoI pooling uses.

    ``xs = round(x1 * spatial_scale)`` etc., with C ``round()`` (half away from zero), the
    product taken in ``boxes``' dtype -- Caffe's ``roi_pooling_layer.cpp`` (Girshick 2015),
    kept unchanged by torchvision's ``roi_pool``.  Example: box ``(30, 40, 200, 400)`` at
    scale 1/16 gives ``(2, 3, 13, 25)``, since 200/16 = 12.5 -> 13.

    ``boxes``: ``[K, 4]`` floating-point ``(x1, y1, x2, y2)``.
    """
    return round_half_away_from_zero(boxes * spatial_scale).to(torch.int64)
