"""The ``rfmap plot`` and ``rfmap report`` subcommands (wired into :mod:`rfmap.cli`).

::

    rfmap plot vgg16 --layer conv5_3 --cells '0,0;7,7' -o boxes.png
    rfmap plot vgg16 --layer conv4_3 --kind grid --image cat.jpg -o grid.svg
    rfmap plot resnet50 --kind growth --log -o growth.png
    rfmap report vgg16 --image cat.jpg -o report.html

Each subcommand is a pair: ``configure_*(parser)`` adds its arguments and ``run_*(args)``
does the work and returns the line to print.  ``add_*_parser(subparsers)`` registers one on
an ``argparse`` subparsers object directly.  Bad input raises :class:`~rfmap.errors.RFMapError`
with a message naming what is wrong.  matplotlib is imported only by ``rfmap plot``.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from rfmap.errors import RFMapError

PLOT_HELP = "draw receptive fields to a PNG/SVG/PDF: boxes of cells, the grid of centers, or growth with depth"
REPORT_HELP = "write one self-contained interactive HTML report: the table and a cell explorer"
PLOT_KINDS = ("boxes", "grid", "growth")


# -- shared -------------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    from rfmap.cli import add_input, add_source, add_strict

    add_source(p)
    add_input(p)
    p.add_argument("--image", metavar="IMG", help="draw over this image (PNG or JPEG; stretched to the input size); "
                   "its size is the input size of a source that has none")
    add_strict(p)


def parse_cells(text: str | None) -> list[tuple[int, int]] | None:
    """``"0,0;7,7"`` -> ``[(0, 0), (7, 7)]`` (``;`` or spaces between cells, ``,`` or ``x`` inside)."""
    if text is None:
        return None
    cells = []
    for part in re.split(r"[;\s]+", text.strip()):
        if not part:
            continue
        values = re.split(r"\s*[,x:]\s*", part)
        try:
            i, j = (int(v) for v in values)
        except ValueError:
            raise RFMapError(f"--cells: expected 'I,J;I,J' such as '0,0;7,7', got '{text}'") from None
        cells.append((i, j))
    if not cells:
        raise RFMapError(f"--cells: no cell in '{text}' (expected 'I,J;I,J' such as '0,0;7,7')")
    return cells


def _image_hw(path: str) -> tuple[int, int]:
    from rfmap.viz._data import embed_image

    embedded = embed_image(path)
    assert embedded is not None
    return embedded.size


def load(args: argparse.Namespace):
    """Analyze ``args.source`` at ``--input``, else its own input size, else the image's size."""
    from rfmap.cli import load_analysis

    if args.image is not None and not os.path.isfile(args.image):
        raise RFMapError(f"--image: '{args.image}' does not exist")
    analysis = load_analysis(args, (lambda: _image_hw(args.image)) if args.image is not None else None)
    if analysis.ndim != 2:
        raise RFMapError(f"pictures need a 2-D input (H, W); '{args.source}' is analyzed at {list(analysis.input_size)}")
    return analysis


def _layer(analysis, text: str | None, what: str):
    from rfmap.viz._data import layer_row

    if text is None:
        raise RFMapError(f"--layer is needed for {what} (a layer name, or its index in `rfmap summary`)")
    return layer_row(analysis, text)


def _output(path: str, allowed: tuple[str, ...]) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in allowed:
        raise RFMapError(f"-o: '{path}' must end in {', '.join('.' + a for a in allowed)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RFMapError(f"-o: the folder '{folder}' does not exist")
    return path


# -- rfmap plot ---------------------------------------------------------------------------


def configure_plot(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--layer", metavar="L", help="layer name (or its index in the table); needed for --kind boxes and grid")
    p.add_argument(
        "--kind", choices=PLOT_KINDS, default="boxes",
        help="boxes: RF boxes of --cells; grid: the RF centers of every cell; growth: RF size and stride by depth (default: boxes)",
    )
    p.add_argument("--cells", metavar="I,J;I,J", help="cells for --kind boxes (default: the corner cell and the middle cell)")
    p.add_argument("--log", action="store_true", help="log scale for --kind growth")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file: .png, .svg or .pdf")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default: 150)")


def run_plot(args: argparse.Namespace) -> str:
    from rfmap.viz.figures import FORMATS

    path = _output(args.output, FORMATS)
    if args.kind != "boxes" and args.cells:
        raise RFMapError(f"--cells applies to --kind boxes, not --kind {args.kind}")
    if args.kind == "growth" and args.image:
        raise RFMapError("--image applies to --kind boxes and grid, not --kind growth")
    cells = parse_cells(args.cells)
    analysis = load(args)
    try:
        from rfmap.viz import figures
    except ImportError as exc:  # pragma: no cover - matplotlib missing
        raise RFMapError(f"rfmap plot needs matplotlib (pip install 'rfmap[plot]'): {exc}") from None
    if args.kind == "growth":
        fig = figures.plot_growth(analysis, log=args.log)
        what = "growth by depth"
    else:
        row = _layer(analysis, args.layer, f"--kind {args.kind}")
        if args.kind == "grid":
            fig = figures.plot_center_grid(analysis, row.name, image=args.image)
            what = f"the grid of RF centers of '{row.name}'"
        else:
            fig = figures.plot_rf_boxes(analysis, row.name, cells, image=args.image)
            what = f"RF boxes of '{row.name}'"
    figures.save(fig, path, dpi=args.dpi)
    return f"wrote {path} ({what})"


def add_plot_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rfmap plot`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("plot", help=PLOT_HELP, description=PLOT_HELP, allow_abbrev=False)
    configure_plot(p)
    p.set_defaults(_run=run_plot)
    return p


# -- rfmap report -------------------------------------------------------------------------


def configure_report(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file (.html)")
    p.add_argument("--title", help="page title (default: the network's name)")


def run_report(args: argparse.Namespace) -> str:
    from rfmap.viz.report import write_report

    path = _output(args.output, ("html", "htm"))
    analysis = load(args)
    write_report(analysis, path, image=args.image, title=args.title)
    return f"wrote {path} ({len(analysis.layers) - 1} layers; open it in a browser, it works offline)"


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rfmap report`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("report", help=REPORT_HELP, description=REPORT_HELP, allow_abbrev=False)
    configure_report(p)
    p.set_defaults(_run=run_report)
    return p
