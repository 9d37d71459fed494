"""Anchor configurations: the schema of a config file and its parsing (see :mod:`rfmap.anchors`).

A configuration is data: its ``network`` is a zoo name, a spec or ONNX file (relative to the
config) or a layer list or inline spec, never code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.params import boolean
from rfmap.errors import RFMapError, preview

#: the most levels of a configuration, anchors per level and ground-truth sizes
MAX_LEVELS = 64
MAX_ANCHORS = 4096
MAX_GT_SIZES = 4096
#: ERF options a configuration may set (data, each bounded), with their ranges
ERF_OPTIONS = {"n": (1, 4096), "channels": (1, 64), "batch_size": (1, 256), "seed": (0, 2**64 - 1)}
ERF_WORDS = ("weights", "aggregate")

DATA = Path(__file__).resolve().parent / "configs"

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
    _keys(data, where)
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
    if len(levels) > MAX_LEVELS:
        raise RFMapError(f"{where}: {len(levels)} levels (at most {MAX_LEVELS})")
    parsed = tuple(_level(entry, i, where) for i, entry in enumerate(levels))
    iou = data.get("iou", [0.5, 0.35])
    iou = tuple(_number(v, f"{where}: iou") for v in _bounded(iou if isinstance(iou, list) else [iou], 16, f"{where}: iou"))
    if not iou or not all(0 < v <= 1 for v in iou):
        raise RFMapError(f"{where}: IoU thresholds must be 1 to 16 numbers in (0, 1], got {list(iou)}")
    gt = data.get("gt_sizes")
    if gt is not None:
        gt = tuple(_numbers(gt, f"{where}: gt_sizes", MAX_GT_SIZES))
    erf_opts = _erf_options(data.get("erf"), f"{where}: erf")
    suggest = data.get("suggest") or {}
    if not isinstance(suggest, Mapping) or set(suggest) - {"density"}:
        raise RFMapError(f"{where}: suggest takes {{density: 4}}")
    return AnchorConfig(
        name=_text(data.get("name", graph.name), f"{where}: name"),
        graph=graph,
        input_size=size,
        levels=parsed,
        anchor_offset=offset,
        iou=iou,
        gt_sizes=gt,
        gt_aspect_ratio=_in_range(data.get("gt_aspect_ratio", 1.0), f"{where}: gt_aspect_ratio"),
        erf=erf_opts,
        center_tolerance=_positive(data.get("center_tolerance", 1.0), f"{where}: center_tolerance"),
        density_tolerance=_positive(data.get("density_tolerance", 1.5), f"{where}: density_tolerance"),
        density=_positive(suggest.get("density", 4), f"{where}: suggest.density"),
        description=_text(data.get("description", data.get("source", "")), f"{where}: description", empty=True).strip(),
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
        raise RFMapError(f"{where}: input must be an int or a list of ints, got {preview(value)}")
    if isinstance(value, int):
        return (value,) * ndim
    if (isinstance(value, (list, tuple)) and 1 <= len(value) <= 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return tuple(value)
    raise RFMapError(f"{where}: input must be an int or a list of 1 to 3 ints, got {preview(value)}")


def _keys(mapping: Mapping, where: str) -> None:
    bad = [k for k in mapping if not isinstance(k, str)]
    if bad:
        raise RFMapError(f"{where}: keys must be strings, got {preview(bad[0])}")


def _text(value: Any, what: str, empty: bool = False) -> str:
    """A name or description: a string (an int is taken as its digits), never ``str()`` of
    another value."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (not value and not empty):
        raise RFMapError(f"{what} must be a {'' if empty else 'non-empty '}string, got {preview(value)}")
    if len(value) > 10_000:
        raise RFMapError(f"{what} has {len(value):,} characters (at most 10,000)")
    return value


def _bounded(values: list, limit: int, what: str) -> list:
    if len(values) > limit:
        raise RFMapError(f"{what}: {len(values):,} values (at most {limit:,})")
    return values


def _number(value: Any, what: str) -> float:
    """A finite number: an int, a float or a string such as ``'300/38'``."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
            raise TypeError
        out = float(Fraction(value.strip())) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise RFMapError(f"{what}: expected a number, got {preview(value)}") from None
    if not math.isfinite(out):
        raise RFMapError(f"{what}: expected a finite number, got {preview(value)}")
    return out


def _positive(value: Any, what: str) -> float:
    out = _number(value, what)
    if out <= 0:
        raise RFMapError(f"{what}: must be positive, got {preview(value)}")
    return out


def _fraction(value: Any, what: str) -> Fraction:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
            raise TypeError
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        f = Fraction(value.strip()) if isinstance(value, str) else Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise RFMapError(f"{what}: expected a number such as 16 or '300/38', got {preview(value)}") from None
    if f <= 0:
        raise RFMapError(f"{what}: must be positive, got {preview(value)}")
    if f.numerator > 2**40 or f.denominator > 2**40:
        raise RFMapError(f"{what}: {preview(value)} is beyond rfmap's exact range")
    return f


#: sizes (pixels) and aspect ratios of anchors and ground truths: far beyond any detector,
#: and within float precision (an anchor of 1e-300 pixels has an area of 0)
SIZE_RANGE = (1e-3, 1e9)


def _in_range(value: Any, what: str) -> float:
    """One size or ratio in :data:`SIZE_RANGE`."""
    out = _number(value, what)
    lo, hi = SIZE_RANGE
    if not lo <= out <= hi:
        raise RFMapError(f"{what}: must be in {lo:g}..{hi:g}, got {preview(value)}")
    return out


def _numbers(value: Any, what: str, limit: int = MAX_ANCHORS) -> list[float]:
    """Sizes or ratios in :data:`SIZE_RANGE`, at most ``limit`` of them."""
    return [_in_range(v, what) for v in _bounded(value if isinstance(value, list) else [value], limit, what)]


def _erf_options(value: Any, what: str) -> dict | None:
    """The ERF options of a configuration: ``None`` for the closed form (``closed-form``,
    false), ``{}`` to measure with the defaults (``measure``, true), or a mapping of data only
    (``n``, ``channels``, ``batch_size``, ``seed``, ``weights``, ``aggregate``), each bounded;
    ``measure: false`` turns it off."""
    if value is None or value is False or value in ("closed-form", "closed_form"):
        return None
    if value is True or value in ("measure", "measured"):
        return {}
    if not isinstance(value, Mapping):
        raise RFMapError(f"{what} must be 'closed-form', 'measure' or a mapping of erf() options")
    opts = dict(value)
    _keys(opts, what)
    if not boolean(opts.pop("measure", True), f"{what}: measure"):
        return None
    unknown = set(opts) - set(ERF_OPTIONS) - set(ERF_WORDS)
    if unknown:
        raise RFMapError(f"{what}: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(a configuration sets {', '.join(sorted([*ERF_OPTIONS, *ERF_WORDS]))})")
    for key, (lo, hi) in ERF_OPTIONS.items():
        v = opts.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
            raise RFMapError(f"{what}: {key} must be an integer in {lo}..{hi:,}, got {preview(v)}")
    for key in ERF_WORDS:
        if key in opts and not isinstance(opts[key], str):
            raise RFMapError(f"{what}: {key} must be a name, got {preview(opts[key])}")
    return opts


def _level(entry: Any, i: int, where: str) -> LevelConfig:
    here = f"{where}: level {i + 1}"
    if not isinstance(entry, Mapping):
        raise RFMapError(f"{here}: expected a mapping with 'layer' and anchors, got {preview(entry)}")
    _keys(entry, here)
    unknown = set(entry) - _LEVEL_KEYS
    if unknown:
        raise RFMapError(f"{here}: unknown key(s) {', '.join(sorted(unknown))}")
    if "layer" not in entry:
        raise RFMapError(f"{here}: no 'layer'")
    layer = _text(entry["layer"], f"{here}: layer")
    here = f"{where}: level {i + 1} ('{layer}')"
    step = entry.get("step", entry.get("stride"))
    if step is not None:
        values = _bounded(step if isinstance(step, list) else [step], 3, f"{here}: stride")
        step = tuple(_fraction(v, f"{here}: stride") for v in values)
    kinds = [k for k in ("sizes", "boxes", "min_size") if k in entry]
    if len(kinds) != 1:
        raise RFMapError(f"{here}: give exactly one of sizes (with aspect_ratios), boxes, or min_size (PriorBox)")
    boxes: list[tuple[float, float]] = []
    if "sizes" in entry:
        ratios = _numbers(entry.get("aspect_ratios", [1]), f"{here}: aspect_ratios")
        sizes = _numbers(entry["sizes"], f"{here}: sizes")
        _bounded(sizes * len(ratios), MAX_ANCHORS, f"{here}: sizes x aspect_ratios")
        for s in sizes:
            for r in ratios:
                boxes.append((s / math.sqrt(r), s * math.sqrt(r)))
    elif "boxes" in entry:
        raw = entry["boxes"]
        if not isinstance(raw, list) or not all(isinstance(b, list) and len(b) == 2 for b in raw):
            raise RFMapError(f"{here}: boxes must be a list of [h, w] pairs")
        _bounded(raw, MAX_ANCHORS, f"{here}: boxes")
        boxes = [tuple(_numbers(b, f"{here}: boxes")) for b in raw]  # type: ignore[misc]
    else:
        mins = _numbers(entry["min_size"], f"{here}: min_size")
        maxs = _numbers(entry["max_size"], f"{here}: max_size") if "max_size" in entry else []
        if maxs and len(maxs) != len(mins):
            raise RFMapError(f"{here}: max_size needs one value per min_size")
        ratios = _numbers(entry.get("aspect_ratios", []), f"{here}: aspect_ratios") if entry.get("aspect_ratios") else []
        flip = boolean(entry.get("flip", True), f"{here}: flip")
        _bounded(mins * (2 + 2 * len(ratios)), MAX_ANCHORS, f"{here}: anchors (min_size x aspect_ratios)")
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
    if not boxes:
        raise RFMapError(f"{here}: no anchors (sizes, boxes or min_size is empty)")
    head = entry.get("head")
    if head is not None and not isinstance(head, (str, list)):
        raise RFMapError(f"{here}: head must be a list of layer specs or the name of a layer")
    if isinstance(head, list) and not all(isinstance(h, Mapping) and "op" in h for h in head):
        raise RFMapError(f"{here}: head layers must be mappings with an 'op' (as in spec files)")
    if isinstance(head, list):
        _bounded(head, 64, f"{here}: head")
        for h in head:
            _keys(h, f"{here}: head")
    if isinstance(head, str):
        head = _text(head, f"{here}: head")
    offset = entry.get("anchor_offset")
    return LevelConfig(
        name=_text(entry.get("name", layer), f"{here}: name"),
        layer=layer,
        boxes=tuple(boxes),
        step=step,
        anchor_offset=None if offset is None else _number(offset, f"{here}: anchor_offset"),
        head=tuple(dict(h) for h in head) if isinstance(head, list) else head,
    )


def with_heads(config: AnchorConfig) -> tuple[Graph, list[str]]:
    """The network with every level's head convolutions appended; the prediction layer per level."""
    from rfmap.core.registry import make_layer

    graph = config.graph
    names = {node.name for node in graph.nodes}
    b = GraphBuilder(graph.name, graph.input_size)
    for node in graph.nodes[1:]:
        assert node.layer is not None  # only the input has none (Graph checks it)
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
            name = _text(params.pop("name", f"{level.name}_head{j + 1}" if len(level.head) > 1 else f"{level.name}_head"),
                         f"{here}: head layer {j + 1}: name")
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
