"""Issue 12, one test per report: the command line's contract.

Exit status 0 (also when stdout's reader goes away), 2 with one line for bad input and
usage, 70 with one line for an internal error, 130 for an interrupt; negative numbers as
option values; missing extras named; factories from the current folder and from files;
torch's own logging silenced.  Subprocess tests run ``python -m rfmap`` with this checkout
first on the path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzzing import ROOT, cli_case, run_limited

from rfmap.cli import main

SPECS = Path(__file__).parent / "golden" / "specs"
TINY = str(SPECS / "tiny.yaml")


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- negative numbers are values -------------------------------------------------------------------


def test_negative_box_and_cell_values():
    status, out, err = cli_case(["map", "vgg16", "conv5_3", "--box", "-50,-50,20,20", "--format", "json"])
    assert status == 0 and '"box": [-50, -50, 20, 20]' in out
    status, out, err = cli_case(["cell", "vgg16", "conv5_3", "--at", "-1,0"])
    assert status == 2 and one_line(err) == "rfmap: error: cell [-1, 0] is outside layer 'conv5_3' of size [14, 14]"
    status, out, err = cli_case(["cell", "vgg16", "conv5_3", "--at=--"])
    assert status == 2 and "expected one argument" in one_line(err)


@pytest.mark.parametrize("argv, fragment", [
    (["plot", "vgg16", "--layer", "conv5_3", "--dpi", "0", "-o", "x.png"], "argument --dpi: must be in 1..600, got 0"),
    (["erf", TINY, "--seed", str(2**64)], "argument --seed: must be in 0..9,223,372,036,854,775,807"),
    (["erf", TINY, "--n", "0"], "argument --n: must be in 1.."),
    (["summary", "vgg16", "--format", "yaml"], "argument --format: invalid choice: 'yaml'"),
    (["summary", "mymodels:build", "--depth", "-1"], "argument --depth: must be in 0..1,000, got -1"),
    (["summary"], "the following arguments are required: SOURCE"),
])
def test_usage_errors_are_one_line(argv, fragment):
    status, out, err = cli_case(argv)
    assert status == 2 and fragment in one_line(err)


@pytest.mark.parametrize("device, fragment", [
    ("meta", "holds shapes, no data"), ("mps", "not available on this machine"), ("xpu", "not available on this machine"),
    ("cuda:7", "not available on this machine" if not __import__("torch").cuda.is_available() else "device(s)"),
    ("bogus", "is not a torch device"),
])
def test_erf_devices(device, fragment):
    status, out, err = cli_case(["erf", TINY, "--device", device, "--input", "16", "--n", "2"])
    assert status == 2 and fragment in one_line(err)


# -- missing extras --------------------------------------------------------------------------------


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, out, err = cli_case(["plot", "vgg16", "--layer", "conv5_3", "-o", str(tmp_path / "x.png")])
    assert status == 2 and one_line(err) == "rfmap: error: rfmap plot needs matplotlib: pip install 'rfmap[plot]'"
    status, out, err = cli_case(["anchors", "s3fd", "--plot", str(tmp_path / "a.png")])
    assert status == 2 and "pip install 'rfmap[plot]'" in one_line(err)


def test_a_factory_that_needs_torch_names_the_extra(monkeypatch, tmp_path):
    (tmp_path / "needs_torch_models.py").write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(3, 3, 3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)
    for argv in (["summary", "needs_torch_models:build", "--input", "16"], ["summary", "needs_torch_models:build", "--depth", "1"]):
        status, out, err = cli_case(argv)
        assert status == 2 and "pip install 'rfmap[torch]'" in one_line(err)


# -- factories: the current folder and file paths ------------------------------------------------


FACTORIES = """import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
"""


def test_factories_load_from_the_current_folder_and_from_files(monkeypatch, tmp_path):
    (tmp_path / "mymodels_fh.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for source in ("mymodels_fh:build", "./mymodels_fh.py:build", str(tmp_path / "mymodels_fh.py") + ":build"):
        status, out, err = cli_case(["summary", source, "--input", "16", "--format", "json"])
        assert status == 0, (source, err)
        assert json.loads(out)["layers"][-1]["output_size"] == [8, 8]
        status, out, err = cli_case(["summary", source, "--depth", "1", "--input", "16", "--no-color"])
        assert status == 0 and "Conv2d" in out, (source, err)
    assert str(tmp_path) not in sys.path  # the folder was on the path while importing, not after
    status, out, err = cli_case(["summary", "./missing_file.py:build", "--input", "16"])
    assert status == 2 and "no such file" in one_line(err)
    status, out, err = cli_case(["summary", "mymodels_fh:", "--input", "16"])
    assert status == 2 and "expected 'package.module:factory'" in one_line(err)


def test_torch_logging_is_silenced_during_capture(tmp_path):
    """torch.export prints partial graphs and logs warnings before it raises (~40 lines):
    rfmap says one line."""
    (tmp_path / "dyn_models.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass Dyn(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.c = nn.Conv2d(3, 3, 3)\n\n    def forward(self, x):\n        y = self.c(x)\n"
        "        return y if y.sum() > 0 else y * 2\n\n\ndef build():\n    return Dyn()\n"
    )
    proc = run_limited(["summary", "dyn_models:build", "--input", "16"], cwd=tmp_path, memory=3 << 30, seconds=240)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.stderr).startswith("rfmap: error: cannot capture the graph of Dyn")


def test_data_dependent_ops_are_one_line_or_a_result(tmp_path):
    (tmp_path / "nz_models.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass NZ(nn.Module):\n    def forward(self, x):\n"
        "        idx = torch.nonzero(x[0, 0] > 0)\n        return x[:, :, int(idx[:, 0].max()):, :]\n\n\ndef build():\n    return NZ()\n"
    )
    proc = run_limited(["summary", "nz_models:build", "--input", "16"], cwd=tmp_path, memory=3 << 30, seconds=240)
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 2:
        one_line(proc.stderr)


# -- exit status ----------------------------------------------------------------------------------


def test_write_errors_are_one_line():
    with open("/dev/full", "w") as full:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-m", "rfmap", "zoo"], stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                              timeout=120)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == "rfmap: error: cannot write the output: No space left on device"


def test_a_closed_pipe_exits_0():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "rfmap", "summary", "resnet152", "--format", "csv"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away, as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""


def test_an_interrupt_exits_130():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "rfmap", "erf", "vgg16", "--n", "100000", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(8)  # torch loaded, measuring
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.decode().splitlines()[-1] == "rfmap: interrupted"
    assert b"Traceback" not in err


def test_internal_errors_are_70_and_one_line(monkeypatch, capsys):
    import rfmap.frontends

    monkeypatch.setattr(rfmap.frontends, "load", lambda *a, **k: [][1])
    monkeypatch.delenv("RFMAP_DEBUG", raising=False)
    assert main(["summary", "vgg16"]) == 70
    assert one_line(capsys.readouterr().err).startswith("rfmap: internal error: IndexError: list index out of range (please")
