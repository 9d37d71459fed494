"""Rendering of an analysis: the plain table (golden files), JSON, CSV, Markdown, rich.

Golden files live in tests/golden/; regenerate them with ``RFMAP_REGEN_GOLDEN=1 pytest``.
The networks are spec files in tests/golden/specs/.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import types
import warnings
from fractions import Fraction
from pathlib import Path

import pytest

import rfmap
from rfmap.errors import RFMapError, RFMapWarning
from rfmap.render import fmt_axes, fmt_number, render, select_layers

GOLDEN = Path(__file__).parent / "golden"
SPECS = GOLDEN / "specs"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RFMAP_REGEN_GOLDEN") == "1":
        path.write_text(text + "\n", encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run with RFMAP_REGEN_GOLDEN=1 to create it"
    assert text + "\n" == path.read_text(encoding="utf-8"), f"{name} differs (RFMAP_REGEN_GOLDEN=1 regenerates it)"


def analyze(spec: str, input_size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        return rfmap.analyze(SPECS / spec, input_size)


@pytest.fixture(scope="module")
def vgg16():
    return analyze("vgg16.yaml")


@pytest.fixture(scope="module")
def tiny():
    return analyze("tiny.yaml")


# -- values -----------------------------------------------------------------------------


def test_fmt_number_is_exact():
    assert fmt_number(3) == "3"
    assert fmt_number(Fraction(1, 2)) == "0.5"  # exact decimals as decimals, everywhere
    assert fmt_number(Fraction(-3, 2)) == "-1.5"
    assert fmt_number(Fraction(4, 2)) == "2"
    assert fmt_number(Fraction(31, 2)) == "15.5"
    assert fmt_number(Fraction(1, 3)) == "1/3"  # no finite decimal: the exact fraction
    assert fmt_number(Fraction(-2, 3)) == "-2/3"


def test_fmt_axes_collapses_equal_axes():
    assert fmt_axes((212, 212)) == "212"
    assert fmt_axes((7, 11)) == "7x11"
    assert fmt_axes((Fraction(1, 2), Fraction(1, 2))) == "0.5"
    assert fmt_axes((Fraction(1, 2), 1)) == "0.5x1"
    assert fmt_axes((Fraction(1, 3), 1)) == "1/3x1"
    assert fmt_axes((3, 3, 5)) == "3x3x5"


# -- golden tables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, golden",
    [
        ("vgg16.yaml", "vgg16_table.txt"),
        ("tiny.yaml", "tiny_table.txt"),
        ("misaligned.yaml", "misaligned_table.txt"),
        ("upsample.toml", "decoder_table.txt"),
    ],
)
def test_plain_table_golden(spec, golden):
    check_golden(golden, render(analyze(spec), "table", color=False))


def test_filtered_table_golden(vgg16):
    check_golden("vgg16_conv5_table.txt", render(vgg16, "table", layers="conv5*,pool5", color=False))


def test_markdown_golden(tiny):
    check_golden("tiny_table.md", render(tiny, "markdown"))


def test_csv_golden(tiny):
    check_golden("tiny.csv", render(tiny, "csv"))


def test_table_values_match_the_reference(vgg16):
    """VGG16 at 224: pool5 r=212, S=32, P=90 (REFERENCE.md), in the table and its footer."""
    text = render(vgg16, "table", color=False)
    pool5 = next(line for line in text.splitlines() if line.startswith("pool5"))
    assert pool5.split()[2:6] == ["7x7", "32", "212", "90"]
    assert "output 'pool5' 7x7: rf 212, stride 32, padding 90" in text
    assert text.splitlines()[0] == "vgg16 (input 224x224, 18 layers)"


def test_table_emphasizes_the_output_and_right_aligns_numbers(vgg16):
    lines = render(vgg16, "table", color=False).splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) <= {"-", " "} and line.strip()]
    assert len(rules) == 2 and lines[rules[1] + 1].startswith("pool5")  # the output row, below its rule
    header = lines[2]
    conv11, pool5 = lines[4], lines[rules[1] + 1]
    end = header.index("rf") + len("rf")
    assert conv11[:end].endswith("3") and pool5[:end].endswith("212")


def test_flags_and_legend(tiny):
    text = render(tiny, "table", color=False)
    rows = {line.split()[0]: line for line in text.splitlines()[4:] if line and not line.startswith("-")}
    assert rows["up"].rstrip().endswith("*")  # nearest upsampling: the RF varies by cell phase
    assert rows["gap"].rstrip().endswith("g")
    assert rows["b1"].split()[-1] == "0"  # no flags
    assert "flags: * rf varies by cell (largest shown)   g global context" in text
    mis = analyze("misaligned.yaml")
    text = render(mis, "table", color=False)
    assert text.splitlines()[-1] == f"warning: {mis.messages[0]}"
    assert "! misaligned paths" in text


def test_per_axis_values_when_they_differ(tiny):
    text = render(tiny, "table", color=False)
    conv1 = next(line for line in text.splitlines() if line.startswith("conv1"))
    assert conv1.split()[2:6] == ["32x48", "2", "7x5", "3x2"]


def test_fractional_stride_is_a_fraction():
    text = render(analyze("upsample.toml"), "table", color=False)
    up = next(line for line in text.splitlines() if line.startswith("up "))
    assert up.split()[3] == "0.5"


# -- layer selection --------------------------------------------------------------------


def test_select_layers_keeps_network_order(vgg16):
    names = [row.name for row in select_layers(vgg16, "pool5, conv5*")]
    assert names == ["conv5_1", "conv5_2", "conv5_3", "pool5"]
    assert [row.name for row in select_layers(vgg16, ["pool?"])] == [f"pool{i}" for i in range(1, 6)]
    assert len(select_layers(vgg16)) == 18  # the input row is not listed


def test_select_layers_names_the_unmatched_pattern(vgg16):
    with pytest.raises(RFMapError, match=r"pattern 'conv9\*' matches no layer of 'vgg16'"):
        select_layers(vgg16, "conv5*,conv9*")
    with pytest.raises(RFMapError, match="no pattern"):
        select_layers(vgg16, " , ")


def test_filter_without_output_has_no_output_row(vgg16):
    text = render(vgg16, "table", layers="conv1*", color=False)
    lines = text.splitlines()
    assert lines[0] == "vgg16 (input 224x224, 18 layers, 2 shown)"
    assert sum(1 for line in lines if set(line) <= {"-", " "} and line.strip()) == 1
    assert "output 'pool5'" in text  # the footer still gives the network's output


# -- JSON, CSV, Markdown ----------------------------------------------------------------


def test_json_is_to_dict(vgg16, tiny):
    for a in (vgg16, tiny):
        data = json.loads(render(a, "json"))
        assert data == a.to_dict()
        assert set(data) == {"input_size", "layers", "outputs"}
        assert data["outputs"] == [a.output.name]
        assert set(data["layers"][0]) == {
            "name", "op", "output_size", "stride", "rf", "padding", "center0", "shift_invariant", "aligned"
        }
        assert data["layers"][-1]["name"] == a.output.name


def test_json_filtered(vgg16):
    data = json.loads(render(vgg16, "json", layers="conv5*"))
    full = vgg16.to_dict()
    assert data["input_size"] == full["input_size"]
    assert data["layers"] == [e for e in full["layers"] if e["name"].startswith("conv5")]


def test_csv_columns_per_axis(tiny):
    rows = list(csv.DictReader(io.StringIO(render(tiny, "csv"))))
    assert [r["layer"] for r in rows] == [row.name for row in tiny.layers[1:]]
    conv1 = rows[0]
    assert (conv1["rf_h"], conv1["rf_w"], conv1["padding_h"], conv1["padding_w"]) == ("7", "5", "3", "2")
    assert conv1["output_h"] == "32" and conv1["output_w"] == "48"
    assert rows[-1]["global_context"] == "true" and rows[0]["shift_invariant"] == "true"
    dec = list(csv.DictReader(io.StringIO(render(analyze("upsample.toml"), "csv"))))
    assert float(dec[-1]["stride_h"]) == 0.5


def test_markdown_is_a_github_table(vgg16):
    lines = render(vgg16, "markdown").splitlines()
    assert lines[0] == "**vgg16 (input 224x224, 18 layers)**"
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 18
    assert table[1] == "|:--|:--|--:|--:|--:|--:|--:|:--|"
    assert all(line.count("|") - line.count("\\|") == 9 for line in table)
    assert table[-1].startswith("| **pool5** |")
    assert "conv1\\_1" in table[2]  # escaped for GitHub


def test_unknown_format(vgg16):
    with pytest.raises(RFMapError, match="unknown format 'yaml'"):
        render(vgg16, "yaml")


# -- colour and rich --------------------------------------------------------------------


def test_rich_table_has_color_and_the_same_values(vgg16):
    pytest.importorskip("rich")
    text = render(vgg16, "table", color=True)
    assert "\x1b[" in text
    plain = render(vgg16, "table", color=False)
    assert "\x1b[" not in plain
    for row in vgg16.layers[1:]:
        assert row.name in text
    assert "output 'pool5' 7x7: rf 212, stride 32, padding 90" in text


def test_no_color_when_stdout_is_not_a_terminal(vgg16, monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert render(vgg16, "table") == render(vgg16, "table", color=False)


def test_no_color_env(vgg16, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    if _has_rich():
        assert "\x1b[" in render(vgg16, "table")
    monkeypatch.setenv("NO_COLOR", "1")
    assert render(vgg16, "table") == render(vgg16, "table", color=False)


def test_plain_fallback_without_rich(vgg16, monkeypatch):
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    assert render(vgg16, "table", color=True) == render(vgg16, "table", color=False)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def test_rendering_reads_only_the_results(vgg16):
    """Render works from the immutable rows alone: no geometry is computed."""
    fake = types.SimpleNamespace(
        graph=types.SimpleNamespace(name="vgg16"),
        input_size=vgg16.input_size,
        ndim=2,
        layers=vgg16.layers,
        output=vgg16.output,
        outputs=vgg16.outputs,
        output_rows=vgg16.output_rows,
        messages=(),
        to_dict=vgg16.to_dict,
    )
    for fmt in ("table", "json", "csv", "markdown"):
        assert render(fake, fmt, color=False) == render(vgg16, fmt, color=False)


def test_render_names_load_on_first_use():
    """``rfmap.render`` imports a renderer's module when one of its names is first used, and
    every name it lists is the one its module holds."""
    code = (
        "import importlib, sys\nimport rfmap.render as r\n"
        "assert not [m for m in sys.modules if m.startswith('rfmap.render.')], sorted(sys.modules)\n"
        "r.render\n"
        "assert 'rfmap.render.summary' in sys.modules and 'rfmap.render.erf' not in sys.modules\n"
        "for module, names in r._MODULES.items():\n"
        "    held = importlib.import_module('rfmap.render.' + module)\n"
        "    assert all(getattr(r, n) is getattr(held, n) for n in names), module\n"
        "assert sorted(n for names in r._MODULES.values() for n in names) == sorted(r.__all__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert proc.returncode == 0, proc.stderr[-800:]
