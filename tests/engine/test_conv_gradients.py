"""What the general gradient test (tests/engine/test_gradients.py, over the examples in
tests/helpers/examples.py, which hold the convolutional layers' strides, paddings, dilations, groups
and pooling options) does not reach: Dropout2d's whole-channel masks, and the new losses away from
their kinks, at every reduction (reduction="none" included), with class weights and ignore_index."""
import numpy as np
import pytest

import handbp as hb
from tests.helpers.fd import fd_gradient
from tests.helpers.tolerance import FD_ATOL as ATOL
from tests.helpers.tolerance import FD_RTOL as RTOL


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 5)], ids=["batched", "unbatched"])
def test_dropout2d_drops_whole_channels_and_its_backward_uses_the_same_mask(shape, rng):
    m = hb.Dropout2d(0.5, rng=rng)
    x = rng.normal(size=shape) + 5.0                     # no element is 0 by chance
    for _ in range(100):                                   # a draw that drops some channels and keeps some
        y = m(x)
        kept = (y != 0).all(axis=(-2, -1))
        if 0 < kept.sum() < kept.size:
            break
    assert ((y == 0).all(axis=(-2, -1)) | kept).all()      # a channel is dropped or kept whole
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(y[kept], 2 * x[kept])     # survivors scaled by 1 / (1 − p) = 2: exact
    dy = rng.normal(size=shape)
    np.testing.assert_array_equal(m.backward(dy), dy * 2 * kept[..., None, None])


LOSS_CASES = {
    "L1Loss": (lambda: hb.L1Loss(), "float"),
    "L1Loss-sum": (lambda: hb.L1Loss("sum"), "float"),
    "HuberLoss": (lambda: hb.HuberLoss(delta=0.7), "float"),
    "HuberLoss-sum": (lambda: hb.HuberLoss("sum", delta=2.0), "float"),
    "SmoothL1Loss": (lambda: hb.SmoothL1Loss(beta=0.5), "float"),
    "SmoothL1Loss-beta0-sum": (lambda: hb.SmoothL1Loss("sum", beta=0.0), "float"),
    "SmoothL1Loss-beta0": (lambda: hb.SmoothL1Loss(beta=0.0), "float"),
    "NLLLoss": (lambda: hb.NLLLoss(), "index"),
    "NLLLoss-weighted-ignore": (lambda: hb.NLLLoss(weight=[0.5, 2.0, 1.0, 3.0], ignore_index=1), "index"),
    "NLLLoss-sum": (lambda: hb.NLLLoss(reduction="sum"), "index"),
    "MultiMarginLoss": (lambda: hb.MultiMarginLoss(), "index"),
    "MultiMarginLoss-p2-weighted": (lambda: hb.MultiMarginLoss(p=2, margin=0.7, weight=[1.0, 2.0, 0.5, 1.5]), "index"),
    "MultiMarginLoss-sum": (lambda: hb.MultiMarginLoss(reduction="sum", margin=3.0), "index"),
}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_loss_gradient_matches_finite_differences(name, batched, rng):
    make, kind = LOSS_CASES[name]
    loss = make()
    shape = (5, 4) if batched else (4,)
    pred = rng.normal(size=shape)
    if kind == "index":
        target = rng.integers(0, 4, shape[:-1])
        if not batched and target == getattr(loss, "ignore_index", None):
            target = (target + 1) % 4                        # one sample, ignored: the mean of nothing is NaN
    else:
        target = rng.normal(size=shape)
        away = np.abs(pred - target) < 0.05                 # no difference at a kink (0, ±δ, ±β)
        target[away] += 0.2
    loss(pred, target)
    g = loss.backward()
    np.testing.assert_allclose(g, fd_gradient(lambda: loss(pred, target), pred), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", [n for n in LOSS_CASES if not n.endswith("sum")])
def test_reduction_none_gives_each_term_and_takes_their_gradients(name, rng):
    """reduction="none": the losses of each element (each sample for the class losses); backward(dy)
    takes dL/dℓ of that shape, and equals the mean's gradient for dy = 1/n (the mean's own weights for
    NLLLoss); a number dy stands for all of them."""
    make, kind = LOSS_CASES[name]
    mean, none = make(), make()
    none.reduction = "none"
    pred = rng.normal(size=(5, 4))
    target = rng.integers(0, 4, 5) if kind == "index" else rng.normal(size=(5, 4))
    terms = none(pred, target)
    assert terms.shape == (np.shape(target) if kind == "index" else pred.shape)
    value = mean(pred, target)
    count = terms.size if not isinstance(mean, hb.NLLLoss) else mean.last_count
    np.testing.assert_allclose(terms.sum() / count, value, rtol=1e-12)
    dy = rng.normal(size=terms.shape)
    fd = fd_gradient(lambda: float((none(pred, target) * dy).sum()), pred)
    none(pred, target)                                        # (the cache of the last perturbed call replaced)
    np.testing.assert_allclose(none.backward(dy), fd, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(none.backward(np.full(terms.shape, 1.0 / count)), mean.backward(), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(none.backward(2.0), none.backward(np.full(terms.shape, 2.0)), rtol=0, atol=0)
