"""Padding and pooling sizes for the PyTorch twins (:mod:`rfmap.rules.torch_realize`): the
frameworks' padding strings resolved per axis, N-d padding with PyTorch's modes, and
PyTorch's pooling output size -- written from the frameworks' documentation, independently
of :mod:`rfmap.core.layers`, so that a twin checks the engine rather than repeating it.
Imports torch; imported only to build a twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rfmap.core.params import pad_pair, per_axis
from rfmap.errors import RFMapError


def resolve_padding(padding: Any, n: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """``(left, right)`` padding of one axis of a convolution or pooling, for input size ``n``.

    Strings follow the frameworks (written here from their documentation, independently of
    :mod:`rfmap.core.layers`): ``"valid"`` is 0; ``"same"`` with stride 1 is PyTorch's (total
    ``d*(k-1)``, the extra pixel on the right), with a larger stride TensorFlow's ``SAME``;
    ``"same_upper"``/``"same_lower"`` are ONNX's auto_pad (``n_out = ceil(n/s)``, total
    ``max((n_out-1)*s + d*(k-1) + 1 - n, 0)``, the extra pixel at the end / the start).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        k_eff = dilation * (kernel - 1) + 1
        if mode == "valid":
            return 0, 0
        if mode == "same" and stride == 1:
            total = k_eff - 1
            return total // 2, total - total // 2
        if mode in ("same", "same_upper", "same_lower"):
            n_out = -(-n // stride)
            total = max((n_out - 1) * stride + k_eff - n, 0)
            if mode == "same_lower":
                return total - total // 2, total // 2
            return total // 2, total - total // 2
        raise RFMapError(f"padding {padding!r} is not one of valid, same, same_upper, same_lower")
    return pad_pair(padding)


def axis_pads(padding: Any, ndim: int) -> tuple:
    """Per-axis padding entries (an int, a pair or a string each)."""
    if isinstance(padding, str):
        return (padding,) * ndim
    return per_axis(padding, ndim, "padding")


def pad_nd(x: torch.Tensor, pads: Sequence[tuple[int, int]], mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of ``x`` by ``pads[a] = (left, right)``; negative values crop.

    Positive sides are padded first (reflect/replicate then mirror or repeat the original
    border, as ``F.pad`` does), negative sides are cut afterwards.  For ``circular`` the
    whole (possibly negative) padding goes to ``F.pad``, which crops before wrapping.
    """
    if all(p == (0, 0) for p in pads):
        return x
    if mode == "circular":
        flat = [v for pair in reversed(pads) for v in pair]
        return F.pad(x, flat, mode="circular")
    grow = [(max(pl, 0), max(pr, 0)) for pl, pr in pads]
    if any(g != (0, 0) for g in grow):
        flat = [v for pair in reversed(grow) for v in pair]
        if mode == "zeros":
            x = F.pad(x, flat, mode="constant", value=value)
        else:
            x = F.pad(x, flat, mode=mode)
    if any(pl < 0 or pr < 0 for pl, pr in pads):
        index = [slice(None), slice(None)]
        for (pl, pr), n in zip(pads, x.shape[2:]):
            index.append(slice(-pl if pl < 0 else 0, n + pr if pr < 0 else n))
        x = x[tuple(index)]
    return x


def pool_out(n: int, k_eff: int, s: int, pl: int, pr: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape``) for padding ``(pl, pr)``.

    With ``ceil_mode`` the division rounds up, but a last window that would start in the
    right padding is dropped.
    """
    span = n + pl + pr - k_eff
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pl:
            out -= 1
        return out
    return span // s + 1
