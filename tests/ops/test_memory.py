"""Memory stays proportional to the input, the output and the boxes' area: one box over a whole
4096 x 4096 map (before the capped sparse table, roi_pool's forward alone peaked at 8.2 GB).

Each case runs in a fresh process and reads its peak resident memory (``ru_maxrss``) before and
after the op."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
from rfmap.ops import ps_roi_pool, roi_align, roi_pool
x = torch.randn(1, 1, 4096, 4096, requires_grad=True)
box = torch.tensor([[0, 0.0, 0, 4095, 4095]])
op = {{"roi_pool": lambda: roi_pool(x, box, 7), "roi_align": lambda: roi_align(x, box, 7, 1.0, 0, True),
      "ps_roi_pool": lambda: ps_roi_pool(x, box, 1)}}[sys.argv[1]]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
op().sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_kib": after - before, "input_kib": x.numel() * 4 // 1024}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("op", ["roi_pool", "roi_align", "ps_roi_pool"])
def test_one_box_over_a_large_map(op):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=str(ROOT)), op], capture_output=True, text=True, timeout=600, check=True
    )
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    # forward and backward together: the gradient itself is one input's worth
    assert numbers["peak_kib"] < 16 * numbers["input_kib"], numbers
