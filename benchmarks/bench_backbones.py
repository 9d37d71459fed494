"""Cost of analyzing modern backbones: `python benchmarks/bench_backbones.py [--models a,b,c]`.

Printed, each the best of several runs, against one forward pass of the same model on real
data at the same size, measured in the same run (the peer: what running the model once costs):

* a stack of 10 GhostNetV2 DFC gates (tests/backbone_models.py: pool by 2, resize back to
  the map's odd size, multiply) at 29x31 and 229x201 -- before the explicit box layouts
  its periods multiplied by 29 per block;
* with timm installed (``pip install --no-deps timm``): ghostnetv2_100 at 232x200, and
  per architecture of a list (``features_only=True``, as users build backbones): analyze
  time, ops without a rule, and whether the capture fell back from torch.fx to torch.export.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import backbone_models  # noqa: E402
import torch  # noqa: E402
from _timm import import_timm  # noqa: E402

import rfmap  # noqa: E402
from rfmap.frontends.torch.capture import trace_module  # noqa: E402

TIMM_MODELS = [
    "resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224", "tresnet_m", "ghostnetv2_100", "ecaresnet26t",
    "xception41", "legacy_xception", "efficientnet_b0", "mobilenetv3_large_100", "regnety_016", "cspdarknet53",
    "res2net50_26w_4s", "skresnet18", "dla34", "hrnet_w18_small", "rexnet_100", "mobilevitv2_050", "edgenext_small",
    "poolformer_s12", "maxvit_tiny_tf_224", "focalnet_tiny_srf", "inception_v3", "vovnet39a", "densenet121",
    "efficientvit_b0", "tf_efficientnet_b0", "mobilevit_xs", "pvt_v2_b0", "fastvit_t8",
]


def best(fn, repeat: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def forward_time(model, size, repeat: int = 3) -> float:
    x = torch.rand((1, 3) + tuple(size))

    def run():
        with torch.no_grad():
            model(x)

    return best(run, repeat)


def analyze_quiet(model, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = trace_module(model, size)
        rfmap.Analysis(traced.graph, size)
    return traced


def report(name, model, size, repeat=3) -> None:
    traced = analyze_quiet(model, size)
    t_rf = best(lambda: analyze_quiet(model, size), repeat)
    t_fw = forward_time(model, size, repeat)
    method = "fx" if traced.method == "fx" else "export (fell back)"
    print(f"{name:34s} {'x'.join(map(str, size)):>9s} analyze {t_rf * 1e3:8.1f} ms  forward {t_fw * 1e3:8.1f} ms  "
          f"ratio {t_rf / t_fw:6.2f}  unsupported {len(traced.unsupported):2d}  capture {method}")
    for u in traced.unsupported[:3]:
        print(f"{'':36s}- {u[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated timm architectures (default: a list of 30)")
    args = parser.parse_args()
    print("analysis time vs one forward pass of the model on real data (same run, same machine)")
    for size in ((29, 31), (229, 201)):
        report("DFC stack, 10 blocks", backbone_models.DFCStack(10).eval(), size)
    timm = import_timm()
    if timm is None:
        print("timm is not installed (pip install --no-deps timm): architectures skipped")
        return
    report("ghostnetv2_100", timm.create_model("ghostnetv2_100", pretrained=False).eval(), (232, 200), repeat=2)
    names = args.models.split(",") if args.models else TIMM_MODELS
    for name in names:
        try:
            model = timm.create_model(name, pretrained=False, features_only=True).eval()
        except Exception as exc:  # noqa: BLE001 - an architecture this timm cannot build
            print(f"{name:34s} not built by timm {timm.__version__}: {str(exc)[:80]}")
            continue
        try:
            report(name, model, (224, 224), repeat=1)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name:34s} FAILED: {type(exc).__name__}: {str(exc)[:160]}")


if __name__ == "__main__":
    main()
