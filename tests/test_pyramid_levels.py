"""FPN levels: which level a box goes to under each library's rule, and what each level sees."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import rfmap
from rfmap.mapping.levels import assign_levels
from rfmap.mapping.pyramid import backbone_graph, pyramid


@pytest.fixture(scope="module")
def faster():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rfmap.analyze("fasterrcnn-resnet50-fpn", (800, 800))


def test_levels_of_torchvision_faster_rcnn_fpn(faster):
    p = pyramid(faster)
    assert [lv.name for lv in p.levels] == ["0", "1", "2", "3", "pool"]
    assert [lv.k for lv in p.levels] == [2, 3, 4, 5, 6]
    assert [lv.stride[0] for lv in p.levels] == [4, 8, 16, 32, 64]
    # through the top-down path every level sees more than along the bottom-up path alone
    assert [lv.trf_backbone[0] for lv in p.levels[:4]] == [43, 107, 299, 491]
    assert all(lv.trf[0] >= lv.trf_backbone[0] for lv in p.levels)
    assert p.level("0").trf[0] == 459


def test_backbone_path_is_the_bottom_up_pathway(faster):
    g = backbone_graph(faster)
    a = rfmap.Analysis(g, faster.input_size)
    # the stage outputs are untouched by dropping the top-down path (RFLA's C2..C5: 35, 91, 267, 427)
    assert [a.layer(n).rf[0] for n in ("layer1", "layer2", "layer3", "layer4")] == [35, 91, 267, 427]


def _by_definition(size: float, rule: str, k_min: int = 2, k_max: int = 5) -> int:
    if rule == "torchvision":
        k = math.floor(4 + math.log2(size / 224) + 1e-6)
    elif rule == "detectron2":
        k = math.floor(4 + math.log2(size / 224 + 2.220446049250313e-16))
    else:
        return min(max(math.floor(math.log2(size / 56 + 1e-6)), 0), k_max - k_min)
    return min(max(k, k_min), k_max) - k_min


@pytest.mark.parametrize("rule", ["torchvision", "detectron2", "mmdet"])
def test_level_rules_on_oblong_boxes(rule):
    # oblong boxes (torchvision issue 3747's images are oblong): only sqrt(w h) counts
    boxes = np.array([[0, 0, 16, 256], [0, 0, 256, 16], [5, 7, 805, 47], [0, 0, 112 * (1 - 1e-9), 112], [0, 0, 1000, 30]])
    got = assign_levels(boxes.astype(np.float64), 2, 5, rule)
    want = [_by_definition(math.sqrt((b[2] - b[0]) * (b[3] - b[1])), rule) for b in boxes]
    assert got.tolist() == want


def test_the_rules_disagree_just_below_a_power_of_two():
    # detectron2 puts its epsilon inside the log, torchvision outside: a box a hair below 112
    box = np.array([[0.0, 0.0, 112 * (1 - 1e-7), 112.0]])
    levels = {rule: int(assign_levels(box, 2, 5, rule)[0]) for rule in ("torchvision", "detectron2", "mmdet")}
    assert levels == {"torchvision": 1, "detectron2": 0, "mmdet": 1}


def test_cli_levels(capsys):
    from rfmap.cli import main

    assert main(["levels", "retinanet-resnet50-fpn", "--size", "32,224", "--box", "0,0,16,256", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "retinanet" in out.lower() and "p7" in out and "TRF backbone" in out
    assert main(["levels", "retinanet-resnet50-fpn", "--size", "32,224", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [lv["name"] for lv in data["levels"]] == ["0", "1", "2", "p6", "p7"]
    assert [lv["trf"][0] for lv in data["levels"]] == [459, 459, 491, 555, 683]
    assert [a["levels"]["torchvision"] for a in data["assignments"]] == ["0", "1"]
    assert main(["levels", "vgg16", "--size", "0"]) == 2
