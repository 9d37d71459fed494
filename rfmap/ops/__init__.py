"""RoI pooling ops as differentiable torch functions: Fast R-CNN RoI pooling, RoIAlign and
spatial pyramid pooling, with the exact semantics of the reference implementations
(Caffe / torchvision / detectron2 / SPP-net), in pure torch (no compiled extension).

Coordinate conventions differ by op and are stated in each docstring: :func:`roi_pool` and
:func:`spp_pool` use the pixel-index convention (cell ``i`` is the point ``i``; RoI corners
are rounded half away from zero and the end cell is included); :func:`roi_align` uses
continuous coordinates, where with ``aligned=True`` pixel ``i`` covers ``[i, i + 1)``.

Boxes are a ``Tensor[K, 5]`` of ``(batch_index, x1, y1, x2, y2)`` or a list of
``Tensor[L_i, 4]``, one per image.  Bad arguments raise :class:`rfmap.RFMapError` (a
``ValueError``) naming the op and the offending box.

This subpackage imports torch; nothing else in rfmap imports it eagerly.
"""

from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool
from .spp import SpatialPyramidPool, spp_pool

__all__ = ["RoIAlign", "RoIPool", "SpatialPyramidPool", "roi_align", "roi_pool", "spp_pool"]
