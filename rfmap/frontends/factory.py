"""Models named by a factory: ``"pkg.module:factory"``, ``"path/to/models.py:factory"`` or
``"torchvision:resnet50"``.

``from_factory(spec)`` imports the module (a dotted name, found on ``sys.path`` and in the
current folder, or a ``.py`` file given by its path), calls ``factory()`` with no arguments
and reads the returned ``torch.nn.Module`` with
:func:`rfmap.frontends.torch.capture.from_module`.  ``torchvision:NAME`` calls
``torchvision.models.NAME()`` (random weights: only the architecture matters).

A factory is the user's own code and runs as such: rfmap reports the exceptions it raises,
but a factory that aborts the interpreter or never returns is beyond rfmap's reach.  Only
what the user types (on the command line or in Python) names a factory; data files (spec
files, anchor configurations, ONNX files) never do.  torch's own logging and the partial
graphs it prints while capturing are silenced (:func:`quiet_torch`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from rfmap.core.graph import Graph
from rfmap.errors import RFMapError, RFMapWarning

_EXAMPLE = "expected 'package.module:factory' or 'path/to/file.py:factory' (for example 'torchvision:resnet50')"


def split_factory(spec: Any) -> tuple[str, str]:
    """``"pkg.mod:build"`` -> ``("pkg.mod", "build")``; the last ``:`` separates (a Windows
    path ``C:\\models.py:build`` keeps its drive)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise RFMapError(f"'{spec!s:.200}': {_EXAMPLE}")
    module_name, attr = (part.strip() for part in spec.rsplit(":", 1))
    if not module_name or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise RFMapError(f"'{spec:.200}': {_EXAMPLE}")
    return module_name, attr


def _is_path(module_name: str) -> bool:
    return module_name.endswith(".py") or "/" in module_name or os.sep in module_name


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while a user's module is imported and its factory runs."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _import_file(spec: str, path: str):
    if not os.path.isfile(path):
        raise RFMapError(f"'{spec:.200}': no such file '{path}'")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"_rfmap_factory_{abs(hash(os.path.abspath(path)))}_{stem}" if not stem.isidentifier() else stem
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise RFMapError(f"'{spec:.200}': cannot import '{path}' (not a Python file)")
    mod = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = mod  # dataclasses, pickling and the like look the module up here
    try:
        loader_spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _import(spec: str, module_name: str):
    """The module ``module_name`` names: a file path, or a dotted name (the current folder
    is searched too, as ``python -m`` does)."""
    if _is_path(module_name):
        path = os.path.abspath(module_name)
        with _on_path(os.path.dirname(path)):
            return _import_file(spec, path)
    with _on_path(os.getcwd()):
        return importlib.import_module(module_name)


def load_factory(spec: str) -> Any:
    """The module a ``"pkg.module:factory"`` or ``"file.py:factory"`` string names (the
    factory's return value); see the module docstring."""
    module_name, attr = split_factory(spec)
    if module_name == "torchvision":
        module_name = "torchvision.models"
    try:
        mod = _import(spec, module_name)
    except RFMapError:
        raise
    except ModuleNotFoundError as exc:
        missing = (exc.name or module_name).split(".")[0]
        if missing == "torchvision":
            raise RFMapError(f"'{spec}': torchvision is not installed (pip install torchvision)") from None
        if missing == "torch":
            raise RFMapError(f"'{spec}': PyTorch sources need torch: pip install 'rfmap[torch]'") from None
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
        with _on_path(os.getcwd()):
            model = factory()
    except TypeError as exc:
        raise RFMapError(f"'{spec}': '{attr}()' needs arguments ({exc}); give a zero-argument factory") from None
    except Exception as exc:  # noqa: BLE001
        raise RFMapError(f"'{spec}': '{attr}()' failed: {type(exc).__name__}: {exc}") from None
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - torch is needed to call a torch factory anyway
        raise RFMapError(f"'{spec}': PyTorch sources need torch: pip install 'rfmap[torch]'") from None
    if not isinstance(model, nn.Module):
        raise RFMapError(f"'{spec}': '{attr}()' returned a {type(model).__name__}, not a torch.nn.Module")
    return model


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Silence torch's own logging and what it prints on stderr while a model is captured
    (torch.export prints partial graphs and logs warnings before raising): rfmap reports
    the outcome in one line of its own."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
        # warnings are not torch's chatter: rfmap's own and the model's are issued again
        torch_dir = os.sep + "torch" + os.sep
        for w in caught:
            if issubclass(w.category, RFMapWarning) or torch_dir not in (w.filename or ""):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


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

    with quiet_torch():
        return from_module(model, input_size, strict=strict)
