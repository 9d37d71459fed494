"""The native CPU loops of roi_pool and spp_pool (rfmap/ops/kernels) against the pure-PyTorch
paths they replace: the same outputs, argmaxes and gradients, bit for bit, on maps with ties,
NaN, infinities and -0.0, in every dtype, with one thread and two; and how the library is
built, cached, refused and disabled."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfmap.ops import _native, _rectmax, native_status, roi_pool, spp_pool
from rfmap.ops import spp as spp_module
from rfmap.ops._rectmax import argmax_backward

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("RFMAP_REQUIRE_NATIVE") == "1"  # CI: a missing build fails instead of skipping


def _native_module():
    module = _native.kernels()
    if module is None:
        if REQUIRED:
            pytest.fail(f"the native loops are required (RFMAP_REQUIRE_NATIVE=1): {native_status()}")
        pytest.skip(f"no native loops here: {native_status()}")
    return module


def _run(fn, native: bool, monkeypatch):
    """``fn()`` on the native loops or on the PyTorch paths."""
    module = _native_module()
    with monkeypatch.context() as m:
        m.setattr(_native, "_state", {"module": module if native else None, "why": "off for the comparison"})
        return fn()


_BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32, torch.float64: torch.int64}


def _assert_same(a, b):
    """Equal bit for bit: -0.0 is not 0.0, and a NaN keeps its bits."""
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        if x.dtype in _BITS:
            x, y = x.view(_BITS[x.dtype]), y.view(_BITS[y.dtype])
        assert torch.equal(x, y)


def _special_map(shape, seed, kind):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if kind == "ties":  # few distinct values: many equal maxima in a bin
        x = torch.randint(-2, 3, shape, generator=g).float()
    elif kind == "special":
        flat = x.view(-1)
        for value in (float("nan"), float("-inf"), float("inf"), -3.4028234663852886e38, -0.0, 0.0):
            flat[torch.randint(0, flat.numel(), (flat.numel() // 12,), generator=g)] = value
    elif kind == "hopeless":  # bins with nothing but NaN and -inf: no winner
        x[:, :, : shape[2] // 2] = float("nan")
        x[:, :, shape[2] // 2 :] = float("-inf")
    elif kind == "low":  # -inf alone in many bins, and no NaN anywhere
        x[:, :, : shape[2] // 2 + 1] = float("-inf")
        x[:, ::2, :, ::3] = float("-inf")
    return x


def _rois(k, seed, width, height, images):
    g = torch.Generator().manual_seed(seed)
    x1, y1 = torch.rand(k, generator=g) * width * 1.2 - 0.1 * width, torch.rand(k, generator=g) * height * 1.2 - 0.1 * height
    w, h = torch.rand(k, generator=g) * width * 0.8 - 8, torch.rand(k, generator=g) * height * 0.8 - 8  # some reversed
    batch = torch.randint(0, images, (k,), generator=g).float()
    return torch.stack([batch, x1, y1, x1 + w, y1 + h], dim=1)


def _roi_pool_results(x, rois, dtype):
    xg = x.to(dtype).requires_grad_()
    out, argmax = torch.ops.rfmap.roi_pool(xg.detach(), rois.to(dtype), 1 / 8, 5, 4, True)
    y = roi_pool(xg, rois.to(dtype), (5, 4), 1 / 8)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(dtype))
    with torch.no_grad():
        plain = roi_pool(x.to(dtype), rois.to(dtype), (5, 4), 1 / 8)
    return out, argmax, y.detach(), xg.grad, plain


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kind", ["random", "ties", "special", "hopeless", "low"])
def test_roi_pool_native_equals_pytorch(kind, dtype, threads, monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = _special_map((2, 19, 23, 29), 0, kind)
        rois = _rois(60, 1, 29 * 8, 23 * 8, 2)
        native = _run(lambda: _roi_pool_results(x, rois, dtype), True, monkeypatch)
        pytorch = _run(lambda: _roi_pool_results(x, rois, dtype), False, monkeypatch)
    finally:
        torch.set_num_threads(before)
    _assert_same(native, pytorch)


def test_roi_pool_native_with_a_capped_table_and_window_blocks(monkeypatch):
    """Rectangles wider than the table's top level: rows of windows, queried in blocks."""
    monkeypatch.setattr(_rectmax, "_TABLE", 5 * 2 * 23 * 29)
    monkeypatch.setattr(_rectmax, "_CHUNK", 50)
    x = _special_map((2, 5, 23, 29), 4, "ties")
    rois = torch.tensor([[0, 0, 0, 28 * 8, 22 * 8], [1, 8, 16, 27 * 8, 20 * 8], [1, -40, -40, 400, 400.0]])
    native = _run(lambda: _roi_pool_results(x, rois, torch.float32), True, monkeypatch)
    pytorch = _run(lambda: _roi_pool_results(x, rois, torch.float32), False, monkeypatch)
    _assert_same(native, pytorch)


@pytest.mark.parametrize("kind", ["ties", "special"])
def test_planes_of_more_than_2_15_pixels_have_int32_argmax(kind, monkeypatch):
    """Maps of 185 x 180 (33,300 pixels): the argmax of roi_pool and SPP is int32, the native
    loops equal the PyTorch paths there too."""
    x = _special_map((2, 3, 185, 180), 7, kind)
    rois = _rois(12, 2, 180 * 8, 185 * 8, 2)
    native = _run(lambda: _roi_pool_results(x, rois, torch.float32), True, monkeypatch)
    pytorch = _run(lambda: _roi_pool_results(x, rois, torch.float32), False, monkeypatch)
    assert native[1].dtype == torch.int32 and int(native[1].max()) >= 1 << 15
    _assert_same(native, pytorch)
    native = _run(lambda: _spp_results(x, (4, 2, 1), torch.float32), True, monkeypatch)
    pytorch = _run(lambda: _spp_results(x, (4, 2, 1), torch.float32), False, monkeypatch)
    assert native[1].dtype == torch.int32
    _assert_same(native, pytorch)


@pytest.mark.parametrize("index", [torch.int16, torch.int32])
def test_roi_gradient_scatter_native_equals_scatter_add(index, monkeypatch):
    """Both pixel widths (int32: planes of more than 2^15 pixels), split by channels: each
    bin's gradient at its pixel in its own channel's plane of its RoI's image."""
    g = torch.Generator().manual_seed(5)
    shape = (3, 7, 6, 5)
    grad = torch.randn((40, 7, 3, 3), generator=g)
    batch = torch.randint(0, 3, (40,), generator=g)
    argmax = torch.randint(0, 30, grad.shape, generator=g)
    argmax = torch.where(torch.rand(grad.shape, generator=g) < 0.1, -1, argmax).to(index)  # -1: no winner
    native = _run(lambda: argmax_backward(grad, argmax, batch, shape, 2), True, monkeypatch)
    pytorch = _run(lambda: argmax_backward(grad, argmax, batch, shape, 2), False, monkeypatch)
    _assert_same([native], [pytorch])
    # the same sums from flat indices, element by element in output order
    plane = batch.view(-1, 1, 1) * 7 + torch.arange(7).view(1, 7, 1)
    flat = (plane * 30 + argmax.view(40, 7, 9).long()).flatten()
    expected = torch.zeros(3 * 7 * 30)
    for i, (target, value) in enumerate(zip(flat.tolist(), grad.flatten().tolist())):
        if argmax.flatten()[i] >= 0:
            expected[target] += value
    assert torch.equal(native.flatten(), expected)


def _spp_results(x, levels, dtype):
    xg = x.to(dtype).requires_grad_()
    out, argmax = torch.ops.rfmap.spp_pool(xg.detach(), list(levels), "max", True)
    y = spp_pool(xg, levels, "max")
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(dtype))
    with torch.no_grad():
        plain = spp_pool(x.to(dtype), levels, "max")
    return out, argmax, y.detach(), xg.grad, plain


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kind", ["random", "ties", "special", "hopeless", "low"])
@pytest.mark.parametrize(
    "shape, levels",
    [
        ((3, 13, 13, 13), (6, 3, 2, 1)),  # SPP-net: coarser levels pooled from the 6 x 6 level
        ((2, 5, 13, 13), (4, 2, 1)),  # 2 from 4, 1 from 2
        ((1, 9, 10, 7), (5, 3, 1)),  # nothing groups; bins of unequal size
        ((2, 4, 1, 9), (3, 2)),  # a one-pixel axis
        ((1, 3, 8, 24), (1, 2, 4, 8)),  # levels given coarse to fine
        ((2, 16, 11, 21), (5, 4, 2, 1)),  # two levels pooled directly, 2 from 4, 1 from 2; rows of 3 chunks
    ],
)
def test_spp_native_equals_pytorch(shape, levels, kind, dtype, threads, monkeypatch):
    # small claims, and threads from the first element: the planes shared out in blocks of 8
    # (1 in the backward pass) between the threads
    monkeypatch.setattr(spp_module, "_CLAIM", 1)
    monkeypatch.setattr(spp_module, "_PARALLEL", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = _special_map(shape, 6, kind)
        native = _run(lambda: _spp_results(x, levels, dtype), True, monkeypatch)
        pytorch = _run(lambda: _spp_results(x, levels, dtype), False, monkeypatch)
    finally:
        torch.set_num_threads(before)
    _assert_same(native, pytorch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 19), st.integers(1, 17), st.integers(1, 35)),
    levels=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    kind=st.sampled_from(["random", "ties", "low", "infinities", "one nan"]),
    seed=st.integers(0, 2**16),
)
def test_spp_native_equals_pytorch_on_random_shapes(shape, levels, kind, seed, monkeypatch):
    """Any map size (rows of one chunk of 8 columns or several, a partial last one), channel
    counts that do and do not fill blocks of 8 planes, levels that group or not; ties, -inf,
    infinities of both signs without NaN (the NaN test of the natural-layout pass sums what it
    reads: inf + -inf sends a block to the scan, which must agree), a single NaN."""
    monkeypatch.setattr(spp_module, "_CLAIM", 1)
    monkeypatch.setattr(spp_module, "_PARALLEL", 0)
    g = torch.Generator().manual_seed(seed)
    if kind == "infinities":
        x = torch.randint(-3, 4, shape, generator=g).float()
        x[x == 3] = float("inf")
        x[x == -3] = float("-inf")
    else:
        x = _special_map(shape, seed, "random" if kind == "one nan" else kind)
        if kind == "one nan":
            x.view(-1)[int(torch.randint(0, x.numel(), (1,), generator=g))] = float("nan")
    native = _run(lambda: _spp_results(x, tuple(levels), torch.float32), True, monkeypatch)
    pytorch = _run(lambda: _spp_results(x, tuple(levels), torch.float32), False, monkeypatch)
    _assert_same(native, pytorch)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **env}
    )


STATUS = (
    "import torch\nfrom rfmap.ops import native_status, roi_pool\n"
    "print(native_status())\n"
    "print(roi_pool(torch.ones(1, 2, 4, 4), torch.tensor([[0, 0, 0, 3, 3.0]]), 2).sum().item())\n"
)


def test_the_library_is_built_once_into_the_cache_folder(tmp_path):
    _native_module()  # a compiler is at hand
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    other = tmp_path / f"rfmap_kernels-0123456789abcdef{suffix}"
    other.write_bytes(b"a build of another source")
    first = _python(STATUS, RFMAP_CACHE_DIR=str(tmp_path), RFMAP_NATIVE="1")
    assert first.returncode == 0 and first.stdout.splitlines() == ["native", "8.0"], first.stderr[-800:]
    built = [path for path in tmp_path.glob(f"rfmap_kernels-*{suffix}") if path != other]
    assert len(built) == 1 and other.read_bytes() == b"a build of another source"  # left alone
    stamp = built[0].stat().st_mtime_ns
    again = _python(STATUS, RFMAP_CACHE_DIR=str(tmp_path), RFMAP_NATIVE="1")
    assert again.stdout.splitlines() == ["native", "8.0"] and built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_a_cache_folder_that_cannot_be_made_gets_a_build_for_the_process(tmp_path):
    _native_module()  # a compiler is at hand
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    proc = _python(STATUS, RFMAP_CACHE_DIR=str(blocked / "rfmap"), RFMAP_NATIVE="1")
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["native", "8.0"], proc.stderr[-800:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a file"]


@pytest.mark.parametrize(
    "env, why",
    [
        ({"RFMAP_NATIVE": "0"}, "pytorch (disabled by RFMAP_NATIVE=0)"),
        ({"CXX": "/nonexistent/c++"}, "pytorch (no C++ compiler ('/nonexistent/c++' not found))"),
        ({"CXX": "false"}, "pytorch (false failed: no output)"),
    ],
)
def test_without_a_build_the_ops_run_on_pytorch_and_say_why(tmp_path, env, why):
    proc = _python(STATUS, RFMAP_CACHE_DIR=str(tmp_path), **{"RFMAP_NATIVE": "1", **env})
    assert proc.returncode == 0 and proc.stdout.splitlines() == [why, "8.0"], proc.stderr[-800:]
    assert not list(tmp_path.glob("rfmap_kernels-*"))


def test_spp_native_threads_in_a_forked_child_and_from_several_threads(monkeypatch):
    """kernels/pool.h: the native workers serve SPP's loops; a forked child starts its own,
    and callers from several Python threads (one job at a time, the others alone) agree."""
    import multiprocessing
    import threading

    _native_module()
    monkeypatch.setattr(spp_module, "_PARALLEL", 0)
    monkeypatch.setattr(spp_module, "_CLAIM", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = _special_map((2, 13, 13, 13), 9, "random")
        expected = _spp_results(x, (6, 3, 2, 1), torch.float32)  # the parent's workers start here
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got = pool.apply_async(_spp_results, (x, (6, 3, 2, 1), torch.float32)).get(timeout=120)
        _assert_same(got, expected)
        results = [None] * 4

        def call(i):
            results[i] = _spp_results(x, (6, 3, 2, 1), torch.float32)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for r in results:
            _assert_same(r, expected)
    finally:
        torch.set_num_threads(before)
