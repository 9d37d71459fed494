"""Crop offsets: where to crop one feature map so that it lines up with another.

A segmentation net that adds a coarse, upsampled map to a finer one (FCN's ``fuse_pool4 =
upscore2 + crop(score_pool4)``) or compares its output with the image (FCN's ``score =
crop(upscore, data)``) crops the larger map at an offset: cell ``offset + i`` of the cropped
map ``A`` lines up with cell ``i`` of the reference map ``B``, on each spatial axis.  What
"lines up" means is a convention; two are offered, both in the pixel-index convention
(cell ``i`` of a map is the point ``i`` of that map; input pixel ``i`` is the point ``i``):

``caffe``
    Caffe's ``coord_map`` (``python/caffe/coord_map.py``, used to generate the FCN
    prototxts): every layer is an affine map between its input and output coordinates,
    centered on the kernel.  A convolution or pooling window (kernel ``k``, dilation ``d``,
    stride ``s``, left padding ``p``) has ``x_in = s * x_out + (d*(k-1)/2 - p)``; a
    deconvolution is the inverse, ``x_out = s * x_in + (d*(k-1)/2 - p)``; a crop at offset
    ``c`` (or a negative pad) has ``x_in = x_out + c``, a pad ``x_in = x_out - p``;
    pointwise layers and merges are the identity.  The maps of ``A`` and ``B`` are
    composed back to their nearest common ancestor; the crop needs equal scales, and its
    offset is the translation between the two coordinate systems, ``x_B = x_A - offset``.
    Resampling, adaptive and global layers have no such map (an error names the layer).

``rf-center``
    The centers of the receptive fields as rfmap reports them: the center of the union of
    the RF boxes of a cell (:attr:`~rfmap.core.result.AxisGeometry.center0` for cell 0,
    plus ``i * stride``).  The offset makes the RF centers of ``A``'s cell ``offset + i``
    and ``B``'s cell ``i`` coincide: ``offset = (center0(B) - center0(A)) / stride``, with
    equal strides.  After a transposed convolution the RF centers are periodic, not
    affine: FCN-32s' ``upscore`` (kernel 64, stride 32) has the same RF for its cells
    0..31, centered at -3.5, so this convention gives 3.5 where Caffe's gives 19.

An offset that is not a non-negative integer is no crop (``CropOffset.is_crop``); it is
reported as it is, an exact fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from rfmap.core.axis import AxisMap, Identity, Transposed, Window
from rfmap.core.result import axis_names, fmt_number, json_number
from rfmap.errors import RFMapError, at_layer
from rfmap.mapping.names import CONVENTIONS  # noqa: E402  (re-exported)


@dataclass(frozen=True)
class Affine:
    """``x_to = scale * x_from + shift`` along one axis, exact."""

    scale: Fraction
    shift: Fraction

    def then(self, outer: Affine) -> Affine:
        """This map followed by ``outer``."""
        return Affine(outer.scale * self.scale, outer.scale * self.shift + outer.shift)

    def inverse(self) -> Affine:
        return Affine(1 / self.scale, -self.shift / self.scale)


IDENTITY = Affine(Fraction(1), Fraction(0))


@dataclass(frozen=True)
class CropOffset:
    """The offset at which to crop ``cropped`` so that it lines up with ``reference``.

    ``offset`` per spatial axis ((H, W) in 2-D): cell ``offset + i`` of ``cropped`` lines up
    with cell ``i`` of ``reference`` under ``convention``.  ``common``: the nearest common
    ancestor where Caffe's maps meet (``None`` for ``rf-center``).
    """

    cropped: str
    reference: str
    convention: str
    offset: tuple[Fraction, ...]
    common: str | None = None

    @property
    def is_crop(self) -> bool:
        """Whether the offsets are non-negative integers (a crop can realize them)."""
        return all(o.denominator == 1 and o >= 0 for o in self.offset)

    def to_dict(self) -> dict:
        return {
            "cropped": self.cropped,
            "reference": self.reference,
            "convention": self.convention,
            "offset": [json_number(o) for o in self.offset],
            "is_crop": self.is_crop,
            "common": self.common,
        }


def axis_affine(rule: AxisMap) -> Affine | None:
    """Caffe's map of one layer along one axis, from output to input coordinates
    (``x_in = scale * x_out + shift``); ``None`` when the rule has none."""
    if isinstance(rule, Window):
        half = Fraction(rule.dilation * (rule.kernel - 1), 2)
        return Affine(Fraction(rule.stride_), half - rule.pad_left)
    if isinstance(rule, Transposed):
        half = Fraction(rule.dilation * (rule.kernel - 1), 2)
        return Affine(Fraction(1, rule.stride_), (rule.pad_left - half) / rule.stride_)
    if isinstance(rule, Identity):
        return IDENTITY
    return None


def _analysis(source: Any, input_size=None):
    from rfmap.core.analysis import Analysis

    if isinstance(source, Analysis):
        return source
    from rfmap import analyze

    return analyze(source, input_size)


def coord_map(source: Any, from_layer: str, to_layer: str, input_size=None) -> tuple[Affine, ...]:
    """Caffe's ``coord_map_from_to``: per axis, ``x_to = scale * x_from + shift`` between the
    cells of two layers (see the module docstring).  ``source``: an
    :class:`~rfmap.core.analysis.Analysis` or anything :func:`rfmap.analyze` takes."""
    return _coord_map(_analysis(source, input_size), from_layer, to_layer)[0]


def _coord_map(analysis, from_layer: str, to_layer: str) -> tuple[tuple[Affine, ...], str]:
    graph = analysis.graph
    a, b = analysis.layer(from_layer).name, analysis.layer(to_layer).name
    index = {node.name: k for k, node in enumerate(graph.nodes)}
    anc_a, anc_b = _ancestors(graph, index, a), _ancestors(graph, index, b)
    common = max(anc_a & anc_b, key=index.__getitem__)  # the input is an ancestor of every node
    wanted = anc_a | anc_b
    maps: dict[str, tuple[Affine, ...]] = {common: (IDENTITY,) * analysis.ndim}
    for node in graph.nodes[index[common] + 1 :]:
        if node.name not in wanted:
            continue
        parents = [p for p in node.inputs if p in maps]
        if not parents:
            continue  # not below the common ancestor
        if node.layer.merge:
            for p in parents[1:]:
                if maps[p] != maps[parents[0]]:
                    raise at_layer(
                        node.name,
                        node.op,
                        f"paths '{parents[0]}' and '{p}' meet with different coordinate maps "
                        f"({_fmt(maps[parents[0]])} vs {_fmt(maps[p])})",
                    )
            maps[node.name] = maps[parents[0]]
            continue
        rules = node.layer.axis_maps(analysis.layer(parents[0]).output_size)
        steps = []
        for rule in rules:
            step = axis_affine(rule)
            if step is None:
                raise at_layer(
                    node.name,
                    node.op,
                    "has no affine coordinate map under Caffe's coord_map (which covers convolution, "
                    "pooling, deconvolution, crop, pad and pointwise layers)",
                )
            steps.append(step)
        # x_common = maps[parent](x_parent), x_parent = step(x_node)
        maps[node.name] = tuple(s.then(m) for s, m in zip(steps, maps[parents[0]]))
    # x_common = m_a(x_a) = m_b(x_b)  =>  x_b = m_b^-1(m_a(x_a))
    return tuple(ma.then(mb.inverse()) for ma, mb in zip(maps[a], maps[b])), common


def _ancestors(graph, index: dict[str, int], name: str) -> set[str]:
    seen = {name}
    for node in reversed(graph.nodes[: index[name] + 1]):
        if node.name in seen:
            seen.update(node.inputs)
    return seen


def _fmt(maps: tuple[Affine, ...]) -> str:
    return ", ".join(f"x*{fmt_number(m.scale)} + {fmt_number(m.shift)}" for m in maps)


def crop_offset(
    source: Any, cropped: str, reference: str, *, convention: str = "caffe", input_size=None
) -> CropOffset:
    """The offset at which to crop layer ``cropped`` so that it lines up with ``reference``
    (Caffe's ``crop(cropped, reference)``), under ``convention`` (``"caffe"`` or
    ``"rf-center"``, see the module docstring).

    ``source``: an :class:`~rfmap.core.analysis.Analysis` or anything :func:`rfmap.analyze`
    takes (at ``input_size``).  Raises :class:`~rfmap.RFMapError` naming the layers when the
    two maps differ in scale (no crop can align them) or a layer has no map.
    """
    if convention not in CONVENTIONS:
        raise RFMapError(f"unknown convention {convention!r}; conventions: {', '.join(CONVENTIONS)}")
    analysis = _analysis(source, input_size)
    if analysis.layer(cropped).input_axes != analysis.layer(reference).input_axes:
        raise RFMapError(f"layers '{cropped}' and '{reference}' hold the image's axes in different orders (one is "
                         "transposed): no crop aligns them")
    if convention == "caffe":
        maps, common = _coord_map(analysis, cropped, reference)
        for axis, m in zip(axis_names(analysis.ndim), maps):
            if m.scale != 1:
                raise RFMapError(
                    f"layers '{cropped}' and '{reference}' differ in scale on axis {axis} "
                    f"(one '{cropped}' cell is {fmt_number(m.scale)} '{reference}' cells): no crop aligns them"
                )
        return CropOffset(cropped, reference, convention, tuple(-m.shift for m in maps), common)
    row_a, row_b = analysis.layer(cropped), analysis.layer(reference)
    offsets = []
    for axis, ga, gb in zip(axis_names(analysis.ndim), row_a.axes, row_b.axes):
        if ga.stride != gb.stride or ga.stride == 0:
            raise RFMapError(
                f"layers '{cropped}' and '{reference}' have strides {fmt_number(ga.stride)} and {fmt_number(gb.stride)} "
                f"on axis {axis}: no crop aligns their RF centers"
            )
        offsets.append((gb.center0 - ga.center0) / ga.stride)
    return CropOffset(cropped, reference, convention, tuple(offsets))
