"""``rfmap crop SOURCE CROPPED REFERENCE``: the offset at which to crop one map so that it
lines up with another (Caffe's ``crop(cropped, reference)``), see :mod:`rfmap.mapping.crop`.

::

    rfmap crop fcn32s upscore data               # 19 (Caffe's coord_map)
    rfmap crop fcn8s score_pool4 upscore2 --convention all --format json
"""

from __future__ import annotations

import argparse

from rfmap.cli.common import add_input, add_source, add_strict, load_analysis

NAME = "crop"
HELP = "the offset that crops one map to line up with another (FCN's Caffe crop layers)"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.mapping.names import CONVENTIONS

    add_source(p)
    p.add_argument("cropped", metavar="CROPPED", help="the layer whose map is cropped (Caffe's first bottom)")
    p.add_argument("reference", metavar="REFERENCE", help="the layer it must line up with (its size is kept)")
    p.add_argument(
        "--convention",
        choices=(*CONVENTIONS, "all"),
        default="caffe",
        help="caffe: Caffe's coord_map (kernel centers, as in the FCN prototxts); rf-center: the centers "
        "of the receptive fields as rfmap reports them; all: both (default: caffe)",
    )
    add_input(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_strict(p)


def run(args: argparse.Namespace) -> str:
    from rfmap.mapping.crop import CONVENTIONS, crop_offset
    from rfmap.render.numbers import fmt_axes, fmt_size

    analysis = load_analysis(args)
    conventions = CONVENTIONS if args.convention == "all" else (args.convention,)
    results = [crop_offset(analysis, args.cropped, args.reference, convention=c) for c in conventions]
    if args.format == "json":
        import json
        return json.dumps({"input_size": list(analysis.input_size), "results": [r.to_dict() for r in results]})
    a, b = analysis.layer(args.cropped), analysis.layer(args.reference)
    head = (
        f"{analysis.graph.name} at input {fmt_size(analysis.input_size)}: crop '{args.cropped}' "
        f"({fmt_size(a.output_size)}) to line up with '{args.reference}' ({fmt_size(b.output_size)})"
    )
    lines = [head]
    for r in results:
        if r.convention == "caffe":
            note = f"Caffe coord_map, kernel centers; the maps meet at '{r.common}'"
        else:
            note = "centers of the receptive fields as rfmap reports them"
        if not r.is_crop:
            note += "; not a non-negative integer, so no crop realizes it"
        lines.append(f"  {r.convention:<10} offset {fmt_axes(r.offset)}  ({note})")
    return "\n".join(lines)
