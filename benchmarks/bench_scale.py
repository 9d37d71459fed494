"""Scale: `python benchmarks/bench_scale.py`.

Two sizes the hardening issue (#12) asks to stay in seconds, each with a peer measured in
the same run:

* a 100,000-layer chain of 3x3 convolutions, read from a layer list and analyzed, against
  the peer "Distill recurrence" (``benchmarks/_recurrence.py``: the bare forward recurrence of
  Araujo et al., Distill 2019, in a Python loop: the floor any per-layer Python tool pays);
* an ONNX file of 16,000 nodes that all share one name (renaming used to be quadratic: 65 s),
  read by rfmap's ONNX front end, against the peer "onnx shape inference" (``onnx.load`` and
  ``onnx.shape_inference.infer_shapes`` of the same file, which any ONNX reader runs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _recurrence import distill_recurrence
from _timing import median_time  # noqa: E402  (puts the checkout on sys.path)

import rfmap  # noqa: E402
from rfmap.frontends.layerlist import from_layer_list  # noqa: E402


def onnx_chain(path: Path, n: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", [f"t{k}", "w"], [f"t{k + 1}"], name="same", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
             for k in range(n)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 2, 32, 32])],
                          [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, None)], initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def main():
    n = 100_000
    chain = [[3, 1, 1]] * n
    t_ours = median_time(lambda: rfmap.analyze(from_layer_list(chain), 64), repeat=3)
    t_peer = median_time(lambda: (distill_recurrence(chain, 64), distill_recurrence(chain, 64)), repeat=3)
    print(f"100,000-layer chain: {t_ours:6.2f} s ({t_ours * 1e6 / n:5.1f} us/layer, read + analyzed, both axes);"
          f" Distill recurrence {t_peer:5.3f} s; ratio {t_ours / t_peer:6.1f}x")

    import onnx

    from rfmap.frontends.onnx import from_onnx

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.onnx"
        m = 16_000
        onnx_chain(path, m)
        t_read = median_time(lambda: from_onnx(str(path)), repeat=1)
        t_onnx = median_time(lambda: onnx.shape_inference.infer_shapes(onnx.load(str(path))), repeat=1)
        t_analyze = median_time(lambda: rfmap.analyze(str(path)), repeat=1)
        print(f"16,000-node ONNX file, one name: read {t_read:6.2f} s, read + analyzed {t_analyze:6.2f} s;"
              f" onnx shape inference {t_onnx:5.2f} s; ratio {t_read / t_onnx:5.1f}x")


if __name__ == "__main__":
    main()
