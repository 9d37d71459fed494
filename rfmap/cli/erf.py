"""``rfmap erf``: the effective receptive field of a cell -- map (.npy), statistics (.json),
heatmap (.png).

::

    rfmap erf mypkg.models:build_net --layer out3 --inputs images/ -o out/
    rfmap erf vgg16 --layer conv4_3 --n 64 -o out/
    rfmap erf net.yaml --weights uniform --aggregate square --input 128 -o out/
    rfmap erf torchvision:resnet50 --protocol replknet2022 --inputs val50/ --input 1024

A factory (or ``torchvision:NAME``) is run as it is, with its own weights; a zoo name, spec or
ONNX file, whose weights rfmap does not read, is measured on its linear twin (``--twin``
asks for the twin of a factory too).  Nothing here imports torch or matplotlib until the
command runs.
"""

from __future__ import annotations

import argparse
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


def _weights_help() -> str:
    from rfmap.erf.names import WEIGHTS_HELP

    parts = [f"{name}: {text}" for name, text in WEIGHTS_HELP.items()]
    return "; ".join(parts) + " (default: as-is for a factory, uniform for a twin)"


def configure(p: argparse.ArgumentParser) -> None:
    from rfmap.erf.names import AGGREGATES, WEIGHTS
    from rfmap.erf.names import PROTOCOL_NAMES as PROTOCOLS

    p.add_argument(
        "source",
        metavar="SOURCE",
        help="'pkg.module:factory' or 'torchvision:NAME' (the PyTorch module itself is run), or a zoo name, "
        "a spec file (.yaml/.toml/.json) or an .onnx file (measured on rfmap's linear twin of the network)",
    )
    p.add_argument("--layer", metavar="L", help="the layer or named output whose cell is measured: a module path, "
                   "a graph node or an output name such as '0' or 'pool' (default: the network's output)")
    p.add_argument("--at", metavar="I,J", help="the cell, (row, column) in the layer's output (default: the center)")
    p.add_argument("--input", metavar="H[,W]", help="input size (default: the source's own)")
    p.add_argument("--n", type=bounded_int(1, 10**6), default=64, help="number of inputs averaged (default: 64)")
    p.add_argument("--inputs", metavar="DIR", help="a folder of PNG/JPEG images instead of noise")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="luo2016", help="luo2016: gradient 1 at the cell "
                   "(Luo et al. 2016); replknet2022: RepLKNet's (Ding et al. 2022: relu of the cell, relu of the "
                   "gradient, log10(x+1) of the mean, area ratios); openerf: OpenERF's (the cell's channel mean, "
                   "gradient clamped at 0, normalized to sum 1, radial mass) (default: luo2016)")
    p.add_argument("--twin", action="store_true", help="measure rfmap's linear twin of a factory instead of the module")
    p.add_argument("--weights", choices=WEIGHTS, default=None, help=_weights_help())
    p.add_argument("--aggregate", choices=AGGREGATES, default=None,
                   help="per-pixel gradient aggregate of luo2016 (default: abs)")
    p.add_argument("--channels", type=bounded_int(1, 4096), default=None,
                   help="input channels (default: the module's first convolution's; 3 for a twin)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=16, help="inputs per backward pass (default: 16)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the noise and weight draws (default: 0)")
    p.add_argument("-o", "--output", metavar="DIR", help="write erf.npy, erf.json and erf.png into DIR")
    p.add_argument("--format", choices=("text", "json"), default="text", help="what to print (default: text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> str:
    from rfmap.erf import erf
    from rfmap.erf.network import is_factory

    size = parse_input_size(args.input) if args.input else None
    cell = parse_cell_index(args.at) if args.at else None
    require_torch("rfmap erf")
    parse_device(args.device)  # one line naming the device, before anything is built on it
    module = is_factory(args.source)
    weights = args.weights or ("as-is" if module and not args.twin else "uniform")
    if args.output:  # checked before measuring, so nothing is written without the heatmap
        require_matplotlib("rfmap erf -o (the heatmap erf.png)")
    result = erf(
        args.source,
        layer=args.layer,
        input_size=size,
        inputs=args.inputs,
        n=args.n,
        weights=weights,
        aggregate=args.aggregate,
        cell=cell,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        protocol=args.protocol,
        twin=True if args.twin else None,
        seed=args.seed,
        channels=args.channels,
    )
    written = write_erf(result, args.output) if args.output else []
    if args.format == "json":
        data = result.to_dict()
        data["files"] = written
        import json
        return json.dumps(data, indent=2)
    from rfmap.render.erf import erf_text

    return erf_text(result, written)


def write_erf(result, directory: str | Path, stem: str = "erf") -> list[str]:
    """Write ``<stem>.npy`` (the map averaged over the inputs), ``<stem>.json`` (the statistics)
    and ``<stem>.png`` (the heatmap of the protocol's map with the TRF box and the 1 and 2
    sigma ellipses) into ``directory``; returns the paths."""
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

    how = result.protocol if result.protocol != "luo2016" else f"luo2016, {result.aggregate}"
    title = f"ERF of {result.model} {result.layer or 'output'} {list(result.cell)} ({how}, {result.weights}, n={result.n})"
    fig = plot_erf(result.protocol_map, result.trf_box, result.sigma, result.mean, title=title)
    save(fig, path)
