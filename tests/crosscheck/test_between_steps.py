"""lockstep mirrors what a plain torch loop does, whatever the user does between steps.

Each step starts from handbp's state as it is at that moment: parameters, gradients already
accumulated, buffers, train/eval mode, optimizer state and every hyperparameter of every param
group. The twin zeroes exactly what a torch optimizer over the same parameters zeroes. So a
scheduler, a hand edit or a frozen parameter is followed, not reported as handbp's bug, while
the bug zoo is still caught with the same hints.

Each case is also run through ``plain_torch_loop``, the same training written directly in torch,
to show that torch itself does what lockstep expects of handbp.
"""
import numpy as np
import pytest
import torch

import crosscheck as cc
import handbp as hb
from handbp.optim import lr_scheduler


def net(rng, norm=False, dropout=False):
    mods = [hb.Linear(4, 6, rng=rng), hb.Tanh()]
    if norm:
        mods.append(hb.BatchNorm1d(6))
    if dropout:
        mods.append(hb.Dropout(0.3, rng=rng))
    mods.append(hb.Linear(6, 3, rng=rng))
    return hb.Sequential(*mods)


def batches(rng, n=6, batch=5):
    return [(rng.normal(size=(batch, 4)), rng.normal(size=(batch, 3))) for _ in range(n)]


def run(model, opt, data, between=None, loss=None, **kw):
    """lockstep over ``data``, calling ``between(step)`` before every step after the first, as a
    training loop's own code would run between two batches (here: from the data generator)."""
    def feed():
        for i, item in enumerate(data):
            if i and between is not None:
                between(i)
            yield item
    return cc.lockstep(model, loss or hb.MSELoss(), opt, feed(), **kw)


# -- optimizers over part of the model ------------------------------------------------------
@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "RMSprop", "Adagrad", "AdamW"])
def test_an_optimizer_over_a_subset_of_the_parameters(opt_name, rng):
    """The other parameters keep accumulating their gradients, as in torch: no 'accumulated' hint."""
    model = net(rng)
    kw = {"momentum": 0.9} if opt_name == "SGD" else {}
    opt = getattr(hb.optim, opt_name)(model.parameters()[:2], lr=0.05, **kw)
    trace = run(model, opt, batches(rng))
    assert len(trace) == 6 and trace.divergence is None
    # the last layer (not in the optimizer) holds the sum of six steps' gradients
    assert model[2].weight.grad is not None


def test_frozen_parameters_accumulate_and_stay_put(rng):
    model = net(rng)
    frozen = model[0].weight.data.copy()
    opt = hb.optim.SGD([p for n, p in model.named_parameters() if n != "0.weight"], lr=0.1, momentum=0.5)
    run(model, opt, batches(rng))
    np.testing.assert_array_equal(model[0].weight.data, frozen)


def test_param_groups_with_different_learning_rates(rng):
    model = net(rng)
    ps = model.parameters()
    opt = hb.optim.SGD([{"params": ps[:2], "lr": 0.2, "momentum": 0.9},
                        {"params": ps[2:], "lr": 0.01, "weight_decay": 0.1}], lr=0.05)
    assert len(run(model, opt, batches(rng))) == 6


def test_a_param_group_added_between_steps(rng):
    model = net(rng)
    ps = model.parameters()
    opt = hb.optim.Adam(ps[:2], lr=0.01)
    trace = run(model, opt, batches(rng), between=lambda i: i == 3 and opt.add_param_group({"params": ps[2:]}))
    assert len(trace) == 6


# -- schedulers and hyperparameters edited by hand -----------------------------------------
SCHEDULERS = {
    "StepLR": lambda opt: lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    "ExponentialLR": lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.7),
    "CosineAnnealingLR": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=3),
}


@pytest.mark.parametrize("every", ["batch", "epoch"])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_a_scheduler_stepped_between_lockstep_steps(name, every, opt_name, rng):
    model = net(rng)
    opt = getattr(hb.optim, opt_name)(model.parameters(), lr=0.1)
    sched = SCHEDULERS[name](opt)
    epoch = 2 if every == "epoch" else 1        # an "epoch" of two batches
    lrs = []

    def between(i):
        if i % epoch == 0:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])

    trace = run(model, opt, batches(rng, 8), between)
    assert len(trace) == 8 and len(set(lrs)) > 1       # the learning rate did change


@pytest.mark.parametrize("key, values", [
    ("lr", [0.1, 0.05, 0.3, 0.0]),
    ("momentum", [0.9, 0.0, 0.5, 0.99]),
    ("weight_decay", [0.0, 0.1, 0.0, 1e-3]),
    ("dampening", [0.0, 0.5, 0.1, 0.0]),
])
def test_sgd_hyperparameters_edited_by_hand(key, values, rng):
    model = net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def between(i):
        for g in opt.param_groups:
            g[key] = values[i % len(values)]

    assert len(run(model, opt, batches(rng), between)) == 6


@pytest.mark.parametrize("key, value", [("lr", 0.5), ("betas", (0.5, 0.9)), ("eps", 1e-3),
                                        ("weight_decay", 0.1), ("amsgrad", False), ("maximize", True)])
def test_adam_hyperparameters_edited_by_hand(key, value, rng):
    """(amsgrad is switched off, not on: switched on mid-run, torch's Adam and handbp's both raise
    for the missing max_exp_avg_sq.)"""
    model = net(rng)
    opt = hb.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    trace = run(model, opt, batches(rng), lambda i: i == 2 and opt.param_groups[0].__setitem__(key, value))
    assert len(trace) == 6


# -- the model edited between steps ---------------------------------------------------------
def test_weights_edited_by_hand(rng):
    model = net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def between(i):
        model[0].weight.data *= 0.5
        model[2].bias.data[...] = i

    assert len(run(model, opt, batches(rng), between)) == 6


def test_eval_and_train_switched_mid_run(rng):
    """BatchNorm's running statistics and Dropout follow the mode handbp is in at each step."""
    model = net(rng, norm=True, dropout=True)
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    modes = [None, "eval", "eval", "train", "eval", "train"]

    def between(i):
        model.train(modes[i] == "train")

    assert len(run(model, opt, batches(rng), between)) == 6
    assert model.training


def test_one_submodule_in_eval_mode(rng):
    model = net(rng, norm=True)
    model[2].eval()
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    assert len(run(model, opt, batches(rng))) == 6


def test_buffers_and_gradients_edited_by_hand(rng):
    model = net(rng, norm=True)
    opt = hb.optim.SGD(model.parameters()[:2], lr=0.1)

    def between(i):
        model[2].running_mean[...] = 0.5 * i
        model[3].weight.grad = None if i % 2 else np.ones_like(model[3].weight.data)

    assert len(run(model, opt, batches(rng), between)) == 6


def test_optimizer_state_edited_by_hand(rng):
    model = net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def between(i):
        if i == 2:
            opt.state.clear()                      # a restart of the momentum, on purpose
        if i == 4:
            for s in opt.state.values():
                s["momentum_buffer"] *= 0.5

    assert len(run(model, opt, batches(rng), between)) == 6


def test_plain_torch_loop_does_what_lockstep_expects(rng):
    """The premise, shown in torch alone: an optimizer over a subset zeroes only its own
    parameters' gradients; the others accumulate across steps."""
    lin = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    opt = torch.optim.SGD(list(lin.parameters())[:2], lr=0.1)
    grads = []
    for x, y in batches(rng, 2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(lin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        grads.append((lin[0].weight.grad.clone(), lin[2].weight.grad.clone()))
    assert not torch.equal(grads[1][0], grads[0][0] + grads[1][0])   # cleared: a fresh gradient
    first_only = grads[0][1]
    assert torch.all(grads[1][1] != first_only)                     # accumulated on top


# -- real bugs are still caught ------------------------------------------------------------
class SubsetNotCleared(hb.optim.SGD):
    """zero_grad that does nothing (over a subset of the parameters): the bug stays visible."""

    def zero_grad(self, set_to_none=True):
        pass


def test_gradients_not_cleared_are_still_caught_under_a_subset_optimizer(rng):
    model = net(rng)
    opt = SubsetNotCleared(model.parameters()[:2], lr=0.1)
    with pytest.raises(cc.Divergence) as info:
        run(model, opt, batches(rng))
    assert info.value.step == 1 and info.value.hint == "accumulated" and info.value.name.startswith("0.")


class LrIgnored(hb.optim.SGD):
    """Steps with the lr it was built with, whatever the param group says now."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.fixed_lr = lr

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.data -= self.fixed_lr * p.grad


def test_an_optimizer_that_ignores_the_scheduler_is_caught(rng):
    model = net(rng)
    opt = LrIgnored(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with pytest.raises(cc.Divergence) as info:
        run(model, opt, batches(rng), lambda i: sched.step())
    assert info.value.step == 1 and info.value.quantity == "param" and info.value.hint == "factor"


class BatchNormIgnoresEval(hb.BatchNorm1d):
    """Always normalizes with the batch's statistics, even in eval mode."""

    def forward(self, x):
        was = self.training
        self.training = True
        try:
            return super().forward(x)
        finally:
            self.training = was


def test_a_layer_that_ignores_eval_is_caught(rng):
    model = hb.Sequential(hb.Linear(4, 6, rng=rng), BatchNormIgnoresEval(6), hb.Linear(6, 3, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(cc.Divergence) as info:
        run(model, opt, batches(rng), lambda i: i == 2 and model.eval())
    assert info.value.step == 2 and "BatchNormIgnoresEval" in info.value.name


def test_the_bug_zoo_keeps_its_hints(rng):
    """Every planted bug, caught at the same place with the same hint as before."""
    from crosscheck.zoo import expected
    from handbp.zoo import bugs
    for bug in bugs():
        model, loss, optimizer, data = bug.build(np.random.default_rng(rng.integers(2**32)))
        with pytest.raises(cc.Divergence) as info:
            cc.lockstep(model, loss, optimizer, data)
        d = info.value
        assert d.hint == expected(bug).hint and expected(bug).where in f"{d.name} {d.quantity}", (bug.name, str(d))
