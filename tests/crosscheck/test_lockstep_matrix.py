"""The parallel lockstep matrix: handbp against its torch twin over architectures, activations,
losses, SGD variants, batch shapes and dtypes, several steps each.

The cases are a fixed list (stable order, so pytest-xdist workers agree on it) built by stepping
through each axis with its own stride, so every value of every axis appears many times and most
pairs of values meet. Weights are scaled up from torch's init where the activation saturates, so that gradients are
not all ~0.

The activations and losses are derived from the public classes (tests/helpers/examples.py): every
example of a layer without parameters, buffers or randomness, and every example of a loss; the
layers with state are the other matrix's (test_lockstep_matrix_layers.py).
"""
import copy

import numpy as np
import pytest

import handbp as hb
from tests.helpers.examples import Missing, layer_examples, loss_examples


def _stateless(ex):
    """Holds nothing (no parameters, no buffers), gives the same output for the same input, and
    takes one unbatched sample too (the matrix's batch None; a Flatten keeping axis 0 does not)."""
    m, x = ex.build(np.random.default_rng(0), 3), np.random.default_rng(1).normal(size=(5, 3))
    try:
        copy.deepcopy(m)(x[0])
    except hb.errors.LayerError:
        return False
    return not m.state_dict() and np.array_equal(copy.deepcopy(m).forward(x), copy.deepcopy(m).forward(x)) \
        and np.array_equal(m.forward(x), m.forward(x))


DEPTHS = [0, 1, 2, 3, 4]                       # hidden layers between input and output layers
WIDTHS = [1, 3, 8, 17, 32]
ACT = {ex.name: ex for ex in layer_examples() if isinstance(ex, Missing) or ex.chain and ex.twin and _stateless(ex)}
LOSS = {ex.name: ex for ex in loss_examples()}
ACTIVATIONS, LOSSES = list(ACT), list(LOSS)
OPTIMIZERS = {
    "sgd": dict(lr=0.05),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "wd": dict(lr=0.05, weight_decay=0.01),
    "momentum-wd": dict(lr=0.02, momentum=0.5, weight_decay=0.1),
    "maximize": dict(lr=0.002, momentum=0.5, maximize=True),
}
BATCHES = [None, 1, 5, 64]                      # None: one unbatched sample (in_features,)
DTYPES = ["float64", "float32"]
N_CASES = 560


def _cases():
    axes = [DEPTHS, WIDTHS, ACTIVATIONS, LOSSES, list(OPTIMIZERS), BATCHES, DTYPES]
    strides = [1, 2, 1, 3, 1, 1, 1]
    # each axis advances by its stride every 1, len0, len0*len1, ... cases (mixed radix), with an
    # offset so that consecutive cases differ on every axis
    cases, seen = [], set()
    i = 0
    while len(cases) < N_CASES:
        pick, radix = [], 1
        for axis, stride in zip(axes, strides):
            pick.append(axis[(i // radix * stride + i) % len(axis)])
            radix *= len(axis)
        key = tuple(pick)
        if key not in seen:
            seen.add(key)
            cases.append(key)
        i += 1
    return cases


CASES = _cases()


def _case_id(c):
    depth, width, act, loss, opt, batch, dtype = c
    return f"d{depth}-w{width}-{act}-{loss}-{opt}-b{'U' if batch is None else batch}-{dtype[5:]}"


def build(depth, width, act, loss_name, dtype, rng, n_in=4, n_out=3):
    """Linear(n_in→width), act, depth × [Linear(width→width), act], Linear(width→n_out), and the loss."""
    for ex in (ACT[act], LOSS[loss_name]):
        if isinstance(ex, Missing):
            ex.fail()
    sizes = [n_in] + [width] * (depth + 1) + [n_out]
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = hb.Linear(i, o, rng=rng, dtype=dtype)
        # weights scaled up from torch's init where the activation saturates, so gradients stay well
        # away from 0; piecewise-linear nets keep torch's init (scaled up, deep linear nets blow up)
        lin.weight.data *= ACT[act].gain
        layers.append(lin)
        if k < len(sizes) - 2:
            layers.append(ACT[act].build(rng, o).to(dtype))
    return hb.Sequential(*layers), LOSS[loss_name].build()


def test_matrix_is_large_and_covers_every_value():
    assert len(CASES) >= 500
    for axis, values in enumerate([DEPTHS, WIDTHS, ACTIVATIONS, LOSSES, list(OPTIMIZERS), BATCHES, DTYPES]):
        assert {c[axis] for c in CASES} == set(values)
    assert len({_case_id(c) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_lockstep_matrix(case, crosscheck, rng):
    depth, width, act, loss_name, opt_name, batch, dtype = case
    model, loss = build(depth, width, act, loss_name, np.dtype(dtype), rng)
    hyper = dict(OPTIMIZERS[opt_name])
    if getattr(loss, "reduction", "mean") == "sum":
        hyper["lr"] /= 4 * (batch or 1)            # a sum's gradient grows with the batch
    optimizer = hb.optim.SGD(model.parameters(), **hyper)
    n_out = model[-1].out_features
    out = (n_out,) if batch is None else (batch, n_out)
    data = [(x, LOSS[loss_name].target(crosscheck.rng, out, np.dtype(dtype)))
            for x, _ in crosscheck.data(model, loss, batch=batch, steps=4)]
    trace = crosscheck.lockstep(model, loss, optimizer, data)
    assert len(trace) == 4 and trace.divergence is None
