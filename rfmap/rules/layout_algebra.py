"""Where a tensor's spatial axes are, digit by digit: the layout algebra of ``view``,
``reshape``, ``flatten``, ``unflatten``, ``permute``, ``transpose`` and ``roll`` (and ONNX
``Reshape``, ``Transpose``, ``Flatten``).

A spatial axis of ``n`` cells may be split into mixed-radix *factors* (digits) that live on
different tensor dims, next to non-spatial factors (batch, heads, channels).  After Swin's
window partition of an ``H x W`` map (``H = 8 * 7``) the batch dim holds ``(B, H_outer,
W_outer)`` and the token dim ``(H_inner, W_inner)``; after a space-to-depth written with
``view``/``permute`` the channel dim holds ``(C, H_inner, W_inner)``.  A :class:`Layout`
lists, per tensor dim, its factors from outer to inner; a :class:`Factor` is a digit of one
spatial axis (its radix ``size`` and its ``place`` value: cell index ``= sum(digit * place)``)
or a non-spatial factor.  ``offsets`` are ``torch.roll`` shifts not yet applied to the map:
tensor position ``t`` along an axis holds cell ``(t - offset) mod n``.

* a reshape regroups the row-major sequence of factors into the new shape, splitting a
  factor where a new dim boundary falls inside it (only on exact divisibility; otherwise
  the reshape really mixes positions, and :class:`~rfmap.rules.call.LayoutError` says why);
* a permute reorders the dims;
* an op that mixes a dim (attention, softmax, layer norm, a linear layer) makes every cell
  see the cells that differ from it only in the digits on that dim: per axis a partition
  into groups (:mod:`rfmap.core.regroup`) -- contiguous windows for inner digits, a strided
  grid for outer ones; an op that sums a dim away drops those digits (a gather).

The common case -- every axis whole on one dim -- is the plain ``Bind.dims`` form and never
builds a Layout.  Pure Python and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from rfmap.rules.call import LayoutError


@dataclass(frozen=True)
class Factor:
    """One factor of a tensor dim: a digit of spatial axis ``axis`` (radix ``size``, place
    value ``place``; ``key``: of the key copy in attention scores), or a non-spatial factor
    (``axis is None``)."""

    axis: int | None
    size: int
    place: int = 1
    key: bool = False

    @property
    def spatial(self) -> bool:
        return self.axis is not None

    def digit(self) -> tuple[int, int, int]:
        return (self.axis, self.size, self.place)  # type: ignore[return-value]


def _merge(factors: Iterable[Factor]) -> tuple[Factor, ...]:
    """Adjacent factors joined where they form one digit (same axis, consecutive places) or
    are both non-spatial; size-1 factors dropped."""
    out: list[Factor] = []
    for f in factors:
        if f.size == 1:
            continue
        if out:
            g = out[-1]
            if g.axis is None and f.axis is None:
                out[-1] = Factor(None, g.size * f.size)
                continue
            if g.axis is not None and g.axis == f.axis and g.key == f.key and g.place == f.place * f.size:
                out[-1] = Factor(g.axis, g.size * f.size, f.place, f.key)
                continue
        out.append(f)
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """Per tensor dim, its factors (outer to inner; a dim of size 1 has none); ``sizes``: the
    map's cells per spatial axis; ``offsets``: pending rolls; ``key_node``: for attention
    scores, the map of the key copy (factors with ``key=True``), and ``key_labels`` per axis
    the mask's refinement of the key groups (``None``: no mask)."""

    dims: tuple[tuple[Factor, ...], ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    key_node: str | None = None
    key_labels: tuple = ()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_dims(cls, dims: Sequence[int | None], shape: Sequence[int], sizes: Sequence[int]) -> Layout:
        """The layout of the plain form: axis ``a`` whole on tensor dim ``dims[a]`` (several
        axes on one dim: flattened row-major, the lower axis outer; ``None``: one cell)."""
        out = []
        for d, n in enumerate(shape):
            axes = [a for a, ad in enumerate(dims) if ad == d]
            if not axes:
                out.append(_merge([Factor(None, int(n))]))
                continue
            if math.prod(sizes[a] for a in axes) != int(n):
                raise LayoutError(f"dim {d} of size {n} does not hold spatial axes of sizes {[sizes[a] for a in axes]}")
            out.append(_merge(Factor(a, int(sizes[a])) for a in axes))
        for a, dim in enumerate(dims):
            if dim is None and sizes[a] != 1:
                raise LayoutError(f"spatial axis {a} of {sizes[a]} cells is on no dim")
        return cls(tuple(out), tuple(int(v) for v in sizes), (0,) * len(sizes))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(math.prod(f.size for f in fs) for fs in self.dims)

    @property
    def is_pair(self) -> bool:
        return self.key_node is not None

    def simple(self) -> tuple[int | None, ...] | None:
        """The plain ``Bind.dims`` form, or ``None`` where an axis is split, rolled or shares
        a dim with something else."""
        if any(self.offsets) or self.is_pair:
            return None
        dims: list[int | None] = [None] * len(self.sizes)
        for d, fs in enumerate(self.dims):
            spatial = [f for f in fs if f.spatial]
            if not spatial:
                continue
            if len(spatial) != len(fs):
                return None
            axes = [f.axis for f in fs]
            if axes != sorted(set(axes)):  # type: ignore[type-var]
                return None
            for f in fs:
                if f.place != 1 or f.size != self.sizes[f.axis]:  # type: ignore[index]
                    return None
                dims[f.axis] = d  # type: ignore[index]
        return tuple(dims)

    def approx_dims(self) -> tuple[int | None, ...]:
        """Per axis the dim of its outermost factor (``None``: one cell): for messages."""
        dims: list[int | None] = [None] * len(self.sizes)
        for d, fs in enumerate(self.dims):
            for f in fs:
                if f.spatial and not f.key and dims[f.axis] is None:  # type: ignore[index]
                    dims[f.axis] = d  # type: ignore[index]
        return tuple(dims)

    def factors(self, axis: int, key: bool = False) -> list[tuple[int, Factor]]:
        """``(dim, factor)`` of the digits of ``axis`` (of the key copy with ``key``)."""
        return [(d, f) for d, fs in enumerate(self.dims) for f in fs if f.axis == axis and f.key == key]

    def spatial_dims(self) -> set[int]:
        return {d for d, fs in enumerate(self.dims) if any(f.spatial for f in fs)}

    def describe(self) -> str:
        names = "HW" if len(self.sizes) == 2 else "DHW"[-len(self.sizes):] if len(self.sizes) <= 3 else "?"
        parts = []
        for fs in self.dims:
            items = [f"{'k' if f.key else ''}{names[f.axis or 0]}{f.size}" if f.spatial else str(f.size) for f in fs]
            parts.append("(" + " ".join(items) + ")" if items else "()")
        return " ".join(parts)

    # -- the algebra --------------------------------------------------------------------

    def reshape(self, shape: Sequence[int]) -> Layout:
        """The layout after a row-major reshape to ``shape`` (``view``, ``flatten``, ...)."""
        shape = [int(v) for v in shape]
        if math.prod(shape) != math.prod(self.shape):
            raise LayoutError(f"it reshapes {list(self.shape)} to {shape}")
        seq = [f for fs in self.dims for f in fs]
        out: list[tuple[Factor, ...]] = []
        i = 0
        for d, m in enumerate(shape):
            group: list[Factor] = []
            need = m
            while need > 1:
                if i >= len(seq):
                    raise LayoutError(f"it reshapes {list(self.shape)} to {shape}")
                f = seq[i]
                if f.size <= need and need % f.size == 0:
                    group.append(f)
                    need //= f.size
                    i += 1
                elif f.size % need == 0:
                    group.append(Factor(f.axis, need, f.place * (f.size // need), f.key))
                    seq[i] = Factor(f.axis, f.size // need, f.place, f.key)
                    need = 1
                elif not f.spatial and all(not g.spatial for g in seq[i + 1:]):
                    # only channels from here on: any regrouping of them keeps every position
                    out.append(_merge(group + [Factor(None, need)]))
                    out.extend(_merge([Factor(None, v)]) for v in shape[d + 1:])
                    return replace(self, dims=tuple(out))
                else:
                    what = f"{f.size} cells of spatial axis {f.axis}" if f.spatial else f"a dim of {f.size}"
                    raise LayoutError(f"it splits {what} across a dim boundary of {list(self.shape)} -> {shape} "
                                      "that does not divide it, mixing positions")
            out.append(_merge(group))
        if i != len(seq):
            raise LayoutError(f"it reshapes {list(self.shape)} to {shape}")
        return replace(self, dims=tuple(out))

    def permute(self, perm: Sequence[int]) -> Layout:
        return replace(self, dims=tuple(self.dims[p] for p in perm))

    def roll(self, shifts: dict[int, int]) -> Layout:
        """``torch.roll`` by ``shifts[axis]`` along whole axes."""
        offsets = list(self.offsets)
        for a, s in shifts.items():
            offsets[a] = (offsets[a] + s) % self.sizes[a]
        return replace(self, offsets=tuple(offsets))

    def positions(self, axis: int, key: bool = False) -> np.ndarray:
        """Per cell of ``axis``, its tensor position along the axis (rolls applied)."""
        n = self.sizes[axis]
        return (np.arange(n, dtype=np.int64) + self.offsets[axis]) % n

    def digits_of(self, axis: int, key: bool = False) -> list[tuple[int, Factor, np.ndarray]]:
        """``(dim, factor, digit per cell)`` for the digits of ``axis``."""
        t = self.positions(axis, key)
        return [(d, f, (t // f.place) % f.size) for d, f in self.factors(axis, key)]


# -- mixing and dropping digits ------------------------------------------------------------


def mix_labels(layout: Layout, axis: int, mixed: Sequence[int], key: bool = False) -> np.ndarray | None:
    """Per cell of ``axis``, a label shared by the cells that differ only in the digits on
    tensor dims ``mixed`` (``None``: no digit of the axis is there)."""
    free = set(mixed)
    digits = layout.digits_of(axis, key)
    if not any(d in free for d, _, _ in digits):
        return None
    t = layout.positions(axis, key)
    for d, f, v in digits:
        if d in free:
            t = t - v * f.place
    return t


def drop_digits(layout: Layout, axis: int, dropped: Sequence[int]) -> tuple[np.ndarray, int, list[tuple[int, Factor]]] | None:
    """Drop the digits of ``axis`` on tensor dims ``dropped``: per cell its new cell (the
    kept digits, in place order), the new number of cells, and the kept ``(dim, factor)``
    with their new places.  ``None``: no digit of the axis is there."""
    gone = set(dropped)
    digits = layout.digits_of(axis)
    if not any(d in gone for d, _, _ in digits):
        return None
    kept = sorted([(d, f, v) for d, f, v in digits if d not in gone], key=lambda x: -x[1].place)
    owner = np.zeros(layout.sizes[axis], dtype=np.int64)
    place = 1
    new: list[tuple[int, Factor]] = []
    for d, f, v in reversed(kept):
        owner += v * place
        new.append((d, Factor(axis, f.size, place)))
        place *= f.size
    return owner, place, new[::-1]


def relabel(layout: Layout, axis: int, new: list[tuple[int, Factor]], dropped: Iterable[int], n: int) -> Layout:
    """``layout`` with the digits of ``axis`` replaced by ``new`` (on the same dims) and
    those on ``dropped`` dims gone; the axis now has ``n`` cells, unrolled."""
    dropped = set(dropped)
    by_place = {(d, f.size): f for d, f in new}
    dims = []
    for d, fs in enumerate(layout.dims):
        out = []
        for f in fs:
            if f.axis != axis or f.key:
                out.append(f)
            elif d not in dropped:
                out.append(by_place.get((d, f.size), f))
        dims.append(_merge(out))
    sizes = list(layout.sizes)
    sizes[axis] = n
    offsets = list(layout.offsets)
    offsets[axis] = 0
    return replace(layout, dims=tuple(dims), sizes=tuple(sizes), offsets=tuple(offsets))


def without_dims(layout: Layout, dims: Iterable[int], keep_size_one: bool = False) -> Layout:
    """``layout`` with tensor dims ``dims`` removed (or, ``keep_size_one``, emptied); their
    factors must be non-spatial."""
    removed = set(dims)
    out: list[tuple[Factor, ...]] = []
    for d, fs in enumerate(layout.dims):
        if d in removed:
            if any(f.spatial for f in fs):
                raise LayoutError(f"it removes dim {d}, which holds spatial positions")
            if keep_size_one:
                out.append(())
            continue
        out.append(fs)
    return replace(layout, dims=tuple(out))


def with_shape(layout: Layout, shape: Sequence[int]) -> Layout:
    """``layout`` broadcast or resized to ``shape`` on dims without spatial factors (leading
    dims added as needed, numpy's rule)."""
    shape = [int(v) for v in shape]
    extra = len(shape) - len(layout.dims)
    if extra < 0:
        raise LayoutError(f"a rank-{len(layout.dims)} layout cannot take shape {shape}")
    dims: list[tuple[Factor, ...]] = [()] * extra + list(layout.dims)
    for d, (fs, n) in enumerate(zip(dims, shape)):
        if math.prod(f.size for f in fs) == n:
            continue
        if any(f.spatial for f in fs):
            raise LayoutError(f"dim {d} holds spatial positions but changes size to {n}")
        dims[d] = _merge([Factor(None, n)])
    return replace(layout, dims=tuple(dims))
