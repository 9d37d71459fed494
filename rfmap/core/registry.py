"""The one registry of op rules: everything rfmap knows about an op, declared once.

An :class:`OpDef` says, for one op:

* ``name`` and ``aliases``: how spec files and layer lists write it (``op: conv``), and
  ``build``: the constructor of its core :class:`~rfmap.core.layers.Layer` from those keys;
* ``torch``: the PyTorch targets that translate into it (module classes, functions, tensor
  methods, ATen ops), each with a converter;
* ``onnx``: the ONNX op types that translate into it, each with a converter;
* ``realize``: how a PyTorch twin realizes its layer (for gradient probes and the ERF);
* ``erf``: its closed-form contribution to the ERF's moments, where one exists.

Converters have one signature for both front ends: ``convert(call)`` gets a
:class:`rfmap.rules.call.Call` (the op's arguments, attributes, input and output shapes and
where their spatial axes are) and returns a Layer, :data:`~rfmap.rules.call.SAME`, a
:class:`~rfmap.rules.call.Bind` or a list of them.  The built-in ops are declared in
:mod:`rfmap.rules` (one module per family), loaded on first use; :func:`register_op` adds
one and reaches every front end.  PyTorch targets may be written as strings (``"nn.Conv2d"``,
``"F.conv2d"``, ``"torch.cat"``, ``"Tensor.view"``, ``"aten.conv2d"``, ``"operator.add"``) so
that this module imports numpy only; the PyTorch front end resolves them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rfmap.core.layers import GlobalOp, Layer, Merge, Pointwise
from rfmap.errors import RFMapError

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class TorchRule:
    """A PyTorch target and its converter.  ``same_shape``: the output has the first
    argument's shape; ``broadcast``: the broadcast shape of the tensor arguments;
    ``shape(module, args, kwargs)``: the output shape computed from the arguments' shapes,
    or ``None`` to run the op (each way the front end need not run the op to know it)."""

    target: Any
    convert: Converter
    same_shape: bool = False
    broadcast: bool = False
    user: bool = False
    shape: Callable[..., Any] | None = None


@dataclass(frozen=True)
class OnnxRule:
    """An ONNX op type and its converter."""

    op_type: str
    convert: Converter


@dataclass(frozen=True)
class OpDef:
    """One op, with everything that needs to know it (see the module docstring)."""

    name: str
    build: Callable[..., Layer] | None = None
    aliases: tuple[str, ...] = ()
    layer: type | None = None
    torch: tuple[TorchRule, ...] = ()
    onnx: tuple[OnnxRule, ...] = ()
    realize: Any = None
    erf: Callable[..., Any] | None = None
    description: str = ""
    user: bool = field(default=False, compare=False)


class Registry:
    """Op definitions and their indexes by spec name, PyTorch target and ONNX op type."""

    def __init__(self) -> None:
        self.defs: dict[str, OpDef] = {}
        self._spec: dict[str, str] = {}
        self._onnx: dict[str, tuple[OnnxRule, str]] = {}
        self._torch: list[tuple[TorchRule, str]] = []
        #: bumped on every change, so front ends know when to rebuild their resolved indexes
        self.version = 0

    def add(self, op: OpDef, *, replace: bool = False) -> None:
        key = op.name.lower()
        if not replace:
            if key in self.defs:
                raise RFMapError(f"op {op.name!r} is already registered (pass replace=True to override)")
            if op.build is not None:
                for n in [key, *(a.lower() for a in op.aliases)]:
                    if n in self._spec:
                        raise RFMapError(f"op name {n!r} is already registered (pass replace=True to override)")
            for rule in op.onnx:
                if rule.op_type in self._onnx:
                    raise RFMapError(f"ONNX op type {rule.op_type!r} already has a rule (pass replace=True)")
        self.defs.pop(key, None)
        self.defs[key] = op
        self._reindex()

    def remove(self, name: str) -> None:
        """Forget an op (a user's, or a built-in one)."""
        self.defs.pop(name.lower(), None)
        self._reindex()

    def _reindex(self) -> None:
        # a name wins over an alias of the same spelling; otherwise the later op wins
        spec: dict[str, tuple[int, str]] = {}
        self._onnx, self._torch = {}, []
        for key, op in self.defs.items():
            if op.build is not None:
                for n in (a.lower() for a in op.aliases):
                    if spec.get(n, (0, ""))[0] <= 1:
                        spec[n] = (1, key)
                spec[key] = (2, key)
            for rule in op.onnx:
                self._onnx[rule.op_type] = (rule, key)
            self._torch.extend((rule, key) for rule in op.torch)
        self._spec = {n: k for n, (_, k) in spec.items()}
        self.version += 1

    # lookups ----------------------------------------------------------------------------

    def spec(self, name: str) -> OpDef | None:
        key = self._spec.get(str(name).lower())
        return None if key is None else self.defs[key]

    def spec_names(self) -> list[str]:
        return sorted(k for k, v in self._spec.items() if k == v)

    def onnx(self, op_type: str) -> OnnxRule | None:
        hit = self._onnx.get(op_type)
        return None if hit is None else hit[0]

    def torch_rules(self) -> list[tuple[TorchRule, str]]:
        """Every PyTorch rule with its op's name, in registration order (later wins)."""
        return list(self._torch)

    def for_layer(self, layer: Layer) -> OpDef | None:
        """The op that realizes ``layer`` in a twin: by its op name, else by its type."""
        op = self.defs.get(layer.op)
        if op is not None and op.layer is not None and isinstance(layer, op.layer):
            return op
        for op in self.defs.values():
            if op.layer is type(layer):
                return op
        for op in self.defs.values():
            if op.layer is not None and isinstance(layer, op.layer):
                return op
        return None


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The registry, with the built-in ops of :mod:`rfmap.rules` loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        reg = Registry()
        from rfmap.rules import builtin_ops

        for op in builtin_ops():
            reg.add(op)
        _REGISTRY = reg
    return _REGISTRY


def unregister_op(name: str) -> None:
    """Remove an op added with :func:`register_op` (or a built-in one)."""
    registry().remove(name)


def make_layer(op: str, **params: Any) -> Layer:
    """A layer from an op name and its parameters, e.g. ``make_layer("conv", kernel=3, padding=1)``."""
    if not isinstance(op, str):
        raise RFMapError(f"op must be a name, got {op!r:.60}")
    opdef = registry().spec(op)
    build = None if opdef is None else opdef.build  # spec names index ops with a build only
    if build is None:
        raise RFMapError(f"unknown op {op!r:.60}; known ops: {', '.join(registry().spec_names())}")
    check_params(build, params, op)
    try:
        layer = build(**params)
    except TypeError as exc:
        raise RFMapError(f"op {op!r}: {exc}") from None
    if not isinstance(layer, Layer):
        raise RFMapError(f"op {op!r}: its factory returned a {type(layer).__name__}, not an rfmap Layer")
    return layer


def check_params(factory: Callable[..., Any], params: dict[str, Any], op: str) -> None:
    """Unknown keys and missing required keys are errors naming them (before the call)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return
    allowed = {n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise RFMapError(f"op {op!r}: unknown parameter(s) {', '.join(map(str, unknown))} (it takes {', '.join(sorted(allowed)) or 'none'})")
    missing = [
        n for n, p in sig.parameters.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in params
    ]
    if missing:
        raise RFMapError(f"op {op!r}: missing parameter(s) {', '.join(missing)}")


KINDS = ("pointwise", "global", "add", "mul", "concat", "same")


def register_op(
    name: str,
    layer: Any = None,
    *,
    aliases: Sequence[str] = (),
    torch: Iterable[Any] = (),
    onnx: Iterable[str] = (),
    convert: Converter | None = None,
    realize: Any = None,
    same_shape: bool = False,
    replace: bool = False,
) -> OpDef:
    """Teach rfmap an op, for every front end at once.

    ``layer``: what the op is -- a factory ``layer(**params)`` returning a
    :class:`~rfmap.core.layers.Layer` (``lambda stride=2: conv(3, stride, 1)``), a Layer
    (always that one), or one of ``"pointwise"``, ``"global"``, ``"add"``, ``"mul"``,
    ``"concat"``, ``"same"``.  ``torch``: PyTorch targets that are this op (module classes,
    which are then traced as one call, functions, method names, ATen ops); ``onnx``: ONNX
    op types.  ``convert(call)``: an optional converter for those targets (see
    :mod:`rfmap.rules.call`); without one, a factory is called with its keyword parameters
    read by name from the call -- spec-file keys, the module's attributes, the function's
    keyword arguments, the ONNX node's attributes: one keyword semantics everywhere.
    ``realize``: how a PyTorch twin realizes the layer (``realize(layer, ndim, c_ins,
    channels, **options) -> (module, c_out)``); a factory returning a built-in layer type
    needs none.  ``same_shape``: the PyTorch op keeps its input's shape (it need not be run
    to know its output).  Returns the :class:`OpDef`.

    Example: a blur pool known to spec files, to ``nn.Module`` analysis and to ONNX files::

        rfmap.register_op("blurpool", lambda stride=2: rfmap.core.layers.conv(3, stride, 1),
                          torch=[BlurPool], onnx=["BlurPool"])
    """
    from rfmap.rules.call import SAME
    from rfmap.rules.common import default_converter

    if not isinstance(name, str) or not name.strip():
        raise RFMapError(f"an op name must be a non-empty string, got {name!r:.60}")
    build: Callable[..., Layer] | None
    if isinstance(layer, str):
        kind = layer.lower()
        if kind not in KINDS:
            raise RFMapError(f"op {name!r}: {layer!r} is not a layer factory nor one of {', '.join(KINDS)}")
        build = None if kind == "same" else _kind_factory(kind, name)
        if convert is None:
            convert = (lambda call: SAME) if kind == "same" else default_converter(build, kind)
    elif isinstance(layer, Layer):
        fixed = layer
        build = lambda: fixed  # noqa: E731
        convert = convert or (lambda call: fixed)
    elif layer is None:
        if convert is None:
            raise RFMapError(f"op {name!r}: give a layer factory or a converter")
        build = None
    elif callable(layer):
        build = layer
        convert = convert or default_converter(build, None)
    else:
        raise RFMapError(f"op {name!r}: layer must be a factory, a Layer or a kind string, got {type(layer).__name__}")
    if convert is not None and not callable(convert):
        raise RFMapError(f"op {name!r}: convert must be callable")
    opdef = OpDef(
        name=name,
        build=build,
        aliases=tuple(aliases),
        torch=tuple(TorchRule(t, convert, same_shape=same_shape, user=True) for t in torch),
        onnx=tuple(OnnxRule(str(t), convert) for t in onnx),
        realize=realize,
        user=True,
    )
    registry().add(opdef, replace=replace)
    return opdef


def _kind_factory(kind: str, name: str) -> Callable[[], Layer]:
    if kind == "pointwise":
        return lambda: Pointwise(op=name)
    if kind == "global":
        return lambda: GlobalOp(op=name)
    return lambda: Merge(kind)
