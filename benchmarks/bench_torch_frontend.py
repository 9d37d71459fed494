"""Analysis at the speed of graph capture: `python benchmarks/bench_torch_frontend.py [repeat]`.

Each line is a ratio against the floor of that job, measured in the same run, the two taking
turns (best of ``repeat`` each, so load on a shared machine hits both alike):

* ``rfmap.analyze(model, px)`` of ResNet-50, ResNet-152, an EfficientNet-B0 and a ConvNeXt-T
  (plain PyTorch, benchmarks/_models.py) against a bare ``torch.fx.symbolic_trace`` of the same
  module, at 224 and at 4096 pixels (target: at most 1.3x);
* a model torch.fx cannot trace (a ResNet-50 behind control flow on the input's shape):
  ``rfmap.analyze`` against a bare ``torch.export.export`` (target: at most 1.2x);
* torchscan's ``summary`` (a forward-hook tool) against ``rfmap.analyze``, when torchscan is
  installed (``pip install torchscan``; target: rfmap at least 4x faster);
* the command line: ``rfmap --help``, ``rfmap --version``, ``rfmap erf --help`` (target: under
  0.1 s) and ``rfmap summary vgg16`` against ``python -c "import numpy"`` (target: at most 1.3x),
  each a fresh process.

The timm list (capture path and time of 30 architectures) is in bench_backbones.py.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import subprocess
import sys
import time
import warnings

import _models
import _timing  # noqa: F401  (puts the checkout's rfmap first on sys.path)
import torch

import rfmap


def best_of(fns, repeat: int) -> list[float]:
    """Best time of each function, the functions taking turns after one warm-up each.  The
    garbage collector runs before each timed call (not during the timing), so that a call
    does not pay for collecting what the call before it left (fx's trace leaves cycles);
    a collection its own allocations trigger still counts."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def capture(repeat: int) -> None:
    print("rfmap.analyze against a bare torch.fx.symbolic_trace (target <= 1.3x)")
    for name, build in _models.MODELS.items():
        model = build()
        t_fx, t_224, t_4096 = best_of([lambda: torch.fx.symbolic_trace(model), lambda: rfmap.analyze(model, 224),
                                       lambda: rfmap.analyze(model, 4096)], repeat)
        print(f"  {name:16s} fx {t_fx * 1e3:7.1f} ms | analyze 224 {t_224 * 1e3:7.1f} ms = {t_224 / t_fx:4.2f}x | "
              f"4096 {t_4096 * 1e3:7.1f} ms = {t_4096 / t_fx:4.2f}x")


def fallback(repeat: int) -> None:
    model = _models.NoFx().eval()
    example = torch.zeros(1, 3, 224, 224)
    t_export, t_ours = best_of([lambda: torch.export.export(model, (example,), strict=False),
                                lambda: rfmap.analyze(model, 224)], max(2, repeat // 3))
    print("rfmap.analyze of a model torch.fx cannot trace, against a bare torch.export.export (target <= 1.2x)")
    print(f"  ResNet-50 behind shape control flow: export {t_export:6.2f} s | analyze {t_ours:6.2f} s = "
          f"{t_ours / t_export:4.2f}x")


def torchscan_peer(repeat: int) -> None:
    try:
        import torchscan
    except ImportError:
        print("torchscan: peer unavailable (pip install torchscan)")
        return
    model = _models.resnet50()

    def scan():
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            return torchscan.summary(model, (3, 224, 224), receptive_field=True)

    t_scan, t_ours = best_of([scan, lambda: rfmap.analyze(model, 224)], max(2, repeat // 3))
    print(f"torchscan {torchscan.__version__} summary of ResNet-50 at 224: {t_scan * 1e3:.1f} ms, rfmap {t_ours * 1e3:.1f} ms: "
          f"rfmap {t_scan / t_ours:.1f}x faster (target >= 4)")


def cli(repeat: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_timing.Path(__file__).resolve().parents[1])]))
    # as after `pip install` (which compiles every module): bytecode is written and read; a
    # shell with PYTHONDONTWRITEBYTECODE=1 would recompile rfmap's sources on every start
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # the `rfmap` command is a console script: `from rfmap.cli import main; sys.exit(main())`,
    # run here with this checkout first on the path; `python -m rfmap` adds runpy's own cost
    script = [sys.executable, "-c", "import sys; from rfmap.cli import main; sys.exit(main())"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
        "rfmap --help": script + ["--help"],
        "rfmap --version": script + ["--version"],
        "rfmap erf --help": script + ["erf", "--help"],
        "rfmap summary vgg16": script + ["summary", "vgg16"],
        "python -m rfmap summary vgg16": [sys.executable, "-m", "rfmap", "summary", "vgg16"],
    }
    runs = [lambda argv=argv: subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True) for argv in commands.values()]
    for run in runs:  # writes the bytecode the timed runs read
        run()
    times = dict(zip(commands, best_of(runs, repeat)))
    numpy = times['python -c "import numpy"']
    print("the command line, fresh processes (help and version: target < 0.1 s; summary: <= 1.3x numpy's import)")
    for name, t in times.items():
        ratio = f" = {t / numpy:4.2f}x numpy's import" if "summary" in name else ""
        print(f"  {name:30s} {t:6.3f} s{ratio}")


def main(repeat: int = 9) -> None:
    warnings.simplefilter("ignore")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    capture(repeat)
    fallback(repeat)
    torchscan_peer(repeat)
    cli(repeat)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repeat", nargs="?", type=int, default=9, help="timed runs of each side (best of; default 9)")
    main(parser.parse_args().repeat)
