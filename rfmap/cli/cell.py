"""``rfmap cell``: the input box, support and center of one cell."""

from __future__ import annotations

import argparse

from rfmap.cli.common import add_input, add_source, add_strict, load_analysis, parse_cell_index

NAME = "cell"
HELP = "the input box, support and center of one cell"


def configure(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("layer", metavar="LAYER", help="layer name (or its index in the table)")
    p.add_argument("--at", required=True, metavar="I,J", help="cell index in the layer's output, (row, column)")
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_strict(p)


def run(args: argparse.Namespace) -> str:
    from rfmap.render.cell import cell_text

    analysis = load_analysis(args)
    index = parse_cell_index(args.at)
    if args.format == "json":
        import json
        return json.dumps(analysis.cell_dict(args.layer, index))
    return cell_text(analysis, args.layer, index)
