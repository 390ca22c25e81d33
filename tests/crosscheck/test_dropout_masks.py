"""lockstep's twin drops what handbp's Dropout mask drops (torch cannot draw the same random
numbers), so a mask drawn with the wrong probability passes every comparison of values: how often
the masks keep an element is checked against Bernoulli(1 − p) over the run instead."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb


class KeepsP(hb.Dropout):
    """Keeps each element with probability p instead of 1 − p (the scale stays 1 / (1 − p))."""

    def forward(self, x):
        super().forward(x)
        self.last_mask = ~self.last_mask
        return x * (self.last_mask * x.dtype.type(self.last_scale))


class KeepsP2d(hb.Dropout2d):
    def forward(self, x):
        super().forward(x)
        self.last_mask = ~self.last_mask
        return x * (self.last_mask * x.dtype.type(self.last_scale))


def dense(rng, drop):
    return hb.Sequential(hb.Linear(4, 32, rng=rng), hb.Tanh(), drop, hb.Linear(32, 3, rng=rng))


def conv(rng, drop):
    return hb.Sequential(hb.Conv2d(1, 8, 3, padding=1, rng=rng), drop, hb.Flatten(), hb.Linear(8 * 4 * 4, 3, rng=rng))


CASES = [(dense, hb.Dropout, KeepsP, (16, 4)), (conv, hb.Dropout2d, KeepsP2d, (16, 1, 4, 4))]


def data(rng, shape, n=6):
    return [(rng.normal(size=shape), rng.normal(size=(shape[0], 3))) for _ in range(n)]


@pytest.mark.parametrize("build, good, bad, shape", CASES)
@pytest.mark.parametrize("p", [0.2, 0.7])
def test_a_mask_that_keeps_with_probability_p_is_caught(build, good, bad, shape, p, rng):
    model = build(rng, bad(p, rng=rng))
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data(rng, shape))
    d = info.value
    assert d.quantity == "mask" and "(KeepsP" in d.name and d.hint == "forward"
    assert f"p = {p:g} keeps {1 - p:.1%}" in d.diagnosis


@pytest.mark.parametrize("build, good, bad, shape", CASES)
@pytest.mark.parametrize("p", [0.0, 0.001, 0.2, 0.5, 0.9, 0.999, 1.0])
def test_a_correct_dropout_passes(build, good, bad, shape, p, rng):
    """(p = 0 and p = 1 keep all or nothing: any other count is caught; rare drops or keeps (p = 0.001,
    0.999) are judged by Bernstein's bound, not by a normal approximation that fails there; p = 0.5 is the one p where
    the inverted mask keeps as often as the right one, so the check passes it, as it must.)"""
    model = build(rng, good(p, rng=rng))
    assert len(cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data(rng, shape))) == 6
