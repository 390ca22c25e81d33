"""ELU, SiLU, Softplus and Hardtanh in lockstep with their torch twins over several steps, in
float64 and float32, batched and one sample at a time; and SiLU at its minimum, where its input
gradient cancels.

SiLU's dx = dy · σ(1 + x(1 − σ)) is 0 at x* ≈ −1.2785, where x(1 − σ) = −1: there it is all rounding
of σ and of the sum, about eps · |dy| · σ(1 + |x|(1 − σ)), and behind large weights that rounding
stands out. crosscheck registers no rounding terms for SiLU: its recheck reruns torch's module on
|x|, which gives |dy| · (1 − σ)(1 + |x|σ) for x < 0, more than σ(1 + |x|(1 − σ)) by 1 − 2σ > 0, so it
already bounds them. The net below puts hidden units at x* and moves SiLU's dx there by 2
epsilons of those terms, as a correct implementation that rounds another way may: lockstep must
pass it, and report a SiLU whose dx is 1% off there."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb

ACTIVATIONS = {"ELU": lambda: hb.ELU(0.7), "SiLU": hb.SiLU, "Softplus": lambda: hb.Softplus(beta=2.0, threshold=1.5),
               "Hardtanh": lambda: hb.Hardtanh(-0.5, 0.8)}
CASES = [(a, d, b) for a in ACTIVATIONS for d in ("float64", "float32") for b in (6, None)]


@pytest.mark.parametrize("act, dtype, batch", CASES,
                         ids=[f"{a}-{d}-{'batch' if b else 'one-sample'}" for a, d, b in CASES])
def test_lockstep_over_several_steps(act, dtype, batch, crosscheck, rng):
    dtype = np.dtype(dtype)
    model = hb.Sequential(hb.Linear(5, 8, rng=rng, dtype=dtype), ACTIVATIONS[act](),
                          hb.Linear(8, 8, rng=rng, dtype=dtype), ACTIVATIONS[act](), hb.Linear(8, 3, rng=rng, dtype=dtype))
    optimizer = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = [(x * 2, y) for x, y in crosscheck.data(model, hb.MSELoss(), batch=batch, steps=5)]   # both branches
    trace = crosscheck.lockstep(model, hb.MSELoss(), optimizer, data)
    assert len(trace) == 5


def silu_minimum():
    """x* where 1 + x(1 − σ(x)) = 0, by bisection in float64."""
    lo, hi = -2.0, -1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if 1 + mid * (1 - 1 / (1 + np.exp(-mid))) > 0 else (mid, hi)
    return lo


def silu_terms(x, dy):
    s = 1 / (1 + np.exp(-x))
    return np.abs(dy) * s * (1 + np.abs(x) * (1 - s))


class SiLUMoved(hb.SiLU):
    """SiLU whose dx is moved by ``shift(dx, terms)``."""
    shift = None

    def backward(self, dy):
        dx = super().backward(dy)
        terms = silu_terms(self.last_x.astype(np.float64), dy.astype(np.float64))
        return type(self).shift(dx, terms).astype(dx.dtype)


def at_the_minimum(dtype, shift):
    """Linear(1→5) whose first four outputs are x* whatever its input (weights 0, biases x*) → SiLU →
    Linear(5→1) with weights ±A on those four (2⁴⁰ in float64, 2²⁰ in float32: their dx, all
    rounding, times A must stand out against lockstep's tolerance), which cancel in the prediction;
    a fifth unit, fed by the input and read with weight 1, sets the prediction and the scale of the
    step's gradients."""
    big = 2.0 ** (40 if dtype == np.float64 else 20)
    cls = type("SiLUMoved", (SiLUMoved,), {"shift": staticmethod(shift)})
    first = hb.Linear(1, 5, dtype=dtype)
    first.weight.data[...] = [[0], [0], [0], [0], [1]]
    first.bias.data[...] = [silu_minimum()] * 4 + [0]
    last = hb.Linear(5, 1, dtype=dtype)
    last.weight.data[...] = [[big, big, -big, -big, 1]]
    last.bias.data[...] = 0
    model = hb.Sequential(first, cls(), last)
    x = np.array([[0.5], [-1.0], [2.0]], dtype)
    y = np.array([[1.0], [-2.0], [0.5]], dtype)
    return model, [(x, y)] * 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_silu_at_its_minimum_rounding_passes_and_a_bug_is_reported(dtype):
    eps = np.finfo(dtype).eps
    model, data = at_the_minimum(dtype, lambda dx, terms: dx + 2 * eps * terms)
    cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=2.0 ** -30), data)
    model, data = at_the_minimum(dtype, lambda dx, terms: dx + 0.01 * terms)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=2.0 ** -30), data)
    assert info.value.name == "1 (SiLUMoved)" and info.value.quantity == "grad_input"


def test_the_run_on_absolute_values_bounds_silus_terms():
    """(1 − σ)(1 + |x|σ) ≥ σ(1 + |x|(1 − σ)) for every x < 0 (equal for x ≥ 0): the recheck's bound."""
    x = np.linspace(-50, 50, 20001)
    s, a = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(-np.abs(x)))
    on_abs = a * (1 + np.abs(x) * (1 - a))
    assert np.all(on_abs >= s * (1 + np.abs(x) * (1 - s)) * (1 - 1e-15))
