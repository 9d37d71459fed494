"""The examples in the README run, and print what the README shows."""

import re
import shlex
import warnings
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", blocks("python"))
def test_python_examples_run(code):
    exec(compile(code, "README.md", "exec"), {})


def console_examples():
    """(command, expected output lines) pairs from the console blocks."""
    out = []
    for block in blocks("console"):
        cmd = None
        for line in block.splitlines():
            if line.startswith("$ "):
                cmd = line[2:]
                out.append((cmd, []))
            elif cmd is not None:
                out[-1][1].append(line)
    return out


#: the user's own files the README's commands name, written for the test: a small network with
#: a squeeze-excitation gate (what --exclude-global leaves out) as a factory, and its ONNX export
MODELS_PY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Sigmoid())
        self.out3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return self.out3(x * self.gate(x))


def build_net():
    return Net()
"""


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """``mypkg/models.py`` and ``model.onnx`` in the current directory, as the README assumes."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(MODELS_PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _export_onnx(path):
    import torch
    from mypkg.models import build_net

    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(build_net().eval(), (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False)


@pytest.mark.parametrize("cmd, expected", console_examples())
def test_console_examples(cmd, expected, capsys, user_files):
    from rfmap.cli import main

    argv = [arg.replace("/tmp/", f"{user_files}/") for arg in shlex.split(cmd)]  # outputs go to tmp_path
    assert argv[0] == "rfmap"
    if "model.onnx" in argv:
        _export_onnx(user_files / "model.onnx")
        capsys.readouterr()
    assert main(argv[1:]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.splitlines()
    if expected:
        assert printed == expected


def test_spec_example(tmp_path):
    import rfmap

    (spec,) = blocks("yaml")
    path = tmp_path / "net.yaml"
    path.write_text(spec)
    a = rfmap.analyze(str(path))
    assert a.output.name == "sum" and a.input_size == (224, 224)
