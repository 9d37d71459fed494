"""spp_pool against the loop reference, torch's adaptive pooling and the SPP-net paper's windows."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ops_reference import spp_reference

from rfmap.ops import SpatialPyramidPool, spp_pool
from rfmap.ops.spp import level_bins


def paper_bins(n: int, a: int) -> list[tuple[int, int]]:
    """SPP-net section 2.3: window ceil(a/n), stride floor(a/n)."""
    win, stride = math.ceil(a / n), a // n
    return [(i * stride, i * stride + win) for i in range(n)]


def bins(n: int, a: int) -> list[tuple[int, int]]:
    start, end = level_bins(n, a)
    return list(zip(start.tolist(), end.tolist()))


def test_paper_windows_where_they_tile_the_map():
    # the paper's 13x13 conv5 with its pyramids {6, 3, 2, 1} and {4, 2, 1}
    for n in (6, 4, 3, 2, 1):
        assert bins(n, 13) == paper_bins(n, 13)
    # where the paper's windows miss the end of the map, every pixel is still covered
    assert paper_bins(4, 10)[-1][1] == 9 and bins(4, 10) == [(0, 3), (2, 5), (5, 8), (7, 10)]
    # maps smaller than the level: overlapping one-pixel bins, never empty (paper: stride 0)
    assert bins(4, 3) == [(0, 1), (0, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size", [(13, 13), (10, 7), (3, 2), (1, 1), (6, 17)])
def test_against_reference_and_adaptive_pooling(mode, size):
    rng = np.random.default_rng(size[0] * 100 + size[1])
    x = torch.from_numpy(rng.standard_normal((2, 3, *size)))
    levels = (4, 2, 1)
    out = spp_pool(x, levels, mode)
    assert out.shape == (2, 3 * 21)
    np.testing.assert_allclose(out.numpy(), spp_reference(x, levels, mode), rtol=1e-12, atol=1e-12)
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    torch_spp = torch.cat([pool(x, n).flatten(1) for n in levels], dim=1)
    np.testing.assert_allclose(out.numpy(), torch_spp.numpy(), rtol=1e-12, atol=1e-12)


def test_flatten_order_is_level_then_channel_then_bin():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    out = spp_pool(x, (2, 1))
    # level 2: channel 0 bins, channel 1 bins; then level 1: channel 0, channel 1
    assert out.tolist() == [[5, 7, 13, 15, 21, 23, 29, 31, 15, 31]]


def test_ties_and_nan_in_max_mode():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 3, 3] = float("nan")
    xg = x.clone().requires_grad_()
    out = spp_pool(xg, (2, 1))
    assert torch.isnan(out[0, 3]) and torch.isnan(out[0, 4]) and out[0, :3].tolist() == [0, 0, 0]
    out.backward(torch.ones_like(out))
    # ties: the first cell of each bin; NaN: the NaN's cell (for both levels)
    assert xg.grad[0, 0].nonzero().tolist() == [[0, 0], [0, 2], [2, 0], [3, 3]]
    assert xg.grad[0, 0, 3, 3] == 2


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.permutation(2 * 5 * 7).reshape(1, 2, 5, 7) * 0.01).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: spp_pool(t, (3, 2, 1), mode), (x,))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_dtypes(mode, dtype):
    x = torch.randn(2, 3, 9, 11).to(dtype)
    out = spp_pool(x, (4, 2, 1), mode)
    assert out.dtype == dtype
    expected = spp_pool(x.double(), (4, 2, 1), mode).to(dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(out.double(), expected.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_backward_is_deterministic(mode):
    x = torch.randint(0, 3, (4, 8, 13, 13)).float()  # many ties
    grads = []
    for _ in range(2):
        xg = x.clone().requires_grad_()
        spp_pool(xg, (6, 3, 2, 1), mode).backward(torch.linspace(-1, 1, 4 * 8 * 50).view(4, -1))
        grads.append(xg.grad)
    assert torch.equal(grads[0], grads[1])


def test_empty_batch_and_module():
    assert spp_pool(torch.zeros(0, 3, 5, 5)).shape == (0, 63)
    assert spp_pool(torch.zeros(0, 3, 5, 5), mode="avg").shape == (0, 63)
    m = SpatialPyramidPool((6, 3, 2, 1), "avg")
    assert repr(m) == "SpatialPyramidPool(levels=(6, 3, 2, 1), mode='avg')"
    x = torch.randn(2, 4, 13, 13)
    assert torch.equal(m(x), spp_pool(x, (6, 3, 2, 1), "avg"))
    assert SpatialPyramidPool().levels == (4, 2, 1)


def test_levels_pooled_from_a_finer_level_match_direct_pooling():
    # SPP-net's 6, 3, 2, 1 on 13 x 13: the coarse levels come from the 6 x 6 result without a
    # gradient; values, NaN and infinities as pooling each level from the map
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.integers(0, 3, (2, 3, 13, 13)).astype(np.float32))
    u = torch.from_numpy(rng.random((2, 3, 13, 13)))
    x[u < 0.02] = float("nan")
    x[(u > 0.02) & (u < 0.04)] = float("inf")
    x[(u > 0.04) & (u < 0.06)] = -float("inf")
    with torch.no_grad():
        out = spp_pool(x, [6, 3, 2, 1])
    direct = torch.cat([F.adaptive_max_pool2d(x, n).reshape(2, -1) for n in (6, 3, 2, 1)], dim=1)
    assert torch.equal(out.isnan(), direct.isnan())
    assert torch.equal(out.nan_to_num(0.5), direct.nan_to_num(0.5))
    with_grad = spp_pool(x.requires_grad_(), [6, 3, 2, 1]).detach()  # every level pooled from the map
    assert torch.equal(with_grad.nan_to_num(0.5), out.nan_to_num(0.5))


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that reach the dispatcher."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_eager_calls_skip_the_dispatcher_and_agree_with_the_registered_op(mode):
    # plain eager calls run the kernels under an autograd node of their own; under a dispatch
    # mode (as under fake tensors, export or an op profiler) the registered ops run: the same
    # numbers and gradients, bit for bit
    x = torch.randn(2, 5, 13, 11, generator=torch.Generator().manual_seed(4))
    grad = torch.randn(2, 5 * 14, generator=torch.Generator().manual_seed(5))
    results = []
    for recorded in (False, True):
        xg = x.clone().requires_grad_()
        ops = _Ops()
        if recorded:
            with ops:
                y = spp_pool(xg, [3, 2, 1], mode)
                y.backward(grad)
            assert "rfmap.spp_pool.default" in ops.seen
            if mode == "max":
                assert "rfmap._spp_max_backward.default" in ops.seen
            with _Ops() as plain_ops, torch.no_grad():
                spp_pool(x, [3, 2, 1], mode)
            assert "rfmap.spp_pool.default" in plain_ops.seen
        else:
            with torch.no_grad():
                plain = spp_pool(x, [3, 2, 1], mode)
            assert torch.equal(plain, spp_pool(x, [3, 2, 1], mode))  # grad mode on, no input needing it
            y = spp_pool(xg, [3, 2, 1], mode)
            y.backward(grad)
            assert torch.equal(plain, y.detach())
        results.append((y.detach(), xg.grad))
    (a, ga), (b, gb) = results
    assert torch.equal(a, b) and torch.equal(ga, gb)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_create_graph_behaves_the_same_on_both_paths(mode):
    # with create_graph the eager node's backward calls the registered backward op, as the
    # registered op's node does: the same gradient, and the same second one (its finite
    # differences: tests/ops/test_functorch.py)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    results = []
    for recorded in (False, True):
        xg = x.clone().requires_grad_()
        with _Ops() if recorded else torch.enable_grad():
            (first,) = torch.autograd.grad(spp_pool(xg, [2, 1], mode).pow(3).sum(), xg, create_graph=True)
            first.pow(2).sum().backward()
        results.append((first.detach(), xg.grad))
    (a, ga), (b, gb) = results
    assert torch.equal(a, b) and torch.equal(ga, gb) and a.abs().sum() > 0 and ga.abs().sum() > 0
