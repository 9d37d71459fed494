"""Ground truth: rfmap's receptive fields against the support of the input gradient.

"The ground truth for a receptive field is the support of an input gradient."  Every
architecture drawn here is analyzed by rfmap and rebuilt in PyTorch by
:func:`rfmap.erf.twin.to_torch` (positive weights, zero bias, max pooling as average
pooling, float64), and for corner, border and interior cells of the output (and of one
other node) we check:

* ``Analysis.support`` == the per-axis projections of the non-zero input gradient (exact
  sets), and for chains the gradient's N-D support is the product of those sets;
* ``Analysis.support_box`` == the gradient's bounding box (``None`` when it is all zero);
* the support lies inside ``Analysis.rf_box`` (the unclipped theoretical box) -- unless
  the graph pads by reflect/replicate/circular: there the box holds the padding positions
  themselves, while the support holds the pixels they copy, folded back into the image;
* ``rf_box`` == the gradient's bounding box wherever ``rf_box`` lies inside the image and
  the graph has no *cropping* layer.  Why the exception: a cell's box is built from the
  boxes of the cells its window reads in the previous map, also of cells outside that map
  (in its padding), whose boxes rfmap extrapolates periodically.  Without cropping a
  position outside a map always extrapolates to pixels outside the image, so a box inside
  the image never counts padding.  A cropping layer (negative padding, a crop that drops
  cells at either end, a transposed convolution with padding, which crops its full output)
  removes real cells; a later window that reads past the cropped map's edge reads zeros
  in PyTorch, but rfmap's virtual cell there is one of the removed cells, whose box lies
  inside the image.  The box is then larger than the support although it is inside the image;
  the support is still exact.  Global ops (global pooling, an adaptive pool to 1) count
  as cropping here: rfmap's virtual cells around a global map's one cell all have the
  whole image as box, so a cell that reads only the padding around a global map has an
  rf_box covering the image and an empty support;
* for shift-invariant layers, ``.layers`` agrees with the probe of an interior cell
  ``i``: the gradient's box is ``u..v`` with ``u = -P + i*S``, ``v = u + r - 1``;
* PyTorch's output sizes equal rfmap's for every node (the twin checks each node).

Scale factors: rfmap models interpolation ratios exactly (Fractions), PyTorch in floating
point (float32 for ``nearest``, float64 for ``linear`` on float64 tensors), so where an
exact source coordinate is an integer PyTorch may land a hair off it and give the next
pixel a weight of 1e-16.  The tests use nearest x2/x3 and (bi)linear x2/x4, where both
agree on every source index: with ``align_corners=True`` the ratio ``(n-1)/(m-1)`` is not a
binary fraction, but for x2 and x4 PyTorch's weights were checked exhaustively to match the
exact ones for every input size up to 160 (x3 already differs at n = 29, x5 without
align_corners at n = 2).

The quick tests (25 examples each, derandomized) run with ``-m "not slow"``; the big runs
(600 2-D chains, 400 2-D DAGs, 120 chains and 80 DAGs in each of 1-D and 3-D) are marked
``slow``.  All are derandomized, so CI is reproducible.  ``pytest -v`` prints the totals
(architectures, cells, checks); ``--hypothesis-show-statistics`` the mix of layers drawn.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, assume, event, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from probe import gradient_support, gradient_supports  # noqa: E402

from rfmap import Analysis, RFMapError  # noqa: E402
from rfmap.core.axis import Global  # noqa: E402
from rfmap.core.graph import Graph, GraphBuilder  # noqa: E402
from rfmap.core.layers import (  # noqa: E402
    AdaptivePool,
    Conv,
    ConvTranspose,
    Crop,
    GlobalOp,
    Merge,
    Pad,
    PixelShuffle,
    PixelUnshuffle,
    Pointwise,
    Upsample,
    conv,
    maxpool,
)
from rfmap.erf.twin import layer_module, to_torch  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::rfmap.errors.RFMapWarning"),  # drawn DAGs are often misaligned
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
]

QUICK = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
SLOW_CHAINS = settings(QUICK, max_examples=600)
SLOW_DAGS = settings(QUICK, max_examples=400)

#: largest map side and map volume a drawn architecture may reach (keeps examples fast)
MAX_SIDE = {1: 200, 2: 80, 3: 16}
MAX_VOLUME = {1: 200, 2: 3600, 3: 2000}


#: totals over every architecture checked (printed at the end of the module with ``-v``)
TOTALS: dict[str, int] = {}


@pytest.fixture(autouse=True, scope="module")
def _report_totals(request, one_thread):
    """One thread for the module's tests (see conftest); afterwards, with ``-v``, the totals."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and request.config.option.verbose > 0 and TOTALS:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                "\ngradient probes: {architectures} architectures, {cells} cells; rf_box == gradient box "
                "checked on {box checks} cells, .layers (u, r) on {layers checks}; {empty} cells with an "
                "all-zero gradient".format_map(TOTALS)
            )


# -- layer strategies --------------------------------------------------------------------


def scalar_or_axes(ndim: int, values) -> st.SearchStrategy:
    """One value for every axis, or one per axis (unequal per-axis values catch axis mix-ups)."""
    return st.one_of(values, st.tuples(*[values] * ndim)) if ndim > 1 else values


def _axes(value, ndim):
    return value if isinstance(value, tuple) else (value,) * ndim


PAD_SIDE = st.sampled_from([0, 0, 1, 1, 2, 3, -1])


@st.composite
def conv_layers(draw, ndim):
    kernel = draw(scalar_or_axes(ndim, st.integers(1, 5)))
    stride = draw(scalar_or_axes(ndim, st.integers(1, 3)))
    dilation = draw(scalar_or_axes(ndim, st.integers(1, 3)))
    padding = draw(
        st.one_of(
            st.integers(0, 3),
            st.tuples(*[st.tuples(PAD_SIDE, PAD_SIDE)] * ndim),
            st.sampled_from(["same_upper", "same_lower", "same", "valid"]),
        )
    )
    pad_mode = draw(st.sampled_from(["zeros"] * 6 + ["reflect", "replicate", "circular"]))
    return Conv(kernel, stride, padding, dilation, op="conv", pad_mode=pad_mode)


@st.composite
def pool_layers(draw, ndim):
    op = draw(st.sampled_from(["maxpool", "avgpool"]))
    kernel = _axes(draw(scalar_or_axes(ndim, st.integers(1, 4))), ndim)
    stride = draw(st.one_of(st.just(kernel), scalar_or_axes(ndim, st.integers(1, 3))))
    dilation = draw(scalar_or_axes(ndim, st.integers(1, 2))) if op == "maxpool" else 1
    if draw(st.integers(0, 3)):
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)  # what PyTorch's pooling accepts
    else:
        padding = tuple(draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in kernel)
    return Conv(kernel, stride, padding, dilation, draw(st.booleans()), op=op)


@st.composite
def conv_transpose_layers(draw, ndim):
    kernel = draw(scalar_or_axes(ndim, st.integers(1, 4)))
    stride = _axes(draw(scalar_or_axes(ndim, st.integers(1, 3))), ndim)
    output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
    dilation = draw(scalar_or_axes(ndim, st.integers(1, 3)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))] * ndim)))
    return ConvTranspose(kernel, stride, padding, output_padding, dilation)


@st.composite
def upsample_layers(draw, ndim):
    kind = draw(st.sampled_from(["nearest", "nearest", "nearest-exact", "linear", "linear"]))
    if kind == "linear":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[ndim]
        return Upsample(draw(scalar_or_axes(ndim, st.sampled_from([2, 4]))), mode=mode, align_corners=draw(st.booleans()))
    return Upsample(draw(scalar_or_axes(ndim, st.sampled_from([2, 3]))), mode=kind)


@st.composite
def pad_layers(draw, ndim):
    side = st.integers(-3, 3)
    padding = draw(st.one_of(side, st.tuples(*[st.tuples(side, side)] * ndim)))
    return Pad(padding, draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])))


@st.composite
def crop_layers(draw, ndim):
    start = draw(scalar_or_axes(ndim, st.integers(0, 3)))
    stop = draw(scalar_or_axes(ndim, st.one_of(st.none(), st.integers(-3, -1), st.integers(6, 40))))
    step = draw(scalar_or_axes(ndim, st.integers(1, 3)))
    return Crop(start, stop, step)


def shuffle_layers(ndim):
    return st.builds(PixelShuffle, st.sampled_from([2, 3] if ndim == 1 else [2]))


def unshuffle_layers(ndim):
    return st.builds(PixelUnshuffle, st.sampled_from([2, 3]))


def adaptive_layers(ndim):
    return st.builds(AdaptivePool, scalar_or_axes(ndim, st.one_of(st.integers(1, 12), st.none())))


LAYERS = {
    "conv": conv_layers,
    "pool": pool_layers,
    "convT": conv_transpose_layers,
    "up": upsample_layers,
    "pad": pad_layers,
    "crop": crop_layers,
    "shuffle": shuffle_layers,
    "unshuffle": unshuffle_layers,
    "adaptive": adaptive_layers,
    "pointwise": lambda ndim: st.just(Pointwise("relu")),
}
CHAIN_KINDS = ["conv"] * 5 + ["pool"] * 3 + ["convT"] * 2 + ["up"] * 2 + ["pad", "crop", "shuffle", "unshuffle", "adaptive", "pointwise"]


def crops(layer, sizes) -> bool:
    """Whether ``layer`` (on an input of ``sizes``) removes real cells at either end.

    Negative padding, a crop that drops cells before ``start`` or after the last kept
    cell, and a transposed convolution with padding (which crops its full output).
    Floors in output sizes are not cropping: the dropped pixels never had a cell.
    """
    ndim = len(sizes)
    if isinstance(layer, (Conv, Pad)):
        from rfmap.erf.twin import resolve_padding

        pads = layer.padding
        entries = (pads,) * ndim if isinstance(pads, str) else _axes(pads, ndim)
        if isinstance(layer, Conv) and isinstance(pads, tuple) and len(pads) == 1:
            entries = pads * ndim
        for p, n, k, s, d in zip(
            entries,
            sizes,
            _axes(getattr(layer, "kernel", 1), ndim),
            _axes(getattr(layer, "stride", 1), ndim),
            _axes(getattr(layer, "dilation", 1), ndim),
        ):
            pl, pr = resolve_padding(p, n, k, s, d)
            if pl < 0 or pr < 0:
                return True
        return False
    if isinstance(layer, Crop):
        for n, a, b, s in zip(sizes, _axes(layer.start, ndim), _axes(layer.stop, ndim), _axes(layer.step, ndim)):
            a, b, s = slice(a, b, s).indices(n)
            if a > 0 or a + len(range(a, b, s)) * s < n:
                return True
        return False
    if isinstance(layer, ConvTranspose):
        return any(p != 0 and p != (0, 0) for p in _axes(layer.padding, ndim))
    return False


def folds(layer) -> bool:
    """Whether ``layer`` pads by reflect/replicate/circular (its box holds padding positions,
    its support the pixels they copy)."""
    mode = layer.pad_mode if isinstance(layer, Conv) else layer.mode if isinstance(layer, Pad) else "zeros"
    return mode in ("reflect", "replicate", "circular")


# -- building architectures --------------------------------------------------------------


@dataclass
class Arch:
    """A drawn architecture, built step by step through a :class:`GraphBuilder`."""

    ndim: int
    input_size: tuple[int, ...]
    builder: GraphBuilder = None  # type: ignore[assignment]
    sizes: dict = field(default_factory=dict)
    cropping: bool = False
    folding: bool = False  # reflect/replicate/circular padding somewhere
    count: int = 0
    log: list = field(default_factory=list)

    def __post_init__(self):
        self.builder = GraphBuilder("drawn", self.input_size)
        self.sizes[self.builder.input] = self.input_size

    def fits(self, sizes) -> bool:
        return max(sizes) <= MAX_SIDE[self.ndim] and int(np.prod(sizes)) <= MAX_VOLUME[self.ndim]

    def try_add(self, kind: str, layer, src: str) -> str | None:
        """Add ``layer`` after ``src`` if rfmap accepts it and the map stays small, else ``None``."""
        try:
            maps = layer.axis_maps(self.sizes[src])
        except RFMapError:
            return None
        out = tuple(m.n_out for m in maps)
        if not self.fits(out):
            return None
        self.count += 1
        name = f"{kind}{self.count}"
        event(f"has {kind}")
        self.builder.add(name, layer, src)
        self.cropping |= crops(layer, self.sizes[src])
        # a global map has one cell and rfmap gives every virtual cell around it the whole
        # image as box: a later window reading its padding gets a box inside the image
        self.cropping |= any(isinstance(m, Global) for m in maps)
        self.folding |= folds(layer)
        self.sizes[name] = out
        self.log.append(f"{name} = {layer!r}({src})  {list(self.sizes[src])} -> {list(out)}")
        return name

    def merge(self, op: str, *srcs: str) -> str:
        self.count += 1
        name = f"{op}{self.count}"
        event(f"has {op}")
        self.builder.add(name, Merge(op), *srcs)
        self.sizes[name] = self.sizes[srcs[0]]
        self.log.append(f"{name} = {op}({', '.join(srcs)})")
        return name

    def build(self) -> Graph:
        return self.builder.build()


def draw_sizes(data, ndim):
    lo, hi = {1: (8, 60), 2: (8, 40), 3: (4, 10)}[ndim]
    return tuple(data.draw(st.integers(lo, hi), label="size") for _ in range(ndim))


def draw_chain(data, ndim: int, n_layers: int, kinds=CHAIN_KINDS) -> Arch:
    arch = Arch(ndim, draw_sizes(data, ndim))
    x = arch.builder.input
    for _ in range(n_layers):
        kind = data.draw(st.sampled_from(kinds), label="kind")
        layer = data.draw(LAYERS[kind](ndim), label=kind)
        x = arch.try_add(kind, layer, x) or x
    return arch


def _branch(data, arch: Arch, x: str, n: int, kinds=("conv", "conv", "pool", "pointwise")) -> str:
    for _ in range(n):
        kind = data.draw(st.sampled_from(kinds), label="branch kind")
        x = arch.try_add(kind, data.draw(LAYERS[kind](arch.ndim), label=kind), x) or x
    return x


def _shortcut(arch: Arch, x: str, y: str) -> str:
    """A 1x1 projection of ``x`` with the branch's stride, padded to land on ``y``'s size."""
    analysis = Analysis(arch.build(), arch.input_size)
    sx, sy = analysis.layer(x).stride, analysis.layer(y).stride
    strides = tuple(int(b / a) if a else 1 for a, b in zip(sx, sy))  # a == 0: after a global op
    pads = []
    for n, m, s in zip(arch.sizes[x], arch.sizes[y], strides):
        # floor((n + pr - 1) / s) + 1 == m  <=>  (m-1)*s - n + 1 <= pr <= m*s - n
        low = (m - 1) * s - n + 1
        pads.append((0, max(low, 0) if max(low, 0) <= m * s - n else m * s - n))
    name = arch.try_add("proj", Conv(1, strides, tuple(pads)), x)
    assert name is not None and arch.sizes[name] == arch.sizes[y], (arch.log, pads)
    return name


def draw_dag(data, ndim: int) -> Arch:
    """Residual blocks, concat/mul/add of parallel branches, down-up (U-Net) blocks, plain layers."""
    arch = Arch(ndim, draw_sizes(data, ndim))
    x = arch.builder.input
    for _ in range(data.draw(st.integers(1, 4), label="blocks")):
        block = data.draw(st.sampled_from(["residual", "residual", "parallel", "parallel", "unet", "layer"]), label="block")
        if block == "residual":
            y = _branch(data, arch, x, data.draw(st.integers(1, 3), label="depth"))
            if y == x:
                continue
            if arch.sizes[y] == arch.sizes[x] and data.draw(st.booleans(), label="identity"):
                short = x
            else:
                short = _shortcut(arch, x, y)
            x = arch.merge("add", short, y)
        elif block == "parallel":
            stride = data.draw(scalar_or_axes(ndim, st.integers(1, 2)), label="stride")
            outs = []
            for _ in range(data.draw(st.sampled_from([2, 2, 3]), label="branches")):
                pad = data.draw(st.sampled_from(["same_upper", "same_lower"] + (["same"] if stride == 1 else [])))
                if data.draw(st.integers(0, 3), label="pool branch") == 0:
                    layer = Conv(data.draw(st.integers(1, 4)), stride, pad, op=data.draw(st.sampled_from(["maxpool", "avgpool"])))
                else:
                    kernel = data.draw(scalar_or_axes(ndim, st.integers(1, 5)), label="kernel")
                    dilation = data.draw(scalar_or_axes(ndim, st.integers(1, 3)), label="dilation")
                    layer = Conv(kernel, stride, pad, dilation)
                y = arch.try_add("br", layer, x)
                if y is not None and data.draw(st.booleans(), label="second conv"):
                    y = arch.try_add("br", conv(data.draw(st.integers(1, 3)) * 2 - 1, 1, "same"), y) or y
                if y is not None:
                    outs.append(y)
            outs = [y for y in outs if arch.sizes[y] == arch.sizes[outs[0]]] if outs else []
            if len(outs) >= 2:
                x = arch.merge(data.draw(st.sampled_from(["concat", "mul", "add"]), label="merge"), *outs)
        elif block == "unet":
            if any(n % 2 for n in arch.sizes[x]):
                continue
            down = data.draw(st.sampled_from([maxpool(2), Conv(3, 2, "same_upper"), Conv(2, 2, 0, op="avgpool")]))
            up = data.draw(
                st.sampled_from(
                    [Upsample(2), Upsample(2, mode="linear"), Upsample(2, mode="linear", align_corners=True),
                     ConvTranspose(2, 2), ConvTranspose(4, 2, 1), ConvTranspose(3, 2, 1, 1)]
                )
            )
            d = arch.try_add("down", down, x)
            if d is None:
                continue
            d = arch.try_add("inner", conv(3, 1, 1), d) or d
            u = arch.try_add("up", up, d)
            if u is None or arch.sizes[u] != arch.sizes[x]:
                continue
            x = arch.merge(data.draw(st.sampled_from(["add", "concat", "mul"]), label="merge"), x, u)
        else:
            kind = data.draw(st.sampled_from(CHAIN_KINDS), label="kind")
            x = arch.try_add(kind, data.draw(LAYERS[kind](ndim), label=kind), x) or x
    return arch


# -- the checks --------------------------------------------------------------------------


def pick_cells(sizes, rng: np.random.Generator, n_random: int = 4) -> list[tuple[int, ...]]:
    """All corners, a cell on each face, cells next to the faces, random interior cells."""
    ndim = len(sizes)
    cells = {tuple((n - 1) * c for n, c in zip(sizes, bits)) for bits in np.ndindex(*(2,) * ndim)}
    for a in range(ndim):
        for edge in (0, 1, sizes[a] - 2, sizes[a] - 1):
            cell = [int(rng.integers(0, n)) for n in sizes]
            cell[a] = min(max(edge, 0), sizes[a] - 1)
            cells.add(tuple(cell))
    for _ in range(n_random):
        cells.add(tuple(int(rng.integers(0, n)) for n in sizes))
    return sorted(cells)


def check_arch(arch: Arch, data, chain: bool) -> int:
    """Run every check on the output node and one other node; returns the number of cells."""
    graph = arch.build()
    for line in arch.log:
        note(line)
    note(f"input size {list(arch.input_size)}, cropping={arch.cropping}")
    twin = to_torch(graph, arch.input_size)
    analysis = twin.analysis
    names = [node.name for node in graph.nodes]
    probe_nodes = {names[-1]}
    if len(names) > 2:
        probe_nodes.add(names[data.draw(st.integers(1, len(names) - 1), label="probe node")])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="cell seed"))
    event(f"cropping={arch.cropping}")
    checked = boxes = empty = invariant = 0
    for name in sorted(probe_nodes):
        row = analysis.layer(name)
        sizes = row.output_size
        cells = pick_cells(sizes, rng)
        probes = gradient_supports(twin, arch.input_size, name, cells)
        for cell, probe in zip(cells, probes):
            where = f"node {name} cell {cell}"
            support = analysis.support(name, cell)
            for a, (mine, truth) in enumerate(zip(support, probe.sets)):
                assert np.array_equal(mine, truth), f"{where} axis {a}: rfmap support {mine.tolist()} != gradient {truth.tolist()}"
            assert analysis.support_box(name, cell) == probe.box, where
            if chain:
                product = np.zeros(arch.input_size, dtype=bool)
                if all(s.size for s in support):
                    product[np.ix_(*support)] = True
                assert np.array_equal(product, probe.mask), f"{where}: gradient support is not the product of its projections"
            box = analysis.rf_box(name, cell)
            ndim = len(sizes)
            for a, s in enumerate(support if not arch.folding else ()):
                assert s.size == 0 or (box[a] <= s[0] and s[-1] <= box[a + ndim]), f"{where}: support outside rf_box {box}"
            inside = all(0 <= box[a] and box[a + ndim] <= arch.input_size[a] - 1 for a in range(ndim))
            empty += probe.box is None
            if inside and not arch.cropping:
                boxes += 1
                assert probe.box == box, f"{where}: rf_box {box} inside the image != gradient box {probe.box}"
                if row.shift_invariant and all(s.denominator == 1 for s in row.stride):
                    invariant += 1
                    u = tuple(-p + i * int(s) for p, i, s in zip(row.padding, cell, row.stride))
                    v = tuple(ui + r - 1 for ui, r in zip(u, row.rf))
                    assert probe.box == u + v, f"{where}: .layers says u={u}, r={row.rf}; gradient box {probe.box}"
            checked += 1
    event("rf_box == gradient box checked", "yes" if boxes else "no")
    event(".layers (u, r) checked", "yes" if invariant else "no")
    event("some cell sees only padding", "yes" if empty else "no")
    for key, value in (("architectures", 1), ("cells", checked), ("box checks", boxes), ("layers checks", invariant), ("empty", empty)):
        TOTALS[key] = TOTALS.get(key, 0) + value
    return checked


def run_chain(data, ndim: int):
    arch = draw_chain(data, ndim, data.draw(st.integers(1, 8), label="layers"))
    assume(arch.count > 0)
    check_arch(arch, data, chain=True)


def run_dag(data, ndim: int):
    arch = draw_dag(data, ndim)
    assume(any("add" in line or "concat" in line or "mul" in line for line in arch.log))
    check_arch(arch, data, chain=False)


# -- property tests ----------------------------------------------------------------------


@QUICK
@given(st.data())
def test_chains_match_gradient(data):
    run_chain(data, 2)


@QUICK
@given(st.data())
def test_dags_match_gradient(data):
    run_dag(data, 2)


@pytest.mark.parametrize("ndim", [1, 3])
@settings(QUICK, max_examples=15)
@given(data=st.data())
def test_chains_match_gradient_1d_3d(ndim, data):
    run_chain(data, ndim)


@pytest.mark.parametrize("ndim", [1, 3])
@settings(QUICK, max_examples=10)
@given(data=st.data())
def test_dags_match_gradient_1d_3d(ndim, data):
    run_dag(data, ndim)


@pytest.mark.slow
@SLOW_CHAINS
@given(st.data())
def test_chains_match_gradient_slow(data):
    run_chain(data, 2)


@pytest.mark.slow
@SLOW_DAGS
@given(st.data())
def test_dags_match_gradient_slow(data):
    run_dag(data, 2)


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 3])
@settings(QUICK, max_examples=120)
@given(data=st.data())
def test_chains_match_gradient_1d_3d_slow(ndim, data):
    run_chain(data, ndim)


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 3])
@settings(QUICK, max_examples=80)
@given(data=st.data())
def test_dags_match_gradient_1d_3d_slow(ndim, data):
    run_dag(data, ndim)


# -- PyTorch's own size rules --------------------------------------------------------------


@settings(QUICK, max_examples=300)
@given(
    n=st.integers(1, 30),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    p=st.integers(0, 3),
    ceil=st.booleans(),
    op=st.sampled_from(["maxpool", "avgpool"]),
)
def test_pool_output_size_is_pytorchs(n, k, s, d, p, ceil, op):
    """rfmap's pooling output size (floor/ceil_mode rule) is PyTorch's, where PyTorch accepts the layer."""
    if op == "avgpool":
        d = 1
    assume(2 * p <= k)  # what PyTorch's pooling accepts
    x = torch.ones(1, 1, n, dtype=torch.float64)
    try:
        if op == "maxpool":
            torch_n = torch.nn.functional.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1]
        else:
            torch_n = torch.nn.functional.avg_pool1d(x, k, s, p, ceil_mode=ceil).shape[-1]
    except RuntimeError:
        torch_n = 0
    try:
        ours = Conv(k, s, p, d, ceil, op=op).axis_maps((n,))[0].n_out
    except RFMapError:
        ours = 0
    assert ours == torch_n


# -- single-layer and hand-picked cases ----------------------------------------------------


def _probe_all(graph, size):
    twin = to_torch(graph, size)
    a = twin.analysis
    name = graph.nodes[-1].name
    cells = list(np.ndindex(*a.layer(name).output_size))
    for cell, probe in zip(cells, gradient_supports(twin, size, name, cells)):
        assert [s.tolist() for s in a.support(name, cell)] == [s.tolist() for s in probe.sets], (name, cell)
        assert a.support_box(name, cell) == probe.box
    return a


@pytest.mark.parametrize(
    "layers, size",
    [
        ([("c", conv(3, 2, 1)), ("p", maxpool(3, 2, 1, ceil_mode=True))], (17, 22)),
        ([("c", conv(5, 3, (2, 0), 2))], (23, 30)),
        ([("c", Conv(3, 2, "same_lower")), ("u", Upsample(2, mode="bilinear", align_corners=True))], (9, 14)),
        ([("t", ConvTranspose(3, 2, (2, 0), 1)), ("p", Pad(((-2, 3), (1, -1)), "reflect"))], (7, 11)),
        ([("p", Pad(((1, 2), (3, -2)), "circular")), ("c", conv(3))], (8, 9)),
        ([("c", Crop(1, -2, 2)), ("s", PixelShuffle(2)), ("a", AdaptivePool((5, 7)))], (13, 20)),
        ([("u", PixelUnshuffle(3)), ("g", GlobalOp())], (12, 9)),
        ([("c", Conv(3, 1, 4)), ("c2", conv(3, 1, 1))], (5, 6)),  # cells that see only padding
        ([("u", Upsample(2, mode="bicubic")), ("c", conv(3, 2))], (6, 7)),
        # regressions of engine fixes found by the probes
        ([("t", ConvTranspose(2, 2, 0, 0, 3)), ("c", conv(2))], (9,)),  # interleaved taps: boxes not monotone
        ([("u", Upsample(2)), ("t", ConvTranspose(2, 2, 0, 0, 3)), ("c", conv(2)), ("p", maxpool(2))], (8,)),
        ([("p", Pad(((2, -3), (-1, 2)), "circular")), ("c", conv(3))], (8, 9)),  # circular crops first
        ([("c", Conv(3, 1, 0, 2, pad_mode="circular"))], (7, 6)),
        ([("p", Conv(4, 2, 1, 1, True, op="maxpool"))], (1, 3)),  # ceil_mode window longer than the input
        ([("u", Upsample(1.3, mode="linear"))], (3, 5)),  # an axis whose size does not change is copied
        ([("u", Upsample((1.3, 2), mode="linear", align_corners=True)), ("c", conv(2))], (3, 4)),
    ],
)
def test_hand_picked(layers, size):
    a = _probe_all(Graph.chain(layers), size)
    folding = any(folds(layer) for _, layer in layers)
    name = layers[-1][0]
    for cell in np.ndindex(*a.layer(name).output_size):
        box, support = a.rf_box(name, cell), a.support(name, cell)
        for k, s in enumerate(support if not folding else ()):
            assert s.size == 0 or box[k] <= s[0] <= s[-1] <= box[k + len(size)], (cell, box)


def test_shift_invariant_layers_agree_with_probe():
    """``.layers`` (r, S, P) of a shift-invariant chain predicts the gradient box of interior cells."""
    g = Graph.chain([("c1", conv(7, 2, 3)), ("p1", maxpool(3, 2, 1)), ("c2", conv(3, 1, 1, 2)), ("c3", conv(3, 2, (0, 1)))])
    size = (64, 48)
    twin = to_torch(g, size)
    row = twin.analysis.layer("c3")
    assert row.shift_invariant
    cell = tuple(n // 2 for n in row.output_size)
    _, mask = gradient_support(twin, size, "c3", cell)
    ys, xs = np.nonzero(mask)
    u = tuple(-p + i * int(s) for p, i, s in zip(row.padding, cell, row.stride))
    assert (ys.min(), xs.min()) == u
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == row.rf


def test_mul_of_a_padding_only_factor():
    """With ``mul_offset=0`` a factor that sees only padding is 0 and hides the other factor."""
    b = GraphBuilder("m", (6, 6))
    x = b.add("wide", Conv(3, 1, 3), b.input)  # 10 x 10; cell (0, 0) sees only padding
    y = b.add("narrow", Conv(5, 1, 4), b.input)  # 10 x 10; cell (0, 0) sees pixel (0, 0)
    b.merge("mul", "mul", x, y)
    g = b.build()
    plain = to_torch(g, (6, 6), mul_offset=0.0)
    sets, _ = gradient_support(plain, (6, 6), "mul", (0, 0))
    assert all(s.size == 0 for s in sets)
    offset = to_torch(g, (6, 6))
    sets, _ = gradient_support(offset, (6, 6), "mul", (0, 0))
    assert [s.tolist() for s in sets] == [s.tolist() for s in offset.analysis.support("mul", (0, 0))]


@pytest.mark.parametrize(
    "layer, size",
    [
        (conv(5), (3, 3)),  # kernel larger than the input
        (Conv(3, 1, 0, 3), (6, 8)),  # dilated kernel larger than the input
        (ConvTranspose(1, 1, 1), (1, 1)),  # padding larger than the output
        (Pad(-3), (5, 5)),  # crops everything
        (Pad(3, "reflect"), (3, 4)),  # reflect padding as large as the input
        (Conv(3, 1, 3, pad_mode="reflect"), (3, 4)),  # the same, in a convolution
        (Conv(3, 1, 5, pad_mode="circular"), (4, 6)),
        (Crop(5), (3, 8)),  # empty slice
        (Upsample(0.1), (5, 5)),  # scales to nothing
        (PixelUnshuffle(2), (5, 6)),  # not divisible
        (maxpool(4, 4), (3, 3)),
    ],
)
def test_rejected_geometry_fails_in_torch_too(layer, size):
    """Where rfmap raises RFMapError, PyTorch raises or produces an empty map."""
    with pytest.raises(RFMapError):
        layer.axis_maps(size)
    module, _ = layer_module(layer, len(size), [2], 2)
    x = torch.ones((1, 2) + size, dtype=torch.float32)
    try:
        y = module(x)
    except (RuntimeError, ValueError):
        return
    assert min(y.shape[2:]) == 0, y.shape


def test_twin_api():
    g = Graph.chain([("c", conv(3, 1, 1)), ("p", maxpool(2)), ("t", ConvTranspose(2, 2))])
    twin = to_torch(g, (8, 10), channels=3, weights="uniform")
    x = twin.make_input(batch=2)
    out = twin(x)
    assert set(out) == {"input", "c", "p", "t"}
    assert tuple(out["t"].shape) == (2, 3, 8, 10)
    assert torch.equal(twin.node_output(x, "p"), out["p"])
    assert twin.expected_sizes["p"] == (4, 5)
    assert out["c"].dtype == torch.float64
    w = twin.node_modules[0].conv.weight
    assert torch.allclose(w, torch.full_like(w, 1 / 27))
    pos = to_torch(g, (8, 10), seed=3).node_modules[0].conv.weight
    assert ((pos >= 0.5 / 18) & (pos <= 1.5 / 18)).all()
    assert torch.equal(pos, to_torch(g, (8, 10), seed=3).node_modules[0].conv.weight)
    rnd = to_torch(g, (8, 10), weights="random", seed=1).node_modules[0].conv.weight
    assert torch.equal(rnd, to_torch(g, (8, 10), weights="random", seed=1).node_modules[0].conv.weight)
    assert (rnd < 0).any()
    with pytest.raises(RFMapError):
        to_torch(Graph.chain([("c", conv(9))]), (4, 4))


def test_import_rfmap_does_not_import_torch():
    code = "import sys, rfmap; rfmap.analyze([[3, 1, 1]], 8); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
