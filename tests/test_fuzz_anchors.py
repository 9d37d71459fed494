"""Fuzzing anchor configurations: the bundled ones with values replaced, keys added or
removed and the network swapped for names that are no data (factories, missing files).

Each case is analyzed (closed-form ERF; ``method`` exact or sampled) and rendered: a report
or one :class:`rfmap.RFMapError` within the limits of :mod:`tests.fuzzing`.  A ``network:``
that names Python code must be refused without importing anything: the module
``rfmap_fuzz_marker`` would create a marker file on import, and the test asserts it never does.
"""

from __future__ import annotations

import copy
import random

import pytest
import yaml
from fuzzing import api_case, fuzz_settings, profiles
from hypothesis import event, given
from hypothesis import strategies as st

from rfmap.anchors.config import DATA
from rfmap.errors import RFMapError

pytestmark = pytest.mark.filterwarnings("ignore::rfmap.RFMapWarning")

BUNDLED = {name: yaml.safe_load((DATA / f"{name}.yaml").read_text()) for name in ("s3fd", "ssd300", "rpn-vgg16")}
VALUES = [0, -1, 1, 0.5, 2, 300, 10**12, 2**40, True, False, None, "false", "300/38", "1/0", "", "x", [], [0], [1, 2, 3],
          {"a": 1}, [[1, 2]], [[0, 0]], 1e308, "nan", 1e-300, "\u202e", "<script>"]
NETWORKS = ["vgg16", "rfmap_fuzz_marker:build", "os:getcwd", "torch_models:resnet18", "missing.yaml", "missing.onnx", "",
            [[3, 1, 1], [2, 2, 0]], [[3, 1, 1, 1, 1]], {"layers": [{"op": "conv", "kernel": 3}]}, {"layers": "x"}, 7]


def mutate(rng: random.Random, config: dict) -> dict:
    cfg = copy.deepcopy(config)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["top", "level", "level", "drop", "network", "extra", "levels"])
        if kind == "top":
            cfg[rng.choice(["input", "iou", "gt_sizes", "anchor_offset", "gt_aspect_ratio", "erf", "suggest", "name",
                            "center_tolerance", "density_tolerance"])] = rng.choice(VALUES)
        elif kind == "level" and isinstance(cfg.get("levels"), list) and cfg["levels"]:
            level = rng.choice(cfg["levels"])
            if isinstance(level, dict):
                level[rng.choice(["layer", "stride", "sizes", "aspect_ratios", "boxes", "min_size", "max_size", "flip", "head",
                                  "anchor_offset", "name"])] = rng.choice(VALUES + [[1] * 5000])
        elif kind == "drop" and cfg:
            cfg.pop(rng.choice(sorted(cfg, key=str)))
        elif kind == "network":
            cfg["network"] = rng.choice(NETWORKS)
        elif kind == "extra":
            cfg[rng.choice(["bogus", 3])] = 1
        else:
            cfg["levels"] = rng.choice([[], "x", [None], cfg.get("levels", []) * rng.choice([2, 30])])
    return cfg


@pytest.mark.parametrize("examples", profiles(150, 500))
def test_mutated_anchor_configs(examples, tmp_path_factory, monkeypatch):
    from rfmap.anchors import analyze_anchors, render_anchors

    folder = tmp_path_factory.mktemp("anchors")
    marker = folder / "imported"
    (folder / "rfmap_fuzz_marker.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build():\n    return None\n")
    monkeypatch.syspath_prepend(str(folder))

    @fuzz_settings(examples)
    @given(name=st.sampled_from(sorted(BUNDLED)), seed=st.integers(0, 2**32 - 1), method=st.sampled_from(["exact", "sampled"]),
           as_file=st.booleans())
    def case(name, seed, method, as_file):
        cfg = mutate(random.Random(seed), BUNDLED[name])
        source = cfg
        if as_file:
            path = folder / "config.yaml"
            path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
            source = path
        report = api_case(analyze_anchors, source, method=method)
        event("rejected" if isinstance(report, RFMapError) else "analyzed")
        if not isinstance(report, RFMapError):
            api_case(render_anchors, report, "table", color=True)
            api_case(render_anchors, report, "json")
        assert not marker.exists(), "a configuration imported code"

    case()
