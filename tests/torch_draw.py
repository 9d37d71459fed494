"""Real PyTorch models drawn by hypothesis, and the support of their input gradient.

Independent ground truth: nothing here imports rfmap.  A drawn model is a :class:`Net`, a
list of *stages* applied in order, each a ``torch.nn`` module or a small module whose
``forward`` makes plain ``torch`` / ``torch.nn.functional`` calls (``F.pad``,
``F.interpolate``, slicing, ``F.pixel_shuffle``, ``permute``, merges).  rfmap's PyTorch front end reads
the same object; stage ``k``'s output is the node it names ``stages.k`` (a module path).

Weights are positive (uniform in ``[0.5, 1.5] / fan_in``), biases zero, tensors float64 and
inputs positive, and every op is monotone, so nothing cancels: an input pixel has a
non-zero gradient iff some path connects it to the cell.  Max pooling is the exception
(its gradient goes to each window's arg-max only); :func:`has_max_pool` flags it.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), axes in (H, W)
order (D, H, W in 3-D, L in 1-D), as in rfmap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

#: channels between stages (a concatenation doubles them, a 1x1 convolution mixes them back)
C = 2
#: largest map side and volume a drawn model may reach, per number of spatial axes
MAX_SIDE = {1: 160, 2: 64, 3: 14}
MAX_VOLUME = {1: 160, 2: 2500, 3: 1400}


# -- the modules -------------------------------------------------------------------------


class Net(nn.Module):
    """Stages applied in order; ``upto(x, k)`` is the output of stage ``k``."""

    def __init__(self, stages):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x

    def upto(self, x, k: int):
        for stage in self.stages[: k + 1]:
            x = stage(x)
        return x


class Pad(nn.Module):
    """``F.pad`` with PyTorch's flat pad list (last axis first, ``(left, right)`` pairs)."""

    def __init__(self, pad: tuple[int, ...], mode: str):
        super().__init__()
        self.pad, self.mode = pad, mode

    def forward(self, x):
        return F.pad(x, self.pad, mode=self.mode)

    def extra_repr(self):
        return f"pad={self.pad}, mode={self.mode!r}"


class Slice(nn.Module):
    """``x[..., a:b:s, c:d:t]``: one slice per spatial axis."""

    def __init__(self, slices: tuple[slice, ...]):
        super().__init__()
        self.slices = slices

    def forward(self, x):
        return x[(Ellipsis,) + self.slices]

    def extra_repr(self):
        return ", ".join(f"{s.start}:{s.stop}:{s.step}" for s in self.slices)


class Interp(nn.Module):
    """``F.interpolate`` with a ``size`` or a ``scale_factor``."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self):
        return f"size={self.size}, scale_factor={self.scale_factor}, mode={self.mode!r}, align_corners={self.align_corners}"


class Shuffle(nn.Module):
    """``F.pixel_shuffle`` (after a 1x1 convolution to ``C*r*r`` channels) or
    ``F.pixel_unshuffle`` (before a 1x1 convolution back to ``C``)."""

    def __init__(self, factor: int, unshuffle: bool):
        super().__init__()
        self.factor, self.unshuffle = factor, unshuffle
        self.mix = nn.Conv2d(C * factor**2, C, 1) if unshuffle else nn.Conv2d(C, C * factor**2, 1)

    def forward(self, x):
        if self.unshuffle:
            return self.mix(F.pixel_unshuffle(x, self.factor))
        return F.pixel_shuffle(self.mix(x), self.factor)

    def extra_repr(self):
        return f"factor={self.factor}, unshuffle={self.unshuffle}"


class Transpose(nn.Module):
    """The spatial dims permuted: output axis ``j`` is input axis ``perm[j]`` (H and W swapped in 2-D)."""

    def __init__(self, perm: tuple[int, ...]):
        super().__init__()
        self.perm = perm

    def forward(self, x):
        return x.permute((0, 1) + tuple(2 + a for a in self.perm))

    def extra_repr(self):
        return f"perm={self.perm}"


class Branches(nn.Module):
    """Two paths merged: ``add``, ``mul`` (as ``(a + 1) * (b + 1)``, so that a zero on one
    path cannot hide the other), ``cat`` along channels (then a 1x1 convolution), or
    ``global``: ``(a + 1) * (mean of b over positions + 1)``, squeeze-excitation style.
    ``align`` is an ``F.pad`` list that brings path ``b`` to path ``a``'s size (crop or pad,
    as U-Net's skip connections do)."""

    def __init__(self, a: Net, b: Net, op: str, align: tuple[int, ...] | None, ndim: int):
        super().__init__()
        self.a, self.b, self.op, self.align = a, b, op, align
        self.mix = getattr(nn, f"Conv{ndim}d")(2 * C, C, 1) if op == "cat" else None
        self.pool = getattr(nn, f"AdaptiveAvgPool{ndim}d")(1) if op == "global" else None

    def forward(self, x):
        a = self.a(x)
        b = self.b(x)
        if self.align is not None:
            b = F.pad(b, self.align)
        if self.op == "add":
            return a + b
        if self.op == "mul":
            return (a + 1) * (b + 1)
        if self.op == "cat":
            return self.mix(torch.cat([a, b], 1))
        return (a + 1) * (self.pool(b) + 1)

    def extra_repr(self):
        return f"op={self.op!r}, align={self.align}"


def make_positive(net: nn.Module, seed: int = 0) -> nn.Module:
    """float64, weights uniform in ``[0.5, 1.5] / fan_in``, biases zero (no cancellation)."""
    gen = torch.Generator().manual_seed(seed)
    net.double()
    with torch.no_grad():
        for m in net.modules():
            w = getattr(m, "weight", None)
            if isinstance(w, torch.Tensor):
                fan_in = max(w[0].numel(), 1)
                w.copy_((0.5 + torch.rand(w.shape, generator=gen, dtype=w.dtype)) / fan_in)
            b = getattr(m, "bias", None)
            if isinstance(b, torch.Tensor):
                b.zero_()
    return net


def has_max_pool(net: nn.Module) -> bool:
    return any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) for m in net.modules())


def pads_by_copy(net: nn.Module) -> bool:
    """Some border is filled by copying pixels (reflect, replicate, circular), not zeros."""
    for m in net.modules():
        if (isinstance(m, Pad) and m.mode != "constant") or getattr(m, "padding_mode", "zeros") != "zeros":
            return True
    return False


def has_merge(net: nn.Module) -> bool:
    return any(isinstance(m, Branches) for m in net.modules())


# -- running PyTorch ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What PyTorch does with a model: the spatial sizes of every stage's output, or why not."""

    sizes: tuple[tuple[int, ...], ...]  # per stage
    error: str | None = None  # PyTorch raised (the exception, one line)
    empty: bool = False  # some module returned a map with an empty axis (sliced or cropped away)


def run_torch(net: Net, sizes: tuple[int, ...]) -> Outcome:
    """Run ``net`` on a positive input of spatial size ``sizes`` (batch 1, ``C`` channels)."""
    empty = []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and 0 in output.shape:
            empty.append(module)

    hooks = [m.register_forward_hook(record) for m in net.modules()]
    x = torch.ones((1, C) + tuple(sizes), dtype=torch.float64)
    out = []
    try:
        with torch.no_grad():
            for stage in net.stages:
                x = stage(x)
                out.append(tuple(x.shape[2:]))
                if empty:
                    break
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        return Outcome(tuple(out), f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        for h in hooks:
            h.remove()
    return Outcome(tuple(out), empty=bool(empty))


def gradient_masks(net: Net, k: int, sizes, cells, n_inputs: int = 1) -> list[np.ndarray]:
    """For each cell of stage ``k``: where d(output[cell] summed over channels)/d(input) != 0,
    an N-D boolean mask over the input, the union over ``n_inputs`` positive inputs (the first
    all ones, the others uniform in [0.5, 1.5]).  One batched forward and backward pass."""
    cells = [tuple(int(v) for v in c) for c in cells]
    n = len(cells)
    shape = (n * n_inputs, C) + tuple(sizes)
    x = torch.ones(shape, dtype=torch.float64)
    if n_inputs > 1:
        gen = torch.Generator().manual_seed(1)
        x[n:] = 0.5 + torch.rand((shape[0] - n,) + shape[1:], generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    out = net.upto(x, k)
    batch = torch.arange(n * n_inputs)
    index = (batch, slice(None)) + tuple(torch.tensor([c[a] for c in cells] * n_inputs) for a in range(len(sizes)))
    out[index].sum().backward()
    nonzero = (x.grad.abs().sum(dim=1) != 0).numpy()
    return [nonzero[i::n].any(axis=0) for i in range(n)]


def projections(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per axis, the sorted indices where the N-D mask has a non-zero entry."""
    nd = mask.ndim
    return tuple(np.flatnonzero(mask.any(axis=tuple(o for o in range(nd) if o != a))) for a in range(nd))


def outer(sets, sizes) -> np.ndarray:
    """The N-D mask that is the product of per-axis index sets."""
    masks = []
    for a, (s, n) in enumerate(zip(sets, sizes)):
        m = np.zeros(n, dtype=bool)
        m[np.asarray(s, dtype=np.int64)] = True
        masks.append(m.reshape([-1 if b == a else 1 for b in range(len(sizes))]))
    out = np.ones(tuple(sizes), dtype=bool)
    for m in masks:
        out = out & m
    return out


def box_of(sets) -> tuple[int, ...] | None:
    """Bounding box ``(starts..., ends...)`` of per-axis sets, ``None`` if one is empty."""
    if any(len(s) == 0 for s in sets):
        return None
    return tuple(int(s[0]) for s in sets) + tuple(int(s[-1]) for s in sets)


# -- independent window arithmetic (for the rf / stride / padding check) -----------------


def window_of(stage: nn.Module, ndim: int, n_in: tuple[int, ...]):
    """Per axis ``(k_eff, stride, pad_left)`` of a sliding-window stage, ``None`` otherwise.

    Output cell ``o`` of such a stage reads input cells ``o*s - pad_left .. + k_eff - 1``
    (Araujo et al., Distill 2019).  Written from PyTorch's documentation, not from rfmap.
    """
    t = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * ndim
    if isinstance(stage, nn.modules.conv._ConvNd) and not stage.transposed:
        k, s, d = t(stage.kernel_size), t(stage.stride), t(stage.dilation)
        keff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))
        if stage.padding == "same":
            pl = tuple((ke - 1) // 2 for ke in keff)
        else:
            pl = (0,) * ndim if stage.padding == "valid" else t(stage.padding)
        return tuple(zip(keff, s, pl))
    if isinstance(stage, (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)):
        k = t(stage.kernel_size)
        s = t(stage.stride if stage.stride not in (None, ()) else stage.kernel_size)
        d = t(getattr(stage, "dilation", 1))
        return tuple(zip((di * (ki - 1) + 1 for ki, di in zip(k, d)), s, t(stage.padding)))
    if isinstance(stage, Pad):
        return tuple((1, 1, stage.pad[2 * (ndim - 1 - a)]) for a in range(ndim))
    if isinstance(stage, Slice):
        return tuple((1, sl.indices(n)[2], -sl.indices(n)[0]) for sl, n in zip(stage.slices, n_in))
    if isinstance(stage, Shuffle) and stage.unshuffle:
        return ((stage.factor, stage.factor, 0),) * ndim
    return None


def clean_boxes(windows, in_sizes, axis: int, n_out: int) -> dict[int, tuple[int, int]]:
    """Cells ``o`` of the last stage (along ``axis``) whose window, traced back through every
    stage, stays inside each intermediate map (reads no padding): ``{o: (first, last)}``
    input pixel.  For those cells the gradient's box is exactly this window."""
    clean = {}
    for o in range(n_out):
        lo, hi, inside = o, o, True
        for win, n in zip(reversed(windows), reversed(in_sizes)):
            keff, s, pl = win[axis]
            lo, hi = lo * s - pl, hi * s - pl + keff - 1
            inside = inside and 0 <= lo and hi <= n[axis] - 1
        if inside:
            clean[o] = (lo, hi)
    return clean


# -- strategies --------------------------------------------------------------------------


def axes(draw, ndim: int, lo: int, hi: int):
    """One value per axis (a tuple, usually unequal), sometimes one int for all axes."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(lo, hi))
    return tuple(draw(st.integers(lo, hi)) for _ in range(ndim))


def _at(v, a):
    return v[a] if isinstance(v, tuple) else v


@st.composite
def input_sizes(draw, ndim: int, lo: int = 5, hi: int = 20) -> tuple[int, ...]:
    """Spatial sizes with no two axes equal (H != W), so an axis mix-up changes the numbers."""
    hi = {1: 40, 2: hi, 3: 9}[ndim]
    lo = {1: lo, 2: lo, 3: 4}[ndim]
    return tuple(draw(st.lists(st.integers(lo, hi), min_size=ndim, max_size=ndim, unique=True)))


def conv_stage(draw, ndim, sizes, wild):
    k = axes(draw, ndim, 1, 6 if wild else 4)
    d = axes(draw, ndim, 1, 3)
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    s = 1 if kind == "same" else axes(draw, ndim, 1, 3)
    pad = {"int": lambda: draw(st.integers(0, 3)), "tuple": lambda: tuple(draw(st.integers(0, 3)) for _ in sizes)}.get(
        kind, lambda: kind
    )()
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    return getattr(nn, f"Conv{ndim}d")(C, C, k, stride=s, padding=pad, dilation=d, padding_mode=mode, bias=False)


def pool_stage(draw, ndim, sizes, wild):
    k = axes(draw, ndim, 1, 4)
    s = draw(st.none()) if draw(st.integers(0, 4)) == 0 else axes(draw, ndim, 1, 3)
    ceil = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:  # max pooling, with dilation
        d = axes(draw, ndim, 1, 2)
        half = [(_at(d, a) * (_at(k, a) - 1) + 1) // 2 for a in range(ndim)]
        p = tuple(draw(st.integers(0, h + (1 if wild else 0))) for h in half)
        return getattr(nn, f"MaxPool{ndim}d")(k, s, p, d, ceil_mode=ceil)
    p = tuple(draw(st.integers(0, _at(k, a) // 2 + (1 if wild else 0))) for a in range(ndim))
    return getattr(nn, f"AvgPool{ndim}d")(k, s, p, ceil_mode=ceil, count_include_pad=draw(st.booleans()))


def tconv_stage(draw, ndim, sizes, wild):
    k, s, d = axes(draw, ndim, 1, 4), axes(draw, ndim, 1, 3), axes(draw, ndim, 1, 3)
    p = axes(draw, ndim, 0, 3 if wild else 2)
    # output_padding >= max(stride, dilation) is left out: see test_output_padding_too_large
    op = tuple(draw(st.integers(0, max(_at(s, a), _at(d, a)) - 1)) for a in range(ndim))
    return getattr(nn, f"ConvTranspose{ndim}d")(C, C, k, s, p, op, dilation=d, bias=False)


def pad_stage(draw, ndim, sizes, wild):
    mode = draw(st.sampled_from(["constant", "constant", "reflect", "replicate", "circular"]))
    pairs = []
    for n in sizes:
        hi = n + 1 if wild else (3 if mode == "constant" else min(3, n - 1))
        lo = -n - 1 if wild else -min(2, n - 1)
        pairs.append((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
    if all(p == (0, 0) for p in pairs):
        pairs[-1] = (0, 1)
    return Pad(tuple(v for pair in reversed(pairs) for v in pair), mode)


def slice_stage(draw, ndim, sizes, wild):
    slices = []
    for n in sizes:
        lim = n + 2 if wild else max(n // 3, 1)
        a = draw(st.none() | st.integers(-lim, lim) if wild else st.none() | st.integers(0, lim))
        b = draw(st.none() | st.integers(-lim, n + 2) if wild else st.none() | st.integers(-lim, -1))
        slices.append(slice(a, b, draw(st.integers(1, 3))))
    if all(range(*sl.indices(n)) == range(n) for sl, n in zip(slices, sizes)):  # not the identity
        a = int(np.argmax(sizes))
        slices[a] = slice(None, None, 2) if sizes[a] > 1 else slice(1, None, 1)
    return Slice(tuple(slices))


def interp_stage(draw, ndim, sizes, wild):
    """Factors where PyTorch's floating-point source coordinates equal the exact ratios."""
    linear = draw(st.booleans())
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[ndim] if linear else draw(st.sampled_from(["nearest", "nearest-exact"]))
    align = draw(st.booleans()) if linear else None
    factors = [2, 4] if linear else [2, 3]
    if not align:
        factors.append(0.5)
    if draw(st.booleans()):  # size=: the same factors, or the size kept
        size = []
        for n in sizes:
            f = draw(st.sampled_from([1] + factors))
            if f == 0.5:
                size.append(n // 2 if n % 2 == 0 else n)
            else:
                size.append(n * f)
        return Interp(size=tuple(size), mode=mode, align_corners=align)
    scale = tuple(float(draw(st.sampled_from(factors))) for _ in sizes)
    return Interp(scale_factor=scale, mode=mode, align_corners=align)


def shuffle_stage(draw, ndim, sizes, wild):
    r = draw(st.integers(2, 3))
    return Shuffle(r, unshuffle=draw(st.booleans()))


def adaptive_stage(draw, ndim, sizes, wild):
    keep = st.none() if ndim > 1 else st.nothing()  # None (keep the size): 2-D and 3-D only
    out = tuple(draw(keep | st.integers(1, n)) for n in sizes)
    return getattr(nn, f"AdaptiveAvgPool{ndim}d")(out)


def transpose_stage(draw, ndim, sizes, wild):
    return Transpose(draw(st.sampled_from([p for p in itertools.permutations(range(ndim)) if p != tuple(range(ndim))])))


SIMPLE = {
    "conv": conv_stage,
    "pool": pool_stage,
    "tconv": tconv_stage,
    "pad": pad_stage,
    "slice": slice_stage,
    "interp": interp_stage,
    "shuffle": shuffle_stage,
    "adaptive": adaptive_stage,
    "transpose": transpose_stage,
}
WEIGHTS = {"conv": 5, "pool": 4, "tconv": 2, "pad": 3, "slice": 2, "interp": 2, "shuffle": 1, "adaptive": 1,
           "transpose": 2}


def simple_stage(draw, ndim, sizes, wild, in_branch: bool = False):
    """A stage of one kind; no ``transpose`` in 1-D, nor inside a branch (one path
    transposed and the other not meet as a cross, no box: rfmap treats that as global)."""
    names = [n for n in SIMPLE if (n != "shuffle" or ndim == 2)  # F.pixel_shuffle reads the last two axes
             and (n != "transpose" or (ndim > 1 and not in_branch))]
    name = draw(st.sampled_from([n for n in names for _ in range(WEIGHTS[n])]))
    return name, SIMPLE[name](draw, ndim, sizes, wild)


def _sizes_after(stage: nn.Module, ndim: int, sizes) -> tuple[int, ...] | None:
    """Spatial output sizes of one stage (``None``: PyTorch raises or an axis is empty)."""
    try:
        with torch.no_grad():
            y = stage(torch.zeros((1, C) + tuple(sizes)))
    except (RuntimeError, ValueError, IndexError, TypeError):
        return None
    return None if 0 in y.shape else tuple(y.shape[2:])


def _small(sizes, ndim) -> bool:
    return max(sizes) <= MAX_SIDE[ndim] and int(np.prod(sizes)) <= MAX_VOLUME[ndim]


def _path(draw, ndim, sizes, wild, n_max):
    """A chain of simple stages: (stages, output sizes or None where PyTorch rejects it)."""
    stages = []
    for _ in range(draw(st.integers(0, n_max))):
        _, stage = simple_stage(draw, ndim, sizes, wild, in_branch=True)
        after = _sizes_after(stage, ndim, sizes)
        if after is not None and not _small(after, ndim):
            break
        stages.append(stage)
        sizes = after
        if sizes is None:
            break
    return stages, sizes


def branches_stage(draw, ndim, sizes, wild):
    op = draw(st.sampled_from(["add", "mul", "cat", "global"]))
    a, size_a = _path(draw, ndim, sizes, wild, 2)
    b, size_b = _path(draw, ndim, sizes, wild, 2)
    align = None
    if size_a is not None and size_b is not None and size_a != size_b and op != "global":
        pairs = []
        for na, nb in zip(size_a, size_b):
            delta = na - nb
            left = draw(st.integers(min(delta, 0), max(delta, 0)))
            pairs.append((left, delta - left))
        align = tuple(v for pair in reversed(pairs) for v in pair)
    return Branches(Net(a), Net(b), op, align, ndim)


@dataclass
class Drawn:
    """A drawn model: the net, its input's spatial sizes and the kind of each stage."""

    net: Net
    sizes: tuple[int, ...]
    kinds: tuple[str, ...]

    def __repr__(self):
        return f"Drawn(sizes={self.sizes}, kinds={self.kinds},\n{self.net})"


@st.composite
def models(draw, ndim: int, dag: bool = False, wild: bool = False, max_stages: int = 4, transpose: bool = False) -> Drawn:
    """A :class:`Net` of 1..``max_stages`` stages (with ``dag``, some are two merged paths),
    drawn for its input size so that most geometries are valid; ``wild`` draws kernels,
    pads and slices past the input size too; with ``transpose`` one stage (not the last)
    permutes the spatial axes.  Drawing stops at a stage PyTorch rejects."""
    sizes = draw(input_sizes(ndim))
    first = sizes
    stages, names = [], []
    n_stages = draw(st.integers(2 if transpose else 1, max_stages))
    forced = draw(st.integers(0, n_stages - 2)) if transpose else -1
    for i in range(n_stages):
        if i == forced:
            name, stage = "transpose", transpose_stage(draw, ndim, sizes, wild)
        elif dag and draw(st.integers(0, 2)) == 0:
            name, stage = "branches", branches_stage(draw, ndim, sizes, wild)
        else:
            name, stage = simple_stage(draw, ndim, sizes, wild)
        after = _sizes_after(stage, ndim, sizes)
        if after is not None and not _small(after, ndim):
            break
        stages.append(stage)
        names.append(name)
        sizes = after
        if sizes is None:
            break
    if not stages or _cat_first(stages):
        stages, names = [getattr(nn, f"Conv{ndim}d")(C, C, 1)] + stages, ["conv"] + names
    return Drawn(make_positive(Net(stages)), first, tuple(names))


def _cat_first(stages) -> bool:
    """The first convolution is the 1x1 one after a concatenation.  rfmap's front end takes
    the input's channels from the first convolution and would build a 2*C-channel input:
    such models start with a 1x1 convolution (see test_concat_before_any_convolution)."""
    modules = list(Net(stages).modules())
    first = next((m for m in modules if isinstance(m, nn.modules.conv._ConvNd)), None)
    return any(isinstance(b, Branches) and b.mix is first for b in modules)
