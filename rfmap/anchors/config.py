"""Anchor configurations: the schema of a config file and its parsing (see :mod:`rfmap.anchors`).

A configuration is data: its ``network`` is a zoo name, a spec or ONNX file (relative to the
config) or a layer list or inline spec, never code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from rfmap.core.graph import Graph, GraphBuilder
from rfmap.errors import RFMapError

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


def with_heads(config: AnchorConfig) -> tuple[Graph, list[str]]:
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
