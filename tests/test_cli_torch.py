"""The CLI on PyTorch sources: `pkg.module:factory` with --input and --depth."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from rfmap.cli import main  # noqa: E402

FACTORY = '''
import sys
sys.path.insert(0, {tests!r})
from torch_models import Bottleneck, ResNet


def resnet50():
    return ResNet(Bottleneck, [3, 4, 6, 3])
'''


@pytest.fixture()
def factory(tmp_path, monkeypatch):
    (tmp_path / "cli_factory_models.py").write_text(FACTORY.format(tests=str(Path(__file__).parent)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cli_factory_models:resnet50"
    sys.modules.pop("cli_factory_models", None)


def test_factory_summary_is_427_not_1963(factory, capsys):
    assert main(["summary", factory, "--input", "3x224x224", "--layers", "layer4", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["layers"]
    assert (row["rf"], row["stride"], row["padding"]) == ([427, 427], [32, 32], [213, 213])


def test_depth_table(factory, capsys):
    assert main(["summary", factory, "--depth", "1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["modules"]
    names = [r["name"] for r in rows]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert [r["rf"] for r in rows if r["name"].startswith("layer")] == [[35, 35], [91, 91], [267, 267], [427, 427]]
    assert main(["summary", factory, "--depth", "1", "--no-color"]) == 0
    table = capsys.readouterr().out
    assert "layer4" in table and "25,557,032" in table


def test_depth_needs_a_torch_source(capsys):
    assert main(["summary", "vgg16", "--depth", "1"]) == 2
    assert capsys.readouterr().err.strip() == "rfmap: error: --depth applies to PyTorch sources given as pkg.module:factory"


def test_missing_factory_is_one_line(capsys):
    assert main(["summary", "no_such_module_xyz:build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rfmap: error:")
