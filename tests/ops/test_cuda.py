"""The RoI ops on CUDA equal their CPU results, forward and backward (the same pure-torch code
runs on both devices).  Skipped without a GPU."""

import numpy as np
import pytest
import torch
from ops_reference import random_rois

from rfmap.ops import MultiScaleRoIAlign, ps_roi_align, ps_roi_pool, roi_align, roi_pool, spp_pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OPS = {
    "roi_align": lambda x, r: roi_align(x, r, (3, 4), 0.5, 2, True),
    "roi_align adaptive": lambda x, r: roi_align(x, r, 3, 0.5, -1, False),
    "roi_pool": lambda x, r: roi_pool(x, r, (3, 2), 0.5),
    "ps_roi_align": lambda x, r: ps_roi_align(x, r, 2, 0.5, 2),
    "ps_roi_pool": lambda x, r: ps_roi_pool(x, r, 2, 0.5),
    "spp_pool max": lambda x, r: spp_pool(x, [4, 2, 1], "max"),
    "spp_pool avg": lambda x, r: spp_pool(x, [3, 1], "avg"),
}


def run(op, x, rois):
    xg = x.clone().requires_grad_()
    out = op(xg, rois)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
    out.backward(grad)
    return out.detach().cpu(), xg.grad.cpu()


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu(name, dtype):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 8, 13, 17))).to(dtype)
    rois = random_rois(rng, 64, 2, 13, 17, 0.5).to(dtype)
    cpu = run(OPS[name], x, rois)
    cuda = run(OPS[name], x.cuda(), rois.cuda())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got, want in zip(cuda, cpu):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, equal_nan=True)


def test_cuda_multiscale():
    rng = np.random.default_rng(3)
    maps = [torch.from_numpy(rng.standard_normal((1, 4, h, w))).float() for h, w in [(64, 64), (32, 32), (16, 16)]]
    boxes = [torch.tensor([[10.0, 10, 60, 70], [0, 0, 250, 250], [5, 5, 30, 12]])]
    pooler = MultiScaleRoIAlign([], 3, 2)
    cpu = pooler(maps, boxes, [(256, 256)])
    cuda = pooler([m.cuda() for m in maps], [b.cuda() for b in boxes], [(256, 256)])
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["roi_pool", "ps_roi_pool", "roi_align", "ps_roi_align"])
def test_cuda_equals_cpu_on_a_detector_head(name):
    """The benchmark's setting: 512 boxes of 16 to 600 pixels on a stride-16 map, 7 x 7 bins.
    Caffe's bin edges ``ceil((p + 1) * roi / 7)`` must be computed with true division: CUDA
    divides by a Python number as a product with its reciprocal (11 / 7 one ulp high), which
    moved the last bin of box (558, 179, 717, 681) by a column."""
    g = torch.Generator().manual_seed(0)
    channels = 490 if name.startswith("ps") else 256
    x = torch.randn(1, channels, 50, 68, generator=g)
    wh = torch.rand(512, 2, generator=g) * 584 + 16
    corner = torch.rand(512, 2, generator=g) * (torch.tensor([1088.0, 800.0]) - wh)
    rois = torch.cat([torch.zeros(512, 1), corner, corner + wh], dim=1)
    op = {"roi_pool": lambda x, r: roi_pool(x, r, 7, 1 / 16), "ps_roi_pool": lambda x, r: ps_roi_pool(x, r, 7, 1 / 16),
          "roi_align": lambda x, r: roi_align(x, r, 7, 1 / 16, 2), "ps_roi_align": lambda x, r: ps_roi_align(x, r, 7, 1 / 16, 2)}[name]
    torch.testing.assert_close(op(x.cuda(), rois.cuda()).cpu(), op(x, rois), rtol=1e-5, atol=1e-5)
