"""``rfmap levels``: a feature pyramid's levels, what each sees, and which level a box goes to.

::

    rfmap levels fasterrcnn-resnet50-fpn --size 32,64,224 --box 0,0,16,256
    rfmap levels mypkg.models:build_fpn --levels p2,p3,p4,p5 --rule torchvision --format json
"""

from __future__ import annotations

import argparse
import re

from rfmap.cli.common import add_input, add_source, load_analysis
from rfmap.errors import RFMapError

NAME = "levels"
HELP = "FPN levels: stride, TRF (whole and backbone path), ERF; the level of boxes under torchvision/detectron2/mmdet rules"
RULES = ("torchvision", "detectron2", "mmdet")


def configure(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("--levels", metavar="NAMES", help="the pyramid's layers, comma-separated, finest first "
                   "(default: the model's outputs that have a stride)")
    p.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2", help="an image box; repeat for several")
    p.add_argument("--size", metavar="S[,S...]", help="square box sides, e.g. 32,64,224")
    p.add_argument("--rule", choices=("all", *RULES), default="all", help="the level rule (default: all, side by side)")
    add_input(p)
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--no-color", action="store_true", help="plain text, no colour")


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in re.split(r"\s*,\s*", text.strip()) if v]
    except ValueError:
        raise RFMapError(f"{what}: expected comma-separated numbers, got '{text}'") from None


def run(args: argparse.Namespace) -> str:
    from rfmap.mapping.pyramid import pyramid
    from rfmap.render.levels import render_pyramid

    boxes = []
    for text in args.box:
        values = _numbers(text, "--box")
        if len(values) != 4:
            raise RFMapError(f"--box: expected 4 numbers X1,Y1,X2,Y2, got '{text}'")
        boxes.append(values)
    sizes = _numbers(args.size, "--size") if args.size else None
    levels = [v.strip() for v in args.levels.split(",") if v.strip()] if args.levels else None
    analysis = load_analysis(args)
    rules = RULES if args.rule == "all" else (args.rule,)
    report = pyramid(analysis, levels, boxes=boxes or None, sizes=sizes, rules=rules)
    return render_pyramid(report, args.format, color=False if args.no_color else None)
