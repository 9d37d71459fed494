"""What the subcommands share: the SOURCE and --input arguments, parsing of sizes and
cells, loading an analysis.

``--input`` takes ``224`` (every axis), ``224,320`` or ``224x320`` (H, W), ``16000`` for a 1-D
source, ``8x64x64`` (D, H, W) for a 3-D one; a shape with one or two numbers too many for
the source, such as ``3x512x512`` or ``1,3,512,512`` on a 2-D source, has its leading batch
and channel counts dropped.  The source's number of axes is read first
(:func:`source_rank`): that of its default input size (zoo entries, spec files) or of its
input tensor (ONNX files).  A source without one (a spec file without an input size, a
PyTorch factory) is taken to be 2-D, so a 3-D network that has no default input size needs
its three sizes written as ``D,H,W`` in its spec file instead.

Coordinates: pixel-index convention (pixel ``i`` is the point ``i``), boxes inclusive,
``(y0, x0, y1, x1)``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Any

from rfmap.errors import RFMapError


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="a zoo name (see `rfmap zoo`), a spec file (.yaml/.toml/.json), an .onnx "
                   "file, or a PyTorch factory: 'pkg.module:factory', 'path/models.py:factory' or 'torchvision:NAME'")


def add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        metavar="H[,W]",
        help="input size: 224, 224,320 or 224x320; 16000 (1-D), 8x64x64 (3-D); leading batch and channel "
        "counts beyond the source's axes (1x3x512x512 on a 2-D source) are dropped; default: the source's own",
    )


def add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="fail on misaligned paths instead of warning")


def bounded_int(minimum: int, maximum: int = 2**31 - 1) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[minimum, maximum]`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text:.40}'") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be in {minimum}..{maximum:,}, got {text:.40}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


#: ``--seed``: what numpy and torch both take (0 .. 2**63 - 1)
seed_int = bounded_int(0, 2**63 - 1)


def parse_device(text: str) -> str:
    """A torch device that exists here (``cpu``, ``cuda``, ``cuda:1``, ``mps``): an
    :class:`RFMapError` naming it otherwise.  Imports torch."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise RFMapError(f"--device: '{text:.40}' is not a torch device ({_first_line(exc)})") from None
    kind = device.type
    if kind == "cpu":
        return text
    if kind == "meta":
        raise RFMapError("--device: 'meta' holds shapes, no data: measuring needs a real device such as cpu or cuda")
    backend = getattr(torch, kind, None) if kind != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    try:
        ok = bool(available()) if callable(available) else False
    except Exception:  # noqa: BLE001 - a backend that cannot even tell
        ok = False
    if not ok:
        raise RFMapError(f"--device: '{text:.40}' is not available on this machine (torch {torch.__version__})")
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        raise RFMapError(f"--device: '{text:.40}': this machine has {count()} {kind} device(s)")
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _ints(text: str, what: str, example: str) -> list[int]:
    parts = re.split(r"\s*[,x]\s*", text.strip().lower())
    try:
        values = [int(part, 10) for part in parts if len(part) <= 20]
    except ValueError:
        raise RFMapError(f"{what}: expected {example}, got '{text:.60}'") from None
    if len(values) != len(parts):
        raise RFMapError(f"{what}: numbers of at most 20 digits expected, got '{text:.60}'")
    return values


def parse_input_size(text: str, ndim: int | None = None) -> int | tuple[int, ...]:
    """``"224"`` -> 224; ``"224,320"`` / ``"224x320"`` -> (224, 320); ``"3x512x512"`` -> (512, 512).

    ``ndim``: the source's number of spatial axes (2 when unknown).  Up to two leading
    numbers beyond it (batch, channels) are dropped.
    """
    example = "H, H,W or HxW such as 224 or 224,320"
    values = _ints(text, "--input", example)
    if any(v < 1 for v in values):
        raise RFMapError(f"--input: sizes must be positive, got '{text}'")
    if len(values) == 1:
        return values[0]
    ndim = ndim or 2
    extra = len(values) - ndim
    if 0 < extra <= 2:
        values = values[extra:]
    if len(values) != ndim:
        raise RFMapError(f"--input: '{text}' has {len(values)} sizes, the source has {ndim} axes (expected {example})")
    return tuple(values)


def source_rank(source: str) -> int | None:
    """The number of spatial axes of a data source, known before it is analyzed: the length
    of a zoo entry's or spec file's default input size, or an ONNX file's input rank minus
    the batch and channel axes.  ``None`` when it is not known beforehand (a spec file
    without an input size, a PyTorch factory, a file that does not load: its error comes
    when it is analyzed)."""
    from rfmap.frontends import SPEC_SUFFIXES, load, zoo

    text = str(source)
    lower = text.lower()
    if zoo.has(text) or lower.endswith(SPEC_SUFFIXES):
        try:
            graph = load(text)
        except RFMapError:
            return None
        return len(graph.input_size) if graph.input_size else None
    if lower.endswith(".onnx") and os.path.isfile(text):
        try:
            import onnx

            model = onnx.load(text, load_external_data=False)
        except Exception:  # noqa: BLE001 - the ONNX front end reports a bad file
            return None
        known = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in known]
        rank = len(inputs[0].type.tensor_type.shape.dim) if inputs else 0
        return rank - 2 if 3 <= rank <= 5 else None
    return None


def parse_cell_index(text: str) -> tuple[int, ...]:
    values = _ints(text, "--at", "I,J such as 3,4")
    return tuple(values)


def load_analysis(args: argparse.Namespace, default_size: Callable[[], Any] | None = None):
    """Load ``args.source`` and analyze it at ``args.input``, else the source's own size,
    else ``default_size()`` (the plot and report commands use the image's size)."""
    from rfmap import analyze
    from rfmap.frontends import load
    from rfmap.progress import Status

    strict = getattr(args, "strict", False)
    text = getattr(args, "input", None)
    size: int | tuple[int, ...] | None = None
    if text is not None:
        ndim = source_rank(args.source)
        size = parse_input_size(text, ndim)
        if ndim is not None and isinstance(size, int):
            size = (size,) * ndim
    # traced sources (PyTorch factories) are captured at the size asked for; ONNX files and
    # zoo entries built for a size (FCN crops) use it too
    with Status(f"reading {args.source}"):  # importing torch and tracing a model can take seconds
        graph = load(args.source, size, strict=strict)
    if text is not None and isinstance(size, tuple) and graph.input_size and len(graph.input_size) != len(size):
        size = parse_input_size(text, len(graph.input_size))  # a traced source of another rank
    elif text is None and graph.input_size is None:
        if default_size is None:
            raise RFMapError(f"'{args.source}' has no default input size: give one with --input H[,W]")
        size = default_size()
    return analyze(graph, size, strict=strict, exclude_global=getattr(args, "exclude_global", False))


def require_torch(what: str) -> None:
    """Import torch or say how to install it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RFMapError(f"{what} needs PyTorch: pip install 'rfmap[torch]'") from None


def require_matplotlib(what: str) -> None:
    """Import matplotlib (Agg backend unless one is chosen) or say how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise RFMapError(f"{what} needs matplotlib: pip install 'rfmap[plot]'") from None
    matplotlib.use("Agg", force=False)


# -- pictures (plot, report) -------------------------------------------------------------


def add_picture_args(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_input(p)
    p.add_argument("--image", metavar="IMG", help="draw over this image (PNG or JPEG; stretched to the input size); "
                   "its size is the input size of a source that has none")
    add_strict(p)


def parse_cells(text: str | None) -> list[tuple[int, int]] | None:
    """``"0,0;7,7"`` -> ``[(0, 0), (7, 7)]`` (``;`` or spaces between cells, ``,`` or ``x`` inside)."""
    if text is None:
        return None
    cells = []
    for part in re.split(r"[;\s]+", text.strip()):
        if not part:
            continue
        values = re.split(r"\s*[,x:]\s*", part)
        try:
            i, j = (int(v) for v in values)
        except ValueError:
            raise RFMapError(f"--cells: expected 'I,J;I,J' such as '0,0;7,7', got '{text}'") from None
        cells.append((i, j))
    if not cells:
        raise RFMapError(f"--cells: no cell in '{text}' (expected 'I,J;I,J' such as '0,0;7,7')")
    return cells


def _image_hw(path: str) -> tuple[int, int]:
    from rfmap.viz._data import embed_image

    embedded = embed_image(path)
    assert embedded is not None
    return embedded.size


def load_picture_analysis(args: argparse.Namespace):
    """Analyze ``args.source`` at ``--input``, else its own input size, else the image's size."""
    if args.image is not None and not os.path.isfile(args.image):
        raise RFMapError(f"--image: '{args.image}' does not exist")
    analysis = load_analysis(args, (lambda: _image_hw(args.image)) if args.image is not None else None)
    if analysis.ndim != 2:
        raise RFMapError(f"pictures need a 2-D input (H, W); '{args.source}' is analyzed at {list(analysis.input_size)}")
    return analysis


def picture_layer(analysis, text: str | None, what: str):
    from rfmap.viz._data import layer_row

    if text is None:
        raise RFMapError(f"--layer is needed for {what} (a layer name, or its index in `rfmap summary`)")
    return layer_row(analysis, text)


def output_path(path: str, allowed: tuple[str, ...]) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in allowed:
        raise RFMapError(f"-o: '{path}' must end in {', '.join('.' + a for a in allowed)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RFMapError(f"-o: the folder '{folder}' does not exist")
    return path
