"""The code checks CI runs, as part of the suite: ``ruff check`` (the rules in
``pyproject.toml``: pyflakes, pycodestyle, import order, bugbear, pyupgrade) over the whole
repository, and ``mypy`` over the package (strict on ``rfmap.core``).  Both are in the ``test``
extra, so the README's test command runs them as CI does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing(tmp_path):
    done = _run("mypy", "--cache-dir", str(tmp_path / "mypy"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
