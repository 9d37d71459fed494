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


def onnx_global_pool(call: Call):
    call.standard()
    return GlobalOp(op=call.op_name)


OPS = [
    OpDef(
        "adaptive_pool", AdaptivePool, layer=AdaptivePool,
        torch=torch_rules(nd("nn.AdaptiveAvgPool") + nd("F.adaptive_avg_pool") + ["torch.adaptive_avg_pool1d"]
                          + [f"aten.adaptive_avg_pool{d}d" for d in (1, 2, 3)]
                          + ["aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d"], adaptive("avgpool"))
        + torch_rules(nd("nn.AdaptiveMaxPool") + nd("F.adaptive_max_pool")
                      + [f"F.adaptive_max_pool{d}d_with_indices" for d in (1, 2, 3)] + ["torch.adaptive_max_pool1d"]
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
