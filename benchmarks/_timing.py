"""Shared timing for the benchmarks: the median of repeated runs after one warm-up."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# benchmarks run from a checkout: import the rfmap beside them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_time(fn, repeat: int = 5) -> float:
    """Seconds per call of ``fn``: one warm-up call, then the median of ``repeat`` calls."""
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)
