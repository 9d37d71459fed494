"""``rfmap zoo``: the networks rfmap knows by name."""

from __future__ import annotations

import argparse

NAME = "zoo"
HELP = "list the networks known by name"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def run(args: argparse.Namespace) -> str:
    from rfmap.frontends import zoo
    from rfmap.render.zoo import zoo_table

    entries = zoo.entries()
    if args.format == "json":
        import json
        return json.dumps(
            [{"name": n, "description": d, "input_size": None if s is None else list(s)} for n, d, s in entries],
            indent=2,
        )
    return zoo_table(entries)
