"""lockstep's recheck of cancelling quantities, on nets built so that every value is exact.

A gradient that sums large terms to almost nothing (a bias gradient over a batch, a softmax's or a
normalisation's backward, a Linear's input gradient behind a saturated softmax, an activation in
saturation) keeps the rounding of its terms, and two correct implementations may differ there by
far more than lockstep's tolerance of the value. lockstep rechecks such a mismatch on the module
alone before reporting it, allowing ``TERMS_ROUNDING`` epsilons × the terms summed
(``crosscheck.recheck``).

Whether a given seed produces such a near-miss depends on the last bits of one BLAS kernel's
rounding, so these tests make it by hand. Each net below holds only short dyadic numbers (small
integers, powers of two, ±0.75, 1e4), so handbp, torch float32 and torch float64 compute every value of
it exactly, in any order, on any kernel; one quantity in it cancels, its exact value a few hundred
to a thousand (float32) or a few hundred million (float64) times below its terms. The rounding is then put in by hand: the
module's backward moves that quantity by ``ROUNDING`` epsilons × the magnitude of its terms, as a
correct implementation that rounds another way may. lockstep must pass that module through the
recheck, report it without the recheck, and report a module 1% off in the same quantity.
"""
import copy
import importlib
from dataclasses import dataclass

import numpy as np
import pytest

import crosscheck as cc
from crosscheck import registry
import handbp as hb

lockstep_module = importlib.import_module("crosscheck.lockstep")     # (the module: the package's name is the function)

ROUNDING = 2      # epsilons × the terms: a correct implementation's rounding (TERMS_ROUNDING, 16, allowed)
BUG = 1.01        # a real bug: 1% off


def _changed(base, prefix, where, change):
    """A subclass of handbp's ``base`` whose backward passes ``where`` ("dx", the input gradient it
    returns, or a parameter's name, for its gradient) through ``change(module, value, dy)``."""
    def backward(self, dy):
        dx = base.backward(self, dy)
        if where == "dx":
            return change(self, dx, dy)
        grad = getattr(self, where).grad
        grad[...] = change(self, grad, dy)
        return dx
    return type(prefix + base.__name__, (base,), {"backward": backward})


def _targets(model, x, dpred):
    """Targets for MSELoss(reduction="sum") whose dL/dpred is ``dpred``: y = pred − dpred/2 (exact,
    on a copy, so the model's running statistics stay as they were)."""
    return copy.deepcopy(model)(x) - dpred / 2


def _sgd(model):
    return hb.optim.SGD(model.parameters(), lr=2.0 ** -10)


# -- the nets: each takes ``wrap``, applied to the class of the layer that carries the quantity ----
def _behind_softmax(wrap, dtype):
    """Linear(3→4) with weights of ±1e4 → Softmax → Linear(4→2) with weights of 1e4. Logits 0 and 1
    tie at 3e4 + 2⁻¹⁷, the other two sit 4e4 and 6e4 below: the softmax is [½, ½, 0, 0] exactly,
    and its input gradient is ±(dy₀ − dy₁)/4 on the tied pair. The first layer's input gradient,
    dh (W₀ − W₁), cancels: rows 0 and 1 of its weight differ by 2⁻¹⁶ in one place, against terms
    of |dh| · 2e4 (a ratio of ~1e-9)."""
    first = wrap(hb.Linear)(3, 4, dtype=dtype)
    first.weight.data[...] = 1e4 * np.array([[1, -1, 1], [1, -1, 1], [-1, -1, -1], [-1, 1, -1]])
    first.weight.data[0, 2] += 2.0 ** -17
    first.weight.data[1, 2] -= 2.0 ** -17
    first.bias.data[...] = [0, 2.0 ** -16, 0, 0]
    last = hb.Linear(4, 2, dtype=dtype)
    last.weight.data[...] = 1e4 * np.array([[1, -1, 0.5, 0.25], [-1, 1, 0.25, 0.5]])
    last.bias.data[...] = 0
    model = hb.Sequential(first, hb.Softmax(), last)
    x = np.array([[1, -1, 1]], dtype)
    return model, [(x, _targets(model, x, np.array([[2.0 ** -10, -2.0 ** -10]], dtype)))]


def _bias_sum(wrap, dtype, layer):
    """Linear(2→3) → ReLU → Linear(3→3) → ReLU → Linear(3→1), small positive integer weights, so
    every unit is active. dL/dpred over the batch of 4 is [512, −510, 512, −510]: it sums to 4
    against terms of 2044, and so does every bias gradient, which sums its upstream gradient over
    the batch (``layer``: which Linear carries it, 4 the last, 0 the first)."""
    sizes = [2, 3, 3, 1]
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = (wrap(hb.Linear) if 2 * k == layer else hb.Linear)(i, o, dtype=dtype)
        lin.weight.data[...] = 1 + np.arange(i * o).reshape(o, i) % 3
        lin.bias.data[...] = 1
        layers += [lin, hb.ReLU()]
    model = hb.Sequential(*layers[:-1])
    x = np.array([[1, 2], [2, 1], [3, 1], [1, 1]], dtype)
    return model, [(x, _targets(model, x, np.array([[512], [-510], [512], [-510]], dtype)))]


def _softmax(wrap, dtype):
    """Linear(2→4) → Softmax → Linear(4→1). Logits 0 and 1 tie and the other two sit 1030 below
    (exp underflows to 0 there in float32 and float64): the softmax is [½, ½, 0, 0] exactly.
    Its input gradient y ⊙ (dy − Σ dy ⊙ y) = ±(dy₀ − dy₁)/4 subtracts nearly equal numbers: the
    next layer's weights 1024 and 1016 make it 2 · dL/dpred against terms of 1020 · dL/dpred."""
    first = hb.Linear(2, 4, dtype=dtype)
    first.weight.data[...] = [[1, 1], [1, 1], [-1, -1], [1, 1]]
    first.bias.data[...] = [0, 0, -1024, -1030]
    last = hb.Linear(4, 1, dtype=dtype)
    last.weight.data[...] = [[1024, 1016, 3, 5]]
    last.bias.data[...] = 0
    model = hb.Sequential(first, wrap(hb.Softmax)(), last)
    x = np.array([[1, 2], [2, 1]], dtype)
    return model, [(x, _targets(model, x, np.array([[1], [-2]], dtype)))]


# ±1 twice in each row and in each column: x = 0.75 H has mean 0 and variance 0.5625 along both axes,
# and with eps = 0.4375 a BatchNorm's and a LayerNorm's σ is 1 and x̂ = x, exactly
H = np.array([[1, 1, -1, -1], [1, -1, -1, 1], [-1, -1, 1, 1], [-1, 1, 1, -1]])


def _normalised(wrap, dtype, norm):
    """BatchNorm1d or LayerNorm over x = 0.75 H → Linear(4→1) with weights 512 + f. dL/dpred is
    512 + e over the batch, so the gradient reaching x̂, g = (512 + e)(512 + f)ᵀ, is nearly
    constant along both axes, and the input gradient g − mean g − x̂ mean(g x̂) and the weight
    gradient Σ dy x̂ cancel to ~1/1000 of their terms. float64 needs a few 1e-9 (lockstep's
    tolerance is 1e-9 of the value): there e is scaled by 2⁻¹⁸ and dL/dpred alternates in sign, which cancels
    the bias gradients too, so that the weight gradient's rounding stands out against the step's
    largest gradient (lockstep's noise floor is 1e-13 of that)."""
    f64 = np.dtype(dtype) == np.float64
    extra = {"momentum": 0.5} if norm == "BatchNorm1d" else {}      # (running statistics exact too)
    layer = wrap(getattr(hb, norm))(4, eps=0.4375, dtype=dtype, **extra)
    last = hb.Linear(4, 1, dtype=dtype)
    last.weight.data[...] = 512 + np.array([1, 0, -2, 1])
    last.bias.data[...] = 0
    model = hb.Sequential(layer, last)
    x = (0.75 * H).astype(dtype)
    e = np.array([[0], [1], [-1], [2]]) * (2.0 ** -18 if f64 else 1)
    sign = np.array([[1], [-1], [1], [-1]]) if f64 else 1
    return model, [(x, _targets(model, x, (sign * (512 + e)).astype(dtype)))]


def _saturated(wrap, dtype, act):
    """Linear(2→4) → Tanh or Sigmoid → Linear(4→1). Three units at 40 to 80, where tanh and σ are
    1 in float32 and float64 and so their derivative is exactly 0; one at 0 (tanh 0, σ ½). In
    saturation the input gradient dy (1 − y²), dy y (1 − y) is all rounding of y (one unit in the
    last place of y moves it by ~eps · |dy|); the next layer's weights of 1024 there make that
    rounding stand out against the one unsaturated unit's gradient."""
    first = hb.Linear(2, 4, dtype=dtype)
    first.weight.data[...] = [[20, 20], [40, 0], [20, 40], [0, 0]]
    first.bias.data[...] = 0
    last = hb.Linear(4, 1, dtype=dtype)
    last.weight.data[...] = [[1024, 1024, 1024, 1]]
    last.bias.data[...] = 0
    model = hb.Sequential(first, wrap(getattr(hb, act))(), last)
    x = np.array([[1, 1], [2, 1]], dtype)
    return model, [(x, _targets(model, x, np.array([[1], [-2]], dtype)))]


# -- what a correct module's rounding may move each quantity by (per element, ≤ its terms) --------
def _linear_dx(m, dy):
    return np.abs(dy) @ np.abs(m.weight.data)


def _bias_grad(m, dy):
    return np.abs(dy).sum(axis=0)


def _softmax_dx(m, dy):
    return m.last_o * np.abs(dy)


def _norm_dx(m, dy):
    return np.abs(dy * m.weight.data) * m.last_inv_std


def _norm_weight(m, dy):
    return (np.abs(dy) * np.abs(m.last_xhat)).sum(axis=0)


def _activation_dx(m, dy):
    return np.abs(dy)


@dataclass(frozen=True)
class Case:
    build: object          # build(wrap) -> (model, data)
    target: str            # the label of the module that carries the quantity, as lockstep names it
    where: str             # "dx" (its input gradient) or a parameter's name
    bound: object          # bound(module, dy): the magnitude of the terms summed into the quantity
    own_terms: bool        # whether lockstep's recheck needs that module's registered rounding terms

    def run(self, prefix=None, change=None):
        """lockstep on the net, the target's class changed by ``change`` (None: as it is)."""
        def wrap(cls):
            return cls if change is None else _changed(cls, prefix, self.where, change)
        model, data = self.build(wrap)
        return cc.lockstep(model, hb.MSELoss(reduction="sum"), _sgd(model), data)

    def expected(self, prefix):
        index, kind = self.target.split(" ")
        if self.where == "dx":
            return f"{index} ({prefix}{kind})", "grad_input"
        return f"{index}.{self.where} ({prefix}{kind})", "grad"

    def rounded(self):
        """lockstep with the quantity moved by ROUNDING epsilons × its terms."""
        def change(m, value, dy):
            return value + (ROUNDING * np.finfo(value.dtype).eps * self.bound(m, dy)).astype(value.dtype)
        return self.run("Rounded", change)


def _case(build, target, where, bound, own_terms=False, **kw):
    return Case(lambda wrap: build(wrap, **kw), target, where, bound, own_terms)


CASES = {
    "float64-linear-dx-behind-saturated-softmax": _case(_behind_softmax, "0 Linear", "dx", _linear_dx,
                                                        dtype=np.float64),
    "float32-bias-sum": _case(_bias_sum, "4 Linear", "bias", _bias_grad, dtype=np.float32, layer=4),
    "float32-bias-sum-deep": _case(_bias_sum, "0 Linear", "bias", _bias_grad, dtype=np.float32, layer=0),
    "float32-softmax-dx": _case(_softmax, "1 Softmax", "dx", _softmax_dx, True, dtype=np.float32),
    "float32-batchnorm-dx": _case(_normalised, "0 BatchNorm1d", "dx", _norm_dx, True, dtype=np.float32,
                                  norm="BatchNorm1d"),
    "float32-layernorm-dx": _case(_normalised, "0 LayerNorm", "dx", _norm_dx, True, dtype=np.float32,
                                  norm="LayerNorm"),
    "float32-batchnorm-weight": _case(_normalised, "0 BatchNorm1d", "weight", _norm_weight, True,
                                      dtype=np.float32, norm="BatchNorm1d"),
    "float32-layernorm-weight": _case(_normalised, "0 LayerNorm", "weight", _norm_weight, True,
                                      dtype=np.float32, norm="LayerNorm"),
    "float64-batchnorm-weight": _case(_normalised, "0 BatchNorm1d", "weight", _norm_weight, True,
                                      dtype=np.float64, norm="BatchNorm1d"),
    "float64-layernorm-weight": _case(_normalised, "0 LayerNorm", "weight", _norm_weight, True,
                                      dtype=np.float64, norm="LayerNorm"),
    "float32-saturated-tanh-dx": _case(_saturated, "1 Tanh", "dx", _activation_dx, True, dtype=np.float32,
                                       act="Tanh"),
    "float32-saturated-sigmoid-dx": _case(_saturated, "1 Sigmoid", "dx", _activation_dx, True,
                                          dtype=np.float32, act="Sigmoid"),
}


def _without(monkeypatch, what):
    """lockstep with its recheck (``"recheck"``) or its modules' own terms (``"terms"``) removed."""
    if what == "recheck":
        monkeypatch.setattr(lockstep_module, "recheck", lambda failing, *args: failing)
    else:
        for cls in registry.registered():
            monkeypatch.setattr(registry.entry(cls), "terms", None)


@pytest.mark.parametrize("name", list(CASES))
def test_the_nets_are_exact_handbp_and_torch_agree_bit_for_bit(name, monkeypatch):
    """The control for the tests below: unchanged, every quantity of the step is equal on both
    sides (max abs difference 0), even with the recheck removed, so a Divergence below is the
    hand-made rounding's alone, on any kernel."""
    _without(monkeypatch, "recheck")
    (step,) = CASES[name].run().steps
    assert {label: e["max_abs"] for label, e in step.items() if e["max_abs"] != 0} == {}


@pytest.mark.parametrize("name", list(CASES))
def test_rounding_in_a_cancelling_quantity_passes_only_through_the_recheck(name, monkeypatch):
    """A module right up to ROUNDING epsilons × its terms passes lockstep; without the recheck it is
    reported, on that very quantity; where the recheck needs the module's own terms (a module that
    subtracts inside), also without them."""
    case = CASES[name]
    assert len(case.rounded()) == 1
    with monkeypatch.context() as patch:
        _without(patch, "recheck")
        with pytest.raises(cc.Divergence) as info:     # a correct module, falsely reported
            case.rounded()
    assert (info.value.name, info.value.quantity) == case.expected("Rounded")
    if case.own_terms:    # the absolute-value rerun bounds nothing for a module that subtracts inside
        _without(monkeypatch, "terms")
        with pytest.raises(cc.Divergence) as info:
            case.rounded()
        assert (info.value.name, info.value.quantity) == case.expected("Rounded")


@pytest.mark.parametrize("name", list(CASES))
def test_a_module_one_percent_off_in_a_cancelling_quantity_is_still_caught(name):
    """The recheck allows the rounding of the terms, not errors: 1% of the quantity is 2.5 to 5
    (float32) and over 1,000 (float64) times what it allows."""
    case = CASES[name]
    with pytest.raises(cc.Divergence) as info:
        case.run("Off", lambda m, value, dy: value * value.dtype.type(BUG))
    assert (info.value.name, info.value.quantity) == case.expected("Off")
