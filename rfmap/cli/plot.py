"""``rfmap plot``: receptive fields drawn to a PNG/SVG/PDF.

::

    rfmap plot vgg16 --layer conv5_3 --cells '0,0;7,7' -o boxes.png
    rfmap plot vgg16 --layer conv4_3 --kind grid --image cat.jpg -o grid.svg
    rfmap plot resnet50 --kind growth --log -o growth.png

matplotlib is imported only when the command runs.
"""

from __future__ import annotations

import argparse

from rfmap.cli.common import (
    add_picture_args,
    bounded_int,
    load_picture_analysis,
    output_path,
    parse_cells,
    picture_layer,
    require_matplotlib,
)
from rfmap.errors import RFMapError

NAME = "plot"
HELP = "draw receptive fields to a PNG/SVG/PDF: boxes of cells, the grid of centers, or growth with depth"
KINDS = ("boxes", "grid", "growth")


def configure(p: argparse.ArgumentParser) -> None:
    add_picture_args(p)
    p.add_argument("--layer", metavar="L", help="layer name (or its index in the table); needed for --kind boxes and grid")
    p.add_argument(
        "--kind", choices=KINDS, default="boxes",
        help="boxes: RF boxes of --cells; grid: the RF centers of every cell; growth: RF size and stride by depth (default: boxes)",
    )
    p.add_argument("--cells", metavar="I,J;I,J", help="cells for --kind boxes (default: the corner cell and the middle cell)")
    p.add_argument("--log", action="store_true", help="log scale for --kind growth")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file: .png, .svg or .pdf")
    p.add_argument("--dpi", type=bounded_int(1, 600), default=150, help="resolution of PNG output, 1..600 (default: 150)")


def run(args: argparse.Namespace) -> str:
    require_matplotlib("rfmap plot")
    from rfmap.viz.figures import FORMATS

    path = output_path(args.output, FORMATS)
    if args.kind != "boxes" and args.cells:
        raise RFMapError(f"--cells applies to --kind boxes, not --kind {args.kind}")
    if args.kind == "growth" and args.image:
        raise RFMapError("--image applies to --kind boxes and grid, not --kind growth")
    cells = parse_cells(args.cells)
    analysis = load_picture_analysis(args)
    from rfmap.viz import figures

    if args.kind == "growth":
        fig = figures.plot_growth(analysis, log=args.log)
        what = "growth by depth"
    else:
        row = picture_layer(analysis, args.layer, f"--kind {args.kind}")
        if args.kind == "grid":
            fig = figures.plot_center_grid(analysis, row.name, image=args.image)
            what = f"the grid of RF centers of '{row.name}'"
        else:
            fig = figures.plot_rf_boxes(analysis, row.name, cells, image=args.image)
            what = f"RF boxes of '{row.name}'"
    figures.save(fig, path, dpi=args.dpi)
    return f"wrote {path} ({what})"
