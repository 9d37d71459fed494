"""The ``rfmap`` command line: the parser, the table of subcommands and the error contract.

Problems with the input (an unknown name, a malformed spec, a layer that does not fit)
print one line ``rfmap: error: ...`` on stderr and exit with status 2; warnings print as
``rfmap: warning: ...``.  Every subcommand is one module of :mod:`rfmap.cli` with
``NAME``, ``HELP``, ``configure(parser)`` and ``run(args)``, listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Sequence

from rfmap.cli import anchors, cell, crop, erf, levels, map, plot, report, summary, zoo
from rfmap.cli.common import Command
from rfmap.errors import RFMapError, RFMapWarning

PROG = "rfmap"
EXIT_USAGE = 2

#: Every subcommand, in the order ``rfmap --help`` lists them.
COMMANDS: list[Command] = [
    Command(m.NAME, m.HELP, m.configure, m.run) for m in (summary, cell, map, levels, crop, zoo, erf, anchors, plot, report)
]


def build_parser() -> argparse.ArgumentParser:
    from rfmap import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact receptive fields of convolutional networks (pixel-index coordinates, (H, W) order).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, allow_abbrev=False)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _error(message: Any) -> int:
    text = " ".join(str(message).split()) or "failed"
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def _report(caught: Sequence[warnings.WarningMessage]) -> None:
    """RFMapWarnings as one line each (once per message); other warnings as Python shows them."""
    seen: set[str] = set()
    for w in caught:
        if issubclass(w.category, RFMapWarning):
            text = " ".join(str(w.message).split())
            if text not in seen:
                seen.add(text)
                print(f"{PROG}: warning: {text}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input and usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2), --help and --version (status 0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RFMapWarning)
            text = args._run(args)
    except RFMapError as exc:
        _report(caught)
        return _error(exc)
    except KeyboardInterrupt:
        _report(caught)
        return _error("interrupted")
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:
        _report(caught)
        where = f"'{exc.filename}': " if exc.filename else ""
        return _error(f"{where}{exc.strerror or exc}")
    _report(caught)
    if text is not None:
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return _broken_pipe()
    return 0


def _broken_pipe() -> int:
    """The reader went away (``rfmap summary ... | head``): stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_USAGE
