"""Issue 12, one test per report: data files stay data and are checked before anything is
built (spec files, anchor configurations), parameters are validated, never guessed.

Each test is the report's one-line reproduction; the fuzzing suites
(``tests/test_fuzz_*.py``) cover the space around them.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction

import numpy as np
import pytest
from fuzzing import bounded, run_limited

import rfmap
from rfmap.errors import RFMapError
from rfmap.frontends import load


def spec(tmp_path, text: str, suffix: str = ".yaml"):
    path = tmp_path / f"net{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


# -- data never runs code ----------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.mkdir", "!!python/object/new:os.mkdir", "!!python/name:os.mkdir"])
def test_yaml_tags_that_name_code_are_errors(tmp_path, tag):
    marker = tmp_path / "ran"
    path = spec(tmp_path, f"name: {tag} ['{marker}']\nlayers: [{{op: conv, kernel: 3}}]\n")
    with pytest.raises(RFMapError, match=r"net\.yaml, line 1: malformed YAML"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "network: rfmap_marker_module:build\ninput: 64\nlevels: [{layer: c, sizes: [8]}]\n"),
    (".json", '{"network": "rfmap_marker_module:build", "input": 64, "levels": [{"layer": "c", "sizes": [8]}]}'),
    (".toml", 'network = "rfmap_marker_module:build"\ninput = 64\n[[levels]]\nlayer = "c"\nsizes = [8]\n'),
])
def test_anchor_configs_never_import_a_factory(tmp_path, monkeypatch, suffix, text):
    marker = tmp_path / "imported"
    (tmp_path / "rfmap_marker_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from rfmap.anchors import analyze_anchors

    with pytest.raises(RFMapError, match="never name code"):
        analyze_anchors(spec(tmp_path, text, suffix))
    assert not marker.exists()


# -- files are read bounded and checked ----------------------------------------------------------


BOMB = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("where", ["name: *i", "layers: [{op: conv, kernel: 3, name: *i}]"])
def test_yaml_alias_bomb_is_refused_at_once(tmp_path, where):
    """550 bytes that expand to 9^9 strings when printed: refused while reading."""
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB + where + "\n"
    if not where.startswith("layers"):
        text += "layers: [{op: conv, kernel: 3}]\n"
    path = spec(tmp_path, text)
    with bounded(seconds=10, memory=1 << 30), pytest.raises(RFMapError, match="aliases|expand"):
        load(path)
    proc = run_limited(["summary", str(path)], memory=1 << 30, seconds=60)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_few_aliases_that_expand_beyond_the_budget_are_refused(tmp_path):
    levels = "".join(f"l{k + 1}: &l{k + 1} [{', '.join([f'*l{k}'] * 16)}]\n" for k in range(5))
    path = spec(tmp_path, "l0: &l0 [x]\n" + levels + "name: *l5\nlayers: [{op: conv, kernel: 3}]\n")  # 16^5 values, 80 aliases
    with pytest.raises(RFMapError, match="aliases"):
        load(path)
    path = spec(tmp_path, "l0: &l0 [x]\n" + "".join(f"l{k + 1}: &l{k + 1} [{', '.join([f'*l{k}'] * 8)}]\n" for k in range(7))
                + "layers: [{op: conv, kernel: 3}]\n")  # 56 aliases, 8^7 = 2 M values
    with pytest.raises(RFMapError, match="expand the document beyond"):
        load(path)


def test_recursive_yaml_alias(tmp_path):
    with pytest.raises(RFMapError, match="line 1: malformed YAML: a recursive alias"):
        load(spec(tmp_path, "name: &a [*a]\nlayers: [{op: conv, kernel: 3}]\n"))


@pytest.mark.parametrize("raw, message", [
    (b"layers:\n  - {op: conv, kernel: 3, name: \"\xe9\"}\n", r"line 2: not UTF-8 text \(byte 0xe9\)"),
    (b"\xff\xfe\x00b\x00a\x00d", r"line 1: a NUL byte"),
    (b"layers: [{op: conv, kernel: 3}]\n\x0b", r"line 2: malformed YAML: character U\+000B"),
])
def test_undecodable_files(tmp_path, raw, message):
    path = tmp_path / "net.yaml"
    path.write_bytes(raw)
    with pytest.raises(RFMapError, match=message):
        load(path)


def test_a_bom_is_fine(tmp_path):
    path = tmp_path / "net.json"
    path.write_bytes("\ufeff".encode() + b'{"input": 8, "layers": [{"op": "conv", "kernel": 3}]}')
    assert load(path).input_size == (8, 8)


@pytest.mark.parametrize("suffix, text", [
    (".json", '{"layers": ' + "[" * 100000 + "]" * 100000 + "}"),
    (".yaml", "layers: " + "[" * 100000 + "]" * 100000),
    (".toml", "layers = " + "[" * 100000 + "]" * 100000),
    (".json", '{"layers": ' + "[" * 65 + "]" * 65 + "}"),
])
def test_deep_nesting(tmp_path, suffix, text):
    with pytest.raises(RFMapError, match="nested more than 64 levels"):
        load(spec(tmp_path, text, suffix))


@pytest.mark.parametrize("suffix, text, message", [
    (".yaml", "input: 8\nlayers:\n  - {op: conv, kernel: .inf}\n", r"line 3: malformed YAML: '\.inf' is not a finite number"),
    (".yaml", "input: 8\nlayers:\n  - {op: conv, kernel: .nan}\n", r"line 3: .*not a finite number"),
    (".json", '{"input": 8,\n "layers": [{"op": "conv", "kernel": 1e999}]}', r"line 2: malformed JSON: '1e999' is not a finite"),
    (".json", '{"input": 8, "layers": [{"op": "conv", "kernel": NaN}]}', r"line 1: malformed JSON: 'NaN'"),
    (".json", '{"input": 8, "layers": [{"op": "conv", "kernel": ' + "9" * 5000 + "}]}", r"line 1: .*more than 40 digits"),
    (".yaml", "input: 8\nlayers: [{op: conv, kernel: " + "9" * 5000 + "}]\n", r"line 2: .*an integer of 5000 digits"),
    (".toml", "input = 8\n[[layers]]\nop = 'conv'\nkernel = " + "9" * 5000 + "\n", r"line 4: malformed TOML: an integer of more"),
    (".toml", "input = 8\n[[layers]]\nop = 'conv'\nkernel = inf\n", r"line 4: malformed TOML: 'inf' is not a finite number"),
])
def test_numbers_beyond_range(tmp_path, suffix, text, message):
    with pytest.raises(RFMapError, match=message):
        load(spec(tmp_path, text, suffix))


def test_size_limit_and_special_files(tmp_path):
    from rfmap.core.budget import MAX_FILE_BYTES

    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(RFMapError, match="beyond rfmap's limit"):
        load(big)
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(RFMapError, match="not a regular file"):
        load(tmp_path / "dir.yaml")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with bounded(seconds=10), pytest.raises(RFMapError, match="not a regular file"):
        load(fifo)  # opening it would wait for a writer forever
    os.mkfifo(tmp_path / "pipe.onnx")
    with bounded(seconds=10), pytest.raises(RFMapError, match="not a regular file"):
        load(tmp_path / "pipe.onnx", 32)


def test_names_are_strings_never_str_of_a_value(tmp_path):
    with pytest.raises(RFMapError, match=r"layer 1 \(line 1\): 'name' must be a non-empty string, got a list of 2 entries"):
        load(spec(tmp_path, "layers: [{op: conv, kernel: 3, name: [a, b]}]\n"))
    with pytest.raises(RFMapError, match="keys must be strings"):
        load(spec(tmp_path, "layers: [{op: conv, kernel: 3, 7: x}]\n"))
    assert load(spec(tmp_path, "layers: [{op: conv, kernel: 3, name: 7}]\n")).nodes[1].name == "7"


# -- parameters are checked, never guessed -----------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("constant", "zeros"), ("ZEROS", "zeros"), ("Reflect", "reflect"), ("edge", "replicate")])
def test_pad_modes_of_every_spelling(tmp_path, mode, expected):
    g = load(spec(tmp_path, f"input: 8\nlayers: [{{op: conv, kernel: 3, padding: 1, pad_mode: {mode}}}]\n"))
    assert g.nodes[1].layer.pad_mode == expected
    a = rfmap.analyze(g)
    assert a.support(a.output.name, (0, 0))[0].tolist() == [0, 1]  # reflect would be the same set; the mode is the check above


@pytest.mark.parametrize("entry, message", [
    ("{op: conv, kernel: 3, pad_mode: zerso}", "pad mode 'zerso' is not one of"),
    ("{op: maxpool, kernel: 3, ceil_mode: 'false'}", "ceil_mode must be true or false, got 'false'"),
    ("{op: maxpool, kernel: 3, ceil_mode: 0}", "ceil_mode must be true or false, got 0"),
    ("{op: conv, kernel: true}", "kernel must be an integer, got True"),
    ("{op: conv, kernel: 3.5}", "kernel must be an integer, got 3.5"),
    ("{op: conv, kernel: '3'}", "kernel must be an integer, got '3'"),
    ("{op: upsample, scale_factor: 2, align_corners: 'yes'}", "align_corners must be true or false"),
    ("{op: pad, padding: 1, mode: wrapp}", "pad mode 'wrapp'"),
])
def test_bad_parameters_name_the_line(tmp_path, entry, message):
    with pytest.raises(RFMapError, match=r"net\.yaml, layer 1 \(line 3\) 'layer1': " + message.replace("(", r"\(")):
        load(spec(tmp_path, f"input: 8\nlayers:\n  - {entry}\n"))


def test_rf_boxes_rejects_what_rf_box_rejects():
    a = rfmap.analyze([[3, 2, 1]], 16)
    with pytest.raises(RFMapError, match="cell"):
        a.rf_box("layer1", (1.5, 2))
    with pytest.raises(RFMapError, match="cells must be integer indices"):
        a.rf_boxes("layer1", [[1.5, 2]])
    assert a.rf_boxes("layer1", np.array([[1.0, 2.0]])).tolist() == [list(a.rf_box("layer1", (1, 2)))]


# -- what files ask for is bounded (rfmap.core.budget) ----------------------------------------------


@pytest.mark.parametrize("entry, message", [
    ("{op: conv_transpose, kernel: 100000000000, stride: 2}", "100,000,000,000 taps is beyond rfmap's limit"),
    ("{op: adaptive_pool, output_size: 1000000000000}", "repeats its receptive fields only every 125,000,000,000 cells"),
    ("{op: upsample, size: 1000000000}", "repeats its receptive fields only every 125,000,000 cells"),
    ("{op: pad, padding: 1099511627776}", "cells along an axis, beyond rfmap's limit"),
])
def test_requests_beyond_the_budget_are_refused_before_allocating(tmp_path, entry, message):
    path = spec(tmp_path, f"input: 8\nlayers:\n  - {entry}\n")
    with bounded(seconds=10, memory=1 << 30), pytest.raises(RFMapError, match=message):
        rfmap.analyze(path)
    proc = run_limited(["summary", str(path)], memory=1 << 30, seconds=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message.split()[0] in proc.stderr, proc.stderr


def test_a_period_longer_than_the_map_costs_only_the_map(tmp_path):
    # upsampling 8 cells by 1.0000000001 repeats only every 10,000,000,001 cells, but only
    # 8 cells exist: their boxes are kept one by one (rfmap.core.periodic.Explicit)
    path = spec(tmp_path, "input: 8\nlayers:\n  - {op: upsample, scale_factor: 1.0000000001}\n  - {op: conv, kernel: 3}\n")
    with bounded(seconds=10, memory=1 << 30):
        a = rfmap.analyze(path)
    assert a.layers[1].output_size == (8, 8) and a.layers[2].output_size == (6, 6)
    assert a.layers[1].stride == (Fraction(10**10, 10**10 + 1),) * 2
    assert a.layers[2].rf == (3, 3)


def test_huge_input_sizes_answer_what_costs_nothing_and_refuse_the_rest(tmp_path):
    n = 1099511627776  # 2**40: the table is O(1) in the input size; per-cell sets are not
    a = rfmap.analyze("vgg16", n)
    assert a.layer("conv5_3").rf == (196, 196)
    assert a.rf_box("conv5_3", (10**9, 5)) is not None
    with bounded(seconds=10, memory=1 << 30):
        for query in (lambda: a.support("conv5_3", (0, 0)), lambda: a.cells_containing("conv5_3", (5, 5)),
                      lambda: a.nearest_cell("conv5_3", (5, 5))):
            with pytest.raises(RFMapError, match="MAX_CELLS"):
                query()
    for argv in (["cell", "vgg16", "conv5_3", "--at", "0,0", "--input", str(n)],
                 ["report", "vgg16", "--input", str(n), "-o", str(tmp_path / "r.html")],
                 ["plot", "vgg16", "--layer", "conv5_3", "--input", str(n), "-o", str(tmp_path / "p.png")]):
        proc = run_limited(argv, memory=1 << 30, seconds=90)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "limit" in proc.stderr, (argv, proc.stderr)


def test_merged_families_at_a_huge_input_cost_one_period():
    """max_size over several path families (a global branch broadcast back, as in
    squeeze-excitation) reads the first and last period of cells, not every cell of the map."""
    from rfmap.core.graph import GraphBuilder
    from rfmap.core.layers import Conv, GlobalOp, Merge

    b = GraphBuilder("se")
    x = b.add("c", Conv(3, 2, 1), b.input)
    g = b.add("pool", GlobalOp(), x)
    b.add("mul", Merge("mul"), x, g)
    small = rfmap.analyze(b.build(), 64)
    boxes = small.rf_boxes("mul", [(i, i) for i in range(32)])
    assert small.layer("mul").rf[0] == int((boxes[:, 2] - boxes[:, 0]).max()) + 1 == 65  # every cell, by brute force
    with bounded(seconds=20, memory=1 << 30):
        a = rfmap.analyze(b.build(), 2**40)
    assert a.layer("mul").rf == (2**40 + 1, 2**40 + 1)  # the global branch sees all of the padded input
    assert a.layer("mul").output_size == (2**39, 2**39)


def test_json_output_of_hostile_values_round_trips(tmp_path):
    path = spec(tmp_path, json.dumps({"input": 8, "layers": [{"name": "a\u202eb", "op": "conv", "kernel": 3}]}), ".json")
    assert json.loads(rfmap.analyze(path).to_json())["layers"][0]["name"] == "a\u202eb"


def test_images_are_checked_before_they_are_read_or_decoded(tmp_path):
    import struct
    import zlib

    from rfmap.viz._data import embed_image, load_image

    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)  # a PNG that says 10^10 pixels
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    (tmp_path / "bomb.png").write_bytes(png)
    for read in (load_image, embed_image):
        with bounded(seconds=10, memory=1 << 30), pytest.raises(RFMapError, match="100,000x100,000 pixels, beyond"):
            read(tmp_path / "bomb.png")
    os.mkfifo(tmp_path / "pipe.png")
    with bounded(seconds=10), pytest.raises(RFMapError, match="not a regular file"):
        embed_image(tmp_path / "pipe.png")
    proc = run_limited(["report", "vgg16", "--image", str(tmp_path / "bomb.png"), "-o", str(tmp_path / "r.html")],
                       memory=1 << 30, seconds=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "pixels, beyond" in proc.stderr, proc.stderr
