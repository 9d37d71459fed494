"""The ``rfmap`` command line: the parser, the table of subcommands and the error contract.

Exit status (and what stderr shows):

===  =========================================================================================
0    done (also when the reader of stdout went away: ``rfmap summary vgg16 | head``)
2    bad input or usage: an unknown name, a malformed file, a layer that does not fit, a
     request beyond :mod:`rfmap.core.budget`, a missing optional dependency, a file that cannot
     be read or written (``rfmap zoo > /dev/full``): one line ``rfmap: error: ...``
70   an internal error, a bug in rfmap: one line ``rfmap: internal error: ...``; set
     ``RFMAP_DEBUG=1`` to see the traceback
130  interrupted (Ctrl-C): one line ``rfmap: interrupted``
===  =========================================================================================

Warnings print as ``rfmap: warning: ...``.  Every subcommand is one module of
:mod:`rfmap.cli`, named as the subcommand, with ``NAME``, ``HELP``, ``configure(parser)`` and
``run(args)``, listed in :data:`COMMANDS`; a command line imports the module of the subcommand
it names only (``rfmap --help`` imports them all).  A PyTorch factory (``pkg.module:factory``)
runs the user's own code: an error it raises is reported as bad input, but a factory that
aborts the interpreter or never returns is beyond rfmap's reach.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, NoReturn, TypeVar, overload

from rfmap.errors import RFMapError, RFMapWarning

PROG = "rfmap"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE of BSD's sysexits.h
EXIT_INTERRUPT = 130  # 128 + SIGINT, as shells report it
DEBUG_ENV = "RFMAP_DEBUG"

#: Every subcommand, in the order ``rfmap --help`` lists them: the name of its module in
#: :mod:`rfmap.cli` (see :func:`subcommand`).
COMMANDS: tuple[str, ...] = ("summary", "cell", "map", "levels", "crop", "zoo", "erf", "anchors", "plot", "report")


def subcommand(name: str) -> ModuleType:
    """The module of subcommand ``name``: its ``NAME``, ``HELP``, ``configure(parser)`` (adds
    its arguments) and ``run(args)`` (returns the text to print, or ``None``)."""
    return importlib.import_module(f"{__package__}.{name}")


_N = TypeVar("_N")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, reading the terminal's width (as argparse does) when it
    writes text, not when it is made: argparse makes one for every argument it adds, and
    reading the width imports shutil, which costs more than building the whole parser."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, 80 if width is None else width)
        self._unsized = (indent_increment, max_help_position) if width is None else None

    def format_help(self) -> str:
        if self._unsized is not None:
            sized = argparse.HelpFormatter(self._prog, *self._unsized)  # the terminal's width, as argparse reads it
            self._width, self._max_help_position = sized._width, sized._max_help_position
            self._unsized = None
        return super().format_help()


class _Parser(argparse.ArgumentParser):
    """argparse, with negative numbers as option values: ``--box -50,-50,20,20`` and
    ``--at -1,0`` read the value, where argparse alone takes it for an option."""

    def error(self, message: str) -> NoReturn:
        """A usage error: one line (``rfmap summary: error: ...``), status 2."""
        _say(f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)

    @overload
    def parse_known_args(self, args: Iterable[str] | None = None, namespace: None = None) -> tuple[argparse.Namespace, list[str]]: ...
    @overload
    def parse_known_args(self, args: Iterable[str] | None, namespace: _N) -> tuple[_N, list[str]]: ...
    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...
    def parse_known_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        if args is None:
            args = sys.argv[1:]
        return super().parse_known_args(_join_negative_values(self, list(args)), namespace)


_NEGATIVE = re.compile(r"-\.?\d")


def _join_negative_values(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """``[--box, -50,-50,20,20]`` -> ``[--box=-50,-50,20,20]`` for options that take one value
    (no rfmap option starts with a digit, so ``-5...`` after such an option is its value)."""
    takes_value = {opt for action in parser._actions if action.nargs is None for opt in action.option_strings}
    out: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        if a == "--":
            out.extend(args[k:])
            break
        if a.endswith("=--") and a.split("=", 1)[0] in takes_value:
            # argparse would silently turn this value into an empty list
            parser.error(f"argument {a.split('=', 1)[0]}: expected one argument, got '--'")
        if a in takes_value and k + 1 < len(args) and _NEGATIVE.match(args[k + 1]):
            out.append(f"{a}={args[k + 1]}" if a.startswith("--") else a + args[k + 1])
            k += 2
            continue
        out.append(a)
        k += 1
    return out


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; given a command line that names one, of that one only
    (building all of them costs more than running ``rfmap summary vgg16``)."""
    from rfmap import __version__

    parser = _Parser(
        prog=PROG,
        description="Exact receptive fields of convolutional networks (pixel-index coordinates, (H, W) order).",
        allow_abbrev=False,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # prog: what argparse would write there ("rfmap"), without writing a usage line for it
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, prog=PROG)
    chosen = _named_command(argv)
    for name in COMMANDS if chosen is None else (chosen,):
        cmd = subcommand(name)
        p = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.HELP, allow_abbrev=False,
                           formatter_class=_HelpFormatter)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _named_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand the command line names (its first argument that is not an option), or
    ``None`` (then every subcommand is configured)."""
    args = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in args if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def _one_line(message: Any) -> str:
    """A message as one line: whitespace collapsed, control and bidi characters escaped (a
    layer name cannot restyle the terminal or reorder the line)."""
    from rfmap.render.table import printable

    return printable(" ".join(str(message).split())) or "failed"


def _error(message: Any) -> int:
    _say(f"{PROG}: error: {_one_line(message)}")
    return EXIT_USAGE


def _say(line: str) -> None:
    """One line on stderr (if stderr itself is gone there is nobody to tell)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _report(caught: Sequence[warnings.WarningMessage]) -> None:
    """RFMapWarnings as one line each (once per message); other warnings as Python shows them."""
    seen: set[str] = set()
    for w in caught:
        if issubclass(w.category, RFMapWarning):
            text = _one_line(w.message)
            if text not in seen:
                seen.add(text)
                _say(f"{PROG}: warning: {text}")
        else:
            try:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
            except (OSError, ValueError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring: 0, 2, 70, 130)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted")
        return EXIT_INTERRUPT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2), --help and --version (status 0)
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
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
        raise
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:  # the environment: a file that cannot be read or written
        _report(caught)
        return _error(_os_error(exc))
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported as one
        _report(caught)
        return _internal(exc)
    _report(caught)
    if text is not None:
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return _broken_pipe()
        except OSError as exc:
            _discard_stdout()
            return _error(f"cannot write the output: {_os_error(exc)}")
    return EXIT_OK


def _os_error(exc: OSError) -> str:
    where = f"'{exc.filename}': " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _internal(exc: BaseException) -> int:
    """A bug in rfmap: one line (the traceback with ``RFMAP_DEBUG=1``), status 70."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        import traceback

        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        except (OSError, ValueError):
            pass
    text = _one_line(f"{type(exc).__name__}: {exc}")
    if len(text) > 300:
        text = text[:297] + "..."
    _say(f"{PROG}: internal error: {text} (please report; {DEBUG_ENV}=1 shows the traceback)")
    return EXIT_INTERNAL


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _broken_pipe() -> int:
    """The reader went away (``rfmap summary ... | head``): stop quietly, status 0."""
    _discard_stdout()
    return EXIT_OK
