"""Ops that change no geometry: activations, batch norm, dropout, 1x1 channel mixing, casts
(PyTorch modules, functions and methods; ONNX unary ops).  Several input maps merge.

Layer: :class:`~rfmap.core.layers.Pointwise`.
"""

from __future__ import annotations

from rfmap.core.layers import Pointwise
from rfmap.core.registry import OpDef
from rfmap.rules.call import Call, distinct
from rfmap.rules.common import (
    REALIZE,
    input_shape,
    merge_or_pointwise,
    onnx_rules,
    plain_pointwise,
    pointwise,
    torch_rules,
)
from rfmap.rules.erf_moments import window_moments

MODULES = (
    "Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "BatchNorm1d",
    "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "SyncBatchNorm",
    "LocalResponseNorm", "CrossMapLRN2d", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU",
    "SiLU", "Mish", "Sigmoid", "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid", "Hardshrink", "Softshrink", "Tanhshrink",
    "Softplus", "Softsign", "Threshold", "LogSigmoid", "Softmax2d", "ChannelShuffle",
)
UNARY = (
    "relu", "relu6", "relu_", "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "hardtanh", "hardtanh_",
    "hardswish", "hardsigmoid", "hardshrink", "softshrink", "tanhshrink", "leaky_relu", "leaky_relu_", "prelu", "rrelu",
    "rrelu_", "softplus", "softsign", "threshold", "threshold_", "logsigmoid", "sigmoid", "tanh", "sigmoid_", "tanh_",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm",
    "local_response_norm", "channel_shuffle", "native_channel_shuffle", "abs", "absolute", "neg", "negative", "exp",
    "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tan", "asin", "acos",
    "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sign", "sgn", "ceil", "floor", "round", "trunc", "frac", "erf",
    "erfc", "erfinv", "reciprocal", "nan_to_num", "clamp_min", "clamp_max", "logit", "isnan", "isinf", "isfinite",
    "positive", "signbit", "i0", "sinc", "deg2rad", "rad2deg", "bitwise_not", "logical_not", "conj", "angle",
)
ATEN = (
    "batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional", "native_batch_norm",
    "_native_batch_norm_legit", "cudnn_batch_norm", "dropout", "native_dropout", "feature_dropout", "alpha_dropout",
    "channel_shuffle", "native_channel_shuffle", "hardtanh", "hardtanh_", "relu6", "gelu", "silu", "silu_", "hardswish",
    "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_", "elu", "elu_", "leaky_relu", "leaky_relu_", "softplus",
    "prelu", "_prelu_kernel", "clamp", "clamp_", "clamp_min", "clamp_max", "threshold", "glu_jvp", "local_response_norm",
)
ONNX = (
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
    "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Identity", "Dropout", "Cast", "CastLike",
    "BatchNormalization", "LRN", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Not", "QuantizeLinear",
    "DequantizeLinear", "Celu", "ThresholdedRelu", "Shrink", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf", "BitwiseNot", "Swish",
)


@plain_pointwise
def module_pointwise(call: Call):
    if len(distinct(call)) > 1:
        return merge_or_pointwise(call, "add")
    return Pointwise(op=type(call.module).__name__)


#: unary ops with per-channel tensor arguments (``F.batch_norm(x, mean, var, w, b)``), which do
#: not broadcast against the input from the right: their output is the input's shape all the same
PER_CHANNEL = ("batch_norm", "prelu")


def _unary_targets(names) -> list[str]:
    out = []
    for name in names:
        out += [f"torch.{name}", f"F.{name}", f"torch.special.{name}", f"Tensor.{name}", f"Tensor.{name}_"]
    return out


OPS = [
    OpDef(
        "pointwise", lambda op="pointwise": Pointwise(op=op),
        aliases=("relu", "bn", "batchnorm", "identity"), layer=Pointwise,
        torch=torch_rules([f"nn.{m}" for m in MODULES] + ["torch.ao.quantization.QuantStub",
                                                          "torch.ao.quantization.DeQuantStub"], module_pointwise,
                          same_shape=True)
        + torch_rules(_unary_targets([n for n in UNARY if n not in PER_CHANNEL]), pointwise, same_shape=True)
        + torch_rules(_unary_targets(PER_CHANNEL), pointwise, same_shape=True, shape=input_shape)
        + torch_rules([f"aten.{n}" for n in ATEN], pointwise),
        onnx=onnx_rules(ONNX, pointwise),
        realize=f"{REALIZE}:identity", erf=window_moments,
        description="no geometry: activations, batch norm, dropout, 1x1 convolutions, casts",
    ),
]
