"""Registration of the RoI ops as ``torch.library`` custom ops in the ``rfmap`` namespace.

Each op (``torch.ops.rfmap.roi_align``, ``roi_pool``, ``spp_pool``, ``ps_roi_align``,
``ps_roi_pool``) has a kernel (PyTorch, any device; on the CPU, ``roi_pool`` and ``spp_pool``
run native loops where they could be built, :mod:`rfmap.ops._native`), a fake kernel (shapes and dtypes
only, for ``torch.compile``, ``torch.export`` and FakeTensor tracing) and a registered
autograd formula that calls a private backward op (``rfmap::_roi_align_backward`` ...),
itself a custom op with a fake kernel and an autograd formula of its own: every backward op
is linear in the gradient, and its adjoint is the forward op (linear ops) or the forward's
gather at the saved argmax (max pooling), so double backward works for every op.
``torch.library.opcheck`` passes for every op (tests/ops/test_library.py).

Functorch transforms (``torch.func.grad``, ``vjp``, ``jacrev``, ``vmap`` of them) do not
run custom ops' own autograd yet (pytorch/pytorch#168393): under a transform, :func:`call`
runs an op through an ``autograd.Function`` with the same setup and backward
(:func:`register_autograd`), which they do run, and a ``jvp`` for forward mode
(``torch.func.jvp``, ``jacfwd``, ``hessian``), which custom ops cannot register.

The kernels check their data (:func:`rfmap.ops._boxes.check_rois`) when they run, so those
checks hold in compiled and exported graphs too; the fake kernels check only shapes.

``spp_pool``, whose calls take well under a millisecond, skips the dispatcher in plain eager
mode (:func:`eager`): the same kernel runs under an autograd node of its own with the same
setup and backward; traced, compiled and exported calls, and calls under a dispatch mode or a
functorch transform, go through ``torch.ops.rfmap.spp_pool`` (:func:`call`).

``vmap`` runs each op once for all samples (:func:`register_vmap`): the samples' images are
stacked into one batch, and each sample's boxes point into its own images.
"""

from __future__ import annotations

from typing import Callable, List, Union

import torch
from torch import Tensor

#: per op (``"rfmap::roi_align"`` ...), its autograd as an ``autograd.Function`` for functorch
_transformable: dict[str, type[torch.autograd.Function]] = {}


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
    return not torch._C._are_functorch_transforms_active() and all(type(t) is Tensor for t in tensors)


def needs_grad(input: Tensor) -> bool:
    """Whether an op may be differentiated through ``input``: it requires grad in grad mode, or a
    functorch transform is active (forward mode needs no grad mode, and the transforms'
    wrappers do not always say that they require grad)."""
    return (torch.is_grad_enabled() and input.requires_grad) or torch._C._are_functorch_transforms_active()


def _packet(op) -> torch._ops.OpOverloadPacket:
    """``torch.ops.rfmap.<name>`` of a custom op made by :func:`custom_op`."""
    return getattr(torch.ops.rfmap, op._qualname.split("::")[1])


def save(ctx, *tensors: Tensor) -> None:
    """``ctx.save_for_backward(*tensors)``, and under a functorch transform (the only place an
    op's ``jvp`` runs) ``save_for_forward`` of the same tensors (functorch's generated ``vmap``
    rules keep one set of batch dims for both)."""
    ctx.save_for_backward(*tensors)
    if torch._C._are_functorch_transforms_active():
        ctx.save_for_forward(*tensors)


def register_autograd(op, backward: Callable, setup_context: Callable, jvp: Callable) -> None:
    """``op.register_autograd(backward, setup_context=setup_context)``, and the same formulas
    as an ``autograd.Function`` that :func:`call` runs under functorch transforms (with
    ``generate_vmap_rule``: ``vmap`` of ``grad`` works too) and with ``jvp``, forward-mode AD
    (``torch.func.jvp``, ``jacfwd``, ``hessian``).  Every op is linear in its first argument
    (given the others and, for max pooling, its argmax), so ``jvp(ctx, t, ...)`` applies the
    op, or its gather at the argmax, to the tangent ``t``: from what ``setup_context`` saved
    (:func:`save`)."""
    op.register_autograd(backward, setup_context=setup_context)
    packet = _packet(op)

    def forward(*args):
        return packet.default(*map(_plain, args))

    def setup(ctx, inputs, output):
        setup_context(ctx, tuple(map(_plain, inputs)), output)

    name = packet._qualified_op_name.split("::")[1].title().replace("_", "")
    body = {"generate_vmap_rule": True, "forward": staticmethod(forward), "setup_context": staticmethod(setup),
            "backward": staticmethod(backward), "jvp": staticmethod(jvp)}  # fmt: skip
    _transformable[op._qualname] = type(f"{name}Function", (torch.autograd.Function,), body)


class _Opaque:
    """A list argument (SPP's levels) handed to an ``autograd.Function`` as one value:
    functorch's generated rules count a list's items as arguments of their own, and the
    tangents of ``jvp`` under ``vmap`` (``jacfwd``, ``hessian``) then do not line up."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    @classmethod
    def of(cls, value):
        return cls(value) if isinstance(value, (list, tuple)) else value


def _plain(value):
    return value.value if isinstance(value, _Opaque) else value


def register_vmap(op, args: tuple) -> None:
    """A ``vmap`` rule for ``op`` that folds the mapped dimension into the image batch: one call
    for all samples, sample ``b``'s image ``i`` as image ``b * N + i``.  ``args`` gives each
    argument's role: ``"images"``, a tensor over the images (dim 0); ``"boxes"``, one over the
    boxes (dim 0: the gradient of a RoI op, its argmax); ``"rois"``, the ``Tensor[K, 5]`` rows,
    whose batch indices move with their images; ``"count"``, the int ``N``; ``None``, the same
    for every sample.  Every output runs over images or boxes (dim 0) and is unfolded alike,
    but for an empty 1-D one (an argmax not computed), which stays unbatched."""
    packet = _packet(op)

    def rule(info, in_dims, *values):
        size = info.batch_size
        count = next((v for v, role in zip(values, args) if role == "count"), None)
        if count is None:
            image, dim = next((v, d) for v, d, role in zip(values, in_dims, args) if role == "images")
            count = image.shape[1 if dim == 0 else 0]  # the images' dim, with the samples' dim anywhere
        folded = []
        for value, dim, role in zip(values, in_dims, args):
            if role is None:
                if isinstance(value, Tensor) and dim is not None:
                    raise RuntimeError(f"{op._qualname}: vmap over an argument that is the same for every sample")
                folded.append(value)
            elif role == "count":
                folded.append(value * size)
            else:
                stacked = value.movedim(dim, 0) if dim is not None else value.expand(size, *value.shape)
                if role == "rois":
                    offset = (torch.arange(size, device=value.device) * count).to(value.dtype).view(size, 1, 1)
                    stacked = torch.cat([stacked[..., :1] + offset, stacked[..., 1:]], dim=-1)
                folded.append(stacked.reshape(size * stacked.shape[1], *stacked.shape[2:]))
        result = packet(*folded)
        results = result if isinstance(result, tuple) else (result,)
        unfolded = [r if r.dim() == 1 and r.numel() == 0 else r.view(size, r.shape[0] // size, *r.shape[1:]) for r in results]
        dims = [None if r is u else 0 for r, u in zip(results, unfolded)]
        if isinstance(result, tuple):
            return tuple(unfolded), tuple(dims)
        return unfolded[0], dims[0]

    torch.library.register_vmap(op._qualname, rule)


def call(op, *args):
    """``op(*args)`` for an op of ``torch.ops.rfmap``; under a functorch transform, through
    its ``autograd.Function`` (:func:`register_autograd`), which the transforms can differentiate."""
    if torch._C._are_functorch_transforms_active():
        return _transformable[op._qualified_op_name].apply(*map(_Opaque.of, args))
    return op(*args)


def roi_rows(input: Tensor, rois: Tensor):
    """Fake-kernel checks of an RoI op's tensors; returns ``K`` (may be symbolic)."""
    torch._check(input.dim() == 4, lambda: f"input must be a 4-D tensor (N, C, H, W), got {input.dim()}-D")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "boxes must be a Tensor[K, 5]")
    return rois.shape[0]


def register_backward(op, backward_op, params: int) -> None:
    """Autograd of a linear RoI op ``op(input, rois, *params)`` through ``backward_op(grad,
    rois, *params, N, C, H, W)``, and of ``backward_op`` through ``op`` (double backward)."""

    def setup_context(ctx, inputs, output):
        save(ctx, inputs[1])
        ctx.params = inputs[2 : 2 + params]
        ctx.shape = tuple(inputs[0].shape)

    forward_packet, backward_packet = _packet(op), _packet(backward_op)

    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        grad_input = call(backward_packet, grad.contiguous(), rois, *ctx.params, *ctx.shape)
        return (grad_input, None) + (None,) * params

    def jvp(ctx, tangent, *_):
        (rois,) = ctx.saved_tensors
        return call(forward_packet, tangent, rois, *ctx.params)

    def setup_adjoint(ctx, inputs, output):
        save(ctx, inputs[1])
        ctx.params = inputs[2 : 2 + params]
        ctx.shape = inputs[2 + params :]

    def adjoint_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        return (call(forward_packet, grad.contiguous(), rois, *ctx.params), None) + (None,) * (params + 4)

    def adjoint_jvp(ctx, tangent, *_):
        (rois,) = ctx.saved_tensors
        return call(backward_packet, tangent.contiguous(), rois, *ctx.params, *ctx.shape)

    register_autograd(op, backward, setup_context, jvp)
    register_autograd(backward_op, adjoint_backward, setup_adjoint, adjoint_jvp)
    register_vmap(op, ("images", "rois") + (None,) * params)
    register_vmap(backward_op, ("boxes", "rois") + (None,) * params + ("count", None, None, None))


def script_rois(boxes: Union[Tensor, List[Tensor]]) -> Tensor:
    """The ``Tensor[K, 5]`` form of ``boxes``, in TorchScript (no checks: the kernels check)."""
    if isinstance(boxes, Tensor):
        return boxes
    rows: List[Tensor] = []
    for i, b in enumerate(boxes):
        rows.append(torch.cat([torch.full_like(b[:, :1], float(i)), b], dim=1))
    return torch.cat(rows, dim=0)
