"""``rfmap summary``: the per-layer table (or, with ``--depth``, the module table of a
PyTorch source)."""

from __future__ import annotations

import argparse
import os

from rfmap.cli.common import add_input, add_source, add_strict, bounded_int, load_analysis, parse_input_size, require_torch
from rfmap.errors import RFMapError

NAME = "summary"
HELP = "per-layer receptive fields: size, stride, padding, center"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.render import FORMATS

    add_source(p)
    add_input(p)
    p.add_argument("--layers", metavar="PATTERN", help="only these layers: comma-separated globs such as 'conv5*,pool5'")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--depth", type=bounded_int(0, 1000), metavar="N",
                   help="PyTorch sources: one row per module, collapsed to blocks N levels deep (torchinfo style)")
    add_strict(p)
    p.add_argument("--exclude-global", action="store_true",
                   help="leave out branches that depend on globally pooled features (squeeze-excitation, ECA and other "
                   "channel gates, attention pooling) where they meet local paths: the local receptive field")
    p.add_argument("--no-color", action="store_true", help="plain text, no colour (also when stdout is not a terminal)")


def run(args: argparse.Namespace) -> str:
    from rfmap.render import render

    if args.depth is not None:
        return _module_summary(args)
    analysis = load_analysis(args)
    return render(analysis, args.format, layers=args.layers, color=False if args.no_color else None)


def _module_summary(args: argparse.Namespace) -> str:
    """``summary --depth N`` of a PyTorch factory: the module table."""
    require_torch("rfmap summary --depth")
    from rfmap.frontends.factory import load_factory, quiet_torch
    from rfmap.frontends.torch.table import module_table
    from rfmap.render import render_modules

    if ":" not in args.source or os.path.exists(args.source):
        raise RFMapError("--depth applies to PyTorch sources given as pkg.module:factory")
    model = load_factory(args.source)
    size = parse_input_size(args.input) if args.input is not None else None
    with quiet_torch():
        rows = module_table(model, size, depth=args.depth or None, strict=args.strict,
                            exclude_global=args.exclude_global)
    return render_modules(rows, args.format, title=args.source, color=False if args.no_color else None)
