"""Reading data files (spec files, anchor configurations) safely: data stays data.

A data file is read as bytes (at most :data:`~rfmap.core.budget.MAX_FILE_BYTES`, regular
files only), decoded as UTF-8 (a byte-order mark is allowed) and parsed by its suffix:

* YAML (``.yaml``, ``.yml``) with PyYAML's safe loader, which builds only plain values
  (no Python objects, tags that name code are errors), extended so that aliases
  (``*name``) are at most :data:`~rfmap.core.budget.MAX_ALIASES`, never recursive, and never
  expand the document beyond :data:`MAX_EXPANDED` values (an alias bomb of 550 bytes that
  would expand to 10^9 strings is refused before anything reads it);
* TOML (``.toml``) with :mod:`tomllib`;
* JSON (anything else) with :mod:`json`.

In every format nesting is at most :data:`~rfmap.core.budget.MAX_NESTING` deep, integers
have at most :data:`MAX_DIGITS` digits and floats are finite (``.inf``, ``1e999`` and
``NaN`` are errors).  Every problem is one :class:`~rfmap.errors.RFMapError` naming the file
and, where the format tells it, the line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from rfmap.core.budget import MAX_ALIASES, MAX_FILE_BYTES, MAX_NESTING
from rfmap.errors import RFMapError

#: the most values (scalars, lists, mappings) a YAML document may expand to through aliases
MAX_EXPANDED = 2**20
#: the most digits of an integer in a data file (rfmap's values stay below 2**40, 13 digits)
MAX_DIGITS = 40


def read_data(path: str | Path, what: str = "spec file") -> tuple[Any, list[int] | None]:
    """Parse the data file ``path`` (see the module docstring).

    Returns ``(data, layer_lines)``: the document and, where the format tells it, the 1-based
    line of each entry of its top-level ``layers`` list (``None`` for JSON).  ``what`` names
    the file in errors ("cannot read {what} ...", "YAML {what}s need PyYAML").
    """
    path = Path(path)
    text = _read_text(path, what)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data, lines = _parse_yaml(text, path, what)
    elif suffix == ".toml":
        data, lines = _parse_toml(text, path)
    else:
        data, lines = _parse_json(text, path), None
    _check_depth(data, path)
    return data, lines


def _read_text(path: Path, what: str) -> str:
    try:
        info = os.stat(path)  # before opening: opening a FIFO would wait for a writer
        if not stat.S_ISREG(info.st_mode):
            raise RFMapError(f"cannot read {what} '{path}': not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise RFMapError(f"{what} '{path}' has {info.st_size:,} bytes, beyond rfmap's limit of {MAX_FILE_BYTES:,}")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RFMapError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RFMapError(f"{what} '{path}' is larger than rfmap's limit of {MAX_FILE_BYTES:,} bytes")
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise RFMapError(f"{path}, line {line}: a NUL byte: {what}s are UTF-8 text, this looks like a binary file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RFMapError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); {what}s are UTF-8"
        ) from None


# -- YAML ----------------------------------------------------------------------------------


def _yaml_loader():
    """A SafeLoader subclass that bounds nesting and aliases and checks numbers (built on
    first use: PyYAML is an optional dependency)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str):
            super().__init__(stream)
            self.rfmap_depth = 0
            self.rfmap_aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.rfmap_aliases += 1
                if self.rfmap_aliases > MAX_ALIASES:
                    mark = self.peek_event().start_mark
                    raise yaml.composer.ComposerError(
                        None, None, f"more than {MAX_ALIASES} aliases (rfmap's limit for data files)", mark
                    )
            self.rfmap_depth += 1
            if self.rfmap_depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_NESTING} levels deep", mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self.rfmap_depth -= 1

        def construct_yaml_int(self, node):
            digits = re.sub(r"[^0-9a-fA-F]", "", str(node.value))
            if len(digits) > MAX_DIGITS:
                raise yaml.constructor.ConstructorError(
                    None, None, f"an integer of {len(digits)} digits (at most {MAX_DIGITS})", node.start_mark
                )
            return super().construct_yaml_int(node)

        def construct_yaml_float(self, node):
            value = super().construct_yaml_float(node)
            if not math.isfinite(value):
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{node.value:.40}' is not a finite number", node.start_mark
                )
            return value

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_yaml_float)
    return Loader


_LOADER = None


def _expanded_size(root: Any, path: Path) -> int:
    """Values the composed YAML tree stands for once aliases are expanded (shared nodes count
    every time they are reached); recursive aliases are errors."""
    import yaml

    sizes: dict[int, int] = {}
    state: dict[int, int] = {}  # 1: being counted, 2: done
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node, yaml)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_EXPANDED + 1)
            state[key] = 2
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            line = node.start_mark.line + 1
            raise RFMapError(f"{path}, line {line}: malformed YAML: a recursive alias (a value that contains itself)")
        state[key] = 1
        stack.append((node, True))
        for child in _children(node, yaml):
            if state.get(id(child)) == 1:
                line = child.start_mark.line + 1
                raise RFMapError(f"{path}, line {line}: malformed YAML: a recursive alias (a value that contains itself)")
            if state.get(id(child)) != 2:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _parse_yaml(text: str, path: Path, what: str) -> tuple[Any, list[int]]:
    global _LOADER
    try:
        import yaml
    except ImportError:
        raise RFMapError(f"YAML {what}s need PyYAML: pip install 'rfmap[yaml]'") from None
    if _LOADER is None:
        _LOADER = _yaml_loader()
    loader = None
    try:
        loader = _LOADER(text)  # the reader checks the characters here
        root = loader.get_single_node()
        if root is not None and _expanded_size(root, path) > MAX_EXPANDED:
            raise RFMapError(
                f"{path}: YAML aliases expand the document beyond {MAX_EXPANDED:,} values (rfmap's limit for data files)"
            )
        data = None if root is None else loader.construct_document(root)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise RFMapError(f"{path}, line {line}: malformed YAML: character U+{exc.character:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RFMapError(f"{path}{where}: malformed YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: list[int] = []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "layers" and isinstance(value, yaml.SequenceNode):
                lines = [item.start_mark.line + 1 for item in value.value]
    return data, lines


# -- TOML and JSON -------------------------------------------------------------------------


class _BadNumber(Exception):
    def __init__(self, token: str, why: str):
        super().__init__(token)
        self.token, self.why = token, why


def _line_of(text: str, token: str) -> str:
    k = text.find(token)
    return "" if k < 0 else f", line {text.count(chr(10), 0, k) + 1}"


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _BadNumber(token, "is not a finite number")
    return value


def _int(token: str) -> int:
    if len(token.lstrip("+-")) > MAX_DIGITS:
        raise _BadNumber(token, f"has more than {MAX_DIGITS} digits")
    return int(token)


def _constant(token: str) -> float:
    raise _BadNumber(token, "is not a finite number")


def _parse_toml(text: str, path: Path) -> tuple[Any, list[int]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text, parse_float=_float)
    except tomllib.TOMLDecodeError as exc:
        raise RFMapError(f"{path}: malformed TOML: {exc}") from None
    except _BadNumber as exc:
        raise RFMapError(f"{path}{_line_of(text, exc.token)}: malformed TOML: '{exc.token:.40}' {exc.why}") from None
    except RecursionError:
        raise RFMapError(f"{path}: malformed TOML: nested more than {MAX_NESTING} levels deep") from None
    except ValueError:  # an integer beyond Python's conversion limit (4300 digits)
        big = re.search(rf"\d[\d_]{{{MAX_DIGITS},}}", text)
        where = _line_of(text, big.group()) if big else ""
        raise RFMapError(f"{path}{where}: malformed TOML: an integer of more than {MAX_DIGITS} digits") from None
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"^\s*\[\[\s*layers\s*\]\]", text, re.M)]
    return data, lines


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise RFMapError(f"{path}, line {exc.lineno}: malformed JSON: {exc.msg}") from None
    except _BadNumber as exc:
        raise RFMapError(f"{path}{_line_of(text, exc.token)}: malformed JSON: '{exc.token:.40}' {exc.why}") from None
    except RecursionError:
        raise RFMapError(f"{path}: malformed JSON: nested more than {MAX_NESTING} levels deep") from None


def _check_depth(data: Any, path: Path) -> None:
    """Nesting of lists and mappings at most :data:`MAX_NESTING` (iteratively: no recursion;
    YAML aliases are walked as often as they are used, which :data:`MAX_EXPANDED` bounds)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, (list, dict)):
            continue
        if depth > MAX_NESTING:
            raise RFMapError(f"{path}: nested more than {MAX_NESTING} levels deep (rfmap's limit for data files)")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children)
