"""``rfmap map``: project image boxes onto a layer under the detectors' rules."""

from __future__ import annotations

import argparse
import json
import re

from rfmap.cli.common import add_input, add_source, add_strict, load_analysis
from rfmap.errors import RFMapError

NAME = "map"
HELP = "project image boxes onto a layer under the detectors' rules (spp, fast-rcnn, align, ...)"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.mapping import RULES

    add_source(p)
    p.add_argument("layer", metavar="LAYER", help="layer name (or its index in the table)")
    p.add_argument("--box", required=True, action="append", metavar="X1,Y1,X2,Y2",
                   help="an image box (x1, y1, x2, y2); repeat for several")
    p.add_argument("--rule", choices=("all", *RULES), default="all", help="projection rule (default: all, to compare them)")
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_strict(p)


def run(args: argparse.Namespace) -> str:
    import numpy as np

    from rfmap.mapping import RULES, Mapper
    from rfmap.render.numbers import fmt_number

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
        f"layer '{mapper.name}': output {ax_y.size}x{ax_x.size}, stride {fmt_number(ax_y.stride)}x{fmt_number(ax_x.stride)}, "
        f"center of cell 0 ({fmt_number(ax_y.center0)}, {fmt_number(ax_x.center0)}); boxes and windows are (x1, y1, x2, y2)"
    ]
    for r in results:
        win = "empty" if r["window"] is None else ", ".join(str(v) for v in r["window"])
        back = "-" if r["back_projected"] is None else ", ".join(str(v) for v in r["back_projected"])
        lines.append(f"  {r['rule']:<11} box ({', '.join(str(_plain(v)) for v in r['box'])}) -> cells ({win})"
                     f"  back ({back})  IoU {r['iou']:.3f}")
    return "\n".join(lines)


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)
