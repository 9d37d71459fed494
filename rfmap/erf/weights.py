"""The weights of the measured network (``weights=`` of :func:`rfmap.erf.erf`).

* ``"as-is"``: the module's own weights, trained if the factory that built it loaded
  them.  A spec, zoo or ONNX source has no weights of its own (rfmap reads only its
  geometry), so its linear twin gets positive weights drawn uniformly in
  ``[0.5, 1.5] / fan_in`` from the seed.
* ``"random"``: convolution and linear weights re-drawn for every batch, Kaiming-normal
  (fan-in, gain ``sqrt(2)``), biases 0, batch norms removed: the map averages over weight
  draws as Luo et al. (2016) do.
* ``"uniform"``: every convolution and linear weight ``1 / fan_in``, biases 0, batch norms
  removed; for a linear network this is the network of :func:`rfmap.erf.closed_form_sigma`.

The user's module is never changed: re-weighting happens on a copy.  Imports torch lazily.
"""

from __future__ import annotations

import math

__all__ = ["WEIGHTS", "WEIGHTS_HELP", "infer_channels", "redraw", "reweight"]

from rfmap.erf.names import WEIGHTS, WEIGHTS_HELP  # noqa: E402  (re-exported)


def _conv_types():
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _norm_types():
    from torch import nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _fan_in(m) -> int:
    from torch import nn

    w = m.weight
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return int(w.shape[0] // max(m.groups, 1) * math.prod(w.shape[2:]))
    return int(w.shape[1] * math.prod(w.shape[2:]))


def _strip_norms(model) -> None:
    """Replace batch norms by identities (in place, on a copy of the user's model)."""
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _norm_types()):
                setattr(parent, name, nn.Identity())


def _set_uniform(model) -> None:
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _conv_types()):
                m.weight.fill_(1.0 / _fan_in(m))
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def reweight(model, weights: str) -> None:
    """Prepare a *copy* of a module for ``weights`` (``"random"`` is drawn per batch by :func:`redraw`)."""
    if weights == "as-is":
        return
    _strip_norms(model)
    if weights == "uniform":
        _set_uniform(model)


def redraw(model, gen) -> None:
    """Kaiming-normal weights (fan-in, gain sqrt(2)), zero biases, drawn from ``gen`` (CPU)."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _conv_types()):
                std = math.sqrt(2.0 / _fan_in(m))
                w = torch.randn(m.weight.shape, generator=gen, dtype=torch.float64) * std
                m.weight.copy_(w.to(device=m.weight.device, dtype=m.weight.dtype))
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


def infer_channels(model) -> int:
    """Input channels of a module: those of its first convolution or linear layer (else 3)."""
    for m in model.modules():
        if isinstance(m, _conv_types()):
            return int(m.in_channels if hasattr(m, "in_channels") else m.in_features)
    return 3
