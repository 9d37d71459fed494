"""Spec files: a network written by hand in YAML, TOML or JSON.

The schema (YAML shown; TOML uses ``[[layers]]`` tables, JSON the same keys)::

    name: tiny-resnet
    input: [224, 224]          # optional default input size, (H, W)
    layers:
      - {name: conv1, op: conv, kernel: 7, stride: 2, padding: 3}
      - {name: pool1, op: maxpool, kernel: 3, stride: 2, padding: 1}
      - {name: b1, op: conv, kernel: 3, padding: 1}
      - {name: b2, op: conv, kernel: 3, padding: 1}
      - {name: sum, op: add, inputs: [pool1, b2]}   # a residual connection

A layer reads the previous one unless it names ``inputs`` (or ``input``); ``op`` is any
name of the op registry (:mod:`rfmap.core.registry`); the other keys are its parameters.
Errors name the layer and, where the format tells it, the line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rfmap.errors import RFMapError
from rfmap.core.graph import INPUT, Graph, GraphBuilder
from rfmap.core.registry import make_layer


def load_spec(path: str | Path) -> Graph:
    path = Path(path)
    data, lines = read_mapping(path)
    return spec_to_graph(data, source=str(path), lines=lines, default_name=path.stem)


def read_mapping(path: str | Path, what: str = "spec file") -> tuple[Any, list[int] | None]:
    """Parse a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (anything else) file.

    Returns ``(data, layer_lines)``: the parsed document and, where the format tells it,
    the 1-based line of each entry of its top-level ``layers`` list (``None`` for JSON).
    ``what`` names the file in errors ("cannot read {what} ...", "YAML {what}s need PyYAML").
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RFMapError(f"cannot read {what} '{path}': {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _parse_yaml(text, path, what)
    if suffix == ".toml":
        return _parse_toml(text, path)
    return _parse_json(text, path)


def spec_to_graph(data: Any, source: str = "spec", lines: list[int] | None = None, default_name: str = "network") -> Graph:
    """A :class:`Graph` from an already parsed spec mapping."""
    if not isinstance(data, dict):
        raise RFMapError(f"{source}: the top level must be a mapping with a 'layers' list")
    unknown = set(data) - {"name", "input", "input_size", "layers"}
    if unknown:
        raise RFMapError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise RFMapError(f"{source}: 'layers' must be a non-empty list")
    size = data.get("input", data.get("input_size"))
    if size is not None and not (
        (isinstance(size, int) and not isinstance(size, bool))
        or (isinstance(size, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in size))
    ):
        raise RFMapError(f"{source}: 'input' must be an int or a list of ints, got {size!r}")
    b = GraphBuilder(str(data.get("name", default_name)), size)
    prev = INPUT
    for i, entry in enumerate(layers):
        where = f"{source}, layer {i + 1}" + (f" (line {lines[i]})" if lines and i < len(lines) else "")
        if not isinstance(entry, dict):
            raise RFMapError(f"{where}: expected a mapping with 'name' and 'op', got {entry!r}")
        params = dict(entry)
        name = str(params.pop("name", f"layer{i + 1}"))
        where = f"{where} '{name}'"
        op = params.pop("op", None)
        if op is None:
            raise RFMapError(f"{where}: no 'op'")
        inputs = params.pop("inputs", params.pop("input", prev))
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(v, str) for v in inputs):
            raise RFMapError(f"{where}: 'inputs' must be a layer name or a list of names")
        try:
            layer = make_layer(op, **params)
        except RFMapError as exc:
            raise RFMapError(f"{where}: {exc}") from None
        b.add(name, layer, *inputs)
        prev = name
    try:
        return b.build()
    except RFMapError as exc:
        raise RFMapError(f"{source}: {exc}") from None


def _parse_yaml(text: str, path: Path, what: str = "spec file"):
    try:
        import yaml
    except ImportError:
        raise RFMapError(f"YAML {what}s need PyYAML: pip install 'rfmap[yaml]'") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RFMapError(f"{path}{where}: malformed YAML: {problem}") from None
    lines: list[int] = []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "layers" and isinstance(value, yaml.SequenceNode):
                lines = [item.start_mark.line + 1 for item in value.value]
    return data, lines


def _parse_toml(text: str, path: Path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RFMapError(f"{path}: malformed TOML: {exc}") from None
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"^\s*\[\[\s*layers\s*\]\]", text, re.M)]
    return data, lines


def _parse_json(text: str, path: Path):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RFMapError(f"{path}, line {exc.lineno}: malformed JSON: {exc.msg}") from None
    return data, None
