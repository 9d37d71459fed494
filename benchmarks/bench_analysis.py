"""Cost of a whole-network analysis: `python benchmarks/bench_analysis.py`.

Prints the time per layer for a 2,000-layer chain and for ResNet-152 at 224 and 4096
pixels, with two ratios measured in the same run:

* against the peer "Distill recurrence" (``benchmarks/_recurrence.py``): the bare forward
  recurrence of Araujo et al. (Distill 2019) in a Python loop, which computes the table of a
  plain chain and nothing else -- the floor any per-layer Python tool pays;
* 4096 against 224 pixels: the analysis must not grow with the input size (ratio ~ 1).
"""

from __future__ import annotations

from _recurrence import distill_recurrence
from _timing import median_time  # noqa: E402  (puts the checkout on sys.path)

import rfmap  # noqa: E402
from rfmap.core.graph import Graph  # noqa: E402
from rfmap.core.layers import conv  # noqa: E402


def main():
    chain = [(3, 1 + (i % 200 == 0), 1) for i in range(2000)]
    graph = Graph.chain([(f"c{i}", conv(k, s, p)) for i, (k, s, p) in enumerate(chain)])
    size = 2**20  # large enough that 2,000 layers with a few strides keep a positive size
    t_ours = median_time(lambda: rfmap.analyze(graph, (size, size)), repeat=3)
    t_peer = median_time(lambda: (distill_recurrence(chain, size), distill_recurrence(chain, size)), repeat=3)
    print(f"2,000-layer chain: {t_ours * 1e6 / 2000:8.1f} us/layer (both axes, exact);"
          f" Distill recurrence {t_peer * 1e6 / 2000:6.2f} us/layer; ratio {t_ours / t_peer:6.1f}x")

    resnet = rfmap.frontends.load("resnet152")
    n_layers = len(resnet.nodes) - 1
    times = {}
    for px in (224, 4096):
        times[px] = median_time(lambda: rfmap.analyze(resnet, (px, px)))
        print(f"ResNet-152 at {px:4d}: {times[px] * 1e3:7.2f} ms, {times[px] * 1e6 / n_layers:6.1f} us/layer ({n_layers} layers)")
    print(f"ResNet-152 4096 / 224: {times[4096] / times[224]:.2f}x (target ~1: cost independent of the input size)")


if __name__ == "__main__":
    main()
