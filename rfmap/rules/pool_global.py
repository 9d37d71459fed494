"""Adaptive and global pooling (``nn.AdaptiveAvgPool2d``, ``F.adaptive_max_pool2d``, ONNX
``GlobalAveragePool``) and the spec-file op ``global`` (flatten + linear, global pooling).

Layers: :class:`~rfmap.core.layers.AdaptivePool`, :class:`~rfmap.core.layers.GlobalOp`.
"""

from __future__ import annotations

from rfmap.core.layers import AdaptivePool, GlobalOp
from rfmap.core.registry import OpDef
from rfmap.rules.call import Call, first_tensor
from rfmap.rules.common import REALIZE, nd, onnx_rules, torch_rules


def adaptive(kind: str):
    def rule(call: Call):
        call.standard()
        out = first_tensor(call.out)
        dims = call.standard_dims(out.dim())
        outs = call.out_sizes(dims, out)
        call.out_dims = dims
        if all(o == 1 for o in outs):
            return GlobalOp(op=f"global_{kind}")
        return AdaptivePool(outs, op=f"adaptive_{kind}")

    return rule


def _adaptive_shape(x, nd: int, size) -> tuple[int, ...] | None:
    """PyTorch's adaptive pooling of a batched input ``x`` to ``size`` (an int or a sequence,
    ``None`` entries keeping the input's size): ``(N, C, *sizes)``, else ``None`` (run it).
    Computed: the meta kernel of adaptive average pooling costs up to milliseconds."""
    if x is None or not hasattr(x, "dim") or x.dim() != nd + 2:
        return None
    size = (size,) * nd if type(size) is int else size
    if not isinstance(size, (tuple, list)) or len(size) != nd:
        return None
    outs = tuple(int(n) if o is None else o for o, n in zip(size, x.shape[2:]))
    if any(type(o) is not int or o < 1 for o in outs):
        return None
    return tuple(int(v) for v in x.shape[:2]) + outs


def adaptive_module_shape(m, args, kwargs):
    """``nn.AdaptiveAvgPoolNd``/``nn.AdaptiveMaxPoolNd`` without indices."""
    if kwargs or len(args) != 1 or getattr(m, "return_indices", False):
        return None
    return _adaptive_shape(args[0], int(type(m).__name__[-2]), m.output_size)


def adaptive_function_shape(fn, args, kwargs):
    """``F.adaptive_avg_poolNd(x, output_size)`` (and max pooling without indices)."""
    if len(args) > 2 or set(kwargs) - {"output_size", "return_indices"} or kwargs.get("return_indices"):
        return None
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    return _adaptive_shape(args[0] if args else None, int(fn.__name__[-2]), size)


def onnx_global_pool(call: Call):
    call.standard()
    return GlobalOp(op=call.op_name)


OPS = [
    OpDef(
        "adaptive_pool", AdaptivePool, layer=AdaptivePool,
        torch=torch_rules(nd("nn.AdaptiveAvgPool"), adaptive("avgpool"), shape=adaptive_module_shape)
        + torch_rules(nd("F.adaptive_avg_pool") + ["torch.adaptive_avg_pool1d"], adaptive("avgpool"),
                      shape=adaptive_function_shape)
        + torch_rules([f"aten.adaptive_avg_pool{d}d" for d in (1, 2, 3)]
                      + ["aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d"], adaptive("avgpool"))
        + torch_rules(nd("nn.AdaptiveMaxPool"), adaptive("maxpool"), shape=adaptive_module_shape)
        + torch_rules(nd("F.adaptive_max_pool"), adaptive("maxpool"), shape=adaptive_function_shape)
        + torch_rules([f"F.adaptive_max_pool{d}d_with_indices" for d in (1, 2, 3)] + ["torch.adaptive_max_pool1d"]
                      + [f"aten.adaptive_max_pool{d}d" for d in (1, 2, 3)], adaptive("maxpool")),
        realize=f"{REALIZE}:adaptive_pool",
        description="adaptive pooling to output_size: cell o pools [floor(o n/m), ceil((o+1) n/m))",
    ),
    OpDef(
        "global", lambda op="global": GlobalOp(op=op), aliases=("global_pool", "flatten", "linear", "fc"), layer=GlobalOp,
        onnx=onnx_rules(["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"], onnx_global_pool),
        realize=f"{REALIZE}:global_",
        description="every output sees the whole input: global pooling, flatten + linear",
    ),
]
