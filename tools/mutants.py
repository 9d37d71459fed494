"""Mutation check of the test suite: does the quick subset kill known engine bugs?

A dev tool, not part of the test suite.  For each mutant below it copies the repository to
a temporary directory, applies one textual edit to the engine's source (the snippet must
occur exactly once, or the tool stops), runs

    python -m pytest -q -x -m "not slow" -p no:cacheprovider [ARGS...]

there (the copy's ``rfmap`` is the one imported: the working directory comes first on
``sys.path``), and prints one row per mutant: killed or survived, the first failing test,
seconds.  A mutant is killed when pytest reports a failing test or an error.  Hypothesis
does not shrink failing examples in these runs (``RFMAP_TESTS_NO_SHRINK``, read by
``tests/conftest.py``): the first failure is enough.

    python tools/mutants.py                                    # the whole quick suite
    python tools/mutants.py tests/test_probe_modules.py        # one test file
    python tools/mutants.py --only a,c tests/test_probe_modules.py
    python tools/mutants.py -- tests/test_probe_modules.py -k example   # pytest options after --

The mutants live in one table (``MUTANTS``) at the top: update a snippet when the engine's
code moves.  The unmutated copy is run first (``--no-baseline`` skips it): a suite that
fails without a mutant kills nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    key: str
    what: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str


MUTANTS = (
    Mutant(
        "a",
        "left/right padding swapped (the (left, right) pair of an explicit pad)",
        "rfmap/core/params.py",
        "        return (integer(p[0], what), integer(p[1], what))",
        "        return (integer(p[1], what), integer(p[0], what))",
    ),
    Mutant(
        "b",
        "H and W swapped (a convolution reads its per-axis parameters in reverse axis order)",
        "rfmap/core/layers.py",
        "        return tuple(self._axis(n, k, s, d, p) for n, k, s, d, p in zip(sizes, ks, ss, ds, pads))",
        "        return tuple(self._axis(n, k, s, d, p) for n, k, s, d, p in zip(sizes, ks[::-1], ss[::-1], ds[::-1], pads[::-1]))",
    ),
    Mutant(
        "c",
        "ceil mode computed as floor",
        "rfmap/core/layers.py",
        "            n_out = -(-span // s) + 1",
        "            n_out = span // s + 1",
    ),
    Mutant(
        "d",
        "dilation ignored in transposed convolution",
        "rfmap/core/axis.py",
        "        num = (o + self.pad_left)[:, None] - self.dilation * np.arange(self.kernel)",
        "        num = (o + self.pad_left)[:, None] - np.arange(self.kernel)",
    ),
    Mutant(
        "e",
        "the last window of a ceil-mode pool may start in the right padding",
        "rfmap/core/layers.py",
        "            if (n_out - 1) * s >= n + pl:",
        "            if False:",
    ),
    Mutant(
        "a2",
        "(extra) a convolution's window starts at its right pad ('same' with an even kernel)",
        "rfmap/core/layers.py",
        "        return Window(n, n_out, k, s, d, pl, self.pad_mode, wrap)",
        "        return Window(n, n_out, k, s, d, pr, self.pad_mode, wrap)",
    ),
)

IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "*.egg-info", "build", "dist", ".venv", "venv",
    ".mypy_cache", ".ruff_cache",
)


def copy_repo(dest: Path) -> Path:
    target = dest / "repo"
    shutil.copytree(ROOT, target, ignore=IGNORE, symlinks=True)
    return target


def apply(repo: Path, mutant: Mutant) -> None:
    path = repo / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(
            f"mutant {mutant.key}: the snippet occurs {count} times in {mutant.path} (expected once); "
            f"update MUTANTS in {Path(__file__).name}:\n{mutant.old}"
        )
    path.write_text(text.replace(mutant.old, mutant.new))


def first_failure(output: str) -> str:
    for line in output.splitlines():
        m = re.match(r"(FAILED|ERROR) (.+?)(?: - |$)", line)
        if m:
            return m.group(2)
    return ""


def run_suite(repo: Path, args: list[str]) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", RFMAP_TESTS_NO_SHRINK="1")
    where = subprocess.run(
        [sys.executable, "-c", "import rfmap; print(rfmap.__file__)"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if not where.stdout.strip().startswith(str(repo)):
        raise SystemExit(f"the copy's rfmap is not the one imported: {where.stdout.strip() or where.stderr.strip()}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated mutant keys (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated copy")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. test files")
    opts = parser.parse_args(argv)
    chosen = MUTANTS
    if opts.only:
        keys = opts.only.split(",")
        unknown = set(keys) - {m.key for m in MUTANTS}
        if unknown:
            raise SystemExit(f"unknown mutants: {', '.join(sorted(unknown))}")
        chosen = tuple(m for m in MUTANTS if m.key in keys)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rfmap-mutants-") as tmp:
        if not opts.no_baseline:
            repo = copy_repo(Path(tmp) / "baseline")
            rc, out, secs = run_suite(repo, opts.pytest_args)
            if rc != 0:
                print(out[-3000:])
                raise SystemExit(f"the unmutated suite fails (exit {rc}): {first_failure(out)}")
            print(f"baseline: passes in {secs:.1f} s")
        for mutant in chosen:
            repo = copy_repo(Path(tmp) / f"mutant-{mutant.key}")
            apply(repo, mutant)
            rc, out, secs = run_suite(repo, opts.pytest_args)
            status = {0: "SURVIVED", 1: "killed"}.get(rc, f"killed (exit {rc})" if rc in (2, 3) else f"error (exit {rc})")
            rows.append((mutant.key, mutant.what, status, first_failure(out), secs))
            print(f"{mutant.key}: {status} ({secs:.1f} s)", flush=True)
    width = max(len(r[1]) for r in rows) if rows else 10
    print(f"\n{'':3}{'mutant':<{width}}  {'result':<10}  {'seconds':>7}  first failing test")
    for key, what, status, test, secs in rows:
        print(f"{key:<3}{what:<{width}}  {status:<10}  {secs:7.1f}  {test}")
    return 0 if all(r[2].startswith("killed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
