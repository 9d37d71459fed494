"""``rfmap erf``: the effective receptive field of a cell -- map (.npy), statistics (.json),
heatmap (.png).

::

    rfmap erf vgg16 --layer conv4_3 --n 64 -o out/
    rfmap erf net.yaml --weights uniform --aggregate square --input 128 -o out/

Nothing here imports torch or matplotlib until the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rfmap.cli.common import (
    bounded_int,
    parse_cell_index,
    parse_device,
    parse_input_size,
    require_matplotlib,
    require_torch,
    seed_int,
)
from rfmap.errors import RFMapError

NAME = "erf"
HELP = "effective receptive field of a cell: map (.npy), statistics (.json), heatmap (.png)"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.erf import AGGREGATES, WEIGHTS

    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a zoo name, a spec file (.yaml/.toml/.json), an .onnx file or 'pkg.module:factory'; "
        "built as a linear PyTorch twin of the network",
    )
    p.add_argument("--layer", metavar="L", help="the layer whose cell is measured (default: the network's output)")
    p.add_argument("--at", metavar="I,J", help="the cell, (row, column) in the layer's output (default: the center)")
    p.add_argument("--input", metavar="H[,W]", help="input size (default: the source's own)")
    p.add_argument("--n", type=bounded_int(1, 10**6), default=64, help="number of inputs averaged (default: 64)")
    p.add_argument("--inputs", metavar="DIR", help="a folder of PNG/JPEG images instead of noise")
    p.add_argument("--weights", choices=WEIGHTS, default="uniform", help="weights of the twin (default: uniform)")
    p.add_argument("--aggregate", choices=AGGREGATES, default="abs", help="per-pixel gradient aggregate (default: abs)")
    p.add_argument("--channels", type=bounded_int(1, 4096), default=3, help="channels of the twin's input and convolutions (default: 3)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=16, help="inputs per backward pass (default: 16)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the noise and weight draws (default: 0)")
    p.add_argument("-o", "--output", metavar="DIR", help="write erf.npy, erf.json and erf.png into DIR")
    p.add_argument("--format", choices=("text", "json"), default="text", help="what to print (default: text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> str:
    from rfmap.erf import erf

    size = None
    if args.input:
        size = parse_input_size(args.input)
    cell = None
    if args.at:
        cell = parse_cell_index(args.at)
    require_torch("rfmap erf")
    parse_device(args.device)  # one line naming the device, before anything is built on it
    if args.output:  # checked before measuring, so nothing is written without the heatmap
        require_matplotlib("rfmap erf -o (the heatmap erf.png)")
    result = erf(
        args.source,
        layer=args.layer,
        input_size=size,
        inputs=args.inputs,
        n=args.n,
        weights=args.weights,
        aggregate=args.aggregate,
        cell=cell,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        seed=args.seed,
        channels=args.channels,
    )
    written = []
    if args.output:
        written = write_erf(result, args.output)
    if args.format == "json":
        data = result.to_dict()
        data["files"] = written
        return json.dumps(data, indent=2)
    return erf_text(result, written)


def write_erf(result, directory: str | Path, stem: str = "erf") -> list[str]:
    """Write ``<stem>.npy`` (the map), ``<stem>.json`` (the statistics) and ``<stem>.png`` (the
    heatmap with the TRF box and the 1 and 2 sigma ellipses) into ``directory``; returns the paths."""
    import numpy as np

    require_matplotlib("writing the ERF heatmap")
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RFMapError(f"cannot create '{out}': {exc.strerror or exc}") from None
    paths = [out / f"{stem}.npy", out / f"{stem}.json", out / f"{stem}.png"]
    np.save(paths[0], np.asarray(result.map))
    paths[1].write_text(result.to_json() + "\n", encoding="utf-8")
    _heatmap(result, paths[2])
    return [str(p) for p in paths]


def _heatmap(result, path: Path) -> None:
    from rfmap.viz.figures import plot_erf, save

    title = f"ERF of {result.model} {result.layer or 'output'} {list(result.cell)} ({result.aggregate}, {result.weights}, n={result.n})"
    fig = plot_erf(result.map, result.trf_box, result.sigma, result.mean, title=title)
    save(fig, path)


def erf_text(result, written=()) -> str:
    def axes(values, digits=2) -> str:
        vals = [f"{v:.{digits}f}" for v in values]
        return vals[0] if len(set(vals)) == 1 else " x ".join(vals)

    lines = [
        f"ERF of {result.model}, layer '{result.layer or 'output'}', cell {tuple(result.cell)}, "
        f"input {'x'.join(str(v) for v in result.input_size)}",
        f"  {result.n} inputs, weights {result.weights}, aggregate {result.aggregate}",
        f"  sigma       {axes(result.sigma)} px  (center of mass {axes(result.mean)})",
    ]
    if result.closed_form is not None:
        lines.append(f"  closed form {axes(result.closed_form)} px  (linear network, uniform weights)")
    if result.trf_size is not None:
        lines.append(f"  TRF         {axes(result.trf_size, 0)} px, box {tuple(result.trf_box)}")
        lines.append(f"  4 sigma/TRF {axes(result.trf_ratio, 3)}")
    lines.append("  mass t   square side   area ratio   (log10(x+1) of the max-normalized map)")
    for t in (0.2, 0.3, 0.5, 0.9, 0.9545, 0.99):
        lines.append(
            f"  {t:<7g}  {result.square_side(t):>11d}   {result.area_ratio(t):>10.4%}   ({result.area_ratio(t, transform='log'):.4%})"
        )
    for path in written:
        lines.append(f"wrote {path}")
    return "\n".join(lines)
