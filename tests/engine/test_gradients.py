"""Every backward against central finite differences (float64, per element), and torch's
accumulation semantics for ``.grad``.

The cases are derived from the public classes: every example of every public layer, container and
loss in ``tests/helpers/examples.py``, at each input shape it lists. A public class without an
example is a failing case naming it."""
import copy

import numpy as np
import pytest
import torch

import handbp as hb
from handbp.structure import flatten, flatten_like, map_structure
from tests.helpers.examples import FEATURES, LAYERS, Missing, layer_examples, loss_examples
from tests.helpers.fd import fd_gradient, module_gradients
from tests.helpers.tolerance import FD_ATOL, FD_RTOL

IN = OUT = FEATURES


def make_module(name, rng):
    """The example called ``name``, for inputs of FEATURES features."""
    return next(ex for exs in LAYERS.values() for ex in exs if ex.name == name).build(rng, FEATURES)


def _cases(examples, shapes=None):
    return [(ex, None) if isinstance(ex, Missing) else (ex, shape)
            for ex in examples for shape in ([None] if isinstance(ex, Missing) else shapes or ex.inputs)]


def _ids(cases):
    return [ex.name if shape is None else f"{ex.name}-{shape}" for ex, shape in cases]


MODULE_CASES = _cases(layer_examples())


@pytest.mark.parametrize("example, inputs", MODULE_CASES, ids=_ids(MODULE_CASES))
def test_module_backward_matches_finite_differences(example, inputs, rng):
    if isinstance(example, Missing):
        example.fail()
    m = example.build(rng, FEATURES)
    # every float input ≥ 0.2 away from ReLU's kink at 0, moved by a continuous shift, not onto one
    # value: equal inputs in one window would be a tie of max pooling, whose one-sided derivatives
    # differ; integer indices as drawn; a tuple (a recurrent layer's (x, h0)) array by array
    x = map_structure(lambda a: a if a.dtype.kind in "iu" else np.where(np.abs(a) < 0.2, a + np.copysign(0.2, a), a),
                      example.input(inputs, rng))
    at_x = copy.deepcopy(m)                          # the module as the forward finds it
    y = m(x)
    dy = map_structure(lambda a: rng.normal(size=a.shape), y)
    dx = m.backward(dy)
    fd_dx, fd_params = module_gradients(at_x, x, dy)
    assert len(flatten(dx)) == len(flatten(x))
    for k, (mine, fd, xk) in enumerate(zip(flatten_like(dx, x), flatten(fd_dx), flatten(x))):
        if fd is None:                               # integer indices: no gradient
            assert mine is None, f"dL/dx[{k}]: expected None for integer indices"
            continue
        if mine is None:                             # None: no gradient reached it, zero (as torch's autograd)
            assert not np.any(fd), f"dL/dx[{k}]: None where finite differences give a gradient"
            continue
        assert mine.shape == xk.shape
        np.testing.assert_allclose(mine, fd, rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"dL/dx[{k}]")
    names = [n for n, _ in m.named_parameters()]
    assert names == list(fd_params)
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, pname
        np.testing.assert_allclose(p.grad, fd_params[pname], rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"dL/d{pname}")


def test_every_layer_kind_has_parameters_checked(rng):
    """The parametrization above covers weights and biases: the containers have both."""
    names = [n for n, _ in make_module("DNN", rng).named_parameters()]
    assert names == [f"{i}.{k}" for i in (0, 2, 4, 6) for k in ("weight", "bias")]
    assert [n for n, _ in make_module("Linear-nobias", rng).named_parameters()] == ["weight"]


# -- losses: dL/dpred ---------------------------------------------------------------------------
C = 3
LOSS_CASES = _cases(loss_examples(), shapes=["unbatched", "batch1", "batch6"])
PRED_SHAPES = {"unbatched": (C,), "batch1": (1, C), "batch6": (6, C)}


@pytest.mark.parametrize("example, shape", LOSS_CASES, ids=_ids(LOSS_CASES))
def test_loss_backward_matches_finite_differences(example, shape, rng):
    if isinstance(example, Missing):
        example.fail()
    loss = example.build()
    pred = rng.normal(size=PRED_SHAPES[shape]) * 2
    target = example.target(rng, pred.shape)
    away_from_kinks(loss, pred, target)
    value = loss(pred, target)
    assert isinstance(value, float)
    reference = example.torch(torch.nn.functional, torch.from_numpy(pred), torch.from_numpy(np.asarray(target)))
    assert value == pytest.approx(reference.item(), rel=1e-12, abs=1e-15)
    g = loss.backward()
    assert g.shape == pred.shape and g.dtype == np.float64
    fd = fd_gradient(lambda: loss(pred, target), pred)
    np.testing.assert_allclose(g, fd, rtol=FD_RTOL, atol=FD_ATOL)


def away_from_kinks(loss, pred, target, gap=1e-3):
    """Move ``pred`` (in place) at least ``gap`` away from where the loss's gradient jumps, far
    beyond the finite-difference step: |h − y| = 0 for a real target (L1, SmoothL1 with beta 0),
    and 1 − x[y] + x[i] = 0 (a margin met exactly) for MultiMarginLoss's class indices. A random
    prediction lands that close about once in a million elements; then the test would fail."""
    if isinstance(loss, hb.MultiMarginLoss):
        rows, labels = pred.reshape(-1, pred.shape[-1]), np.asarray(target).reshape(-1)
        for row, label in zip(rows, labels):
            margins = loss.margin - row[label] + row
            near = np.abs(margins) < gap
            near[label] = False
            row[near] += 2 * gap           # (rows is a view: pred changes)
    elif np.shape(target) == pred.shape and np.asarray(target).dtype.kind == "f":
        near = np.abs(pred - target) < gap
        pred[near] += 2 * gap


def test_away_from_kinks_moves_a_prediction_off_the_kink():
    pred, target = np.array([0.3, 1.0 + 4e-8, -2.0]), np.array([0.0, 1.0, -2.0])
    away_from_kinks(hb.L1Loss(), pred, target)
    assert np.all(np.abs(pred - target) >= 1e-3) and pred[0] == 0.3
    logits = np.array([[0.5, 1.5 - 1e-9, -3.0]])          # class 1: margin 1 − 1.5 + 0.5 = 0 at x[0]
    away_from_kinks(hb.MultiMarginLoss(), logits, np.array([1]))
    assert abs(1.0 - logits[0, 1] + logits[0, 0]) >= 1e-3 and logits[0, 2] == -3.0


def test_mean_squared_error_is_half_the_mean_and_its_gradient_has_the_1_over_n(rng):
    h, y = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    loss = hb.MeanSquaredError()
    assert loss(h, y) == pytest.approx(0.5 * np.mean((h - y) ** 2), rel=1e-15)
    np.testing.assert_allclose(loss.backward(), (h - y) / 8, rtol=1e-15, atol=0)
    np.testing.assert_allclose(loss.grad(), (h - y) / 8, rtol=1e-15, atol=0)   # the notebook's name


# -- accumulation -------------------------------------------------------------------------------
ACCUMULATE = {"unbatched": (IN,), "batch5": (5, IN)}


@pytest.mark.parametrize("batch", list(ACCUMULATE))
def test_backward_adds_into_grad(batch, rng):
    m = make_module("Sequential", rng)
    x = rng.normal(size=ACCUMULATE[batch])
    dy = rng.normal(size=m(x).shape)
    m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    start = {n: rng.normal(size=p.shape) for n, p in m.named_parameters()}
    for n, p in m.named_parameters():
        p.grad = start[n].copy()
    m.backward(dy)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, start[n] + once[n], rtol=1e-14, atol=0, err_msg=n)


@pytest.mark.parametrize("batch", list(ACCUMULATE))
def test_two_backward_calls_double_the_grad(batch, rng):
    m = make_module("DNN", rng)
    x = rng.normal(size=ACCUMULATE[batch])
    dy = rng.normal(size=m(x).shape)
    dx1 = m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    dx2 = m.backward(dy)                              # the same forward's cache, used again
    np.testing.assert_array_equal(dx1, dx2)           # dx is returned, never accumulated
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-15, atol=0, err_msg=n)


def test_zero_grad_sets_every_grad_to_none(rng):
    m = make_module("Sequential", rng)
    assert all(p.grad is None for p in m.parameters())
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    opt = hb.optim.SGD(m.parameters(), lr=0.1)
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m(rng.normal(size=(2, IN)))
    m.backward(rng.normal(size=(2, OUT)))
    m.zero_grad(set_to_none=False)                    # torch's other mode: zeros in place
    assert all(p.grad is not None and p.grad.shape == p.shape and not p.grad.any() for p in m.parameters())


def test_loss_then_model_backward_accumulates_the_chain(rng):
    """Two losses' gradients summed by two backward passes equal the gradient of their sum."""
    m = make_module("DNN", rng)
    x, y1, y2 = rng.normal(size=(5, IN)), rng.uniform(size=(5, OUT)), rng.uniform(size=(5, OUT))
    loss = hb.MSELoss()
    for y in (y1, y2):
        loss(m(x), y)
        m.backward(loss.backward())
    total = {n: p.grad.copy() for n, p in m.named_parameters()}
    f = lambda: loss(m.forward(x), y1) + loss(m.forward(x), y2)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(total[n], fd_gradient(f, p.data), rtol=FD_RTOL, atol=FD_ATOL, err_msg=n)


def test_gradients_do_not_alias_the_callers_arrays(rng):
    lin = hb.Linear(IN, OUT, rng=rng)
    for shape in ((IN,), (1, IN)):
        lin.zero_grad()
        x = rng.normal(size=shape)
        dy = rng.normal(size=lin(x).shape)
        lin.backward(dy)
        kept = lin.weight.grad.copy(), lin.bias.grad.copy()
        dy[...] = 0
        np.testing.assert_array_equal(lin.weight.grad, kept[0])
        np.testing.assert_array_equal(lin.bias.grad, kept[1])
