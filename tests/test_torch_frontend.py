"""The PyTorch front end on models written like the real families (tests/torch_models.py).

Ground truth, per model: hand-computed or GraphBuilder-built values for the RF columns, and
a local gradient probe: the input pixels whose gradient is non-zero for one output cell
(float64, max pooling swapped for average pooling, all weights positive, summed over
channels) must be exactly ``Analysis.support`` on each axis.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from fractions import Fraction
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_models as tm  # noqa: E402

import rfmap  # noqa: E402
from rfmap import Analysis, GraphBuilder, RFMapError, RFMapWarning  # noqa: E402
from rfmap.core.layers import Conv, ConvTranspose, Merge, Pad, Pointwise, conv, maxpool  # noqa: E402
from rfmap.frontends.factory import from_factory, load_factory  # noqa: E402
from rfmap.frontends.torch import targets as torch_targets  # noqa: E402
from rfmap.frontends.torch.capture import from_module, trace_module  # noqa: E402
from rfmap.frontends.torch.table import module_table  # noqa: E402

# ---------------------------------------------------------------------------------------
# the gradient probe (local: float64, avg for max pooling, positive weights)
# ---------------------------------------------------------------------------------------


def _probe_model(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.named_modules()):
        repl = None
        if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            assert mod.dilation in (1, (1,), (1, 1), (1, 1, 1)), "the probe needs undilated max pooling"
            cls = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}[type(mod)]
            repl = cls(mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode)
        elif isinstance(mod, nn.AdaptiveMaxPool2d):
            repl = nn.AdaptiveAvgPool2d(mod.output_size)
        if repl is not None:
            parent_name, _, child = name.rpartition(".")
            parent = m.get_submodule(parent_name) if parent_name else m
            setattr(parent, child, repl)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.weight.fill_(1.0)
                mod.bias.zero_()
        for name, p in m.named_parameters():
            if p.dim() == 0:
                continue
            fan = max(int(np.prod(p.shape[1:])), 1) if p.dim() > 1 else 1
            if name.endswith("bias"):
                p.fill_(0.01)
            elif not any(name.endswith(s) for s in ("bn1.weight", "bn2.weight", "bn3.weight")):
                p.copy_((torch.rand(p.shape, generator=gen, dtype=p.dtype) * 0.9 + 0.1) / fan)
    return m


@contextmanager
def _avg_for_max():
    """F.max_pool2d -> F.avg_pool2d inside functional models."""

    def avg(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode)

    with mock.patch.object(F, "max_pool2d", avg):
        yield


def gradient_support(model, input_shape, cells, module_path=None, pick=lambda y: y):
    """Per cell, per axis: the input indices with a non-zero gradient (summed over channels)."""
    m = _probe_model(model)
    captured = {}
    if module_path is not None:
        m.get_submodule(module_path).register_forward_hook(lambda mod, i, o: captured.__setitem__("y", o))
    x = (torch.rand(input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5).requires_grad_()
    with _avg_for_max():
        y = m(x)
    y = captured["y"] if module_path is not None else pick(y)
    out = []
    for cell in cells:
        x.grad = None
        y[(0, slice(None)) + tuple(cell)].sum().backward(retain_graph=True)
        g = x.grad[0].abs().sum(0).numpy()
        sets = []
        for axis in range(g.ndim):
            other = tuple(a for a in range(g.ndim) if a != axis)
            sets.append(np.flatnonzero(g.sum(axis=other) if other else g))
        out.append(sets)
    return out


def assert_support(analysis, node, cells, grads):
    for cell, want in zip(cells, grads):
        got = analysis.support(node, cell)
        for axis, (g, w) in enumerate(zip(got, want)):
            assert np.array_equal(g, w), f"{node} cell {cell} axis {axis}: rfmap {g.tolist()} vs gradient {w.tolist()}"


def block_node(model, size, path):
    """The node a block's output is (the module table's row at that depth)."""
    depth = len(path.split("."))
    return {r.name: r.node for r in module_table(model, size, depth=depth)}[path]


def row(analysis, name):
    r = analysis.layer(name)
    return r.rf, tuple(int(s) if Fraction(s).denominator == 1 else s for s in r.stride), r.padding


# ---------------------------------------------------------------------------------------
# ResNets (torchvision layout)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50():
    return tm.resnet50().eval()


def test_resnet50_stage_receptive_fields(resnet50):
    a = rfmap.analyze(resnet50, (224, 224))
    stages = {"layer1.2.relu_2": (35, 4, 17), "layer2.3.relu_2": (91, 8, 45), "layer3.5.relu_2": (267, 16, 133),
              "layer4.2.relu_2": (427, 32, 213)}
    for name, (r, s, p) in stages.items():
        assert row(a, name) == ((r, r), (s, s), (p, p)), name
    assert a.layer("layer4.2.relu_2").output_size == (7, 7)
    assert a.layer("layer4.2.relu_2").aligned
    assert not a.messages
    assert a.output.name == "fc" and a.output.global_context


def test_resnet50_node_names_are_module_paths(resnet50):
    g = from_module(resnet50, 224)
    names = [n.name for n in g.nodes]
    assert names[:6] == ["input", "conv1", "bn1", "relu", "maxpool", "layer1.0.conv1"]
    for name in ("layer3.5.conv2", "layer1.0.downsample.0", "layer1.0.downsample.1", "layer4.2.relu_2", "add_15", "fc"):
        assert name in names
    assert "layer1.0.relu" in names and "layer1.0.relu_1" in names
    add = g.node("add")
    assert isinstance(add.layer, Merge) and set(add.inputs) == {"layer1.0.bn3", "layer1.0.downsample.1"}


def test_resnet18_and_34_layer4():
    for factory, want in ((tm.resnet18, 435), (tm.resnet34, 899)):
        a = rfmap.analyze(factory().eval(), 224)
        final = [r for r in a.layers if r.name.startswith("layer4.") and r.op == "ReLU"][-1]
        assert final.rf == (want, want) and final.stride == (32, 32)


def test_resnet50_matches_graphbuilder(resnet50):
    """The same net built by hand with the engine's builder."""
    b = GraphBuilder("r50", (224, 224))
    x = b.add("conv1", conv(7, 2, 3), b.input)
    x = b.add("maxpool", maxpool(3, 2, 1), x)
    for stage, (blocks, stride) in enumerate(((3, 1), (4, 2), (6, 2), (3, 2)), start=1):
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = b.add(f"l{stage}.{i}.c1", conv(1), x)
            y = b.add(f"l{stage}.{i}.c2", conv(3, s, 1), y)
            y = b.add(f"l{stage}.{i}.c3", conv(1), y)
            sc = b.add(f"l{stage}.{i}.ds", conv(1, s), x) if i == 0 else x
            x = b.add(f"l{stage}.{i}.add", Merge("add"), y, sc)
    want = Analysis(b.build(), (224, 224))
    got = rfmap.analyze(resnet50, 224)
    for stage, blocks in ((1, 3), (2, 4), (3, 6), (4, 3)):
        w = want.layer(f"l{stage}.{blocks - 1}.add")
        g = got.layer(f"layer{stage}.{blocks - 1}.relu_2")
        assert (g.rf, g.stride, g.padding, g.center0) == (w.rf, w.stride, w.padding, w.center0)


def test_resnet50_gradient_support():
    model = tm.resnet50(width=16, num_classes=10).eval()
    size = (64, 56)
    a = Analysis(from_module(model, size), size)
    cells = [(0, 0), (1, 1), (1, 0)]
    grads = gradient_support(model, (1, 3) + size, cells, module_path="layer4")
    assert_support(a, "layer4.2.relu_2", cells, grads)
    cells = [(0, 0), (3, 5), (7, 6)]
    grads = gradient_support(model, (1, 3) + size, cells, module_path="layer2")
    assert_support(a, "layer2.3.relu_2", cells, grads)


def test_basic_block_resnet18_gradient_support():
    model = tm.resnet18(width=16, num_classes=10).eval()
    size = (48, 40)
    a = Analysis(from_module(model, size), size)
    cells = [(0, 0), (2, 1), (5, 4)]
    grads = gradient_support(model, (1, 3) + size, cells, module_path="layer2")
    assert_support(a, "layer2.1.relu_1", cells, grads)


def test_input_size_independence(resnet50):
    small = rfmap.analyze(resnet50, 224)
    large = rfmap.analyze(resnet50, 4096)
    for name in ("layer1.2.relu_2", "layer4.2.relu_2", "maxpool"):
        s, l_ = small.layer(name), large.layer(name)
        assert (s.rf, s.stride, s.padding, s.center0) == (l_.rf, l_.stride, l_.padding, l_.center0)
    assert large.layer("layer4.2.relu_2").output_size == (128, 128)
    g_small, g_large = from_module(resnet50, 224), from_module(resnet50, 4096)
    assert [n.name for n in g_small.nodes] == [n.name for n in g_large.nodes]
    # nothing ran on real data: shapes came from the meta device
    assert not any("zeros of the real input shape" in note for note in g_large.notes)


# ---------------------------------------------------------------------------------------
# branched families
# ---------------------------------------------------------------------------------------


def test_inception_concat_matches_graphbuilder():
    model = tm.InceptionNet().eval()
    size = (75, 75)
    got = rfmap.analyze(model, size)
    b = GraphBuilder("inc", size)
    x = b.add("stem", conv(3, 2), b.input)
    x = b.add("pool", maxpool(3, 2), x)
    for blk in ("m1", "m2"):
        br1 = b.add(f"{blk}.b1", conv(1), x)
        br5 = b.add(f"{blk}.b5", conv(5, 1, 2), b.add(f"{blk}.b5_1", conv(1), x))
        br3 = b.add(f"{blk}.b3_1", conv(1), x)
        br3 = b.add(f"{blk}.b3", conv(3, 1, 1), b.add(f"{blk}.b3_2", conv(3, 1, 1), br3))
        bp = b.add(f"{blk}.bp", conv(1), b.add(f"{blk}.pool", Conv(3, 1, 1, op="avgpool"), x))
        x = b.add(f"{blk}.cat", Merge("concat"), br1, br5, br3, bp)
    want = Analysis(b.build(), size)
    assert (got.output.rf, got.output.stride, got.output.padding) == (want.output.rf, want.output.stride, want.output.padding)
    assert got.output.rf == (39, 39) and got.output.stride == (4, 4)
    cells = [(0, 0), (4, 7), (17, 17)]
    assert_support(got, got.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_mobilenetv2_inverted_residual():
    model = tm.MobileNetV2Mini().eval()
    size = (64, 48)
    a = rfmap.analyze(model, size)
    node = block_node(model, size, "features.5")  # the residual block's output: x + conv(x)
    assert a.graph.node(node).op == "add"
    last = a.layer(node)
    # stem 3x3 s2, dw 3x3 (s1), dw s2, dw s1, dw s2, dw s1
    assert last.stride == (8, 8)
    assert last.rf == (3 + 2 * 2 + 2 * 2 + 2 * 4 + 2 * 4 + 2 * 8,) * 2
    cells = [(0, 0), (3, 2), (7, 5)]
    assert_support(a, node, cells, gradient_support(model, (1, 3) + size, cells, module_path="features"))
    assert a.output.global_context


def test_densenet_concat():
    model = tm.DenseNetMini().eval()
    size = (64, 64)
    a = rfmap.analyze(model, size)
    out = a.output
    # conv0 7/2 p3, pool 3/2 p1, block1: 3 layers of 3x3 (at stride 4), transition avgpool 2/2, block2: 2 layers at stride 8
    assert out.stride == (8, 8)
    assert out.rf == (7 + 2 * 2 + 3 * 2 * 4 + 1 * 4 + 2 * 2 * 8,) * 2
    cells = [(0, 0), (3, 4), (7, 7)]
    assert_support(a, out.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_unet_transposed_convs_and_skip_concat():
    model = tm.UNet().eval()
    size = (45, 52)  # odd sizes: the decoder pads the upsampled map to the skip's size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)  # U-Net's skips are genuinely misaligned
        a = rfmap.analyze(model, size)
    g = a.graph
    assert isinstance(g.node("up1.up").layer, ConvTranspose)
    assert isinstance(g.node("pad").layer, Pad) or g.node("pad").op == "pointwise"
    assert a.output.output_size == size
    assert a.layer("up1.up").stride == (4, 4)
    cells = [(0, 0), (10, 17), (44, 51), (23, 30)]
    assert_support(a, "outc", cells, gradient_support(model, (1, 3) + size, cells))


def test_fpn_nearest_upsampling_to_lateral_size():
    model = tm.FPN().eval()
    a = rfmap.analyze(model, (64, 48))
    tr = trace_module(model, (64, 48))
    assert tr.graph.output.name == "layer_blocks.0"  # the first output (p3)
    assert a.layer("interpolate").op == "upsample"
    assert a.layer("layer_blocks.2").stride == (16, 16)
    assert a.output.stride == (4, 4) and not a.output.shift_invariant  # nearest x2 pairs cells up
    # sizes that do not divide: nearest upsampling from 5 to 9 rows has ratio 5/9
    size = (70, 58)
    with pytest.warns(RFMapWarning, match="misaligned"):  # genuinely: strides 4 and 40/9 meet
        a = rfmap.analyze(model, size)
    assert a.layer("interpolate_1").stride[0] == Fraction(8 * 5, 9)
    cells = [(0, 0), (8, 7), (17, 14)]
    assert_support(a, "layer_blocks.0", cells, gradient_support(model, (1, 3) + size, cells, pick=lambda y: y["p3"]))


def test_deeplab_aspp_dilation():
    model = tm.DeepLabMini(pooling=False).eval()
    size = (65, 65)
    a = rfmap.analyze(model, size)
    aspp = a.layer("aspp.project.2")
    # backbone r=7 at stride 4; widest branch 3x3 dilation 6 at stride 4: +2*6*4
    assert aspp.rf == (7 + 2 * 6 * 4,) * 2 and aspp.stride == (4, 4)
    assert not a.output.global_context
    cells = [(0, 0), (30, 40), (64, 64)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_deeplab_image_pooling_is_global():
    model = tm.DeepLabMini(pooling=True).eval()
    a = rfmap.analyze(model, (65, 65))
    assert a.output.global_context
    local = rfmap.analyze(model, (65, 65), exclude_global=True)
    assert local.layer("aspp.project.2").rf == (7 + 2 * 6 * 4,) * 2


def test_squeeze_excitation_is_global_and_local_without_it():
    model = tm.SENet().eval()
    size = (32, 32)
    a = rfmap.analyze(model, size)
    se = a.layer("mul")
    assert se.global_context
    assert a.layer("se.avg_pool").global_context
    local = rfmap.analyze(model, size, exclude_global=True)
    assert local.output.rf == (3 + 2 * 2,) * 2
    cells = [(0, 0), (5, 9)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_functional_model_by_hand():
    model = tm.FunctionalNet().eval()
    size = (40, 36)
    a = rfmap.analyze(model, size)
    names = [r.name for r in a.layers]
    assert names[:3] == ["input", "conv2d", "relu"]
    assert a.layer("conv2d").rf == (5, 5)
    assert a.layer("conv2d_1").rf == (15, 15) and a.layer("conv2d_1").padding == (6, 6)
    # crop rows 1:-1, every other column: H padding 6 - 4, W stride 8
    assert row(a, "getitem") == ((15, 15), (4, 8), (2, 6))
    assert row(a, "conv2d_2") == ((23, 31), (4, 8), (6, 14))
    assert a.output.output_size == (16, 10) and a.output.stride == (2, 4)
    cells = [(0, 0), (7, 4), (15, 9)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


# ---------------------------------------------------------------------------------------
# layouts: permute, channel shuffle, pixel shuffle, attention, group norm, 1-D, 3-D
# ---------------------------------------------------------------------------------------


def test_convnext_permute_and_channel_layernorm_stay_local():
    model = tm.ConvNeXtMini().eval()
    size = (32, 40)
    a = rfmap.analyze(model, size)
    assert not a.output.global_context
    assert a.output.rf == (4 + 6 * 4 * 2,) * 2 and a.output.stride == (4, 4)
    assert a.layer("stages.0.norm").op == "LayerNorm"
    cells = [(0, 0), (3, 5), (7, 9)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_shufflenet_chunk_and_channel_shuffle():
    model = tm.ShuffleNetMini().eval()
    size = (32, 32)
    a = rfmap.analyze(model, size)
    assert a.output.rf == (3 + 2 * 2 + 2 * 4 * 2,) * 2
    cells = [(0, 0), (4, 6)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_pixel_shuffle_and_unshuffle():
    model = tm.SubPixelNet().eval()
    size = (16, 20)
    a = rfmap.analyze(model, size)
    assert a.output.output_size == (32, 40)
    assert a.output.stride == (Fraction(1, 2), Fraction(1, 2))
    cells = [(0, 0), (5, 6), (31, 39)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_attention_over_positions_is_global():
    model = tm.AttentionNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        a = rfmap.analyze(model, (16, 16))
    assert a.output.global_context
    assert a.layer("attn").global_context


def test_group_norm_is_global_context():
    model = tm.GroupNormNet().eval()
    a = rfmap.analyze(model, 16)
    assert a.output.global_context and a.output.rf == (19, 19)
    local = rfmap.analyze(model, 16, exclude_global=True)
    assert local.output.rf == (5, 5)


def test_conv1d_and_conv3d():
    a = rfmap.analyze(tm.Conv1dNet().eval(), (100,))
    # 9/4 p4, 3 d2 at 4 -> +16, pool 2 at 4 -> +4, 3 at 8 -> +16
    assert a.output.rf == (9 + 16 + 4 + 16,) and a.output.stride == (8,)
    cells = [(0,), (5,), (11,)]
    assert_support(a, a.output.name, cells, gradient_support(tm.Conv1dNet().eval(), (1, 1, 100), cells))
    m3 = tm.Conv3dNet().eval()
    a3 = rfmap.analyze(m3, (8, 16, 12))
    assert a3.output.rf == (5, 5 + 2 + 8, 5 + 2 + 8) and a3.output.stride == (1, 4, 4)
    cells = [(0, 0, 0), (4, 2, 1)]
    assert_support(a3, a3.output.name, cells, gradient_support(m3, (1, 2, 8, 16, 12), cells))


@pytest.mark.parametrize("factory,size", [
    (tm.InceptionNet, (47, 51)), (tm.UNet, (29, 34)), (tm.FPN, (70, 58)), (tm.SENet, 32), (tm.FunctionalNet, (40, 36)),
    (tm.ConvNeXtMini, 32), (tm.DeepLabMini, 33), (tm.ShuffleNetMini, 32),
])
def test_export_path_agrees_with_fx(factory, size):
    model = factory().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        fx = trace_module(model, size, method="fx")
        ex = trace_module(model, size, method="export")
        a, b = Analysis(fx.graph, fx.graph.input_size), Analysis(ex.graph, ex.graph.input_size)
    assert ex.method == "export"
    for r in b.layers:
        if r.name in a._index and not r.name.startswith("getitem"):  # ATen slices one dim at a time
            g = a.layer(r.name)
            assert (g.rf, g.stride, g.padding, g.center0, g.output_size) == (r.rf, r.stride, r.padding, r.center0, r.output_size), r.name
    assert (a.output.name, a.output.rf, a.output.stride) == (b.output.name, b.output.rf, b.output.stride)
    shared = [r.name for r in b.layers if r.name in a._index]
    assert len(shared) >= 0.8 * len(a.layers)


def test_torch_export_fallback_for_untraceable_model():
    model = tm.ShapeBranchNet().eval()
    with pytest.raises(RFMapError, match="torch.fx"):
        trace_module(model, 13, method="fx")
    tr = trace_module(model, 13)
    assert tr.method == "export"
    assert any("torch.fx could not trace" in n for n in tr.graph.notes)
    a = Analysis(tr.graph, (13, 13))
    assert [r.name for r in a.layers] == ["input", "conv1", "pad", "conv2"]
    assert a.output.output_size == (7, 8)
    cells = [(0, 0), (6, 7), (3, 6)]
    assert_support(a, "conv2", cells, gradient_support(model, (1, 3, 13, 13), cells))
    # an even map takes the other branch: the graph is read at the size given
    assert [n.name for n in from_module(model, 16).nodes] == ["input", "conv1", "conv2"]


# ---------------------------------------------------------------------------------------
# unsupported ops, strict mode, registering rules
# ---------------------------------------------------------------------------------------


@torch.fx.wrap
def my_blur(x):
    return x * 0.5 + 0.25


class BlurBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return my_blur(self.conv(x))


class CustomOpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(BlurBlock(), BlurBlock())
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(torch.flip(self.blocks(x), dims=[1]))


def test_unsupported_op_is_reported_and_treated_as_pointwise():
    with pytest.warns(RFMapWarning, match="without an rfmap rule") as record:
        tr = trace_module(CustomOpNet(), 16)
    assert len([w for w in record if issubclass(w.category, RFMapWarning)]) == 1
    assert any("my_blur" in u and "blocks.0" in u for u in tr.unsupported)
    assert any("my_blur" in n for n in tr.graph.notes)
    assert any("flip" in u for u in tr.unsupported)
    a = Analysis(tr.graph, 16)
    assert a.output.rf == (5, 5)


def test_front_end_warnings_name_the_callers_line(tmp_path):
    # however deep in rfmap the cause is found, the warning points at the user's call
    import inspect

    import rfmap

    with pytest.warns(RFMapWarning, match="without an rfmap rule") as record:
        line = inspect.currentframe().f_lineno + 1
        rfmap.analyze(CustomOpNet(), 16)
    assert [(w.filename, w.lineno) for w in record if "without an rfmap rule" in str(w.message)] == [(__file__, line)]
    path = tmp_path / "flat.onnx"
    torch.onnx.export(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(2)), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False)
    with pytest.warns(RFMapWarning, match="flattens spatial axes") as record:
        line = inspect.currentframe().f_lineno + 1
        rfmap.analyze(str(path))
    assert [(w.filename, w.lineno) for w in record if "flattens" in str(w.message)] == [(__file__, line)]


def test_strict_raises_naming_the_module_path():
    with pytest.raises(RFMapError, match=r"my_blur.*blocks\.0"):
        from_module(CustomOpNet(), 16, strict=True)


class Blur(nn.Module):
    """A user module with a geometry rfmap cannot guess: a 3x3 stride-2 blur."""

    def forward(self, x):
        c = x.shape[1]
        k = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device) / 9
        return F.conv2d(x, k, stride=2, padding=1, groups=c)


class BlurNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.blur = Blur()

    def forward(self, x):
        return self.blur(self.conv(x))


def test_register_torch_op_for_a_module_class():
    torch_targets.register_torch_op(Blur, lambda call: conv(3, 2, 1))
    try:
        g = from_module(BlurNet(), 32)
        assert [n.name for n in g.nodes] == ["input", "conv", "blur"]  # kept whole: a leaf
        a = Analysis(g, 32)
        assert a.output.rf == (5, 5) and a.output.stride == (2, 2)
    finally:
        torch_targets.unregister_torch_op(Blur)


def test_register_string_kinds_and_decorator():
    @torch_targets.register_torch_op(my_blur)
    def blur_rule(call):
        return Pointwise(op="blur")

    try:
        with pytest.warns(RFMapWarning, match="flip"):
            tr = trace_module(CustomOpNet(), 16)
        assert not any("my_blur" in u for u in tr.unsupported)
        assert tr.graph.node("my_blur").op == "blur"
        torch_targets.register_torch_op(my_blur, "global")
        torch_targets.register_torch_op(torch.flip, "pointwise")
        a = Analysis(from_module(CustomOpNet(), 16, strict=True), 16)
        assert a.output.global_context
    finally:
        torch_targets.unregister_torch_op(my_blur)
        torch_targets.unregister_torch_op(torch.flip)
    assert rfmap.register_torch_op(my_blur, "pointwise") == "pointwise"
    torch_targets.unregister_torch_op(my_blur)


def test_wrong_rule_is_caught_by_the_size_check():
    torch_targets.register_torch_op(my_blur, lambda call: conv(3, 2, 1))  # claims a stride the op does not have
    try:
        with pytest.raises(RFMapError, match="PyTorch's output has shape"):
            from_module(CustomOpNet(), 16)
    finally:
        torch_targets.unregister_torch_op(my_blur)


def test_ops_without_geometry_and_size_queries():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.drop = nn.Dropout2d(0.1)

        def forward(self, x):
            n, c, h, w = x.size()
            y = self.drop(torch.sigmoid(self.conv(x))).contiguous().float()
            y = y.view(n, 4, h - 2, w - 2) * x.shape[-1]
            return y.mean(dim=1, keepdim=True)

    a = rfmap.analyze(Net(), 12)
    assert a.output.rf == (3, 3) and not a.output.global_context


def test_flatten_linear_and_mean_are_global():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2)
            self.fc = nn.Linear(4 * 7 * 7, 10)

        def forward(self, x):
            y = self.conv(x)
            return self.fc(y.flatten(1)) + y.mean(dim=(2, 3)).sum(1, keepdim=True)

    a = rfmap.analyze(Net(), 16)
    assert a.layer("flatten").op == "flatten" and a.layer("flatten").global_context
    assert a.layer("mean").global_context
    assert a.output.global_context


def test_interpolate_size_and_slicing_are_read_at_the_input_size():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.down(x)
            up = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            h = x.shape[2] // 2
            return torch.cat([up[:, :, :h], x[:, :1, :h]], dim=1)

    for size in ((20, 30), (33, 17)):
        with pytest.warns(RFMapWarning, match="misaligned"):  # the upsampled path and x are
            a = rfmap.analyze(Net(), size)
        assert a.output.output_size == (size[0] // 2, size[1])
        cells = [(0, 0), (size[0] // 2 - 1, size[1] - 1), (3, 5)]
        assert_support(a, a.output.name, cells, gradient_support(Net(), (1, 3) + size, cells))


# ---------------------------------------------------------------------------------------
# module table, factories, input handling
# ---------------------------------------------------------------------------------------


def test_module_table_rows_and_depth(resnet50):
    rows = module_table(resnet50, (224, 224))
    by_name = {r.name: r for r in rows}
    assert by_name["layer3.5.conv2"].output_shape == (1, 256, 14, 14)
    assert by_name["layer3.5.conv2"].params == 256 * 256 * 9
    assert by_name["conv1"].rf == (7, 7)
    assert rows[-1].name == "fc" and rows[-1].output_shape == (1, 1000)
    # the shared relu is counted once
    assert by_name["layer1.0.relu"].params == 0
    blocks = module_table(resnet50, (224, 224), depth=1)
    assert [r.name for r in blocks] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                        "avgpool", "fc"]
    l4 = blocks[7]
    assert l4.rf == (427, 427) and l4.stride == (32, 32) and l4.padding == (213, 213)
    assert l4.output_shape == (1, 2048, 7, 7) and l4.node == "layer4.2.relu_2"
    assert l4.params == sum(p.numel() for p in resnet50.layer4.parameters())
    assert blocks[-1].name == "fc"
    d2 = module_table(resnet50, (224, 224), depth=2)
    assert "layer3.5" in [r.name for r in d2]
    assert {r.name for r in d2 if r.name.startswith("layer1.")} == {"layer1.0", "layer1.1", "layer1.2"}
    assert sum(r.params for r in blocks) == sum(p.numel() for p in resnet50.parameters())
    assert blocks[7].to_dict()["rf"] == [427, 427]


def test_module_table_functional_rows():
    rows = module_table(tm.FunctionalNet(), (40, 36))
    assert rows[0].name == "conv2d" and rows[0].params == 6 * 3 * 5 * 5
    assert rows[-1].name == "interpolate"


def test_input_size_forms_and_channels():
    m = tm.Conv1dNet()
    assert from_module(m, 50).input_size == (50,)
    assert from_module(tm.SENet()).input_size == (224, 224)
    with pytest.raises(RFMapError, match="3-d|axes"):
        from_module(tm.Conv3dNet(), (16, 16))
    tr = trace_module(tm.SubPixelNet(), 16)
    assert tr.input_shape == (1, 3, 16, 16)  # 12 channels after the unshuffle
    with pytest.raises(RFMapError, match="Module"):
        from_module([1, 2, 3])


def test_two_input_model_is_refused_clearly():
    class Two(nn.Module):
        def forward(self, x, y):
            return x + y

    with pytest.raises(RFMapError, match="more than one input"):
        from_module(Two(), 8)


def test_from_factory_and_torchvision_message():
    g = from_factory("torch_models:resnet18", 64)
    assert g.node("layer4.1.conv2") is not None
    assert isinstance(load_factory("torch_models:SENet"), nn.Module)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(RFMapError, match="torchvision is not installed"):
            from_factory("torchvision:resnet50")
    for bad in ("nonexistent_pkg_xyz:f", "torch_models:nope", "torch_models", "torch_models:conv3x3"):
        with pytest.raises(RFMapError):
            from_factory(bad)


def test_rule_table_covers_the_usual_ops():
    for target in (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Upsample,
                   nn.PixelShuffle, nn.PixelUnshuffle, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Linear, nn.Flatten,
                   F.conv2d, F.conv1d, F.conv3d, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.interpolate,
                   F.pad, torch.cat, torch.add, torch.flatten, torch.sigmoid, "view", "reshape", "flatten", "mean",
                   "size", torch.ops.aten.conv2d.default, torch.ops.aten.add.Tensor):
        if target == "size":
            continue
        assert torch_targets.lookup(target) is not None, target
    assert torch_targets.lookup(torch.flip) is None


# ---------------------------------------------------------------------------------------
# a sweep over single ops and idioms, each checked against the gradient probe
# ---------------------------------------------------------------------------------------


class Op(nn.Module):
    """A conv stem (so that every input pixel has a channel mix), then ``fn``."""

    def __init__(self, fn, **modules):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.fn = fn
        for k, v in modules.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, self.stem(x))


SWEEP = {
    "reflect_pad_module": lambda: Op(lambda s, x: s.p(x), p=nn.ReflectionPad2d((2, 1, 3, 0))),
    "replicate_pad_fn": lambda: Op(lambda s, x: F.pad(x, (0, 2, 1, 1), mode="replicate")),
    "circular_pad_fn": lambda: Op(lambda s, x: F.pad(x, (2, 2, 1, 1), mode="circular")),
    "negative_pad_crops": lambda: Op(lambda s, x: F.pad(x, (-2, 1, 0, -3))),
    "conv_padding_modes": lambda: Op(lambda s, x: s.b(s.a(x)), a=nn.Conv2d(4, 4, 3, padding=2, padding_mode="reflect"),
                                     b=nn.Conv2d(4, 4, (3, 5), padding=(1, 2), padding_mode="circular")),
    "conv_same_even_kernel": lambda: Op(lambda s, x: s.a(x), a=nn.Conv2d(4, 4, 4, padding="same", dilation=2)),
    "maxpool_ceil": lambda: Op(lambda s, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    "avgpool_ceil": lambda: Op(lambda s, x: s.p(x), p=nn.AvgPool2d(3, 2, ceil_mode=True)),
    "adaptive_7": lambda: Op(lambda s, x: s.p(x), p=nn.AdaptiveAvgPool2d((5, 3))),
    "adaptive_max_none": lambda: Op(lambda s, x: s.p(x), p=nn.AdaptiveMaxPool2d((None, 3))),
    "upsample_bilinear": lambda: Op(lambda s, x: s.u(x), u=nn.Upsample(scale_factor=2, mode="bilinear")),
    "upsample_bilinear_ac": lambda: Op(lambda s, x: s.u(x), u=nn.UpsamplingBilinear2d(scale_factor=3)),
    "interpolate_bicubic": lambda: Op(lambda s, x: F.interpolate(x, scale_factor=1.5, mode="bicubic")),
    "interpolate_area": lambda: Op(lambda s, x: F.interpolate(x, size=(5, 4), mode="area")),
    "interpolate_nearest_exact": lambda: Op(lambda s, x: F.interpolate(x, size=(7, 29), mode="nearest-exact")),
    "conv_transpose_output_size": lambda: Op(lambda s, x: s.t(x, output_size=(2 * x.shape[2], 2 * x.shape[3])),
                                             t=nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)),
    "conv_transpose_fn": lambda: Op(lambda s, x: F.conv_transpose2d(x, s.w, stride=3, padding=1, dilation=2),
                                    w=nn.Parameter(torch.ones(4, 2, 3, 3))),
    "pixel_shuffle_fn": lambda: Op(lambda s, x: F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2)),
    "getitem_int_and_ellipsis": lambda: Op(lambda s, x: x[..., 1:-2:2, 3][..., None]),
    "select_narrow": lambda: Op(lambda s, x: x.narrow(3, 2, 5).select(2, 4).unsqueeze(2)),
    "chunk_spatial": lambda: Op(lambda s, x: torch.cat(x[..., 1:].chunk(2, dim=3)[::-1], dim=1)),
    "split_spatial": lambda: Op(lambda s, x: x.split([8, 9], dim=2)[1] * 2),
    "stack_where": lambda: Op(lambda s, x: torch.stack([x, torch.where(x > 1e9, x, s.c(x))], 2).sum(2), c=nn.Conv2d(4, 4, 5, padding=2)),
    "roll": lambda: Op(lambda s, x: torch.roll(x, shifts=(2, -3), dims=(2, 3))),
    "roll_method": lambda: Op(lambda s, x: x.roll(5, 3)),
    "repeat_tile": lambda: Op(lambda s, x: x.repeat(1, 1, 2, 3)),
    "unfold_linear_fold": lambda: Op(
        lambda s, x: F.fold(s.lin(F.unfold(x, 3, padding=1, stride=2).transpose(1, 2)).transpose(1, 2),
                            (x.shape[2], x.shape[3]), 3, padding=1, stride=2), lin=nn.Linear(36, 36)),
    "unfold_conv": lambda: Op(lambda s, x: F.unfold(x, 2, stride=2).view(1, 16, x.shape[2] // 2, x.shape[3] // 2)),
    "flatten_tokens_back": lambda: Op(lambda s, x: s.lin(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(1, 6, *x.shape[2:]),
                                      lin=nn.Linear(4, 6)),
    "channels_last_linear": lambda: Op(lambda s, x: s.lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), lin=nn.Linear(4, 4)),
    "channel_view_shuffle": lambda: Op(lambda s, x: x.view(1, 2, 2, *x.shape[2:]).transpose(1, 2).reshape(1, 4, *x.shape[2:])),
    "se_functional": lambda: Op(lambda s, x: x * torch.sigmoid(x.mean((2, 3), keepdim=True))),
    "reduce_one_axis": lambda: Op(lambda s, x: x + x.sum(dim=3, keepdim=True) + x.mean(2).unsqueeze(2)),
    "einsum_channels": lambda: Op(lambda s, x: torch.einsum("bchw,dc->bdhw", x, s.w), w=nn.Parameter(torch.ones(5, 4))),
    "matmul_channels": lambda: Op(lambda s, x: (x.permute(0, 2, 3, 1) @ s.w).permute(0, 3, 1, 2), w=nn.Parameter(torch.ones(4, 4))),
    "glu_channel": lambda: Op(lambda s, x: F.glu(x, dim=1)),
    "glu_width": lambda: Op(lambda s, x: F.glu(x[..., :-1], dim=3)),
    "expand_global": lambda: Op(lambda s, x: x.mean((2, 3))[:, :, None, None].expand(-1, -1, *x.shape[2:]) + x),
    "dilated_maxpool_free": lambda: Op(lambda s, x: s.c(x), c=nn.Conv2d(4, 4, 3, stride=2, dilation=3, padding=2)),
    "lp_pool": lambda: Op(lambda s, x: s.p(x), p=nn.LPPool2d(2, 3, stride=2)),
    "zeros_like_add": lambda: Op(lambda s, x: x + torch.zeros_like(x)),
    "inplace_method": lambda: Op(lambda s, x: s.keep(x)),
}


def _keep(s, x):
    z = x * 1.0
    z.add_(s.c(x))  # result unused: later uses of z see the merge
    return z


SWEEP["inplace_method"] = lambda: Op(_keep, c=nn.Conv2d(4, 4, 5, stride=1, padding=2))
Op.keep = lambda self, x: _keep(self, x)


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_op_sweep_matches_gradient_support(name):
    model = SWEEP[name]().eval()
    size = (17, 23) if name not in ("pixel_shuffle_fn", "unfold_conv") else (16, 22)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        tr = trace_module(model, size, strict=True)
        a = Analysis(tr.graph, size)
    out = a.output
    n = out.output_size
    cells = sorted({(0, 0), (n[0] - 1, n[1] - 1), (n[0] // 2, n[1] // 3), (min(1, n[0] - 1), n[1] - 1)})
    assert_support(a, out.name, cells, gradient_support(model, (1, 3) + size, cells))


def _manual_attention(s, x):
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)
    q, k, v = s.q(t), s.k(t), s.v(t)
    att = (q @ k.transpose(-2, -1) / c**0.5).softmax(dim=-1)
    return (att @ v).transpose(1, 2).reshape(b, c, h, w)


GLOBAL_SWEEP = {
    # every output cell sees the whole input; without the global branches, the stem's 3x3
    "mha": (lambda: Op(lambda s, x: s.a(*(3 * [x.flatten(2).permute(2, 0, 1)]))[0].permute(1, 2, 0).reshape(x.shape),
                       a=nn.MultiheadAttention(4, 2)), (3, 3)),
    "encoder_layer": (lambda: Op(lambda s, x: s.a(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape),
                                 a=nn.TransformerEncoderLayer(4, 2, 8, batch_first=True, dropout=0.0)), (3, 3)),
    "sdpa": (lambda: Op(lambda s, x: F.scaled_dot_product_attention(*(3 * [x.flatten(2).transpose(1, 2)]))
                        .transpose(1, 2).reshape(x.shape)), (3, 3)),
    "manual_attention": (lambda: Op(_manual_attention, q=nn.Linear(4, 4), k=nn.Linear(4, 4), v=nn.Linear(4, 4)), (3, 3)),
    "instance_norm": (lambda: Op(lambda s, x: s.n(x), n=nn.InstanceNorm2d(4)), (3, 3)),
    "layer_norm_chw": (lambda: Op(lambda s, x: F.layer_norm(x, x.shape[1:])), (3, 3)),
    "spatial_softmax": (lambda: Op(lambda s, x: F.softmax(x.flatten(2), -1).view(x.shape)), (3, 3)),
    "mixer_tokens": (lambda: Op(lambda s, x: s.l2(F.gelu(s.l1(x.flatten(2)))).view(x.shape),
                                l1=nn.Linear(17 * 23, 32), l2=nn.Linear(32, 17 * 23)), (19, 25)),
}
PARTIAL_SWEEP = {  # mixing along one axis only
    "softmax_over_h": lambda: Op(lambda s, x: x.softmax(dim=2)),
    "linear_over_w": lambda: Op(lambda s, x: s.l(x), l=nn.Linear(23, 23)),
    "cosine_similarity": lambda: Op(lambda s, x: F.cosine_similarity(x, s.c2(x), dim=1).unsqueeze(1),
                                    c2=nn.Conv2d(4, 4, 3, padding=1)),
    "normalize_channels": lambda: Op(lambda s, x: F.normalize(x, dim=1)),
    "flatten_unflatten_modules": lambda: Op(lambda s, x: s.u(s.f(x)), f=nn.Flatten(2), u=nn.Unflatten(2, (17, 23))),
}


@pytest.mark.parametrize("name", sorted(GLOBAL_SWEEP))
def test_global_ops_match_gradient_support(name):
    factory, local_rf = GLOBAL_SWEEP[name]
    model = factory().eval()
    size = (17, 23)
    tr = trace_module(model, size, strict=True)
    a = Analysis(tr.graph, size)
    assert a.output.global_context and a.output.output_size == size
    cells = [(0, 0), (8, 11), (16, 22)]
    grads = gradient_support(model, (1, 3) + size, cells)
    assert all(len(g[0]) == size[0] and len(g[1]) == size[1] for g in grads)
    assert_support(a, a.output.name, cells, grads)
    local = Analysis(tr.graph, size, exclude_global=True)
    assert local.output.rf == local_rf


@pytest.mark.parametrize("name", sorted(PARTIAL_SWEEP))
def test_partial_mixing_matches_gradient_support(name):
    model = PARTIAL_SWEEP[name]().eval()
    size = (17, 23)
    a = Analysis(from_module(model, size, strict=True), size)
    cells = [(0, 0), (8, 11), (16, 22)]
    assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


def test_recurrent_and_sampling_ops_over_approximate_as_global():
    """An LSTM over positions is causal and grid_sample data-dependent: rfmap says global."""
    lstm = Op(lambda s, x: s.a(x.flatten(2).transpose(1, 2))[0].transpose(1, 2).reshape(x.shape),
              a=nn.LSTM(4, 4, batch_first=True))
    grid = Op(lambda s, x: F.grid_sample(x, torch.tanh(x[:, :2].permute(0, 2, 3, 1)), align_corners=False))
    for model in (lstm, grid):
        a = Analysis(from_module(model.eval(), (9, 11), strict=True), (9, 11))
        assert a.output.global_context
        assert [len(s) for s in a.support(a.output.name, (0, 0))] == [9, 11]


def test_split_pieces_passed_straight_to_cat():
    chunked = Op(lambda s, x: torch.cat(x[..., 1:].chunk(2, dim=3), dim=1))
    split = Op(lambda s, x: torch.cat(x.split([9, 8], 2)[1].split(2, 1), 1)[..., 5:16])
    size = (17, 23)
    for model in (chunked, split):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RFMapWarning)  # the two halves of a chunk are misaligned
            a = Analysis(from_module(model.eval(), size, strict=True), size)
        n = a.output.output_size
        cells = [(0, 0), (n[0] - 1, n[1] - 1), (n[0] // 2, 4)]
        assert_support(a, a.output.name, cells, gradient_support(model, (1, 3) + size, cells))


class SegNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.dec = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        y, idx = self.pool(self.enc(x))
        return self.dec(self.unpool(self.mid(y), idx, output_size=x.shape[-2:]))


def test_max_unpool_is_a_transposed_window():
    a = rfmap.analyze(SegNetish(), (17, 20))
    assert a.layer("unpool").output_size == (17, 20) and a.layer("unpool").stride == (1, 1)
    assert a.layer("pool").rf == (4, 4) and a.layer("unpool").rf == (8, 8) and a.output.rf == (10, 10)


def test_analyze_and_load_take_a_module():
    model = tm.SENet().eval()
    a = rfmap.analyze(model)
    assert a.input_size == (224, 224) and a.graph.input_size == (224, 224)
    g = rfmap.frontends.load(model)
    assert g.node("conv2").op == "conv"
    b = rfmap.analyze(model, 64)
    assert b.input_size == (64, 64) and b.output.output_size == (32, 32)


class _FunctionalNorms(nn.Module):
    """timm's BatchNormAct2d and friends call the functions with per-channel tensors (which do
    not broadcast against the input from the right): pointwise all the same, and the output
    shape is the input's without running the op's meta kernel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.bn = nn.BatchNorm2d(6)
        self.alpha = nn.Parameter(torch.full((6,), 0.1))
        self.gn = nn.GroupNorm(2, 6)
        self.out = nn.Conv2d(6, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        x = F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias, False)
        x = torch.batch_norm(x, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var, False, 0.1,
                             1e-5, False)
        x = F.prelu(x, self.alpha)
        x = F.instance_norm(x, weight=self.bn.weight, bias=self.bn.bias) + x
        return self.out(F.group_norm(x, 2, self.gn.weight, self.gn.bias))


def test_functional_norms_with_per_channel_tensors():
    m = _FunctionalNorms().eval()
    with torch.no_grad():
        want = tuple(m(torch.zeros(1, 3, 21, 30)).shape[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RFMapWarning)
        a = rfmap.analyze(m, input_size=(21, 30), strict=True)
    assert a.output.output_size == want == (8, 12)
    ops = [n.op for n in a.graph.nodes]
    assert ops.count("batch_norm") == 2 and "prelu" in ops
    # instance and group norm over the whole map: every cell sees all the first conv reads
    # (its stride-2 windows on 30 columns stop at column 28)
    assert a.output.global_context and a.output.rf == (21, 29)
