"""What the fuzzing suites (``tests/test_fuzz_*.py``) share: two profiles, limits on time and
memory for every case, and the checks that a case ended cleanly.

The contract under test: any input ends in a result or in one :class:`rfmap.RFMapError`
(the CLI: status 0, or status 2 with one line ``rfmap...: error: ...``), within
:data:`SECONDS` seconds and :data:`MEMORY` bytes of new address space, never another
exception, status 70, a signal or a hang.

Profiles: ``quick`` (derandomized: the same cases on every run, in the default
``-m "not slow"`` run) and ``long`` (random, marked ``slow``).  Each test takes its example
count from :func:`profiles`; ``pytest --hypothesis-show-statistics`` prints what ran.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from rfmap.errors import RFMapError

#: the wall-clock limit of one case
SECONDS = 20.0
#: the address space one case may add (numpy raises MemoryError beyond it)
MEMORY = 3 << 30


def profiles(quick: int, long: int) -> list:
    """``[quick, long]`` example counts as pytest params; ``long`` is marked ``slow``."""
    return [pytest.param(quick, id="quick"), pytest.param(long, id="long", marks=pytest.mark.slow)]


def fuzz_settings(examples: int, quick: bool | None = None) -> settings:
    """Settings of one profile: derandomized, so that every run (CI's, a new user's) checks the
    same cases -- ``RFMAP_FUZZ_RANDOM=1`` draws new ones, to look for more; no deadline (the
    time limit is :func:`bounded`'s), no example database (cases are not replayed)."""
    explore = os.environ.get("RFMAP_FUZZ_RANDOM", "") not in ("", "0")
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=quick if quick is not None else not explore,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


class Hang(BaseException):
    """A case ran past :data:`SECONDS` (a BaseException: rfmap's ``except Exception`` cannot
    swallow it)."""


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - Linux only


@contextlib.contextmanager
def bounded(seconds: float = SECONDS, memory: int = MEMORY) -> Iterator[None]:
    """Run the body with at most ``memory`` more bytes of address space (``RLIMIT_AS``; the
    old limit comes back afterwards) and ``seconds`` of wall-clock time (``SIGALRM``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def alarm(signum, frame):  # noqa: ARG001
        raise Hang(f"the case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_message(exc: RFMapError) -> str:
    """An RFMapError's message: non-empty, printable as one line by the CLI."""
    text = str(exc)
    assert text.strip(), "an RFMapError without a message"
    assert len(text) < 20_000, f"an error message of {len(text)} characters"
    return text


def api_case(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` within the limits: its result, or the RFMapError it raised
    (anything else fails the test)."""
    with bounded():
        try:
            return fn(*args, **kwargs)
        except RFMapError as exc:
            check_message(exc)
            return exc


def cli_case(argv: list[str]) -> tuple[int, str, str]:
    """``rfmap argv`` in this process within the limits; asserts the CLI's contract and returns
    ``(status, stdout, stderr)``."""
    from rfmap.cli import main

    out, err = io.StringIO(), io.StringIO()
    with bounded(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    check_cli(argv, status, err.getvalue())
    return status, out.getvalue(), err.getvalue()


def check_cli(argv: list[str], status: int, err: str) -> None:
    """Status 0 or 2; with 2 the last line of stderr is the one error line; no traceback."""
    assert status in (0, 2), f"rfmap {argv!r}: status {status}\n{err}"
    assert "Traceback (most recent call last)" not in err, f"rfmap {argv!r}:\n{err}"
    if status == 2:
        lines = err.splitlines()
        assert lines, f"rfmap {argv!r}: status 2 and nothing on stderr"
        assert lines[-1].startswith("rfmap") and ": error: " in lines[-1], f"rfmap {argv!r}:\n{err}"
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1, f"rfmap {argv!r}: {len(errors)} error lines\n{err}"


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def run_limited(argv: list[str], *, memory: int = 2 << 30, seconds: float = 60.0, cwd=None, stdin=None):
    """``python -m rfmap argv`` in a subprocess with at most ``memory`` bytes of address space
    and ``seconds`` of wall-clock time; returns the CompletedProcess (a hang fails the test)."""
    import os
    import subprocess
    import sys

    def limit():  # in the child, before exec: python itself needs ~1.5 GB of address space with torch
        resource.setrlimit(resource.RLIMIT_AS, (memory + (2 << 30), memory + (2 << 30)))

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("RFMAP_DEBUG", None)
    try:
        return subprocess.run([sys.executable, "-m", "rfmap", *argv], capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=seconds, preexec_fn=limit, stdin=stdin)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rfmap {argv!r} ran past {seconds} s")
