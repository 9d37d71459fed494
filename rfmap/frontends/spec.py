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

from pathlib import Path
from typing import Any

from rfmap.core.budget import MAX_LAYERS
from rfmap.core.graph import INPUT, Graph, GraphBuilder
from rfmap.core.registry import make_layer
from rfmap.errors import RFMapError, preview


def load_spec(path: str | Path) -> Graph:
    path = Path(path)
    data, lines = read_mapping(path)
    return spec_to_graph(data, source=str(path), lines=lines, default_name=path.stem)


def read_mapping(path: str | Path, what: str = "spec file") -> tuple[Any, list[int] | None]:
    """Parse a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (anything else) data file,
    bounded and checked (:mod:`rfmap.frontends.datafile`).

    Returns ``(data, layer_lines)``: the parsed document and, where the format tells it,
    the 1-based line of each entry of its top-level ``layers`` list (``None`` for JSON).
    ``what`` names the file in errors ("cannot read {what} ...", "YAML {what}s need PyYAML").
    """
    from rfmap.frontends.datafile import read_data

    return read_data(path, what)


def spec_to_graph(data: Any, source: str = "spec", lines: list[int] | None = None, default_name: str = "network") -> Graph:
    """A :class:`Graph` from an already parsed spec mapping, checked against the schema of
    the module docstring before anything is built."""
    if not isinstance(data, dict):
        raise RFMapError(f"{source}: the top level must be a mapping with a 'layers' list")
    _check_keys(data, source)
    unknown = set(data) - {"name", "input", "input_size", "layers"}
    if unknown:
        raise RFMapError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise RFMapError(f"{source}: 'layers' must be a non-empty list")
    if len(layers) > MAX_LAYERS:
        raise RFMapError(f"{source}: {len(layers):,} layers, beyond rfmap's limit of {MAX_LAYERS:,} (rfmap.core.budget)")
    size = data.get("input", data.get("input_size"))
    if size is not None and not (
        _is_int(size) or (isinstance(size, list) and 1 <= len(size) <= 3 and all(_is_int(v) for v in size))
    ):
        raise RFMapError(f"{source}: 'input' must be an int or a list of 1 to 3 ints, got {preview(size)}")
    b = GraphBuilder(text_name(data.get("name", default_name), f"{source}: 'name'"), size)
    prev = INPUT
    for i, entry in enumerate(layers):
        where = f"{source}, layer {i + 1}" + (f" (line {lines[i]})" if lines and i < len(lines) else "")
        if not isinstance(entry, dict):
            raise RFMapError(f"{where}: expected a mapping with 'name' and 'op', got {preview(entry)}")
        _check_keys(entry, where)
        params = dict(entry)
        name = text_name(params.pop("name", f"layer{i + 1}"), f"{where}: 'name'")
        where = f"{where} '{name}'"
        op = params.pop("op", None)
        if op is None:
            raise RFMapError(f"{where}: no 'op'")
        inputs = params.pop("inputs", params.pop("input", prev))
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(v, str) for v in inputs):
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


#: the longest name (of a network or a layer) a data file may give
MAX_NAME = 1000


def text_name(value: Any, what: str) -> str:
    """A name from a data file: a non-empty string (an int is taken as its digits), at most
    :data:`MAX_NAME` characters; any other value is an error, never ``str()`` of it."""
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise RFMapError(f"{what} must be a non-empty string, got {preview(value)}")
    if len(value) > MAX_NAME:
        raise RFMapError(f"{what} has {len(value):,} characters (at most {MAX_NAME})")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(mapping: dict, where: str) -> None:
    bad = [k for k in mapping if not isinstance(k, str)]
    if bad:
        raise RFMapError(f"{where}: keys must be strings, got {preview(bad[0])}")
