"""Model zoo: architectures only (no weights), as :class:`~rfmap.core.graph.Graph` objects.

``names()`` lists the CLI names, ``entries()`` gives ``(name, description, input_size)``
for ``rfmap zoo``, ``has(name)`` / ``get(name)`` look one up (case-insensitive; ``_`` and
``-`` are interchangeable).  Each graph carries its usual input size as ``input_size``.
``get(name, input_size)`` builds the entries whose layers depend on the input size (the
FCNs' Caffe crops, the FPNs' interpolations to the lateral maps' size) at that size; the
other entries are the same graph at every size.

One module per family, each stating its conventions:

* :mod:`.classic` -- LeNet-5, AlexNet, ZF-5, VGG (torchvision and Caffe)
* :mod:`.resnet` -- ResNets (torchvision and the original Caffe layout)
* :mod:`.detectors` -- RPNs, SSD300, S3FD, LFFD
* :mod:`.fpn` -- ResNet-50-FPN backbones of torchvision's RetinaNet and Faster R-CNN
* :mod:`.fcn` -- FCN-32s, FCN-16s, FCN-8s (Caffe, with their crop layers)
* :mod:`.sequence` -- 1-D dilated causal stacks (WaveNet, keras-tcn)

Conventions shared by every family (pixel-index coordinates, (H, W) order, as everywhere
in rfmap): only layers that matter to geometry are listed, plus the ones people look up by
name; activations, batch norms and dropouts change no geometry and are mostly left out.
``flatten`` + fully connected layers are global ops (``GlobalOp(op="linear")``), their RF is
the whole input; where a model's own source runs its fc layers as convolutions, they are
convolutions.  Caffe pooling rounds the output size up (``ceil_mode=True``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache

from rfmap.core.graph import Graph
from rfmap.errors import RFMapError
from rfmap.frontends.zoo._registry import ZOO, ZooEntry

#: the family modules, in listing order (each registers its entries when imported)
FAMILIES = ("classic", "resnet", "detectors", "fpn", "fcn", "sequence")
_loaded = 0  # how many of FAMILIES are imported


def _load(key: str | None = None) -> None:
    """Import the families in listing order until ``key`` is registered (all of them when
    ``key`` is None or unknown): ``rfmap summary vgg16`` imports the classic family only."""
    global _loaded
    while _loaded < len(FAMILIES) and (key is None or key not in ZOO):
        importlib.import_module(f"{__name__}.{FAMILIES[_loaded]}")
        _loaded += 1


__all__ = ["ZooEntry", "entries", "get", "has", "names"]


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def names() -> tuple[str, ...]:
    """The CLI names of every zoo entry, in listing order."""
    _load()
    return tuple(ZOO)


def entries() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """``(name, description, default input size)`` for every entry, for ``rfmap zoo``."""
    _load()
    return tuple((e.name, e.description, e.input_size) for e in ZOO.values())


def has(name: str) -> bool:
    if not isinstance(name, str):
        return False
    _load(_key(name))
    return _key(name) in ZOO


def get(name: str, input_size: int | Sequence[int] | None = None) -> Graph:
    """The graph of a zoo entry, with its usual input size as ``input_size``.

    ``input_size`` matters to the entries built for a size (see the module docstring):
    their graph at that size, with it as ``input_size``.  The other entries ignore it.
    """
    if not has(name):
        raise RFMapError(f"'{name}' is not in the zoo (known: {', '.join(ZOO)})")
    entry = ZOO[_key(name)]
    size = entry.input_size
    if entry.sized and input_size is not None:
        size = _size(entry, input_size)
    return _build(entry.name, size)


def _size(entry: ZooEntry, input_size) -> tuple[int, ...]:
    ndim = len(entry.input_size)
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size,) * ndim
    try:
        size = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        raise RFMapError(f"input size must be an int or a tuple of ints, got {input_size!r}") from None
    if len(size) != ndim or any(v < 1 for v in size):
        raise RFMapError(f"'{entry.name}' takes {ndim} positive input sizes, got {input_size!r}")
    return size


@lru_cache(maxsize=64)
def _build(name: str, size: tuple[int, ...]) -> Graph:
    return ZOO[name].build(size)
