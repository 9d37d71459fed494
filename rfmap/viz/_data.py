"""Per-axis cell geometry and images for the figures and the report (numpy only).

Everything here reads the public :class:`~rfmap.core.analysis.Analysis` API, so pictures and the
report show exactly what ``analysis.rf_box`` and ``analysis.support`` say.

Boxes are separable per axis: the box of cell ``(i, j)`` is
``(lo_y[i], lo_x[j], hi_y[i], hi_x[j])``, so one query per row (``(i, 0)``) and per column
(``(0, j)``) gives every box of a layer.  Supports are taken per axis from
``analysis.support(layer, (i, mid_x))[0]`` and ``analysis.support(layer, (mid_y, j))[1]``
(``mid`` the middle cell of the other axis).  That is exact for chains, where the support is
a product of per-axis sets; after a merge the support can be a union of products, and the
per-axis bounding boxes are then those of the projections seen through the middle row or
column (a superset of the exact bounding box is never shown: a cell whose support is empty
on either axis is shown as seeing only padding).
"""

from __future__ import annotations

import base64
import os
import stat
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from rfmap.errors import RFMapError

if TYPE_CHECKING:  # pragma: no cover
    from rfmap.core.analysis import Analysis
    from rfmap.core.result import LayerGeometry


@dataclass(frozen=True)
class AxisCells:
    """The cells of one layer along one axis: inclusive RF box ``lo..hi`` per cell and the
    bounding box ``support_lo..support_hi`` of its support (``-1..-2`` where empty)."""

    lo: np.ndarray
    hi: np.ndarray
    support_lo: np.ndarray | None = None
    support_hi: np.ndarray | None = None

    @property
    def centers(self) -> np.ndarray:
        """RF centers (pixel-index convention), floats; exact halves."""
        return (self.lo + self.hi) / 2.0

    @property
    def support_empty(self) -> np.ndarray:
        assert self.support_lo is not None
        return self.support_lo > self.support_hi

    def nearest(self, point: float) -> int:
        """The cell whose center is nearest to ``point`` (ties: the lower index), the rule
        of :meth:`Analysis.nearest_cell`."""
        return int(np.argmin(np.abs((self.lo + self.hi) - 2 * float(point))))


def require_2d(analysis: Analysis, what: str) -> None:
    if analysis.ndim != 2:
        raise RFMapError(f"{what} needs a 2-D input (H, W); this analysis has {analysis.ndim} axes {list(analysis.input_size)}")


def layer_row(analysis: Analysis, layer: Any) -> LayerGeometry:
    """The row of ``layer`` (a name or an index; a digit string that is no layer name is an index)."""
    return analysis.layer(layer)


def axis_cells(analysis: Analysis, layer: Any, support: bool = True) -> tuple[AxisCells, ...]:
    """Per image axis (H, W), the boxes (and supports) of the cells of ``layer`` along it; see
    the module docstring.  A layer whose axes are transposed (``row.input_axes``) is shown in
    the image's orientation: its axis that runs along H first."""
    require_2d(analysis, "drawing receptive fields")
    row = layer_row(analysis, layer)
    sizes = row.output_size
    along = (0, 1) if row.input_axes is None else row.input_axes  # the image axis of each layer axis
    mids = [n // 2 for n in sizes]
    out: list[AxisCells] = [None, None]  # type: ignore[list-item]
    for axis, n in enumerate(sizes):
        lo = np.empty(n, dtype=np.int64)
        hi = np.empty(n, dtype=np.int64)
        slo = np.full(n, -1, dtype=np.int64)
        shi = np.full(n, -2, dtype=np.int64)
        image_axis = along[axis]
        for i in range(n):
            cell = (i, 0) if axis == 0 else (0, i)
            box = analysis.rf_box(row.name, cell)
            lo[i], hi[i] = box[image_axis], box[image_axis + 2]
            if support:
                cell = (i, mids[1]) if axis == 0 else (mids[0], i)
                s = analysis.support(row.name, cell)[image_axis]
                if s.size:
                    slo[i], shi[i] = int(s[0]), int(s[-1])
        out[image_axis] = AxisCells(lo, hi, slo if support else None, shi if support else None)
    return tuple(out)


def parse_cells(cells: Any, sizes: Sequence[int], layer_name: str) -> list[tuple[int, int]]:
    """``(i, j)``, a list of them or ``None`` (the corner cell and the middle cell), checked against the layer size."""
    if cells is None:
        default = [(0, 0), (sizes[0] // 2, sizes[1] // 2)]
        return list(dict.fromkeys(default))
    if isinstance(cells, (tuple, list, np.ndarray)) and len(cells) == 2 and all(isinstance(v, (int, np.integer)) for v in cells):
        cells = [cells]
    out = []
    for cell in cells:
        try:
            i, j = (int(v) for v in cell)
        except (TypeError, ValueError):
            raise RFMapError(f"cell {cell!r} must be a pair (i, j) of ints") from None
        if not (0 <= i < sizes[0] and 0 <= j < sizes[1]):
            raise RFMapError(f"cell ({i}, {j}) is outside layer '{layer_name}' of size {list(sizes)}")
        out.append((i, j))
    if not out:
        raise RFMapError("no cells given")
    return out


# -- images -----------------------------------------------------------------------------


def _image_file(path: str) -> None:
    """An image file rfmap may read: a regular file of at most ``MAX_IMAGE_BYTES``."""
    from rfmap.core.budget import MAX_IMAGE_BYTES

    try:
        info = os.stat(path)
    except OSError:
        raise RFMapError(f"cannot read image '{path}': it does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise RFMapError(f"image '{path}' is not a regular file")
    if info.st_size > MAX_IMAGE_BYTES:
        raise RFMapError(f"image '{path}' has {info.st_size:,} bytes, beyond rfmap's limit of {MAX_IMAGE_BYTES:,} "
                         "(rfmap.core.budget.MAX_IMAGE_BYTES)")


def _check_pixels(path: str, h: int, w: int) -> None:
    from rfmap.core.budget import MAX_PICTURE_PIXELS

    if h * w > MAX_PICTURE_PIXELS:
        raise RFMapError(f"image '{path}' is {h:,}x{w:,} pixels, beyond rfmap's limit of {MAX_PICTURE_PIXELS:,} "
                         "(rfmap.core.budget.MAX_PICTURE_PIXELS)")


@overload
def load_image(image: None) -> None: ...
@overload
def load_image(image: str | os.PathLike[str] | np.ndarray | Any) -> np.ndarray: ...
def load_image(image: Any) -> np.ndarray | None:
    """An image as an array ``H x W`` or ``H x W x 3|4`` (PIL when installed, else matplotlib's
    imread); its size is checked before it is decoded."""
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        _image_file(path)
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
        size = image_size(head)
        if size is not None:
            _check_pixels(path, *size)
        try:
            from PIL import Image
        except ImportError:
            try:
                import matplotlib.image as mpimg
            except ImportError:
                raise RFMapError("reading an image needs Pillow or matplotlib (pip install pillow)") from None
            try:
                return np.asarray(mpimg.imread(path))
            except Exception as exc:  # noqa: BLE001 - any decoder failure
                raise RFMapError(f"cannot read image '{path}': {exc} (without Pillow only PNG can be read)") from None
        try:
            with Image.open(path) as im:
                _check_pixels(path, im.size[1], im.size[0])
                if im.mode not in ("L", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                return np.asarray(im)
        except RFMapError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise RFMapError(f"cannot read image '{path}': {exc}") from None
    arr = np.asarray(image)
    return check_image_array(arr)


def check_image_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4:
        arr = np.moveaxis(arr, 0, -1)  # C x H x W, as torch keeps images
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or arr.size == 0:
        raise RFMapError(f"an image must be H x W, H x W x 3 or H x W x 4, got shape {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise RFMapError(f"an image must hold numbers, got dtype {arr.dtype}")
    return arr


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 pixels: integers are clipped to 0..255, floats in 0..1 are scaled (others min-max normalized)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0:
            return arr.astype(np.uint8)
        arr = arr.astype(np.float64)
        lo, hi = arr.min(), arr.max()
        return np.round(255 * (arr - lo) / (hi - lo or 1)).astype(np.uint8)
    a = np.nan_to_num(arr.astype(np.float64))
    if a.min(initial=0) < 0 or a.max(initial=0) > 1:
        lo, hi = a.min(), a.max()
        a = (a - lo) / (hi - lo or 1)
    return np.round(255 * a).astype(np.uint8)


def encode_png(arr: np.ndarray) -> bytes:
    """A PNG file of an ``H x W`` (grey), ``H x W x 3`` or ``H x W x 4`` image (no dependency)."""
    a = to_uint8(check_image_array(np.asarray(arr)))
    h, w = a.shape[:2]
    color = 0 if a.ndim == 2 else {3: 2, 4: 6}[a.shape[2]]  # grey, RGB, RGBA
    raw = np.ascontiguousarray(a).reshape(h, -1)
    body = b"".join(b"\x00" + raw[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body, 9)) + chunk(b"IEND", b"")


_MIME = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(H, W)`` read from a PNG, GIF or JPEG header; ``None`` for other formats."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return h, w
    if data.startswith(b"\xff\xd8"):
        k = 2
        while k + 9 < len(data):
            if data[k] != 0xFF:
                k += 1
                continue
            marker = data[k + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                k += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[k + 2 : k + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[k + 5 : k + 9])
                return h, w
            k += 2 + length
    return None


@dataclass(frozen=True)
class EmbeddedImage:
    """An image ready to embed: a ``data:`` URI and its size ``(H, W)``."""

    uri: str
    size: tuple[int, int]


def embed_image(image: Any) -> EmbeddedImage | None:
    """A ``data:`` URI of ``image`` (a file: its own bytes when PNG, JPEG, GIF or BMP; an array: a PNG)."""
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        _image_file(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise RFMapError(f"cannot read image '{path}': {exc.strerror}") from None
        mime = next((m for magic, m in _MIME if data.startswith(magic)), None)
        size = image_size(data) if mime else None
        if size is not None:
            _check_pixels(path, *size)
        if mime is None or size is None:  # another format, or a header we cannot read: decode it
            arr = load_image(path)
            assert arr is not None
            return embed_image(arr)
        return EmbeddedImage(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", size)
    arr = check_image_array(np.asarray(image))
    png = encode_png(arr)
    return EmbeddedImage("data:image/png;base64," + base64.b64encode(png).decode("ascii"), (int(arr.shape[0]), int(arr.shape[1])))
