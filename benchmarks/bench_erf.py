"""Overhead of ``rfmap.erf`` over a bare autograd loop: `python benchmarks/bench_erf.py`.

Both run the same model on the same batches of the same inputs and backpropagate a unit
gradient from the same output cell, accumulating ``|g|`` summed over channels:

* bare: ``for x in batches: out = model(x); g = autograd.grad(out[:, :, i, j].sum(), x);
  acc += g.abs().sum((0, 1))`` -- the least a measurement must do;
* rfmap: ``erf(model, layer=<the last module>, inputs=..., batch_size=...)`` with its forward
  hook, input handling, float64 accumulation and result object (the layer is the model's
  last module, so stopping the forward pass at the layer saves nothing here).

The ratio (median of alternating runs) must be at most 1.10.  ``trf=False`` leaves out the
one-time trace that looks up the theoretical RF; its cost is printed on its own.

Options: ``--device cuda``, ``--size 128``, ``--n 64``, ``--batch 16``, ``--repeat 5``,
``--threads N`` (CPU threads; default: torch's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rfmap.erf import erf  # noqa: E402


def vgg_like(width: int = 32) -> nn.Sequential:
    """VGG-style convolutions with ReLUs and two pools (stride 4 at the end)."""
    layers: list[nn.Module] = []
    c = 3
    for stage, n in enumerate((2, 2, 3)):
        for _ in range(n):
            layers += [nn.Conv2d(c, width * (stage + 1), 3, padding=1), nn.ReLU()]
            c = width * (stage + 1)
        if stage < 2:
            layers.append(nn.MaxPool2d(2))
    layers.pop()  # end on the last conv, not its ReLU
    return nn.Sequential(*layers)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(model, inputs, batch, device):
    acc = None
    for start in range(0, inputs.shape[0], batch):
        x = inputs[start : start + batch].to(device).requires_grad_(True)
        out = model(x)
        i, j = out.shape[2] // 2, out.shape[3] // 2
        (g,) = torch.autograd.grad(out[:, :, i, j].sum(), x)
        part = g.abs().sum((0, 1))
        acc = part if acc is None else acc + part
    return (acc / inputs.shape[0]).cpu()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = vgg_like().to(device).eval()
    layer = str(len(model) - 1)
    inputs = torch.randn(args.n, 3, args.size, args.size)

    def run_bare():
        t = time.perf_counter()
        out = bare_loop(model, inputs, args.batch, device)
        sync(device)
        return time.perf_counter() - t, out

    def run_erf(trf=False):
        t = time.perf_counter()
        e = erf(model, layer=layer, inputs=inputs, batch_size=args.batch, device=device, progress=False, trf=trf)
        return time.perf_counter() - t, e

    _, ref = run_bare()  # warm-up (kernels, allocator)
    _, e = run_erf(trf=True)  # warm-up, imports of the tracer included
    diff = float((torch.tensor(e.map) - ref.double()).abs().max() / ref.abs().max())
    bare_t, erf_t = [], []
    for _ in range(args.repeat):
        bare_t.append(run_bare()[0])
        erf_t.append(run_erf()[0])
    with_trf = run_erf(trf=True)[0]
    b, r = statistics.median(bare_t), statistics.median(erf_t)
    ratio = r / b
    print(
        f"model: VGG-like, 7 convs, {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{args.n} inputs 3x{args.size}x{args.size}, batch {args.batch}, device {device}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"bare autograd loop  {b * 1e3:9.1f} ms  (median of {args.repeat})")
    print(f"rfmap.erf           {r * 1e3:9.1f} ms  (max relative difference of the maps {diff:.1e})")
    print(f"rfmap.erf, trf=True {with_trf * 1e3:9.1f} ms  (+ one trace for the theoretical RF: TRF {e.trf_size})")
    print(f"overhead ratio      {ratio:9.3f}  (must be <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'})")
    return 0 if ratio <= 1.10 and diff < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
