"""handbp.numerical: the two methods against each other and against backprop, gradcheck's verdict and
report, the model left untouched, bad input, training by numerical gradients, and `handbp bench
numerical` at tiny sizes (the table, the JSON and the PNG, never the timings).

Tolerances, float64 with eps = 1e-6 and losses of order 1: each numerical gradient carries a
rounding error of about u·|L|/ε ≈ 1e-10 and a truncation error of O(ε²), so
(measured: at most 3e-10 · max(1, |L|) between the two methods over 200 random networks), so
* backprop vs either method: gradcheck's defaults, |a − n| ≤ 1e-8 · max(1, |L|) + 1e-5 · max(|a|, |n|);
* loop vs fast: |l − f| ≤ 1e-8 · max(1, |L|) + 1e-6 · max(|l|, |f|) (same points, different rounding);
a dropped factor in a backward gives relative errors of 1e-2 and more.
"""
import json
import warnings

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main
from handbp.recording import leaves
from handbp.numerical import (GradcheckError, compare_gradients, gradcheck, numerical_gradient,
                              numerical_gradient_descent, numerical_step)

ACTIVATIONS = [hb.Sigmoid, hb.Tanh, hb.ReLU, hb.LeakyReLU, hb.Identity, hb.Softmax, hb.GELU]
LOSSES = ["MeanSquaredError", "MSELoss-mean", "MSELoss-sum", "CrossEntropyLoss-indices",
          "CrossEntropyLoss-probabilities", "BCEWithLogitsLoss"]


def agree(model, loss, x, y):
    """The loop-vs-fast tolerance for this loss value (see the module docstring)."""
    return dict(atol=1e-8 * max(1.0, abs(loss(model(x), y))), rtol=1e-6)


def make_loss(name):
    return {"MeanSquaredError": hb.MeanSquaredError, "MSELoss-mean": hb.MSELoss,
            "MSELoss-sum": lambda: hb.MSELoss("sum"), "CrossEntropyLoss-indices": hb.CrossEntropyLoss,
            "CrossEntropyLoss-probabilities": lambda: hb.CrossEntropyLoss("sum"),
            "BCEWithLogitsLoss": hb.BCEWithLogitsLoss}[name]()


def make_target(name, shape, rng):
    if name == "CrossEntropyLoss-indices":
        return rng.integers(0, shape[-1], shape[:-1])
    if name == "CrossEntropyLoss-probabilities":
        p = rng.uniform(size=shape)
        return p / p.sum(axis=-1, keepdims=True)
    if name == "BCEWithLogitsLoss":
        return rng.uniform(size=shape)
    return rng.normal(size=shape)


def away_from_kinks(model, x, margin=1e-3):
    """True when no ReLU/LeakyReLU input is within ``margin`` of 0 (finite differences straddling
    the kink would measure neither side's slope)."""
    h = x
    for _, m in leaves(model):
        if isinstance(m, (hb.ReLU, hb.LeakyReLU)) and np.abs(h).min() < margin:
            return False
        h = m.forward(h)
    return True


def model_and_input(build, n_in, batched, rng):
    """A model from ``build(rng)`` and an input that keeps every ReLU/LeakyReLU input away from its
    kink. A unit can sit at its kink for every input (at its bias alone, when every ReLU before it
    is off for a sample), so after 20 inputs the model is drawn again."""
    for _ in range(20):
        model = build(rng)
        for _ in range(20):
            x = rng.normal(size=(6, n_in) if batched else (n_in,))
            if away_from_kinks(model, x):
                return model, x
    raise AssertionError("no model and input away from the kinks in 20 × 20 draws")


def failures(a, b, **tol):
    return [r for r in compare_gradients(a, b, **tol) if r["failed"]]


@pytest.mark.parametrize("batched", [False, True], ids=["one-sample", "batch"])
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.__name__)
def test_loop_fast_and_backprop_agree(act, loss_name, batched, rng):
    model, x = model_and_input(lambda r: hb.DNN(2, 5, 4, 3, activation=act, init="torch", rng=r), 4, batched, rng)
    y = make_target(loss_name, (6, 3) if batched else (3,), rng)
    loss = make_loss(loss_name)
    loop = numerical_gradient(model, loss, x, y, method="loop")
    fast = numerical_gradient(model, loss, x, y, method="fast")
    assert list(loop) == list(fast) == [n for n, _ in model.named_parameters()]
    assert all(loop[n].shape == p.shape for n, p in model.named_parameters())
    assert not failures(loop, fast, **agree(model, loss, x, y))
    for method in ("fast", "loop"):
        assert gradcheck(model, loss, x, y, method=method) is True


def nested(rng):
    return hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Sequential(hb.Tanh(), hb.Linear(5, 5, bias=False, rng=rng)),
                         hb.GELU(), hb.Linear(5, 3, rng=rng))


def with_norms(rng):
    bn = hb.BatchNorm1d(5)
    bn.running_mean[...] = rng.normal(size=5)
    bn.running_var[...] = rng.uniform(0.5, 2, size=5)
    model = hb.Sequential(hb.Linear(4, 5, rng=rng), bn, hb.Tanh(), hb.Linear(5, 6, rng=rng), hb.LayerNorm(6),
                          hb.Sigmoid(), hb.Dropout(0.5), hb.Linear(6, 3, rng=rng))
    model.eval()                    # BatchNorm on running statistics, Dropout the identity: row-wise
    model[1].weight.data[...] = rng.uniform(0.5, 2, size=5)
    model[4].bias.data[...] = rng.normal(size=6)
    return model


class Scale(hb.Module):
    """A custom module: y = x ⊙ s, with its own backward (ds = Σ dy ⊙ x, dx = dy ⊙ s)."""

    def __init__(self, n, rng):
        super().__init__()
        self.s = hb.Parameter(rng.uniform(0.5, 1.5, size=n))
        self.last_x = None

    def forward(self, x):
        self.last_x = x
        return x * self.s.data

    def backward(self, dy):
        g = dy * self.last_x
        self.s.accumulate(g.reshape(-1, g.shape[-1]).sum(axis=0))
        return dy * self.s.data


MODELS = {
    "nested Sequential, a Linear without bias": nested,
    "BatchNorm1d and LayerNorm in eval mode": with_norms,
    "one Linear, the model itself a leaf": lambda rng: hb.Linear(4, 3, rng=rng),
    "a custom module in the middle": lambda rng: hb.Sequential(hb.Linear(4, 5, rng=rng), Scale(5, rng), hb.Tanh(),
                                                                hb.Linear(5, 3, rng=rng)),
}


# BatchNorm1d takes batches only
@pytest.mark.parametrize("name, batched", [(name, batched) for name in MODELS for batched in (False, True)
                                           if batched or not name.startswith("BatchNorm")])
def test_other_models_agree(name, batched, rng):
    """Nested containers, normalization layers, a model that is a single layer; a custom module
    warns once (stacks cannot go through a module handbp does not know) and still agrees."""
    model, x = model_and_input(MODELS[name], 4, batched, rng)
    y = rng.normal(size=(6, 3) if batched else (3,))
    loss = hb.MSELoss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = numerical_gradient(model, loss, x, y)
    messages = [str(w.message) for w in caught]
    if name.startswith("a custom"):
        assert len(messages) == 1 and "layer '1' (Scale())" in messages[0] and "element loop" in messages[0]
    else:
        assert messages == []
    loop = numerical_gradient(model, loss, x, y, method="loop")
    assert not failures(loop, fast, **agree(model, loss, x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the custom module's warning, seen above
        assert gradcheck(model, loss, x, y)


@pytest.mark.parametrize("case", ["BatchNorm1d in training mode", "Softmax(dim=0) across the batch"])
def test_layers_that_mix_rows_fall_back_to_the_loop(case, rng):
    if case.startswith("BatchNorm"):
        model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.BatchNorm1d(5), hb.Tanh(), hb.Linear(5, 3, rng=rng))
        where = "layer '1' (BatchNorm1d"
    else:
        model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Softmax(dim=0), hb.Linear(5, 3, rng=rng))
        where = "layer '1' (Softmax(dim=0))"
    x, y, loss = rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), hb.MSELoss()
    state = model.state_dict()
    with pytest.warns(UserWarning, match=r"cannot take a stack") as record:
        fast = numerical_gradient(model, loss, x, y)
    assert where in str(record[0].message)
    loop = numerical_gradient(model, loss, x, y, method="loop")
    after = model.state_dict()       # BatchNorm's running statistics too, though every forward moved them
    assert all(np.array_equal(state[k], after[k]) for k in state)
    assert not failures(loop, fast, **agree(model, loss, x, y))


def test_tied_weights_take_both_uses(rng):
    """One Parameter in two layers: each name gets the whole derivative, as backprop accumulates it."""
    a, b = hb.Linear(4, 4, rng=rng), hb.Linear(4, 4, rng=rng)
    b.weight = a.weight
    model = hb.Sequential(a, hb.Tanh(), b)
    x, y, loss = rng.normal(size=4), rng.normal(size=4), hb.MSELoss()
    fast = numerical_gradient(model, loss, x, y)
    loop = numerical_gradient(model, loss, x, y, method="loop")
    assert not failures(loop, fast, **agree(model, loss, x, y))
    assert np.array_equal(fast["0.weight"], fast["2.weight"])
    assert gradcheck(model, loss, x, y)


def test_fast_path_is_exact_at_the_notebook_size(rng):
    """The notebook's network (N(0, 0.01), 5 × 32 sigmoid): the fast method agrees with the loop to
    1e-9 absolute (its gradients run from 1e-1 at the top down to 1e-13, below the
    differences' own resolution, where both methods see the same rounding)."""
    model = hb.DNN(5, 32, 10, 2, rng=rng)
    x, y = rng.normal(size=10), rng.normal(size=2)
    loss = hb.MeanSquaredError()
    loop = numerical_gradient(model, loss, x, y, method="loop")
    fast = numerical_gradient(model, loss, x, y, method="fast")
    assert not failures(loop, fast, atol=1e-9, rtol=1e-6)
    assert gradcheck(model, loss, x, y)


# -- gradcheck ----------------------------------------------------------------------------------------
def buggy(model, path):
    """Replace layer ``path``'s backward (a square Linear) with one that returns dx = dy: the factor W
    is dropped, so every layer below gets a wrong gradient while the layer's own is right."""
    layer = model[int(path)]
    original = layer.backward

    def backward(dy):
        original(dy)
        return dy
    object.__setattr__(layer, "backward", backward)
    return layer


def test_gradcheck_reports_the_parameter_and_the_worst_element(rng):
    model = hb.DNN(1, 5, 4, 3, activation=hb.Tanh, init="torch", rng=rng)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    loss = hb.MSELoss()
    assert gradcheck(model, loss, x, y)
    buggy(model, "2")
    loss(model(x), y)
    model.backward(loss.backward())                                     # gradients that must survive
    grads_before = [p.grad for p in model.parameters()]
    with pytest.raises(GradcheckError) as info:
        gradcheck(model, loss, x, y)
    err = info.value
    assert isinstance(err, AssertionError)
    bad = {r["name"] for r in err.results if r["failed"]}
    assert bad == {"0.weight", "0.bias"}                 # below the bug; layer 2's own gradient is right
    report = str(err)
    assert "gradcheck failed: 2 of 6 parameters" in report and "0.weight (Linear)" in report
    worst = next(r for r in err.results if r["name"] == "0.weight")
    assert worst["rel_error"] > 1e-2
    assert f"worst element of '0.weight': index {list(worst['index'])}" in report
    assert f"backprop {worst['analytic']:.10e}" in report and f"numerical {worst['numerical']:.10e}" in report
    assert all(p.grad is g for p, g in zip(model.parameters(), grads_before))   # gradcheck put .grad back
    value = loss(model(x), y)
    assert f"atol={1e-8 * max(1, value):.3g} = 1e-8 · max(1, |L|), L = {value:.4g}" in report
    assert gradcheck(model, loss, x, y, atol=1.0)                        # an explicit atol is absolute
    with pytest.warns(UserWarning, match="gradcheck failed"):
        assert gradcheck(model, loss, x, y, raise_exception=False) is False


def test_compare_gradients_is_cs231n_relative_error():
    a = {"w": np.array([1.0, 0.0, 2.0, 1e-12])}
    n = {"w": np.array([1.1, 0.0, 2.0, 0.0])}
    (r,) = compare_gradients(a, n, atol=1e-10, rtol=1e-3)
    assert r["failed"] == 1 and r["index"] == (0,)
    assert r["rel_error"] == pytest.approx(0.1 / 1.1, rel=1e-12)       # |a − n| / max(|a|, |n|)
    assert r["max_rel_error"] == 1.0                                    # 1e-12 vs 0, within atol
    (r,) = compare_gradients(a, n, atol=1e-10, rtol=0.1)
    assert r["failed"] == 0


# -- the model is left as it was ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fast", "loop"])
def test_model_untouched(method, rng):
    model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.BatchNorm1d(5), hb.Sigmoid(), hb.Linear(5, 3, rng=rng))
    x, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    loss = hb.CrossEntropyLoss()
    loss(model(x), y)
    model.backward(loss.backward())          # some gradients, which must stay
    model[3].bias.grad = None                # and a None, which must stay None
    arrays = [p.data for p in model.parameters()]
    values = [p.data.copy() for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    grad_values = [None if g is None else g.copy() for g in grads]
    buffers = {k: v.copy() for k, v in model.named_buffers()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # BatchNorm in training mode: the fast method's fallback
        numerical_gradient(model, loss, x, y, method=method)
    for p, arr, v, g, gv in zip(model.parameters(), arrays, values, grads, grad_values):
        assert p.data is arr and np.array_equal(p.data, v) and p.data.tobytes() == v.tobytes()
        assert p.grad is g and (g is None or np.array_equal(g, gv))
    assert all(np.array_equal(buffers[k], v) for k, v in model.named_buffers())
    # the caches describe θ: a backward now gives backprop's gradient at θ
    model.zero_grad()
    model.backward(loss.backward())
    after = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward())
    assert all(np.array_equal(a, p.grad) for a, p in zip(after, model.parameters()))


@pytest.mark.parametrize("method", ["fast", "loop"])
def test_model_restored_when_interrupted(method, rng):
    """A loss that raises midway (as Ctrl-C would) leaves every parameter as it was, bit for bit."""
    model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh(), Scale(5, rng), hb.Linear(5, 3, rng=rng))
    x, y = rng.normal(size=4), rng.normal(size=3)
    values = [p.data.copy() for p in model.parameters()]
    calls = []

    def loss(pred, target):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return float(np.sum((pred - target) ** 2))
    with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
        warnings.simplefilter("ignore")
        numerical_gradient(model, loss, x, y, method=method)
    assert all(p.data.tobytes() == v.tobytes() for p, v in zip(model.parameters(), values))


# -- bad input ----------------------------------------------------------------------------------------
def small(rng, dtype=np.float64):
    return hb.Sequential(hb.Linear(3, 4, rng=rng, dtype=dtype), hb.Tanh(), hb.Linear(4, 2, rng=rng, dtype=dtype))


@pytest.mark.parametrize("eps", [0, -1e-6, float("nan"), float("inf"), True, "1e-6", None])
def test_bad_eps_is_refused(eps, rng):
    model = small(rng)
    x, y = rng.normal(size=3), rng.normal(size=2)
    before = model.state_dict()
    for call in (lambda: numerical_gradient(model, hb.MSELoss(), x, y, eps=eps),
                 lambda: gradcheck(model, hb.MSELoss(), x, y, eps=eps)):
        with pytest.raises(ValueError, match=r"^(numerical_gradient|gradcheck): eps: expected a finite number > 0, got "):
            call()
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("case", ["no parameters", "not a module", "loss not callable", "loss returns an array",
                                  "unknown method", "dropout in training", "x of the wrong dtype",
                                  "negative atol", "non-finite loss"])
def test_models_and_losses_it_cannot_perturb(case, rng):
    model, loss = small(rng), hb.MSELoss()
    x, y = rng.normal(size=3), rng.normal(size=2)
    call, error, match = (lambda: numerical_gradient(model, loss, x, y)), ValueError, None
    if case == "no parameters":
        model, match = hb.Sequential(hb.Sigmoid()), "Sequential has no parameters"
        y = rng.normal(size=3)
    elif case == "not a module":
        model, error, match = (lambda v: v), TypeError, "model: expected a handbp Module"
    elif case == "loss not callable":
        loss, error, match = "mse", TypeError, "loss: expected a handbp loss"
    elif case == "loss returns an array":
        loss, error, match = (lambda p, t: (p - t) ** 2), TypeError, "to return a number"
    elif case == "unknown method":
        call, match = (lambda: numerical_gradient(model, loss, x, y, method="forward")), "numerical_gradient: method: expected 'fast' or 'loop', got 'forward'"
    elif case == "dropout in training":
        model.append(hb.Dropout(0.5))
        match = r"layer '3' \(Dropout\(p=0.5\)\) draws a new random mask.*model.eval\(\)"
    elif case == "x of the wrong dtype":
        x, error, match = x.astype(np.float32), TypeError, "x: expected dtype float64"
    elif case == "negative atol":
        call, match = (lambda: gradcheck(model, loss, x, y, atol=-1.0)), "gradcheck: atol: expected a finite number >= 0, got -1.0"
    elif case == "non-finite loss":
        loss, match = (lambda p, t: float("inf")), "the loss at θ is inf"
    with pytest.raises(error, match=match):
        call()


def test_float32_warnings(rng):
    model = small(rng, np.float32)
    x, y = rng.normal(size=3).astype(np.float32), rng.normal(size=2).astype(np.float32)
    with pytest.warns(UserWarning, match=r"eps=1e-06 is below √\(machine epsilon\) of float32.*meaningless"):
        numerical_gradient(model, hb.MSELoss(), x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = numerical_gradient(model, hb.MSELoss(), x, y, eps=1e-2)       # no warning at a sound step
    assert all(v.dtype == np.float64 for v in g.values())
    with pytest.warns(UserWarning, match="the model is float32, not float64"):
        assert gradcheck(model, hb.MSELoss(), x, y, eps=1e-2, atol=1e-4, rtol=1e-2)


# -- training by numerical gradients ------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fast", "loop"])
def test_numerical_training_follows_backprop(method, rng):
    """The same network and optimizer (SGD, momentum 0.9) trained by each gradient for 5 steps: the
    losses agree to 1e-9 relative and the parameters to 1e-8 of their largest change (gradients
    1e-10 apart, times lr, summed by the momentum over 5 steps); the loss falls."""
    def make():
        return hb.DNN(1, 6, 4, 2, activation=hb.Tanh, init="torch", rng=np.random.default_rng(seed))
    seed = int(rng.integers(2 ** 31))
    a, b = make(), make()
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    loss_a, loss_b = hb.MSELoss(), hb.MSELoss()
    opt_a = hb.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    opt_b = hb.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    start = [p.data.copy() for p in a.parameters()]
    losses_a, losses_b = [], []
    for _ in range(5):
        opt_a.zero_grad()
        losses_a.append(loss_a(a(x), y))
        a.backward(loss_a.backward())
        opt_a.step()
        losses_b.append(numerical_step(b, loss_b, opt_b, x, y, method=method))
    assert losses_b[-1] < losses_b[0]
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-9, atol=0)
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), start):
        np.testing.assert_allclose(pb.data, pa.data, rtol=0, atol=1e-8 * np.abs(pa.data - p0).max())


def test_numerical_gradient_descent_is_the_notebooks_function(rng):
    """The notebook's gradient_descent with numerical gradients: the same losses as hb.gradient_descent
    (1e-9 relative) for 10 steps, and falling."""
    seed = int(rng.integers(2 ** 31))
    a = hb.DNN(2, 8, 10, 2, init="torch", rng=np.random.default_rng(seed))
    b = hb.DNN(2, 8, 10, 2, init="torch", rng=np.random.default_rng(seed))
    x, y = rng.normal(size=10), rng.normal(size=2)
    la = [hb.gradient_descent(a, x, y, hb.MeanSquaredError(), alpha=0.5) for _ in range(10)]
    lb = [numerical_gradient_descent(b, x, y, hb.MeanSquaredError(), alpha=0.5) for _ in range(10)]
    assert lb[-1] < lb[0]
    np.testing.assert_allclose(lb, la, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="numerical_gradient_descent: alpha: expected a finite number >= 0, got -1"):
        numerical_gradient_descent(b, x, y, hb.MeanSquaredError(), alpha=-1)
    with pytest.raises(TypeError, match="optimizer: expected a handbp optimizer"):
        numerical_step(b, hb.MeanSquaredError(), None, x, y)


# -- handbp bench numerical ---------------------------------------------------------------------------
BENCH = ["bench", "numerical", "--widths", "3,4", "--depths", "0,1", "--repeats", "1", "--min-time", "0.001"]


def test_bench_json_and_plot(tmp_path, capsys):
    from handbp.benchmarks.numerical import params_of
    path, png = tmp_path / "numerical.json", tmp_path / "numerical.png"
    assert main([*BENCH, "--json", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("handbp bench numerical — ") and "threads: numpy/BLAS=1" in out
    data = json.loads(path.read_text())
    assert {"date", "machine", "threads", "torch", "methods", "repeats", "rows"} <= set(data)
    methods = data["methods"]
    assert methods[:3] == ["loop", "fast", "backprop"] and set(methods) <= {"loop", "fast", "backprop", "torch"}
    assert [(r["width"], r["depth"], r["params"]) for r in data["rows"]] == \
        [(w, d, params_of(w, d)) for w in (3, 4) for d in (0, 1)]
    for r in data["rows"]:
        assert set(r["seconds"]) == set(methods) and all(v > 0 for v in r["seconds"].values())
        assert all(len(r["times"][m]) == 1 for m in methods) and r["skipped"] == []
        assert set(r["estimated"]) == {"loop", "fast"}
        assert r["ratios"]["loop/fast"] == pytest.approx(r["seconds"]["loop"] / r["seconds"]["fast"])
        assert r["ratios"]["fast/backprop"] == pytest.approx(r["seconds"]["fast"] / r["seconds"]["backprop"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_estimates_are_marked_and_long_runs_refused(tmp_path, capsys):
    path = tmp_path / "n.json"
    assert main([*BENCH, "--methods", "loop,backprop", "--max-step", "1e-9", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "est. " in out and "est. = estimated, not measured" in out
    rows = json.loads(path.read_text())["rows"]
    assert all(r["skipped"] == ["loop"] and set(r["seconds"]) == {"backprop"} and "loop/backprop" not in r["ratios"]
               for r in rows)
    assert main([*BENCH, "--limit", "1e-9"]) == 2
    err = capsys.readouterr().err
    assert "would take about" in err and "--force" in err


@pytest.mark.parametrize("args, match", [(["--widths", "0"], "--widths: expected integers ≥ 1"),
                                         (["--depths", "a"], "--depths: expected comma-separated integers"),
                                         (["--methods", "loop,adjoint"], "--methods: expected some of"),
                                         (["--repeats", "0"], "--repeats: expected an integer ≥ 1"),
                                         (["--max-step", "0"], "--max-step: expected seconds > 0"),
                                         (["--json", "/no/such/folder/x.json"], "--json: expected a path")])
def test_bench_bad_arguments(args, match, capsys):
    assert main([*BENCH, *args]) == 2
    assert match in capsys.readouterr().err
