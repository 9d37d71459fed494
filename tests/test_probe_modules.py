"""Independent ground truth: real ``torch.nn`` models against the support of their input gradient.

The models are drawn directly as PyTorch modules (:mod:`torch_draw`: ``nn.ConvNd`` with
per-axis kernel, stride, dilation, int/tuple/'same'/'valid' padding and every padding mode;
``F.pad`` with asymmetric and negative pads in every mode; average and max pooling with ceil
mode; transposed convolutions with output padding and dilation; ``F.interpolate``; slicing;
pixel (un)shuffle; adaptive pooling; residual add, multiply, concatenation and global
context), analyzed by rfmap's public front end (``rfmap.analyze(module, input_size=...)``),
and compared with the gradient of the very same module.  No rfmap code builds or
translates the model under test.  Inputs are non-square (no two axes equal), in 1-D, 2-D
and 3-D.

Checks, for every drawn model that PyTorch runs:

* the output size of every stage (PyTorch's shape) equals ``Analysis.layer("stages.k").output_size``;
* for corner, center and random cells of the last stage and of one other stage,
  ``Analysis.support`` equals the per-axis projections of the non-zero input gradient and
  ``support_box`` its bounding box (``None`` when the gradient is all zero); for chains the
  N-D gradient support is the product of the per-axis sets, for merges it lies inside it;
  with zero padding only, the support lies inside ``rf_box``;
* for the deepest prefix of sliding-window stages (convolution, pooling, padding, slicing,
  unshuffle), ``rf``, ``stride`` and ``padding`` give the gradient's box ``u..v``,
  ``u = -P + i*S``, ``v = u + r - 1``, of the first and the last *clean* cell: a cell whose
  window, traced back through each stage with PyTorch's window arithmetic, reads no padding
  in any intermediate map (cells near a cropped edge read zeros where rfmap's virtual cells
  extrapolate, see test_gradient_probe.py, so only clean cells are compared).

Max pooling sends the gradient of each window to its arg-max only, so one input's gradient
shows one of the paths a cell may depend on, while rfmap reports every pixel that can win
for some input.  With a max pool in the model the union of the gradient supports of four
positive inputs (ones and three random) must be a *subset* of rfmap's support, its box must
lie inside ``support_box``, and the clean cells' gradient box inside ``u..v``.

Rejections: drawing stops at the first stage PyTorch rejects, and such models are kept.  If
PyTorch raises (or returns a map with an empty axis, which rfmap refuses to analyze), rfmap
must raise :class:`rfmap.RFMapError`; if rfmap raises, PyTorch must raise too, except where
rfmap documents a refusal (:func:`documented_refusals`): a transposed convolution leaving
output phases no input reaches (PyTorch's output of that module on a positive input must
then have cells that are exactly zero), circular padding that wraps more than once.  ``wild`` models draw kernels, pads and slices past
the input size to exercise these paths.

Floating point: PyTorch computes interpolation source coordinates in floating point, rfmap
exactly, so the drawn factors are those where both agree (nearest x2, x3, x1/2; linear x2,
x4, x1/2; see test_gradient_probe.py).

The quick tests are derandomized with small example counts (``-m "not slow"``); the slow
ones draw many more.  ``pytest -v`` prints the totals.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_draw import (
    Branches,
    C,
    Drawn,
    Interp,
    Net,
    Pad,
    Shuffle,
    Slice,
    box_of,
    clean_boxes,
    gradient_masks,
    has_max_pool,
    has_merge,
    make_positive,
    models,
    outer,
    pads_by_copy,
    projections,
    run_torch,
    window_of,
)

import rfmap
from rfmap import RFMapError

pytestmark = [
    pytest.mark.filterwarnings("ignore::rfmap.errors.RFMapWarning"),  # drawn merges are often misaligned
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
]

QUICK = settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

#: totals over every model checked (printed at the end of the module with ``-v``)
TOTALS = dict.fromkeys(["models", "cells", "empty", "rf", "rejected", "refused"], 0)


@pytest.fixture(autouse=True, scope="module")
def _report_totals(request, one_thread):
    """One thread for the module's tests (see conftest); afterwards, with ``-v``, the totals."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and request.config.option.verbose > 0:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                "\nmodule probes: {models} models run by PyTorch, {cells} cells compared ({empty} with an "
                "all-zero gradient), rf/stride/padding on {rf} cells; {rejected} models rejected by both, "
                "{refused} refused by rfmap as documented".format_map(TOTALS)
            )


# -- the checks ---------------------------------------------------------------------------


def _stage_inputs(net: Net, sizes, kinds) -> dict:
    """The input shape of every module of the given kinds that the input reaches."""
    shapes = {}

    def record(module, inputs, output):
        shapes.setdefault(module, inputs[0].shape)

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            net(torch.ones((1, C) + tuple(sizes), dtype=torch.float64))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def documented_refusals(net: Net, sizes) -> list[str]:
    """Geometries PyTorch runs and rfmap refuses by design, found from the model's own parameters:

    * a transposed convolution whose stride, kernel and dilation leave output phases that no
      input feeds (its output on a positive input must then have cells that are exactly zero);
    * ``F.pad(mode="circular")`` that wraps more than once around the cells a negative pad
      keeps: PyTorch checks each pad against the uncropped size only, and its result then
      depends on the memory layout (a 1-row map raises, a larger one repeats the kept cells).
    """
    found = []
    for m, shape in _stage_inputs(net, sizes, (nn.modules.conv._ConvTransposeNd, Pad)).items():
        if isinstance(m, Pad):
            nd = len(shape) - 2
            for a, n in enumerate(shape[2:]):
                left, right = m.pad[2 * (nd - 1 - a)], m.pad[2 * (nd - 1 - a) + 1]
                kept = n - max(-left, 0) - max(-right, 0)
                if m.mode == "circular" and max(left, right) > kept:
                    found.append(f"{m}: wraps more than once around {kept} kept cells")
            continue
        if any(len({(d * t) % s for t in range(k)}) != s for k, s, d in zip(m.kernel_size, m.stride, m.dilation)):
            with torch.no_grad():
                zero = bool((m(torch.ones(shape, dtype=torch.float64)) == 0).any())
            assert zero, f"{m}: no output cell is zero on a positive input"  # so some cells see nothing
            found.append(f"{m}: output phases no input reaches")
    return found


def cells_of(size, data) -> list[tuple[int, ...]]:
    """Corners, the center, the middle of each border and (with ``data``) two random cells.
    Without ``data``: every cell of a small map, a grid of about 8 cells per axis with both
    ends on a larger one."""
    if data is None:
        if int(np.prod(size)) <= 400:
            return list(itertools.product(*(range(n) for n in size)))
        return list(itertools.product(*(sorted({*range(0, n, max(n // 8, 1)), n - 1}) for n in size)))
    cells = set(itertools.product(*((0, n - 1) for n in size)))
    center = tuple(n // 2 for n in size)
    cells.add(center)
    for axis, n in enumerate(size):
        for end in (0, n - 1):
            cells.add(center[:axis] + (end,) + center[axis + 1 :])
    for _ in range(2):
        cells.add(tuple(data.draw(st.integers(0, n - 1)) for n in size))
    return sorted(cells)


def check_cells(a, net: Net, k: int, sizes, cells, *, exact: bool, separable: bool, zero_pad: bool) -> None:
    """rfmap's per-cell support of stage ``k`` against the input gradient (see the module docstring)."""
    name, nd = f"stages.{k}", len(sizes)
    masks = gradient_masks(net, k, sizes, cells, n_inputs=1 if exact else 4)
    for cell, mask in zip(cells, masks):
        got, want = a.support(name, cell), projections(mask)
        where = f"{name} cell {cell}: rfmap {[s.tolist() for s in got]}, gradient {[s.tolist() for s in want]}"
        product = outer(got, sizes)
        assert not (mask & ~product).any(), f"{where}: gradient outside rfmap's support"
        if exact:
            assert all(np.array_equal(g, w) for g, w in zip(got, want)), where
            assert a.support_box(name, cell) == box_of(want), where
            if separable:
                assert (mask == product).all(), f"{where}: the N-D support is not the product"
        else:
            assert all(np.isin(w, g).all() for g, w in zip(got, want)), where
            gbox, sbox = box_of(want), a.support_box(name, cell)
            if gbox is not None:
                assert sbox is not None and sbox[:nd] <= gbox[:nd] and gbox[nd:] <= sbox[nd:], where
        if zero_pad and box_of(got) is not None:
            rf = a.rf_box(name, cell)
            assert all(rf[i] <= g[0] and g[-1] <= rf[nd + i] for i, g in enumerate(got)), f"{where}: rf_box {rf}"
        TOTALS["cells"] += 1
        TOTALS["empty"] += box_of(want) is None


def check_rf(a, net: Net, sizes, out_sizes, *, exact: bool) -> None:
    """rf / stride / padding of the deepest prefix of sliding-window stages, on clean cells."""
    nd = len(sizes)
    in_sizes = [tuple(sizes)] + list(out_sizes[:-1])
    windows = []
    for stage, n_in in zip(net.stages, in_sizes):
        win = window_of(stage, nd, n_in)
        if win is None:
            break
        windows.append(win)
    if not windows:
        return
    k = len(windows) - 1
    clean = [clean_boxes(windows, in_sizes[: k + 1], axis, out_sizes[k][axis]) for axis in range(nd)]
    if not all(clean):
        return
    row = a.layer(f"stages.{k}")
    for pick in (min, max):
        cell = tuple(pick(c) for c in clean)
        box = tuple(clean[i][cell[i]][0] for i in range(nd)) + tuple(clean[i][cell[i]][1] for i in range(nd))
        claimed = tuple(-p + i * s for p, i, s in zip(row.padding, cell, row.stride))
        claimed += tuple(u + r - 1 for u, r in zip(claimed, row.rf))
        where = f"stages.{k} cell {cell}: rf {row.rf} stride {row.stride} padding {row.padding}"
        assert claimed == box, f"{where}: u..v {claimed}, window {box}"
        gbox = box_of(projections(gradient_masks(net, k, sizes, [cell], n_inputs=1 if exact else 4)[0]))
        if exact:
            assert gbox == box, f"{where}: gradient box {gbox}, window {box}"
        else:
            assert gbox is not None and box[:nd] <= gbox[:nd] and gbox[nd:] <= box[nd:], where
        TOTALS["rf"] += 1


def analyze(net: Net, sizes):
    """rfmap's analysis of the model, or the RFMapError it raised (any other exception fails)."""
    try:
        return rfmap.analyze(net, input_size=tuple(sizes)), None
    except RFMapError as exc:
        return None, exc


def check_model(drawn: Drawn, data=None) -> str:
    """Everything the module docstring lists, for one model; every cell of every stage when
    ``data`` is None.  Returns what happened: ``checked``, ``rejected`` (PyTorch raises),
    ``empty`` (PyTorch returns a map with an empty axis) or ``refused`` (see
    :func:`documented_refusals`)."""
    net, sizes = drawn.net, drawn.sizes
    tell = event if data is not None else (lambda text: None)
    outcome = run_torch(net, sizes)
    a, err = analyze(net, sizes)
    if outcome.error is not None or outcome.empty:
        why = outcome.error or "a map with an empty axis"
        assert err is not None, f"PyTorch: {why}; rfmap accepts the model"
        tell("rejected by both" if outcome.error else "empty map in PyTorch, refused by rfmap")
        TOTALS["rejected"] += 1
        return "rejected" if outcome.error else "empty"
    refusals = documented_refusals(net, sizes)
    if refusals:
        assert err is not None and ("reach" in str(err) or "wrap" in str(err)), f"{refusals}: rfmap says {err}"
        tell("refused by rfmap as documented: " + refusals[0].split(": ")[-1])
        TOTALS["refused"] += 1
        return "refused"
    assert err is None, f"PyTorch runs the model (sizes {outcome.sizes}), rfmap raises: {err}"
    for k, size in enumerate(outcome.sizes):
        assert a.layer(f"stages.{k}").output_size == size, f"stages.{k}: PyTorch {size}"
    exact = not has_max_pool(net)
    flags = {"exact": exact, "separable": not has_merge(net), "zero_pad": not pads_by_copy(net)}
    last = len(outcome.sizes) - 1
    stages = {data.draw(st.integers(0, last)), last} if data is not None else range(last + 1)
    for k in sorted(stages):
        check_cells(a, net, k, sizes, cells_of(outcome.sizes[k], data), **flags)
    check_rf(a, net, sizes, outcome.sizes, exact=exact)
    TOTALS["models"] += 1
    tell(f"{len(sizes)}-D, {'max pool' if not exact else 'exact'}")
    return "checked"


# -- property tests ------------------------------------------------------------------------


@given(data=st.data())
@settings(QUICK, max_examples=60)
def test_chains_2d(data):
    check_model(data.draw(models(2), label="model"), data)


@pytest.mark.parametrize("ndim", [2, 3])
@given(data=st.data())
@settings(QUICK, max_examples=25)
def test_chains_with_transposes(ndim, data):
    """H and W (or D, H, W) permuted between other stages: sizes in the tensor's order,
    supports in the input's."""
    check_model(data.draw(models(ndim, dag=ndim == 2, transpose=True), label="model"), data)


@pytest.mark.parametrize("ndim", [1, 3])
@given(data=st.data())
@settings(QUICK, max_examples=20)
def test_chains_1d_3d(ndim, data):
    check_model(data.draw(models(ndim), label="model"), data)


@given(data=st.data())
@settings(QUICK, max_examples=45)
def test_dags_2d(data):
    check_model(data.draw(models(2, dag=True), label="model"), data)


@pytest.mark.parametrize("ndim", [1, 3])
@given(data=st.data())
@settings(QUICK, max_examples=15)
def test_dags_1d_3d(ndim, data):
    check_model(data.draw(models(ndim, dag=True), label="model"), data)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
@settings(QUICK, max_examples=30)
def test_wild_geometries(ndim, data):
    """Kernels, pads and slices drawn past the input size: rejections must agree."""
    check_model(data.draw(models(ndim, dag=ndim == 2, wild=True, max_stages=3), label="model"), data)


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
@settings(QUICK, max_examples=500)
def test_chains_slow(ndim, data):
    check_model(data.draw(models(ndim, max_stages=6), label="model"), data)


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
@settings(QUICK, max_examples=400)
def test_dags_slow(ndim, data):
    check_model(data.draw(models(ndim, dag=True, max_stages=5), label="model"), data)


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 2, 3])
@given(data=st.data())
@settings(QUICK, max_examples=400)
def test_wild_geometries_slow(ndim, data):
    check_model(data.draw(models(ndim, dag=True, wild=True, max_stages=3), label="model"), data)


# -- deterministic examples: the code path of each known engine mutant ---------------------


def net(*stages) -> Net:
    return make_positive(Net(list(stages)))


#: name -> (model, input size, what must happen); every cell of every stage is compared
EXAMPLES = {
    # left/right padding: asymmetric and negative pads, every mode, per-axis kernels, H != W
    "F.pad (0,2,1,0) between per-axis windows": (
        lambda: net(nn.Conv2d(C, C, (3, 2)), Pad((0, 2, 1, 0), "constant"), nn.AvgPool2d((2, 3), stride=(2, 1))),
        (9, 13),
        "checked",
    ),
    "F.pad negative and asymmetric, reflect": (
        lambda: net(Pad((2, 0, -1, 1), "reflect"), nn.Conv2d(C, C, (2, 3), stride=(1, 2))),
        (7, 10),
        "checked",
    ),
    "F.pad negative and asymmetric, replicate": (lambda: net(Pad((1, -2, -1, 3), "replicate"), nn.AvgPool2d((3, 2), 1)), (6, 9), "checked"),
    "F.pad negative and asymmetric, circular": (lambda: net(Pad((2, -1, 0, 1), "circular"), nn.Conv2d(C, C, (1, 3))), (5, 8), "checked"),
    "F.pad 1-D (3, -2)": (lambda: net(Pad((3, -2), "constant"), nn.AvgPool1d(3, 2, 1, ceil_mode=True)), (12,), "checked"),
    "F.pad 3-D asymmetric": (
        lambda: net(Pad((0, 1, 2, 0, -1, 1), "constant"), nn.Conv3d(C, C, (2, 1, 3))),
        (5, 7, 6),
        "checked",
    ),
    "'same' with even kernels and dilation": (
        lambda: net(nn.Conv2d(C, C, (4, 2), padding="same", dilation=(1, 3))),
        (7, 10),
        "checked",
    ),
    # H and W: per-axis kernel, stride, dilation, padding on non-square inputs
    "Conv2d per-axis (5,2) s(2,1) d(1,2) p(2,0)": (
        lambda: net(nn.Conv2d(C, C, (5, 2), stride=(2, 1), padding=(2, 0), dilation=(1, 2))),
        (11, 16),
        "checked",
    ),
    "Conv3d per-axis": (
        lambda: net(nn.Conv3d(C, C, (3, 1, 2), stride=(1, 2, 1), padding=(1, 0, 1), dilation=(2, 1, 1))),
        (6, 9, 7),
        "checked",
    ),
    # ceil mode (the output sizes differ from floor's)
    "AvgPool2d ceil (3,2) s(2,3)": (lambda: net(nn.AvgPool2d((3, 2), stride=(2, 3), ceil_mode=True)), (10, 14), "checked"),
    "MaxPool2d ceil with dilation": (
        lambda: net(nn.MaxPool2d((3, 2), stride=2, dilation=(1, 2), ceil_mode=True)),
        (10, 13),
        "checked",
    ),
    # ceil mode: the last window would start in the right padding and is dropped
    "AvgPool2d ceil, last window in the padding": (
        lambda: net(nn.AvgPool2d((2, 3), stride=2, padding=1, ceil_mode=True)),
        (5, 8),
        "checked",
    ),
    "MaxPool1d ceil, last window in the padding": (lambda: net(nn.MaxPool1d(2, 2, 1, ceil_mode=True)), (9,), "checked"),
    "AvgPool3d ceil, last window in the padding": (
        lambda: net(nn.AvgPool3d((2, 2, 3), stride=(2, 3, 2), padding=(1, 1, 1), ceil_mode=True, count_include_pad=False)),
        (5, 7, 6),
        "checked",
    ),
    # dilated transposed convolutions
    "ConvTranspose2d dilated": (
        lambda: net(nn.ConvTranspose2d(C, C, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(3, 2))),
        (5, 8),
        "checked",
    ),
    "ConvTranspose1d dilated, output padding": (
        lambda: net(nn.ConvTranspose1d(C, C, 3, stride=2, dilation=3, output_padding=1)),
        (7,),
        "checked",
    ),
    "ConvTranspose3d dilated": (
        lambda: net(nn.ConvTranspose3d(C, C, (2, 3, 2), stride=(1, 1, 2), dilation=(2, 1, 3), padding=(0, 1, 1))),
        (3, 5, 4),
        "checked",
    ),
    # the other ops once each
    "slicing, interpolation, shuffles, adaptive pooling": (
        lambda: net(
            Slice((slice(1, -2, 2), slice(None, None, 3))),
            Interp(scale_factor=(2.0, 3.0), mode="nearest"),
            Interp(scale_factor=(4.0, 2.0), mode="bilinear", align_corners=True),
            Shuffle(2, unshuffle=True),
            Shuffle(3, unshuffle=False),
            nn.AdaptiveAvgPool2d((5, None)),
        ),
        (13, 17),
        "checked",
    ),
    "residual, concat and global merges": (
        lambda: net(
            nn.Conv2d(C, C, (3, 1), padding=(1, 0)),
            Branches(Net([nn.Conv2d(C, C, 3, stride=2)]), Net([nn.AvgPool2d(2)]), "cat", (0, -1, 0, 0), 2),
            Branches(Net([Pad((1, 0, 0, 2), "replicate")]), Net([]), "mul", (1, 0, 2, 0), 2),
            Branches(Net([]), Net([nn.Conv2d(C, C, 1)]), "global", None, 2),
        ),
        (11, 8),
        "checked",
    ),
    # rejections
    "reflect pad >= size": (lambda: net(Pad((3, 3, 0, 0), "reflect")), (6, 3), "rejected"),
    "circular pad wraps twice": (lambda: net(Pad((0, 0, 4, 0), "circular")), (3, 5), "rejected"),
    "3-D average pool, ceil mode, input under the kernel": (
        lambda: net(nn.AvgPool3d((1, 1, 2), (1, 1, 2), ceil_mode=True)),
        (4, 5, 1),
        "rejected",
    ),
    "kernel larger than the input": (lambda: net(nn.Conv2d(C, C, (7, 2))), (6, 9), "rejected"),
    "pool pad > half the kernel": (lambda: net(nn.MaxPool2d(3, 1, (2, 1))), (6, 9), "rejected"),
    "transposed output size < 1": (lambda: net(nn.ConvTranspose2d(C, C, (3, 2), stride=2, padding=(3, 1))), (2, 6), "rejected"),
    "empty slice": (lambda: net(Slice((slice(4, 2), slice(None)))), (6, 5), "empty"),
    "negative pads crop everything": (lambda: net(Pad((-3, -3, 0, 0), "constant")), (5, 6), "empty"),
    "transposed stride 2, kernel 1: odd cells unreached": (lambda: net(nn.ConvTranspose2d(C, C, 1, stride=(2, 1))), (4, 5), "refused"),
    "circular pad wraps twice around the kept cells": (lambda: net(Pad((-2, 3, 0, 0), "circular")), (3, 4), "refused"),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example(name):
    build, sizes, expected = EXAMPLES[name]
    assert check_model(Drawn(build(), sizes, ()), None) == expected


def test_output_padding_too_large():
    """PyTorch's CPU kernel raises; its meta kernel (which rfmap's front end runs) does not."""
    model = net(nn.ConvTranspose2d(C, C, 3, stride=2, output_padding=(2, 1)))
    assert check_model(Drawn(model, (6, 9), ()), None) == "rejected"


def test_concat_before_any_convolution():
    """``conv(cat([x, x]))``: the input has half the convolution's in_channels; the front end
    finds that by running the ops before the convolution (it once built a 4-channel input and
    failed where PyTorch runs the 2-channel one)."""
    model = net(Branches(Net([]), Net([]), "cat", None, 2))
    assert check_model(Drawn(model, (5, 6), ()), None) == "checked"
