"""The command line starts instantly: help and version import neither numpy nor torch; long
work shows a status line on a terminal only."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rfmap.cli.app import COMMANDS
from rfmap.progress import Status

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["--help"], ["--version"]] + [[name, "--help"] for name in COMMANDS])
def test_help_and_version_import_no_numpy_nor_torch(argv):
    code = (
        "import sys\nfrom rfmap.cli import main\n"
        f"status = main({argv!r})\n"
        "heavy = [m for m in ('numpy', 'torch', 'onnx', 'matplotlib', 'rich') if m in sys.modules]\n"
        "assert status == 0 and not heavy, (status, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_a_command_line_imports_what_its_subcommand_uses_only():
    code = (
        # a site's start-up files may import shutil before any rfmap code runs: forget it, so that
        # only an import made by rfmap brings it back
        "import sys\nsys.modules.pop('shutil', None)\nfrom rfmap.cli import main\n"
        "status = main(['summary', 'vgg16', '--format', 'json'])\n"
        "others = [m for m in sys.modules if m.startswith('rfmap.cli.') and m not in ('rfmap.cli.app', 'rfmap.cli.common', 'rfmap.cli.summary')]\n"
        "assert status == 0 and 'rfmap.cli.summary' in sys.modules and not others, (status, others)\n"
        # argparse reads the terminal's width (importing shutil) for help and usage text only
        "assert 'shutil' not in sys.modules\n"
        # VGG-16 has none of the layers kept in modules of their own, nor an ERF or module table
        "unused = ('rfmap.core.adaptive', 'rfmap.core.borders', 'rfmap.core.broadcast', 'rfmap.core.resampling',\n"
        "          'rfmap.core.registry', 'rfmap.render.erf', 'rfmap.render.modules')\n"
        "assert not [m for m in unused if m in sys.modules], [m for m in unused if m in sys.modules]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]


@pytest.mark.parametrize("columns", [60, 100])
def test_help_fits_the_terminal_width(columns):
    for argv in (["--help"], ["summary", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "rfmap", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "COLUMNS": str(columns)})
        lines = proc.stdout.splitlines()
        assert proc.returncode == 0 and len(lines) > 5, proc.stderr[-500:]
        widest = max(len(line) for line in lines)
        assert columns - 12 <= widest <= columns - 2, (columns, widest)  # argparse fills the width less 2


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_status_line_only_on_a_terminal_and_only_after_a_delay():
    tty = _Tty()
    with Status("reading mymodels:build", delay=0.05, stream=tty):
        time.sleep(0.4)
    assert "reading mymodels:build ..." in tty.getvalue() and tty.getvalue().endswith("\r")
    quick = _Tty()
    with Status("reading vgg16", delay=5, stream=quick):
        pass
    assert quick.getvalue() == ""
    pipe = io.StringIO()
    with Status("reading mymodels:build", delay=0.0, stream=pipe):
        time.sleep(0.2)
    assert pipe.getvalue() == ""
