"""``rfmap report``: one self-contained interactive HTML report.

::

    rfmap report vgg16 --image cat.jpg -o report.html
"""

from __future__ import annotations

import argparse

from rfmap.cli.common import add_picture_args, load_picture_analysis, output_path

NAME = "report"
HELP = "write one self-contained interactive HTML report: the table and a cell explorer"


def configure(p: argparse.ArgumentParser) -> None:
    add_picture_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file (.html)")
    p.add_argument("--title", help="page title (default: the network's name)")


def run(args: argparse.Namespace) -> str:
    from rfmap.viz.report import write_report

    path = output_path(args.output, ("html", "htm"))
    analysis = load_picture_analysis(args)
    write_report(analysis, path, image=args.image, title=args.title)
    return f"wrote {path} ({len(analysis.layers) - 1} layers; open it in a browser, it works offline)"
