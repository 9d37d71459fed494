"""Anchor design checked against receptive fields: one report per detector configuration.

A configuration (YAML, TOML or JSON file, a mapping, or a bundled name: ``s3fd``,
``ssd300``, ``rpn-vgg16``; see ``rfmap/anchors/configs/``) names a network and, per detection level,
the feature layer, the anchor step, the anchor boxes and the head convolutions::

    name: S3FD
    network: s3fd            # a SOURCE: zoo name, spec/ONNX path (relative to this file),
                             # a layer list, or an inline spec mapping {name, layers: [...]}
    input: 640               # H or [H, W]; default: the network's own
    anchor_offset: 0.5       # anchor centers at (i + anchor_offset) * step (continuous coords)
    iou: [0.5, 0.35]         # IoU thresholds of the match counts (default [0.5, 0.35])
    gt_sizes: [16, 32, 64]   # ground-truth box sides (default: anchor scales and midpoints)
    gt_aspect_ratio: 1       # ground-truth w / h
    erf: closed-form         # or {measure: true, n: 16, weights: uniform, channels: 2}
    center_tolerance: 1.0    # pixels; larger center offsets are flagged
    density_tolerance: 1.5   # densities below (largest / this) are flagged
    suggest: {density: 4}    # the equal-proportion interval rule (anchor = 4 x stride)
    levels:
      - layer: conv3_3
        stride: 4            # the anchor step (number, "300/38", or [h, w]); default:
                             # the effective stride of the prediction layer
        sizes: [16]          # square-ish anchors: sizes x aspect_ratios (ratio = w / h)
        aspect_ratios: [1]
        head: [{op: conv, kernel: 3, padding: 1}]   # convs appended to the layer, or the
                             # name of a layer of the network (SSD's conv4_3_norm_mbox_loc)

Instead of ``sizes``/``aspect_ratios`` a level may list ``boxes: [[h, w], ...]`` or use
Caffe's PriorBox rule (SSD, S3FD): ``min_size``, ``max_size``, ``aspect_ratios`` (the
ratios besides 1) and ``flip``: boxes ``min x min``, ``sqrt(min max)`` squared, and
``min sqrt(ar)`` wide by ``min / sqrt(ar)`` high for each ratio (and its flip).

Coordinates.  Anchors and ground-truth boxes are in the *continuous* convention of
detectors (pixel ``i`` covers ``[i, i + 1)``; SSD's PriorBox, py-faster-rcnn's anchors):
the anchor of cell ``i`` is centered at ``(i + anchor_offset) * step``.  RF centers come
from the engine in rfmap's pixel-index convention and are shifted by +0.5 to compare: a
VGG-style layer (``same`` convolutions, 2x2/2 pools) has its cell ``i`` centered at
``(i + 0.5) * stride`` in continuous coordinates, exactly where ``anchor_offset = 0.5``
puts the anchors.  The offset reported is ``RF center - anchor center``.

What a level reports (:class:`LevelReport`): the anchor step and the effective stride,
the feature (prediction) map size, the TRF without and with the head convolutions, the
offset between RF centers and anchor centers (first cell, last cell, largest), density
(FaceBoxes' ``A_density = A_scale / A_interval``: anchor scale ``sqrt(h w)`` over the step),
anchor / TRF and anchor / ERF (the ERF span ``4 sigma`` from :func:`rfmap.erf.closed_form_sigma`
or measured with :func:`rfmap.erf.erf`), the anchor count and the expected number of anchors
whose IoU with a ground-truth box reaches each threshold.

Expected matches.  For a ground-truth box placed uniformly at random (its center uniform
over a period of the anchor lattice, the lattice taken as unbounded), the expected number
of anchors of a level with IoU >= t is ``area{(dx, dy): IoU(dx, dy) >= t} / (step_y step_x)``
summed over the level's boxes -- the area of the set of center displacements that reach
the threshold, which has a closed form (the overlap along each axis is a trapezoid in the
displacement; see :func:`expected_matches`).  ``method="sampled"`` instead counts IoUs
against the level's real anchors for ground-truth boxes on a dense grid of positions over
one step around the image center.

Flags: ``anchor_larger_than_trf`` (an anchor exceeds the TRF with the head, on some axis:
the prediction cannot see the whole object), ``misaligned_centers`` (RF and anchor
centers differ by more than ``center_tolerance`` pixels somewhere on the map),
``step_differs_from_stride`` (the offset then drifts across the map), ``anchors_outside_image``
(the lattice runs past the image), ``uneven_density`` (FaceBoxes' imbalance: a box with a
density below the largest one / ``density_tolerance``), ``few_matches`` (a ground-truth
size expected to match fewer than one anchor at the first IoU threshold; S3FD's motivation
for lowering it to 0.35).

The suggested configuration follows the equal-proportion interval principle of S3FD
(Zhang et al., "S3FD: Single Shot Scale-invariant Face Detector", ICCV 2017, Sec. 3.1 and
Table 1): on each level the anchor scale is ``density x stride`` (``density = 4``: anchors
16..512 on strides 4..128), so that anchors of every scale are equally dense on the image;
the step is the level's effective stride, and ``anchor_offset`` puts each anchor on its
cell's RF center.  S3FD pairs this with anchors well inside the TRF, to match the ERF.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rfmap.errors import RFMapError
from rfmap.core.graph import Graph, GraphBuilder

__all__ = [
    "AnchorConfig",
    "AnchorReport",
    "Flag",
    "LevelConfig",
    "LevelReport",
    "SuggestedLevel",
    "analyze_anchors",
    "builtin_configs",
    "expected_matches",
    "load_config",
    "render_anchors",
]

DATA = Path(__file__).resolve().parent / "configs"

RULE = (
    "equal-proportion interval principle (S3FD, Zhang et al., ICCV 2017, Sec. 3.1): anchor scale = "
    "{density} x the level's effective stride, so every scale is equally dense on the image; step = "
    "effective stride; anchor_offset puts each anchor on its cell's RF center"
)

_CONFIG_KEYS = {
    "name",
    "description",
    "source",
    "network",
    "input",
    "input_size",
    "anchor_offset",
    "iou",
    "gt_sizes",
    "gt_aspect_ratio",
    "erf",
    "center_tolerance",
    "density_tolerance",
    "suggest",
    "levels",
}
_LEVEL_KEYS = {
    "name",
    "layer",
    "stride",
    "step",
    "anchor_offset",
    "sizes",
    "aspect_ratios",
    "boxes",
    "min_size",
    "max_size",
    "flip",
    "head",
}


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelConfig:
    """One detection level: anchors on the output of ``head`` (or ``layer`` without a head).

    ``boxes``: anchor ``(h, w)`` pairs per cell; ``step``: per-axis anchor step, ``None`` for
    the effective stride; ``head``: a tuple of layer specs (mappings as in spec files)
    appended to ``layer``, or the name of a layer of the network, or ``None``.
    """

    name: str
    layer: str
    boxes: tuple[tuple[float, float], ...]
    step: tuple[Fraction, ...] | None = None
    anchor_offset: float | None = None
    head: Any = None


@dataclass(frozen=True)
class AnchorConfig:
    name: str
    graph: Graph
    input_size: tuple[int, ...]
    levels: tuple[LevelConfig, ...]
    anchor_offset: float = 0.5
    iou: tuple[float, ...] = (0.5, 0.35)
    gt_sizes: tuple[float, ...] | None = None
    gt_aspect_ratio: float = 1.0
    erf: Mapping[str, Any] | None = None  # None: closed form; else options of rfmap.erf.erf
    center_tolerance: float = 1.0
    density_tolerance: float = 1.5
    density: float = 4.0
    description: str = ""


def builtin_configs() -> tuple[str, ...]:
    """Names of the configurations shipped in ``rfmap/anchors/configs`` (``rfmap anchors s3fd``)."""
    return tuple(sorted(p.stem for p in DATA.glob("*.yaml")))


def load_config(config: Any, **overrides: Any) -> AnchorConfig:
    """An :class:`AnchorConfig` from a file path, a bundled name, a mapping or a config.

    ``overrides`` replace top-level keys of the mapping (``input=512``, ``iou=[0.5]``).
    """
    if isinstance(config, AnchorConfig):
        if overrides:
            raise RFMapError("overrides apply to a configuration file or mapping, not to an AnchorConfig")
        return config
    base = Path.cwd()
    where = "anchor config"
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.exists() and (DATA / f"{config}.yaml").exists():
            path = DATA / f"{config}.yaml"
        if not path.exists():
            names = ", ".join(builtin_configs())
            raise RFMapError(f"'{config}': no such anchor config file (bundled: {names})")
        data = _read(path)
        base, where = path.resolve().parent, str(path)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise RFMapError(f"an anchor config is a file, a bundled name or a mapping, got {type(config).__name__}")
    if not isinstance(data, Mapping):
        raise RFMapError(f"{where}: the top level must be a mapping")
    data = {**data, **overrides}
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise RFMapError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "network" not in data:
        raise RFMapError(f"{where}: no 'network' (a zoo name, a spec file, a layer list or an inline spec)")
    graph = _network(data["network"], base, where, from_user="network" in overrides)
    size = data.get("input", data.get("input_size", graph.input_size))
    if size is None:
        raise RFMapError(f"{where}: no 'input' size and the network has no default one")
    size = _size(size, graph, where)
    offset = _number(data.get("anchor_offset", 0.5), f"{where}: anchor_offset")
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels:
        raise RFMapError(f"{where}: 'levels' must be a non-empty list")
    parsed = tuple(_level(entry, i, where) for i, entry in enumerate(levels))
    iou = data.get("iou", [0.5, 0.35])
    iou = tuple(_number(v, f"{where}: iou") for v in (iou if isinstance(iou, list) else [iou]))
    if not all(0 < v <= 1 for v in iou):
        raise RFMapError(f"{where}: IoU thresholds must be in (0, 1], got {list(iou)}")
    gt = data.get("gt_sizes")
    if gt is not None:
        gt = tuple(_number(v, f"{where}: gt_sizes") for v in (gt if isinstance(gt, list) else [gt]))
        if not all(v > 0 for v in gt):
            raise RFMapError(f"{where}: gt_sizes must be positive")
    erf_opts = data.get("erf")
    if erf_opts in (None, "closed-form", "closed_form", False):
        erf_opts = None
    elif erf_opts in (True, "measure", "measured"):
        erf_opts = {}
    elif isinstance(erf_opts, Mapping):
        erf_opts = dict(erf_opts)
        if not erf_opts.pop("measure", True):
            erf_opts = None
    else:
        raise RFMapError(f"{where}: erf must be 'closed-form', 'measure' or a mapping of erf() options")
    suggest = data.get("suggest") or {}
    if not isinstance(suggest, Mapping) or set(suggest) - {"density"}:
        raise RFMapError(f"{where}: suggest takes {{density: 4}}")
    return AnchorConfig(
        name=str(data.get("name", graph.name)),
        graph=graph,
        input_size=size,
        levels=parsed,
        anchor_offset=offset,
        iou=iou,
        gt_sizes=gt,
        gt_aspect_ratio=_number(data.get("gt_aspect_ratio", 1.0), f"{where}: gt_aspect_ratio"),
        erf=erf_opts,
        center_tolerance=_number(data.get("center_tolerance", 1.0), f"{where}: center_tolerance"),
        density_tolerance=_number(data.get("density_tolerance", 1.5), f"{where}: density_tolerance"),
        density=_number(suggest.get("density", 4), f"{where}: suggest.density"),
        description=str(data.get("description", data.get("source", ""))).strip(),
    )


def _read(path: Path) -> Any:
    from rfmap.frontends.spec import read_mapping

    return read_mapping(path, what="anchor config")[0]


def _network(value: Any, base: Path, where: str, *, from_user: bool = False) -> Graph:
    """The network a config names.  A config file is data: its ``network`` is a zoo name, a
    spec or ONNX file (relative to the config) or a layer list or inline spec, never code.
    ``from_user``: the value came from the caller of :func:`load_config` (an override such
    as ``network=my_module``), who may pass any source :func:`rfmap.analyze` accepts."""
    from rfmap.frontends import load, load_data

    if isinstance(value, Mapping):
        from rfmap.frontends.spec import spec_to_graph

        return spec_to_graph(dict(value), source=f"{where}: network", default_name="network")
    try:
        if from_user:
            return load(value)
        return load_data(value, base, where=f"{where}: network")
    except RFMapError as exc:
        message = str(exc)
        raise RFMapError(message if message.startswith(f"{where}: network") else f"{where}: network: {message}") from None


def _size(value: Any, graph: Graph, where: str) -> tuple[int, ...]:
    ndim = len(graph.input_size) if graph.input_size else 2
    if isinstance(value, bool):
        raise RFMapError(f"{where}: input must be an int or a list of ints, got {value!r}")
    if isinstance(value, int):
        return (value,) * ndim
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise RFMapError(f"{where}: input must be an int or a list of ints, got {value!r}")


def _number(value: Any, what: str) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(Fraction(str(value))) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise RFMapError(f"{what}: expected a number, got {value!r}") from None


def _fraction(value: Any, what: str) -> Fraction:
    try:
        if isinstance(value, bool):
            raise TypeError
        f = Fraction(str(value)) if isinstance(value, (str, float)) else Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise RFMapError(f"{what}: expected a number such as 16 or '300/38', got {value!r}") from None
    if f <= 0:
        raise RFMapError(f"{what}: must be positive, got {value!r}")
    return f


def _numbers(value: Any, what: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    out = [_number(v, what) for v in values]
    if not all(v > 0 for v in out):
        raise RFMapError(f"{what}: must be positive, got {value!r}")
    return out


def _level(entry: Any, i: int, where: str) -> LevelConfig:
    here = f"{where}: level {i + 1}"
    if not isinstance(entry, Mapping):
        raise RFMapError(f"{here}: expected a mapping with 'layer' and anchors, got {entry!r}")
    unknown = set(entry) - _LEVEL_KEYS
    if unknown:
        raise RFMapError(f"{here}: unknown key(s) {', '.join(sorted(unknown))}")
    if "layer" not in entry:
        raise RFMapError(f"{here}: no 'layer'")
    layer = str(entry["layer"])
    here = f"{where}: level {i + 1} ('{layer}')"
    step = entry.get("step", entry.get("stride"))
    if step is not None:
        values = step if isinstance(step, list) else [step]
        step = tuple(_fraction(v, f"{here}: stride") for v in values)
    kinds = [k for k in ("sizes", "boxes", "min_size") if k in entry]
    if len(kinds) != 1:
        raise RFMapError(f"{here}: give exactly one of sizes (with aspect_ratios), boxes, or min_size (PriorBox)")
    boxes: list[tuple[float, float]] = []
    if "sizes" in entry:
        ratios = _numbers(entry.get("aspect_ratios", [1]), f"{here}: aspect_ratios")
        for s in _numbers(entry["sizes"], f"{here}: sizes"):
            for r in ratios:
                boxes.append((s / math.sqrt(r), s * math.sqrt(r)))
    elif "boxes" in entry:
        raw = entry["boxes"]
        if not isinstance(raw, list) or not all(isinstance(b, list) and len(b) == 2 for b in raw):
            raise RFMapError(f"{here}: boxes must be a list of [h, w] pairs")
        boxes = [tuple(_numbers(b, f"{here}: boxes")) for b in raw]  # type: ignore[misc]
    else:
        mins = _numbers(entry["min_size"], f"{here}: min_size")
        maxs = _numbers(entry["max_size"], f"{here}: max_size") if "max_size" in entry else []
        if maxs and len(maxs) != len(mins):
            raise RFMapError(f"{here}: max_size needs one value per min_size")
        ratios = _numbers(entry.get("aspect_ratios", []), f"{here}: aspect_ratios") if entry.get("aspect_ratios") else []
        flip = bool(entry.get("flip", True))
        for k, m in enumerate(mins):
            boxes.append((m, m))
            if maxs:
                s = math.sqrt(m * maxs[k])
                boxes.append((s, s))
            for r in ratios:
                if abs(r - 1) < 1e-6:
                    continue
                boxes.append((m / math.sqrt(r), m * math.sqrt(r)))
                if flip:
                    boxes.append((m * math.sqrt(r), m / math.sqrt(r)))
    head = entry.get("head")
    if head is not None and not isinstance(head, (str, list)):
        raise RFMapError(f"{here}: head must be a list of layer specs or the name of a layer")
    if isinstance(head, list) and not all(isinstance(h, Mapping) and "op" in h for h in head):
        raise RFMapError(f"{here}: head layers must be mappings with an 'op' (as in spec files)")
    offset = entry.get("anchor_offset")
    return LevelConfig(
        name=str(entry.get("name", layer)),
        layer=layer,
        boxes=tuple(boxes),
        step=step,
        anchor_offset=None if offset is None else _number(offset, f"{here}: anchor_offset"),
        head=tuple(dict(h) for h in head) if isinstance(head, list) else head,
    )


def _with_heads(config: AnchorConfig) -> tuple[Graph, list[str]]:
    """The network with every level's head convolutions appended; the prediction layer per level."""
    from rfmap.core.registry import make_layer

    graph = config.graph
    names = {node.name for node in graph.nodes}
    b = GraphBuilder(graph.name, graph.input_size)
    for node in graph.nodes[1:]:
        b.add(node.name, node.layer, *node.inputs)
    outputs = []
    for i, level in enumerate(config.levels):
        here = f"level {i + 1} ('{level.layer}')"
        if level.layer not in names:
            raise RFMapError(f"{here}: no layer named '{level.layer}' in '{graph.name}'")
        if level.head is None:
            outputs.append(level.layer)
            continue
        if isinstance(level.head, str):
            if level.head not in names:
                raise RFMapError(f"{here}: no head layer named '{level.head}' in '{graph.name}'")
            outputs.append(level.head)
            continue
        x = level.layer
        for j, spec in enumerate(level.head):
            params = dict(spec)
            op = params.pop("op")
            name = str(params.pop("name", f"{level.name}_head{j + 1}" if len(level.head) > 1 else f"{level.name}_head"))
            if name in names:
                raise RFMapError(f"{here}: head layer name '{name}' is already used")
            try:
                layer = make_layer(op, **params)
            except RFMapError as exc:
                raise RFMapError(f"{here}: head layer {j + 1}: {exc}") from None
            x = b.add(name, layer, x)
            names.add(name)
        outputs.append(x)
    return b.build(), outputs


# -- expected matches ------------------------------------------------------------------------


def expected_matches(gt: Sequence[float], box: Sequence[float], step: Sequence[float], t: float) -> float:
    """Expected number of anchors of one shape with IoU >= ``t`` with a ground-truth box.

    ``gt`` and ``box``: ``(h, w)``; ``step``: the lattice step ``(step_y, step_x)``.  The
    box center is uniform over a lattice period and the lattice unbounded, so the count is
    ``area{(dy, dx): IoU >= t} / (step_y step_x)``.  The intersection is a product of
    per-axis overlaps; along x, ``ov(dx) = min(m, P/2 - |dx|)^+`` with ``m = min(g_w, a_w)``
    and ``P = g_w + a_w``: a plateau of length ``|g_w - a_w|`` and two ramps.  IoU >= t iff
    the intersection reaches ``T = t (A_g + A_a) / (1 + t)``; the set of ``dy`` with
    ``ov_y >= v`` has length ``P_y - 2 v`` (for ``0 < v <= m_y``), and integrating over the
    distribution of ``ov_x`` gives
    ``|g_w - a_w| L_y(T / m_x) + 2 [P_y (m_x - u0) - 2 T ln(m_x / u0)]``, ``u0 = T / m_y``.
    """
    gh, gw = (float(v) for v in gt)
    ah, aw = (float(v) for v in box)
    sy, sx = (float(v) for v in step)
    t = float(t)
    T = t * (gh * gw + ah * aw) / (1 + t)
    mx, my = min(gw, aw), min(gh, ah)
    py = gh + ah
    if T > mx * my * (1 + 1e-12):
        return 0.0

    def length_y(v: float) -> float:
        return py - 2 * v if 0 < v <= my * (1 + 1e-15) else 0.0

    area = abs(gw - aw) * length_y(T / mx)
    u0 = T / my
    if u0 < mx:
        area += 2 * (py * (mx - u0) - 2 * T * math.log(mx / u0))
    return max(area, 0.0) / (sy * sx)


def _iou(gt: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(y0, x0, y1, x1)`` (continuous): ``gt`` (G, 4) against ``anchors`` (A, 4)."""
    y0 = np.maximum(gt[:, None, 0], anchors[None, :, 0])
    x0 = np.maximum(gt[:, None, 1], anchors[None, :, 1])
    y1 = np.minimum(gt[:, None, 2], anchors[None, :, 2])
    x1 = np.minimum(gt[:, None, 3], anchors[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    return inter / (area_g[:, None] + area_a[None, :] - inter)


def _sampled_matches(gt, box, step, offset, sizes, image, ts, samples: int = 16) -> list[float]:
    """Dense-sampling counterpart of :func:`expected_matches` on the level's real anchor lattice.

    Ground-truth centers lie on a ``samples x samples`` grid over one step near the image
    center; only the anchors within reach of them are compared.  One count per threshold.
    """
    gh, gw = gt
    ah, aw = box
    best = min(gh, ah) * min(gw, aw) / max(gh * gw, ah * aw)  # the IoU of concentric boxes
    if best < min(ts) - 1e-12:
        return [0.0 for _ in ts]
    base = [math.floor(image[a] / 2 / step[a]) * step[a] for a in range(2)]
    reach = [(gh + ah) / 2 + step[0], (gw + aw) / 2 + step[1]]
    centers = []
    for a in range(2):
        c = (np.arange(sizes[a]) + offset) * step[a]
        centers.append(c[np.abs(c - base[a] - step[a] / 2) <= reach[a] + step[a]])
    cy, cx = np.meshgrid(centers[0], centers[1], indexing="ij")
    cy, cx = cy.ravel(), cx.ravel()
    anchors = np.stack([cy - ah / 2, cx - aw / 2, cy + ah / 2, cx + aw / 2], axis=1)
    u = (np.arange(samples) + 0.5) / samples
    gy, gx = np.meshgrid(base[0] + u * step[0], base[1] + u * step[1], indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    boxes = np.stack([gy - gh / 2, gx - gw / 2, gy + gh / 2, gx + gw / 2], axis=1)
    iou = _iou(boxes, anchors) if anchors.size else np.zeros((boxes.shape[0], 0))
    return [float((iou >= t - 1e-12).sum(axis=1).mean()) for t in ts]


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """A problem found in a configuration: ``code`` (stable, for scripts) and a sentence."""

    code: str
    level: str | None
    message: str


@dataclass(frozen=True)
class LevelReport:
    """One detection level (see the module docstring for every quantity).

    Per-axis tuples are in (H, W) order; anchor boxes are ``(h, w)``; centers and offsets
    in continuous coordinates (pixel ``i`` covers ``[i, i + 1)``).
    """

    name: str
    layer: str
    prediction_layer: str
    step: tuple[float, ...]
    effective_stride: tuple[float, ...]
    feature_size: tuple[int, ...]
    trf: tuple[int, ...]
    trf_head: tuple[int, ...]
    rf_center0: tuple[float, ...]
    anchor_center0: tuple[float, ...]
    anchor_offset: float
    offset_first: tuple[float, ...]
    offset_last: tuple[float, ...]
    offset_max: float
    boxes: tuple[tuple[float, float], ...]
    anchors_per_cell: int
    anchors: int
    density: tuple[float, ...]
    anchor_to_trf: tuple[tuple[float, float], ...]
    erf_sigma: tuple[float, ...] | None
    erf_span: tuple[float, ...] | None
    erf_method: str
    anchor_to_erf: tuple[tuple[float, float], ...] | None
    matches: tuple[tuple[float, tuple[float, ...]], ...]  # (iou, expected count per gt size)
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class SuggestedLevel:
    """A level re-designed by the equal-proportion interval principle."""

    name: str
    step: tuple[float, ...]
    size: float
    anchor_offset: tuple[float, ...]
    anchors: int
    anchor_to_trf: tuple[float, ...]
    anchor_to_erf: tuple[float, ...] | None


@dataclass(frozen=True)
class AnchorReport:
    name: str
    network: str
    input_size: tuple[int, ...]
    levels: tuple[LevelReport, ...]
    total_anchors: int
    iou: tuple[float, ...]
    gt_sizes: tuple[float, ...]
    gt_aspect_ratio: float
    matches: tuple[tuple[float, tuple[float, ...]], ...]  # totals over levels
    flags: tuple[Flag, ...]
    suggestion: tuple[SuggestedLevel, ...]
    rule: str
    method: str
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    def level(self, name: str) -> LevelReport:
        for lv in self.levels:
            if lv.name == name or lv.layer == name:
                return lv
        raise RFMapError(f"no level named '{name}' (levels: {', '.join(lv.name for lv in self.levels)})")

    @property
    def all_flags(self) -> tuple[Flag, ...]:
        return tuple(f for lv in self.levels for f in lv.flags) + self.flags

    def to_dict(self) -> dict:
        def level_dict(lv: LevelReport) -> dict:
            return {
                "name": lv.name,
                "layer": lv.layer,
                "prediction_layer": lv.prediction_layer,
                "step": list(lv.step),
                "effective_stride": list(lv.effective_stride),
                "feature_size": list(lv.feature_size),
                "trf": list(lv.trf),
                "trf_head": list(lv.trf_head),
                "rf_center0": list(lv.rf_center0),
                "anchor_center0": list(lv.anchor_center0),
                "anchor_offset": lv.anchor_offset,
                "offset_first": list(lv.offset_first),
                "offset_last": list(lv.offset_last),
                "offset_max": lv.offset_max,
                "boxes": [list(b) for b in lv.boxes],
                "anchors_per_cell": lv.anchors_per_cell,
                "anchors": lv.anchors,
                "density": list(lv.density),
                "anchor_to_trf": [list(r) for r in lv.anchor_to_trf],
                "erf_sigma": None if lv.erf_sigma is None else list(lv.erf_sigma),
                "erf_span": None if lv.erf_span is None else list(lv.erf_span),
                "erf_method": lv.erf_method,
                "anchor_to_erf": None if lv.anchor_to_erf is None else [list(r) for r in lv.anchor_to_erf],
                "matches": {str(t): list(v) for t, v in lv.matches},
                "flags": [{"code": f.code, "message": f.message} for f in lv.flags],
            }

        return {
            "name": self.name,
            "network": self.network,
            "input_size": list(self.input_size),
            "total_anchors": self.total_anchors,
            "iou": list(self.iou),
            "gt_sizes": list(self.gt_sizes),
            "gt_aspect_ratio": self.gt_aspect_ratio,
            "method": self.method,
            "levels": [level_dict(lv) for lv in self.levels],
            "matches": {str(t): list(v) for t, v in self.matches},
            "flags": [{"code": f.code, "level": f.level, "message": f.message} for f in self.all_flags],
            "suggestion": {
                "rule": self.rule,
                "levels": [
                    {
                        "name": s.name,
                        "step": list(s.step),
                        "size": s.size,
                        "anchor_offset": list(s.anchor_offset),
                        "anchors": s.anchors,
                        "anchor_to_trf": list(s.anchor_to_trf),
                        "anchor_to_erf": None if s.anchor_to_erf is None else list(s.anchor_to_erf),
                    }
                    for s in self.suggestion
                ],
            },
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _default_gt_sizes(levels: Sequence[LevelConfig]) -> tuple[float, ...]:
    scales = sorted({round(math.sqrt(h * w), 6) for lv in levels for h, w in lv.boxes})
    out = set(scales)
    for a, b in zip(scales, scales[1:]):
        out.add(round(math.sqrt(a * b), 6))
    return tuple(sorted(out))


def analyze_anchors(config: Any, *, method: str = "exact", samples: int = 16, **overrides: Any) -> AnchorReport:
    """The anchor report of a configuration (a path, a bundled name, a mapping or an :class:`AnchorConfig`).

    ``method``: ``"exact"`` (closed-form expected matches on an unbounded lattice) or
    ``"sampled"`` (``samples x samples`` ground-truth positions over one step, real lattice).
    ``overrides``: top-level configuration keys (see :func:`load_config`).
    """
    from rfmap.core.analysis import Analysis
    from rfmap.erf import closed_form_sigma

    if method not in ("exact", "sampled"):
        raise RFMapError(f"method must be 'exact' or 'sampled', got {method!r}")
    cfg = load_config(config, **overrides)
    graph, outputs = _with_heads(cfg)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analysis = Analysis(graph, cfg.input_size)
    notes = [str(w.message) for w in caught]
    ndim = analysis.ndim
    if ndim != 2:
        raise RFMapError(f"anchor reports are 2-D; '{graph.name}' has {ndim} axes")
    gt_sizes = cfg.gt_sizes or _default_gt_sizes(cfg.levels)
    gt_boxes = [(g / math.sqrt(cfg.gt_aspect_ratio), g * math.sqrt(cfg.gt_aspect_ratio)) for g in gt_sizes]
    reports: list[LevelReport] = []
    suggestion: list[SuggestedLevel] = []
    for level, pred in zip(cfg.levels, outputs):
        feat = analysis.layer(level.layer)
        row = analysis.layer(pred)
        stride = tuple(Fraction(s) for s in row.stride)
        if any(s == 0 for s in stride):
            raise RFMapError(f"level '{level.name}': layer '{pred}' is global (no stride): no anchors on it")
        if level.step is None:
            step = stride
        else:
            step = level.step * ndim if len(level.step) == 1 else level.step
            if len(step) != ndim:
                raise RFMapError(f"level '{level.name}': stride has {len(step)} entries for {ndim} axes")
        offset = cfg.anchor_offset if level.anchor_offset is None else level.anchor_offset
        sizes = row.output_size
        c0 = tuple(float(c) + 0.5 for c in row.center0)  # continuous
        a0 = tuple(offset * float(s) for s in step)
        first = tuple(c - a for c, a in zip(c0, a0))
        drift = tuple(float(s - p) for s, p in zip(stride, step))
        last = tuple(f + (n - 1) * d for f, n, d in zip(first, sizes, drift))
        off_max = max(max(abs(f), abs(g)) for f, g in zip(first, last))
        stepf = tuple(float(s) for s in step)
        trf, trf_head = feat.rf, row.rf
        per_cell = len(level.boxes)
        count = per_cell * math.prod(sizes)
        density = tuple(math.sqrt(h * w) / math.sqrt(stepf[0] * stepf[1]) for h, w in level.boxes)
        to_trf = tuple((h / trf_head[0], w / trf_head[1]) for h, w in level.boxes)
        center_cell = tuple(n // 2 for n in sizes)
        sigma = None
        erf_method = "closed-form"
        if cfg.erf is None:
            try:
                sigma = closed_form_sigma(analysis, pred, center_cell)
            except RFMapError as exc:
                erf_method = f"none ({exc})"
        else:
            from rfmap.erf import erf as measure

            opts = {"n": 8, "weights": "uniform", "channels": 1, "batch_size": 8, "progress": False, **cfg.erf}
            sigma = measure(graph, layer=pred, input_size=cfg.input_size, cell=center_cell, **opts).sigma
            erf_method = f"measured ({opts['weights']} weights, n={opts['n']})"
        span = None if sigma is None else tuple(4 * s for s in sigma)
        to_erf = None if span is None else tuple((h / span[0], w / span[1]) for h, w in level.boxes)
        if method == "exact":
            table = [[sum(expected_matches(g, b, stepf, t) for b in level.boxes) for g in gt_boxes] for t in cfg.iou]
        else:
            per_box = [
                [_sampled_matches(g, b, stepf, offset, sizes, cfg.input_size, cfg.iou, samples) for b in level.boxes]
                for g in gt_boxes
            ]
            table = [[sum(counts[k] for counts in per_box[j]) for j in range(len(gt_boxes))] for k in range(len(cfg.iou))]
        matches = [(t, tuple(row)) for t, row in zip(cfg.iou, table)]
        flags = []
        big = [(h, w) for h, w in level.boxes if h > trf_head[0] or w > trf_head[1]]
        if big:
            flags.append(
                Flag(
                    "anchor_larger_than_trf",
                    level.name,
                    f"level '{level.name}': anchor{'s' if len(big) > 1 else ''} {', '.join(_hw(b) for b in big)} "
                    f"{'are' if len(big) > 1 else 'is'} larger than the TRF {trf_head[0]}x{trf_head[1]} of '{pred}'",
                )
            )
        if off_max > cfg.center_tolerance:
            flags.append(
                Flag(
                    "misaligned_centers",
                    level.name,
                    f"level '{level.name}': RF centers are off the anchor centers by up to {off_max:.4g} px "
                    f"(first cell {_pair(first)}, last cell {_pair(last)})",
                )
            )
        if any(d != 0 for d in drift):
            flags.append(
                Flag(
                    "step_differs_from_stride",
                    level.name,
                    f"level '{level.name}': anchor step {_pair(stepf)} differs from the effective stride "
                    f"{_pair(tuple(float(s) for s in stride))}: the offset drifts by {_pair(drift)} px per cell",
                )
            )
        ends = tuple((n - 1 + offset) * s for n, s in zip(sizes, stepf))
        if any(e > size or b < 0 for e, b, size in zip(ends, a0, cfg.input_size)):
            flags.append(
                Flag(
                    "anchors_outside_image",
                    level.name,
                    f"level '{level.name}': anchor centers run from {_pair(a0)} to {_pair(ends)}, "
                    f"beyond the {cfg.input_size[0]}x{cfg.input_size[1]} image",
                )
            )
        sigma_sugg = sigma
        s_size = cfg.density * math.sqrt(float(stride[0]) * float(stride[1]))
        s_offset = tuple(c / float(s) for c, s in zip(c0, stride))
        suggestion.append(
            SuggestedLevel(
                name=level.name,
                step=tuple(float(s) for s in stride),
                size=s_size,
                anchor_offset=s_offset,
                anchors=math.prod(sizes),
                anchor_to_trf=tuple(s_size / r for r in trf_head),
                anchor_to_erf=None if sigma_sugg is None else tuple(s_size / (4 * s) for s in sigma_sugg),
            )
        )
        reports.append(
            LevelReport(
                name=level.name,
                layer=level.layer,
                prediction_layer=pred,
                step=stepf,
                effective_stride=tuple(float(s) for s in stride),
                feature_size=tuple(sizes),
                trf=tuple(trf),
                trf_head=tuple(trf_head),
                rf_center0=c0,
                anchor_center0=a0,
                anchor_offset=offset,
                offset_first=first,
                offset_last=last,
                offset_max=off_max,
                boxes=level.boxes,
                anchors_per_cell=per_cell,
                anchors=count,
                density=density,
                anchor_to_trf=to_trf,
                erf_sigma=None if sigma is None else tuple(sigma),
                erf_span=span,
                erf_method=erf_method,
                anchor_to_erf=to_erf,
                matches=tuple(matches),
                flags=tuple(flags),
            )
        )
    # uneven density across levels (FaceBoxes)
    top = max(d for lv in reports for d in lv.density)
    final = []
    for lv in reports:
        extra = []
        scales: dict[float, float] = {}
        for (h, w), d in zip(lv.boxes, lv.density):
            scales.setdefault(round(math.sqrt(h * w), 6), d)
        for scale, d in scales.items():
            if d * cfg.density_tolerance < top:
                extra.append(
                    Flag(
                        "uneven_density",
                        lv.name,
                        f"level '{lv.name}': anchors of scale {_fmt(scale)} have density {d:.3g} against {top:.3g} "
                        f"elsewhere (FaceBoxes: densify them {max(1, round(top / d))}x)",
                    )
                )
        final.append(_replace_flags(lv, lv.flags + tuple(extra)))
    totals = []
    for k, t in enumerate(cfg.iou):
        totals.append((t, tuple(sum(lv.matches[k][1][g] for lv in final) for g in range(len(gt_sizes)))))
    global_flags = []
    if totals:
        t0, counts = totals[0]
        for g, c in zip(gt_sizes, counts):
            if c < 1:
                global_flags.append(
                    Flag(
                        "few_matches",
                        None,
                        f"a {_fmt(round(g, 2))}-pixel ground-truth box matches {c:.3g} anchors on average at IoU {t0:g}",
                    )
                )
    return AnchorReport(
        name=cfg.name,
        network=graph.name,
        input_size=tuple(cfg.input_size),
        levels=tuple(final),
        total_anchors=sum(lv.anchors for lv in final),
        iou=tuple(cfg.iou),
        gt_sizes=tuple(gt_sizes),
        gt_aspect_ratio=cfg.gt_aspect_ratio,
        matches=tuple(totals),
        flags=tuple(global_flags),
        suggestion=tuple(suggestion),
        rule=RULE.format(density=_fmt(cfg.density)),
        method=method,
        description=cfg.description,
        notes=tuple(notes),
    )


def _replace_flags(lv: LevelReport, flags: tuple[Flag, ...]) -> LevelReport:
    from dataclasses import replace

    return replace(lv, flags=flags)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _hw(box: Sequence[float]) -> str:
    return f"{_fmt(round(box[0], 2))}x{_fmt(round(box[1], 2))}"


def _pair(values: Sequence[float]) -> str:
    if len(set(round(v, 9) for v in values)) == 1:
        return _fmt(values[0])
    return "(" + ", ".join(_fmt(v) for v in values) + ")"


# -- rendering -------------------------------------------------------------------------------

FORMATS = ("table", "json")


def _axes(values: Sequence[float], digits: int = 4) -> str:
    vals = [float(v) for v in values]
    if len(set(round(v, 9) for v in vals)) == 1:
        return f"{vals[0]:.{digits}g}"
    return "x".join(f"{v:.{digits}g}" for v in vals)


def _box(b: Sequence[float]) -> str:
    h, w = b
    return _fmt(round(h, 2)) if abs(h - w) < 1e-9 else f"{round(h, 1):g}x{round(w, 1):g}"


def _tables(report: AnchorReport) -> list[tuple[str, list[str], list[list[str]]]]:
    levels_rows = []
    for lv in report.levels:
        scale = [math.sqrt(h * w) for h, w in lv.boxes]
        levels_rows.append(
            [
                lv.name,
                _axes(lv.step),
                _axes(lv.effective_stride),
                "x".join(str(n) for n in lv.feature_size),
                _axes(lv.trf),
                _axes(lv.trf_head),
                f"{_axes(lv.offset_first, 3)} / {lv.offset_max:.3g}",
                ",".join(_box(b) for b in lv.boxes) if len(lv.boxes) <= 3 else f"{len(lv.boxes)} boxes {min(scale):.4g}..{max(scale):.4g}",
                f"{min(lv.density):.3g}" + ("" if max(lv.density) - min(lv.density) < 1e-9 else f"..{max(lv.density):.3g}"),
                f"{max(max(r) for r in lv.anchor_to_trf):.2f}",
                "-" if lv.anchor_to_erf is None else f"{max(max(r) for r in lv.anchor_to_erf):.2f}",
                f"{lv.anchors:,}",
                "".join(sorted({_FLAG_MARK[f.code] for f in lv.flags})),
            ]
        )
    t1 = (
        f"{report.name}: {report.network} at {report.input_size[0]}x{report.input_size[1]}, "
        f"{report.total_anchors:,} anchors",
        ["level", "step", "stride", "map", "TRF", "TRF+head", "offset 1st/max", "anchors", "density", "a/TRF", "a/ERF", "count", "flags"],
        levels_rows,
    )
    t2_rows = []
    for k, g in enumerate(report.gt_sizes):
        t2_rows.append([_fmt(round(g, 2))] + [f"{counts[k]:.2f}" for _, counts in report.matches])
    t2 = (
        f"expected anchors matched per ground-truth box ({report.method}; gt w/h = {report.gt_aspect_ratio:g})",
        ["gt size"] + [f"IoU>={t:g}" for t, _ in report.matches],
        t2_rows,
    )
    t3_rows = []
    for s in report.suggestion:
        t3_rows.append(
            [
                s.name,
                _axes(s.step),
                _fmt(round(s.size, 2)),
                _axes(s.anchor_offset, 4),
                f"{max(s.anchor_to_trf):.2f}",
                "-" if s.anchor_to_erf is None else f"{max(s.anchor_to_erf):.2f}",
                f"{s.anchors:,}",
            ]
        )
    t3 = (f"suggested: {report.rule}", ["level", "step", "size", "anchor_offset", "a/TRF", "a/ERF", "count"], t3_rows)
    return [t1, t2, t3]


_FLAG_MARK = {
    "anchor_larger_than_trf": "T",
    "misaligned_centers": "C",
    "step_differs_from_stride": "S",
    "anchors_outside_image": "O",
    "uneven_density": "D",
    "few_matches": "M",
}
_LEGEND = "flags: T anchor > TRF, C centers off RF centers, S step != stride, O anchors outside the image, D uneven density"


def render_anchors(report: AnchorReport, fmt: str = "table", color: bool | None = None) -> str:
    """``"table"`` (rich when ``color`` and rich is installed, else aligned text) or ``"json"``."""
    if fmt == "json":
        return report.to_json()
    if fmt != "table":
        raise RFMapError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    tables = _tables(report)
    if color is None:
        from rfmap.render import _stdout_is_color_terminal

        color = _stdout_is_color_terminal()
    footer = [_LEGEND] + [f"- {f.message}" for f in report.all_flags] + [f"note: {n}" for n in report.notes]
    if color:
        try:
            return _rich(tables, footer)
        except ImportError:
            pass
    return _plain(tables, footer)


def _plain(tables, footer) -> str:
    lines: list[str] = []
    for title, header, rows in tables:
        widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(len(header))]
        lines.append(title)
        lines.append("")
        lines.append("  ".join(h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(header, widths))).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip())
        lines.append("")
    lines.extend(footer)
    return "\n".join(lines).rstrip("\n")


def _rich(tables, footer) -> str:
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buf = io.StringIO()
    width = max(len(line) for line in _plain(tables, footer).splitlines()) + 8
    console = Console(file=buf, force_terminal=True, width=width, highlight=False, soft_wrap=True)
    for title, header, rows in tables:
        table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, header_style="bold", title=title, title_justify="left")
        for k, h in enumerate(header):
            table.add_column(h, justify="left" if k == 0 else "right", no_wrap=True)
        for r in rows:
            table.add_row(Text(r[0], style="cyan"), *r[1:])
        console.print(table)
    for line in footer:
        console.print(Text(line, style="yellow" if line.startswith("- ") else ""))
    return buf.getvalue().rstrip("\n")
