"""rfmap's resource budget: every limit on what one request may cost, in one place.

rfmap reads networks from files other people wrote.  A file may ask for anything (an
adaptive pool to 10^12 cells, an upsampling ratio that repeats only every 10^10 cells, a
transposed convolution with 10^11 taps), so the engine works out what a request costs
*before* it allocates, and refuses with one :class:`~rfmap.errors.RFMapError` naming the
layer, the value and the limit below when the cost is beyond it.  Nothing here is a
property of the networks rfmap is made for: ResNet-152 at 4096 pixels, a 100,000-layer
chain or a 16,000-node ONNX file stay far inside every limit.

The limits (change them here, nowhere else):

========================  ===========  ==========================================================
name                      value        what it bounds
========================  ===========  ==========================================================
``MAX_VALUE``             2**40        any size, kernel, stride, dilation, padding or factor
``MAX_SIZE``              2**40        cells of any map along one axis (boxes stay exact in int64)
``MAX_PERIOD``            2**20        cells of one period whose boxes a map stores per axis
``MAX_TAPS``              2**22        elements of one array of taps evaluated at once (memory)
``MAX_WORK``              2**28        taps evaluated for one axis of one query (time)
``MAX_CELLS``             2**24        cells along one axis of a map on which per-cell sets
                                       (supports, ``cells_containing``) are computed
``MAX_LAYERS``            2**20        layers (nodes) of one network
``MAX_PICTURE_PIXELS``    2**26        input pixels of a picture (a report or a figure)
``MAX_REPORT_CELLS``      2**16        rows and columns, summed over every layer, that a
                                       report describes cell by cell
``MAX_GRID_POINTS``       2**18        RF centers a grid figure draws
``MAX_MATCHES``           2**20        anchor x ground truth x threshold pairs of an anchor report
``MAX_COMPARISONS``       2**26        box comparisons of a sampled anchor report (~10 M/s)
``MAX_FILE_BYTES``        16 MiB       a spec file or an anchor configuration
``MAX_IMAGE_BYTES``       64 MiB       an image file drawn under a figure or embedded in a report
``MAX_NESTING``           64           nesting depth of lists and mappings in such a file
``MAX_ALIASES``           64           YAML aliases (``*name``) in such a file
========================  ===========  ==========================================================

Periods: the boxes of a map are stored for one period of cells (1 for convolutional nets,
``p`` after upsampling by ``p/q``, ``m/gcd(n, m)`` after adaptive pooling from ``n`` to ``m``),
which makes the engine's cost independent of the input size; ``MAX_PERIOD`` bounds it.
"""

from __future__ import annotations

from rfmap.errors import RFMapError

MAX_VALUE = 2**40
MAX_SIZE = 2**40
MAX_PERIOD = 2**20
MAX_TAPS = 2**22
MAX_WORK = 2**28
MAX_CELLS = 2**24
MAX_LAYERS = 2**20
MAX_PICTURE_PIXELS = 2**26
MAX_REPORT_CELLS = 2**16
MAX_GRID_POINTS = 2**18
MAX_MATCHES = 2**20
MAX_COMPARISONS = 2**26
MAX_FILE_BYTES = 16 * 2**20
MAX_IMAGE_BYTES = 64 * 2**20
MAX_NESTING = 64
MAX_ALIASES = 64

_HINT = "rfmap.core.budget"


def check_size(n: int, what: str) -> int:
    """``n`` cells along one axis of a map, at most :data:`MAX_SIZE`."""
    if n > MAX_SIZE:
        raise RFMapError(f"{what}: {n:,} cells along an axis, beyond rfmap's limit of {MAX_SIZE:,} ({_HINT}.MAX_SIZE)")
    return n


def check_period(period: int, what: str) -> int:
    """The boxes of ``period`` cells stored per axis, at most :data:`MAX_PERIOD`."""
    if period > MAX_PERIOD:
        raise RFMapError(
            f"{what} repeats its receptive fields only every {period:,} cells, beyond rfmap's limit of "
            f"{MAX_PERIOD:,} ({_HINT}.MAX_PERIOD)"
        )
    return period


def check_work(cells: int, width: int, what: str) -> None:
    """``cells`` output cells reading ``width`` taps each, at most :data:`MAX_WORK` taps."""
    if cells * width > MAX_WORK:
        raise RFMapError(
            f"{what}: {cells:,} cells x {width:,} taps is beyond rfmap's limit of {MAX_WORK:,} taps per axis "
            f"({_HINT}.MAX_WORK)"
        )


class Allowance:
    """A running total of work (``spend`` as it is planned) that refuses, with one
    RFMapError, the request that would take it beyond ``limit``."""

    def __init__(self, limit: int, what: str, hint: str = "MAX_WORK"):
        self.left, self.limit, self.what, self.hint = limit, limit, what, hint

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise RFMapError(
                f"{self.what} needs more than rfmap's limit of {self.limit:,} steps ({_HINT}.{self.hint})"
            )


def check_cells(n: int, what: str) -> None:
    """A per-cell array over ``n`` cells of one axis, at most :data:`MAX_CELLS`."""
    if n > MAX_CELLS:
        raise RFMapError(
            f"{what} needs one entry per cell, and the map has {n:,} cells along an axis, beyond rfmap's limit of "
            f"{MAX_CELLS:,} ({_HINT}.MAX_CELLS); analyze at a smaller input size"
        )


def check_picture(h: int, w: int, what: str) -> None:
    """A picture of an ``h`` x ``w`` input, at most :data:`MAX_PICTURE_PIXELS` pixels."""
    if h * w > MAX_PICTURE_PIXELS:
        raise RFMapError(
            f"{what} of a {h:,}x{w:,} input: beyond rfmap's limit of {MAX_PICTURE_PIXELS:,} pixels for pictures "
            f"({_HINT}.MAX_PICTURE_PIXELS); analyze at a smaller input size"
        )


def chunk(width: int) -> int:
    """How many cells of ``width`` taps each one array of at most :data:`MAX_TAPS` holds (>= 1)."""
    return max(1, MAX_TAPS // max(width, 1))
