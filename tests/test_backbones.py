"""Modern backbones as written (tests/backbone_models.py, plain PyTorch): per-cell supports
against the support of the input gradient of the same module, at non-square sizes, through
torch.fx, torch.export and the ONNX export.

Ground truth: ``gradient_support`` of tests/test_torch_frontend.py (float64, positive
weights, summed over channels).  Swin's mask of ``-100`` lets masked pairs through with a
softmax weight of ``exp(-100)``, which float64 still carries: with that mask the gradient is
read above ``1e-20`` of its largest entry (rfmap treats entries ``<= -50`` as masked); with
a ``-inf`` mask the support is exact.  ``exclude_global``'s ground truth is the gradient of
the same model with its global gates held constant (detached).
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import backbone_models as bm  # noqa: E402
from test_torch_frontend import _probe_model  # noqa: E402

import rfmap  # noqa: E402
from rfmap import Analysis, RFMapWarning  # noqa: E402
from rfmap.frontends.torch.capture import trace_module  # noqa: E402

INF = float("-inf")


def gradient_sets(model, size, cells, channels=3, floor=0.0, pick=None):
    """Per cell, per axis: the input indices whose gradient exceeds ``floor`` times the
    largest (0: non-zero)."""
    m = _probe_model(model)
    x = (torch.rand((1, channels) + tuple(size), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
         + 0.5).requires_grad_()
    y = m(x)
    y = pick(y) if pick is not None else y
    out = []
    for cell in cells:
        x.grad = None
        y[(0, slice(None)) + tuple(cell)].sum().backward(retain_graph=True)
        g = x.grad[0].abs().sum(0).numpy()
        g = g > floor * g.max() if floor else g != 0
        out.append([np.flatnonzero(g.any(axis=1)), np.flatnonzero(g.any(axis=0))])
    return out


def analyze(model, size, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        tr = trace_module(model, size, **kw)
    return Analysis(tr.graph, size), tr


def assert_supports(a, cells, want, layer=None):
    layer = a.output.name if layer is None else layer
    for cell, w in zip(cells, want):
        got = a.support(layer, cell)
        for axis, (g, e) in enumerate(zip(got, w)):
            assert np.array_equal(g, e), f"{layer} cell {cell} axis {axis}: rfmap {g.tolist()} vs gradient {e.tolist()}"


def corners(n, extra=()):
    return sorted({(0, 0), (n[0] - 1, n[1] - 1), (n[0] // 2, n[1] // 3), *extra})


# -- 1: space-to-depth written with view/permute ---------------------------------------------


def test_space_to_depth_stem_is_a_pixel_unshuffle():
    model = bm.SpaceToDepthStem().eval()
    a, tr = analyze(model, (64, 64))
    assert tr.unsupported == ()
    assert a.support_box(a.output.name, (0, 0)) == (0, 0, 7, 7)  # the truth
    assert [r.op for r in a.layers[1:]] == ["pixel_unshuffle", "conv"]
    b, _ = analyze(model, (64, 48))
    cells = corners(b.output.output_size)
    assert_supports(b, cells, gradient_sets(model, (64, 48), cells))


def test_depth_to_space_written_with_view_is_a_pixel_shuffle():
    model = bm.DepthToSpaceHead().eval()
    a, tr = analyze(model, (10, 12))
    assert "pixel_shuffle" in [r.op for r in a.layers] and tr.unsupported == ()
    cells = corners(a.output.output_size, [(5, 7)])
    assert_supports(a, cells, gradient_sets(model, (10, 12), cells))


# -- 2: channels-last blocks and patch merging -------------------------------------------------


def test_channels_last_patch_merging_keeps_the_map():
    model = bm.ChannelsLastMerge().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RFMapWarning)  # no op treated as global
        a = rfmap.analyze(model, (128, 136))
    assert a.output.output_size == (16, 17)
    assert a.layer("merge").output_size == (16, 17) and a.layer("merge").stride == (8, 8)
    # the norm over the 2x2 neighbours in the channels: each token sees its block, still on the token grid
    norm = a.layer("merge.norm")
    assert norm.output_size == (32, 34) and norm.rf == (8, 8) and not norm.shift_invariant
    cells = corners((16, 17), [(8, 8)])
    assert_supports(a, cells, gradient_sets(model, (128, 136), cells))


def test_channels_last_output_is_the_tensors_grid():
    """The issue's case: patch merging then a layer norm over the last dim as the output:
    a 16x16 map (not 1x1), cell (8, 8) queryable, its support the gradient's."""
    model = bm.MergeOutput().eval()
    a, tr = analyze(model, (128, 128))
    assert tr.unsupported == () and a.output.output_size == (16, 16)
    cells = [(0, 0), (8, 8), (15, 15)]
    assert_supports(a, cells, gradient_sets(model, (128, 128), cells, pick=lambda y: y.permute(0, 3, 1, 2)))


# -- 3: windowed and shifted-window attention --------------------------------------------------


def test_swin_stage_matches_the_gradient_at_224():
    model = bm.SwinStage((224, 224), dim=8, fill=INF).eval()
    a, tr = analyze(model, (224, 224))
    assert tr.unsupported == ()
    assert a.support_box(a.output.name, (0, 0)) == (0, 0, 27, 27)  # the gradient boxes
    assert a.support_box(a.output.name, (28, 28)) == (84, 84, 139, 139)
    assert a.rf_box(a.output.name, (28, 28)) == (84, 84, 139, 139)
    first, second = a.layer("blocks.0"), a.layer("blocks.1")
    assert first.rf == (28, 28) and not first.shift_invariant and not first.global_context
    assert second.rf == (56, 56) and not second.global_context
    cells = corners((56, 56), [(28, 28), (3, 52), (10, 40)])
    assert_supports(a, cells, gradient_sets(model, (224, 224), cells))


@pytest.mark.parametrize("size,kw", [
    ((200, 232), {}),  # 50 x 58 tokens: padded to whole windows, windows wrap at the real seam
    ((224, 196), {"fused": True}),  # F.scaled_dot_product_attention with the mask in attn_mask
    pytest.param((120, 148), {"merge": True, "depth": 4}, marks=pytest.mark.slow),  # then patch merging of an odd map
])
def test_swin_stages_at_non_square_sizes(size, kw):
    model = bm.SwinStage(size, dim=8, fill=INF, **kw).eval()
    a, tr = analyze(model, size)
    assert tr.unsupported == () and not any("mask" in n for n in tr.graph.notes)
    cells = corners(a.output.output_size, [(1, 7)])
    assert_supports(a, cells, gradient_sets(model, size, cells))


def test_swin_mask_of_minus_100_blocks_its_pairs():
    model = bm.SwinStage((112, 84), dim=8, fill=-100.0).eval()
    a, _ = analyze(model, (112, 84))
    cells = corners(a.output.output_size, [(1, 19)])
    exact = gradient_sets(model, (112, 84), cells)
    read = gradient_sets(model, (112, 84), cells, floor=1e-20)
    assert any(not np.array_equal(e[0], r[0]) or not np.array_equal(e[1], r[1]) for e, r in zip(exact, read))
    assert_supports(a, cells, read)


def test_swin_through_torch_export():
    model = bm.SwinStage((56, 84), dim=8, fill=INF).eval()
    a, tr = analyze(model, (56, 84), method="export")
    assert tr.method == "export" and tr.unsupported == ()
    cells = corners(a.output.output_size)
    assert_supports(a, cells, gradient_sets(model, (56, 84), cells))


def test_grid_attention_sees_strided_positions():
    """MaxViT's block then grid attention: the grid's tokens are strided positions."""
    model = bm.BlockGridStage().eval()
    a, tr = analyze(model, (64, 48))
    assert tr.unsupported == ()
    cells = corners(a.output.output_size, [(5, 7), (17, 3)])
    assert_supports(a, cells, gradient_sets(model, (64, 48), cells))


@pytest.mark.parametrize("patch", [2, 4])
def test_separable_attention_over_patches(patch):
    """MobileViT v2: a softmax over patches and a context broadcast back: strided grids."""
    model = bm.SeparableAttentionBlock(patch=patch).eval()
    a, tr = analyze(model, (12, 16))
    assert tr.unsupported == ()
    cells = corners(a.output.output_size, [(5, 7), (6, 3)])
    want = gradient_sets(model, (12, 16), cells)
    assert len(want[0][0]) == 12 // patch  # one row per patch: a strided grid, not the whole axis
    assert_supports(a, cells, want)


# -- the ONNX export of each pattern -----------------------------------------------------------


def _onnx(model, size):
    onnx = pytest.importorskip("onnx")
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros((1, 3) + size), f, dynamo=False, opset_version=17)
        a = rfmap.analyze(onnx.load_from_string(f.getvalue()), size)
    assert not any("unsupported" in n for n in a.graph.notes), a.graph.notes
    return a


@pytest.mark.parametrize("name,size", [
    ("s2d", (64, 48)), ("d2s", (10, 12)), ("merge", (64, 72)), ("swin", (224, 196)), ("grid", (64, 48)),
    ("separable", (12, 16)), ("dfc", (29, 31)),
    pytest.param("swin_padded", (120, 148), marks=pytest.mark.slow),
])
def test_onnx_exports_match_the_gradient(name, size):
    model = {
        "s2d": lambda: bm.SpaceToDepthStem(),
        "d2s": lambda: bm.DepthToSpaceHead(),
        "merge": lambda: bm.ChannelsLastMerge(),
        "swin": lambda: bm.SwinStage(size, dim=8, fill=INF),
        "grid": lambda: bm.BlockGridStage(),
        "separable": lambda: bm.SeparableAttentionBlock(),
        "dfc": lambda: bm.DFCStack(4),
        "swin_padded": lambda: bm.SwinStage(size, dim=8, fill=INF, merge=True, depth=4),
    }[name]().eval()
    a = _onnx(model, size)
    cells = corners(a.output.output_size)
    assert_supports(a, cells, gradient_sets(model, size, cells))


@pytest.mark.parametrize("gate", ["eca", "cbam", "gc"])
def test_onnx_gates_exclude_global(gate):
    model = bm.GateNet(gate).eval()
    a = _onnx(model, (19, 23))
    local = Analysis(a.graph, (19, 23), exclude_global=True)
    cells = corners(a.output.output_size)
    assert_supports(a, cells, gradient_sets(model, (19, 23), cells))
    assert_supports(local, cells, gradient_sets(_held(model), (19, 23), cells))


def test_onnx_export_of_hook_features():
    model = bm.HookFeatures().eval()
    a = _onnx(model, (20, 22))
    rows = a.output_rows()
    assert [r.output_size for r in rows] == [(20, 22), (5, 6)]
    for k, row in enumerate(rows):
        cells = corners(row.output_size)
        assert_supports(a, cells, gradient_sets(model, (20, 22), cells, pick=lambda y, k=k: y[k]), row.name)


# -- 4: features taken by forward hooks --------------------------------------------------------


def test_hook_features_fall_back_to_torch_export():
    model = bm.HookFeatures().eval()
    a, tr = analyze(model, (20, 22))
    assert tr.method == "export"
    assert any("forward hooks on 'body.1', 'body.4'" in n for n in tr.graph.notes)
    rows = a.output_rows()
    assert [r.output_size for r in rows] == [(20, 22), (5, 6)]
    for k, row in enumerate(rows):
        cells = corners(row.output_size)
        assert_supports(a, cells, gradient_sets(model, (20, 22), cells, pick=lambda y, k=k: y[k]), row.name)


# -- 5: pooled gates resized back to an odd size ----------------------------------------------


def test_dfc_stack_stays_bounded_and_exact():
    model = bm.DFCStack(blocks=10).eval()
    a, _ = analyze(model, (29, 31))
    longest = max(len(f.lo) for s in a._states for fams in s.families for f in fams)
    assert longest <= 31 + 2 * 30  # the map and the virtual cells its padding reads, not 29**10
    cells = corners(a.output.output_size, [(1, 30)])
    assert_supports(a, cells, gradient_sets(model, (29, 31), cells))
    boxes = a.rf_boxes(a.output.name, np.array(cells))
    for (i, j), box in zip(cells, boxes):
        assert tuple(box) == a.rf_box(a.output.name, (i, j))


# -- 6: global gates, excluded correctly -------------------------------------------------------


def _held(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, "hold_gates"):
            mod.hold_gates = True
    return m


@pytest.mark.parametrize("gate", ["eca", "cbam", "gc"])
def test_exclude_global_drops_exactly_the_gates(gate):
    model = bm.GateNet(gate).eval()
    size = (19, 23)
    full, tr = analyze(model, size)
    local = Analysis(tr.graph, size, exclude_global=True)
    assert tr.unsupported == ()
    cells = corners(full.output.output_size, [(9, 11)])
    assert_supports(full, cells, gradient_sets(model, size, cells))
    assert_supports(local, cells, gradient_sets(_held(model), size, cells))
    assert full.output.global_context and local.output.rf < full.output.rf


def test_two_eca_blocks_keep_every_local_path():
    model = bm.ECANet().eval()
    local = rfmap.analyze(model, (20, 24), exclude_global=True)
    assert local.output.rf == (7, 7)
    cells = corners(local.output.output_size, [(10, 10)])
    assert_supports(local, cells, gradient_sets(_held(model), (20, 24), cells))


def test_cli_exclude_global(tmp_path, monkeypatch, capsys):
    import json
    import sys
    from pathlib import Path

    from rfmap.cli import main

    (tmp_path / "gate_factory.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport backbone_models as bm\n\n"
        "def eca():\n    return bm.ECANet().eval()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["summary", "gate_factory:eca", "--input", "20,24", "--exclude-global", "--format", "json"]) == 0
        local = json.loads(capsys.readouterr().out)["layers"][-1]
        assert main(["summary", "gate_factory:eca", "--input", "20,24", "--format", "json"]) == 0
        full = json.loads(capsys.readouterr().out)["layers"][-1]
    finally:
        sys.modules.pop("gate_factory", None)
    assert local["rf"] == [7, 7] and full["rf"] != [7, 7]


class _AutocastAttention(torch.nn.Module):
    """EfficientViT's pattern: attention over all positions computed with autocast disabled
    (torch.export keeps it as a wrap_with_autocast call of a subgraph); a forward hook
    makes rfmap capture it with torch.export."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.out = torch.nn.Conv2d(4, 4, 1)
        self.out.register_forward_hook(lambda m, i, o: None)

    def forward(self, x):
        x = self.conv(x)
        with torch.autocast(device_type="cpu", enabled=False):
            n, c, h, w = x.shape
            t = x.flatten(2)
            t = torch.softmax(t.transpose(1, 2) @ t, dim=-1) @ t.transpose(1, 2)
            x = t.transpose(1, 2).reshape(n, c, h, w)
        return self.out(x)


def test_ops_inside_an_autocast_region_are_followed():
    model = _AutocastAttention().eval()
    a, tr = analyze(model, (9, 10))
    assert tr.method == "export" and not tr.unsupported
    cells = corners(a.output.output_size)
    assert_supports(a, cells, gradient_sets(model, (9, 10), cells))
