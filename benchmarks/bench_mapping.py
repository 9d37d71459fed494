"""Box projection throughput: `python benchmarks/bench_mapping.py`.

Projects 4 million random boxes onto VGG16's conv5_3 under every rule and prints boxes per
second (target: 20 million or more), with the ratio against the peer "bare numpy": the
one-line Fast R-CNN rounding ``np.floor(boxes / 16 + 0.5)`` with no validation, clipping or
offsets -- the least any projection can cost.
"""

from __future__ import annotations

import numpy as np
from _timing import median_time  # noqa: E402  (puts the checkout on sys.path)

from rfmap.mapping import RULES, mapper  # noqa: E402


def main(n=4_000_000):
    vgg_conv5 = [[3, 1, 1], [3, 1, 1], [2, 2, 0]] * 2 + [[3, 1, 1]] * 3 + [[2, 2, 0]] + [[3, 1, 1]] * 3 + [[2, 2, 0]] + [[3, 1, 1]] * 3
    m = mapper(vgg_conv5, -1, (800, 1088))
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 900, size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 300, size=(n, 2))], axis=1)
    t_peer = median_time(lambda: np.floor(boxes / 16 + 0.5))
    print(f"{n:,} boxes; peer 'bare numpy' rounding: {n / t_peer / 1e6:6.1f} M boxes/s")
    for rule in RULES:
        t = median_time(lambda: m.project(boxes, rule).window)
        print(f"  {rule:11s} {n / t / 1e6:6.1f} M boxes/s   ({t / t_peer:4.2f}x the peer's time; target >= 20 M/s)")


if __name__ == "__main__":
    main()
