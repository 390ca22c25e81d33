"""The parallel lockstep matrix: handbp against its torch twin over architectures, activations,
losses, SGD variants, batch shapes and dtypes, several steps each.

The cases are a fixed list (stable order, so pytest-xdist workers agree on it) built by stepping
through each axis with its own stride, so every value of every axis appears many times and most
pairs of values meet. Weights are scaled up from torch's init where the activation saturates, so that gradients are
not all ~0.
"""
import numpy as np
import pytest

import handbp as hb

DEPTHS = [0, 1, 2, 3, 4]                       # hidden layers between input and output layers
WIDTHS = [1, 3, 8, 17, 32]
ACTIVATIONS = ["Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "Softmax"]
LOSSES = ["MeanSquaredError", "MSELoss-mean", "MSELoss-sum", "CrossEntropyLoss", "BCEWithLogitsLoss"]
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
# weights scaled up from torch's init where the activation saturates, so gradients stay well away
# from 0; piecewise-linear nets keep torch's init (scaled up, deep linear nets blow up in 4 steps)
GAIN = {"Sigmoid": 2.0, "Tanh": 1.5, "Softmax": 2.0, "ReLU": 1.0, "LeakyReLU": 1.0, "Identity": 1.0}


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
    sizes = [n_in] + [width] * (depth + 1) + [n_out]
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = hb.Linear(i, o, rng=rng, dtype=dtype)
        lin.weight.data *= GAIN[act]                # saturating activations: non-vanishing gradients
        layers.append(lin)
        if k < len(sizes) - 2:
            layers.append(getattr(hb, act)())
    if loss_name.startswith("MSELoss"):
        loss = hb.MSELoss(reduction=loss_name.split("-")[1])
    else:
        loss = getattr(hb, loss_name)()
    return hb.Sequential(*layers), loss


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
    if loss_name == "MSELoss-sum":
        hyper["lr"] /= 4 * (batch or 1)            # a sum's gradient grows with the batch
    optimizer = hb.optim.SGD(model.parameters(), **hyper)
    data = crosscheck.data(model, loss, batch=batch, steps=4)
    trace = crosscheck.lockstep(model, loss, optimizer, data)
    assert len(trace) == 4 and trace.divergence is None
