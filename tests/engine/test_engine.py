"""handbp's engine: every backward against central finite differences, accumulation, torch's names
and layouts, SGD's exact semantics, dtypes."""
import numpy as np
import pytest
import torch

import handbp as hb
from tests.helpers.fd import fd_gradient, module_gradients

RTOL, ATOL = 1e-6, 1e-8       # central differences with eps 1e-6 in float64: ~1e-9 relative


def make(name, rng):
    return {
        "Linear": lambda: hb.Linear(4, 3, rng=rng),
        "Linear-nobias": lambda: hb.Linear(4, 3, bias=False, rng=rng),
        "Sigmoid": hb.Sigmoid, "Tanh": hb.Tanh, "ReLU": hb.ReLU,
        "LeakyReLU": lambda: hb.LeakyReLU(0.1), "Identity": hb.Identity,
        "Softmax": lambda: hb.Softmax(dim=-1), "Softmax-dim0": lambda: hb.Softmax(dim=0),
        "Sequential": lambda: hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh(), hb.Linear(5, 3, rng=rng),
                                            hb.Sigmoid()),
        "DNN": lambda: hb.DNN(2, 5, 4, 3, activation=hb.Tanh, init="torch", rng=rng),
    }[name]()


MODULES = ["Linear", "Linear-nobias", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "Softmax",
           "Softmax-dim0", "Sequential", "DNN"]
SHAPES = {"unbatched": (4,), "batch1": (1, 4), "batch5": (5, 4)}


# (dim=0 of an unbatched input is its feature axis, which "Softmax" already covers)
@pytest.mark.parametrize("name, shape", [(n, s) for n in MODULES for s in SHAPES
                                         if not (n == "Softmax-dim0" and s == "unbatched")])
def test_backward_matches_finite_differences(name, shape, rng):
    m = make(name, rng)
    x = rng.normal(size=SHAPES[shape])
    if name in ("ReLU", "LeakyReLU"):
        x = np.where(np.abs(x) < 0.1, 0.5, x)      # away from the kink
    y = m(x)
    dy = rng.normal(size=y.shape)
    m.zero_grad()
    dx = m.backward(dy)
    fd_dx, fd_grads = module_gradients(m, x, dy)
    np.testing.assert_allclose(dx, fd_dx, rtol=RTOL, atol=ATOL)
    for pname, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, fd_grads[pname], rtol=RTOL, atol=ATOL, err_msg=pname)


LOSSES = {
    "MeanSquaredError": (hb.MeanSquaredError, "float"),
    "MSELoss-mean": (lambda: hb.MSELoss(), "float"),
    "MSELoss-sum": (lambda: hb.MSELoss(reduction="sum"), "float"),
    "CrossEntropy-index": (hb.CrossEntropyLoss, "index"),
    "CrossEntropy-sum": (lambda: hb.CrossEntropyLoss(reduction="sum"), "index"),
    "CrossEntropy-prob": (hb.CrossEntropyLoss, "prob"),
    "BCEWithLogits": (hb.BCEWithLogitsLoss, "unit"),
    "BCEWithLogits-sum": (lambda: hb.BCEWithLogitsLoss(reduction="sum"), "unit"),
}


def target(kind, shape, rng):
    if kind == "index":
        return rng.integers(0, shape[-1], shape[:-1])
    if kind == "prob":
        p = rng.uniform(size=shape)
        return p / p.sum(axis=-1, keepdims=True)
    if kind == "unit":
        return rng.uniform(size=shape)
    return rng.normal(size=shape)


@pytest.mark.parametrize("shape", [(3,), (1, 3), (6, 3)], ids=["unbatched", "batch1", "batch6"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_gradient_matches_finite_differences_and_torch(name, shape, rng):
    make_loss, kind = LOSSES[name]
    loss = make_loss()
    pred = rng.normal(size=shape) * 2
    y = target(kind, shape, rng)
    value = loss(pred, y)
    g = loss.backward()
    fd = fd_gradient(lambda: loss(pred, y), pred)
    loss(pred, y)
    np.testing.assert_allclose(g, fd, rtol=RTOL, atol=ATOL)
    # the value is torch's (the ½ of the notebook's loss included)
    p, t = torch.from_numpy(pred), torch.from_numpy(np.asarray(y))
    ref = {"MeanSquaredError": lambda: 0.5 * torch.mean((p - t) ** 2),
           "MSELoss-mean": lambda: torch.nn.functional.mse_loss(p, t),
           "MSELoss-sum": lambda: torch.nn.functional.mse_loss(p, t, reduction="sum"),
           "CrossEntropy-index": lambda: torch.nn.functional.cross_entropy(p, t),
           "CrossEntropy-sum": lambda: torch.nn.functional.cross_entropy(p, t, reduction="sum"),
           "CrossEntropy-prob": lambda: torch.nn.functional.cross_entropy(p, t),
           "BCEWithLogits": lambda: torch.nn.functional.binary_cross_entropy_with_logits(p, t),
           "BCEWithLogits-sum": lambda: torch.nn.functional.binary_cross_entropy_with_logits(p, t, reduction="sum")}
    assert value == pytest.approx(ref[name]().item(), rel=1e-12, abs=1e-15)


def test_backward_accumulates_and_zero_grad_clears(rng):
    m = hb.Sequential(hb.Linear(3, 2, rng=rng))
    x, dy = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    m(x); m.backward(dy)
    first = m[0].weight.grad.copy()
    m(x); m.backward(dy)
    np.testing.assert_allclose(m[0].weight.grad, 2 * first, rtol=1e-15)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m(x); m.backward(dy)
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in m.parameters())


def test_gradient_is_not_aliased_to_the_callers_array(rng):
    lin = hb.Linear(3, 2, rng=rng)
    dy = rng.normal(size=2)
    lin(rng.normal(size=3)); lin.backward(dy)
    dy[...] = 0
    assert lin.bias.grad.any()


def test_names_layout_and_outputs_equal_torch(rng):
    model = hb.Sequential(hb.Linear(4, 6, rng=rng), hb.ReLU(), hb.Linear(6, 6, rng=rng), hb.Tanh(),
                          hb.Linear(6, 2, bias=False, rng=rng))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, 2, bias=False)).double()
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14)


def test_dnn_structure_and_names(rng):
    d = hb.DNN(hidden_depth=2, num_neuron=8, input=3, output=2, activation=hb.Tanh)
    assert [type(m).__name__ for m in d] == ["Linear", "Tanh"] * 4
    assert [n for n, _ in d.named_parameters()][:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert d[0].weight.shape == (8, 3) and d[6].weight.shape == (2, 8)


# -- SGD ------------------------------------------------------------------------------------
SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.5),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "all": dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    "maximize": dict(lr=0.1, momentum=0.5, maximize=True),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_torch_step_by_step(case, rng):
    hyper = SGD_CASES[case]
    shapes = [(3, 4), (3,), (2, 3)]
    ours = [hb.Parameter(rng.normal(size=s)) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt, topt = hb.optim.SGD(ours, **hyper), torch.optim.SGD(theirs, **hyper)
    for step in range(6):
        for p, t in zip(ours, theirs):
            g = rng.normal(size=p.shape)
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step(); topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-14, atol=1e-15)
            if hyper.get("momentum"):
                np.testing.assert_allclose(opt.state[p]["momentum_buffer"],
                                           topt.state[t]["momentum_buffer"].numpy(), rtol=1e-14, atol=1e-15)
                if step == 0:   # the buffer starts as the gradient itself (after weight decay)
                    g = -p.grad if hyper.get("maximize") else p.grad
                    if not hyper.get("weight_decay"):
                        np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], g)


def test_sgd_skips_parameters_without_gradient(rng):
    a, b = hb.Parameter(rng.normal(size=3)), hb.Parameter(rng.normal(size=3))
    before = b.data.copy()
    a.grad = np.ones(3)
    hb.optim.SGD([a, b], lr=0.1, momentum=0.9).step()
    np.testing.assert_array_equal(b.data, before)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(lr=0.1, momentum=-1), "Invalid momentum value: -1"),
    (dict(lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    (dict(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (dict(lr=float("nan")), "lr"),
])
def test_sgd_rejects_invalid_hyperparameters_like_torch(kwargs, message, rng):
    with pytest.raises(ValueError, match=message):
        hb.optim.SGD([hb.Parameter(np.zeros(2))], **kwargs)


def test_sgd_state_dict_round_trip_and_bad_state_refused(rng):
    model = hb.Sequential(hb.Linear(3, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad(); model(rng.normal(size=(4, 3))); model.backward(rng.normal(size=(4, 2))); opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1] and set(sd["state"]) == {0, 1}
    fresh = hb.optim.SGD(model.parameters(), lr=0.5)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["lr"] == 0.1
    for p in model.parameters():
        np.testing.assert_array_equal(fresh.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
    bad = opt.state_dict()
    bad["state"][0]["momentum_buffer"] = np.zeros((5, 5))
    keep = {p: s["momentum_buffer"].copy() for p, s in fresh.state.items()}
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_dict(bad)
    two_groups = {"state": {}, "param_groups": sd["param_groups"] * 2}
    with pytest.raises(ValueError, match="param groups"):
        fresh.load_state_dict(two_groups)
    assert all(np.array_equal(fresh.state[p]["momentum_buffer"], keep[p]) for p in keep)
    assert fresh.param_groups[0]["lr"] == 0.1


# -- dtype ----------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [hb.MeanSquaredError(), hb.MSELoss(), hb.CrossEntropyLoss(), hb.BCEWithLogitsLoss()],
                         ids=lambda l: type(l).__name__)
def test_float32_end_to_end(loss, rng):
    model = hb.DNN(2, 8, 4, 3, activation=hb.Tanh, init="torch", rng=rng, dtype=np.float32)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = rng.integers(0, 3, 5) if isinstance(loss, hb.CrossEntropyLoss) else rng.uniform(size=(5, 3)).astype(np.float32)
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        assert out.dtype == np.float32
        loss(out, y)
        g = loss.backward()
        assert g.dtype == np.float32
        assert model.backward(g).dtype == np.float32
        opt.step()
    for p in model.parameters():
        assert p.data.dtype == p.grad.dtype == opt.state[p]["momentum_buffer"].dtype == np.float32
    assert hb.DNN(1, 2, 2, 1).dtype == np.float64


def test_to_changes_dtype_in_place(rng):
    m = hb.Sequential(hb.Linear(2, 2, rng=rng))
    assert m.to(np.float32) is m and m[0].weight.dtype == np.float32
    assert m.double()[0].bias.dtype == np.float64


# -- the notebook ---------------------------------------------------------------------------
NOTEBOOK_CELL = '''
x = np.random.normal(0.0, 1.0, (10,))
y = np.random.normal(0.0, 1.0, (2,))

t = time.time()
dnn = DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=Sigmoid)
loss_obj = MeanSquaredError()
for epoch in range(100):
    loss = gradient_descent(dnn, x, y, loss_obj, alpha=0.01)
    print('Epoch {}: Test loss {}'.format(epoch, loss))
print('{} seconds elapsed.'.format(time.time() - t))
'''


def test_notebook_cell_runs_verbatim_and_trains(capsys):
    ns = {}
    exec("from handbp import *\nimport time\nimport numpy as np\nnp.random.seed(0)\n", ns)
    exec(NOTEBOOK_CELL, ns)
    out = capsys.readouterr().out.splitlines()
    losses = [float(line.rsplit(" ", 1)[1]) for line in out if line.startswith("Epoch")]
    assert len(losses) == 100 and out[-1].endswith("seconds elapsed.")
    assert losses[-1] < losses[0] and all(b < a for a, b in zip(losses, losses[1:]))
    np.random.seed(0)
    np.random.normal(0.0, 1.0, (10,)); np.random.normal(0.0, 1.0, (2,))
    fresh = ns["DNN"](hidden_depth=5, num_neuron=32, input=10, output=2)
    for (name, p), (_, q) in zip(ns["dnn"].named_parameters(), fresh.named_parameters()):
        assert not np.array_equal(p.data, q.data), f"{name} never moved"


def notebook_reference(seed, epochs):
    """The notebook's own network, transcribed, with its two bugs fixed (dw → dW, and the 1/n)."""
    np.random.seed(seed)
    x = np.random.normal(0.0, 1.0, (10,))
    y = np.random.normal(0.0, 1.0, (2,))
    sizes = [10] + [32] * 6 + [2]
    Ws, bs = [], []
    for i, o in zip(sizes[:-1], sizes[1:]):
        Ws.append(np.random.normal(0.0, 0.01, (i, o)))
        bs.append(np.zeros((o,)))
    losses = []
    for _ in range(epochs):
        hs = [x]
        for W, b in zip(Ws, bs):
            hs.append(1 / (1.0 + np.exp(-(np.matmul(np.transpose(W), hs[-1]) + b))))
        h = hs[-1]
        losses.append(1 / 2 * np.mean(np.square(h - y)))
        dh = (h - y) / h.size                       # fixed: the mean's 1/n
        grads = []
        for k in range(len(Ws) - 1, -1, -1):
            a = hs[k + 1] * (1 - hs[k + 1])
            dW = np.outer(hs[k], dh * a)            # fixed: stored and used under one name
            db = dh * a
            dh = np.matmul(Ws[k] * a, dh)
            grads.append((k, dW, db))
        for k, dW, db in grads:
            Ws[k] += -0.01 * dW
            bs[k] += -0.01 * db
    return losses, Ws


def test_handbp_reproduces_the_fixed_notebook_exactly():
    losses, Ws = notebook_reference(3, 30)
    np.random.seed(3)
    x = np.random.normal(0.0, 1.0, (10,))
    y = np.random.normal(0.0, 1.0, (2,))
    dnn = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2)
    ours = [hb.gradient_descent(dnn, x, y, hb.MeanSquaredError(), alpha=0.01) for _ in range(30)]
    np.testing.assert_allclose(ours, losses, rtol=1e-12)
    for lin, W in zip([m for m in dnn if isinstance(m, hb.Linear)], Ws):
        np.testing.assert_allclose(lin.weight.data, W.T, rtol=1e-12, atol=1e-15)


def test_default_init_draws_the_notebooks_numbers():
    np.random.seed(11)
    expected = [np.random.normal(0.0, 0.01, (i, o)) for i, o in [(10, 32), (32, 32), (32, 2)]]
    np.random.seed(11)
    d = hb.DNN(hidden_depth=1, num_neuron=32, input=10, output=2)
    for lin, W in zip([m for m in d if isinstance(m, hb.Linear)], expected):
        np.testing.assert_array_equal(lin.weight.data, W.T)
        assert not lin.bias.data.any()


def test_explicit_rng_and_torch_init(rng):
    a = hb.DNN(1, 4, 3, 2, rng=np.random.default_rng(5))
    b = hb.DNN(1, 4, 3, 2, rng=np.random.default_rng(5))
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    t = hb.DNN(1, 4, 3, 2, init="torch", rng=rng)
    assert np.abs(t[0].weight.data).max() <= 1 / np.sqrt(3) and t[0].bias.data.any()


# -- stability ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [hb.Sigmoid(), hb.Tanh(), hb.Softmax(), hb.LeakyReLU(), hb.ReLU()],
                         ids=lambda m: type(m).__name__)
def test_activations_are_stable_at_1e4(module):
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = module(x)
        dx = module.backward(np.ones_like(y))
    ref = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softmax": lambda t: torch.softmax(t, -1),
           "LeakyReLU": torch.nn.functional.leaky_relu, "ReLU": torch.relu}[type(module).__name__]
    np.testing.assert_allclose(y, ref(torch.from_numpy(x)).numpy(), rtol=1e-15, atol=0)
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("loss", [hb.CrossEntropyLoss(), hb.BCEWithLogitsLoss()], ids=lambda l: type(l).__name__)
def test_losses_are_stable_for_huge_logits(loss):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    y = np.array([1, 2]) if isinstance(loss, hb.CrossEntropyLoss) else np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss(z, y)
        g = loss.backward()
    t = torch.from_numpy(z)
    ref = (torch.nn.functional.cross_entropy(t, torch.from_numpy(y)) if isinstance(loss, hb.CrossEntropyLoss)
           else torch.nn.functional.binary_cross_entropy_with_logits(t, torch.from_numpy(y)))
    assert value == pytest.approx(ref.item(), rel=1e-12) and np.isfinite(g).all()
