"""The front ends agree, op by op, driven by the op registry (issue 9).

For every op of :func:`rfmap.core.registry.registry` that has both PyTorch and ONNX rules,
tests/agree_examples.py holds small models exercising it; each is analyzed as an
``nn.Module`` and as its ONNX export (TorchScript exporter at each opset the example lists,
and the dynamo exporter), and the two analyses must give

* the same output row (output size, stride, RF, padding, center of cell 0, shift invariance),
* the same per-layer rows for the window ops (convolutions, poolings, transposed
  convolutions), matched in order,
* the same support (per axis) for the corner cells and two interior cells of the output.

An op with both mappings and no example fails the test, so the next op added comes with
one.  The examples must reach every such op's PyTorch rule and ONNX rule (an exporter that
rewrites the op into others -- ``LPPool2d`` into ``Pow``/``AveragePool`` -- still has to
agree, but does not exercise the ONNX rule; such ops add an example whose ONNX model is
written by hand, ``Example.onnx``, checked against the module with onnxruntime).

Both sides are read with ``strict=True``: an op without a rule raises instead of being
treated as pointwise or global.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from agree_examples import EXAMPLES, Example  # noqa: E402

from rfmap.core.analysis import Analysis  # noqa: E402
from rfmap.core.registry import registry  # noqa: E402
from rfmap.frontends import load  # noqa: E402
from rfmap.frontends.convert import Front  # noqa: E402


def both_front_ends() -> set[str]:
    """The built-in ops the registry maps from PyTorch and from ONNX."""
    return {name for name, op in registry().defs.items() if op.torch and op.onnx and not op.user}


def test_every_op_mapped_by_both_front_ends_has_an_example():
    missing = sorted(both_front_ends() - set(EXAMPLES))
    assert not missing, f"ops with PyTorch and ONNX rules but no example in tests/agree_examples.py: {missing}"
    stale = sorted(set(EXAMPLES) - both_front_ends())
    assert not stale, f"examples for ops that are not mapped by both front ends: {stale}"


# -- which rules a conversion reached ----------------------------------------------------------


class RuleLog:
    """Records, per front end, the ops whose converters the front ends call."""

    def __init__(self):
        self.owner: dict[int, set[str]] = {}
        for name, op in registry().defs.items():
            for rule in op.torch + op.onnx:
                self.owner.setdefault(id(rule.convert), set()).add(name)
        self.hits: dict[str, set[str]] = {"torch": set(), "onnx": set()}

    @contextlib.contextmanager
    def recording(self):
        original = Front.convert
        log = self

        def convert(front, *, kind, convert, **kw):
            if convert is not None:
                log.hits["onnx" if kind == "onnx" else "torch"].update(log.owner.get(id(convert), ()))
            return original(front, kind=kind, convert=convert, **kw)

        Front.convert = convert
        try:
            yield self
        finally:
            Front.convert = original


LOG = RuleLog()


# -- the comparison ------------------------------------------------------------------------------


def output_row(a):
    r = a.output
    return r.output_size, r.stride, r.rf, r.padding, r.center0, r.shift_invariant


def window_rows(a):
    """The rows of the window ops (convolutions, poolings, transposed convolutions), in order."""
    return [(r.output_size, r.stride, r.rf, r.padding, r.center0) for r in a.layers if _window_op(r.op)]


def _window_op(op: str) -> bool:
    op = op.lower().replace("_", "")
    return any(op.startswith(w) for w in ("conv", "maxpool", "avgpool", "lppool", "maxunpool", "convtranspose"))


def probe_cells(size):
    h, w = size
    return sorted({(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2), (min(1, h - 1), min(2, w - 1))})


def assert_same(via_torch, via_onnx, label):
    assert output_row(via_onnx) == output_row(via_torch), f"{label}: output rows differ"
    assert window_rows(via_onnx) == window_rows(via_torch), f"{label}: window rows differ"
    for cell in probe_cells(via_torch.output.output_size):
        got = via_onnx.support(via_onnx.output.name, cell)
        want = via_torch.support(via_torch.output.name, cell)
        assert all(np.array_equal(g, t) for g, t in zip(got, want)), f"{label}: supports of cell {cell} differ"


def export(model, size, opset, dynamo=False):
    f = io.BytesIO()
    x = torch.randn(1, 3, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, verbose=False)
            return program.model_proto
        torch.onnx.export(model, (x,), f, dynamo=False, opset_version=opset)
    return onnx.load_from_string(f.getvalue())


def analyze_both(example: Example, opset: int, dynamo: bool = False):
    """The example analyzed as a module and as its ONNX export (or its hand-written ONNX twin)."""
    torch.manual_seed(0)
    model = example.build().eval()
    with warnings.catch_warnings(), LOG.recording():
        warnings.simplefilter("ignore")
        via_torch = analyze_strictly(model, example.size)
        if example.onnx is not None:
            proto = example.onnx(model, example.size, opset)
            check_twin(model, proto, example.size)
        else:
            proto = export(model, example.size, opset, dynamo)
        via_onnx = analyze_strictly(proto, example.size)
    return via_torch, via_onnx, proto


def analyze_strictly(source, size):
    """An op without a rule raises (misaligned merges are allowed: they are exact too)."""
    return Analysis(load(source, size, strict=True), size)


def check_twin(model, proto, size):
    """A hand-written ONNX model computes what the module computes (onnxruntime)."""
    ort = pytest.importorskip("onnxruntime")
    x = torch.randn(1, 3, *size)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {proto.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


CASES = [(op, ex, opset) for op, exs in sorted(EXAMPLES.items()) for ex in exs for opset in ex.opsets]


@pytest.mark.parametrize("op,example,opset", CASES, ids=[f"{op}-{ex.name}-opset{o}" for op, ex, o in CASES])
def test_module_and_its_onnx_export_agree(op, example, opset):
    via_torch, via_onnx, _ = analyze_both(example, opset)
    assert via_onnx.input_size == via_torch.input_size == example.size
    assert_same(via_torch, via_onnx, f"{op}/{example.name} at opset {opset}")


def test_every_op_reaches_its_pytorch_and_onnx_rules():
    """The examples exercise what they are listed for (run here if the tests above did not)."""
    for op in sorted(both_front_ends()):
        if op not in LOG.hits["torch"] or op not in LOG.hits["onnx"]:
            for example in EXAMPLES.get(op, []):
                for opset in example.opsets:
                    analyze_both(example, opset)
    for front in ("torch", "onnx"):
        missed = sorted(both_front_ends() - LOG.hits[front])
        assert not missed, f"no example reaches the {front} rule of: {missed}"


DYNAMO = [(op, ex) for op, exs in sorted(EXAMPLES.items()) for ex in exs if ex.onnx is None]


@pytest.mark.slow
@pytest.mark.parametrize("op,example", DYNAMO, ids=[f"{op}-{ex.name}" for op, ex in DYNAMO])
def test_module_and_its_dynamo_export_agree(op, example):
    """The same with torch.onnx.export(dynamo=True) (torch.export, then onnxscript), opset 18."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    via_torch, via_onnx, _ = analyze_both(example, 18, dynamo=True)
    assert_same(via_torch, via_onnx, f"{op}/{example.name} (dynamo exporter)")
