"""Small PyTorch models, one list per op of the registry that both front ends map: the
examples of tests/test_frontends_agree_registry.py.

Each example is an :class:`Example`: a model factory taking a ``1 x 3 x H x W`` image, the
input size (non-square), and the ONNX opsets its export is compared at.  A model is
written with plain ``torch.nn`` / ``torch.nn.functional`` calls (no rfmap code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZE = (30, 44)


@dataclass(frozen=True)
class Example:
    """``onnx``: a hand-written ONNX model computing what the module computes (checked with
    onnxruntime), for ops the exporters write as other ops or cannot export; ``why`` says which."""

    name: str
    build: Callable[[], nn.Module]
    size: tuple[int, int] = SIZE
    opsets: tuple[int, ...] = (17, 11)
    onnx: Callable | None = None
    why: str = ""


class Fn(nn.Module):
    """``fn(self, x)`` as a module, with the given submodules and parameters."""

    def __init__(self, fn, **modules):
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            setattr(self, name, m)

    def forward(self, x):
        return self.fn(self, x)


def conv(c_in=3, c_out=4, k=3, **kw):
    return nn.Conv2d(c_in, c_out, k, padding=kw.pop("padding", k // 2), **kw)


def seq(*mods):
    return lambda: nn.Sequential(*mods)


def fn(f, **mods):
    return lambda: Fn(f, **{k: v() if callable(v) and not isinstance(v, nn.Module) else v for k, v in mods.items()})


def then(y, f):
    """``f(y)``: a value computed once and used twice (exporters merge repeated calls)."""
    return f(y)


# -- hand-written ONNX twins ----------------------------------------------------------------


def _onnx_model(nodes, inits, size, out_shape, opset):
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        nodes, "twin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v.detach().numpy() if hasattr(v, "detach") else v, k) for k, v in inits.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_node(conv_module, x, y):
    from onnx import helper

    k = list(conv_module.kernel_size)
    p = list(conv_module.padding) * 2
    node = helper.make_node("Conv", [x, "w", "b"], [y], kernel_shape=k, pads=p)
    return node, {"w": conv_module.weight, "b": conv_module.bias}


def unpool_twin(model, size, opset):
    """Conv -> MaxPool (with indices) -> MaxUnpool."""
    from onnx import helper

    conv_node, inits = _conv_node(model.c, "x", "c")
    nodes = [conv_node,
             helper.make_node("MaxPool", ["c"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    return _onnx_model(nodes, inits, size, [1, 4, *size], opset)


def space_to_depth_twin(model, size, opset):
    """Conv -> SpaceToDepth -> Gather of the channels into PyTorch's order (c * 4 + phase)."""
    import numpy as np
    from onnx import helper

    conv_node, inits = _conv_node(model[0], "x", "c")
    order = np.array([k * 4 + c for c in range(4) for k in range(4)], dtype=np.int64)  # torch channel c*4+k <- k*C+c
    inits["order"] = order
    nodes = [conv_node, helper.make_node("SpaceToDepth", ["c"], ["s"], blocksize=2),
             helper.make_node("Gather", ["s", "order"], ["y"], axis=1)]
    return _onnx_model(nodes, inits, size, [1, 16, size[0] // 2, size[1] // 2], opset)


def lp_pool_twin(model, size, opset):
    """Conv -> LpPool (p = 2, kernel 3, stride 2)."""
    from onnx import helper

    conv_node, inits = _conv_node(model[0], "x", "c")
    nodes = [conv_node, helper.make_node("LpPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], p=2)]
    return _onnx_model(nodes, inits, size, [1, 4, (size[0] - 3) // 2 + 1, (size[1] - 3) // 2 + 1], opset)


def _nhwc(x):
    return x.permute(0, 2, 3, 1)


def _nchw(x):
    return x.permute(0, 3, 1, 2)


EXAMPLES: dict[str, list[Example]] = {
    "pointwise": [
        Example("activations", seq(conv(), nn.BatchNorm2d(4), nn.ReLU(), nn.Hardswish(), nn.Sigmoid(), nn.LeakyReLU(0.1),
                                   nn.Dropout(0.2), nn.ELU(), nn.Tanh(), nn.PReLU())),
        Example("gelu-silu", seq(conv(), nn.GELU(), nn.SiLU(), nn.Softplus())),
        Example("clip-hardsigmoid", seq(conv(), nn.ReLU6(), nn.Hardsigmoid(), nn.Softsign())),
    ],
    "conv": [
        Example("stride-dilation", seq(nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
                                       nn.Conv2d(4, 4, 7, stride=3, padding=0))),
        Example("same-even-kernel", seq(nn.Conv2d(3, 4, 4, padding="same"), nn.Conv2d(4, 4, (2, 5), padding="same",
                                                                                     dilation=(3, 1)))),
        Example("reflect-circular", seq(nn.Conv2d(3, 4, 3, padding=2, padding_mode="reflect"),
                                        nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"))),
        Example("functional-groups", fn(lambda s, x: F.conv2d(s.c(x), s.w, stride=(1, 2), padding=(2, 0), groups=2),
                                        c=lambda: conv(3, 4), w=lambda: nn.Parameter(torch.randn(6, 2, 5, 3)))),
    ],
    "maxpool": [
        Example("ceil-mode", seq(conv(), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(2, ceil_mode=True)),
                size=(31, 45)),
        Example("dilation-rect", seq(conv(), nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)))),
        Example("functional", fn(lambda s, x: F.max_pool2d(s.c(x), 5, 3, 2, ceil_mode=True), c=lambda: conv()),
                size=(29, 47)),
    ],
    "avgpool": [
        Example("ceil-exclude-pad", seq(conv(), nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
                size=(31, 45)),
        Example("rect", seq(conv(), nn.AvgPool2d((2, 3), stride=(2, 1)))),
    ],
    "lppool": [
        Example("lp2", seq(conv(), nn.LPPool2d(2, 3, stride=2))),
        Example("lp2-lppool-node", seq(conv(), nn.LPPool2d(2, 3, stride=2)), onnx=lp_pool_twin,
                why="the TorchScript exporter writes LPPool2d as Pow -> AveragePool -> Mul -> Pow"),
    ],
    "conv_transpose": [
        Example("stride2", seq(conv(), nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1))),
        Example("output-padding-dilation", seq(conv(), nn.ConvTranspose2d(4, 4, 3, stride=(2, 3), padding=(1, 0),
                                                                           output_padding=(1, 2), dilation=1))),
    ],
    "max_unpool": [
        Example("pool-unpool", fn(lambda s, x: then(s.pool(s.c(x)), lambda p: s.unpool(p[0], p[1])), c=lambda: conv(),
                                  pool=lambda: nn.MaxPool2d(2, return_indices=True), unpool=lambda: nn.MaxUnpool2d(2)),
                onnx=unpool_twin, why="torch.onnx.export fails on max_unpool2d in this PyTorch (a tensor condition in "
                "F._check_unpool_output_size); the dynamo exporter writes it as ScatterND"),
    ],
    "upsample": [
        Example("nearest2", seq(conv(), nn.Upsample(scale_factor=2))),
        Example("nearest-fractional", seq(conv(), nn.Upsample(scale_factor=1.5))),
        Example("bilinear", seq(conv(), nn.Upsample(scale_factor=2, mode="bilinear"))),
        Example("bilinear-align", seq(conv(), nn.Upsample(scale_factor=3, mode="bilinear", align_corners=True))),
        Example("bicubic", seq(conv(), nn.Upsample(scale_factor=2, mode="bicubic"))),
        Example("size", fn(lambda s, x: F.interpolate(s.c(x), size=(45, 50), mode="bilinear"), c=lambda: conv())),
        Example("down", fn(lambda s, x: F.interpolate(s.c(x), scale_factor=0.5, mode="nearest"), c=lambda: conv())),
        Example("bilinear-1.7", fn(lambda s, x: F.interpolate(s.c(x), scale_factor=1.7, mode="bilinear"), c=lambda: conv())),
    ],
    "pixel_shuffle": [
        Example("shuffle2", seq(conv(3, 16), nn.PixelShuffle(2))),
    ],
    "pixel_unshuffle": [
        Example("unshuffle2", seq(conv(), nn.PixelUnshuffle(2))),
        Example("space-to-depth", seq(conv(), nn.PixelUnshuffle(2)), onnx=space_to_depth_twin,
                why="the exporters write pixel_unshuffle as Reshape/Transpose/Reshape (PyTorch's channel order is not "
                "SpaceToDepth's)"),
    ],
    "pad": [
        Example("constant", fn(lambda s, x: F.pad(s.c(x), (1, 2, 3, 0)), c=lambda: conv())),
        Example("reflect-replicate", fn(lambda s, x: F.pad(F.pad(s.c(x), (2, 1, 0, 3), mode="reflect"), (1, 1, 2, 0),
                                                           mode="replicate"), c=lambda: conv())),
        Example("zero-pad-crop", seq(conv(), nn.ZeroPad2d((2, -1, -3, 1)))),
    ],
    "crop": [
        Example("slices", fn(lambda s, x: s.c(x)[:, :, 2:-3, 1::2], c=lambda: conv())),
        Example("narrow-index", fn(lambda s, x: s.c(x).narrow(3, 5, 20)[:, :, 7:], c=lambda: conv())),
        Example("select-row", fn(lambda s, x: s.c(x)[:, :, 7], c=lambda: conv())),
    ],
    "split": [
        Example("chunks-add", fn(lambda s, x: sum(torch.chunk(s.c(x), 2, dim=2)), c=lambda: conv())),
        Example("channel-split", fn(lambda s, x: torch.split(s.c(x), [1, 3], dim=1)[1], c=lambda: conv())),
        Example("split-w", fn(lambda s, x: torch.split(s.c(x), [10, 34], dim=3)[1], c=lambda: conv())),
    ],
    "reshape": [
        Example("flatten-view", fn(lambda s, x: s.c2(s.c(x).flatten(2).view(1, 4, 30, 44)), c=lambda: conv(),
                                   c2=lambda: conv(4, 4))),
        Example("unsqueeze-squeeze", fn(lambda s, x: s.c(x).unsqueeze(1).squeeze(1), c=lambda: conv())),
    ],
    "permute": [
        Example("nhwc-round-trip", fn(lambda s, x: _nchw(s.lin(_nhwc(s.c(x)))), c=lambda: conv(), lin=lambda: nn.Linear(4, 4))),
        Example("transpose", fn(lambda s, x: s.c2(s.c(x).transpose(1, 3).transpose(1, 3)), c=lambda: conv(),
                                c2=lambda: conv(4, 4, 3, stride=2))),
        Example("swap-h-w", fn(lambda s, x: s.c2(s.c(x).transpose(2, 3)), c=lambda: conv(),
                               c2=lambda: nn.Conv2d(4, 4, (3, 5), stride=(1, 2)))),
        Example("swap-h-w-output", fn(lambda s, x: s.c(x).permute(0, 1, 3, 2), c=lambda: conv())),
    ],
    "expand": [
        Example("mean-expand", fn(lambda s, x: then(s.c(x), lambda y: y + y.mean(dim=2, keepdim=True).expand(1, 4, 30, 44)),
                                  c=lambda: conv())),
    ],
    "tile": [
        Example("repeat", fn(lambda s, x: s.c2(s.c(x).repeat(1, 1, 2, 1)), c=lambda: conv(), c2=lambda: conv(4, 4, 3, stride=2))),
        Example("repeat-both", fn(lambda s, x: s.c(x).repeat(1, 2, 3, 2), c=lambda: conv())),
    ],
    "constant_like": [
        Example("randn-like", fn(lambda s, x: then(s.c(x), lambda y: y + torch.randn_like(y)), c=lambda: conv())),
    ],
    "add": [
        Example("residual-broadcast", fn(lambda s, x: then(s.b(x), lambda y: s.a(x) + y.mean(dim=(2, 3), keepdim=True) - y.amax(dim=3, keepdim=True)),
                                         a=lambda: conv(), b=lambda: conv(3, 4, 5, stride=1))),
        Example("maximum", fn(lambda s, x: torch.maximum(s.a(x), s.b(x)), a=lambda: conv(), b=lambda: conv(3, 4, 1))),
    ],
    "mul": [
        Example("squeeze-excite", fn(lambda s, x: then(s.c(x), lambda y: y * torch.sigmoid(s.fc(F.adaptive_avg_pool2d(y, 1)))),
                                     c=lambda: conv(), fc=lambda: nn.Conv2d(4, 4, 1))),
        Example("div-broadcast-row", fn(lambda s, x: then(s.c(x), lambda y: y / (1 + y.sum(dim=3, keepdim=True).abs())), c=lambda: conv())),
    ],
    "concat": [
        Example("branches", fn(lambda s, x: torch.cat([s.a(x), s.b(x), x], dim=1), a=lambda: conv(), b=lambda: conv(3, 2, 5))),
        Example("broadcast-concat", fn(lambda s, x: then(s.a(x), lambda y: torch.cat([y, y.mean(dim=2, keepdim=True).expand(-1, -1, 30, -1)], 1)),
                                       a=lambda: conv())),
    ],
    "reduce": [
        Example("over-channels", fn(lambda s, x: s.c(x).mean(dim=1, keepdim=True), c=lambda: conv())),
        Example("over-h", fn(lambda s, x: s.c(x).amax(dim=2, keepdim=True), c=lambda: conv())),
        Example("over-hw", fn(lambda s, x: s.c(x).sum(dim=(2, 3), keepdim=True), c=lambda: conv())),
        Example("argmax-w", fn(lambda s, x: s.c(x).argmax(dim=3, keepdim=True).float(), c=lambda: conv())),
    ],
    "softmax": [
        Example("over-w", seq(conv(), nn.Softmax(dim=-1))),
        Example("over-channels", seq(conv(), nn.Softmax(dim=1))),
        Example("log-over-h", fn(lambda s, x: F.log_softmax(s.c(x), dim=2), c=lambda: conv())),
        Example("over-positions", fn(lambda s, x: F.softmax(s.c(x).flatten(2), -1).view(1, 4, 30, 44), c=lambda: conv())),
    ],
    "norm": [
        Example("instance", seq(conv(), nn.InstanceNorm2d(4, affine=True))),
        Example("group", seq(conv(), nn.GroupNorm(2, 4))),
        Example("layer-channels-last", fn(lambda s, x: _nchw(s.ln(_nhwc(s.c(x)))), c=lambda: conv(), ln=lambda: nn.LayerNorm(4))),
        Example("layer-hw", seq(conv(), nn.LayerNorm([30, 44]))),
        Example("layer-chw", seq(conv(), nn.LayerNorm([4, 30, 44]))),
        Example("instance-plain", seq(conv(3, 4, 5, stride=2), nn.InstanceNorm2d(4))),
    ],
    "matmul": [
        Example("channel-mix", fn(lambda s, x: torch.matmul(s.w, s.c(x).flatten(2)).view(1, 5, 30, 44),
                                  c=lambda: conv(), w=lambda: nn.Parameter(torch.randn(5, 4)))),
        Example("over-w", fn(lambda s, x: s.c(x) @ s.w, c=lambda: conv(), w=lambda: nn.Parameter(torch.randn(44, 44)))),
        Example("einsum", fn(lambda s, x: torch.einsum("bchw,dc->bdhw", s.c(x), s.w), c=lambda: conv(),
                             w=lambda: nn.Parameter(torch.randn(5, 4))), opsets=(17, 12)),  # Einsum: opset 12
    ],
    "linear": [
        Example("over-w", seq(conv(), nn.Linear(44, 44))),
        Example("channels-last", fn(lambda s, x: _nchw(s.lin(_nhwc(s.c(x)))), c=lambda: conv(), lin=lambda: nn.Linear(4, 6))),
    ],
    "attention": [
        Example("gru-over-w", fn(lambda s, x: s.gru(s.c(x).permute(3, 2, 1, 0).flatten(2))[0].view(44, 30, 5, 1).permute(3, 2, 1, 0),
                                 c=lambda: conv(), gru=lambda: nn.GRU(4, 5))),
        Example("mha-tokens", fn(lambda s, x: s.mha(*(s.c(x).flatten(2).transpose(1, 2),) * 3)[0].transpose(1, 2).view(1, 4, 30, 44),
                                 c=lambda: conv(), mha=lambda: nn.MultiheadAttention(4, 2, batch_first=True)),
                opsets=(17, 13)),  # aten::unflatten exports from opset 13
    ],
    "grid_sample": [
        Example("fixed-grid", fn(lambda s, x: F.grid_sample(s.c(x), s.grid, align_corners=False), c=lambda: conv(),
                                 grid=lambda: nn.Parameter(torch.rand(1, 20, 25, 2) * 2 - 1)), opsets=(17,)),  # GridSample: 16
    ],
}
