"""``rfmap map``: project image boxes onto a layer under the detectors' rules."""

from __future__ import annotations

import argparse
import re

from rfmap.cli.common import add_input, add_source, load_analysis
from rfmap.errors import RFMapError

NAME = "map"
HELP = "project image boxes onto a layer under the detectors' rules (spp, fast-rcnn, align, ...)"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.mapping.names import RULES

    add_source(p)
    p.add_argument("layer", metavar="LAYER", help="layer name (or its index in the table)")
    p.add_argument("--box", required=True, action="append", metavar="X1,Y1,X2,Y2",
                   help="an image box (x1, y1, x2, y2); repeat for several")
    p.add_argument("--rule", choices=("all", *RULES), default="all", help="projection rule (default: all, to compare them)")
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true",
                   help="fail on misaligned paths and on boxes that reach outside the image, instead of noting them")


def run(args: argparse.Namespace) -> str:
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
    from rfmap.render.mapping import map_results, map_text

    mapper = Mapper.from_analysis(analysis, layer)
    rules = RULES if args.rule == "all" else (args.rule,)
    projections = {rule: mapper.project(np.array(boxes), rule) for rule in rules}
    notes = next(iter(projections.values())).notes()
    if args.strict:
        for note in notes:
            if note is not None:
                raise RFMapError(f"{note} (--strict)")
    if args.format == "json":
        import json
        return json.dumps({"layer": mapper.name, "results": map_results(boxes, projections, notes)})
    return map_text(mapper, boxes, projections, notes)
