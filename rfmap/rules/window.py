"""Sliding windows: convolution, pooling, transposed convolution, max unpooling, unfold/fold.

Layers: :class:`~rfmap.core.layers.Conv` (``conv``, ``maxpool``, ``avgpool``, ``lppool``) and
:class:`~rfmap.core.layers.ConvTranspose` (``conv_transpose``, ``max_unpool``, ``fold``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rfmap.core.layers import Conv, ConvTranspose, avgpool, conv, maxpool
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import Call, LayoutError, as_ints
from rfmap.rules.common import REALIZE, nd, onnx_rules, torch_rules
from rfmap.rules.erf_moments import window_moments
from rfmap.rules.onnx_attrs import attr_flag, attr_ints, attr_str, kernel_pads

# -- PyTorch ------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _conv(kernel: tuple, stride: tuple, pad: Any, dilation: tuple, mode: str) -> Conv:
    """One Conv layer per geometry (layers are immutable; checking parameters costs more
    than the dict lookup: a network repeats few convolution geometries)."""
    return Conv(kernel, stride, pad, dilation, op="conv", pad_mode=mode)


def conv_module(call: Call):
    m = call.module
    call.standard()
    pad = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    mode = getattr(m, "padding_mode", "zeros")
    args = (tuple(m.kernel_size), tuple(m.stride), pad, tuple(m.dilation), mode)
    try:
        return _conv(*args)
    except TypeError:  # an unhashable parameter: Conv says what is wrong with it
        return Conv(*args[:4], op="conv", pad_mode=mode)


def conv_fn(call: Call):
    # F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    pad = call.arg(4, "padding", 0)
    pad = pad if isinstance(pad, str) else as_ints(pad, n)
    return Conv(k, as_ints(call.arg(3, "stride", 1), n), pad, as_ints(call.arg(5, "dilation", 1), n), op="conv")


def output_padding(call: Call, k, s, p, d) -> tuple[int, ...]:
    """PyTorch's effective output padding, read off the traced output size (``forward``
    may take an ``output_size``)."""
    ins = call.sizes()
    outs = call.out_sizes(call.standard_dims(call.out.dim()))
    return tuple(o - ((n - 1) * si - 2 * pi + di * (ki - 1) + 1) for o, n, ki, si, pi, di in zip(outs, ins, k, s, p, d))


def conv_transpose_module(call: Call):
    m = call.module
    call.standard()
    k, s, p, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.padding), tuple(m.dilation)
    return ConvTranspose(k, s, p, output_padding(call, k, s, p, d), d)


def conv_transpose_fn(call: Call):
    # F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    s = as_ints(call.arg(3, "stride", 1), n)
    p = as_ints(call.arg(4, "padding", 0), n)
    d = as_ints(call.arg(7, "dilation", 1), n)
    return ConvTranspose(k, s, p, output_padding(call, k, s, p, d), d)


def aten_convolution(call: Call):
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    call.standard()
    weight = call.arg(1, "weight")
    k = tuple(int(v) for v in weight.shape[2:])
    n = len(k)
    s, p, d = as_ints(call.arg(3, "stride"), n), as_ints(call.arg(4, "padding"), n), as_ints(call.arg(5, "dilation"), n)
    if call.arg(6, "transposed", False):
        return ConvTranspose(k, s, p, output_padding(call, k, s, p, d), d)
    return Conv(k, s, p, d, op="conv")


def _stride_or_kernel(stride, kernel, n):
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return as_ints(kernel, n)
    return as_ints(stride, n)


def pool_module(call: Call):
    m = call.module
    call.standard()
    n = call.rank
    name = type(m).__name__
    op = "maxpool" if name.startswith("Max") else "lppool" if name.startswith("LP") else "avgpool"
    dilation = as_ints(getattr(m, "dilation", 1), n) if op == "maxpool" else 1
    padding = as_ints(getattr(m, "padding", 0), n)
    return Conv(as_ints(m.kernel_size, n), _stride_or_kernel(m.stride, m.kernel_size, n), padding, dilation,
                bool(m.ceil_mode), op=op)


def max_pool_fn(call: Call):
    # F.max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)
    call.standard()
    n = call.rank
    k = call.arg(1, "kernel_size")
    return Conv(
        as_ints(k, n), _stride_or_kernel(call.arg(2, "stride"), k, n), as_ints(call.arg(3, "padding", 0), n),
        as_ints(call.arg(4, "dilation", 1), n), bool(call.arg(5, "ceil_mode", False)), op="maxpool",
    )


def avg_pool_fn(call: Call):
    # F.avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None)
    call.standard()
    n = call.rank
    k = call.arg(1, "kernel_size")
    return Conv(
        as_ints(k, n), _stride_or_kernel(call.arg(2, "stride"), k, n), as_ints(call.arg(3, "padding", 0), n), 1,
        bool(call.arg(4, "ceil_mode", False)), op="avgpool",
    )


def lp_pool_fn(call: Call):
    # F.lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False)
    call.standard()
    n = call.rank
    k = call.arg(2, "kernel_size")
    return Conv(as_ints(k, n), _stride_or_kernel(call.arg(3, "stride"), k, n), 0, 1, bool(call.arg(4, "ceil_mode", False)),
                op="lppool")


def max_unpool(call: Call):
    """Max unpooling (SegNet): each output cell may receive any input cell whose pooling
    window covers it -- a transposed window; which one does depends on the data."""
    call.standard()
    n = call.rank
    if call.module is not None:
        m = call.module
        k, s, p = m.kernel_size, m.stride, m.padding
    elif call.kind == "onnx":
        k = attr_ints(call, "kernel_shape", n, minimum=1)
        if k is None:
            raise RFMapError("MaxUnpool needs kernel_shape")
        s = attr_ints(call, "strides", n, default=(1,) * n, minimum=1)
        pads = attr_ints(call, "pads", 2 * n, default=(0,) * (2 * n), minimum=0)
        if any(pads[a] != pads[a + n] for a in range(n)):
            raise LayoutError("MaxUnpool with asymmetric pads")
        p = pads[:n]
    else:
        k, s, p = call.arg(2, "kernel_size"), call.arg(3, "stride"), call.arg(4, "padding", 0)
    k = as_ints(k, n)
    s = _stride_or_kernel(s, k, n)
    p = as_ints(p, n)
    return ConvTranspose(k, s, p, output_padding(call, k, s, p, (1,) * n), 1, op="max_unpool")


def unfold(call: Call):
    """im2col: the columns are the windows of a convolution, flattened row-major into dim 2."""
    call.standard()
    n = call.rank
    if call.module is not None:
        m = call.module
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    else:
        k, d, p, s = call.arg(1, "kernel_size"), call.arg(2, "dilation", 1), call.arg(3, "padding", 0), call.arg(4, "stride", 1)
    call.out_dims = (call.out.dim() - 1,) * n
    return Conv(as_ints(k, n), as_ints(s, n), as_ints(p, n), as_ints(d, n), op="unfold")


def fold(call: Call):
    """col2im: a transposed convolution from the grid of windows to the image."""
    n = call.rank
    b = call.bind
    if len(set(b.dims)) != 1 or b.dims[0] != call.ndim - 1:
        raise LayoutError("fold reads a tensor whose last dim is not the grid of windows")
    if call.module is not None:
        m = call.module
        size, k, d, p, s = m.output_size, m.kernel_size, m.dilation, m.padding, m.stride
    else:
        size, k, d, p, s = (call.arg(1, "output_size"), call.arg(2, "kernel_size"), call.arg(3, "dilation", 1),
                            call.arg(4, "padding", 0), call.arg(5, "stride", 1))
    k, d, p, s = as_ints(k, n), as_ints(d, n), as_ints(p, n), as_ints(s, n)
    ins = call.sizes()
    outs = as_ints(size, n)
    op_ = tuple(o - ((i - 1) * si - 2 * pi + di * (ki - 1) + 1) for o, i, ki, si, pi, di in zip(outs, ins, k, s, p, d))
    call.out_dims = call.standard_dims(call.out.dim())
    return ConvTranspose(k, s, p, op_, d, op="fold")


# -- output shapes without running the op (PyTorch's own formulas) -------------------------


def _window_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def conv_module_shape(m, args, kwargs):
    """``nn.ConvNd`` on a batched input of the right channel count: ``(N, C_out, *sizes)``."""
    x = args[0] if args else None
    nd = len(m.kernel_size)
    if x is None or kwargs or len(args) != 1 or x.dim() != nd + 2 or int(x.shape[1]) != m.in_channels:
        return None
    if isinstance(m.padding, str):
        if m.padding == "same":
            return (int(x.shape[0]), m.out_channels) + tuple(int(n) for n in x.shape[2:])
        pads = (0,) * nd
    else:
        pads = tuple(m.padding)
    sizes = tuple(_window_out(int(n), k, s, p, d, False)
                  for n, k, s, p, d in zip(x.shape[2:], m.kernel_size, m.stride, pads, m.dilation))
    return None if min(sizes) < 1 else (int(x.shape[0]), m.out_channels) + sizes


def pool_module_shape(m, args, kwargs):
    """``nn.MaxPoolNd``/``nn.AvgPoolNd`` (no indices) on a batched input: PyTorch's
    ``pooling_output_shape`` (what PyTorch refuses, a padding over half the kernel or a 3-D
    average pool's input smaller than its kernel, is left for PyTorch to refuse)."""
    x = args[0] if args else None
    name = type(m).__name__
    nd = int(name[-2]) if name[-2:-1].isdigit() else 0
    if x is None or kwargs or len(args) != 1 or x.dim() != nd + 2 or getattr(m, "return_indices", False):
        return None
    k = as_ints(m.kernel_size, nd)
    s = as_ints(m.stride if m.stride not in (None, ()) else m.kernel_size, nd)
    p = as_ints(m.padding, nd)
    d = as_ints(getattr(m, "dilation", 1), nd)
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        return None
    if name == "AvgPool3d" and any(int(n) < ki for n, ki in zip(x.shape[2:], k)):
        return None  # PyTorch's 3-D average pool also refuses inputs smaller than the kernel
    sizes = tuple(_window_out(int(n), ki, si, pi, di, bool(m.ceil_mode)) for n, ki, si, pi, di in zip(x.shape[2:], k, s, p, d))
    return None if min(sizes) < 1 else tuple(int(v) for v in x.shape[:2]) + sizes


# -- ONNX ---------------------------------------------------------------------------------


def onnx_conv(call: Call):
    call.standard()
    n = call.rank
    kernel = attr_ints(call, "kernel_shape", n, minimum=1)
    if kernel is None:
        w = call.args[1] if len(call.args) > 1 else None
        if w is None or not hasattr(w, "shape") or len(w.shape) != n + 2:
            raise RFMapError("no kernel_shape and no weight of known shape")
        kernel = tuple(int(v) for v in w.shape[2:])
    return Conv(kernel, attr_ints(call, "strides", n, (1,) * n, 1), kernel_pads(call, n),
                attr_ints(call, "dilations", n, (1,) * n, 1), op="conv")


def onnx_pool(op: str):
    def rule(call: Call):
        call.standard()
        n = call.rank
        kernel = attr_ints(call, "kernel_shape", n, minimum=1)
        if kernel is None:
            raise RFMapError("no kernel_shape")
        ceil = attr_flag(call, "ceil_mode")
        attr_flag(call, "count_include_pad")
        attr_flag(call, "storage_order")
        return Conv(kernel, attr_ints(call, "strides", n, (1,) * n, 1), kernel_pads(call, n),
                    attr_ints(call, "dilations", n, (1,) * n, 1), bool(ceil), op=op)

    return rule


def onnx_conv_transpose(call: Call):
    call.standard()
    n = call.rank
    kernel = attr_ints(call, "kernel_shape", n, minimum=1)
    if kernel is None:
        w = call.args[1] if len(call.args) > 1 else None
        if w is None or not hasattr(w, "shape") or len(w.shape) != n + 2:
            raise RFMapError("no kernel_shape and no weight of known shape")
        kernel = tuple(int(v) for v in w.shape[2:])
    if attr_str(call, "auto_pad", "NOTSET", ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")) not in ("NOTSET", "VALID"):
        raise RFMapError("auto_pad SAME for ConvTranspose is not supported; give explicit pads")
    if call.kwargs.get("output_shape") is not None:
        raise RFMapError("ConvTranspose with output_shape is not supported; give pads and output_padding")
    pads = attr_ints(call, "pads", 2 * n, (0,) * (2 * n), 0)
    return ConvTranspose(
        kernel, attr_ints(call, "strides", n, (1,) * n, 1), tuple((pads[a], pads[a + n]) for a in range(n)),
        attr_ints(call, "output_padding", n, (0,) * n, 0), attr_ints(call, "dilations", n, (1,) * n, 1),
    )


OPS = [
    OpDef(
        "conv", conv, aliases=("convolution",), layer=Conv,
        torch=torch_rules(nd("nn.Conv"), conv_module, shape=conv_module_shape)
        + torch_rules(nd("F.conv") + ["aten.conv1d", "aten.conv2d", "aten.conv3d"], conv_fn)
        + torch_rules(["aten.convolution", "aten._convolution"], aten_convolution),
        onnx=onnx_rules(["Conv"], onnx_conv),
        realize=f"{REALIZE}:conv", erf=window_moments,
        description="convolution: kernel, stride, padding (int, pair, 'same', 'valid', 'same_upper', 'same_lower'), dilation",
    ),
    OpDef(
        "maxpool", maxpool, aliases=("pool", "max_pool"), layer=Conv,
        torch=torch_rules(nd("nn.MaxPool"), pool_module, shape=pool_module_shape)
        + torch_rules(nd("F.max_pool") + [f"F.max_pool{d}d_with_indices" for d in (1, 2, 3)]
                      + nd("torch.max_pool") + [f"aten.max_pool{d}d" for d in (1, 2, 3)]
                      + [f"aten.max_pool{d}d_with_indices" for d in (1, 2, 3)], max_pool_fn),
        onnx=onnx_rules(["MaxPool"], onnx_pool("maxpool")),
        realize=f"{REALIZE}:pool", erf=window_moments,
        description="max pooling: kernel, stride (default: kernel), padding, dilation, ceil_mode",
    ),
    OpDef(
        "avgpool", avgpool, aliases=("avg_pool",), layer=Conv,
        torch=torch_rules(nd("nn.AvgPool"), pool_module, shape=pool_module_shape)
        + torch_rules(nd("F.avg_pool") + ["torch.avg_pool1d"] + [f"aten.avg_pool{d}d" for d in (1, 2, 3)], avg_pool_fn),
        onnx=onnx_rules(["AveragePool"], onnx_pool("avgpool")),
        realize=f"{REALIZE}:pool", erf=window_moments,
        description="average pooling: kernel, stride (default: kernel), padding, ceil_mode",
    ),
    OpDef(
        "lppool", lambda kernel, stride=None, padding=0, ceil_mode=False: avgpool(kernel, stride, padding, ceil_mode, op="lppool"),
        layer=Conv,
        torch=torch_rules(nd("nn.LPPool"), pool_module) + torch_rules(nd("F.lp_pool"), lp_pool_fn),
        onnx=onnx_rules(["LpPool"], onnx_pool("lppool")),
        realize=f"{REALIZE}:pool", erf=window_moments,
        description="power-average pooling: kernel, stride, padding, ceil_mode",
    ),
    OpDef(
        "conv_transpose", ConvTranspose, aliases=("deconv", "convtranspose"), layer=ConvTranspose,
        torch=torch_rules(nd("nn.ConvTranspose"), conv_transpose_module)
        + torch_rules(nd("F.conv_transpose") + [f"aten.conv_transpose{d}d" for d in (1, 2, 3)], conv_transpose_fn),
        onnx=onnx_rules(["ConvTranspose"], onnx_conv_transpose),
        realize=f"{REALIZE}:conv_transpose",
        description="transposed convolution: kernel, stride, padding, output_padding, dilation",
    ),
    OpDef(
        "max_unpool", None, layer=ConvTranspose,
        torch=torch_rules(nd("nn.MaxUnpool") + nd("F.max_unpool"), max_unpool),
        onnx=onnx_rules(["MaxUnpool"], max_unpool),
        description="max unpooling: any cell of the pooling window may receive the value (data dependent)",
    ),
    OpDef(
        "unfold", None, layer=Conv,
        torch=torch_rules(["nn.Unfold", "F.unfold", "aten.im2col"], unfold),
        description="im2col: the windows of a convolution as columns",
    ),
    OpDef("fold", None, layer=ConvTranspose, torch=torch_rules(["nn.Fold", "F.fold"], fold),
          description="col2im: windows summed back into the image"),
]
