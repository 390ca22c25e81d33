"""hb.optim.SGD against torch.optim.SGD: the same parameters and gradients, step after step, give
the same parameters and momentum buffers; torch's errors; state_dict round trips."""
import copy
import re

import numpy as np
import pytest
import torch

import handbp as hb
from tests.helpers.tolerance import TORCH_ATOL, TORCH_RTOL

CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "weight_decay-momentum-dampening": dict(lr=0.1, momentum=0.7, dampening=0.5, weight_decay=0.01),
    "nesterov-weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=0.02, nesterov=True),
    "maximize": dict(lr=0.1, maximize=True),
    "maximize-momentum-weight_decay": dict(lr=0.1, momentum=0.5, weight_decay=0.1, maximize=True),
    "default-lr": dict(),
}
SHAPES = [(3, 4), (3,), (2, 3), (1,)]
STEPS = 6


def twins(rng, shapes=SHAPES):
    ours = [hb.Parameter(rng.normal(size=s)) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    return ours, theirs


def set_grads(ours, theirs, rng, none=()):
    for i, (p, t) in enumerate(zip(ours, theirs)):
        if i in none:
            p.grad, t.grad = None, None
        else:
            g = rng.normal(size=p.shape)
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())


@pytest.mark.parametrize("case", list(CASES))
def test_sgd_matches_torch_step_by_step(case, rng):
    hyper = CASES[case]
    ours, theirs = twins(rng)
    opt, topt = hb.optim.SGD(ours, **hyper), torch.optim.SGD(theirs, **hyper)
    for step in range(STEPS):
        set_grads(ours, theirs, rng)
        opt.step()
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL,
                                       err_msg=f"step {step}, parameter {i}")
            if hyper.get("momentum"):
                np.testing.assert_allclose(opt.state[p]["momentum_buffer"], topt.state[t]["momentum_buffer"].numpy(),
                                           rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"step {step}, buffer {i}")
            else:
                assert p not in opt.state or not opt.state[p]


@pytest.mark.parametrize("case", list(CASES))
def test_sgd_float32_is_bit_identical_to_torch_even_where_the_step_cancels(case, rng):
    """torch rounds each p + c · g once (a fused multiply-add); so does handbp in float32. Half the
    gradients here bring a parameter to within ~1e-4 of 0 in one step, where rounding c · g first
    was off by up to a unit in the last place of c · g, many of the result's (seen as a float32
    lockstep false alarm on a weight near 0)."""
    hyper = CASES[case]
    lr = hyper.get("lr", 1e-3)
    ours = [hb.Parameter(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt, topt = hb.optim.SGD(ours, **hyper), torch.optim.SGD(theirs, **hyper)
    for step in range(STEPS):
        for p, t in zip(ours, theirs):
            g = rng.normal(size=p.shape)
            cancel = rng.uniform(size=p.shape) < 0.5
            g[cancel] = (p.data[cancel] / lr) * (1 + 1e-4 * rng.normal(size=int(cancel.sum())))
            g = g.astype(np.float32)
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            assert p.data.dtype == np.float32
            np.testing.assert_array_equal(p.data, t.detach().numpy(), err_msg=f"step {step}, parameter {i}")
            if hyper.get("momentum"):
                np.testing.assert_array_equal(opt.state[p]["momentum_buffer"],
                                              topt.state[t]["momentum_buffer"].numpy(), err_msg=f"step {step}, buffer {i}")


@pytest.mark.parametrize("case", ["momentum", "dampening", "nesterov", "maximize-momentum-weight_decay"])
def test_first_step_buffer_is_the_gradient(case, rng):
    """torch: b ← g on the first step (dampening applies only from the second), g after weight
    decay and maximize's sign."""
    hyper = CASES[case]
    ours, _ = twins(rng)
    start = [p.data.copy() for p in ours]
    for p in ours:
        p.grad = rng.normal(size=p.shape)
    opt = hb.optim.SGD(ours, **hyper)
    opt.step()
    sign = -1.0 if hyper.get("maximize") else 1.0
    for p, p0 in zip(ours, start):
        g = sign * p.grad + hyper.get("weight_decay", 0) * p0
        buf = opt.state[p]["momentum_buffer"]
        np.testing.assert_array_equal(buf, g)
        assert buf is not p.grad and not np.shares_memory(buf, p.grad)


def test_buffer_is_not_the_gradient_array(rng):
    p = hb.Parameter(rng.normal(size=3))
    p.grad = rng.normal(size=3)
    opt = hb.optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    g = p.grad.copy()
    p.grad[...] = 100.0                                 # a later in-place change to grad
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], g)


@pytest.mark.parametrize("case", ["plain", "momentum", "nesterov-weight_decay"])
def test_parameters_without_gradient_are_skipped_as_torch(case, rng):
    hyper = CASES[case]
    ours, theirs = twins(rng)
    opt, topt = hb.optim.SGD(ours, **hyper), torch.optim.SGD(theirs, **hyper)
    untouched = ours[1].data.copy()
    for step, none in enumerate([(1,), (1, 2), (0, 1), (), (3,)]):
        set_grads(ours, theirs, rng, none=none)
        opt.step()
        topt.step()
        if step < 3:
            np.testing.assert_array_equal(ours[1].data, untouched)     # grad None: not even weight decay
            assert ours[1] not in opt.state
        for i, (p, t) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"step {step}, {i}")
            if hyper.get("momentum") and t in topt.state:
                np.testing.assert_allclose(opt.state[p]["momentum_buffer"], topt.state[t]["momentum_buffer"].numpy(),
                                           rtol=TORCH_RTOL, atol=TORCH_ATOL)
        assert {i for i, p in enumerate(ours) if opt.state.get(p)} == \
               {i for i, t in enumerate(theirs) if topt.state.get(t)}


BAD_HYPER = [dict(lr=-0.1), dict(lr=0.1, momentum=-0.5), dict(lr=0.1, weight_decay=-1e-3),
             dict(lr=0.1, nesterov=True), dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
             dict(lr=0.1, momentum=0.0, nesterov=True)]


@pytest.mark.parametrize("kwargs", BAD_HYPER, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
def test_invalid_hyperparameters_raise_torchs_value_error(kwargs):
    """torch's message, then ours: the owner, the argument, what was expected and given."""
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        hb.optim.SGD([hb.Parameter(np.zeros(2))], **kwargs)
    key = "nesterov" if kwargs.get("nesterov") else list(kwargs)[-1]
    assert re.fullmatch(re.escape(str(theirs.value)) + rf" \(SGD: {key}: expected .+, got .+\)", str(ours.value))


@pytest.mark.parametrize("key, value", [("lr", float("nan")), ("momentum", float("inf")), ("lr", "0.1"),
                                        ("lr", True), ("weight_decay", None), ("dampening", float("-inf"))])
def test_non_numbers_are_refused_naming_the_argument(key, value):
    kwargs = {"lr": 0.1, key: value}
    with pytest.raises(ValueError, match=rf"SGD: {key}: expected a finite number"):
        hb.optim.SGD([hb.Parameter(np.zeros(2))], **kwargs)


# -- state -----------------------------------------------------------------------------------
def train(model, opt, rng, steps):
    for _ in range(steps):
        opt.zero_grad()
        model(rng.normal(size=(4, 3)))
        model.backward(rng.normal(size=(4, 2)))
        opt.step()


def snapshot(opt):
    """Everything an optimizer holds, as bytes and plain values."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    state = [(id(p), k, v.tobytes() if isinstance(v, np.ndarray) else v)
             for p, s in opt.state.items() for k, v in s.items()]
    return groups, state, [id(p) for g in opt.param_groups for p in g["params"]]


def model_pair(rng):
    a = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    b = copy.deepcopy(a)
    return a, b


def test_state_dict_round_trip_continues_identically(rng):
    a, b = model_pair(rng)
    opt_a = hb.optim.SGD(a.parameters(), lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    train(a, opt_a, rng, 3)
    b.load_state_dict(a.state_dict())
    opt_b = hb.optim.SGD(b.parameters(), lr=0.5)
    sd = opt_a.state_dict()
    # torch's layout: state by index, groups with hyperparameters and parameter indices
    assert set(sd) == {"state", "param_groups"} and sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd["state"]) == {0, 1, 2, 3} and all(set(s) == {"momentum_buffer"} for s in sd["state"].values())
    assert {k: sd["param_groups"][0][k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov",
                                                   "maximize")} == \
           dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False, maximize=False)
    opt_b.load_state_dict(sd)
    for v in sd["state"].values():                       # the loaded state is a copy
        v["momentum_buffer"] += 1.0
    seed = int(rng.integers(2**31))
    train(a, opt_a, np.random.default_rng(seed), 3)
    train(b, opt_b, np.random.default_rng(seed), 3)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
        np.testing.assert_array_equal(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"])


def test_state_dict_loads_into_torch_and_back(rng):
    a, _ = model_pair(rng)
    opt = hb.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    train(a, opt, rng, 2)
    params = [torch.tensor(p.data.copy(), requires_grad=True) for p in a.parameters()]
    topt = torch.optim.SGD(params, lr=0.5)
    sd = opt.state_dict()
    topt.load_state_dict({"state": {i: {k: torch.from_numpy(v.copy()) for k, v in s.items()}
                                    for i, s in sd["state"].items()},
                          "param_groups": sd["param_groups"]})
    back = topt.state_dict()
    fresh = hb.optim.SGD(a.parameters(), lr=0.5)
    fresh.load_state_dict({"state": {i: {k: v.numpy() for k, v in s.items()} for i, s in back["state"].items()},
                           "param_groups": back["param_groups"]})
    assert snapshot(fresh)[1] == snapshot(opt)[1]
    assert fresh.param_groups[0]["lr"] == 0.05


def bad_state(kind, sd):
    sd = copy.deepcopy(sd)
    if kind == "buffer-shape":
        sd["state"][1]["momentum_buffer"] = np.zeros((5, 5))
    elif kind == "buffer-dtype":
        sd["state"][0]["momentum_buffer"] = sd["state"][0]["momentum_buffer"].astype(np.float32)
    elif kind == "buffer-not-array":
        sd["state"][0]["momentum_buffer"] = 1.0
    elif kind == "unknown-state-key":
        sd["state"][2]["exp_avg"] = np.zeros(4)
    elif kind == "state-for-no-parameter":
        sd["state"][9] = {"momentum_buffer": np.zeros(2)}
    elif kind == "two-groups":
        sd["param_groups"] = sd["param_groups"] * 2
    elif kind == "no-groups":
        sd["param_groups"] = []
    elif kind == "group-size":
        sd["param_groups"][0]["params"] = [0, 1, 2]
    elif kind == "negative-lr":
        sd["param_groups"][0]["lr"] = -1.0
    elif kind == "missing-hyperparameter":
        del sd["param_groups"][0]["momentum"]
    elif kind == "nesterov-with-dampening":
        sd["param_groups"][0].update(nesterov=True, dampening=0.5)
    elif kind == "extra-top-level-key":
        sd["extra"] = 1
    return sd


BAD_STATES = {"buffer-shape": (ValueError, r"parameter 1: 'momentum_buffer': expected shape \(4,\), got \(5, 5\)"),
              "buffer-dtype": (TypeError, r"parameter 0: 'momentum_buffer': expected dtype float64, got float32"),
              "buffer-not-array": (TypeError, r"parameter 0: 'momentum_buffer': expected an array"),
              "unknown-state-key": (ValueError, r"parameter 2: unexpected state 'exp_avg'"),
              "state-for-no-parameter": (ValueError, r"parameter 9"),
              "two-groups": (ValueError, r"expected 1 param groups, got 2"),
              "no-groups": (ValueError, r"expected 1 param groups, got 0"),
              "group-size": (ValueError, r"param group 0: expected 4 parameters, got 3"),
              "negative-lr": (ValueError, r"Invalid learning rate: -1.0"),
              "missing-hyperparameter": (ValueError, r"param group 0 lacks \['momentum'\]"),
              "nesterov-with-dampening": (ValueError, r"Nesterov momentum requires"),
              "extra-top-level-key": (ValueError, r"expected a dict with keys 'state' and 'param_groups'")}


@pytest.mark.parametrize("kind", list(BAD_STATES))
def test_bad_state_dict_is_refused_and_nothing_changes(kind, rng):
    a, _ = model_pair(rng)
    opt = hb.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    train(a, opt, rng, 2)
    good = opt.state_dict()
    fresh = hb.optim.SGD(a.parameters(), lr=0.3, momentum=0.5, dampening=0.1)
    train(a, fresh, rng, 1)
    before, params = snapshot(fresh), [p.data.tobytes() for p in a.parameters()]
    error, message = BAD_STATES[kind]
    with pytest.raises(error, match=message):
        fresh.load_state_dict(bad_state(kind, good))
    assert snapshot(fresh) == before
    assert [p.data.tobytes() for p in a.parameters()] == params


def test_step_with_a_wrong_gradient_shape_changes_nothing(rng):
    """Every gradient is checked before any parameter moves."""
    a, _ = model_pair(rng)
    opt = hb.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    train(a, opt, rng, 1)
    a(rng.normal(size=(4, 3)))
    a.backward(rng.normal(size=(4, 2)))
    a[2].bias.grad = np.ones(3)                               # the last parameter's gradient is wrong
    before, params = snapshot(opt), [p.data.tobytes() for p in a.parameters()]
    with pytest.raises(ValueError, match=r"SGD.step: grad of parameter 3: expected an array of dtype float64 and "
                                         r"shape \(2,\) \(the parameter's\), got array of shape \(3,\)"):
        opt.step()
    assert snapshot(opt) == before
    assert [p.data.tobytes() for p in a.parameters()] == params
