"""Models named by a factory: ``"pkg.module:factory"`` or ``"torchvision:resnet50"``.

``from_factory(spec)`` imports ``pkg.module``, calls ``factory()`` with no arguments and
reads the returned ``torch.nn.Module`` with :func:`rfmap.frontends.torch.capture.from_module`.
``torchvision:NAME`` calls ``torchvision.models.NAME()`` (random weights: only the
architecture matters).
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from rfmap.errors import RFMapError
from rfmap.core.graph import Graph


def load_factory(spec: str) -> Any:
    """The module a ``"pkg.module:factory"`` string names (the factory's return value)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise RFMapError(f"'{spec}': expected 'package.module:factory' (for example 'torchvision:resnet50')")
    module_name, attr = (part.strip() for part in spec.split(":"))
    if not module_name or not attr:
        raise RFMapError(f"'{spec}': expected 'package.module:factory' (for example 'torchvision:resnet50')")
    if module_name == "torchvision":
        module_name = "torchvision.models"
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing.split(".")[0] == "torchvision":
            raise RFMapError(f"'{spec}': torchvision is not installed (pip install torchvision)") from None
        raise RFMapError(f"'{spec}': cannot import '{module_name}' ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - an import-time error in user code
        raise RFMapError(f"'{spec}': importing '{module_name}' failed: {type(exc).__name__}: {exc}") from None
    factory = mod
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise RFMapError(f"'{spec}': '{module_name}' has no attribute '{attr}'") from None
    if not callable(factory):
        raise RFMapError(f"'{spec}': '{attr}' is not callable")
    try:
        model = factory()
    except TypeError as exc:
        raise RFMapError(f"'{spec}': '{attr}()' needs arguments ({exc}); give a zero-argument factory") from None
    except Exception as exc:  # noqa: BLE001
        raise RFMapError(f"'{spec}': '{attr}()' failed: {type(exc).__name__}: {exc}") from None
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - torch is needed to call a torch factory anyway
        raise RFMapError(f"'{spec}': torch is not installed") from None
    if not isinstance(model, nn.Module):
        raise RFMapError(f"'{spec}': '{attr}()' returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def from_factory(
    spec: str,
    input_size: int | Sequence[int] | None = None,
    *,
    strict: bool = False,
) -> Graph:
    """The :class:`Graph` of the model a zero-argument factory returns (see the module docstring).

    The model is put in eval mode (dropout and batch norm then change no geometry).
    ``input_size`` and ``strict`` are passed to :func:`~rfmap.frontends.torch.capture.from_module`.
    """
    model = load_factory(spec)
    model.eval()
    from rfmap.frontends.torch.capture import from_module

    return from_module(model, input_size, strict=strict)
