"""ERF of the real model: protocols, linearity, every named layer or output, the CLI.

* each protocol (luo2016, replknet2022, openerf) against a direct scalar computation written
  here in plain PyTorch, one image at a time, on a tiny network with a ReLU;
* a network with ReLU: other inputs and another --n give other maps, and the result says
  inputs matter; a linear one: the maps agree and the result says they cannot change;
* the ops census behind that verdict, on small modules;
* ``rfmap erf pkg:factory`` runs the module with its own weights, and measures its second
  output, a dict key, a later call of a module and a function node; ``--twin`` measures
  the linear twin of any node.

CPU only, tiny nets, a handful of images.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from rfmap.cli import main  # noqa: E402
from rfmap.erf import PROTOCOLS, erf  # noqa: E402
from rfmap.erf.linearity import linearity  # noqa: E402
from rfmap.erf.stats import radial_mass, replknet_area_ratio  # noqa: E402
from rfmap.errors import RFMapError  # noqa: E402
from rfmap.render.erf import erf_text  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_relu_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2, padding=1))
    return net.double().eval()


def tiny_linear_net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.AvgPool2d(2), nn.Upsample(scale_factor=2), nn.Conv2d(3, 2, 3, padding=1)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.double().eval()


def get_rectangle(data, thresh):
    """RepLKNet's analyze_erf.py get_rectangle, written out: odd squares around (h//2, w//2)."""
    h, w = data.shape
    total = data.sum()
    for i in range(1, h // 2):
        if data[h // 2 - i : h // 2 + 1 + i, w // 2 - i : w // 2 + 1 + i].sum() / total > thresh:
            return i * 2 + 1, (i * 2 + 1) / h * (i * 2 + 1) / w
    return None


def reference_map(model, x, per_image):
    """Mean over images of ``per_image(out, g)``, one image per backward pass."""
    maps = []
    for k in range(x.shape[0]):
        xi = x[k : k + 1].clone().requires_grad_(True)
        out = model(xi)
        h, w = out.shape[2:]
        scalar, contribution = per_image
        (g,) = torch.autograd.grad(scalar(out[0, :, h // 2, w // 2]), xi)
        maps.append(contribution(g[0]).numpy())
    return np.mean(maps, axis=0)


# -- protocols against a direct computation -------------------------------------------------------


@pytest.mark.parametrize(
    "aggregate, contribution",
    [("abs", lambda g: g.abs().sum(0)), ("square", lambda g: (g * g).sum(0)), ("relu", lambda g: g.clamp(min=0).sum(0))],
)
def test_luo2016_is_the_unit_gradient_at_the_cell(aggregate, contribution):
    model = tiny_relu_net()
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    e = erf(model, inputs=x, aggregate=aggregate, batch_size=2, progress=False)
    ref = reference_map(model, x, (lambda v: v.sum(), contribution))
    assert e.protocol == "luo2016" and e.aggregate == aggregate and e.cell == (4, 4)
    assert np.allclose(e.map, ref, rtol=1e-12, atol=1e-15)
    assert np.array_equal(e.protocol_map, e.map) and e.protocol_metrics() == {}


def test_replknet2022_matches_visualize_erf_and_analyze_erf():
    model = tiny_relu_net()
    x = torch.randn(4, 2, 16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    e = erf(model, inputs=x, protocol="replknet2022", batch_size=3, progress=False)
    # visualize_erf.py: relu(out[:, :, H//2, W//2]).sum(); relu(grad).sum((0, 1)); mean over images
    ref = reference_map(model, x, (lambda v: torch.relu(v).sum(), lambda g: torch.relu(g).sum(0)))
    assert e.aggregate == "relu" and np.allclose(e.map, ref, rtol=1e-12, atol=1e-15)
    # analyze_erf.py: log10(x + 1), divide by the max, get_rectangle at 0.2, 0.3, 0.5, 0.99
    data = np.log10(ref + 1)
    data = data / data.max()
    assert np.allclose(e.protocol_map, data, rtol=1e-12, atol=1e-15)
    rows = e.protocol_metrics()["area_ratio"]
    assert [r["t"] for r in rows] == [0.2, 0.3, 0.5, 0.99]
    for r in rows:
        side, ratio = get_rectangle(data, r["t"])
        assert (r["side"], r["area_ratio"]) == (side, pytest.approx(ratio, rel=1e-12))
    assert json.loads(e.to_json())["protocol_metrics"]["area_ratio"][0]["side"] == rows[0]["side"]


def test_openerf_matches_its_center_activation_and_clamped_gradient():
    model = tiny_relu_net()
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    e = erf(model, inputs=x, protocol="openerf", batch_size=2, progress=False)
    # erf.py: feature[0, :, H//2, W//2].mean(); grad.mean(dim=(0, 1)).clamp(min=0); sum; / sum
    ref = reference_map(model, x, (lambda v: v.mean(), lambda g: g.mean(0).clamp(min=0)))
    assert np.allclose(e.map, ref, rtol=1e-12, atol=1e-15)
    assert np.allclose(e.protocol_map, ref / ref.sum(), rtol=1e-12, atol=1e-15)
    # metrics.py: mass within Euclidean distance r of (H//2, W//2)
    p = ref / ref.sum()
    yy, xx = np.indices(p.shape)
    dist = np.sqrt((yy - 8.0) ** 2 + (xx - 8.0) ** 2)
    metrics = e.protocol_metrics()
    for row in metrics["radial_cumulative_mass"]:
        assert row["mass"] == pytest.approx(float(p[dist <= row["radius"]].sum()), rel=1e-12)
    assert [r["radius"] for r in metrics["radial_cumulative_mass"]] == [5, 10, 20, 30, 40, 60, 80]
    assert metrics["center_of_mass"] == pytest.approx([float((yy * p).sum()), float((xx * p).sum())])


def test_replknet_area_ratio_against_get_rectangle_on_random_maps():
    rng = np.random.default_rng(3)
    for shape in ((9, 9), (20, 20), (31, 31)):
        for _ in range(5):
            data = rng.random(shape) ** 6
            for t in (0.05, 0.2, 0.5, 0.9, 0.99):
                found = replknet_area_ratio(data, t)
                expected = get_rectangle(data, t)
                assert (found is None) == (expected is None)
                if found is not None:
                    assert found[0] == expected[0] and found[1] == pytest.approx(expected[1])
    assert radial_mass(np.ones((5, 5)), [0, 1, 10]) == pytest.approx((1 / 25, 5 / 25, 1.0))


def test_protocol_options_are_checked():
    model = tiny_relu_net()
    with pytest.raises(RFMapError, match="protocol must be one of luo2016, replknet2022, openerf"):
        erf(model, input_size=8, protocol="luo", progress=False)
    with pytest.raises(RFMapError, match="replknet2022 fixes.*luo2016 only"):
        erf(model, input_size=8, protocol="replknet2022", aggregate="abs", progress=False)
    assert set(PROTOCOLS) == {"luo2016", "replknet2022", "openerf"}
    assert all(p.source and p.summary for p in PROTOCOLS.values())


# -- what the inputs can change ----------------------------------------------------------------


def test_a_network_with_relu_gives_other_maps_for_other_inputs_and_says_so():
    model = tiny_relu_net()
    one = erf(model, input_size=16, n=1, progress=False)
    four = erf(model, input_size=16, n=4, progress=False)
    other = erf(model, input_size=16, n=4, seed=1, progress=False)
    assert np.abs(one.map - four.map).max() > 1e-3 * four.map.max()
    assert np.abs(other.map - four.map).max() > 1e-3 * four.map.max()
    assert one.network == "module" and one.weights == "as-is"
    assert four.linearity == "nonlinear" and four.nonlinear_ops == ("relu",) and four.inputs_matter is True
    assert "nonlinear (relu): inputs matter" in erf_text(four)


def test_a_linear_network_gives_one_map_whatever_the_inputs_and_says_so(tmp_path):
    model = tiny_linear_net()
    one = erf(model, input_size=16, n=1, progress=False)
    many = erf(model, input_size=16, n=8, seed=3, batch_size=3, progress=False)
    assert np.allclose(one.map, many.map, rtol=1e-12, atol=1e-15)
    plt_image = pytest.importorskip("matplotlib.image")
    rng = np.random.default_rng(2)
    for k in range(2):
        plt_image.imsave(tmp_path / f"img{k}.png", rng.random((16, 16, 3)))
    images = erf(model, inputs=tmp_path, channels=2, progress=False)
    assert images.n == 2 and np.allclose(images.map, one.map, rtol=1e-12, atol=1e-15)
    assert one.linearity == "linear" and one.nonlinear_ops == () and one.inputs_matter is False
    text = erf_text(many)
    assert "the inputs and --n cannot change the map" in text
    assert json.loads(many.to_json())["inputs_matter"] is False
    # RepLKNet's target relu(out[cell]) is not linear: which channels count depends on the input
    rep = erf(model, input_size=16, n=2, protocol="replknet2022", progress=False)
    assert rep.linearity == "linear" and rep.inputs_matter is True
    assert "target is not" in erf_text(rep)


def test_a_twin_is_linear_unless_it_multiplies_paths():
    e = erf([[3, 1, 1], [3, 2, 1]], input_size=12, n=2, weights="uniform", channels=1, progress=False)
    assert e.network == "twin" and e.linearity == "linear" and e.inputs_matter is False
    spec = {"name": "gate", "input": [12, 12], "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "b", "op": "conv", "kernel": 3, "padding": 1, "inputs": ["input"]},
        {"name": "m", "op": "mul", "inputs": ["a", "b"]},
    ]}
    from rfmap.frontends.spec import spec_to_graph

    gated = erf(spec_to_graph(spec), layer="m", n=2, channels=1, progress=False)
    assert gated.linearity == "nonlinear" and gated.inputs_matter is True
    assert any("mul of two input-dependent tensors" in op for op in gated.nonlinear_ops)


class _Product(nn.Module):
    def __init__(self, gate: bool):
        super().__init__()
        self.a, self.b, self.gate = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1), gate
        self.scale = nn.Parameter(torch.full((1, 2, 1, 1), 0.5))

    def forward(self, x):
        side = torch.relu(x)  # off the path to the output: does not count  # noqa: F841
        y = self.a(x) * self.scale - x.mean()
        return y * self.b(x) if self.gate else y + 2 * self.b(x)


@pytest.mark.parametrize(
    "module, verdict, ops",
    [
        (nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2)), "nonlinear", ("max_pool2d_with_indices", "relu")),
        (nn.Sequential(nn.Conv2d(2, 2, 3), nn.GroupNorm(1, 2)), "nonlinear", ("native_group_norm",)),
        (nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.Upsample(scale_factor=2, mode="bilinear")), "linear", ()),
        (_Product(gate=False), "linear", ()),
        (_Product(gate=True), "nonlinear", ("mul of two input-dependent tensors",)),
    ],
)
def test_the_ops_census(module, verdict, ops):
    found = linearity(module.eval(), torch.randn(1, 2, 8, 8))
    assert (found.verdict, found.ops) == (verdict, ops)


# -- every layer and output of a factory, from the command line --------------------------------------

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TwoLevels(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.c3 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.out2 = nn.Conv2d(4, 4, 1)
            self.out3 = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            a = self.act(self.c1(x))
            b = self.act(self.c2(a))
            c = self.c3(b) + 0.5 * torch.nn.functional.avg_pool2d(b, 2)
            return {"p2": self.out2(b), "p3": self.out3(c)}

    def build():
        torch.manual_seed(0)
        return TwoLevels().eval()
    """
)


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "erf_factory_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    sys.modules.pop("erf_factory_models", None)
    yield importlib.import_module("erf_factory_models")
    sys.modules.pop("erf_factory_models", None)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["erf", *args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_measures_the_second_output_of_a_factory_with_its_own_weights(factory, capsys, tmp_path):
    code, text, err = run_cli(capsys, "erf_factory_models:build", "--layer", "out3", "--input", "24", "--n", "3", "--format", "json")
    assert code == 0, err
    data = json.loads(text)
    assert data["layer"] == "out3" and data["cell"] == [3, 3] and data["network"] == "module"
    assert data["weights"] == "as-is" and data["linearity"] == "nonlinear" and data["inputs_matter"] is True
    assert data["trf_box"] is not None
    # the module's own weights: the map is the one a bare autograd loop gives on the factory's model
    model = factory.build()
    x = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    captured = {}
    model.out3.register_forward_hook(lambda m, i, o: captured.__setitem__("y", o))
    x.requires_grad_(True)
    model(x)
    (g,) = torch.autograd.grad(captured["y"][:, :, 3, 3].sum(), x)
    out = tmp_path / "out"
    code, text, err = run_cli(capsys, "erf_factory_models:build", "--layer", "out3", "--input", "24", "--n", "3", "-o", str(out))
    assert code == 0, err
    assert np.allclose(np.load(out / "erf.npy"), g.abs().sum((0, 1)).numpy() / 3, rtol=1e-5, atol=1e-8)
    assert "the PyTorch module itself, its own weights" in text and "inputs matter" in text


@pytest.mark.parametrize(
    "layer, how",
    [("p3", "a dict key"), ("act_1", "the second call of act"), ("add", "a function node"), ("c3", "a submodule")],
)
def test_cli_measures_any_named_layer_or_output(factory, capsys, layer, how):
    code, text, err = run_cli(capsys, "erf_factory_models:build", "--layer", layer, "--input", "24", "--n", "2", "--format", "json")
    assert code == 0, f"{how}: {err}"
    assert json.loads(text)["layer"] == layer


def test_cli_outputs_of_a_dict_model_agree(factory, capsys):
    maps = []
    for layer in ("out3", "p3"):
        code, text, err = run_cli(capsys, "erf_factory_models:build", "--layer", layer, "--input", "24", "--n", "2", "--format", "json")
        assert code == 0, err
        maps.append(json.loads(text)["sigma"])
    assert maps[0] == pytest.approx(maps[1], rel=1e-12)


def test_cli_twin_of_a_factory_is_linear_and_named_so(factory, capsys):
    code, text, err = run_cli(capsys, "erf_factory_models:build", "--twin", "--layer", "out3", "--input", "24", "--n", "2")
    assert code == 0, err
    assert text.startswith("ERF of linear twin of") and "rfmap's linear twin" in text
    assert "the inputs and --n cannot change the map" in text and "uniform weights" in text
    code, _, err = run_cli(capsys, "erf_factory_models:build", "--layer", "nope", "--input", "24", "--n", "1")
    assert code == 2 and "no layer named 'nope'" in err and "Traceback" not in err


def test_cli_help_says_what_the_weights_do(capsys):
    assert main(["erf", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "as-is: the module's own weights (trained if the factory loads them)" in text
    assert "so its linear twin gets random positive weights" in text
    assert "replknet2022" in text and "openerf" in text and "--twin" in text


def test_a_spec_has_no_module_to_run():
    with pytest.raises(RFMapError, match="not a PyTorch module or factory.*twin"):
        erf([[3, 1, 1]], input_size=8, twin=False, progress=False)


def test_a_model_that_fails_on_the_input_gives_one_clear_error():
    model = tiny_relu_net()
    with pytest.raises(RFMapError, match=r"running Sequential on an input of shape \[1, 3, 8, 8\] failed: RuntimeError"):
        erf(model, inputs=torch.randn(2, 3, 8, 8, dtype=torch.float64), progress=False)
    with pytest.raises(RFMapError, match="running Sequential.*failed"):
        erf(model, layer="2", inputs=torch.randn(2, 3, 8, 8, dtype=torch.float64), progress=False)


def test_the_census_failing_leaves_the_verdict_unknown(monkeypatch):
    import rfmap.erf.linearity as L

    def broken(*args, **kwargs):
        raise NotImplementedError("no python dispatch for this op")

    monkeypatch.setattr(L, "_op_verdict", broken)
    model = tiny_linear_net()
    found = L.linearity(model, torch.randn(1, 2, 8, 8, dtype=torch.float64))
    assert found.verdict == "unknown" and "census failed" in found.ops[0]
    e = erf(model, input_size=8, n=1, progress=False)
    assert e.linearity == "unknown" and e.inputs_matter is None
    assert "not shown to be linear" in erf_text(e)


def test_every_node_and_named_output_of_a_twin_can_be_measured():
    import dataclasses

    from rfmap.core.graph import GraphBuilder

    b = GraphBuilder("fpn-like", input_size=24)
    c1 = b.layer("c1", "conv", b.input, kernel=3, padding=1)
    c2 = b.layer("c2", "conv", c1, kernel=3, stride=2, padding=1)
    c3 = b.layer("c3", "conv", c2, kernel=3, stride=2, padding=1)
    b.layer("p2", "conv", c2, kernel=1)
    b.layer("p3", "maxpool", c3, kernel=1, stride=2)
    # the model returns {'0': p2, 'pool': p3}; p3 is not on the path to the first output
    graph = dataclasses.replace(b.build(), aliases=(("0", "p2"), ("pool", "p3")), outputs=("0", "pool"))
    assert graph.output.name == "p2"
    by_alias = erf(graph, layer="pool", n=1, weights="uniform", channels=1, progress=False)
    by_name = erf(graph, layer="p3", n=1, weights="uniform", channels=1, progress=False)
    assert by_alias.layer == "pool" and by_alias.cell == (1, 1) and by_alias.trf_box == by_name.trf_box
    assert np.array_equal(by_alias.map, by_name.map) and by_alias.closed_form == pytest.approx(by_name.closed_form)
    assert by_alias.sigma == pytest.approx(by_alias.closed_form, rel=1e-12)  # 1x1 max pool as 1x1 average
    first = erf(graph, n=1, weights="uniform", channels=1, progress=False)
    assert first.layer == "p2" and first.cell == (6, 6)
    with pytest.raises(RFMapError, match="no layer named 'pol'.*'pool'"):
        erf(graph, layer="pol", n=1, progress=False)
