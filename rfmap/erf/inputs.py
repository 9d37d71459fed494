"""The inputs an ERF is averaged over: noise, a tensor, or a folder of images -- one adapter.

:class:`Inputs` reads what the user gave once (a tensor's size and channels, a folder's
files and the size of its first image), so that a twin can be built for them; the
measurement then draws batches with the network's channels and dtype.  Images are read as
floats in [0, 1], resized to the input size when one is given (bilinear; a protocol may
ask for bicubic) and, with 3 channels, standardized with the ImageNet mean and std.
Numpy only at import; torch when batches are drawn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rfmap.errors import RFMapError

__all__ = ["IMAGE_SUFFIXES", "Inputs"]

#: Image files read from a folder of inputs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_N = 64


def load_image(path: Path) -> np.ndarray:
    """An image as a float array (H, W, C) in [0, 1], read by :func:`rfmap.viz._data.load_image`."""
    from rfmap.viz._data import (
        load_image as read,  # numpy only; imported here so ``import rfmap`` skips rfmap.viz
    )

    raw = read(path)
    arr = np.asarray(raw, dtype=np.float64)
    if np.issubdtype(raw.dtype, np.integer) or arr.max(initial=0.0) > 1.0:
        arr = arr / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr[:, :, :3]


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise RFMapError(f"'{folder}': no {', '.join(IMAGE_SUFFIXES)} images in the folder")
    return files


def _is_tensor(value: Any) -> bool:
    return any(c.__module__.startswith("torch") and c.__name__ == "Tensor" for c in type(value).__mro__)


class Inputs:
    """Noise (``inputs=None``), the slices of a tensor ``(N, C, *spatial)``, or images read lazily.

    ``kind``: ``"noise"``, ``"tensor"`` or ``"images"``; ``n``: how many are used (``n``
    caps a tensor or folder; noise defaults to 64); ``size``: the spatial size (a tensor's
    own, else ``size``, else a folder's first image; ``None`` for noise without a size
    until :meth:`require_size`); ``channels``: a tensor's channels, else ``None`` (the
    network decides).  ``ndim``: spatial axes expected of a tensor (default 2).
    """

    def __init__(self, inputs: Any, n: int | None, size: tuple[int, ...] | None, ndim: int | None = None):
        self.kind = "noise"
        self.files: list[Path] = []
        self.tensor: Any = None  # a torch tensor (N, C, *spatial)
        self.channels: int | None = None
        self.size = size
        if inputs is None:
            self.n = DEFAULT_N if n is None else int(n)
        elif _is_tensor(inputs):
            self._read_tensor(inputs, n, ndim or (len(size) if size else 2))
        elif isinstance(inputs, (str, os.PathLike)):
            folder = Path(inputs)
            if not folder.is_dir():
                raise RFMapError(f"'{folder}': inputs must be a tensor or a folder of images")
            self.kind, self.files = "images", image_files(folder)
            self.n = len(self.files) if n is None else min(int(n), len(self.files))
            if self.size is None:
                self.size = tuple(load_image(self.files[0]).shape[:2])
        else:
            raise RFMapError(f"inputs must be None (noise), a tensor or a folder of images, got {type(inputs).__name__}")
        if self.n < 1:
            raise RFMapError(f"n must be at least 1, got {self.n}")

    def _read_tensor(self, inputs, n, nd: int) -> None:
        t = inputs.detach()
        if t.dim() == nd + 1:
            t = t.unsqueeze(0)
        if t.dim() != nd + 2:
            raise RFMapError(f"inputs must have shape (N, C, *spatial) with {nd} spatial axes, got {list(inputs.shape)}")
        self.kind, self.tensor = "tensor", t
        self.n = t.shape[0] if n is None else min(int(n), t.shape[0])
        self.size = tuple(int(v) for v in t.shape[2:])
        self.channels = int(t.shape[1])

    def require_size(self, default: tuple[int, ...] | None, message: str) -> tuple[int, ...]:
        """The input size, ``default`` when none was given; raises ``message`` when neither is."""
        if self.size is None:
            self.size = default
        if self.size is None:
            raise RFMapError(message)
        return tuple(self.size)

    def known_size(self) -> tuple[int, ...]:
        """The input size, once given or settled by :meth:`require_size`."""
        return self.require_size(None, "the input size is not known yet (see require_size)")

    def describe(self) -> str:
        """``"64 noise images"``, ``"5 tensor inputs"``, ``"3 images from DIR"``."""
        if self.kind == "images":
            return f"{self.n} images from {self.files[0].parent}"
        return f"{self.n} {'standard-normal noise' if self.kind == 'noise' else 'tensor'} inputs"

    def batches(self, channels: int, dtype: Any, batch_size: int, seed: int, resize: str = "bilinear") -> Iterator:
        """Batches ``(b, channels, *size)`` of ``dtype``; noise is drawn from ``seed``."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        size = self.known_size()
        for start in range(0, self.n, batch_size):
            b = min(batch_size, self.n - start)
            if self.kind == "noise":
                shape = (b, channels) + size
                yield torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)
            elif self.kind == "tensor":
                yield self.tensor[start : start + b].to(dtype)
            else:
                yield self._image_batch(self.files[start : start + b], channels, size, resize).to(dtype)

    def _image_batch(self, files: list[Path], channels: int, size: tuple[int, ...], resize: str) -> Any:
        import torch
        import torch.nn.functional as F

        out = []
        for path in files:
            arr = load_image(path)
            x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float64)
            if x.shape[0] != channels:  # grey <-> colour: average, then repeat
                x = x.mean(0, keepdim=True).expand(channels, -1, -1)
            if tuple(x.shape[1:]) != size:
                antialias = resize == "bicubic"  # as PIL's bicubic resize
                x = F.interpolate(x[None], size=size, mode=resize, align_corners=False, antialias=antialias)[0]
            if channels == 3:
                mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype)[:, None, None]
                std = torch.tensor(IMAGENET_STD, dtype=x.dtype)[:, None, None]
                x = (x - mean) / std
            out.append(x)
        return torch.stack(out)
