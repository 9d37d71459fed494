"""Fuzzing the command line: random argument lists for every subcommand, run in this process.

Arguments are drawn from a small grammar: a subcommand, a source (zoo names, the golden spec
files, hostile files written for the run, missing files, strings that are no source), its
positional arguments and any of its options with values good and bad (negative, huge,
empty, unicode, markup, bidi overrides, numbers of 30 digits).  Every run must end with
status 0, or status 2 and one error line (:func:`tests.fuzzing.check_cli`), within the
limits of :mod:`tests.fuzzing`.  A few commands with output files (``plot``, ``report``,
``anchors --plot``) and the ERF run small.  Sources that name Python code are limited to
the test suite's own factories: the CLI runs the factories a user types, which is the
user's code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from fuzzing import cli_case, fuzz_settings, profiles
from hypothesis import event, given
from hypothesis import strategies as st

pytestmark = pytest.mark.filterwarnings("ignore::rfmap.RFMapWarning")

SPECS = Path(__file__).parent / "golden" / "specs"

HOSTILE_TEXT = ["", "-", "--", "-1", "-1,0", "0", "0,0", "3,4", "1e999", "nan", "9" * 30, "1,2,3,4", "a,b", "[bold]x[/]",
                "\u202e3,4", "{{DATA}}", "<script>", "224x", "3x512x512", "224,320", "x", " ", "\x1b[31m", "1_000", "٣,٤",
                "-50,-50,20,20", "0,0,10,10", "10,10,0,0", "1.5,2.5,3,4", "inf,0,1,1", "0;0", "0,0;7,7", "-1,-1;99,99"]

#: per subcommand: positionals (after the source) and options with their value pools
GRAMMAR = {
    "summary": ([], {"--input": ["64", "32,48", "1", "2"], "--layers": ["conv*", "c1,p1", "[", "*"],
                     "--format": ["table", "json", "csv", "markdown"], "--depth": ["0", "1", "-1", "99999"],
                     "--strict": None, "--no-color": None}),
    "cell": (["LAYER"], {"--at": ["0,0", "1,1", "3,4", "-1,0", "99,99"], "--input": ["64", "32,48"],
                         "--format": ["text", "json"], "--strict": None}),
    "map": (["LAYER"], {"--box": ["0,0,10,10", "-50,-50,20,20", "5,5,1,1", "0,0,1e6,1e6"],
                        "--rule": ["all", "spp", "fast-rcnn", "align"], "--input": ["64", "48,40"], "--format": ["text", "json"]}),
    "zoo": ([], {"--format": ["text", "json"]}),
    "anchors": ([], {"--format": ["table", "json"], "--input": ["64", "320", "0", "-3"], "--method": ["exact", "sampled"],
                     "--no-color": None, "--plot": ["OUT.png", "OUT.txt", "/nonexistent/x.png"]}),
    "plot": ([], {"--layer": ["LAYER", "0", "-1", "nope"], "--kind": ["boxes", "grid", "growth"], "--cells": ["0,0;1,1", "0,0", "x"],
                  "--log": None, "-o": ["OUT.png", "OUT.svg", "OUT.gif", "/nonexistent/x.png", "OUTDIR"],
                  "--dpi": ["50", "0", "-5", "100000"], "--input": ["32", "40,48"], "--image": ["IMAGE", "MISSING.png", "BAD.png"]}),
    "report": ([], {"-o": ["OUT.html", "OUT.txt", "/nonexistent/r.html"], "--title": ["t", "{{DATA}}", "</script>", "\u202eabc"],
                    "--input": ["32", "40,48"], "--image": ["IMAGE", "MISSING.png", "BAD.png"]}),
    "erf": ([], {"--layer": ["LAYER"], "--at": ["0,0", "1,1", "-1,0"], "--input": ["16", "12,16"], "--n": ["1", "2", "0", "-1"],
                 "--weights": ["uniform", "random"], "--aggregate": ["abs", "square"], "--channels": ["1", "2", "0"],
                 "--batch-size": ["1", "2", "0"], "--device": ["cpu", "meta", "mps", "cuda:7", "xpu", "bogus", ""],
                 "--seed": ["0", "-1", str(2**64), "99999999999999999999999"], "--format": ["text", "json"], "--no-progress": None}),
}

#: (source, a layer of it) pools; files are made by the fixture
SOURCES = {
    "small": [("TINY", "c1"), ("TINY", "-1"), ("MIS", "sum"), ("UP", "up"), ("alexnet", "conv5")],
    "any": [("vgg16", "conv5_3"), ("resnet18", "layer4"), ("TINY", "c1"), ("DEEP", "a"), ("BOMB", "x"), ("BINARY", "x"),
            ("MISSING.yaml", "x"), ("nonexistent_zoo_name", "x"), ("torch_models:resnet18", "layer1"), ("nowhere_pkg:f", "x"),
            ("TINYTOML", "c1"), ("", "x"), ("-", "x"), ("OUTDIR", "x"), ("NOTSPEC.txt", "x")],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "deep.json").write_text('{"layers": ' + "[" * 5000 + "]" * 5000 + "}")
    (d / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 8)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "layers: [{op: conv, kernel: 3, name: *i}]\n")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01layers")
    (d / "notspec.txt").write_text("layers: []")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    import numpy as np

    from rfmap.viz._data import encode_png

    (d / "img.png").write_bytes(encode_png(np.full((20, 24, 3), 128, np.uint8)))
    (d / "tiny.toml").write_text('input = [32, 40]\n[[layers]]\nname = "c1"\nop = "conv"\nkernel = 3\nstride = 2\n')
    (d / "outdir").mkdir()
    return {
        "TINY": str(SPECS / "tiny.yaml"), "MIS": str(SPECS / "misaligned.yaml"), "UP": str(SPECS / "upsample.toml"),
        "DEEP": str(d / "deep.json"), "BOMB": str(d / "bomb.yaml"), "BINARY": str(d / "binary.yaml"),
        "NOTSPEC.txt": str(d / "notspec.txt"), "TINYTOML": str(d / "tiny.toml"), "OUTDIR": str(d / "outdir"),
        "IMAGE": str(d / "img.png"), "BAD.png": str(d / "bad.png"), "MISSING.png": str(d / "missing.png"),
        "MISSING.yaml": str(d / "missing.yaml"), "OUT": str(d / "out"),
    }


def _fill(text: str, files: dict, layer: str) -> str:
    if text == "LAYER":
        return layer
    if text.startswith("OUT.") or text == "OUT":
        return files["OUT"] + text[3:]
    return files.get(text, text)


@st.composite
def argv(draw, files: dict) -> list[str]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    command = draw(st.sampled_from(sorted(GRAMMAR)))
    positionals, options = GRAMMAR[command]
    pool = "small" if command in ("erf", "plot", "report") else "any"
    source, layer = rng.choice(SOURCES[pool])
    if command == "anchors":
        source = rng.choice(["s3fd", "ssd300", "rpn-vgg16", "nope", files["TINY"], files["BOMB"], files["BINARY"]])
    out = [] if command == "zoo" else [_fill(source, files, layer)]
    out += [_fill(p, files, layer) if rng.random() > 0.1 else rng.choice(HOSTILE_TEXT) for p in positionals]
    names = sorted(options)
    for name in rng.sample(names, rng.randint(0, len(names))):
        values = options[name]
        if values is None:
            out.append(name)
            continue
        value = rng.choice(HOSTILE_TEXT) if rng.random() < 0.15 else _fill(rng.choice(values), files, layer)
        out += [f"{name}={value}"] if rng.random() < 0.2 else [name, value]
    if command in ("plot", "report") and "-o" not in out and rng.random() < 0.9:
        out += ["-o", files["OUT"] + (".png" if command == "plot" else ".html")]
    if command == "erf":  # small and fast: the tiny network at a small size, few inputs
        for name, value in (("--input", "16"), ("--n", "2")):
            if not any(a.startswith(name) for a in out):
                out += [name, value]
    if command == "anchors" and "--input" not in " ".join(out) and rng.random() < 0.7:
        out += ["--input", "128"]
    if rng.random() < 0.05:
        out.insert(rng.randrange(len(out) + 1), rng.choice(["--bogus", "-x", "--help", "--version", "--"]))
    return [command, *out]


@pytest.mark.parametrize("examples", profiles(250, 1000))
def test_random_command_lines(examples, files, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # torch_models:resnet18

    @fuzz_settings(examples)
    @given(data=st.data())
    def case(data):
        args = data.draw(argv(files))
        status, out, err = cli_case(args)
        event(f"{args[0]}: status {status}")

    case()
    assert not os.path.exists("/nonexistent")
