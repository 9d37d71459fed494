"""Benchmark of the rfmap.ops RoI ops on CUDA against torchvision's CUDA kernels.

Run: ``python benchmarks/bench_roi_ops_cuda.py [--repeats 20]``.  Needs a CUDA device (prints
why not and exits otherwise); torchvision is optional (without it only rfmap's times print).

Setting as ``bench_roi_ops.py``: 512 RoIs on a (1, 256, 50, 68) map, 7 x 7, scale 1/16,
sampling_ratio 2; position-sensitive ops on 490 channels.  Each op is checked against the
CPU result first; times are medians of synchronized calls after a warm-up, forward alone
and forward + backward.  Ratio: torchvision time / rfmap time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _timing  # noqa: F401  (puts the checkout's rfmap first on sys.path)


def timed(fn, repeats: int) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    from rfmap.ops import ps_roi_align, ps_roi_pool, roi_align, roi_pool

    try:
        import torchvision.ops as tv
    except ImportError:
        tv = None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 50, 68, generator=g)
    ps_x = torch.randn(1, 490, 50, 68, generator=g)
    wh = torch.rand(512, 2, generator=g) * 584 + 16
    corner = torch.rand(512, 2, generator=g) * (torch.tensor([1088.0, 800.0]) - wh)
    rois = torch.cat([torch.zeros(512, 1), corner, corner + wh], dim=1)
    cases = {
        "roi_align": (roi_align, x, (7, 1 / 16, 2), "roi_align"),
        "roi_pool": (roi_pool, x, (7, 1 / 16), "roi_pool"),
        "ps_roi_align": (ps_roi_align, ps_x, (7, 1 / 16, 2), "ps_roi_align"),
        "ps_roi_pool": (ps_roi_pool, ps_x, (7, 1 / 16), "ps_roi_pool"),
    }
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, torchvision {'yes' if tv else 'not installed'}")
    for name, (op, inp, params, tv_name) in cases.items():
        xc, rc = inp.cuda(), rois.cuda()
        torch.testing.assert_close(op(xc, rc, *params).cpu(), op(inp, rois, *params), rtol=1e-4, atol=1e-4)
        xg = xc.clone().requires_grad_()
        grad = torch.randn_like(op(xc, rc, *params))

        def forward(op=op, xc=xc):
            with torch.no_grad():
                op(xc, rc, *params)

        def both(op=op, xg=xg, grad=grad):
            xg.grad = None
            op(xg, rc, *params).backward(grad)

        ours, ours_both = timed(forward, args.repeats), timed(both, args.repeats)
        line = f"  {name:<13} rfmap {ours:7.3f} ms  fwd+bwd {ours_both:7.3f} ms"
        if tv is not None:
            theirs_fn = getattr(tv, tv_name)

            def tv_forward(f=theirs_fn, xc=xc):
                with torch.no_grad():
                    f(xc, rc, *params)

            def tv_both(f=theirs_fn, xg=xg, grad=grad):
                xg.grad = None
                f(xg, rc, *params).backward(grad)

            theirs, theirs_both = timed(tv_forward, args.repeats), timed(tv_both, args.repeats)
            line += f"  torchvision {theirs:7.3f} ms ({theirs / ours:4.2f}x)  fwd+bwd {theirs_both:7.3f} ms ({theirs_both / ours_both:4.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
