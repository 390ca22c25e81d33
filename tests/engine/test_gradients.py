"""Every backward against central finite differences (float64, per element), and torch's
accumulation semantics for ``.grad``."""
import numpy as np
import pytest
import torch

import handbp as hb
from tests.helpers.fd import ATOL, RTOL, fd_gradient, module_gradients, rng  # noqa: F401  (rng is a fixture)

IN, OUT = 4, 3


def make_module(name, rng):
    return {
        "Linear": lambda: hb.Linear(IN, OUT, rng=rng),
        "Linear-nobias": lambda: hb.Linear(IN, OUT, bias=False, rng=rng),
        "Sigmoid": hb.Sigmoid,
        "Tanh": hb.Tanh,
        "ReLU": hb.ReLU,
        "LeakyReLU": lambda: hb.LeakyReLU(0.1),
        "Identity": hb.Identity,
        "Softmax-dim-1": lambda: hb.Softmax(dim=-1),
        "Softmax-dim0": lambda: hb.Softmax(dim=0),
        "Sequential": lambda: hb.Sequential(hb.Linear(IN, 5, rng=rng), hb.Tanh(), hb.Linear(5, 5, bias=False, rng=rng),
                                            hb.LeakyReLU(0.2), hb.Linear(5, OUT, rng=rng), hb.Softmax()),
        # torch's init (weights of ±0.5, not the notebook's 0.01) so that no gradient is tiny
        "DNN": lambda: hb.DNN(2, 5, IN, OUT, activation=hb.Sigmoid, init="torch", rng=rng),
    }[name]()


MODULES = ["Linear", "Linear-nobias", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "Softmax-dim-1",
           "Softmax-dim0", "Sequential", "DNN"]
BATCHES = {"unbatched": (IN,), "batch1": (1, IN), "batch5": (5, IN)}


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("name", MODULES)
def test_module_backward_matches_finite_differences(name, batch, rng):
    m = make_module(name, rng)
    x = rng.normal(size=BATCHES[batch])
    x = np.where(np.abs(x) < 0.2, 0.5, x)          # every input ≥ 0.2 away from ReLU's kink at 0
    y = m(x)
    dy = rng.normal(size=y.shape)
    dx = m.backward(dy)
    assert dx.shape == x.shape
    fd_dx, fd_params = module_gradients(m, x, dy)
    np.testing.assert_allclose(dx, fd_dx, rtol=RTOL, atol=ATOL, err_msg="dL/dx")
    names = [n for n, _ in m.named_parameters()]
    assert names == list(fd_params)
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, pname
        np.testing.assert_allclose(p.grad, fd_params[pname], rtol=RTOL, atol=ATOL, err_msg=f"dL/d{pname}")


def test_every_layer_kind_has_parameters_checked(rng):
    """The parametrization above covers weights and biases: the containers have both."""
    names = [n for n, _ in make_module("DNN", rng).named_parameters()]
    assert names == [f"{i}.{k}" for i in (0, 2, 4, 6) for k in ("weight", "bias")]
    assert [n for n, _ in make_module("Linear-nobias", rng).named_parameters()] == ["weight"]


# -- losses: dL/dpred ---------------------------------------------------------------------------
C = 3


def torch_value(name, pred, target):
    p, t = torch.from_numpy(pred), torch.from_numpy(np.asarray(target))
    F = torch.nn.functional
    return {
        "MeanSquaredError": lambda: 0.5 * torch.mean((p - t) ** 2),
        "MSELoss-mean": lambda: F.mse_loss(p, t),
        "MSELoss-sum": lambda: F.mse_loss(p, t, reduction="sum"),
        "CrossEntropy-index": lambda: F.cross_entropy(p, t),
        "CrossEntropy-index-sum": lambda: F.cross_entropy(p, t, reduction="sum"),
        "CrossEntropy-prob": lambda: F.cross_entropy(p, t),
        "BCEWithLogits": lambda: F.binary_cross_entropy_with_logits(p, t),
        "BCEWithLogits-sum": lambda: F.binary_cross_entropy_with_logits(p, t, reduction="sum"),
    }[name]().item()


LOSSES = {
    "MeanSquaredError": (hb.MeanSquaredError, "real"),
    "MSELoss-mean": (lambda: hb.MSELoss(), "real"),
    "MSELoss-sum": (lambda: hb.MSELoss(reduction="sum"), "real"),
    "CrossEntropy-index": (hb.CrossEntropyLoss, "index"),
    "CrossEntropy-index-sum": (lambda: hb.CrossEntropyLoss(reduction="sum"), "index"),
    "CrossEntropy-prob": (hb.CrossEntropyLoss, "prob"),
    "BCEWithLogits": (hb.BCEWithLogitsLoss, "unit"),
    "BCEWithLogits-sum": (lambda: hb.BCEWithLogitsLoss(reduction="sum"), "unit"),
}
PRED_SHAPES = {"unbatched": (C,), "batch1": (1, C), "batch6": (6, C)}


def make_target(kind, shape, rng):
    if kind == "index":                  # (N,) for (N, C) logits, () for (C,) logits
        return rng.integers(0, shape[-1], shape[:-1])
    if kind == "prob":
        p = rng.uniform(0.1, 1.0, shape)
        return p / p.sum(axis=-1, keepdims=True)
    if kind == "unit":
        return rng.uniform(size=shape)
    return rng.normal(size=shape)


@pytest.mark.parametrize("shape", list(PRED_SHAPES))
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_backward_matches_finite_differences(name, shape, rng):
    make_loss, kind = LOSSES[name]
    loss = make_loss()
    pred = rng.normal(size=PRED_SHAPES[shape]) * 2
    target = make_target(kind, pred.shape, rng)
    value = loss(pred, target)
    assert isinstance(value, float)
    assert value == pytest.approx(torch_value(name, pred, target), rel=1e-12, abs=1e-15)
    g = loss.backward()
    assert g.shape == pred.shape and g.dtype == np.float64
    fd = fd_gradient(lambda: loss(pred, target), pred)
    np.testing.assert_allclose(g, fd, rtol=RTOL, atol=ATOL)


def test_mean_squared_error_is_half_the_mean_and_its_gradient_has_the_1_over_n(rng):
    h, y = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    loss = hb.MeanSquaredError()
    assert loss(h, y) == pytest.approx(0.5 * np.mean((h - y) ** 2), rel=1e-15)
    np.testing.assert_allclose(loss.backward(), (h - y) / 8, rtol=1e-15, atol=0)
    np.testing.assert_allclose(loss.grad(), (h - y) / 8, rtol=1e-15, atol=0)   # the notebook's name


@pytest.mark.parametrize("name", ["MSELoss-mean", "CrossEntropy-index", "BCEWithLogits"])
def test_loss_backward_scales_by_its_upstream_gradient(name, rng):
    make_loss, kind = LOSSES[name]
    loss = make_loss()
    pred = rng.normal(size=(5, C))
    loss(pred, make_target(kind, pred.shape, rng))
    np.testing.assert_allclose(loss.backward(2.5), 2.5 * loss.backward(), rtol=1e-15, atol=0)


# -- accumulation -------------------------------------------------------------------------------
ACCUMULATE = {"unbatched": (IN,), "batch5": (5, IN)}


@pytest.mark.parametrize("batch", list(ACCUMULATE))
def test_backward_adds_into_grad(batch, rng):
    m = make_module("Sequential", rng)
    x = rng.normal(size=ACCUMULATE[batch])
    dy = rng.normal(size=m(x).shape)
    m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    start = {n: rng.normal(size=p.shape) for n, p in m.named_parameters()}
    for n, p in m.named_parameters():
        p.grad = start[n].copy()
    m.backward(dy)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, start[n] + once[n], rtol=1e-14, atol=0, err_msg=n)


@pytest.mark.parametrize("batch", list(ACCUMULATE))
def test_two_backward_calls_double_the_grad(batch, rng):
    m = make_module("DNN", rng)
    x = rng.normal(size=ACCUMULATE[batch])
    dy = rng.normal(size=m(x).shape)
    dx1 = m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    dx2 = m.backward(dy)                              # the same forward's cache, used again
    np.testing.assert_array_equal(dx1, dx2)           # dx is returned, never accumulated
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-15, atol=0, err_msg=n)


def test_zero_grad_sets_every_grad_to_none(rng):
    m = make_module("Sequential", rng)
    assert all(p.grad is None for p in m.parameters())
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    opt = hb.optim.SGD(m.parameters(), lr=0.1)
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    m.zero_grad(set_to_none=False)                    # torch's other mode: zeros in place
    assert all(p.grad is not None and p.grad.shape == p.shape and not p.grad.any() for p in m.parameters())


def test_loss_then_model_backward_accumulates_the_chain(rng):
    """Two losses' gradients summed by two backward passes equal the gradient of their sum."""
    m = make_module("DNN", rng)
    x, y1, y2 = rng.normal(size=(5, IN)), rng.uniform(size=(5, OUT)), rng.uniform(size=(5, OUT))
    loss = hb.MSELoss()
    for y in (y1, y2):
        loss(m(x), y)
        m.backward(loss.backward())
    total = {n: p.grad.copy() for n, p in m.named_parameters()}
    f = lambda: loss(m.forward(x), y1) + loss(m.forward(x), y2)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(total[n], fd_gradient(f, p.data), rtol=RTOL, atol=ATOL, err_msg=n)


def test_gradients_do_not_alias_the_callers_arrays(rng):
    lin = hb.Linear(IN, OUT, rng=rng)
    for shape in ((IN,), (1, IN)):
        lin.zero_grad()
        x = rng.normal(size=shape)
        dy = rng.normal(size=lin(x).shape)
        lin.backward(dy)
        kept = lin.weight.grad.copy(), lin.bias.grad.copy()
        dy[...] = 0
        np.testing.assert_array_equal(lin.weight.grad, kept[0])
        np.testing.assert_array_equal(lin.bias.grad, kept[1])
