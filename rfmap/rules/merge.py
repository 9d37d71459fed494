"""Where paths meet: elementwise ops of several maps (``add``, ``mul`` and their kin, ONNX
``Add``, ``Mul``, ``Where``, ...) and concatenation along channels (``cat``, ``stack``,
ONNX ``Concat``).  One map alone is pointwise; a 1-cell map is broadcast (``Expand``).

Layer: :class:`~rfmap.core.layers.Merge`.
"""

from __future__ import annotations

import numpy as np

from rfmap.core.layers import Expand, Merge, Pointwise
from rfmap.core.registry import OpDef, TorchRule
from rfmap.rules.call import Bind, Call, LayoutError, distinct
from rfmap.rules.common import REALIZE, elementwise, onnx_rules, torch_rules
from rfmap.rules.onnx_attrs import attr_axis

ADD_LIKE = ("add", "sub", "subtract", "rsub", "maximum", "minimum", "fmax", "fmin", "where", "lerp", "addcmul", "addcdiv",
            "clamp", "clip", "masked_fill", "masked_scatter", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
            "logical_or", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "hypot", "atan2", "copysign",
            "heaviside", "nextafter", "remainder", "fmod", "floor_divide", "xlogy", "ldexp", "isclose")
MUL_LIKE = ("mul", "multiply", "div", "divide", "true_divide", "pow", "float_power")
#: ops whose output has the broadcast shape of their float tensor arguments (need not be run)
BROADCAST_SAFE = ("add", "sub", "subtract", "rsub", "maximum", "minimum", "fmax", "fmin", "mul", "multiply", "div",
                  "divide", "true_divide")

ONNX_ADD = ("Add", "Sub", "Sum", "Max", "Min", "Mean", "Where", "And", "Or", "Xor", "Equal", "Greater", "GreaterOrEqual",
            "Less", "LessOrEqual", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
ONNX_MUL = ("Mul", "Div", "Pow")


def _spellings(name: str) -> list[str]:
    """A function's targets: ``torch.add``, the methods ``add``/``add_`` and the dunders."""
    return [f"torch.{name}", f"Tensor.{name}", f"Tensor.{name}_", f"Tensor.__{name}__", f"Tensor.__r{name}__",
            f"Tensor.__i{name}__"]


def _torch_elementwise(names, op: str):
    rules: tuple[TorchRule, ...] = ()
    for name in names:
        rules += torch_rules(_spellings(name), elementwise(op), broadcast=name in BROADCAST_SAFE)
    return rules


def cat_rule(stack: bool):
    def rule(call: Call):
        if call.kind == "onnx":
            first = call.args[0]  # a tensor, or a folded constant (a numpy array)
            nd = first.dim() if callable(getattr(first, "dim", None)) else np.ndim(first)
            dim = attr_axis(call, "axis", None, nd)
        else:
            tensors = call.arg(0, "tensors")
            dim = int(call.arg(1, "dim", 0))
            nd = tensors[0].dim() + (1 if stack else 0)
        dim = dim + nd if dim < 0 else dim
        call.same_order()
        dims: tuple[int | None, ...] | None = None
        for _v, b in call.inputs:
            if any(d == dim for d in b.dims) and not stack:
                raise LayoutError("it concatenates along a spatial dim")
            bd = b.dims if not stack else tuple(None if d is None else (d + 1 if d >= dim else d) for d in b.dims)
            if dims is None:
                dims = bd
            elif bd != dims:
                for x, y in zip(dims, bd):
                    if x is not None and y is not None and x != y:
                        raise LayoutError("its inputs hold the spatial axes at different dims")
                dims = tuple(x if x is not None else y for x, y in zip(dims, bd))
        assert dims is not None  # a rule runs only for calls with a spatial argument
        call.out_dims = dims
        binds = distinct(call)
        if len(binds) == 1:
            return Pointwise(op="stack" if stack else "cat")
        want = call.out_sizes(dims)
        fitted: list[Bind] = []
        for _v, b in binds:
            fitted.append(b if call.sizes(b) == want else call.emit(f".expand{len(fitted)}", Expand(want), b))
        return call.emit("", Merge("concat"), *fitted, dims=dims)

    return rule


OPS = [
    OpDef(
        "add", lambda: Merge("add"), aliases=("sum",), layer=Merge,
        torch=_torch_elementwise(ADD_LIKE, "add")
        + torch_rules(["operator.add", "operator.iadd", "operator.sub", "operator.isub"], elementwise("add"), broadcast=True)
        + torch_rules([f"operator.{n}" for n in ("mod", "floordiv", "and_", "or_", "xor", "iand", "ior", "ixor", "eq", "ne",
                                                 "lt", "le", "gt", "ge", "imod", "ifloordiv")], elementwise("add")),
        onnx=onnx_rules(ONNX_ADD, elementwise("add")),
        realize=f"{REALIZE}:merge",
        description="elementwise sum of paths (a residual connection); also max, min, where and comparisons",
    ),
    OpDef(
        "mul", lambda: Merge("mul"), layer=Merge,
        torch=_torch_elementwise(MUL_LIKE, "mul")
        + torch_rules(["operator.mul", "operator.imul", "operator.truediv", "operator.itruediv"], elementwise("mul"),
                      broadcast=True)
        + torch_rules(["operator.pow", "operator.ipow", "Tensor.__rpow__"], elementwise("mul"))
        + torch_rules(["Tensor.__rmul__", "Tensor.__rtruediv__", "Tensor.__rdiv__",
                       "Tensor.__truediv__", "Tensor.__itruediv__", "Tensor.__div__"], elementwise("mul"), broadcast=True),
        onnx=onnx_rules(ONNX_MUL, elementwise("mul")),
        realize=f"{REALIZE}:merge",
        description="elementwise product of paths (gates, attention weights)",
    ),
    OpDef(
        "concat", lambda: Merge("concat"), aliases=("cat",), layer=Merge,
        torch=torch_rules(["torch.cat", "torch.concat", "torch.concatenate", "aten.cat", "aten.concat", "aten.concatenate"],
                          cat_rule(stack=False))
        + torch_rules(["torch.stack", "aten.stack"], cat_rule(stack=True)),
        onnx=onnx_rules(["Concat"], cat_rule(stack=False)),
        realize=f"{REALIZE}:merge",
        description="concatenation of paths along channels",
    ),
]
