"""``rfmap anchors``: anchor design against receptive fields (S3FD, SSD, RPN configs).

::

    rfmap anchors s3fd                 # a bundled config (rfmap/anchors/configs/s3fd.yaml)
    rfmap anchors my_detector.yaml --format json
"""

from __future__ import annotations

import argparse
from typing import Any

from rfmap.cli.common import parse_input_size, require_matplotlib

NAME = "anchors"
HELP = "anchor design against receptive fields (S3FD, SSD, RPN configs)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="an anchor configuration (.yaml/.toml/.json) or a bundled one: s3fd, ssd300, rpn-vgg16",
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--input", metavar="H[,W]", help="input size (default: the config's)")
    p.add_argument("--method", choices=("exact", "sampled"), default="exact", help="expected matches: closed form or dense sampling")
    p.add_argument("--measure-erf", action="store_true", help="measure each level's ERF (uniform weights) instead of the closed form")
    p.add_argument("--plot", metavar="FILE", help="also draw anchors against TRF and ERF (.png/.svg/.pdf)")
    p.add_argument("--no-color", action="store_true", help="plain text, no colour")


def run(args: argparse.Namespace) -> str:
    from rfmap.anchors import analyze_anchors, render_anchors

    overrides: dict[str, Any] = {}
    if args.input:
        size = parse_input_size(args.input)
        overrides["input"] = [size, size] if isinstance(size, int) else list(size)
    if args.measure_erf:
        overrides["erf"] = {"measure": True}
    if args.plot:  # checked before the analysis, so a missing matplotlib fails fast
        require_matplotlib("rfmap anchors --plot")
    report = analyze_anchors(args.config, method=args.method, **overrides)
    if args.plot:
        plot_anchor_report(report, args.plot)
    return render_anchors(report, args.format, color=False if args.no_color else None)


def plot_anchor_report(report, path: str) -> str:
    """``plot_anchors`` of :mod:`rfmap.viz.figures` for a report: anchors, TRF (with head) and ERF span."""
    import math

    require_matplotlib("plotting anchors")
    from rfmap.viz.figures import plot_anchors, save

    levels = [
        {
            "name": lv.name,
            "stride": math.sqrt(lv.step[0] * lv.step[1]),
            "anchors": [tuple(b) for b in lv.boxes],
            "trf": tuple(lv.trf_head),
            "erf": None if lv.erf_span is None else tuple(lv.erf_span),
        }
        for lv in report.levels
    ]
    return save(plot_anchors(levels), path)
