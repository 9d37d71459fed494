"""Fuzzing spec files: random and mutated YAML, JSON and TOML networks, read and analyzed.

Every case is written to a file, loaded with :func:`rfmap.frontends.load`, analyzed at its
own or a random input size and queried (a box, a support, the JSON and the table): each step
ends in a result or one :class:`rfmap.RFMapError` within the limits of
:mod:`tests.fuzzing`.  Values are drawn from what files get wrong: huge and negative
numbers, booleans and strings where numbers belong, NaN, nested lists, unknown keys, names
with markup and control characters; texts are mutated (cut, bytes flipped, YAML tags that
name code, alias bombs, deep nesting, non-UTF-8 bytes).  A YAML tag that would run code
creates a marker file if it ever ran: the tests assert it never exists.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from fuzzing import api_case, fuzz_settings, profiles
from hypothesis import event, given
from hypothesis import strategies as st

from rfmap.core.registry import registry
from rfmap.errors import RFMapError

pytestmark = pytest.mark.filterwarnings("ignore::rfmap.RFMapWarning")

OPS = sorted(registry().spec_names())
PARAMS = {
    "adaptive_pool": ["output_size"],
    "avgpool": ["kernel", "stride", "padding", "ceil_mode"],
    "conv": ["kernel", "stride", "padding", "dilation", "ceil_mode", "pad_mode"],
    "conv_transpose": ["kernel", "stride", "padding", "output_padding", "dilation"],
    "crop": ["start", "stop", "step"],
    "lppool": ["kernel", "stride", "padding", "ceil_mode"],
    "maxpool": ["kernel", "stride", "padding", "dilation", "ceil_mode", "pad_mode"],
    "pad": ["padding", "mode"],
    "pixel_shuffle": ["factor"],
    "pixel_unshuffle": ["factor"],
    "reduce": ["axes"],
    "upsample": ["scale_factor", "size", "mode", "align_corners"],
}

HOSTILE_NAMES = [
    "<script>alert(1)</script>", "{{DATA}}", "[bold red]x[/]", "[/]", "\u202eevil", "a\x1b[31mred", "x\ny", "",
    "\u2066\u2067", "conv1", "input", "0", "-1", "a" * 300, "名前", "\ud7ff",
]

small_ints = st.integers(-3, 12)
big_ints = st.sampled_from([0, 2**31, 2**40, 2**40 + 1, 10**12, 2**53, 2**63, -(2**63), 10**30])
odd_scalars = st.sampled_from([True, False, None, "false", "true", "3", "same", "valid", "SAME_UPPER", "constant", "ZEROS",
                               "zerso", "reflect", "circular", "bilinear", "nearest", "3/2", "1/0", "", 1.5, 2.0, 1.0000000001,
                               float("nan"), float("inf"), -0.0, 1e-300])
scalar = st.one_of(small_ints, small_ints, big_ints, odd_scalars)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "op"]), inner, max_size=2)),
                     max_leaves=6)


REQUIRED = {"kernel", "output_size", "factor", "axes", "scale_factor", "size"}
GOOD = {
    "kernel": st.one_of(st.integers(1, 7), st.tuples(st.integers(1, 5), st.integers(1, 5)).map(list)),
    "stride": st.integers(1, 3),
    "padding": st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid", "same_upper", [1, 2], [[0, 1], [2, 0]], -1])),
    "dilation": st.integers(1, 3),
    "ceil_mode": st.booleans(),
    "pad_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular", "constant"]),
    "output_padding": st.integers(0, 1),
    "start": st.integers(-3, 3),
    "stop": st.one_of(st.none(), st.integers(-2, 30)),
    "step": st.integers(1, 3),
    "scale_factor": st.sampled_from([2, 3, 1.5, "3/2", 0.5, "5/3", 4]),
    "size": st.integers(1, 40),
    "mode": st.sampled_from(["nearest", "bilinear", "linear", "bicubic", "nearest-exact", "reflect", "zeros", "replicate"]),
    "align_corners": st.booleans(),
    "output_size": st.one_of(st.integers(1, 9), st.just([None, 3])),
    "factor": st.integers(1, 3),
    "axes": st.sampled_from([0, 1, [0, 1]]),
}


@st.composite
def layer_entry(draw, k: int, names: list[str], hostility: int) -> dict:
    """A layer: mostly sensible values, one in ``hostility`` drawn from :data:`value`."""

    rng = random.Random(draw(st.integers(0, 2**32)))

    def hostile() -> bool:  # (hypothesis' integers favour 0: a seeded Random draws evenly)
        return rng.random() * hostility < 1

    op = draw(st.sampled_from(["nonexistent", 3])) if hostile() else draw(st.sampled_from(OPS))
    entry: dict = {}
    if draw(st.booleans()):
        entry["name"] = draw(st.sampled_from(HOSTILE_NAMES + [3, ["x"]])) if hostile() else f"l{k}"
    entry["op"] = op
    keys = PARAMS.get(op, []) if isinstance(op, str) else []
    if op == "upsample":
        keys = [k for k in keys if k != draw(st.sampled_from(["size", "scale_factor"]))]
    for key in keys:
        if key in REQUIRED or draw(st.integers(0, 2)):
            entry[key] = draw(value) if hostile() else draw(GOOD[key])
    if hostile():
        entry[draw(st.sampled_from(["bogus", "inputs", "input", "kernel"]))] = draw(value)
    merge = op in ("add", "mul", "concat")
    if names and (merge or draw(st.integers(0, 3)) == 0):
        pool = ["input", *names] + (["nowhere"] if hostile() else [])
        entry["inputs"] = draw(st.lists(st.sampled_from(pool), min_size=2 if merge else 1, max_size=3 if merge else 1))
    return entry


@st.composite
def spec(draw) -> dict:
    hostility = draw(st.sampled_from([6, 30, 1000, 1000]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(1, 6))
    layers, names = [], []
    for k in range(n):
        entry = draw(layer_entry(k, names, hostility))
        layers.append(entry)
        if isinstance(entry.get("name"), str):
            names.append(entry["name"])
    doc: dict = {"layers": layers}
    if draw(st.booleans()):
        doc["name"] = draw(st.sampled_from(HOSTILE_NAMES)) if rng.random() < 0.8 else draw(value)
    if draw(st.integers(0, 3)):
        good = st.one_of(st.integers(1, 64), st.lists(st.integers(1, 64), min_size=2, max_size=2))
        doc["input"] = draw(value) if rng.random() * hostility < 1 else draw(good)
    if rng.random() * hostility < 1:
        doc["extra"] = 1
    return doc


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    return '""'


def to_toml(doc: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if k != "layers" and v is not None]
    for entry in doc["layers"]:
        lines.append("[[layers]]")
        lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in entry.items() if v is not None]
    return "\n".join(lines) + "\n"


def write(doc: dict, fmt: str, folder: Path) -> Path:
    path = folder / f"net.{fmt}"
    if fmt == "yaml":
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(doc), encoding="utf-8")
    else:
        path.write_text(to_toml(doc), encoding="utf-8")
    return path


def exercise(source, size=None) -> None:
    """Load, analyze and query ``source``; each step a result or an RFMapError."""
    import rfmap
    from rfmap.render import render

    graph = api_case(rfmap.frontends.load, source)
    if isinstance(graph, RFMapError):
        event("rejected when read")
        return
    analysis = api_case(rfmap.analyze, graph, size)
    if isinstance(analysis, RFMapError):
        event("rejected when analyzed")
        return
    event("analyzed")
    out = analysis.output
    for layer in {out.name, analysis.layers[len(analysis.layers) // 2].name}:
        sizes = analysis.layer(layer).output_size
        for cell in (tuple(0 for _ in sizes), tuple(n // 2 for n in sizes), tuple(n - 1 for n in sizes)):
            api_case(analysis.rf_box, layer, cell)
            api_case(analysis.support, layer, cell)
    api_case(analysis.rf_boxes, out.name, np.zeros((2, analysis.ndim), dtype=np.int64))
    api_case(analysis.to_json)
    api_case(render, analysis, "table", color=True)
    api_case(render, analysis, "markdown")


sizes = st.one_of(st.none(), st.integers(1, 300), st.tuples(st.integers(1, 200), st.integers(1, 200)),
                  st.sampled_from([0, -1, 2**40, 2**41, (1,), (7, 7, 7), (2**20, 3), True, "224", 1.5]))


@pytest.mark.parametrize("examples", profiles(600, 1500))
def test_random_spec_files(examples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("specs")

    @fuzz_settings(examples)
    @given(doc=spec(), fmt=st.sampled_from(["yaml", "json", "toml"]), size=sizes)
    def case(doc, fmt, size):
        event(fmt)
        exercise(write(doc, fmt, folder), size)

    case()


#: what gets typed into spec files that should never be read as code or expand without bound
SNIPPETS = [
    "!!python/object/apply:os.mkdir ['{marker}']",
    "!!python/object/new:os.mkdir ['{marker}']",
    "!!python/name:os.system",
    "a: &a [*a]",
    "&x [*x, *x]",
    "\x00",
    "\udcff",
    "[" * 200,
    "{" * 200,
    "1e999",
    ".inf",
    ".nan",
    "NaN",
    "Infinity",
    "9" * 5000,
    "-" * 3,
    "<<: *missing",
    "? [a, b]\n: 1",
    "\ufeff",
    "\t",
    "'",
    '"',
    "\\",
    "=",
    "[[layers]]",
]

BASE = {
    "yaml": "name: tiny\ninput: [32, 40]\nlayers:\n  - {name: c1, op: conv, kernel: 3, stride: 2, padding: 1}\n"
            "  - {name: p1, op: maxpool, kernel: 2}\n  - {name: up, op: upsample, scale_factor: 2, mode: bilinear}\n"
            "  - {name: sum, op: add, inputs: [c1, up]}\n",
    "json": '{"name": "tiny", "input": [32, 40], "layers": [{"name": "c1", "op": "conv", "kernel": 3, "stride": 2, '
            '"padding": 1}, {"name": "p1", "op": "maxpool", "kernel": 2}, {"op": "upsample", "scale_factor": 2}]}\n',
    "toml": 'name = "tiny"\ninput = [32, 40]\n[[layers]]\nname = "c1"\nop = "conv"\nkernel = 3\nstride = 2\n'
            '[[layers]]\nop = "maxpool"\nkernel = 2\n[[layers]]\nop = "upsample"\nscale_factor = 2\n',
}


@st.composite
def mutated(draw, fmt: str, marker: str) -> bytes:
    data = BASE[fmt].encode()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "flip", "replace", "cut", "duplicate"]))
        k = draw(st.integers(0, len(data)))
        if kind == "insert":
            snippet = draw(st.sampled_from(SNIPPETS)).format(marker=marker)
            data = data[:k] + snippet.encode("utf-8", "surrogateescape") + data[k:]
        elif kind == "delete":
            data = data[:k] + data[k + draw(st.integers(1, 20)):]
        elif kind == "flip" and data:
            k = min(k, len(data) - 1)
            data = data[:k] + bytes([data[k] ^ draw(st.integers(1, 255))]) + data[k + 1:]
        elif kind == "replace":
            number = draw(st.sampled_from([b"0", b"-1", b"2", b"true", b"1.5", b"99999999999999", b"1e308", b'"x"', b"[]", b"{}"]))
            data = data.replace(b"3", number, 1) if draw(st.booleans()) else data.replace(b"2", number, 1)
        elif kind == "cut":
            data = data[:k]
        else:
            data = data + data[k:]
    return data


@pytest.mark.parametrize("examples", profiles(600, 1500))
def test_mutated_spec_files(examples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mutated")
    marker = folder / "code-ran"

    @fuzz_settings(examples)
    @given(data=st.data(), fmt=st.sampled_from(["yaml", "json", "toml"]))
    def case(data, fmt):
        path = folder / f"net.{fmt}"
        path.write_bytes(data.draw(mutated(fmt, str(marker))))
        event(fmt)
        exercise(path)
        assert not marker.exists(), "a data file ran code"

    case()


def test_the_mutation_base_files_are_valid(tmp_path):
    """The mutations start from files that load (so they test more than the parser)."""
    import rfmap

    for fmt, text in BASE.items():
        path = tmp_path / f"net.{fmt}"
        path.write_text(text)
        assert len(rfmap.analyze(path).layers) >= 4
