"""crosscheck's library: mirror, lockstep, tolerances, the float32 rule, resync and drift, reports."""
import builtins
import importlib
import pickle

import numpy as np
import pytest
import torch

import crosscheck as cc
import handbp as hb


def tanh_net(rng, dtype=np.float64, depth=2, width=16, n_in=5, n_out=3, std=None):
    model = hb.DNN(depth, width, n_in, n_out, activation=hb.Tanh, init="torch", rng=rng, dtype=dtype)
    if std is not None:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.data[...] = rng.normal(0, std, p.data.shape)
    return model


def data_for(rng, n=3, batch=8, n_in=5, n_out=3, dtype=np.float64):
    return [(rng.normal(size=(batch, n_in)).astype(dtype), rng.normal(size=(batch, n_out)).astype(dtype))
            for _ in range(n)]


# -- mirror ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mirror_copies_structure_dtype_and_weights(dtype, rng):
    model = hb.Sequential(hb.Linear(4, 6, rng=rng, dtype=dtype), hb.LeakyReLU(0.2), hb.Linear(6, 2, rng=rng, dtype=dtype),
                          hb.Softmax(dim=-1))
    twin = cc.mirror(model)
    assert isinstance(twin, torch.nn.Sequential)
    assert [type(m).__name__ for m in twin] == ["Linear", "LeakyReLU", "Linear", "Softmax"]
    assert twin[1].negative_slope == 0.2 and twin[3].dim == -1
    assert list(twin.state_dict()) == list(model.state_dict())
    for name, value in model.state_dict().items():
        t = twin.state_dict()[name]
        assert t.dtype == {np.float64: torch.float64, np.float32: torch.float32}[dtype]
        np.testing.assert_array_equal(t.numpy(), value)
    x = rng.normal(size=(3, 4)).astype(dtype)
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(), model(x), rtol=1e-12 if dtype == np.float64 else 1e-5)
    # a copy, not a view: changing the twin leaves handbp alone
    with torch.no_grad():
        twin[0].weight.add_(1.0)
    assert not np.array_equal(model[0].weight.data, twin[0].weight.detach().numpy())


@pytest.mark.parametrize("loss", [hb.MeanSquaredError(), hb.MSELoss(), hb.MSELoss(reduction="sum"),
                                  hb.BCEWithLogitsLoss(), hb.CrossEntropyLoss()], ids=lambda l: repr(l))
def test_mirror_loss_has_the_same_definition(loss, rng):
    pred = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, 6) if isinstance(loss, hb.CrossEntropyLoss) else rng.uniform(size=(6, 3))
    tl = cc.mirror(loss)
    yt = torch.from_numpy(y)
    assert tl(torch.from_numpy(pred), yt).item() == pytest.approx(loss(pred, y), rel=1e-12)


def test_mirror_mean_squared_error_keeps_the_half():
    pred, y = np.array([1.0, 3.0]), np.array([0.0, 0.0])
    assert cc.mirror(hb.MeanSquaredError())(torch.from_numpy(pred), torch.from_numpy(y)).item() == 2.5


def test_mirror_optimizer_has_same_hyperparameters_and_state(rng):
    model = tanh_net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    x, y = data_for(rng, 1)[0]
    for _ in range(2):
        opt.zero_grad()
        loss = hb.MSELoss()
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
    twin = cc.mirror(model)
    topt = cc.mirror(opt, twin)
    assert isinstance(topt, torch.optim.SGD)
    g = topt.param_groups[0]
    assert (g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"]) == (0.05, 0.9, 0.1, 0.01, False)
    for (name, p), tp in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(topt.state[tp]["momentum_buffer"].numpy(), opt.state[p]["momentum_buffer"])


def test_mirror_optimizer_needs_a_twin_from_mirror(rng):
    model = tanh_net(rng)
    with pytest.raises(cc.MirrorError, match="crosscheck.mirror"):
        cc.mirror(hb.optim.SGD(model.parameters(), lr=0.1), torch.nn.Linear(2, 2))


class Unknown(hb.Module):
    def forward(self, x):
        return x


def test_mirror_names_the_module_it_cannot_mirror(rng):
    model = hb.Sequential(hb.Linear(3, 3, rng=rng), hb.Sequential(hb.Tanh(), Unknown()))
    with pytest.raises(cc.MirrorError) as info:
        cc.mirror(model)
    assert "module '1.1'" in str(info.value) and "Unknown" in str(info.value)
    assert "crosscheck.register(Unknown" in str(info.value)


def test_register_mirrors_a_custom_layer(rng):
    class Square(hb.Module):
        """y = x²; dx = 2x·dy."""

        def forward(self, x):
            self.last_x = x
            return x * x

        def backward(self, dy):
            return 2 * self.last_x * dy

    class TorchSquare(torch.nn.Module):
        def forward(self, x):
            return x * x

    cc.register(Square, to_torch=lambda m, _: TorchSquare())
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), Square(), hb.Linear(4, 2, rng=rng))
    trace = cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.01),
                        data_for(rng, 2, n_in=3, n_out=2))
    assert len(trace) == 2


class HalfSumOfSquares(hb.Loss):
    """L = ½ Σ (h − y)²; dL/dh = h − y."""

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return 0.5 * np.sum(self.last_diff ** 2)

    def backward(self, dy=1.0):
        self._need_forward()
        return self.last_diff * dy


def test_register_takes_one_signature_for_layers_and_losses(rng):
    """A loss registers with the same ``to_torch(obj, child)`` as a layer; a one-argument
    function is refused when it is registered (not later, inside a student's test)."""
    with pytest.raises(TypeError, match=r"register: to_torch: expected a function of \(module, child\)"):
        cc.register(HalfSumOfSquares, lambda loss: None)
    cc.register(HalfSumOfSquares, lambda loss, child: (lambda h, y: 0.5 * ((h - y) ** 2).sum()))
    model = hb.Sequential(hb.Linear(3, 2, rng=rng))
    trace = cc.lockstep(model, HalfSumOfSquares(), hb.optim.SGD(model.parameters(), lr=0.01),
                        data_for(rng, 2, n_in=3, n_out=2))
    assert len(trace) == 2


@pytest.mark.parametrize("bad, fragment", [
    (dict(hb_class=int, to_torch=lambda m, c: None), "hb_class: expected a handbp Module or Loss subclass"),
    (dict(hb_class=hb.Tanh, to_torch=5), "to_torch: expected a callable"),
    (dict(hb_class=hb.Tanh, to_torch=lambda m, c: None, terms="x"), "terms: expected a callable or None"),
])
def test_register_names_the_bad_argument(bad, fragment):
    with pytest.raises(TypeError, match=fragment):
        cc.register(**bad)


def test_a_subclass_uses_its_parents_registration():
    from crosscheck import registry

    class MyTanh(hb.Tanh):
        pass

    assert registry.entry(MyTanh) is registry.entry(hb.Tanh) and registry.entry(hb.Tanh).terms is not None


def test_missing_torch_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match=r'pip install "handbp\[torch\]"'):
        cc.mirror(hb.Linear(2, 2))


# -- lockstep -------------------------------------------------------------------------------
def test_lockstep_float64_agrees_to_about_1e_12(rng):
    model = tanh_net(rng, depth=5, width=64, n_in=10, n_out=3, std=0.5)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trace = cc.lockstep(model, hb.MSELoss(), opt, data_for(rng, 10, batch=32, n_in=10, n_out=3))
    worst = trace.worst()
    assert len(trace) == 10 and trace.divergence is None
    # per-step differences are rounding only; outputs and grads measured ~1e-13 relative here
    kinds = trace.worst_by_kind()
    assert set(kinds) >= {"output", "loss", "grad_pred", "grad_input", "grad", "param", "state"}
    assert kinds["loss"] < 1e-13 and kinds["param"] < 1e-13, trace.summary()
    assert worst[3] < 1e-11, trace.summary()
    assert "all matched" in trace.summary()


def test_lockstep_compares_every_quantity_each_step(rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Sigmoid(), hb.Linear(4, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trace = cc.lockstep(model, hb.MSELoss(), opt, data_for(rng, 2, n_in=3, n_out=2))
    labels = set(trace.steps[1])
    expected = {"0 (Linear) output", "1 (Sigmoid) output", "2 (Linear) output", "loss (MSELoss) loss",
                "loss (MSELoss) grad_pred", "0 (Linear) grad_input", "1 (Sigmoid) grad_input",
                "2 (Linear) grad_input"}
    for n in ("0.weight", "0.bias", "2.weight", "2.bias"):
        expected |= {f"{n} (Linear) grad", f"{n} (Linear) param", f"{n} (Linear) state.momentum_buffer"}
    assert labels == expected


class WrongForBatchOf3(hb.Tanh):
    """Correct, except its backward is 10% off for a batch of 3."""

    def backward(self, dy):
        dx = super().backward(dy)
        return dx * 1.1 if np.ndim(dy) == 2 and len(dy) == 3 else dx


def test_lockstep_follows_changing_shapes_and_quantities(rng):
    """Batch sizes change from step to step (an unbatched sample among them): each step is judged
    with its own sizes, and a bug that shows only at the third step's batch of 3 is caught there."""
    sizes = [8, 8, 3, None, 1, 8]
    data = [(rng.normal(size=(5,) if b is None else (b, 5)), rng.normal(size=(2,) if b is None else (b, 2)))
            for b in sizes]
    model = hb.Sequential(hb.Linear(5, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trace = cc.lockstep(model, hb.MSELoss(), opt, data)
    assert len(trace) == 6 and trace.divergence is None
    assert [len(s) for s in trace.steps] == [20] * 6 and trace.worst()[3] < 1e-12

    model = hb.Sequential(hb.Linear(5, 4, rng=rng), WrongForBatchOf3(), hb.Linear(4, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), opt, data)
    assert (info.value.step, info.value.name, info.value.quantity) == (2, "1 (WrongForBatchOf3)", "grad_input")
    assert info.value.hint == "factor" and abs(info.value.factor - 1.1) < 1e-9


@pytest.mark.parametrize("outcome", ["passes", "diverges", "raises"])
def test_lockstep_leaves_the_model_as_it_was(outcome, rng):
    """lockstep watches each module's forward and backward while it runs; afterwards the modules
    are the user's own again, whether it passed, found a divergence or met an error."""
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh() if outcome != "diverges" else WrongForBatchOf3(),
                          hb.Linear(4, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    n_in = 7 if outcome == "raises" else 3          # a wrong input size: handbp's own error
    data = [(rng.normal(size=(3, n_in)), rng.normal(size=(3, 2)))]
    try:
        cc.lockstep(model, hb.MSELoss(), opt, data)
    except cc.Divergence:
        assert outcome == "diverges"
    except ValueError:
        assert outcome == "raises"
    else:
        assert outcome == "passes"
    for _, m in model.named_modules():
        assert "forward" not in vars(m) and "backward" not in vars(m)
    x = rng.normal(size=(2, 3))
    np.testing.assert_array_equal(model(x), model[2].forward(model[1].forward(model[0].forward(x))))


def test_lockstep_tolerance_override_catches_rounding(rng):
    model = tanh_net(rng, depth=3, width=32)
    data = data_for(rng, 2)
    trace = cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    assert trace.tolerance == {"mode": "elementwise", "rtol": 1e-9, "atol": None, "factor": 4.0,
                               "floor": pytest.approx(64 * np.finfo(np.float32).eps)}
    # rtol = atol = 0 demands bit equality, which two implementations do not reach
    exact = tanh_net(np.random.default_rng(1), depth=3, width=32)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(exact, hb.MSELoss(), hb.optim.SGD(exact.parameters(), lr=0.1), data, rtol=0, atol=0)
    assert "rtol 0, atol 0" in str(info.value)


def test_lockstep_rejects_wrong_arguments(rng):
    model = tanh_net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="loss"):
        cc.lockstep(model, torch.nn.MSELoss(), opt, [])
    with pytest.raises(TypeError, match="optimizer"):
        cc.lockstep(model, hb.MSELoss(), None, [])
    with pytest.raises(ValueError, match="rtol"):
        cc.lockstep(model, hb.MSELoss(), opt, data_for(rng, 1), rtol=-1)
    other = hb.optim.SGD(tanh_net(rng).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not in the model"):
        cc.lockstep(model, hb.MSELoss(), other, data_for(rng, 1))


@pytest.mark.parametrize("data", [[], (), iter([]), {}], ids=["list", "tuple", "iterator", "dict"])
def test_lockstep_refuses_to_pass_on_no_steps(data, rng):
    """A check of zero steps proves nothing: an error, not a pass."""
    model = tanh_net(rng)
    with pytest.raises(ValueError, match="data: expected at least one .x, y. pair, got none"):
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)


def test_a_step_that_compares_nothing_gives_handbps_own_error(rng, monkeypatch):
    """handbp failed before anything could be recorded: its error, not an empty pass."""
    lockstep_module = importlib.import_module("crosscheck.lockstep")
    model = tanh_net(rng)
    monkeypatch.setattr(lockstep_module, "Recorder", EmptyRecorder)
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    monkeypatch.setattr(opt, "step", lambda: (_ for _ in ()).throw(RuntimeError("no step")))
    monkeypatch.setattr(model, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("no forward")))
    with pytest.raises(RuntimeError, match="no forward"):     # handbp's own error, not an empty pass
        cc.lockstep(model, hb.MSELoss(), opt, data_for(rng, 1))


class EmptyRecorder:
    """A recorder that records nothing (as if no module had run)."""

    def __init__(self, leaf_list, keep=()):
        self.paths = [p for p, _ in leaf_list]
        self.outputs, self.grad_inputs = {}, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(data=5), TypeError, "data: expected an iterable of .x, y. pairs, got int 5"),
    (dict(data="xy"), TypeError, "data: expected an iterable of .x, y. pairs, got str"),
    (dict(data=[np.zeros(5)]), TypeError, "data: item 0: expected an .x, y. pair, got array of shape .5,."),
    (dict(data=[(np.zeros((2, 5)),)]), TypeError, "data: item 0: expected an .x, y. pair"),
    (dict(rtol="1e-3"), TypeError, "rtol: expected a finite number ≥ 0 or None, got str '1e-3'"),
    (dict(atol=[1e-3]), TypeError, "atol: expected a finite number ≥ 0 or None, got list"),
    (dict(rtol=True), TypeError, "rtol: expected a finite number ≥ 0 or None, got bool"),
    (dict(atol=float("inf")), ValueError, "atol: expected a finite number ≥ 0 or None, got inf"),
    (dict(resync="no"), TypeError, "resync: expected True or False, got str 'no'"),
])
def test_lockstep_names_the_bad_argument(kwargs, error, fragment, rng):
    model = tanh_net(rng)
    before = model.state_dict()
    args = dict(data=data_for(rng, 2))
    args.update(kwargs)
    with pytest.raises(error, match=fragment):
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), **args)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_lockstep_accepts_numpy_scalars_as_tolerances(rng):
    model = tanh_net(rng)
    trace = cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data_for(rng, 1),
                        rtol=np.float32(1e-6), atol=np.int64(0))
    assert trace.tolerance["rtol"] == pytest.approx(1e-6) and trace.tolerance["atol"] == 0.0


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_unsupported_dtypes_are_named(dtype, rng):
    model = hb.Sequential(hb.Linear(3, 2, rng=rng)).to(dtype)
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)} is not supported.*float64 or float32"):
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1),
                    [(np.zeros((2, 3), dtype), np.zeros((2, 2), dtype))])
    with pytest.raises(cc.MirrorError, match=f"cannot mirror dtype {np.dtype(dtype)}.*float64 and float32"):
        cc.mirror(model)


def test_divergence_report_holds_plain_values_and_pickles(rng):
    class Half(hb.Tanh):
        def backward(self, dy):
            return 0.5 * super().backward(dy)

    model = hb.Sequential(hb.Linear(5, 8, rng=rng), Half(), hb.Linear(8, 3, rng=rng))
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data_for(rng, 2))
    d = info.value
    assert isinstance(d, AssertionError)
    fields = d.to_dict()

    def plain(v):
        if isinstance(v, (list, tuple)):
            return all(plain(i) for i in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(i) for k, i in v.items())
        return v is None or type(v) in (int, float, str, bool)

    assert plain(fields), fields
    assert (d.step, d.name, d.quantity, d.hint) == (0, "1 (Half)", "grad_input", "factor")
    assert d.factor == pytest.approx(0.5)
    text = str(d)
    for piece in ("step 0", "1 (Half)", "grad_input", "shape:      (8, 8)", "worst:      index", "max abs",
                  "tolerance", "a missing factor of 2", "mismatched elements: 64 / 64 (100.0%)", "also mismatched"):
        assert piece in text, text
    again = pickle.loads(pickle.dumps(d))
    assert str(again) == text


# -- float32 --------------------------------------------------------------------------------
def test_float32_correct_model_passes_the_rule(rng):
    model = tanh_net(rng, np.float32, depth=10, width=128, n_in=10, n_out=3, std=0.3)
    opt = hb.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trace = cc.lockstep(model, hb.MSELoss(), opt, data_for(rng, 3, batch=16, n_in=10, n_out=3, dtype=np.float32))
    assert trace.tolerance["mode"] == "float32-rule" and trace.divergence is None
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())


def test_float32_one_percent_off_backward_fails(rng):
    class OnePercentOff(hb.Tanh):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    model = hb.Sequential(hb.Linear(10, 64, rng=rng, dtype=np.float32), OnePercentOff(),
                          hb.Linear(64, 3, rng=rng, dtype=np.float32))
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.01),
                    data_for(rng, 2, batch=16, n_in=10, n_out=3, dtype=np.float32))
    assert info.value.name == "1 (OnePercentOff)" and info.value.quantity == "grad_input"
    assert "float32 rule" in str(info.value) and "float64 reference" in str(info.value)


def test_float32_explicit_tolerance_compares_elementwise(rng):
    model = tanh_net(rng, np.float32)
    trace = cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.01),
                        data_for(rng, 2, dtype=np.float32), rtol=1e-4, atol=1e-5)
    assert trace.tolerance["mode"] == "elementwise" and trace.tolerance["rtol"] == 1e-4


# -- resync and drift -----------------------------------------------------------------------
def test_free_running_drifts_but_every_step_matches(rng, tmp_path):
    """The issue's measurement: the same maths on both sides drifts apart when run freely."""
    model = tanh_net(rng, depth=5, width=64, n_in=10, n_out=3, std=0.5)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = data_for(rng, 60, batch=32, n_in=10, n_out=3)
    trace = cc.lockstep(model, hb.MSELoss(), opt, data, resync=False)
    assert len(trace.drift) == 60
    assert trace.drift[-1] > 1e4 * max(trace.drift[0], 1e-16), trace.drift
    assert "drift is numerics" in trace.summary() and "not a bug" in trace.summary()
    trace.plot_drift(tmp_path / "drift.png")
    assert (tmp_path / "drift.png").read_bytes()[:4] == b"\x89PNG"


def test_resync_is_the_default_and_records_no_drift(rng):
    model = tanh_net(rng)
    trace = cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data_for(rng, 3))
    assert trace.resync and trace.drift == []
    with pytest.raises(ValueError, match="resync=False"):
        trace.plot_drift("unused.png")


def test_state_is_compared_before_resync(rng):
    """A bug in how state is stored is caught even though the twin is re-synchronised each step."""
    class StoresHalfBuffer(hb.optim.SGD):
        def step(self):
            super().step()
            for s in self.state.values():
                s["momentum_buffer"] *= 0.5

    model = tanh_net(rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), StoresHalfBuffer(model.parameters(), lr=0.1, momentum=0.9), data_for(rng, 3))
    assert info.value.quantity == "state.momentum_buffer" and info.value.step == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the point: training blows up to NaN
def test_both_sides_nan_is_reported_as_divergence_of_training(rng):
    model = hb.Sequential(hb.Linear(5, 3, rng=rng))
    data = [(rng.normal(size=(4, 5)) * 1e150, rng.normal(size=(4, 3)))] * 3
    with pytest.raises(cc.NonFiniteError, match="both sides"):
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=1.0), data)


class Watch(hb.Identity):
    """Records torch's and BLAS's thread counts each time it runs forward."""

    seen = []

    def forward(self, x):
        from threadpoolctl import threadpool_info
        Watch.seen.append((torch.get_num_threads(),
                           max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")))
        return super().forward(x)


@pytest.mark.parametrize("with_threadpoolctl", [True, False])
def test_lockstep_shares_the_threads_between_numpy_and_torch(with_threadpoolctl, rng, monkeypatch):
    """NumPy's BLAS pool and torch's take turns within a step; at full size each they fight over
    the cores. During lockstep torch keeps half its threads and BLAS gets the rest (without
    threadpoolctl: torch on 1 thread); both are restored afterwards, also after a Divergence."""
    from threadpoolctl import threadpool_limits
    import crosscheck._torch as ct
    if not with_threadpoolctl:
        monkeypatch.setattr(ct, "_BLAS", [None])
    cc.register(Watch, lambda m, _: torch.nn.Identity())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with threadpool_limits(limits=4, user_api="blas"):
            for wrong in (False, True):
                Watch.seen.clear()
                model = hb.Sequential(hb.Linear(3, 4, rng=rng), WrongForBatchOf3() if wrong else hb.Tanh(), Watch(),
                                      hb.Linear(4, 2, rng=rng))
                data = [(rng.normal(size=(3, 3)), rng.normal(size=(3, 2)))] * 2
                try:
                    cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
                except cc.Divergence:
                    assert wrong
                expected = (2, 2) if with_threadpoolctl else (1, 4)
                assert Watch.seen and set(Watch.seen) == {expected}, Watch.seen
                assert torch.get_num_threads() == 4
                from threadpoolctl import threadpool_info
                assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {4}
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("norm", ["BatchNorm1d", "LayerNorm"])
def test_bad_data_gets_handbps_own_error_also_with_buffers(norm, rng):
    """float64 data for a float32 model: handbp refuses it in its first layer, torch casts it. The
    user gets handbp's error, not a mismatch of running statistics that handbp never reached (nor
    a crash on the missing loss)."""
    model = hb.Sequential(hb.Linear(4, 5, rng=rng, dtype=np.float32), getattr(hb, norm)(5, dtype=np.float32),
                          hb.Tanh(), hb.Linear(5, 3, rng=rng, dtype=np.float32))
    data = [(rng.normal(size=(6, 4)), rng.normal(size=(6, 3)).astype(np.float32))]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
