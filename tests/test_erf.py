"""Effective receptive fields: theory (Luo et al. 2016) reproduced, statistics, the measurement.

* n stacked 3x3 stride-1 linear convolutions with uniform weights: the unit-gradient map of
  the center cell has per-axis sigma = sqrt(2n/3) exactly (float64, away from borders);
* ERF size grows as depth^0.5 (log-log slope 0.5: exact for uniform weights, close for
  random ones averaged over draws); the ERF-to-TRF ratio shrinks as 1/sqrt(n);
* the closed form sigma^2 = sum_l (d_l J_l)^2 (k_l^2 - 1)/12 against measurement for nets
  with strides, dilations, pooling and a residual merge;
* square sides and RepLKNet's area ratio on synthetic maps with known answers;
* hooks on models that return dicts, inputs as a tensor and as a folder of PNGs, errors.

Everything runs on the CPU with small images, with torch limited to one thread (the
convolutions are tiny; threads only add overhead).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rfmap  # noqa: E402
from rfmap.erf import (  # noqa: E402
    ERF,
    area_ratio,
    closed_form_moments,
    closed_form_sigma,
    erf,
    gaussian_fit,
    square_side,
)
from rfmap.errors import RFMapError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


def stack(n: int, k: int = 3) -> list:
    return [[k, 1, k // 2]] * n


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# -- theory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_uniform_stack_sigma_is_sqrt_2n_over_3(n):
    e = erf(stack(n), input_size=2 * n + 7, weights="uniform", n=1, channels=1, progress=False)
    expected = math.sqrt(2 * n / 3)
    assert e.sigma == pytest.approx((expected, expected), rel=1e-12, abs=1e-12)
    assert e.closed_form == pytest.approx((expected, expected), rel=1e-12)
    assert e.map.sum() == pytest.approx(1.0, rel=1e-12)  # uniform 1/fan_in weights keep the mass
    # the map is the n-fold convolution of a 3x3 box: an outer product of 1-D distributions
    line = np.array([1.0])
    for _ in range(n):
        line = np.convolve(line, np.ones(3) / 3)
    c = (2 * n + 7) // 2
    window = e.map[c - n : c + n + 1, c - n : c + n + 1]
    assert np.allclose(window, np.outer(line, line), rtol=1e-12, atol=1e-15)


def test_linear_gradient_preserving_aggregates_agree_and_square_differs():
    maps = {
        agg: erf(stack(4), input_size=17, weights="uniform", n=2, batch_size=1, channels=2, aggregate=agg, progress=False)
        for agg in ("abs", "relu", "square")
    }
    assert np.array_equal(maps["abs"].map, maps["relu"].map)  # the uniform net's gradient is >= 0
    assert maps["abs"].sigma[0] == pytest.approx(math.sqrt(8 / 3), rel=1e-12)
    assert maps["square"].sigma[0] < maps["abs"].sigma[0]  # g^2 is narrower than g
    assert maps["square"].aggregate == "square"


def test_torch_module_with_uniform_weights_matches_theory_and_is_left_untouched():
    n = 6
    model = nn.Sequential(*[m for _ in range(n) for m in (nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2))]).double()
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    e = erf(model, input_size=2 * n + 5, weights="uniform", n=2, progress=False)
    assert e.sigma == pytest.approx((math.sqrt(2 * n / 3),) * 2, rel=1e-12)
    assert model.training  # the training flag is restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # a copy was re-weighted
    assert isinstance(model[1], nn.BatchNorm2d)  # ... and had its batch norms removed, not the model


def test_log_log_slope_of_erf_size_against_depth_uniform_is_one_half():
    depths = [2, 4, 8, 16, 32]
    sigmas = [erf(stack(n), input_size=2 * n + 5, weights="uniform", n=1, channels=1, progress=False).sigma[0] for n in depths]
    assert slope(depths, sigmas) == pytest.approx(0.5, abs=1e-9)


def test_log_log_slope_of_erf_size_against_depth_random_is_close_to_one_half():
    # Random zero-mean weights, re-drawn for every input: E[g(x)^2] counts the paths from the
    # cell to x, i.e. it is the uniform network's map up to a constant, so with the "square"
    # aggregate the averaged map's sigma tends to sqrt(2n/3) itself.
    depths = [2, 4, 8, 16]
    sigmas = []
    for n in depths:
        e = erf(stack(n), input_size=2 * n + 9, weights="random", aggregate="square", n=128, batch_size=1, channels=4, dtype=torch.float32, progress=False)
        assert e.sigma[0] == pytest.approx(math.sqrt(2 * n / 3), rel=0.05)
        sigmas.append(float(np.mean(e.sigma)))
    assert slope(depths, sigmas) == pytest.approx(0.5, abs=0.03)
    # |g| is wider (a sum of random terms is not the sum of their magnitudes) but grows
    # at the same rate; at these depths its slope is a little above 0.5
    abs_sigmas = [
        float(np.mean(erf(stack(n), input_size=2 * n + 9, weights="random", n=64, batch_size=1, channels=4, dtype=torch.float32, progress=False).sigma))
        for n in depths
    ]
    assert 0.45 < slope(depths, abs_sigmas) < 0.65


def test_erf_to_trf_ratio_shrinks_as_one_over_sqrt_n():
    ratios = {}
    for n in (4, 8, 16, 32):
        e = erf(stack(n), input_size=2 * n + 5, weights="uniform", n=1, channels=1, progress=False)
        assert e.trf_size == (2 * n + 1, 2 * n + 1)
        assert e.trf_ratio[0] == pytest.approx(4 * math.sqrt(2 * n / 3) / (2 * n + 1), rel=1e-12)
        ratios[n] = e.trf_ratio[0]
    # ratio * sqrt(n) -> 4 sqrt(2/3) / 2: the TRF is 2n + 1, so the approach is as 2n / (2n + 1)
    scaled = [ratios[n] * math.sqrt(n) for n in sorted(ratios)]
    assert all(a < b for a, b in zip(scaled, scaled[1:]))
    assert scaled[-1] == pytest.approx(2 * math.sqrt(2 / 3), rel=0.02)
    assert slope([8, 32], [ratios[8], ratios[32]]) == pytest.approx(-0.5, abs=0.04)


# -- the closed form ----------------------------------------------------------------------------

STRIDED = [[3, 2, 1], [3, 1, 2, 2], [5, 2, 2], [3, 1, 1], {"op": "avgpool", "kernel": 2, "stride": 2}]


def test_closed_form_with_strides_and_dilations_by_hand_and_measured():
    # sigma^2 = sum (d J)^2 (k^2-1)/12: J = 1, 2, 2, 4, 4
    by_hand = (1 * 8 + 16 * 8 + 4 * 24 + 16 * 8 + 16 * 3) / 12
    assert by_hand == 34
    a = rfmap.analyze(STRIDED, 97)
    assert closed_form_sigma(a) == pytest.approx((math.sqrt(34),) * 2, rel=1e-15)
    means, variances = closed_form_moments(a)
    assert variances == (34, 34)  # exact Fractions
    cell = (6, 6)
    assert means == tuple(float(c) for c in a.center(a.output.name, cell))  # centered on the RF
    e = erf(STRIDED, input_size=97, weights="uniform", n=1, channels=1, progress=False)
    assert e.cell == cell
    assert e.sigma == pytest.approx((math.sqrt(34),) * 2, rel=1e-12)
    assert e.mean == pytest.approx(tuple(float(c) for c in a.center(a.output.name, cell)), abs=1e-9)


def test_closed_form_of_a_residual_network_is_the_mixture_of_its_paths():
    spec = {
        "name": "tiny-res",
        "input": [65, 65],
        "layers": [
            {"name": "stem", "op": "conv", "kernel": 3, "stride": 2, "padding": 1},
            {"name": "pool", "op": "maxpool", "kernel": 3, "stride": 2, "padding": 1},
            {"name": "b1", "op": "conv", "kernel": 3, "padding": 1},
            {"name": "b2", "op": "conv", "kernel": 3, "padding": 2, "dilation": 2},
            {"name": "sum", "op": "add", "inputs": ["pool", "b2"]},
            {"name": "head", "op": "conv", "kernel": 3, "padding": 1},
        ],
    }
    from rfmap.frontends.spec import spec_to_graph

    graph = spec_to_graph(spec)
    predicted = closed_form_sigma(graph, "head")
    # by hand: stem 8/12, pool 4*8/12; branch b1 16*8/12 + b2 (2*4)^2*8/12; head 16*8/12
    trunk = 8 / 12 + 4 * 8 / 12 + 16 * 8 / 12
    branch = 16 * 8 / 12 + 64 * 8 / 12
    assert predicted[0] == pytest.approx(math.sqrt(trunk + branch / 2), rel=1e-12)
    e = erf(graph, layer="head", weights="uniform", n=1, channels=2, progress=False)
    assert e.sigma == pytest.approx(predicted, rel=1e-12)
    assert e.closed_form == pytest.approx(predicted, rel=1e-12)


def test_closed_form_rejects_ops_without_one_and_global_layers():
    with pytest.raises(RFMapError, match="layer2.*upsample.*no closed-form"):
        closed_form_sigma([[3, 1, 1], {"op": "upsample", "scale_factor": 2, "mode": "nearest"}, [3, 1, 1]], input_size=16)
    with pytest.raises(RFMapError, match="global"):
        closed_form_sigma("vgg16", "fc6")
    assert closed_form_sigma("vgg16", "conv5_3")[0] > 0


# -- statistics on synthetic maps -------------------------------------------------------------------


def test_square_side_and_area_ratio_on_known_maps():
    delta = np.zeros((21, 21))
    delta[10, 10] = 3.0
    for t in (0.2, 0.5, 0.99, 1.0):
        assert square_side(delta, t) == 1
    assert area_ratio(delta, 0.5) == pytest.approx(1 / 441)

    block = np.zeros((21, 21))
    block[8:13, 8:13] = 1.0  # 5x5 around (10, 10): odd sides hold min(s, 5)^2 / 25
    assert [square_side(block, t) for t in (0.03, 0.2, 0.36, 0.37, 0.5, 1.0)] == [1, 3, 3, 5, 5, 5]
    assert area_ratio(block, 0.5) == pytest.approx(25 / 441)

    even = np.zeros((20, 20))
    even[8:12, 6:10] = 1.0  # 4x4, center (9.5, 7.5): even sides
    assert gaussian_fit(even)[0] == pytest.approx((9.5, 7.5))
    assert [square_side(even, t) for t in (0.25, 0.26, 1.0)] == [2, 4, 4]
    # an explicit center: the square grows until it reaches the block
    assert square_side(block, 0.5, center=(10, 13)) == 7


def test_square_side_matches_replknet_get_rectangle():
    def get_rectangle(data, thresh):  # RepLKNet's analyze_erf.py, written out
        h, w = data.shape
        all_sum = np.sum(data)
        for i in range(1, h // 2):
            selected = data[h // 2 - i : h // 2 + 1 + i, w // 2 - i : w // 2 + 1 + i]
            if np.sum(selected) / all_sum > thresh:
                return i * 2 + 1, (i * 2 + 1) / h * (i * 2 + 1) / w
        return None

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:63, 0:63]
    data = np.exp(-((yy - 31) ** 2 + (xx - 31) ** 2) / (2 * 6.0**2)) + 0.02 * rng.random((63, 63))
    for t in (0.2, 0.3, 0.5, 0.9):
        side, ratio = get_rectangle(data, t)
        assert square_side(data, t, center=(31, 31)) == side
        assert area_ratio(data, t, center=(31, 31)) == pytest.approx(ratio)
        logged = np.log10(data + 1)
        side, ratio = get_rectangle(logged / logged.max(), t)
        assert area_ratio(data, t, transform="log", normalize="none", center=(31, 31)) == pytest.approx(ratio)


def test_area_ratio_scale_invariance_and_the_log_transform():
    yy, xx = np.mgrid[0:81, 0:81]
    g = np.exp(-((yy - 40) ** 2 + (xx - 40) ** 2) / (2 * 5.0**2))
    for scale in (1e-3, 1.0, 1e3):
        assert area_ratio(g * scale, 0.5) == area_ratio(g, 0.5)
        assert area_ratio(g * scale, 0.5, transform="log") == area_ratio(g, 0.5, transform="log")
        assert area_ratio(g * scale, 0.5, transform="log", normalize="sum") == area_ratio(g, 0.5, transform="log", normalize="sum")
    # the raw log10(x + 1) depends on the map's units: large values are compressed
    raw = [area_ratio(g * s, 0.5, transform="log", normalize="none") for s in (1e-3, 1e3)]
    assert raw[0] < raw[1]
    assert area_ratio(g, 0.5, transform="log") >= area_ratio(g, 0.5)


def test_gaussian_fit_of_a_sampled_gaussian():
    yy, xx = np.mgrid[0:101, 0:121]
    g = np.exp(-((yy - 50.0) ** 2) / (2 * 4.0**2) - (xx - 61.5) ** 2 / (2 * 7.0**2))
    mean, sigma = gaussian_fit(g)
    assert mean == pytest.approx((50.0, 61.5), abs=1e-9)
    assert sigma == pytest.approx((4.0, 7.0), rel=1e-6)
    # an isotropic Gaussian: the centered square holding 90% has half-side a with erf(a / (s sqrt 2))^2 = 0.9
    iso = np.exp(-((yy - 50.0) ** 2 + (xx - 60.0) ** 2) / (2 * 6.0**2))
    a = 6.0 * math.sqrt(2) * _erfinv(math.sqrt(0.9))
    assert abs(square_side(iso, 0.9) - 2 * a) <= 2.0


def _erfinv(y: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < y else (lo, mid)
    return lo


def test_bad_maps_and_thresholds():
    with pytest.raises(RFMapError, match="zero"):
        gaussian_fit(np.zeros((4, 4)))
    with pytest.raises(RFMapError, match="negative"):
        square_side(-np.ones((4, 4)), 0.5)
    with pytest.raises(RFMapError, match="t must"):
        square_side(np.ones((4, 4)), 1.5)
    with pytest.raises(RFMapError, match="transform"):
        area_ratio(np.ones((4, 4)), 0.5, transform="sqrt")


# -- the measurement ----------------------------------------------------------------------------


class DictNet(nn.Module):
    """Returns a dict (a detector-like model): ERFs of named submodules via hooks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1))
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        s = self.stem(x)
        b = self.body(s)
        return {"features": b, "logits": self.head(b), "aux": (s, b)}


def manual_map(model, x, cell, module, how="abs"):
    """A bare autograd loop: the reference the measurement must reproduce."""
    out = {}
    handle = module.register_forward_hook(lambda m, i, o: out.__setitem__("y", o))
    x = x.clone().requires_grad_(True)
    model(x)
    handle.remove()
    y = out["y"]
    (g,) = torch.autograd.grad(y[(slice(None), slice(None)) + cell].sum(), x)
    g = {"abs": g.abs(), "square": g * g, "relu": g.clamp(min=0)}[how]
    return (g.sum((0, 1)) / x.shape[0]).double().numpy()


def test_hooks_on_a_model_returning_a_dict_and_inputs_as_a_tensor():
    torch.manual_seed(0)
    model = DictNet().eval()
    x = torch.randn(5, 3, 24, 24)
    e = erf(model, layer="body.2", inputs=x, progress=False, batch_size=2)
    assert e.n == 5 and e.input_size == (24, 24) and e.cell == (6, 6)
    assert np.allclose(e.map, manual_map(model, x, (6, 6), model.body[2]), rtol=1e-5, atol=1e-9)
    # the map is the same whatever the batching
    assert np.allclose(erf(model, layer="body.2", inputs=x, batch_size=5, progress=False).map, e.map, rtol=1e-5, atol=1e-9)
    # n caps the inputs used; a chosen cell
    e3 = erf(model, layer="stem.2", inputs=x, n=3, cell=(2, 9), aggregate="relu", progress=False)
    assert e3.n == 3 and e3.cell == (2, 9)
    assert np.allclose(e3.map, manual_map(model, x[:3], (2, 9), model.stem[2], "relu"), rtol=1e-5, atol=1e-9)
    # no layer: the first tensor of the output (the dict's "features")
    e_out = erf(model, inputs=x, progress=False)
    assert np.allclose(e_out.map, e.map, rtol=1e-5, atol=1e-9)


def test_a_source_measured_on_a_tensor_is_built_for_its_size_and_channels():
    e = erf(stack(3), inputs=torch.randn(2, 2, 15, 15), weights="uniform", progress=False)
    assert e.input_size == (15, 15) and e.n == 2 and e.trf_box == (4, 4, 10, 10)
    assert e.sigma == pytest.approx((math.sqrt(2),) * 2, rel=1e-12)


def test_weights_uniform_on_a_relu_model_and_random_draws_are_seeded():
    model = DictNet().eval()
    a = erf(model, layer="body.2", input_size=24, n=4, weights="random", seed=3, progress=False)
    b = erf(model, layer="body.2", input_size=24, n=4, weights="random", seed=3, progress=False)
    c = erf(model, layer="body.2", input_size=24, n=4, weights="random", seed=4, progress=False)
    assert np.array_equal(a.map, b.map) and not np.array_equal(a.map, c.map)
    u = erf(model, layer="body.2", input_size=24, n=4, weights="uniform", progress=False)
    assert u.weights == "uniform" and np.all(u.map >= 0)


def test_inputs_as_a_folder_of_pngs(tmp_path):
    plt_image = pytest.importorskip("matplotlib.image")
    rng = np.random.default_rng(1)
    for k in range(3):
        plt_image.imsave(tmp_path / f"img{k}.png", rng.random((20, 28, 3)))
    (tmp_path / "notes.txt").write_text("not an image")
    model = DictNet().eval()
    e = erf(model, layer="body.2", inputs=tmp_path, input_size=(16, 16), progress=False)
    assert e.n == 3 and e.map.shape == (16, 16) and e.cell == (4, 4)
    assert np.isfinite(e.map).all() and e.map.sum() > 0
    # without input_size the images keep their own size
    e2 = erf(model, layer="body.2", inputs=str(tmp_path), n=2, progress=False)
    assert e2.n == 2 and e2.map.shape == (20, 28)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RFMapError, match="no .png"):
        erf(model, layer="body.2", inputs=empty, progress=False)


def test_errors_name_what_is_wrong():
    model = DictNet()
    with pytest.raises(RFMapError, match="no layer named 'body.7'.*body"):
        erf(model, layer="body.7", input_size=16, progress=False)
    with pytest.raises(RFMapError, match="no layer named 'conv9_9'"):
        erf("vgg16", layer="conv9_9", input_size=32, progress=False)
    with pytest.raises(RFMapError, match="weights"):
        erf(model, layer="body.2", input_size=16, weights="xavier", progress=False)
    with pytest.raises(RFMapError, match="aggregate"):
        erf(model, layer="body.2", input_size=16, aggregate="max", progress=False)
    with pytest.raises(RFMapError, match="outside"):
        erf(model, layer="body.2", input_size=16, cell=(8, 0), progress=False)
    with pytest.raises(RFMapError, match="input_size"):
        erf(model, layer="body.2", progress=False)
    with pytest.raises(RFMapError, match="input"):
        erf(stack(2), layer="input", input_size=8, progress=False)
    with pytest.raises(RFMapError, match="not a torch device"):
        erf(stack(2), input_size=8, device="bogus", progress=False)


def test_result_is_immutable_and_serializes():
    e = erf(stack(3), input_size=15, weights="uniform", n=1, channels=1, progress=False)
    assert isinstance(e, ERF)
    with pytest.raises(ValueError):
        e.map[0, 0] = 1.0
    with pytest.raises(AttributeError):
        e.n = 3  # type: ignore[misc]
    data = json.loads(e.to_json())
    assert data["sigma"] == pytest.approx([math.sqrt(2)] * 2)
    assert data["trf_box"] == [4, 4, 10, 10] and data["layer"] == "layer3"
    assert [s["t"] for s in data["squares"]] == [0.2, 0.3, 0.5, 0.9, 0.9545, 0.99]
    assert data["n"] == 1 and data["aggregate"] == "abs" and data["weights"] == "uniform"
    assert "map" not in data and len(json.loads(e.to_json(include_map=True))["map"]) == 15
    assert e.square_side(0.5) == e.square_side(0.5, center="rf") == square_side(e.map, 0.5, (7, 7))
    assert "sigma" in repr(e)


def test_importing_the_module_does_not_import_torch():
    code = "import sys, rfmap, rfmap.erf, rfmap.anchors, rfmap.cli.erf, rfmap.cli.anchors; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_measurement_matches_cpu():
    model = DictNet().eval()
    x = torch.randn(4, 3, 24, 24)
    cpu = erf(model, layer="body.2", inputs=x, progress=False)
    gpu = erf(model, layer="body.2", inputs=x, device="cuda", progress=False)
    assert np.allclose(cpu.map, gpu.map, rtol=1e-4, atol=1e-7)
    assert next(model.parameters()).device.type == "cpu"  # the user's model stays where it was


# -- the command line ---------------------------------------------------------------------------


def test_cli_erf_writes_map_statistics_and_heatmap(tmp_path):
    from rfmap.cli.erf import configure as add_erf_parser
    from rfmap.cli.erf import run as run_erf

    p = argparse.ArgumentParser()
    add_erf_parser(p)
    spec = tmp_path / "stack.yaml"
    spec.write_text("name: stack\ninput: [21, 21]\nlayers:\n" + "".join("  - {op: conv, kernel: 3, padding: 1}\n" for _ in range(4)))
    out = tmp_path / "out"
    text = run_erf(p.parse_args([str(spec), "--n", "2", "--channels", "1", "-o", str(out), "--no-progress"]))
    assert "sigma       1.63 px" in text and "closed form 1.63 px" in text
    m = np.load(out / "erf.npy")
    stats = json.loads((out / "erf.json").read_text())
    assert m.shape == (21, 21) and stats["sigma"] == pytest.approx([math.sqrt(8 / 3)] * 2)
    assert (out / "erf.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads(run_erf(p.parse_args([str(spec), "--n", "1", "--at", "3,4", "--format", "json", "--no-progress"])))
    assert data["cell"] == [3, 4] and data["files"] == []
