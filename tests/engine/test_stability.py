"""Numeric stability: inputs of ±1e4 give no floating-point warning of any kind (overflow, underflow,
invalid, divide) and finite values, forward and backward, equal to torch's."""
import warnings

import numpy as np
import pytest
import torch

import handbp as hb

F = torch.nn.functional
BIG = np.array([[-1e4, -800.0, -50.0, -1e-3, 0.0, 1e-3, 50.0, 800.0, 1e4],
                [1e4, 1e4, -1e4, -1e4, 0.0, 3.0, -3.0, 1e4, -1e4]])


@pytest.fixture
def no_fp_events():
    """Every floating-point event raises: NumPy's (errstate, underflow included) and any warning."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        yield


ACTIVATIONS = {"Sigmoid": (hb.Sigmoid, torch.sigmoid), "Tanh": (hb.Tanh, torch.tanh),
               "Softmax-dim-1": (lambda: hb.Softmax(dim=-1), lambda t: torch.softmax(t, dim=-1)),
               "Softmax-dim0": (lambda: hb.Softmax(dim=0), lambda t: torch.softmax(t, dim=0)),
               "ReLU": (hb.ReLU, torch.relu), "LeakyReLU": (hb.LeakyReLU, F.leaky_relu)}


@pytest.mark.parametrize("x", [BIG, BIG[0]], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_at_1e4_matches_torch_without_warnings(name, x, no_fp_events):
    make, ref = ACTIVATIONS[name]
    m = make()
    dy = np.linspace(-1.0, 1.0, x.size).reshape(x.shape)
    y = m(x)
    dx = m.backward(dy)
    t = torch.tensor(x, requires_grad=True)
    ty = ref(t)
    ty.backward(torch.from_numpy(dy))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-300)


LOSSES = {
    "CrossEntropy-index": (hb.CrossEntropyLoss, lambda x: np.arange(len(x)) % x.shape[1], F.cross_entropy),
    "CrossEntropy-index-unbatched": (hb.CrossEntropyLoss, lambda x: np.int64(2), F.cross_entropy),
    "CrossEntropy-prob": (hb.CrossEntropyLoss,
                          lambda x: np.full(x.shape, 1.0 / x.shape[-1]), F.cross_entropy),
    "CrossEntropy-sum": (lambda: hb.CrossEntropyLoss(reduction="sum"), lambda x: np.arange(len(x)) % x.shape[1],
                         lambda p, t: F.cross_entropy(p, t, reduction="sum")),
    "BCEWithLogits": (hb.BCEWithLogitsLoss, lambda x: (np.arange(x.size).reshape(x.shape) % 3) / 2.0,
                      F.binary_cross_entropy_with_logits),
    "BCEWithLogits-sum": (lambda: hb.BCEWithLogitsLoss(reduction="sum"),
                          lambda x: (np.arange(x.size).reshape(x.shape) % 2).astype(np.float64),
                          lambda p, t: F.binary_cross_entropy_with_logits(p, t, reduction="sum")),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_at_1e4_matches_torch_without_warnings(name, no_fp_events):
    make, make_target, ref = LOSSES[name]
    z = BIG[0] if name.endswith("unbatched") else BIG
    y = make_target(z)
    loss = make()
    value = loss(z, y)
    g = loss.backward()
    t = torch.tensor(z, requires_grad=True)
    tv = ref(t, torch.from_numpy(np.asarray(y)))
    tv.backward()
    assert np.isfinite(value) and np.isfinite(g).all()
    assert value == pytest.approx(tv.item(), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_a_saturated_network_trains_without_warnings(no_fp_events):
    """Sigmoids driven to ±1e4 inside a model, through its loss and backward."""
    model = hb.Sequential(hb.Linear(2, 3, rng=np.random.default_rng(0)), hb.Sigmoid(), hb.Linear(3, 2))
    model[0].weight.data[...] = [[1e4, 0.0], [-1e4, 0.0], [0.0, 1e4]]
    loss = hb.CrossEntropyLoss()
    value = loss(model(np.array([[1.0, -1.0], [-1.0, 1.0]])), np.array([0, 1]))
    model.backward(loss.backward())
    assert np.isfinite(value) and all(np.isfinite(p.grad).all() for p in model.parameters())
