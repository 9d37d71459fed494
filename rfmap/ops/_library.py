"""Registration of the RoI ops as ``torch.library`` custom ops in the ``rfmap`` namespace.

Each op (``torch.ops.rfmap.roi_align``, ``roi_pool``, ``spp_pool``, ``ps_roi_align``,
``ps_roi_pool``) has a kernel (PyTorch, any device; on the CPU, ``roi_pool`` and ``spp_pool``
run native loops where they could be built, :mod:`rfmap.ops._native`), a fake kernel (shapes and dtypes
only, for ``torch.compile``, ``torch.export`` and FakeTensor tracing) and a registered
autograd formula that calls a private backward op (``rfmap::_roi_align_backward`` ...),
itself a custom op with a fake kernel.  The backward ops of the linear ops register their
own autograd (the adjoint of the adjoint is the forward op), so double backward works for
them.  ``torch.library.opcheck`` passes for every op (tests/ops/test_library.py).

The kernels check their data (:func:`rfmap.ops._boxes.check_rois`) when they run, so those
checks hold in compiled and exported graphs too; the fake kernels check only shapes.

``spp_pool``, whose calls take well under a millisecond, skips the dispatcher in plain eager
mode (:func:`eager`): the same kernel runs under an autograd node of its own with the same
setup and backward; traced, compiled and exported calls, and calls under a dispatch mode or a
functorch transform, go through ``torch.ops.rfmap.spp_pool``.
"""

from __future__ import annotations

from typing import List, Union

import torch
from torch import Tensor


def custom_op(name: str, schema: str):
    """``torch.library.custom_op`` with an explicit schema and no mutated arguments."""

    def register(fn):
        return torch.library.custom_op(name, fn, mutates_args=(), schema=schema)

    return register


def eager(*tensors: Tensor, recording: bool = False) -> bool:
    """Whether a kernel may be called directly instead of through ``torch.ops.rfmap``, which
    costs tens of microseconds a call (a fifth of SPP's): plain tensors in eager mode -- no
    TorchScript tracing or ``torch.compile``, no torch function or dispatch mode (fake
    tensors, export, operator profilers), no functorch transform -- and grad mode off, unless
    ``recording`` (the caller records its own autograd node).  Anything else goes through the
    registered op."""
    if (torch.is_grad_enabled() and not recording) or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack():
        return False
    return all(type(t) is Tensor and not torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def roi_rows(input: Tensor, rois: Tensor):
    """Fake-kernel checks of an RoI op's tensors; returns ``K`` (may be symbolic)."""
    torch._check(input.dim() == 4, lambda: f"input must be a 4-D tensor (N, C, H, W), got {input.dim()}-D")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "boxes must be a Tensor[K, 5]")
    return rois.shape[0]


def register_backward(op, backward_op, params: int) -> None:
    """Autograd of a linear RoI op ``op(input, rois, *params)`` through ``backward_op(grad,
    rois, *params, N, C, H, W)``, and of ``backward_op`` through ``op`` (double backward)."""

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.params = inputs[2 : 2 + params]
        ctx.shape = tuple(inputs[0].shape)

    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        grad_input = backward_op(grad.contiguous(), rois, *ctx.params, *ctx.shape)
        return (grad_input, None) + (None,) * params

    def setup_adjoint(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.params = inputs[2 : 2 + params]

    def adjoint_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        return (op(grad.contiguous(), rois, *ctx.params), None) + (None,) * (params + 4)

    op.register_autograd(backward, setup_context=setup_context)
    backward_op.register_autograd(adjoint_backward, setup_context=setup_adjoint)


def script_rois(boxes: Union[Tensor, List[Tensor]]) -> Tensor:
    """The ``Tensor[K, 5]`` form of ``boxes``, in TorchScript (no checks: the kernels check)."""
    if isinstance(boxes, Tensor):
        return boxes
    rows: List[Tensor] = []
    for i, b in enumerate(boxes):
        rows.append(torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1))
    return torch.cat(rows, dim=0)
