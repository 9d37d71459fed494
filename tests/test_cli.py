"""The command line: output, exit status 2 with one ``rfmap: error:`` line for bad input.

Most tests call ``main([...])`` in-process; a few run ``python -m rfmap`` in a subprocess
to check the real exit status and stderr.  Networks are spec files in tests/golden/specs/
(the VGG16 one is the fixture for zoo-independent tests); golden files are regenerated with
``RFMAP_REGEN_GOLDEN=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

import rfmap
import rfmap.cli.app  # noqa: F401  (cli.app: the table of subcommands)
from rfmap import cli
from rfmap.cli import main, parse_input_size
from rfmap.errors import RFMapError, RFMapWarning
from rfmap.render import render

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
SPECS = GOLDEN / "specs"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RFMAP_REGEN_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run with RFMAP_REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs (RFMAP_REGEN_GOLDEN=1 regenerates it)"


@pytest.fixture
def vgg16_spec(tmp_path) -> str:
    """VGG16 as a spec file (works whether or not the zoo has it yet)."""
    path = tmp_path / "vgg16.yaml"
    path.write_text((SPECS / "vgg16.yaml").read_text())
    return str(path)


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def run(capsys, *argv: str):
    """``main(argv)`` in-process: (status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def analyze(source, input_size=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        return rfmap.analyze(source, input_size, **kw)


def assert_one_error(status: int, out: str, err: str, *fragments: str) -> None:
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rfmap: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


# -- summary ----------------------------------------------------------------------------


def test_summary_table_golden(capsys, vgg16_spec):
    status, out, err = run(capsys, "summary", vgg16_spec)
    assert status == 0 and err == ""
    check_golden("cli_summary_vgg16.txt", out)
    assert out == render(analyze(vgg16_spec), "table", color=False) + "\n"


def test_summary_layers_and_input(capsys, vgg16_spec):
    status, out, err = run(capsys, "summary", vgg16_spec, "--input", "3x512x512", "--layers", "conv5*,pool5", "--no-color")
    assert status == 0 and err == ""
    check_golden("cli_summary_vgg16_512_conv5.txt", out)
    assert out.splitlines()[0] == "vgg16 (input 512x512, 18 layers, 4 shown)"


def test_summary_json_is_to_dict(capsys, vgg16_spec):
    status, out, err = run(capsys, "summary", vgg16_spec, "--format", "json", "--input", "224,320")
    assert status == 0 and err == ""
    data = json.loads(out)
    assert data == analyze(vgg16_spec, (224, 320)).to_dict()
    last = data["layers"][-1]
    assert last["name"] == "pool5" and last["rf"] == [212, 212] and last["stride"] == [32, 32]
    assert last["output_size"] == [7, 10]


def test_summary_json_filtered(capsys, vgg16_spec):
    status, out, _ = run(capsys, "summary", vgg16_spec, "--format", "json", "--layers", "pool*")
    assert status == 0
    assert [e["name"] for e in json.loads(out)["layers"]] == [f"pool{i}" for i in range(1, 6)]


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_summary_other_formats(capsys, vgg16_spec, fmt):
    status, out, err = run(capsys, "summary", vgg16_spec, "--format", fmt)
    assert status == 0 and err == ""
    assert out == render(analyze(vgg16_spec), fmt) + "\n"


def test_summary_spec_without_default_input(capsys, write):
    path = write("net.yaml", "layers:\n  - {name: c1, op: conv, kernel: 3}\n")
    assert_one_error(*run(capsys, "summary", path), "no default input size", "--input")
    status, out, _ = run(capsys, "summary", path, "--input", "8x10", "--format", "json")
    assert status == 0 and json.loads(out)["layers"][0]["output_size"] == [6, 8]


@pytest.mark.parametrize(
    "text, ndim, expected",
    [
        ("224", None, 224),
        ("224,320", None, (224, 320)),
        ("224x320", 2, (224, 320)),
        (" 224 , 320 ", 2, (224, 320)),
        ("3x512x512", 2, (512, 512)),
        ("3,512,512", None, (512, 512)),
        ("1x3x512x640", 2, (512, 640)),
        ("16,112,112", 3, (16, 112, 112)),
        ("3x100", 1, (100,)),
    ],
)
def test_parse_input_size(text, ndim, expected):
    assert parse_input_size(text, ndim) == expected


@pytest.mark.parametrize(
    "text, ndim",
    [("", 2), ("abc", 2), ("224x", 2), ("0", 2), ("224,-3", 2), ("1,2,3,4,5", 2), ("2.5", 2), ("224,320", 3)],
)
def test_parse_input_size_rejects(text, ndim):
    with pytest.raises(RFMapError, match="--input"):
        parse_input_size(text, ndim)


# -- warnings and --strict --------------------------------------------------------------


def test_misalignment_warns_once_on_stderr(capsys):
    spec = str(SPECS / "misaligned.yaml")
    status, out, err = run(capsys, "summary", spec, "--format", "json")
    assert status == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfmap: warning: layer 'sum' (add): paths 'a' and 'b' are misaligned")
    assert json.loads(out)["layers"][-1]["aligned"] is False


def test_strict_makes_misalignment_an_error(capsys):
    spec = str(SPECS / "misaligned.yaml")
    assert_one_error(*run(capsys, "summary", spec, "--strict"), "misaligned")


# -- cell -------------------------------------------------------------------------------


def test_cell_json_matches_the_api(capsys, vgg16_spec):
    status, out, err = run(capsys, "cell", vgg16_spec, "conv5_3", "--at", "3,4", "--format", "json")
    assert status == 0 and err == ""
    data = json.loads(out)
    a = analyze(vgg16_spec)
    assert set(data) == {"box", "support", "center"}
    assert tuple(data["box"]) == a.rf_box("conv5_3", (3, 4))
    assert data["support"] == list(a.support_box("conv5_3", (3, 4)))
    assert data == a.cell_dict("conv5_3", (3, 4))
    # cell i sees u..v, u = -P + i*S, v = u + r - 1 (r=196, S=16, P=90)
    assert data["box"] == [-90 + 3 * 16, -90 + 4 * 16, -90 + 3 * 16 + 195, -90 + 4 * 16 + 195]


def test_cell_json_at_another_input_size(capsys, vgg16_spec):
    status, out, _ = run(capsys, "cell", vgg16_spec, "pool5", "--at", "0x9", "--input", "224,320", "--format", "json")
    assert status == 0
    a = analyze(vgg16_spec, (224, 320))
    assert json.loads(out) == a.cell_dict("pool5", (0, 9))


def test_cell_text(capsys, vgg16_spec):
    status, out, err = run(capsys, "cell", vgg16_spec, "pool5", "--at", "0,0")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines == [
        "vgg16 at input 224x224: layer 'pool5' (maxpool, output 7x7), cell (0, 0)",
        "  rf box   y -90..121, x -90..121  (212x212, unclipped: may reach into padding)",
        "  support  y 0..121, x 0..121  (bounding box of the input pixels that influence the cell)",
        "  center   y 15.5, x 15.5",
        "  layer    rf 212, stride 32, padding 90",
    ]
    assert analyze(vgg16_spec).rf_box("pool5", (0, 0)) == (-90, -90, 121, 121)


def test_cell_by_index(capsys, vgg16_spec):
    _, by_name, _ = run(capsys, "cell", vgg16_spec, "pool5", "--at", "1,2", "--format", "json")
    _, by_index, _ = run(capsys, "cell", vgg16_spec, "18", "--at", "1,2", "--format", "json")
    assert by_name == by_index


def test_cell_that_sees_only_padding(capsys, write):
    path = write("pad.yaml", "input: 4\nlayers:\n  - {name: c, op: conv, kernel: 1, padding: 2}\n")
    status, out, _ = run(capsys, "cell", path, "c", "--at", "0,0", "--format", "json")
    assert status == 0 and json.loads(out)["support"] is None
    status, out, _ = run(capsys, "cell", path, "c", "--at", "0,0")
    assert "none: the cell sees only padding" in out


# -- zoo --------------------------------------------------------------------------------


def test_zoo_lists_entries(capsys, monkeypatch):
    from rfmap.frontends import zoo

    entries = [("vgg16", "VGG-16, convolutional part", (224, 224)), ("tiny", "", None)]
    monkeypatch.setattr(zoo, "entries", lambda: entries, raising=False)
    status, out, err = run(capsys, "zoo")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "rfmap zoo: 2 networks"
    assert lines[2].split() == ["name", "input", "description"]
    assert lines[4].split() == ["vgg16", "224x224", "VGG-16,", "convolutional", "part"]
    assert lines[5].strip() == "tiny"
    status, out, _ = run(capsys, "zoo", "--format", "json")
    assert json.loads(out)[0] == {"name": "vgg16", "description": "VGG-16, convolutional part", "input_size": [224, 224]}


def test_zoo_runs_whatever_the_zoo_offers(capsys):
    status, out, err = run(capsys, "zoo")
    assert status == 0 and err == "" and out.strip()


def _zoo_has(name: str) -> bool:
    from rfmap.frontends import zoo

    return zoo.has(name)


@pytest.mark.skipif(not _zoo_has("vgg16"), reason="vgg16 is not in the zoo yet")
def test_zoo_vgg16_matches_the_spec(capsys, vgg16_spec):
    status, out, _ = run(capsys, "summary", "vgg16", "--format", "json", "--layers", "conv*,pool*")
    assert status == 0
    zoo_rows = {e["name"]: e for e in json.loads(out)["layers"]}
    for entry in analyze(vgg16_spec).to_dict()["layers"]:
        assert zoo_rows[entry["name"]]["rf"] == entry["rf"]
        assert zoo_rows[entry["name"]]["stride"] == entry["stride"]


# -- errors: one line, status 2 ---------------------------------------------------------


def test_unknown_zoo_name(capsys):
    assert_one_error(*run(capsys, "summary", "vgg99"), "'vgg99'", "zoo")


def test_missing_file(capsys, tmp_path):
    assert_one_error(*run(capsys, "summary", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_malformed_yaml_names_the_line(capsys, write):
    path = write("bad.yaml", "name: bad\nlayers:\n  - {name: c1, op: conv, kernel: 3\n  - {name: c2, op: conv}\n")
    assert_one_error(*run(capsys, "summary", path, "--input", "32"), "bad.yaml", "line 4", "malformed YAML")


def test_unknown_op_names_the_layer(capsys, write):
    path = write("unk.yaml", "layers:\n  - {name: c1, op: conv, kernel: 3}\n  - {name: blur, op: fancyop}\n")
    assert_one_error(*run(capsys, "summary", path, "--input", "32"), "'blur'", "fancyop", "line 3")


def test_zero_stride(capsys, write):
    path = write("zs.yaml", "layers:\n  - {name: c1, op: conv, kernel: 3, stride: 0}\n")
    assert_one_error(*run(capsys, "summary", path, "--input", "32"), "'c1'", "stride")


def test_kernel_larger_than_padded_input(capsys, write):
    path = write("big.yaml", "layers:\n  - {name: c1, op: conv, kernel: 3}\n  - {name: c2, op: conv, kernel: 9, padding: 1}\n")
    assert_one_error(*run(capsys, "summary", path, "--input", "8"), "'c2'", "kernel larger than the padded input")


def test_cell_outside_the_map(capsys, vgg16_spec):
    assert_one_error(*run(capsys, "cell", vgg16_spec, "pool5", "--at", "7,0"), "outside", "'pool5'", "[7, 7]")


@pytest.mark.parametrize("at, fragment", [("1", "entries"), ("a,b", "--at"), ("1,2,3", "entries")])
def test_cell_bad_index(capsys, vgg16_spec, at, fragment):
    assert_one_error(*run(capsys, "cell", vgg16_spec, "pool5", "--at", at), fragment)


def test_cell_unknown_layer(capsys, vgg16_spec):
    assert_one_error(*run(capsys, "cell", vgg16_spec, "conv9", "--at", "0,0"), "conv9")


@pytest.mark.parametrize("value", ["abc", "0", "224x", "1,2,3,4,5", ""])
def test_bad_input(capsys, vgg16_spec, value):
    assert_one_error(*run(capsys, "summary", vgg16_spec, f"--input={value}"), "--input")


def test_unknown_layer_pattern(capsys, vgg16_spec):
    assert_one_error(*run(capsys, "summary", vgg16_spec, "--layers", "conv5*,fc*"), "'fc*'")


def test_os_error_and_interrupt_are_one_line(capsys, monkeypatch, vgg16_spec):
    import rfmap.frontends

    def denied(source, *args, **kwargs):
        raise PermissionError(13, "Permission denied", source)

    monkeypatch.setattr(rfmap.frontends, "load", denied)
    assert_one_error(*run(capsys, "summary", vgg16_spec), "Permission denied", "vgg16.yaml")

    def interrupted(source, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rfmap.frontends, "load", interrupted)
    status, out, err = run(capsys, "summary", vgg16_spec)
    assert (status, out, err) == (130, "", "rfmap: interrupted\n")


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["summary"]) == 2
    assert main(["summary", "x.yaml", "--format", "yaml"]) == 2
    assert main(["cell", "x.yaml", "conv1"]) == 2  # --at is required
    _, err = capsys.readouterr()
    assert "Traceback" not in err


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rfmap {rfmap.__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"    {name} " in out and cli.subcommand(name).HELP[:40] in " ".join(out.split())


def test_a_new_subcommand_is_one_module_and_one_table_entry(capsys, monkeypatch):
    def configure(p):
        p.add_argument("word")

    def echo(args):
        if args.word == "bad":
            raise RFMapError("bad word")
        return args.word.upper()

    module = types.ModuleType("rfmap.cli.echo")
    module.NAME, module.HELP, module.configure, module.run = "echo", "say it louder", configure, echo
    monkeypatch.setitem(sys.modules, "rfmap.cli.echo", module)
    monkeypatch.setattr(cli.app, "COMMANDS", cli.app.COMMANDS + ("echo",))
    assert run(capsys, "echo", "hi") == (0, "HI\n", "")
    assert_one_error(*run(capsys, "echo", "bad"), "bad word")
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "say it louder" in out


def test_bugs_are_reported_as_bugs(capsys, monkeypatch, vgg16_spec):
    """An unexpected exception is a bug, not bad input: one line, status 70 (not 2), and
    the traceback with RFMAP_DEBUG=1."""
    import rfmap.frontends

    def broken(source, *args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(rfmap.frontends, "load", broken)
    monkeypatch.delenv("RFMAP_DEBUG", raising=False)
    status, out, err = run(capsys, "summary", vgg16_spec)
    assert status == 70 and out == ""
    assert err == "rfmap: internal error: ZeroDivisionError: a bug (please report; RFMAP_DEBUG=1 shows the traceback)\n"
    monkeypatch.setenv("RFMAP_DEBUG", "1")
    status, out, err = run(capsys, "summary", vgg16_spec)
    assert status == 70
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.splitlines()[-1].startswith("rfmap: internal error: ZeroDivisionError: a bug")


# -- python -m rfmap in a subprocess ----------------------------------------------------


def python_m_rfmap(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("RFMAP_REGEN_GOLDEN", None)
    return subprocess.run(
        [sys.executable, "-m", "rfmap", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_subprocess_summary(vgg16_spec):
    proc = python_m_rfmap("summary", vgg16_spec)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == (GOLDEN / "cli_summary_vgg16.txt").read_text()  # not a terminal: plain


@pytest.mark.parametrize(
    "case",
    ["unknown zoo name", "malformed yaml", "unknown op", "zero stride", "kernel too large", "cell outside", "bad input"],
)
def test_subprocess_errors(case, write, vgg16_spec):
    argv, fragments = {
        "unknown zoo name": (["summary", "no_such_net"], ["'no_such_net'"]),
        "malformed yaml": (
            ["summary", write("bad.yaml", "layers:\n  - {name: c1, op: conv, kernel: 3\n  - {op: conv}\n"), "--input", "9"],
            ["line 3", "malformed YAML"],
        ),
        "unknown op": (
            ["summary", write("unk.yaml", "layers:\n  - {name: weird, op: warp}\n"), "--input", "9"],
            ["'weird'", "'warp'"],
        ),
        "zero stride": (
            ["summary", write("zs.yaml", "layers:\n  - {name: c1, op: maxpool, kernel: 2, stride: 0}\n"), "--input", "9"],
            ["'c1'", "stride must be >= 1"],
        ),
        "kernel too large": (
            ["summary", write("big.yaml", "layers:\n  - {name: c1, op: conv, kernel: 11}\n"), "--input", "9"],
            ["'c1'", "kernel larger"],
        ),
        "cell outside": (["cell", vgg16_spec, "conv5_3", "--at", "14,0"], ["outside", "conv5_3"]),
        "bad input": (["summary", vgg16_spec, "--input", "224xabc"], ["--input", "224xabc"]),
    }[case]
    proc = python_m_rfmap(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfmap: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_subprocess_warning_format():
    proc = python_m_rfmap("summary", str(SPECS / "misaligned.yaml"), "--format", "csv")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "rfmap: warning: " + analyze(str(SPECS / "misaligned.yaml")).messages[0]
    ]
