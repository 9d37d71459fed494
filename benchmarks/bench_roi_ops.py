"""Benchmark of rfmap.ops RoI ops against onnxruntime on CPU.

Run: ``python benchmarks/bench_roi_ops.py [--threads 2] [--repeats 10] [--no-spin]``.

Setting (a Faster R-CNN box head on a stride-16 map): 512 random boxes inside an 800 x 1088
image, a (1, 256, 50, 68) feature map, 7 x 7 output, spatial_scale 1/16, sampling_ratio 2.
Medians over three passes of repeated calls (each after a warm-up), torch and onnxruntime with
the same number of intra-op threads (onnxruntime's MaxRoiPool kernel runs on one thread whatever the session says):

(a) rfmap roi_align forward vs onnxruntime RoiAlign (opset 16, output_half_pixel);
(b) rfmap roi_align forward + backward vs forward alone;
(c) rfmap roi_pool forward vs onnxruntime MaxRoiPool.

``--no-spin`` makes idle worker threads sleep instead of spinning, in both libraries
(``OMP_WAIT_POLICY=PASSIVE`` for torch's OpenMP, ``session.intra_op.allow_spinning=0``):
on a machine with more runnable threads than cores, spinning workers steal the cores the
working ones need, and timings then measure the machine's load more than the ops.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

N_BOXES, CHANNELS, HEIGHT, WIDTH = 512, 256, 50, 68
IMAGE_H, IMAGE_W = 800, 1088
OUTPUT, SCALE, SAMPLING = 7, 1 / 16, 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both libraries")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per pass (3 passes)")
    parser.add_argument("--no-spin", action="store_true", help="idle worker threads sleep instead of spinning")
    return parser.parse_args()


def median_ms(fns: dict, repeats: int, passes: int = 3) -> dict:
    """Median milliseconds of each function over ``passes`` passes of ``repeats`` calls.

    Each function runs its calls back to back after a warm-up call (which also lets the other
    library's idle threads settle), and the passes spread a burst of load on the machine
    over all the functions."""
    times = {name: [] for name in fns}
    for _ in range(passes):
        for name, fn in fns.items():
            fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def main(args: argparse.Namespace) -> None:
    if args.no_spin:  # read by OpenMP when torch loads it
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    from rfmap.ops import roi_align, roi_pool

    torch.set_num_threads(args.threads)

    def session(node, inputs):
        value = helper.make_tensor_value_info
        graph = helper.make_graph([node], node.op_type, inputs, [value("Y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        if args.no_spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    # random boxes inside the image, sides 16 to 600 pixels
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((1, CHANNELS, HEIGHT, WIDTH)).astype(np.float32)
    w, h = rng.uniform(16, 600, N_BOXES), rng.uniform(16, 600, N_BOXES)
    x1, y1 = rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h)
    boxes_np = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
    x = torch.from_numpy(x_np)
    rois = torch.cat([torch.zeros(N_BOXES, 1), torch.from_numpy(boxes_np)], dim=1)

    floats = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("X", "R")]
    align_sess = session(
        helper.make_node(
            "RoiAlign",
            ["X", "R", "B"],
            ["Y"],
            output_height=OUTPUT,
            output_width=OUTPUT,
            sampling_ratio=SAMPLING,
            spatial_scale=SCALE,
            coordinate_transformation_mode="output_half_pixel",
        ),
        floats + [helper.make_tensor_value_info("B", TensorProto.INT64, None)],
    )
    pool_sess = session(
        helper.make_node("MaxRoiPool", ["X", "R"], ["Y"], pooled_shape=[OUTPUT, OUTPUT], spatial_scale=SCALE),
        floats,
    )
    align_feed = {"X": x_np, "R": boxes_np, "B": np.zeros(N_BOXES, dtype=np.int64)}
    pool_feed = {"X": x_np, "R": rois.numpy()}

    # the compared computations give the same results
    ours = roi_align(x, rois, OUTPUT, SCALE, SAMPLING).numpy()
    np.testing.assert_allclose(ours, align_sess.run(None, align_feed)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(roi_pool(x, rois, OUTPUT, SCALE).numpy(), pool_sess.run(None, pool_feed)[0])

    x_grad = x.clone().requires_grad_()
    grad = torch.randn(N_BOXES, CHANNELS, OUTPUT, OUTPUT)

    def forward(op, *extra):
        def run():
            with torch.no_grad():
                op(x, rois, OUTPUT, SCALE, *extra)

        return run

    def forward_backward(op, *extra):
        def run():
            x_grad.grad = None
            op(x_grad, rois, OUTPUT, SCALE, *extra).backward(grad)

        return run

    t = median_ms(
        {
            "rfmap roi_align forward": forward(roi_align, SAMPLING),
            "onnxruntime RoiAlign": lambda: align_sess.run(None, align_feed),
            "rfmap roi_align forward+backward": forward_backward(roi_align, SAMPLING),
            "rfmap roi_pool forward": forward(roi_pool),
            "onnxruntime MaxRoiPool": lambda: pool_sess.run(None, pool_feed),
            "rfmap roi_pool forward+backward": forward_backward(roi_pool),
        },
        args.repeats,
    )
    print(
        f"{N_BOXES} RoIs on (1, {CHANNELS}, {HEIGHT}, {WIDTH}), {OUTPUT}x{OUTPUT}, scale 1/16, "
        f"sampling_ratio {SAMPLING}, {args.threads} thread(s){', no spinning' if args.no_spin else ''}; "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    for name, ms in t.items():
        print(f"  {name:<34} {ms:8.2f} ms")
    ratios = [
        ("(a)", "onnxruntime RoiAlign", "rfmap roi_align forward", ">= 1"),
        ("(b)", "rfmap roi_align forward+backward", "rfmap roi_align forward", "<= 2.5"),
        ("(c)", "onnxruntime MaxRoiPool", "rfmap roi_pool forward", ">= 1"),
    ]
    print("ratios:")
    for label, num, den, target in ratios:
        print(f"  {label} {num} / {den}: {t[num] / t[den]:.2f}x (target {target})")


if __name__ == "__main__":
    main(parse_args())
