"""Benchmark of the rfmap.ops RoI ops against onnxruntime (and torchvision's CPU kernels when
torchvision is installed), on an idle machine and with CPU-bound processes competing.

Run: ``python benchmarks/bench_roi_ops.py [--threads N] [--passes 10] [--repeats 3] [--busy 2] [--no-spin]``.

Settings:

- RoI ops (a Faster R-CNN box head on a stride-16 map): 512 random boxes inside an
  800 x 1088 image, a (1, 256, 50, 68) feature map, 7 x 7 output, spatial_scale 1/16,
  sampling_ratio 2.  rfmap ``roi_align`` (aligned=False) against onnxruntime ``RoiAlign``
  (opset 16, output_half_pixel); ``roi_pool`` against ``MaxRoiPool``.
- SPP (SPP-net's conv5): (16, 256, 13, 13), levels (6, 3, 2, 1), max; against the ONNX graph
  rfmap exports for it (``MaxPool`` per level) run by onnxruntime.
- Position-sensitive ops (R-FCN): (1, 490, 50, 68) score maps (10 x 7 x 7), 512 boxes,
  7 x 7; onnxruntime has no such op, so only torchvision's kernels (when installed) compare.

Each condition runs every measurement: first idle (nothing started by the benchmark; the
load average is printed), then with ``--busy`` processes running ``while True: pass``
started by the benchmark.  Both libraries get the same number of threads (``--threads``,
default torch's).  Medians over ten passes of three calls each (after a warm-up call), every
measurement in every pass: on a busy machine the scheduler's share for the benchmark moves
from second to second, and short passes spread that over all the measurements whose ratios
are printed (measured here: three passes of ten calls gave roi_pool's busy forward+backward
/ forward 2.01-3.03x over ten runs, ten passes of three 1.97-2.49x).
onnxruntime runs in a process of its own, as a user runs one library or the other: its idle
worker threads spin after each call (and rfmap's native ones for 0.5 ms), and in one process
each library's spinning threads would take cores from the other's measurements.
Printed ratios: onnxruntime time / rfmap time (target >= 1.5 in both conditions) and
rfmap forward+backward time / forward time (target <= 2.5).

``--no-spin`` makes idle worker threads sleep instead of spinning, in both libraries
(``OMP_WAIT_POLICY=PASSIVE`` for torch's OpenMP, ``session.intra_op.allow_spinning=0``).
``RFMAP_NATIVE=0`` in the environment runs rfmap's PyTorch paths instead of its native CPU
loops (the first line printed says which ran).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import _timing  # noqa: F401  (puts the checkout's rfmap first on sys.path)

N_BOXES, CHANNELS, HEIGHT, WIDTH = 512, 256, 50, 68
IMAGE_H, IMAGE_W = 800, 1088
OUTPUT, SCALE, SAMPLING = 7, 1 / 16, 2
SPP_SHAPE, SPP_LEVELS = (16, 256, 13, 13), [6, 3, 2, 1]
PS_CHANNELS = 10 * OUTPUT * OUTPUT


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: torch's)")
    parser.add_argument("--passes", type=int, default=10, help="passes over all the measurements")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement and pass")
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes for the busy condition")
    parser.add_argument("--no-spin", action="store_true", help="idle worker threads sleep instead of spinning")
    parser.add_argument("--serve-onnxruntime", action="store_true", help=argparse.SUPPRESS)  # the peer process
    return parser.parse_args()


def timed(fn):
    """``sample(repeats)``: one warm-up call of ``fn``, then the seconds of ``repeats`` calls."""

    def sample(repeats: int) -> list[float]:
        fn()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        return seconds

    return sample


def median_ms(samplers: dict, repeats: int, passes: int) -> dict:
    """Median milliseconds of each measurement (:func:`timed`, or :class:`PeerProcess`'s) over
    ``passes`` passes of ``repeats`` calls, the measurements interleaved pass by pass so that a
    burst of load spreads over all of them."""
    times: dict = {name: [] for name in samplers}
    for _ in range(passes):
        for name, sample in samplers.items():
            times[name] += sample(repeats)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


class PeerProcess:
    """The onnxruntime sessions in a process of their own (this script with
    ``--serve-onnxruntime``), timed there on request, one line of JSON each way."""

    def __init__(self, args):
        command = [sys.executable, __file__, "--serve-onnxruntime", "--threads", str(args.threads)]
        self.proc = subprocess.Popen(command + (["--no-spin"] if args.no_spin else []), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.names = json.loads(self._reply())

    def _reply(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the onnxruntime process stopped (its error output is above)")
        return line

    def sampler(self, name: str):
        def sample(repeats: int) -> list[float]:
            self.proc.stdin.write(json.dumps([name, repeats]) + "\n")
            self.proc.stdin.flush()
            return json.loads(self._reply())

        return sample

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def serve_onnxruntime(args: argparse.Namespace) -> None:
    """The peer process: build the sessions (checked against rfmap's results), say their
    names, then time what is asked until the input ends."""
    peers = Suite(args, onnxruntime_here=True).peers
    samplers = {name: timed(fn) for (name, library), fn in peers.items() if library == "onnxruntime"}
    print(json.dumps(list(samplers)), flush=True)
    for line in sys.stdin:
        name, repeats = json.loads(line)
        print(json.dumps(samplers[name](repeats)), flush=True)


@contextlib.contextmanager
def busy(processes: int):
    """``processes`` Python processes spinning ``while True: pass`` for the duration."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    time.sleep(1.0)  # let them reach full speed
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


class Suite:
    """The inputs, the peers and the timed functions; onnxruntime's sessions in a
    :class:`PeerProcess` unless ``onnxruntime_here``."""

    def __init__(self, args, onnxruntime_here: bool = False):
        import numpy as np
        import onnxruntime as ort
        import torch

        from rfmap.ops import ps_roi_align, ps_roi_pool, roi_align, roi_pool, spp_pool

        self.np, self.ort, self.torch, self.args = np, ort, torch, args
        rng = np.random.default_rng(0)
        self.x_np = rng.standard_normal((1, CHANNELS, HEIGHT, WIDTH)).astype(np.float32)
        w, h = rng.uniform(16, 600, N_BOXES), rng.uniform(16, 600, N_BOXES)
        x1, y1 = rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h)
        self.boxes_np = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
        self.x = torch.from_numpy(self.x_np)
        self.rois = torch.cat([torch.zeros(N_BOXES, 1), torch.from_numpy(self.boxes_np)], dim=1)
        self.spp_x = torch.from_numpy(rng.standard_normal(SPP_SHAPE).astype(np.float32))
        self.ps_x = torch.from_numpy(rng.standard_normal((1, PS_CHANNELS, HEIGHT, WIDTH)).astype(np.float32))
        self.ops = {
            "roi_align": lambda x: roi_align(x, self.rois, OUTPUT, SCALE, SAMPLING),
            "roi_pool": lambda x: roi_pool(x, self.rois, OUTPUT, SCALE),
            "spp_pool": lambda x: spp_pool(x, SPP_LEVELS, "max"),
            "ps_roi_align": lambda x: ps_roi_align(x, self.rois, OUTPUT, SCALE, SAMPLING),
            "ps_roi_pool": lambda x: ps_roi_pool(x, self.rois, OUTPUT, SCALE),
        }
        self.inputs = {"roi_align": self.x, "roi_pool": self.x, "spp_pool": self.spp_x}
        self.inputs.update(ps_roi_align=self.ps_x, ps_roi_pool=self.ps_x)
        self.process = None if onnxruntime_here else PeerProcess(args)
        if self.process is None:
            self.peers = self._onnxruntime_peers()
        else:
            self.peers = {(name, "onnxruntime"): self.process.sampler(name) for name in self.process.names}
            self.peers.update({key: timed(fn) for key, fn in self._torchvision_peers().items()})

    def _session(self, model):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.args.threads
        options.inter_op_num_threads = 1
        if self.args.no_spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return self.ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _onnxruntime_peers(self) -> dict:
        import io

        import onnx
        from onnx import TensorProto, helper

        from rfmap.ops import spp_pool

        np, torch = self.np, self.torch

        def graph(node, inputs):
            value = helper.make_tensor_value_info
            g = helper.make_graph([node], node.op_type, inputs, [value("Y", TensorProto.FLOAT, None)])
            return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)

        floats = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("X", "R")]
        align = self._session(
            graph(
                helper.make_node(
                    "RoiAlign", ["X", "R", "B"], ["Y"], output_height=OUTPUT, output_width=OUTPUT,
                    sampling_ratio=SAMPLING, spatial_scale=SCALE, coordinate_transformation_mode="output_half_pixel",
                ),  # fmt: skip
                floats + [helper.make_tensor_value_info("B", TensorProto.INT64, None)],
            )
        )
        pool = self._session(
            graph(helper.make_node("MaxRoiPool", ["X", "R"], ["Y"], pooled_shape=[OUTPUT, OUTPUT], spatial_scale=SCALE), floats)
        )

        class SPP(torch.nn.Module):
            def forward(self, x):
                return spp_pool(x, SPP_LEVELS, "max")

        buffer = io.BytesIO()
        torch.onnx.export(SPP(), (self.spp_x,), buffer, dynamo=False, input_names=["X"])
        spp = self._session(onnx.load_from_string(buffer.getvalue()))
        feeds = {
            "roi_align": (align, {"X": self.x_np, "R": self.boxes_np, "B": np.zeros(N_BOXES, dtype=np.int64)}),
            "roi_pool": (pool, {"X": self.x_np, "R": self.rois.numpy()}),
            "spp_pool": (spp, {"X": self.spp_x.numpy()}),
        }
        with torch.no_grad():  # the compared computations give the same results
            for name, (session, feed) in feeds.items():
                ours = self.ops[name](self.inputs[name]).numpy()
                np.testing.assert_allclose(ours, session.run(None, feed)[0], rtol=1e-4, atol=1e-5)
        return {(name, "onnxruntime"): (lambda s=s, f=f: s.run(None, f)) for name, (s, f) in feeds.items()}

    def _torchvision_peers(self) -> dict:
        try:
            import torchvision.ops as tv
        except ImportError:
            return {}
        rois = self.rois
        return {
            ("roi_align", "torchvision"): lambda: tv.roi_align(self.x, rois, OUTPUT, SCALE, SAMPLING),
            ("roi_pool", "torchvision"): lambda: tv.roi_pool(self.x, rois, OUTPUT, SCALE),
            ("ps_roi_align", "torchvision"): lambda: tv.ps_roi_align(self.ps_x, rois, OUTPUT, SCALE, SAMPLING),
            ("ps_roi_pool", "torchvision"): lambda: tv.ps_roi_pool(self.ps_x, rois, OUTPUT, SCALE),
        }

    def functions(self) -> dict:
        torch = self.torch
        fns = {}
        for name, op in self.ops.items():
            x = self.inputs[name]
            xg = x.clone().requires_grad_()
            with torch.no_grad():
                grad = torch.randn_like(op(x))

            def forward(op=op, x=x):
                with torch.no_grad():
                    op(x)

            def forward_backward(op=op, xg=xg, grad=grad):
                xg.grad = None
                op(xg).backward(grad)

            fns[(name, "rfmap")] = timed(forward)
            fns[(name, "rfmap fwd+bwd")] = timed(forward_backward)
        fns.update(self.peers)
        return fns


def report(times: dict, names) -> list[str]:
    rows = []
    for name in names:
        ours, both = times[(name, "rfmap")], times[(name, "rfmap fwd+bwd")]
        cells = [f"{name:<13} rfmap {ours:7.2f} ms  fwd+bwd {both:7.2f} ms ({both / ours:4.2f}x fwd)"]
        for peer in ("onnxruntime", "torchvision"):
            if (name, peer) in times:
                theirs = times[(name, peer)]
                cells.append(f"{peer} {theirs:7.2f} ms ({theirs / ours:4.2f}x)")
        rows.append("  ".join(cells))
    return rows


def main(args: argparse.Namespace) -> None:
    if args.no_spin:  # read by OpenMP when torch loads it
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import onnxruntime as ort
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.serve_onnxruntime:
        serve_onnxruntime(args)
        return
    suite = Suite(args)
    from rfmap.ops import native_status
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s) each, "
        f"rfmap's CPU loops: {native_status()}"
        f"{', no spinning' if args.no_spin else ''}, {os.cpu_count()} CPUs"
    )
    print(
        f"RoI ops: {N_BOXES} RoIs on (1, {CHANNELS}, {HEIGHT}, {WIDTH}), {OUTPUT}x{OUTPUT}, scale 1/16, "
        f"sampling_ratio {SAMPLING}; spp_pool: {SPP_SHAPE} levels {SPP_LEVELS}; ps ops: {PS_CHANNELS} channels"
    )
    fns = suite.functions()
    results = {}
    try:
        for condition in ("idle", "busy"):
            context = busy(args.busy) if condition == "busy" else contextlib.nullcontext()
            with context:
                load = os.getloadavg()[0]
                results[condition] = median_ms(fns, args.repeats, args.passes)
            label = "idle" if condition == "idle" else f"busy ({args.busy} CPU-bound processes started)"
            print(f"\n{label}; load average {load:.1f} at the start")
            for row in report(results[condition], suite.ops):
                print("  " + row)
    finally:
        if suite.process is not None:
            suite.process.close()
    print("\nratios (onnxruntime / rfmap forward, target >= 1.5; rfmap fwd+bwd / fwd, target <= 2.5):")
    for name in suite.ops:
        cells = []
        for condition, times in results.items():
            if (name, "onnxruntime") in times:
                cells.append(f"{condition} vs onnxruntime {times[(name, 'onnxruntime')] / times[(name, 'rfmap')]:4.2f}x")
            cells.append(f"{condition} fwd+bwd/fwd {times[(name, 'rfmap fwd+bwd')] / times[(name, 'rfmap')]:4.2f}x")
        print(f"  {name:<13} " + "  ".join(cells))


if __name__ == "__main__":
    main(parse_args())
