"""PyTorch targets of the op registry: resolving the registry's names to torch objects.

The registry (:mod:`rfmap.core.registry`) names PyTorch targets as strings so that it need
not import torch: ``"nn.Conv2d"``, ``"F.conv2d"``, ``"torch.cat"``, ``"torch.special.erf"``,
``"Tensor.view"`` (a method, looked up by name), ``"aten.conv2d"`` (an ATen op packet),
``"operator.add"``, ``"builtins.getattr"``, or any dotted path (``"torch.ao.quantization.QuantStub"``).
Objects work too.  Names that this torch lacks are skipped.  The resolved index is rebuilt
whenever the registry changes.

A module class is looked up along its MRO (a subclass uses the nearest registered base); an
ATen overload falls back to its packet, and ATen ops tagged pointwise need no entry.
"""

from __future__ import annotations

import builtins
import importlib
import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rfmap.core.registry import OpDef, TorchRule, registry
from rfmap.errors import RFMapError
from rfmap.rules.common import elementwise, kind_converter

_PREFIXES = {"nn": nn, "F": F, "torch": torch, "operator": operator, "builtins": builtins}

_index: dict[Any, TorchRule] = {}
_version = -1
_POINTWISE_ATEN = TorchRule("aten.pointwise", elementwise("add"))


def resolve(name: Any) -> Any:
    """The torch object (or method name) a registry target names; ``None`` if absent."""
    if not isinstance(name, str):
        return name
    head, _, rest = name.partition(".")
    if head == "Tensor":
        return rest
    if head == "aten":
        try:
            return getattr(torch.ops.aten, rest)
        except (AttributeError, RuntimeError):
            return None
    obj: Any = _PREFIXES.get(head)
    parts = rest.split(".")
    if obj is None:
        try:
            obj = importlib.import_module(head)
        except ImportError:
            return None
    for i, part in enumerate(parts):
        nxt = getattr(obj, part, None)
        if nxt is None:
            try:
                nxt = importlib.import_module(".".join([obj.__name__, *parts[: i + 1]]))
            except (ImportError, AttributeError):
                return None
        obj = nxt
    return obj


def key(target: Any) -> Any:
    """The index key of a target: classes and functions as they are, methods by name."""
    if isinstance(target, (str, type)):
        return target
    objclass = getattr(target, "__objclass__", None)
    if objclass is not None and isinstance(objclass, type) and issubclass(objclass, torch._C.TensorBase):
        return target.__name__  # torch.Tensor.view -> "view"
    if getattr(target, "__qualname__", "").startswith(("Tensor.", "TensorBase.")):
        return target.__name__
    return target


def _rebuild() -> None:
    global _version
    reg = registry()
    index: dict[Any, TorchRule] = {}
    for rule, _ in reg.torch_rules():
        obj = resolve(rule.target)
        if obj is None:
            continue
        try:
            index[key(obj)] = rule
        except TypeError:  # unhashable
            continue
    _index.clear()
    _index.update(index)
    _version = reg.version


def _table() -> dict[Any, TorchRule]:
    if _version != registry().version:
        _rebuild()
    return _index


def lookup(target: Any) -> TorchRule | None:
    """The rule for a module instance, a module class, a function, a method name or an ATen op."""
    table = _table()
    if isinstance(target, nn.Module):
        target = type(target)
    if isinstance(target, type):
        for cls in target.__mro__:
            rule = table.get(cls)
            if rule is not None:
                return rule
            if cls is nn.Module:
                break
        return None
    try:
        rule = table.get(key(target))
    except TypeError:  # unhashable target
        return None
    if rule is None and isinstance(target, torch._ops.OpOverload):
        rule = table.get(target.overloadpacket)
        if rule is None and torch.Tag.pointwise in target.tags:
            rule = _POINTWISE_ATEN
    return rule


def is_user_leaf(module: nn.Module) -> bool:
    """A module class the user registered: traced as one call, not traced into."""
    rule = _table().get(type(module))
    return rule is not None and rule.user


def target_name(target: Any) -> str:
    """Readable name of a torch target (``Conv2d``, ``conv2d``, ``view``, ``aten.conv2d``)."""
    if isinstance(target, nn.Module):
        return type(target).__name__
    if isinstance(target, type):
        return target.__name__
    if isinstance(target, str):
        return target
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target).split(".")[1] if str(target).startswith("aten.") else str(target)
    return getattr(target, "__name__", None) or repr(target)


def _torch_op_name(target: Any) -> str:
    return f"torch:{target_name(target)}:{id(target) if not isinstance(target, str) else target}"


def register_torch_op(target: Any, converter: Any = None, *, same_shape: bool = False, replace: bool = True):
    """Teach the PyTorch front end one target (also a decorator: ``@register_torch_op(MyBlock)``).

    ``target``: a module class, a function, a tensor method (``"view"`` or
    ``torch.Tensor.view``) or an ATen op.  ``converter``: ``converter(call)`` (see
    :mod:`rfmap.rules.call`), a Layer, or one of ``"pointwise"``, ``"global"``, ``"add"``,
    ``"mul"``, ``"concat"``, ``"same"``.  A registered module class is traced as one call.
    :func:`rfmap.register_op` does the same for every front end and spec files at once.
    """
    from rfmap.core.layers import Layer

    if converter is None:

        def decorator(fn):
            register_torch_op(target, fn, same_shape=same_shape, replace=replace)
            return fn

        return decorator
    if isinstance(converter, Layer):
        fixed = converter
        convert = lambda call: fixed  # noqa: E731
    elif isinstance(converter, str):
        if converter.lower() not in ("pointwise", "global", "add", "mul", "concat", "same"):
            raise RFMapError(f"rule for {target_name(target)}: {converter!r} is not one of pointwise, global, add, mul, "
                             "concat, same")
        convert = kind_converter(converter.lower())
    elif callable(converter):
        convert = converter
    else:
        raise RFMapError(f"rule for {target_name(target)}: a converter must be callable, a Layer or a string")
    name = _torch_op_name(target)
    reg = registry()
    if not replace and (name in reg.defs or lookup(target) is not None):
        raise RFMapError(f"a rule for {target_name(target)} is already registered (pass replace=True)")
    method = target if isinstance(target, str) else key(target)
    reg.add(OpDef(name, torch=(TorchRule(f"Tensor.{method}" if isinstance(method, str) else target, convert,
                                         same_shape=same_shape, user=True),), user=True), replace=True)
    return converter


def unregister_torch_op(target: Any) -> None:
    """Remove a rule added by :func:`register_torch_op` (built-in rules are removed by
    :func:`rfmap.unregister_op` with their op's name)."""
    registry().remove(_torch_op_name(target))
