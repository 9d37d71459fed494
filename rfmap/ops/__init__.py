"""RoI pooling ops as registered torch custom ops: Fast R-CNN RoI pooling, RoIAlign, spatial
pyramid pooling, position-sensitive RoIAlign / RoI pooling (R-FCN) and the multi-scale
RoIAlign of FPN detectors, with the exact semantics of the reference implementations
(Caffe / torchvision / detectron2 / SPP-net), in PyTorch.  On the CPU, the max-pooling
loops of :func:`roi_pool` and :func:`spp_pool`, and the building and transposing of the
sparse pooling matrices of the linear ops, run natively when a C++ compiler is at hand
(built on first use and cached, :mod:`rfmap.ops._native`), with the same results bit for bit
as their pure-PyTorch paths; :func:`native_status` says which runs.

Coordinate conventions differ by op and are stated in each docstring: :func:`roi_pool`,
:func:`ps_roi_pool` and :func:`spp_pool` use the pixel-index convention (cell ``i`` is the
point ``i``; RoI corners are rounded half away from zero); :func:`roi_align` and
:func:`ps_roi_align` use continuous coordinates, where with ``aligned=True`` pixel ``i``
covers ``[i, i + 1)``.

Boxes are a ``Tensor[K, 5]`` of ``(batch_index, x1, y1, x2, y2)`` or a list of
``Tensor[L_i, 4]``, one per image.  Bad arguments raise :class:`rfmap.RFMapError` (a
``ValueError``) naming the op and the offending box.

Deployment: the ops are ``torch.library`` custom ops (``torch.ops.rfmap.roi_align`` ...) with
fake kernels and registered autograd, so modules calling them work under
``torch.compile(fullgraph=True)``, ``torch.export.export`` and ``torch.jit.script``, and
export to standard ONNX with both ``torch.onnx.export`` exporters (:mod:`rfmap.ops._onnx`;
:func:`onnx_translation_table` for a ``torch.export`` program that holds the ops).
The checks that need the boxes' values run inside the ops' kernels (:mod:`rfmap.ops._boxes`).
Every op has a double backward, and works under ``torch.func`` transforms (``grad``, ``vjp``,
``jacrev``, forward mode: ``jvp``, ``jacfwd``, ``hessian``; ``vmap`` and its per-sample
gradients, one batched call per ``vmap``, not a loop; :mod:`rfmap.ops._library`).

This subpackage imports torch; nothing else in rfmap imports it eagerly.
"""

from ._native import status as native_status
from ._onnx import onnx_translation_table, register_torchscript_symbolics
from .multiscale import MultiScaleRoIAlign
from .ps_roi import PSRoIAlign, PSRoIPool, ps_roi_align, ps_roi_pool
from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool
from .spp import SpatialPyramidPool, spp_pool

register_torchscript_symbolics()

__all__ = [
    "MultiScaleRoIAlign",
    "PSRoIAlign",
    "PSRoIPool",
    "RoIAlign",
    "RoIPool",
    "SpatialPyramidPool",
    "native_status",
    "onnx_translation_table",
    "ps_roi_align",
    "ps_roi_pool",
    "roi_align",
    "roi_pool",
    "spp_pool",
]
