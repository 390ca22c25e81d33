"""dtypes: float64 by default; a float32 model stays float32 end to end (outputs, every gradient,
the loss's gradient, SGD's updates and buffers), and computes what float64 computes to float32
precision."""
import numpy as np
import pytest

import handbp as hb


def float32_model(kind, rng):
    if kind == "DNN":
        return hb.DNN(2, 8, 4, 3, activation=hb.Tanh, init="torch", rng=rng, dtype=np.float32)
    if kind == "DNN-notebook-init":
        return hb.DNN(1, 8, 4, 3, rng=rng, dtype=np.float32)
    if kind == "Sequential":
        f32 = dict(rng=rng, dtype=np.float32)
        return hb.Sequential(hb.Linear(4, 6, **f32), hb.ReLU(), hb.Linear(6, 5, bias=False, **f32), hb.LeakyReLU(0.1),
                             hb.Linear(5, 3, **f32), hb.Sigmoid(), hb.Identity(), hb.Softmax())
    return hb.Sequential(hb.Linear(4, 6, rng=rng), hb.Tanh(), hb.Linear(6, 3, rng=rng)).to(np.float32)


LOSSES = {"MeanSquaredError": hb.MeanSquaredError, "MSELoss": hb.MSELoss,
          "MSELoss-sum": lambda: hb.MSELoss(reduction="sum"), "CrossEntropy-index": hb.CrossEntropyLoss,
          "CrossEntropy-prob": hb.CrossEntropyLoss, "BCEWithLogits": hb.BCEWithLogitsLoss}


def target32(name, rng, n):
    if name == "CrossEntropy-index":
        return rng.integers(0, 3, n)
    if name == "CrossEntropy-prob":
        p = rng.uniform(size=(n, 3))
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return rng.uniform(size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("kind", ["DNN", "DNN-notebook-init", "Sequential", "Sequential-to"])
def test_float32_end_to_end(kind, loss_name, rng):
    model = float32_model(kind, rng)
    assert model.dtype == np.float32 and all(p.dtype == np.float32 for p in model.parameters())
    loss = LOSSES[loss_name]()
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    for step, n in enumerate([5, 1, 5]):
        x = rng.normal(size=(n, 4)).astype(np.float32)
        opt.zero_grad()
        out = model(x)
        assert out.dtype == np.float32
        value = loss(out, target32(loss_name, rng, n))
        assert isinstance(value, float) and np.isfinite(value)
        g = loss.backward()
        assert g.dtype == np.float32 and g.shape == out.shape
        dx = model.backward(g)
        assert dx.dtype == np.float32 and dx.shape == x.shape
        for name, p in model.named_parameters():
            assert p.grad.dtype == np.float32, f"step {step}: {name}.grad"
        before = [p.data.copy() for p in model.parameters()]
        opt.step()
        for (name, p), b in zip(model.named_parameters(), before):
            assert p.data.dtype == np.float32 and p.data.flags.c_contiguous, f"step {step}: {name}"
            assert opt.state[p]["momentum_buffer"].dtype == np.float32
            assert not np.array_equal(p.data, b), f"step {step}: {name} did not move"
    unbatched = model(rng.normal(size=4).astype(np.float32))
    assert unbatched.dtype == np.float32 and unbatched.shape == (3,)


def test_float32_computes_what_float64_computes(rng):
    """Same weights in both precisions: outputs and gradients agree to float32 precision."""
    m64 = hb.DNN(2, 8, 4, 3, activation=hb.Tanh, init="torch", rng=rng)
    m32 = hb.DNN(2, 8, 4, 3, activation=hb.Tanh, init="torch", rng=rng, dtype=np.float32)
    m32.load_state_dict({k: v.astype(np.float32) for k, v in m64.state_dict().items()})
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, 6)
    for m, data in ((m64, x), (m32, x.astype(np.float32))):
        loss = hb.CrossEntropyLoss()
        loss(m(data), y)
        m.backward(loss.backward())
    # float32 rounding (eps 1.2e-7) through a few layers: ~1e-6 relative
    for (n, p), q in zip(m64.named_parameters(), m32.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6, err_msg=n)
    np.testing.assert_allclose(m32(x.astype(np.float32)), m64(x), rtol=1e-5, atol=1e-6)


def test_float64_is_the_default(rng):
    assert hb.Linear(2, 3).weight.dtype == np.float64
    d = hb.DNN(1, 4, 2, 1)
    assert d.dtype == np.float64 and all(p.dtype == np.float64 for p in d.parameters())
    assert d(np.ones(2)).dtype == np.float64
    assert d([1.0, 2.0]).dtype == np.float64                  # a list of floats is taken as float64
    loss = hb.MSELoss()
    loss(d(np.ones((3, 2))), np.zeros((3, 1)))
    assert loss.backward().dtype == np.float64


def test_to_casts_parameters_and_gradients_in_place(rng):
    m = hb.Sequential(hb.Linear(2, 3, rng=rng), hb.Tanh())
    m(np.ones((1, 2)))
    m.backward(np.ones((1, 3)))
    w = m[0].weight
    assert m.to(np.float32) is m and m[0].weight is w                 # the same Parameter, recast
    assert w.dtype == w.grad.dtype == np.float32 and m.dtype == np.float32
    assert m.double() is m and w.dtype == w.grad.dtype == np.float64
    with pytest.raises(TypeError, match="floating dtype"):
        m.to(np.int32)


@pytest.mark.parametrize("scalar", [float, np.float64], ids=["python-float", "numpy-float64"])
def test_sgd_keeps_float32_whatever_the_type_of_its_hyperparameters(scalar, rng):
    """NumPy float64 hyperparameters (from a grid made with np.linspace, say) must not promote the
    update: the same float32 arithmetic as with Python floats, bit for bit."""
    results = []
    for kind in (float, scalar):
        p = hb.Parameter(np.random.default_rng(0).normal(size=5).astype(np.float32))
        opt = hb.optim.SGD([p], lr=kind(0.1), momentum=kind(0.9), dampening=kind(0.1), weight_decay=kind(0.01))
        for g in np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32):
            p.grad = g
            opt.step()
        assert p.data.dtype == opt.state[p]["momentum_buffer"].dtype == np.float32
        results.append(p.data.tobytes() + opt.state[p]["momentum_buffer"].tobytes())
    assert results[0] == results[1]
