"""The torch twin's optimizer, cross-checked as a user drives it: it is built with the same
constructor arguments as handbp's; the state a constructor makes before any step (Adagrad's
``sum``) is compared with torch's, since every lockstep step copies handbp's state into the twin
and would otherwise carry a wrong initial state over unseen; and the twin's update is made from
handbp's gradients, so it carries only the optimizer's own rounding."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb


def net(rng, dtype):
    return hb.Sequential(hb.Linear(4, 6, rng=rng), hb.Tanh(), hb.Linear(6, 3, rng=rng)).to(dtype)


def batches(rng, dtype, n=5):
    return [(rng.normal(size=(5, 4)).astype(dtype), rng.normal(size=(5, 3)).astype(dtype)) for _ in range(n)]


def with_group_added(opt, params, data, at):
    for i, item in enumerate(data):
        if i == at:
            opt.add_param_group({"params": params})
        yield item


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_fills_a_group_added_later_with_its_initial_accumulator_value(dtype, rng):
    """torch's Adagrad fills the ``sum`` of a parameter added after construction from its own
    ``defaults``: a twin built with torch's default (0) instead of handbp's 0.5 reported handbp's
    correct ``sum`` as a divergence at the step the group arrived."""
    model = net(rng, dtype)
    ps = model.parameters()
    opt = hb.optim.Adagrad(ps[:2], lr=0.1, initial_accumulator_value=0.5)
    trace = cc.lockstep(model, hb.MSELoss(), opt, with_group_added(opt, ps[2:], batches(rng, dtype), at=2))
    assert len(trace) == 5
    np.testing.assert_array_less(0.5, opt.state[ps[2]]["sum"])     # filled with 0.5, then grew


class AdagradWrongStart(hb.optim.Adagrad):
    """Fills ``sum`` with ``scale`` × initial_accumulator_value in its constructor."""

    scale = 0.0

    def _init_state(self, p):
        super()._init_state(p)
        self.state[p]["sum"] *= self.scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale, hint", [(0.0, "zero"), (1.01, "factor")])
def test_a_wrong_initial_state_is_caught_before_the_first_step(scale, hint, dtype, rng):
    """Both sides would step from handbp's wrong ``sum`` and agree; the constructor's state is
    compared on its own, before step 0, and the report says so."""
    model = net(rng, dtype)
    opt = type("Bad", (AdagradWrongStart,), {"scale": scale})(model.parameters(), lr=0.1, initial_accumulator_value=0.5)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), opt, batches(rng, dtype))
    d = info.value
    assert (d.step, d.name, d.quantity, d.hint) == (0, "0.weight (Linear)", "state.sum", hint)
    assert "before step 0" in d.others[0] and "constructor" in d.others[0]
    # no step was taken: the state is as the constructor left it
    np.testing.assert_array_equal(opt.state[model.parameters()[0]]["sum"], dtype(0.5) * dtype(scale))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_state_carried_from_earlier_steps_is_the_users(dtype, rng):
    """Only a state that never stepped is held to torch's constructor: a ``sum`` edited by hand
    after some steps (or loaded) is followed, in a second lockstep call on the same optimizer."""
    model = net(rng, dtype)
    opt = hb.optim.Adagrad(model.parameters(), lr=0.1, initial_accumulator_value=0.5)
    cc.lockstep(model, hb.MSELoss(), opt, batches(rng, dtype, 2))
    for s in opt.state.values():
        s["sum"] *= 3
    assert len(cc.lockstep(model, hb.MSELoss(), opt, batches(rng, dtype, 2))) == 2


@pytest.mark.parametrize("opt_class, kwargs", [
    (hb.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (hb.optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), amsgrad=True, weight_decay=0.1)),
    (hb.optim.AdamW, dict(lr=0.01, amsgrad=True, maximize=True)),
    (hb.optim.RMSprop, dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5)),
    (hb.optim.Adagrad, dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.25, eps=1e-6)),
])
def test_the_twin_is_built_with_handbps_constructor_arguments(opt_class, kwargs, rng):
    model = net(rng, np.float64)
    opt = opt_class(model.parameters(), **kwargs)
    twin = cc.mirror(opt, cc.mirror(model))
    for key, value in kwargs.items():
        assert twin.defaults[key] == value, key


# -- the update from handbp's gradients ------------------------------------------------------
@pytest.mark.parametrize("opt_class, kwargs", [
    (hb.optim.Adagrad, {}),
    (hb.optim.RMSprop, dict(centered=True, momentum=0.9)),
    (hb.optim.Adam, {}),
    (hb.optim.SGD, dict(momentum=0.9)),
])
def test_a_gradient_of_pure_rounding_noise_is_not_a_divergence(opt_class, kwargs, rng):
    """A bias before a BatchNorm has a gradient of exactly 0 in exact arithmetic: each side holds
    its own rounding noise (~1e-17, passed by the gradient's noise floor). Adagrad divides it by
    its own size (an update of ±lr) and centered RMSprop by nearly its own size, so an update made
    from the twin's noise instead of handbp's differed by 100%: a correct Linear → BatchNorm1d was
    reported at its bias on every seed. The twin's optimizer now steps with handbp's gradients."""
    model = hb.Sequential(hb.Linear(4, 6, rng=rng), hb.BatchNorm1d(6), hb.Tanh(), hb.Linear(6, 3, rng=rng))
    opt = opt_class(model.parameters(), lr=0.01, **kwargs)
    data = [(rng.normal(size=(8, 4)), rng.normal(size=(8, 3))) for _ in range(4)]
    assert len(cc.lockstep(model, hb.MSELoss(), opt, data)) == 4


def test_the_float64_twin_updates_with_the_gradients_it_is_given(rng):
    """Twin.step(update_with=...): the gradients it reports are its own; the update uses the ones
    ``update_with`` picks (here the weight's), and the twin's own for the others."""
    from crosscheck.twin import Twin
    model = hb.Sequential(hb.Linear(3, 2, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.5)
    twin = Twin(model, hb.MSELoss(), opt, [""])
    given = np.full_like(model[0].weight.data, 0.25)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    result = twin.step(x, y, update_with=lambda own: {"0.weight": given})
    loss = hb.MSELoss()
    loss(model(x), y)
    model.backward(loss.backward())
    for n, p in model.named_parameters():
        np.testing.assert_allclose(result["grads"][n], p.grad, rtol=1e-12, atol=1e-14)    # its own
    np.testing.assert_array_equal(twin.views["0.weight"], model[0].weight.data - 0.5 * given)
    np.testing.assert_allclose(twin.views["0.bias"], model[0].bias.data - 0.5 * model[0].bias.grad,
                               rtol=1e-12, atol=1e-14)


class BiasGradOff(hb.Linear):
    """A bias gradient 1% too large: the twin steps with its own there, so the update shows it."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad *= 1.01
        return dx


def test_a_wrong_gradient_still_shows_in_the_update(rng):
    """Only a gradient that agrees is used for the twin's update: a 1% wrong one is reported at
    the gradient, and the update it made is listed among the other mismatches."""
    model = hb.Sequential(BiasGradOff(4, 3, rng=rng))
    opt = hb.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), opt, [(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))])
    d = info.value
    assert (d.name, d.quantity) == ("0.bias (BiasGradOff)", "grad") and "param" in d.mismatched_quantities
