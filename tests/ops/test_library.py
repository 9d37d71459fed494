"""The RoI ops as registered custom ops: torch.library.opcheck, and a detector-like module that
calls every op under torch.compile(fullgraph=True), torch.export and torch.jit.script."""

import io

import pytest
import torch
from torch import nn

from rfmap import RFMapError
from rfmap.ops import (
    PSRoIAlign,
    PSRoIPool,
    RoIAlign,
    RoIPool,
    SpatialPyramidPool,
    ps_roi_align,
    roi_align,
    roi_pool,
    spp_pool,
)

X = torch.randn(2, 8, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
ROIS = torch.tensor([[0, 1.0, 1, 30, 20], [1, 5, 3, 60, 50], [0, -4, -4, 8, 200], [1, 30, 9, 3, 2]], dtype=torch.float64)
OPS = torch.ops.rfmap
CASES = {
    "roi_align aligned": (OPS.roi_align.default, (X, ROIS, 0.25, 2, 3, 2, True)),
    "roi_align adaptive": (OPS.roi_align.default, (X, ROIS, 0.25, 3, 2, 0, False)),
    "roi_pool": (OPS.roi_pool.default, (X, ROIS, 0.25, 2, 3, True)),
    "spp_pool max": (OPS.spp_pool.default, (X, [3, 1], "max", True)),
    "spp_pool avg": (OPS.spp_pool.default, (X, [3, 2, 1], "avg", False)),
    "ps_roi_align": (OPS.ps_roi_align.default, (X, ROIS, 0.25, 2, 2, 2)),
    "ps_roi_pool": (OPS.ps_roi_pool.default, (X, ROIS, 0.25, 2, 2)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_opcheck(name):
    op, args = CASES[name]
    args = (args[0].clone().requires_grad_(), *args[1:])
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_opcheck_backward_ops():
    # the adjoints of the linear ops are custom ops too, with their own fake kernels and autograd
    grad = torch.randn(4, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    shape = tuple(X.shape)
    torch.library.opcheck(OPS._roi_align_backward.default, (grad, ROIS, 0.25, 2, 3, 2, True, *shape))
    ps_grad = torch.randn(4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(OPS._ps_roi_align_backward.default, (ps_grad, ROIS, 0.25, 2, 2, 2, *shape))
    torch.library.opcheck(OPS._ps_roi_pool_backward.default, (ps_grad, ROIS, 0.25, 2, 2, *shape))
    _, argmax = OPS.roi_pool(X, ROIS, 0.25, 2, 3, True)
    torch.library.opcheck(OPS._roi_pool_backward.default, (grad.detach(), argmax, ROIS, *shape))
    _, spp_argmax = OPS.spp_pool(X, [3, 1], "max", True)
    spp_grad = torch.randn(2, 8 * 10, dtype=torch.float64)
    torch.library.opcheck(OPS._spp_max_backward.default, (spp_grad, spp_argmax, [3, 1], *shape))
    torch.library.opcheck(OPS._spp_avg_backward.default, (torch.randn(2, 8 * 14, dtype=torch.float64), [3, 2, 1], *shape))


class Detector(nn.Module):
    """A backbone conv and every RoI op, as a detector would call them (modules and functions)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.align = RoIAlign((2, 2), 0.5, 2, True)
        self.pool = RoIPool(2, 0.5)
        self.spp = SpatialPyramidPool([2, 1], "max")
        self.ps_align = PSRoIAlign(2, 0.5, 2)
        self.ps_pool = PSRoIPool(2, 0.5)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor):
        f = self.conv(image)
        pooled = [
            self.align(f, boxes),
            self.pool(f, boxes),
            self.ps_align(f, boxes),
            self.ps_pool(f, boxes),
            roi_align(f, boxes, (2, 3), 0.5, 0, False),
            roi_pool(f, boxes, 3, 0.5),
            ps_roi_align(f, boxes, 2, 0.5),
        ]
        return torch.cat([p.flatten(1) for p in pooled], dim=1), self.spp(f) + spp_pool(f, [2, 1], "avg")


def detector_inputs():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 12, 14, generator=g)
    boxes = torch.tensor([[0, 1.0, 1, 20, 16], [1, 5, 3, 26, 22], [0, 4, 4, 8, 20], [1, 9, 9, 2, 30]])
    return image, boxes


def outputs_and_grads(model, image, boxes):
    model.zero_grad()
    out = model(image, boxes)
    (out[0].square().sum() + out[1].sum()).backward()
    return [o.detach() for o in out] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
)  # aot_eager: dynamo + AOTAutograd on the fake kernels; inductor adds code generation
def test_compile_fullgraph_forward_and_backward(backend):
    model = Detector()
    image, boxes = detector_inputs()
    expected = outputs_and_grads(model, image, boxes)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    # no graphs from the on-disk caches: their keys do not cover the ops' fake kernels, so a
    # graph compiled before a kernel's output layout changed would be reused
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        for got, want in zip(outputs_and_grads(compiled, image, boxes), expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_export_with_a_dynamic_number_of_boxes():
    model = Detector().eval()
    image, boxes = detector_inputs()
    k = torch.export.Dim("k", min=1, max=1024)
    program = torch.export.export(model, (image, boxes), dynamic_shapes={"image": None, "boxes": {0: k}})
    targets = {n.target for n in program.graph.nodes}
    assert {OPS.roi_align.default, OPS.roi_pool.default, OPS.spp_pool.default} <= targets
    for rows in (boxes, boxes[:1], boxes.repeat(3, 1)):
        for got, want in zip(program.module()(image, rows), model(image, rows)):
            torch.testing.assert_close(got, want)


def align_box_list(f: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
    return roi_align(f, boxes, [2, 2], 0.5, 2, True)


def test_script_save_and_load():
    model = Detector().eval()
    image, boxes = detector_inputs()
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for module in (scripted, loaded):
        for got, want in zip(module(image, boxes), model(image, boxes)):
            torch.testing.assert_close(got, want)
    # box lists go through the scripted conversion too
    fn = torch.jit.script(align_box_list)
    per_image = [boxes[boxes[:, 0] == i, 1:] for i in range(2)]
    order = torch.argsort(boxes[:, 0], stable=True)
    torch.testing.assert_close(fn(image, per_image), roi_align(image, boxes[order], 2, 0.5, 2, True))


def test_data_checks_hold_in_compiled_exported_and_scripted_graphs():
    model = Detector().eval()
    image, boxes = detector_inputs()
    bad_nan, bad_batch = boxes.clone(), boxes.clone()
    bad_nan[2, 3] = float("nan")
    bad_batch[1, 0] = 2
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    program = torch.export.export(model, (image, boxes)).module()
    scripted = torch.jit.script(model)
    for run in (compiled, program, scripted):
        with pytest.raises(Exception, match=r"box 2 has a value that is not finite"):
            run(image, bad_nan)
        with pytest.raises(Exception, match=r"box 1 has batch index 2, out of range for a batch of 2"):
            run(image, bad_batch)
    with pytest.raises(RFMapError):  # eager and compiled raise RFMapError itself
        compiled(image, bad_nan)


def test_ops_in_a_forked_child_and_from_several_threads():
    # the worker pool of rfmap.ops._threads: a forked child (as DataLoader workers are) starts
    # its own, and concurrent callers share it
    import multiprocessing
    import threading

    image, boxes = detector_inputs()
    expected = roi_align(image, boxes, 3, 0.5, 2, True)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        got = pool.apply_async(roi_align, (image, boxes, 3, 0.5, 2, True)).get(timeout=120)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    results = [None] * 4

    def call(i):
        results[i] = roi_pool(image, boxes, 2, 0.5)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(torch.equal(r, roi_pool(image, boxes, 2, 0.5)) for r in results)
