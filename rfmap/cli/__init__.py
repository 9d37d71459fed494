"""The ``rfmap`` command line.

::

    rfmap summary vgg16                        # the per-layer table
    rfmap summary net.yaml --input 224,320 --layers 'conv5*,pool5' --format json
    rfmap cell vgg16 conv5_3 --at 3,4          # the input box of one cell
    rfmap zoo                                  # the networks rfmap knows by name

``SOURCE`` is a zoo name, a spec file (``.yaml``, ``.toml``, ``.json``) or an ONNX file.
``--input`` takes ``224`` (every axis), ``224,320`` or ``224x320`` (H, W); a shape with one
or two numbers too many for the source, such as ``3x512x512`` or ``1,3,512,512``, has its
leading batch and channel counts dropped.  The source's number of axes is that of its
default input size; a source without one is taken to be 2-D, so a 3-D network that has no
default input size needs its three sizes written as ``D,H,W`` in its spec file instead.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), boxes inclusive,
``(y0, x0, y1, x1)``.

Problems with the input (an unknown name, a malformed spec, a layer that does not fit)
print one line ``rfmap: error: ...`` on stderr and exit with status 2; warnings print as
``rfmap: warning: ...``.  Every subcommand is one :class:`Command` in :data:`COMMANDS`:
add one there to add a subcommand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Sequence

from rfmap.errors import RFMapError, RFMapWarning

PROG = "rfmap"
EXIT_USAGE = 2


# -- shared arguments -------------------------------------------------------------------


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="a zoo name (see `rfmap zoo`), a spec file (.yaml/.toml/.json) or an .onnx file")


def add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        metavar="H[,W]",
        help="input size: 224, 224,320 or 224x320 (a leading channel count as in 3x512x512 is dropped); "
        "default: the source's own",
    )


def add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="fail on misaligned paths instead of warning")


def _ints(text: str, what: str, example: str) -> list[int]:
    parts = re.split(r"\s*[,x]\s*", text.strip().lower())
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise RFMapError(f"{what}: expected {example}, got '{text}'") from None
    return values


def parse_input_size(text: str, ndim: int | None = None) -> int | tuple[int, ...]:
    """``"224"`` -> 224; ``"224,320"`` / ``"224x320"`` -> (224, 320); ``"3x512x512"`` -> (512, 512).

    ``ndim``: the source's number of spatial axes (2 when unknown).  Up to two leading
    numbers beyond it (batch, channels) are dropped.
    """
    example = "H, H,W or HxW such as 224 or 224,320"
    values = _ints(text, "--input", example)
    if any(v < 1 for v in values):
        raise RFMapError(f"--input: sizes must be positive, got '{text}'")
    if len(values) == 1:
        return values[0]
    ndim = ndim or 2
    extra = len(values) - ndim
    if 0 < extra <= 2:
        values = values[extra:]
    if len(values) != ndim:
        raise RFMapError(f"--input: '{text}' has {len(values)} sizes, the source has {ndim} axes (expected {example})")
    return tuple(values)


def parse_cell_index(text: str) -> tuple[int, ...]:
    values = _ints(text, "--at", "I,J such as 3,4")
    return tuple(values)


def load_analysis(args: argparse.Namespace, default_size: Callable[[], Any] | None = None):
    """Load ``args.source`` and analyze it at ``args.input``, else the source's own size,
    else ``default_size()`` (the plot and report commands use the image's size)."""
    from rfmap import analyze
    from rfmap.frontends import load

    strict = getattr(args, "strict", False)
    text = getattr(args, "input", None)
    # traced sources (PyTorch factories) are captured at the size asked for
    graph = load(args.source, parse_input_size(text) if text is not None else None, strict=strict)
    size = None
    if text is not None:
        size = parse_input_size(text, len(graph.input_size) if graph.input_size else None)
    elif graph.input_size is None:
        if default_size is None:
            raise RFMapError(f"'{args.source}' has no default input size: give one with --input H[,W]")
        size = default_size()
    return analyze(graph, size, strict=strict)


# -- subcommands ------------------------------------------------------------------------


def _summary_args(p: argparse.ArgumentParser) -> None:
    from rfmap.render import FORMATS

    add_source(p)
    add_input(p)
    p.add_argument("--layers", metavar="PATTERN", help="only these layers: comma-separated globs such as 'conv5*,pool5'")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--depth", type=int, metavar="N",
                   help="PyTorch sources: one row per module, collapsed to blocks N levels deep (torchinfo style)")
    add_strict(p)
    p.add_argument("--no-color", action="store_true", help="plain text, no colour (also when stdout is not a terminal)")


def _summary(args: argparse.Namespace) -> str:
    from rfmap.render import render

    if args.depth is not None:
        return _module_summary(args)
    analysis = load_analysis(args)
    return render(analysis, args.format, layers=args.layers, color=False if args.no_color else None)


def _module_summary(args: argparse.Namespace) -> str:
    """``summary --depth N`` of a PyTorch factory: the module table."""
    from rfmap.render import render_modules
    from rfmap.frontends.factory import load_factory
    from rfmap.frontends.torch.table import module_table

    if ":" not in args.source or os.path.exists(args.source):
        raise RFMapError("--depth applies to PyTorch sources given as pkg.module:factory")
    if args.depth < 0:
        raise RFMapError(f"--depth must be >= 0, got {args.depth}")
    model = load_factory(args.source)
    size = parse_input_size(args.input) if args.input is not None else None
    rows = module_table(model, size, depth=args.depth or None, strict=args.strict)
    return render_modules(rows, args.format, title=args.source, color=False if args.no_color else None)


def _cell_args(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("layer", metavar="LAYER", help="layer name (or its index in the table)")
    p.add_argument("--at", required=True, metavar="I,J", help="cell index in the layer's output, (row, column)")
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_strict(p)


def _cell(args: argparse.Namespace) -> str:
    from rfmap.render import fmt_axes, fmt_size

    analysis = load_analysis(args)
    layer = args.layer
    index = parse_cell_index(args.at)
    data = analysis.cell_dict(layer, index)
    if args.format == "json":
        return json.dumps(data)
    row = analysis.layer(layer)
    d = analysis.ndim
    axes = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}.get(d) or tuple(f"axis{a}" for a in range(d))

    def spans(box) -> str:
        return ", ".join(f"{axes[a]} {box[a]}..{box[a + d]}" for a in range(d))

    box, support = data["box"], data["support"]
    size = [box[a + d] - box[a] + 1 for a in range(d)]
    center = analysis.center(layer, index)
    lines = [
        f"{analysis.graph.name} at input {fmt_size(analysis.input_size)}: "
        f"layer '{row.name}' ({row.op}, output {fmt_size(row.output_size)}), cell {_tuple(index)}",
        f"  rf box   {spans(box)}  ({fmt_size(size)}, unclipped: may reach into padding)",
        "  support  "
        + (f"{spans(support)}  (bounding box of the input pixels that influence the cell)" if support else "none: the cell sees only padding"),
        f"  center   {', '.join(f'{axes[a]} {_decimal(c)}' for a, c in enumerate(center))}",
        f"  layer    rf {fmt_axes(row.rf)}, stride {fmt_axes(row.stride)}, padding {fmt_axes(row.padding)}",
    ]
    return "\n".join(lines)


def _map_args(p: argparse.ArgumentParser) -> None:
    from rfmap.mapping import RULES

    add_source(p)
    p.add_argument("layer", metavar="LAYER", help="layer name (or its index in the table)")
    p.add_argument("--box", required=True, action="append", metavar="X1,Y1,X2,Y2",
                   help="an image box (x1, y1, x2, y2); repeat for several")
    p.add_argument("--rule", choices=("all", *RULES), default="all", help="projection rule (default: all, to compare them)")
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_strict(p)


def _map(args: argparse.Namespace) -> str:
    import numpy as np

    from rfmap.mapping import RULES, Mapper

    analysis = load_analysis(args)
    layer = args.layer
    boxes = []
    for text in args.box:
        try:
            values = [float(v) for v in re.split(r"\s*,\s*", text.strip())]
        except ValueError:
            raise RFMapError(f"--box: expected X1,Y1,X2,Y2 such as 30,40,200,400, got '{text}'") from None
        if len(values) != 4:
            raise RFMapError(f"--box: expected 4 numbers X1,Y1,X2,Y2, got '{text}'")
        boxes.append(values)
    mapper = Mapper.from_analysis(analysis, layer)
    rules = RULES if args.rule == "all" else (args.rule,)
    results = []
    for rule in rules:
        p = mapper.project(np.array(boxes), rule)
        for k, box in enumerate(boxes):
            results.append({
                "box": box,
                "rule": rule,
                "window": None if p.empty[k] else [_plain(v) for v in p.window[k].tolist()],
                "back_projected": None if p.empty[k] else [_plain(v) for v in p.back[k].tolist()],
                "iou": float(p.iou[k]),
            })
    if args.format == "json":
        return json.dumps({"layer": mapper.name, "results": results})
    ax_y, ax_x = mapper.axes
    lines = [
        f"layer '{mapper.name}': output {ax_y.size}x{ax_x.size}, stride {_decimal(ax_y.stride)}x{_decimal(ax_x.stride)}, "
        f"center of cell 0 ({_decimal(ax_y.center0)}, {_decimal(ax_x.center0)}); boxes and windows are (x1, y1, x2, y2)"
    ]
    for r in results:
        win = "empty" if r["window"] is None else ", ".join(str(v) for v in r["window"])
        back = "-" if r["back_projected"] is None else ", ".join(str(v) for v in r["back_projected"])
        lines.append(f"  {r['rule']:<11} box ({', '.join(str(_plain(v)) for v in r['box'])}) -> cells ({win})"
                     f"  back ({back})  IoU {r['iou']:.3f}")
    return "\n".join(lines)


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


def _tuple(values) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


def _decimal(value: Fraction) -> str:
    """``55.5`` when exact as a short decimal, else ``1/3``."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    return repr(float(value)) if den == 1 else f"{value.numerator}/{value.denominator}"


def _zoo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def _zoo(args: argparse.Namespace) -> str:
    from rfmap.render import fmt_size

    from rfmap.frontends import zoo

    entries = zoo.entries()
    if args.format == "json":
        return json.dumps(
            [{"name": n, "description": d, "input_size": None if s is None else list(s)} for n, d, s in entries],
            indent=2,
        )
    if not entries:
        return "the zoo is empty"
    rows = [(n, "" if s is None else fmt_size(s), d) for n, d, s in entries]
    header = ("name", "input", "description")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure`` adds its arguments, ``run`` returns the text to print."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str | None]


#: Every subcommand, in the order ``rfmap --help`` lists them.
COMMANDS: list[Command] = [
    Command("summary", "per-layer receptive fields: size, stride, padding, center", _summary_args, _summary),
    Command("cell", "the input box, support and center of one cell", _cell_args, _cell),
    Command("map", "project image boxes onto a layer under the detectors' rules (spp, fast-rcnn, align, ...)", _map_args, _map),
    Command("zoo", "list the networks known by name", _zoo_args, _zoo),
]


def _register_consumers() -> None:
    """Subcommands of the consumer packages (pictures, report), wired here in one place."""
    from rfmap.cli.erf_anchors import add_anchors_parser, add_erf_parser, run_anchors, run_erf
    from rfmap.cli.plot_report import PLOT_HELP, REPORT_HELP, configure_plot, configure_report, run_plot, run_report

    COMMANDS.extend([
        Command("erf", "effective receptive field of a cell: map (.npy), statistics (.json), heatmap (.png)", add_erf_parser, run_erf),
        Command("anchors", "anchor design against receptive fields (S3FD, SSD, RPN configs)", add_anchors_parser, run_anchors),
        Command("plot", PLOT_HELP, configure_plot, run_plot),
        Command("report", REPORT_HELP, configure_report, run_report),
    ])


_register_consumers()


# -- entry point ------------------------------------------------------------------------


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
