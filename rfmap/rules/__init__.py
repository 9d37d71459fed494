"""The built-in op rules, one module per family of ops.

Each module declares its ops as :class:`~rfmap.core.registry.OpDef` entries in a list
``OPS``: the spec-file name, the core layer, the PyTorch targets and ONNX op types with
their converters, the PyTorch realization and the closed-form ERF contribution.  The
registry (:mod:`rfmap.core.registry`) loads them on first use.  To add an op, add an entry
to the family it belongs to (or call :func:`rfmap.register_op`).

Numpy only: PyTorch targets are named by strings that the PyTorch front end resolves.
"""

from __future__ import annotations

from rfmap.core.registry import OpDef


def builtin_ops() -> list[OpDef]:
    from rfmap.rules import contract, layout, merge, norm, pointwise, pool_global, resample, slicing, window

    ops: list[OpDef] = []
    for family in (pointwise, window, resample, slicing, pool_global, layout, merge, norm, contract):
        ops.extend(family.OPS)
    return ops
