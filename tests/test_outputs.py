"""Every output of a model: FPN levels, tuple and dict returns, in the model's order, named as
the model names them; the PyTorch and ONNX front ends agree on them."""

from __future__ import annotations

import io
import json
import warnings

import pytest

import rfmap

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class TinyFPN(nn.Module):
    """Lateral 1x1 convs, nearest top-down upsampling, adds, 3x3 output convs; returns levels."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.as_dict = as_dict
        self.c2 = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.c4 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.lat = nn.ModuleList(nn.Conv2d(8, 8, 1) for _ in range(3))
        self.out = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(3))

    def forward(self, x):
        c2 = self.c2(x)
        c3 = self.c3(c2)
        c4 = self.c4(c3)
        p4 = self.lat[2](c4)
        p3 = self.lat[1](c3) + F.interpolate(p4, scale_factor=2, mode="nearest")
        p2 = self.lat[0](c2) + F.interpolate(p3, scale_factor=2, mode="nearest")
        levels = [self.out[0](p2), self.out[1](p3), self.out[2](p4)]
        if self.as_dict:
            return {"0": levels[0], "1": levels[1], "2": levels[2], "pool": F.max_pool2d(levels[2], 1, 2)}
        return tuple(levels)


def test_tuple_outputs_in_return_order():
    a = rfmap.analyze(TinyFPN(), (64, 96))
    assert a.outputs == ("out.0", "out.1", "out.2")
    assert [r.name for r in a.output_rows()] == ["out.0", "out.1", "out.2"]
    assert a.output.name == "out.0" and a.layers[-1].name == "out.0"
    assert [r.stride for r in a.output_rows()] == [(4, 4), (8, 8), (16, 16)]
    assert a.to_dict()["outputs"] == ["out.0", "out.1", "out.2"]


def test_dict_outputs_are_named_by_their_keys():
    a = rfmap.analyze(TinyFPN(as_dict=True), (64, 96))
    assert a.outputs == ("0", "1", "2", "pool")
    # names that look like numbers are names first
    assert a.layer("0").name == "out.0" and a.layer("pool").stride == (32, 32)
    assert a.layer("2").output_size == (4, 6)
    text = rfmap.render.render(a, "table", color=False)
    assert "outputs: 0, 1, 2, pool" in text and "o an output of the network" in text


def test_onnx_export_agrees_on_the_outputs():
    onnx = pytest.importorskip("onnx")
    model = TinyFPN().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 64, 96), buf, dynamo=False, opset_version=17,
                          output_names=["p2", "p3", "p4"])
    b = rfmap.analyze(onnx.load_from_string(buf.getvalue()))
    a = rfmap.analyze(model, (64, 96))
    assert b.outputs == ("p2", "p3", "p4")
    for ra, rb in zip(a.output_rows(), b.output_rows()):
        assert (ra.output_size, ra.stride, ra.rf, ra.padding, ra.center0) == (rb.output_size, rb.stride, rb.rf, rb.padding, rb.center0)
        for cell in [(0, 0), (ra.output_size[0] - 1, ra.output_size[1] // 2)]:
            assert a.support_box(ra.name, cell) == b.support_box(rb.name, cell)


def test_cli_summary_json_lists_outputs(capsys, tmp_path, monkeypatch):
    (tmp_path / "fpnmodels.py").write_text(
        "import sys\nsys.path.insert(0, {!r})\nfrom test_outputs import TinyFPN\n\ndef build():\n    return TinyFPN(as_dict=True)\n".format(str(__import__("pathlib").Path(__file__).parent))
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from rfmap.cli import main

    assert main(["summary", "fpnmodels:build", "--input", "64,96", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"] == ["0", "1", "2", "pool"]
