"""A malformed optimizer or scheduler state_dict is refused by ``load_state_dict`` with a message
that names the part, before anything changes (the layouts and values ``test_sgd.py`` and
``test_optim.py`` do not cover: a dict of the wrong shape, scheduler values of the wrong kind)."""
import copy

import numpy as np
import pytest

import handbp as hb
from handbp.optim import lr_scheduler


def trained(rng):
    """A two-layer model, an Adam that has taken one step and a StepLR on it."""
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    opt = hb.optim.Adam(model.parameters(), lr=0.01)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    model(rng.normal(size=(5, 3)))
    model.backward(rng.normal(size=(5, 2)))
    opt.step()
    sched.step()
    return model, opt, sched


def snapshot(model, opt, sched):
    """Everything the three hold, as bytes and plain values."""
    state = sorted((i, k, v.tobytes() if isinstance(v, np.ndarray) else v)
                   for i, s in enumerate(opt.state.values()) for k, v in s.items())
    groups = repr([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    return ([(p.data.tobytes(), p.grad.tobytes()) for p in model.parameters()], state, groups,
            repr(sched.state_dict()))


def set_item(path, value):
    """A function that sets ``d[path[0]][path[1]]... = value`` in a state_dict."""
    def edit(d):
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return edit


BAD_OPTIMIZER_STATES = {
    "groups-not-a-list": (set_item(["param_groups"], "x"), TypeError,
                          r"Adam.load_state_dict: 'param_groups': expected a list of dicts, got str 'x'"),
    "group-not-a-dict": (set_item(["param_groups", 0], 5), TypeError,
                         r"Adam.load_state_dict: param group 0: expected a dict with a list 'params'.*got int 5"),
    "params-not-a-list": (set_item(["param_groups", 0, "params"], 3), TypeError,
                          r"param group 0: expected a dict with a list 'params' of parameter indices"),
    "params-not-indices": (set_item(["param_groups", 0, "params"], ["a", "b", "c", "d"]), TypeError,
                           r"param group 0: expected a dict with a list 'params' of parameter indices"),
    "no-params": (lambda d: d["param_groups"][0].pop("params"), TypeError,
                  r"param group 0: expected a dict with a list 'params'"),
    "index-twice": (set_item(["param_groups", 0, "params"], [0, 0, 1, 2]), ValueError,
                    r"'param_groups': expected each parameter index once, got \[0, 0, 1, 2\]"),
    "state-not-a-dict": (set_item(["state"], [1]), TypeError,
                         r"Adam.load_state_dict: 'state': expected a dict of parameter index -> state, got list"),
}


@pytest.mark.parametrize("kind", list(BAD_OPTIMIZER_STATES))
def test_malformed_optimizer_state_is_refused_and_nothing_changes(kind, rng):
    model, opt, sched = trained(rng)
    edit, error, message = BAD_OPTIMIZER_STATES[kind]
    bad = copy.deepcopy(opt.state_dict())
    edit(bad)
    before = snapshot(model, opt, sched)
    with pytest.raises(error, match=message):
        opt.load_state_dict(bad)
    assert snapshot(model, opt, sched) == before


BAD_SCHEDULER_STATES = {
    "last_epoch-str": ("last_epoch", "a", TypeError, r"StepLR.load_state_dict: last_epoch: expected an integer >= -1"),
    "last_epoch-float": ("last_epoch", 2.5, TypeError, r"last_epoch: expected an integer >= -1, got 2.5"),
    "last_epoch-below": ("last_epoch", -2, ValueError, r"last_epoch: expected an integer >= -1, got -2"),
    "step_count-negative": ("_step_count", -1, ValueError, r"_step_count: expected a non-negative integer, got -1"),
    "step_size-zero": ("step_size", 0, ValueError, r"StepLR.load_state_dict: step_size: expected a positive integer"),
    "step_size-bool": ("step_size", True, TypeError, r"step_size: expected a positive integer, got True"),
    "gamma-nan": ("gamma", float("nan"), ValueError, r"StepLR.load_state_dict: gamma: expected a finite number"),
    "gamma-str": ("gamma", "0.5", TypeError, r"gamma: expected a finite number, got '0.5'"),
    "base_lrs-number": ("base_lrs", 0.1, TypeError, r"base_lrs: expected a list of learning rates"),
    "base_lrs-item": ("base_lrs", ["a"], TypeError, r"base_lrs\[0\]: expected a finite number, got 'a'"),
    "last_lr-inf": ("_last_lr", [float("inf")], ValueError, r"_last_lr\[0\]: expected a finite number, got inf"),
}


@pytest.mark.parametrize("kind", list(BAD_SCHEDULER_STATES))
def test_bad_scheduler_state_is_refused_and_nothing_changes(kind, rng):
    """torch copies whatever it is given; a wrong value would then surface epochs later, in get_lr."""
    model, opt, sched = trained(rng)
    key, value, error, message = BAD_SCHEDULER_STATES[kind]
    bad = sched.state_dict()
    bad[key] = value
    before = snapshot(model, opt, sched)
    with pytest.raises(error, match=message):
        sched.load_state_dict(bad)
    assert snapshot(model, opt, sched) == before


@pytest.mark.parametrize("make", [lambda o: lr_scheduler.StepLR(o, 3, gamma=0.5),
                                  lambda o: lr_scheduler.ExponentialLR(o, 0.9),
                                  lambda o: lr_scheduler.CosineAnnealingLR(o, 4, eta_min=1e-3)],
                         ids=["StepLR", "ExponentialLR", "CosineAnnealingLR"])
def test_a_good_scheduler_state_still_loads(make, rng):
    """The checks take every state the scheduler itself saves (a NumPy integer epoch too)."""
    _, opt, _ = trained(rng)
    sched = make(opt)
    for _ in range(5):
        sched.step()
    saved = sched.state_dict()
    saved["last_epoch"] = np.int64(saved["last_epoch"])
    fresh = make(hb.optim.Adam([hb.Parameter(np.zeros(2))], lr=0.01))
    fresh.load_state_dict(saved)
    assert fresh.state_dict() == sched.state_dict()
    assert type(fresh.last_epoch) is int
