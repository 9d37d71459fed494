"""Is the measured network linear in its input?  An honest census of the ops it runs.

For a network that is linear (affine: biases allowed) in its input, the input gradient of
a cell does not depend on the input, so averaging over more inputs (``--n``) or other
images cannot change a map aggregated from it.  :func:`linearity` runs the network once,
under :class:`torch.utils._python_dispatch.TorchDispatchMode`, and follows which tensors
depend on the input: each ATen op that reads such a tensor is classified as

* **linear** in it: convolutions and matrix products with constant weights, sums,
  differences, products and quotients by constants, averaging pools, linear resampling,
  eval-mode batch norm (affine), padding, slicing, views and copies;
* **nonlinear**: activations (ReLU, GELU, ...), max pooling, softmax, layer/group norm,
  products of two input-dependent tensors, comparisons, ...;
* **unknown**: any other op.

The verdict is ``"linear"`` only when every op on the path to the measured tensor is
linear; ``"nonlinear"`` when one of them is known to be nonlinear (then inputs matter);
``"unknown"`` otherwise.  Ops off the path to the measured tensor do not count.
Torch is imported when :func:`linearity` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Linearity", "linearity"]

_LINEAR = frozenset(
    """
    add sub rsub neg cat stack concat view _unsafe_view reshape _reshape_alias permute transpose t
    expand expand_as clone contiguous slice select index_select squeeze unsqueeze flatten unflatten
    split split_with_sizes chunk unbind narrow constant_pad_nd pad reflection_pad1d reflection_pad2d
    reflection_pad3d replication_pad1d replication_pad2d replication_pad3d avg_pool1d avg_pool2d
    avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
    _adaptive_avg_pool3d mean sum upsample_nearest1d upsample_nearest2d upsample_nearest3d
    _upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d
    upsample_bilinear2d upsample_bicubic2d upsample_trilinear3d _upsample_bilinear2d_aa
    _upsample_bicubic2d_aa pixel_shuffle pixel_unshuffle channel_shuffle
    _native_batch_norm_legit_no_training detach alias _to_copy to copy lift_fresh roll flip repeat
    as_strided im2col col2im unfold diagonal tril triu movedim zero fill zeros_like empty_like
    new_zeros new_empty cumsum
    """.split()
)
_NONLINEAR = frozenset(
    """
    relu relu6 gelu silu sigmoid tanh hardtanh leaky_relu elu selu celu softplus mish hardswish
    hardsigmoid prelu _prelu_kernel threshold log_sigmoid_forward glu max_pool1d max_pool2d max_pool3d
    max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d
    adaptive_max_pool3d fractional_max_pool2d _softmax softmax _log_softmax log_softmax
    native_layer_norm native_group_norm _native_batch_norm_legit clamp clamp_min clamp_max abs pow
    sqrt rsqrt exp exp2 expm1 log log2 log10 log1p maximum minimum max min amax amin topk sort
    argmax argmin sign sgn round floor ceil trunc frac erf erfc sin cos tan atan asin acos sinh cosh
    reciprocal norm linalg_vector_norm var std var_mean std_mean logsumexp cumprod prod where
    gt lt ge le eq ne _scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention
    _scaled_dot_product_attention_math _scaled_dot_product_flash_attention_for_cpu
    _scaled_dot_product_fused_attention_overrideable grid_sampler_2d grid_sampler_3d
    """.split()
)
_PRODUCTS = {"mul": (0, 1), "mm": (0, 1), "bmm": (0, 1), "matmul": (0, 1), "addmm": (1, 2), "baddbmm": (1, 2)}


@dataclass(frozen=True)
class Linearity:
    """The verdict (``"linear"``, ``"nonlinear"``, ``"unknown"``) and the ops behind it:
    the nonlinear ones (``"relu"``, ``"mul of two input-dependent tensors"``) for
    ``"nonlinear"``, the unclassified ones for ``"unknown"``."""

    verdict: str
    ops: tuple[str, ...] = ()

    def describe(self) -> str:
        ops = f" ({', '.join(self.ops)})" if self.ops else ""
        return {"linear": "linear", "nonlinear": f"nonlinear{ops}"}.get(self.verdict, f"not shown to be linear{ops}")


def _op_verdict(name: str, args: tuple, depends: Callable[[Any], bool]) -> str | None:
    """``None`` (linear in the input-dependent arguments), ``"!op"`` (nonlinear) or ``"?op"``."""
    if name in _PRODUCTS:
        i, j = _PRODUCTS[name]
        both = len(args) > j and depends(args[i]) and depends(args[j])
        return f"!{name} of two input-dependent tensors" if both else None
    if name == "div":
        return "!div by an input-dependent tensor" if len(args) > 1 and depends(args[1]) else None
    if name in ("convolution", "_convolution", "convolution_overrideable"):
        return "!convolution with input-dependent weights" if depends(args[1]) else None
    if name == "native_batch_norm":
        return "!batch norm in training mode" if len(args) > 5 and args[5] else None
    if name in ("native_dropout", "dropout", "feature_dropout"):
        return "!dropout in training mode" if len(args) > 2 and args[2] else None
    if name in _LINEAR:
        return None
    if name in _NONLINEAR:
        return f"!{name}"
    return f"?{name}"


def _census_mode():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Census(TorchDispatchMode):
        """Tags every tensor that depends on the input with the non-linear ops on its path."""

        def __init__(self):
            super().__init__()
            self.tags: dict[int, frozenset[str]] = {}
            self.keep: list = []  # holds tensors so that their ids stay unique

        def mark(self, t, tags: frozenset[str]) -> None:
            self.tags[id(t)] = tags
            self.keep.append(t)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            inherited = [self.tags[id(a)] for a in tensors if id(a) in self.tags]
            if inherited:
                name = func.overloadpacket.__name__
                name = name[:-1] if name.endswith("_") and not name.endswith("__") else name
                verdict = _op_verdict(name, tuple(args), lambda a: id(a) in self.tags)
                tags = frozenset().union(*inherited) | ({verdict} if verdict else set())
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        self.mark(t, tags)
            return out

    return Census()


def linearity(run: Callable[[Any], Any], x: Any) -> Linearity:
    """Run ``run(x)`` once (no gradients) and classify the path from ``x`` to the tensor it returns."""
    import torch

    census = _census_mode()
    with torch.no_grad():
        x = x.detach().clone()
        census.mark(x, frozenset())
        try:
            with census:
                out = run(x)
        except Exception as exc:  # noqa: BLE001 - the census or the model failed: which one?
            run(x)  # the model's own failure is raised here, as it would be without the census
            return Linearity("unknown", (f"the ops census failed: {type(exc).__name__}",))
    tags = census.tags.get(id(out))
    if tags is None:  # the result was not produced under the census (a constant): no path
        tags = frozenset().union(*census.tags.values()) if census.tags else frozenset()
    bad = sorted(t[1:] for t in tags if t.startswith("!"))
    if bad:
        return Linearity("nonlinear", tuple(bad))
    unknown = sorted(t[1:] for t in tags if t.startswith("?"))
    return Linearity("unknown", tuple(unknown)) if unknown else Linearity("linear")
