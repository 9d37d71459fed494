"""Import timm where torchvision is missing (benchmarks only).

timm imports torchvision at import time for names its models do not use in inference
(``FrozenBatchNorm2d``, the data pipeline's transforms).  Where torchvision is absent, a
stand-in module answers those imports: ``FrozenBatchNorm2d`` is a batch norm, every other
name a placeholder that fails if a model really used it.  Nothing here is used by rfmap.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class _Placeholder:
    """Any torchvision name timm touches at import time; fails if called for real work."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return _Placeholder()

    def __call__(self, *args, **kwargs):
        return _Placeholder()

    def __mro_entries__(self, bases):  # timm subclasses some transforms at import time
        return (object,)


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        if module.__name__ == "torchvision.ops.misc":
            import torch.nn as nn

            class FrozenBatchNorm2d(nn.BatchNorm2d):
                """Batch norm with fixed statistics (inference: the same op)."""

            module.FrozenBatchNorm2d = FrozenBatchNorm2d


def import_timm():
    """timm, or ``None`` when it is not installed (``pip install --no-deps timm``)."""
    if importlib.util.find_spec("timm") is None:
        return None
    if importlib.util.find_spec("torchvision") is None:
        sys.meta_path.insert(0, _Finder())
    import timm

    return timm
