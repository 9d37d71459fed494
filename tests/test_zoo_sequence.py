"""1-D dilated causal stacks: WaveNet's block (RF 1024) and keras-tcn (RF ``1 + 2 (k - 1)
nb_stacks sum(d)``), from ``tests/data/published/dilated_causal.md``, and gradient supports
of plain-PyTorch stacks written here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from published import ints, table

import rfmap
from rfmap.cli import main
from rfmap.frontends import zoo
from rfmap.frontends.zoo.sequence import causal_conv, keras_tcn, wavenet

ROWS = table("dilated_causal")


def analyze(source, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)  # see test_causal_adds_are_flagged_by_rf_center
        return rfmap.analyze(source, size)


def formula(convs_per_layer, kernel, dilations, stacks):
    return 1 + convs_per_layer * (kernel - 1) * stacks * sum(dilations)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['net']}-{r['stacks']}")
def test_published_receptive_fields(row):
    k, d, stacks, rf = int(row["kernel"]), ints(row["dilations"]), int(row["stacks"]), int(row["rf"])
    assert formula(int(row["convs_per_layer"]), k, d, stacks) == rf
    if row["net"] == "keras-tcn":
        graph = keras_tcn(kernel_size=k, dilations=d, nb_stacks=stacks)
    else:  # one dilated conv (pair) per layer: WaveNet's gated layers, the README's figures
        graph = wavenet(kernel=k, dilations=d, blocks=stacks)
    out = analyze(graph).output
    assert out.rf == (rf,)


def test_zoo_defaults():
    assert zoo.get("wavenet").input_size == (16000,) and zoo.get("tcn").input_size == (1000,)
    w = analyze("wavenet")
    assert w.output.rf == (1024,) and w.output.output_size == (16000,) and w.outputs == ("out_conv2",)
    # causal: output step t sees steps t - 1023 .. t
    assert w.rf_box("out_conv2", 5000) == (5000 - 1023, 5000)
    t = analyze("tcn")
    assert t.outputs == ("Slice_Output",) and t.output.output_size == (1,)
    assert t.output.rf == (formula(2, 3, (1, 2, 4, 8, 16, 32), 1),) == (253,)
    assert t.rf_box("Slice_Output", 0) == (999 - 252, 999)  # the last step
    # the paper repeats WaveNet's block: three blocks, 1 + 3 * 1023
    assert analyze(wavenet(blocks=3)).output.rf == (3070,)
    with_initial = analyze(wavenet(initial_kernel=2))
    assert with_initial.output.rf == (1025,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rfmap.RFMapWarning)
        assert with_initial.between("causal_conv", "out_conv2").output.rf == (1024,)


@pytest.mark.parametrize(
    "kernel, dilations, stacks, skips, sequences",
    [(3, (1, 2, 4, 8, 16, 32), 1, True, False), (2, (1, 2, 4, 8), 2, False, True), (5, (1, 3, 9), 2, True, True), (4, (2,), 1, True, False)],
)
def test_keras_tcn_formula_and_gradients(kernel, dilations, stacks, skips, sequences):
    """A plain-PyTorch TCN (ones as weights): the gradient support of the last step spans
    the ``rf`` steps ending there; of every probed step, it is rfmap's support."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    n = 600
    rf = formula(2, kernel, dilations, stacks)
    a = analyze(keras_tcn(input_size=n, kernel_size=kernel, dilations=dilations, nb_stacks=stacks,
                          use_skip_connections=skips, return_sequences=sequences))
    assert a.output.rf == (rf,)

    def causal(t, d):
        return F.conv1d(F.pad(t, ((kernel - 1) * d, 0)), torch.ones(1, 1, kernel, dtype=t.dtype), dilation=d)

    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    t, outs = x, []
    for d in dilations * stacks:
        y = F.relu(causal(F.relu(causal(t, d)), d))
        outs.append(y)
        t = t + y
    out = sum(outs) if skips else t
    out = out if sequences else out[:, :, -1:]
    assert tuple(out.shape[2:]) == a.output.output_size
    steps = [0, n // 2, n - 1] if sequences else [0]
    for step in steps:
        (grad,) = torch.autograd.grad(out[0, 0, step], x, retain_graph=True)
        support = np.flatnonzero(grad[0, 0].numpy())
        assert list(support) == list(a.support(a.output.name, step)[0])
    (grad,) = torch.autograd.grad(out[0, 0, steps[-1]], x, retain_graph=True)
    support = np.flatnonzero(grad[0, 0].numpy())  # with holes where every dilation is even
    assert (support[0], support[-1]) == (n - rf, n - 1)


def test_wavenet_block_against_gradients():
    """WaveNet's gated layers in plain PyTorch (tanh and sigmoid of two dilated causal convs,
    small positive weights so nothing saturates): step t depends on steps t - 1023 .. t."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    n = 2500
    a = analyze(wavenet(input_size=n))
    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    t, skips = x, []
    for d in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        w = torch.full((1, 1, 2), 0.1, dtype=x.dtype)
        f = F.conv1d(F.pad(t, (d, 0)), w, dilation=d)
        g = F.conv1d(F.pad(t, (d, 0)), w, dilation=d)
        z = torch.tanh(f) * torch.sigmoid(g)
        skips.append(0.1 * z)
        t = t + 0.1 * z
    out = 0.1 * F.relu(0.1 * F.relu(sum(skips)))
    for step in (0, 700, 1023, 2000, n - 1):
        (grad,) = torch.autograd.grad(out[0, 0, step], x, retain_graph=True)
        support = np.flatnonzero(grad[0, 0].numpy())
        assert list(support) == list(a.support("out_conv2", step)[0])
        assert list(support) == list(range(max(step - 1023, 0), step + 1))


def test_causal_adds_are_flagged_by_rf_center():
    """rfmap's alignment check compares the centers of the paths' receptive fields; in a
    causal stack both paths end at the same step, but the shortcut's RF is narrower, so
    every residual add (and the skip sum) is reported, with equal strides."""
    with pytest.warns(rfmap.RFMapWarning) as caught:
        rfmap.analyze("tcn")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 7 and all("center of cell 0" in m and "stride" not in m for m in messages)
    assert messages[-1].startswith("layer 'Add_Skip_Connections' (add)")


def test_causal_conv_pads_on_the_left():
    a = analyze(rfmap.Graph.chain([("c", causal_conv(3, 4))], input_size=(50,)))
    assert a.layer("c").output_size == (50,) and a.rf_box("c", 20) == (12, 20)
    with pytest.raises(rfmap.RFMapError, match="keras_tcn"):
        keras_tcn(dilations=())


def test_cli_one_dimensional_input(capsys):
    assert main(["summary", "wavenet", "--input", "4000", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [4000] and data["layers"][-1]["rf"] == [1024]
    assert main(["cell", "tcn", "Slice_Output", "--at", "0", "--input", "1x1x300", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["box"] == [299 - 252, 299]
