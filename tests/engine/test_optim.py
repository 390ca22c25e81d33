"""Adam, AdamW, RMSprop, Adagrad and the learning-rate schedulers against torch.optim, step by step:
parameters and every state buffer after each step, param groups in torch's format, state_dict round
trips, and bad hyperparameters or mismatched state refused with nothing changed."""
import copy
import os

import numpy as np
import pytest
import torch

import handbp as hb
from tests.helpers.tolerance import TORCH_ATOL, TORCH_RTOL

# keys torch's param groups carry that only select its kernels (handbp has one implementation)
TORCH_ONLY_GROUP_KEYS = {"foreach", "fused", "capturable", "differentiable"}

CASES = {
    "Adam": dict(),
    "Adam-amsgrad": dict(amsgrad=True),
    "Adam-maximize": dict(maximize=True),
    "Adam-weight_decay": dict(weight_decay=0.1),
    "Adam-weight_decay-amsgrad": dict(weight_decay=0.1, amsgrad=True),
    "Adam-decoupled": dict(weight_decay=0.1, decoupled_weight_decay=True),
    "Adam-betas-eps": dict(lr=0.05, betas=(0.5, 0.6), eps=0.1),
    "Adam-lr0": dict(lr=0.0, weight_decay=0.1),
    "AdamW": dict(),
    "AdamW-amsgrad": dict(amsgrad=True, weight_decay=0.3),
    "AdamW-maximize": dict(maximize=True, lr=0.01),
    "AdamW-no-decay": dict(weight_decay=0),
    "RMSprop": dict(),
    "RMSprop-momentum": dict(momentum=0.9),
    "RMSprop-centered": dict(centered=True),
    "RMSprop-centered-momentum": dict(centered=True, momentum=0.5, alpha=0.9),
    "RMSprop-weight_decay": dict(weight_decay=0.1, eps=0.01),
    "RMSprop-maximize": dict(maximize=True, momentum=0.3),
    "Adagrad": dict(),
    "Adagrad-lr_decay": dict(lr_decay=0.3),
    "Adagrad-weight_decay": dict(weight_decay=0.1),
    "Adagrad-initial": dict(initial_accumulator_value=0.5, eps=1e-3),
    "Adagrad-maximize": dict(maximize=True, lr_decay=0.1),
    # torch fills every sum from the constructor's value, whatever a group says
    "Adagrad-group-initial": dict(initial_accumulator_value=0.2, group2=dict(initial_accumulator_value=3.0)),
    "RMSprop-group-centered": dict(group2=dict(centered=True, momentum=0.4)),
}

SHAPES = [(3, 4), (3,), (2, 3)]


def optimizers(case, ours, theirs):
    """The handbp optimizer and its torch twin, two param groups (the second with its own lr)."""
    name, hyper = case.split("-")[0], dict(CASES[case])
    group2 = {"lr": 0.03, **hyper.pop("group2", {})}

    def groups(ps):
        return [{"params": ps[:2]}, {"params": ps[2:], **group2}]

    return (getattr(hb.optim, name)(groups(ours), **hyper),
            getattr(torch.optim, name)(groups(theirs), **hyper, foreach=False))


def make_params(rng):
    ours = [hb.Parameter(rng.normal(size=s)) for s in SHAPES]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    return ours, theirs


def set_grads(ours, theirs, rng, skip=()):
    """The same gradients on both sides; parameters in ``skip`` get none (skipped by the step)."""
    for i, (p, t) in enumerate(zip(ours, theirs)):
        if i in skip:
            p.grad, t.grad = None, None
        else:
            g = rng.normal(size=p.shape) * rng.choice([1e-3, 1.0, 10.0])
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())


def assert_same_state(opt, topt, ours, theirs, where):
    for i, (p, t) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"{where}: param {i}")
        mine, ref = opt.state.get(p, {}), topt.state.get(t, {})
        assert set(mine) == set(ref), f"{where}: param {i}: state keys {sorted(mine)} vs torch {sorted(ref)}"
        for key, value in mine.items():
            if key == "step":
                assert isinstance(value, float) and value == float(ref[key]), f"{where}: param {i}: step"
            else:
                np.testing.assert_allclose(value, ref[key].numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL,
                                           err_msg=f"{where}: param {i}: {key}")


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch_step_by_step(case, rng):
    ours, theirs = make_params(rng)
    opt, topt = optimizers(case, ours, theirs)
    assert_same_state(opt, topt, ours, theirs, "after construction")
    for step in range(6):
        set_grads(ours, theirs, rng, skip=(2,) if step == 2 else ())   # one step without a gradient
        opt.step()
        topt.step()
        assert_same_state(opt, topt, ours, theirs, f"step {step}")


@pytest.mark.parametrize("case", [c for c in CASES if "-" not in c])
def test_param_groups_and_defaults_in_torchs_format(case, rng):
    ours, theirs = make_params(rng)
    name = case
    opt, topt = getattr(hb.optim, name)(ours), getattr(torch.optim, name)(theirs)
    mine, ref = opt.state_dict(), topt.state_dict()
    for g, tg in zip(mine["param_groups"], ref["param_groups"]):
        assert set(tg) - set(g) <= TORCH_ONLY_GROUP_KEYS, sorted(set(tg) - set(g))
        assert set(g) <= set(tg), sorted(set(g) - set(tg))
        for key, value in g.items():
            assert value == tg[key], key
    assert set(mine["state"]) == set(ref["state"])      # Adagrad: state from the constructor on
    for idx, entry in mine["state"].items():
        assert set(entry) == set(ref["state"][idx])


@pytest.mark.parametrize("case", ["Adam-amsgrad", "AdamW", "RMSprop-centered-momentum", "Adagrad-lr_decay"])
def test_state_dict_round_trip_continues_identically(case, rng):
    ours, theirs = make_params(rng)
    opt, _ = optimizers(case, ours, theirs)
    grads = [[rng.normal(size=s) for s in SHAPES] for _ in range(5)]
    for k in range(3):
        for p, g in zip(ours, grads[k]):
            p.grad = g.copy()
        opt.step()
    sd = opt.state_dict()
    twins = [hb.Parameter(p.data) for p in ours]
    fresh, _ = optimizers(case, twins, [torch.tensor(p.data) for p in ours])
    fresh.load_state_dict(sd)
    for a in sd["state"].values():                      # the loaded state is a copy, not a view
        for v in a.values():
            if isinstance(v, np.ndarray):
                v[...] = np.nan
    for k in range(3, 5):
        for p, q, g in zip(ours, twins, grads[k]):
            p.grad, q.grad = g.copy(), g.copy()
        opt.step()
        fresh.step()
    for p, q in zip(ours, twins):
        np.testing.assert_array_equal(p.data, q.data)
    for p, q in zip(ours, twins):
        for key, v in opt.state[p].items():
            np.testing.assert_array_equal(v, fresh.state[q][key], err_msg=key)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adagrad"])
def test_checkpoint_saves_and_restores_the_optimizer(name, rng, tmp_path):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    opt = getattr(hb.optim, name)(model.parameters(), lr=0.01)
    loss = hb.MSELoss()
    batches = [(rng.normal(size=(5, 3)), rng.normal(size=(5, 2))) for _ in range(4)]

    def train(m, o, data):
        for x, y in data:
            o.zero_grad(); loss(m(x), y); m.backward(loss.backward()); o.step()

    train(model, opt, batches[:2])
    path = os.path.join(tmp_path, "ckpt.npz")
    hb.save(model, path, optimizer=opt)
    other = copy.deepcopy(model)
    other_opt = getattr(hb.optim, name)(other.parameters(), lr=0.5)
    hb.load_into(path, other, other_opt)
    train(model, opt, batches[2:])
    train(other, other_opt, batches[2:])
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_adam_skips_parameters_without_gradient_and_creates_no_state(rng):
    a, b = hb.Parameter(rng.normal(size=3)), hb.Parameter(rng.normal(size=3))
    before = b.data.copy()
    a.grad = np.ones(3)
    opt = hb.optim.Adam([a, b], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(b.data, before)
    assert b not in opt.state and opt.state[a]["step"] == 1.0


def test_adam_first_step_moves_by_lr_times_sign(rng):
    """With bias correction, m̂ = g and v̂ = g² on step 1: p moves by lr · g / (|g| + eps)."""
    p = hb.Parameter(rng.normal(size=5))
    start = p.data.copy()
    p.grad = rng.normal(size=5)
    hb.optim.Adam([p], lr=0.1, eps=0.0).step()
    np.testing.assert_allclose(p.data, start - 0.1 * np.sign(p.grad), rtol=1e-15, atol=1e-15)


# -- bad hyperparameters: torch's messages, plus the argument and its expected range -----------
BAD_HYPER = [
    ("Adam", dict(lr=-0.1), ValueError, r"Invalid learning rate: -0.1 \(Adam: lr: expected a finite number >= 0, got -0.1\)"),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, r"Invalid beta parameter at index 0: 1.0 \(Adam: betas\[0\]: expected a finite number in \[0, 1\), got 1.0\)"),
    ("Adam", dict(betas=(0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1: 1.0"),
    ("Adam", dict(betas=(-0.1, 0.9)), ValueError, r"Invalid beta parameter at index 0: -0.1"),
    ("Adam", dict(betas=(0.9,)), ValueError, r"betas: expected a pair"),
    ("Adam", dict(eps=-1e-8), ValueError, r"Invalid epsilon value: -1e-08"),
    ("Adam", dict(weight_decay=-1), ValueError, r"Invalid weight_decay value: -1"),
    ("Adam", dict(lr=float("nan")), ValueError, r"lr: expected a finite number"),
    ("Adam", dict(amsgrad="yes"), TypeError, r"Adam: amsgrad: expected True or False, got 'yes'"),
    ("AdamW", dict(lr=-1.0), ValueError, r"Invalid learning rate: -1.0"),
    ("AdamW", dict(betas=(0.9, 1.5)), ValueError, r"Invalid beta parameter at index 1: 1.5"),
    ("AdamW", dict(weight_decay=-0.01), ValueError, r"Invalid weight_decay value: -0.01"),
    ("RMSprop", dict(lr=-0.01), ValueError, r"Invalid learning rate: -0.01"),
    ("RMSprop", dict(alpha=-0.5), ValueError, r"Invalid alpha value: -0.5 \(RMSprop: alpha: expected a finite number >= 0, got -0.5\)"),
    ("RMSprop", dict(momentum=-0.9), ValueError, r"Invalid momentum value: -0.9"),
    ("RMSprop", dict(eps=-1.0), ValueError, r"Invalid epsilon value: -1.0"),
    ("RMSprop", dict(weight_decay=-1.0), ValueError, r"Invalid weight_decay value: -1.0"),
    ("RMSprop", dict(centered=1), TypeError, r"centered: expected True or False"),
    ("Adagrad", dict(lr=-0.01), ValueError, r"Invalid learning rate: -0.01"),
    ("Adagrad", dict(lr_decay=-0.1), ValueError, r"Invalid lr_decay value: -0.1"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError, r"Invalid initial_accumulator_value value: -1.0"),
    ("Adagrad", dict(eps=-1.0), ValueError, r"Invalid epsilon value: -1.0"),
    ("Adagrad", dict(weight_decay=float("inf")), ValueError, r"weight_decay: expected a finite number"),
]


# values torch's constructors accept (it checks neither types nor finiteness, nor the pair's length)
TORCH_ACCEPTS = {"betas-4", "amsgrad-8", "centered-17", "weight_decay-22"}


@pytest.mark.parametrize("name, kwargs, exc, message", BAD_HYPER, ids=[f"{c[0]}-{list(c[1])[0]}-{i}"
                                                                      for i, c in enumerate(BAD_HYPER)])
def test_invalid_hyperparameters_are_refused(name, kwargs, exc, message, request):
    with pytest.raises(exc, match=message):
        getattr(hb.optim, name)([hb.Parameter(np.zeros(2))], **kwargs)
    if request.node.callspec.id.split("-", 1)[1] not in TORCH_ACCEPTS:
        with pytest.raises(ValueError):           # torch refuses the same value
            getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)


def snapshot(opt):
    state = {id(p): {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
             for p, s in opt.state.items()}
    params = [(p.data.tobytes(), None if p.grad is None else p.grad.tobytes())
              for g in opt.param_groups for p in g["params"]]
    return state, params, repr([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def trained(case, rng):
    ours, theirs = make_params(rng)
    opt, _ = optimizers(case, ours, theirs)
    for _ in range(2):
        set_grads(ours, theirs, rng)
        opt.step()
    return ours, opt


def _drop(key):
    def f(sd):
        del sd["state"][0][key]
    return f


def _set(key, value):
    def f(sd):
        sd["state"][0][key] = value
    return f


def _group(key, value):
    def f(sd):
        sd["param_groups"][0][key] = value
    return f


BAD_STATE = [
    ("Adam", _set("exp_avg", np.zeros((5, 5))), ValueError, r"parameter 0: 'exp_avg': expected shape \(3, 4\), got \(5, 5\)"),
    ("Adam", _set("exp_avg_sq", np.zeros((3, 4), np.float32)), TypeError, r"'exp_avg_sq': expected dtype float64, got float32"),
    ("Adam", _set("exp_avg", [0.0] * 12), TypeError, r"'exp_avg': expected an array, got list"),
    ("Adam", _drop("exp_avg_sq"), ValueError, r"parameter 0: state lacks \['exp_avg_sq'\]"),
    ("Adam-amsgrad", _drop("max_exp_avg_sq"), ValueError, r"state lacks \['max_exp_avg_sq'\]"),
    ("Adam", _group("amsgrad", True), ValueError, r"state lacks \['max_exp_avg_sq'\]"),
    ("Adam", _set("momentum_buffer", np.zeros((3, 4))), ValueError, r"unexpected state 'momentum_buffer'"),
    ("Adam", _set("step", -1.0), ValueError, r"'step': expected a whole number >= 0, got float -1.0"),
    ("Adam", _set("step", "two"), ValueError, r"'step': expected a whole number >= 0"),
    ("Adam", _group("betas", (0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1"),
    ("AdamW", _group("decoupled_weight_decay", False), ValueError, r"decoupled_weight_decay: expected True"),
    ("RMSprop-momentum", _drop("momentum_buffer"), ValueError, r"state lacks \['momentum_buffer'\]"),
    ("RMSprop-centered", _drop("grad_avg"), ValueError, r"state lacks \['grad_avg'\]"),
    ("RMSprop", _set("square_avg", np.zeros(3)), ValueError, r"'square_avg': expected shape \(3, 4\)"),
    ("RMSprop", _group("alpha", -1.0), ValueError, r"Invalid alpha value: -1.0"),
    ("Adagrad", _drop("sum"), ValueError, r"state lacks \['sum'\]"),
    ("Adagrad", _set("sum", np.zeros((4, 3))), ValueError, r"'sum': expected shape \(3, 4\), got \(4, 3\)"),
    ("Adagrad", _set("exp_avg", np.zeros((3, 4))), ValueError, r"unexpected state 'exp_avg'"),
    ("Adagrad", lambda sd: sd["param_groups"].pop(), ValueError, r"expected 2 param groups, got 1"),
    ("Adagrad", lambda sd: sd["param_groups"][0]["params"].pop(), ValueError, r"param group 0: expected 2 parameters, got 1"),
    ("Adagrad", lambda sd: sd["param_groups"][0].pop("lr_decay"), ValueError, r"param group 0 lacks \['lr_decay'\]"),
    ("Adagrad", lambda sd: sd["state"].update({9: {}}), ValueError, r"state for parameter 9, which no group holds"),
    ("Adagrad", lambda sd: sd.pop("state"), ValueError, r"expected a dict with keys 'state' and 'param_groups'"),
]


@pytest.mark.parametrize("case, corrupt, exc, message", BAD_STATE, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_STATE)])
def test_mismatched_state_is_refused_and_nothing_changes(case, corrupt, exc, message, rng):
    _, source = trained(case, rng)
    sd = copy.deepcopy(source.state_dict())
    corrupt(sd)
    _, target = trained(case, rng)
    before = snapshot(target)
    with pytest.raises(exc, match=message):
        target.load_state_dict(sd)
    assert snapshot(target) == before


def test_bad_param_group_changes_nothing(rng):
    ours, theirs = make_params(rng)
    opt = hb.optim.Adam(ours[:2], lr=0.1)
    before = snapshot(opt)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0: 2"):
        opt.add_param_group({"params": ours[2:], "betas": (2, 0.5)})
    assert snapshot(opt) == before and len(opt.param_groups) == 1


def test_wrong_gradient_shape_changes_no_parameter(rng):
    ours, theirs = make_params(rng)
    opt = hb.optim.Adam(ours, lr=0.1)
    set_grads(ours, theirs, rng)
    ours[2].grad = np.zeros((7,))                        # the last parameter's backward is wrong
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"Adam.step: grad of parameter 2: expected an array of dtype float64 and "
                                         r"shape \(2, 3\) \(the parameter's\), got array of shape \(7,\)"):
        opt.step()
    assert snapshot(opt) == before


# -- learning-rate schedulers ------------------------------------------------------------------
SCHEDULERS = {
    "StepLR": ("StepLR", dict(step_size=3, gamma=0.5)),
    "StepLR-every": ("StepLR", dict(step_size=1)),
    "ExponentialLR": ("ExponentialLR", dict(gamma=0.9)),
    "CosineAnnealingLR": ("CosineAnnealingLR", dict(T_max=10)),
    "CosineAnnealingLR-eta_min": ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    "CosineAnnealingLR-T1": ("CosineAnnealingLR", dict(T_max=1, eta_min=0.001)),
}


def scheduled(case, rng, optimizer="SGD"):
    name, kwargs = SCHEDULERS[case]
    ours, theirs = make_params(rng)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.03}]
    opt, topt = getattr(hb.optim, optimizer)(groups(ours), lr=0.1), getattr(torch.optim, optimizer)(groups(theirs), lr=0.1)
    sched = getattr(hb.optim.lr_scheduler, name)(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    return ours, theirs, opt, topt, sched, tsched


@pytest.mark.parametrize("case", list(SCHEDULERS))
def test_scheduler_matches_torch_over_30_epochs(case, rng):
    ours, theirs, opt, topt, sched, tsched = scheduled(case, rng, optimizer="Adam")
    assert sched.get_last_lr() == tsched.get_last_lr()
    for epoch in range(30):
        set_grads(ours, theirs, rng)
        opt.step(); topt.step()
        sched.step(); tsched.step()
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-15, atol=0,
                                   err_msg=f"epoch {epoch}")
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        assert [g["initial_lr"] for g in opt.param_groups] == [g["initial_lr"] for g in topt.param_groups]
    assert_same_state(opt, topt, ours, theirs, "after 30 epochs")
    mine, ref = sched.state_dict(), tsched.state_dict()
    assert set(ref) - set(mine) == {"_is_initial", "_get_lr_called_within_step"}
    assert {k: mine[k] for k in mine if k != "_last_lr"} == {k: ref[k] for k in mine if k != "_last_lr"}


@pytest.mark.parametrize("case", ["StepLR", "CosineAnnealingLR-eta_min"])
def test_scheduler_state_dict_round_trip(case, rng):
    ours, theirs, opt, topt, sched, tsched = scheduled(case, rng)
    for _ in range(9):
        sched.step()
    sd = sched.state_dict()
    name, kwargs = SCHEDULERS[case]
    again = getattr(hb.optim.lr_scheduler, name)(copy.deepcopy(opt), **kwargs)
    again.optimizer.param_groups[0]["lr"] = sched.optimizer.param_groups[0]["lr"]
    again.optimizer.param_groups[1]["lr"] = sched.optimizer.param_groups[1]["lr"]
    again.load_state_dict(sd)
    for _ in range(12):
        sched.step(); again.step()
        assert again.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("make, exc, message", [
    (lambda o: hb.optim.lr_scheduler.StepLR(o, step_size=0), ValueError, r"StepLR: step_size: expected a positive integer, got 0"),
    (lambda o: hb.optim.lr_scheduler.StepLR(o, step_size=2.5), ValueError, r"step_size: expected a positive integer, got 2.5"),
    (lambda o: hb.optim.lr_scheduler.ExponentialLR(o, gamma=float("nan")), ValueError, r"gamma: expected a finite number"),
    (lambda o: hb.optim.lr_scheduler.CosineAnnealingLR(o, T_max=0), ValueError, r"T_max: expected a positive integer, got 0"),
    (lambda o: hb.optim.lr_scheduler.StepLR(o, 3, last_epoch=4), KeyError, r"param_groups\[0\] has no 'initial_lr'"),
    (lambda o: hb.optim.lr_scheduler.StepLR(object(), 3), TypeError, r"optimizer: expected a handbp optimizer"),
])
def test_scheduler_bad_arguments_change_nothing(make, exc, message, rng):
    opt = hb.optim.SGD([hb.Parameter(np.zeros(2))], lr=0.1)
    before = repr(opt.param_groups)
    with pytest.raises(exc, match=message):
        make(opt)
    assert repr(opt.param_groups) == before


def test_scheduler_load_refuses_foreign_state(rng):
    opt = hb.optim.SGD([hb.Parameter(np.zeros(2))], lr=0.1)
    sched = hb.optim.lr_scheduler.StepLR(opt, 3)
    sched.step()
    before = sched.state_dict()
    other = hb.optim.lr_scheduler.CosineAnnealingLR(hb.optim.SGD([hb.Parameter(np.zeros(2))], lr=0.1), 5).state_dict()
    with pytest.raises(KeyError, match="expected keys"):
        sched.load_state_dict(other)
    assert sched.state_dict() == before


@pytest.mark.parametrize("weight", [0.1, 0.01, 0.5, 0.7, 0.999])
def test_lerp_float32_is_bit_identical_to_torch(weight):
    """torch's lerp_ fuses the multiply and the add; handbp's rounds once too, in float32."""
    from handbp.optim.adam import lerp_
    rng = np.random.default_rng(0)
    end = rng.normal(scale=0.1, size=4096).astype(np.float32)
    start = (end * (1 + rng.normal(scale=1e-2, size=4096))).astype(np.float32)   # near-cancelling
    start[::2] = rng.normal(scale=0.1, size=2048)
    expected = torch.from_numpy(start.copy()).lerp_(torch.from_numpy(end), weight).numpy()
    np.testing.assert_array_equal(lerp_(start, end, weight), expected)


@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize("op", ["add", "addcmul", "addcdiv"])
def test_update_operations_round_as_torchs_in_float32(op, size):
    """The optimizers' updates round as torch's do: ``a.add(b, alpha=c)`` and ``a.addcmul(b, c,
    value=v)`` fused (one rounding), ``a.addcdiv(b, c, value=v)`` as ``(v · b) / c`` then the sum.
    Terms that nearly cancel, where a different order is off by many units in the last place.
    (torch's float32 sqrt is not correctly rounded, NumPy's is: Adam, RMSprop and Adagrad can differ
    from torch in float32 there, and lockstep's float32 rule judges them against float64.)"""
    from handbp.optim.optimizer import add_product, add_quotient, add_scaled
    rng = np.random.default_rng(size)
    for value in (0.01, -0.013, 1 - 0.999, 1.0, -1.0):
        b = rng.normal(size=size).astype(np.float32)
        c = rng.uniform(0.5, 2.0, size=size).astype(np.float32)
        exact = {"add": value * b.astype(np.float64), "addcmul": value * b.astype(np.float64) * c,
                 "addcdiv": value * b.astype(np.float64) / c}[op]
        a = (-exact * (1 + 1e-3 * rng.normal(size=size))).astype(np.float32)      # a + term ≈ 0
        ta, tb, tc = (torch.from_numpy(v.copy()) for v in (a, b, c))
        if op == "add":
            mine, theirs = add_scaled(a, b, value), ta.add(tb, alpha=value)
        elif op == "addcmul":
            mine, theirs = add_product(a, value, b, c), ta.addcmul(tb, tc, value=value)
        else:
            mine, theirs = add_quotient(a, value, b, c, out=np.empty_like(a)), ta.addcdiv(tb, tc, value=value)
        assert mine.dtype == np.float32
        np.testing.assert_array_equal(mine, theirs.numpy(), err_msg=f"value {value}")
