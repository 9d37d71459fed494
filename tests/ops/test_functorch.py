"""The RoI ops under functorch transforms (torch.func.grad, vjp, jacrev, vmap, jvp, jacfwd,
hessian), and their double backward.

torch.library custom ops' own autograd does not run under these transforms yet
(pytorch/pytorch#168393); rfmap.ops runs each op there through an autograd.Function with the
same formulas, and vmap through a rule that folds the samples into the image batch.  The
ground truth is torch.autograd and a loop over the samples on the same op, which must agree
bit for bit, and, for the double backward, gradgradcheck's finite differences."""

import warnings

import pytest
import torch

from rfmap.ops import MultiScaleRoIAlign, ps_roi_align, ps_roi_pool, roi_align, roi_pool, spp_pool

# torch's forward mode loads its decompositions through torch.jit.script, which warns
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

GEN = torch.Generator().manual_seed(0)
X = torch.randn(2, 8, 11, 13, dtype=torch.float64, generator=GEN)
# the third box has x2 < x1 and y2 < y1, the fourth reaches past the map
ROIS = torch.tensor([[0, 1.0, 1, 9, 9], [1, 0, 2, 12, 7], [0, 5, 5, 2, 3], [1, -3, 4, 30, 15]], dtype=torch.float64)
OPS = {
    "roi_align": lambda t: roi_align(t, ROIS, (3, 2), 1.0, 2),
    "roi_align aligned adaptive": lambda t: roi_align(t, ROIS, 2, 0.5, 0, True),
    "roi_pool": lambda t: roi_pool(t, ROIS, (2, 3), 1.0),
    "spp_pool max": lambda t: spp_pool(t, [3, 2, 1], "max"),
    "spp_pool avg": lambda t: spp_pool(t, [4, 2, 1], "avg"),
    "ps_roi_align": lambda t: ps_roi_align(t, ROIS, 2, 1.0, 2),
    "ps_roi_pool": lambda t: ps_roi_pool(t, ROIS, 2, 1.0),
}


def loss(op):
    weights = torch.randn(op(X).shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return lambda t: (op(t) * weights).sum()


def autograd_grad(f, x):
    x = x.clone().requires_grad_()
    f(x).backward()
    return x.grad


@pytest.mark.parametrize("name", list(OPS))
def test_grad_equals_autograd(name):
    f = loss(OPS[name])
    assert torch.equal(torch.func.grad(f)(X), autograd_grad(f, X))


STACKED = torch.randn(3, *X.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def no_fallback():
    # vmap of an op without a rule of its own loops over the samples and says so in a warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*batching rule")
        yield


@pytest.mark.parametrize("name", list(OPS))
def test_vmap(name, no_fallback):
    op = OPS[name]
    assert torch.equal(torch.func.vmap(op)(STACKED), torch.stack([op(x) for x in STACKED]))


@pytest.mark.parametrize("name", ["roi_align", "roi_pool", "spp_pool max", "ps_roi_pool"])
def test_vmap_over_another_dim(name, no_fallback):
    # the samples stacked along dim 1 (after the images) and returned along dim 2
    op = OPS[name]
    moved = STACKED.movedim(0, 1)
    expected = torch.stack([op(x) for x in STACKED], dim=2)
    assert torch.equal(torch.func.vmap(op, in_dims=1, out_dims=2)(moved), expected)


@pytest.mark.parametrize("name", list(OPS))
def test_per_sample_grads(name, no_fallback):
    # vmap of grad: one gradient per stacked input, each the one autograd gives it alone
    f = loss(OPS[name])
    per_sample = torch.func.vmap(torch.func.grad(f))(STACKED)
    for x, g in zip(STACKED, per_sample):
        assert torch.equal(g, autograd_grad(f, x))


@pytest.mark.parametrize("name", ["roi_align", "roi_pool", "spp_pool max", "ps_roi_align"])
def test_grad_of_vmap(name, no_fallback):
    f = OPS[name]
    expected = autograd_grad(lambda t: torch.stack([f(x) for x in t]).square().sum(), STACKED)
    assert torch.equal(torch.func.grad(lambda t: torch.func.vmap(f)(t).square().sum())(STACKED), expected)


@pytest.mark.parametrize("op", [roi_align, roi_pool, ps_roi_pool])
def test_vmap_over_boxes(op, no_fallback):
    # each sample its own boxes (moved, scaled), with its own map or all on the same one
    boxes = torch.stack([ROIS, ROIS + torch.tensor([0.0, 1, 0, 1, 0], dtype=torch.float64), ROIS * 0.5])
    boxes[2, :, 0] = ROIS[:, 0]
    both = torch.func.vmap(lambda x, b: op(x, b, 2, 1.0))(STACKED, boxes)
    assert torch.equal(both, torch.stack([op(x, b, 2, 1.0) for x, b in zip(STACKED, boxes)]))
    only_boxes = torch.func.vmap(lambda b: op(X, b, 2, 1.0))(boxes)
    assert torch.equal(only_boxes, torch.stack([op(X, b, 2, 1.0) for b in boxes]))


@pytest.mark.parametrize("name", ["roi_align", "roi_pool", "spp_pool max", "ps_roi_pool"])
def test_vjp_and_jacrev(name):
    op = OPS[name]
    out, vjp = torch.func.vjp(op, X)
    cotangent = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = X.clone().requires_grad_()
    (expected,) = torch.autograd.grad(op(x), x, cotangent)
    assert torch.equal(out, op(X)) and torch.equal(vjp(cotangent)[0], expected)
    jacobian = torch.func.jacrev(op)(X)
    assert jacobian.shape == out.shape + X.shape
    torch.testing.assert_close(torch.einsum("...,...ijkl->ijkl", cotangent, jacobian), expected, rtol=1e-12, atol=1e-12)


def test_plain_input_under_a_transform():
    # a transform is active, but the op's own input does not depend on what it differentiates
    def f(scale):
        return spp_pool(X, [2, 1], "max").sum() * scale + roi_pool(X, ROIS, 2, 1.0).sum() * scale**2

    scale = torch.tensor(1.5, dtype=torch.float64)
    expected = spp_pool(X, [2, 1], "max").sum() + 3.0 * roi_pool(X, ROIS, 2, 1.0).sum()
    torch.testing.assert_close(torch.func.grad(f)(scale), expected, rtol=1e-12, atol=0)


def test_multiscale_grad():
    pooler = MultiScaleRoIAlign(["p2", "p3"], 3, 2)
    features = {"p2": X, "p3": X[:, :, ::2, ::2].contiguous()}
    boxes = [ROIS[ROIS[:, 0] == i, 1:] * 4 for i in range(2)]

    def f(p2):
        return pooler({"p2": p2, "p3": features["p3"]}, boxes, [(44, 52)] * 2).square().sum()

    assert torch.equal(torch.func.grad(f)(X), autograd_grad(f, X))


@pytest.mark.parametrize("name", ["roi_pool", "spp_pool max", "spp_pool avg"])
def test_double_backward(name):
    # the max ops' backward is linear in its gradient: its own backward gathers at the argmax
    # (the random map has no ties: finite differences see the same argmax)
    small = X[:, :3, :7, :8].clone().requires_grad_()
    assert torch.autograd.gradgradcheck(OPS[name], (small,))


def test_double_backward_of_the_backward_ops_is_their_adjoint():
    # <backward(g), h> == <g, adjoint(h)> for random g, h: what gradgradcheck relies on, checked
    # exactly on the ops themselves
    for name in ("roi_pool", "spp_pool max", "spp_pool avg"):
        op = OPS[name]
        x = X.clone().requires_grad_()
        out = op(x)
        g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
        h = torch.randn(X.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        (backward,) = torch.autograd.grad(out, x, g, create_graph=True)
        (adjoint,) = torch.autograd.grad(backward, g, h)
        torch.testing.assert_close((backward * h).sum(), (g * adjoint).sum(), rtol=1e-12, atol=1e-12)
        assert adjoint.abs().sum() > 0, name


@pytest.mark.parametrize("name", list(OPS))
def test_jvp_is_the_transpose_of_autograd(name, no_fallback):
    # forward mode: <J v, u> == <v, J^T u>, J^T u from torch.autograd
    op = OPS[name]
    v = torch.randn(X.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out, jv = torch.func.jvp(op, (X,), (v,))
    u = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x = X.clone().requires_grad_()
    (vjp,) = torch.autograd.grad(op(x), x, u)
    assert torch.equal(out, op(X))
    torch.testing.assert_close((jv * u).sum(), (v * vjp).sum(), rtol=1e-12, atol=1e-12)
    assert jv.abs().sum() > 0


@pytest.mark.parametrize("name", ["roi_pool", "spp_pool max"])
def test_forward_mode_without_grad_mode(name):
    # forward mode needs no grad mode: the max ops still keep their argmax for the tangent
    op = OPS[name]
    v = torch.randn(X.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    expected = torch.func.jvp(op, (X,), (v,))
    with torch.no_grad():
        out, tangent = torch.func.jvp(op, (X,), (v,))
    assert torch.equal(out, expected[0]) and torch.equal(tangent, expected[1])


@pytest.mark.parametrize("name", ["roi_align aligned adaptive", "roi_pool", "spp_pool max", "spp_pool avg", "ps_roi_pool"])
def test_jacfwd_and_hessian(name, no_fallback):
    op = OPS[name]
    small = X[:, :4, :5, :6].contiguous()
    assert torch.equal(torch.func.jacfwd(op)(small), torch.func.jacrev(op)(small))

    def f(t):
        return op(t).pow(3).sum()

    hessian = torch.func.hessian(f)(small)
    x = small.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    rows = [torch.autograd.grad(g.flatten()[i], x, retain_graph=True)[0] for i in range(g.numel())]
    torch.testing.assert_close(hessian, torch.stack(rows).view(hessian.shape), rtol=1e-10, atol=1e-12)
    assert hessian.abs().sum() > 0
