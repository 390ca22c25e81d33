"""Every backward of the convolutional layers and the new losses against central finite
differences (float64, element by element): input gradients and parameter gradients, batched and
unbatched, over strides, paddings, dilations, groups and the pooling options."""
import numpy as np
import pytest

import handbp as hb
from fd import ATOL, RTOL, fd_gradient, module_gradients, rng  # noqa: F401  (rng: a fixture)

# name -> (a factory of the layer, the input shape)
CASES = {
    "Conv2d": (lambda r: hb.Conv2d(3, 4, 3, padding=1, rng=r), (2, 3, 5, 6)),
    "Conv2d-stride-rect": (lambda r: hb.Conv2d(2, 3, (3, 2), stride=(2, 3), padding=(1, 2), rng=r), (2, 2, 7, 8)),
    "Conv2d-dilation-same": (lambda r: hb.Conv2d(2, 2, 3, dilation=2, padding="same", rng=r), (1, 2, 6, 5)),
    "Conv2d-even-same": (lambda r: hb.Conv2d(2, 3, (2, 4), padding="same", rng=r), (2, 2, 5, 6)),
    "Conv2d-groups-nobias": (lambda r: hb.Conv2d(4, 6, 2, stride=2, groups=2, bias=False, rng=r), (2, 4, 5, 5)),
    "Conv2d-depthwise": (lambda r: hb.Conv2d(3, 3, 3, groups=3, padding="valid", rng=r), (2, 3, 4, 5)),
    "Conv2d-unbatched": (lambda r: hb.Conv2d(2, 3, 3, stride=2, padding=1, dilation=(1, 2), rng=r), (2, 6, 7)),
    "Conv1d": (lambda r: hb.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, rng=r), (2, 3, 9)),
    "Conv1d-same-groups": (lambda r: hb.Conv1d(4, 2, 4, padding="same", groups=2, rng=r), (3, 4, 7)),
    "Conv1d-unbatched": (lambda r: hb.Conv1d(2, 3, 2, rng=r), (2, 6)),
    "MaxPool2d": (lambda r: hb.MaxPool2d(2), (2, 3, 4, 6)),
    "MaxPool2d-overlap": (lambda r: hb.MaxPool2d(3, stride=1, padding=1, dilation=(1, 2)), (2, 2, 5, 6)),
    "MaxPool2d-ceil": (lambda r: hb.MaxPool2d((2, 3), stride=2, ceil_mode=True), (1, 2, 5, 7)),
    "MaxPool2d-unbatched": (lambda r: hb.MaxPool2d(2, stride=1), (2, 3, 4)),
    "MaxPool1d": (lambda r: hb.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8)),
    "MaxPool1d-unbatched": (lambda r: hb.MaxPool1d(2, dilation=2), (3, 7)),
    "AvgPool2d": (lambda r: hb.AvgPool2d(2), (2, 3, 4, 6)),
    "AvgPool2d-pad": (lambda r: hb.AvgPool2d(3, stride=2, padding=1), (2, 2, 5, 6)),
    "AvgPool2d-exclude-ceil": (lambda r: hb.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 6, 7)),
    "AvgPool2d-divisor": (lambda r: hb.AvgPool2d((2, 3), stride=(1, 2), divisor_override=5), (3, 5, 6)),
    "AdaptiveAvgPool2d": (lambda r: hb.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "AdaptiveAvgPool2d-global": (lambda r: hb.AdaptiveAvgPool2d(1), (3, 4, 4)),
    "Flatten": (lambda r: hb.Flatten(), (2, 3, 4, 2)),
    "Flatten-middle": (lambda r: hb.Flatten(1, 2), (2, 3, 4, 2)),
    "BatchNorm2d": (lambda r: hb.BatchNorm2d(3), (2, 3, 4, 5)),
    "BatchNorm2d-eval": (lambda r: _stepped(hb.BatchNorm2d(3), r).eval(), (2, 3, 4, 5)),
    "BatchNorm2d-plain": (lambda r: hb.BatchNorm2d(3, affine=False, track_running_stats=False), (3, 3, 2, 2)),
    "GroupNorm": (lambda r: _scrambled(hb.GroupNorm(2, 4), r), (2, 4, 3, 3)),
    "GroupNorm-one-group-nobias": (lambda r: _scrambled(hb.GroupNorm(1, 3, bias=False), r), (3, 3, 5)),
    "GroupNorm-2d-input": (lambda r: hb.GroupNorm(3, 3, affine=False), (4, 3)),
    "Dropout2d-eval": (lambda r: hb.Dropout2d(0.5, rng=0).eval(), (2, 3, 4, 4)),
}


def _stepped(bn, rng):
    """A BatchNorm whose running estimates have moved away from 0 and 1."""
    bn(rng.normal(2.0, 3.0, size=(4, bn.num_features, 3, 3)))
    return bn


def _scrambled(m, rng):
    """A normalisation with γ and β away from 1 and 0, so that their gradients matter."""
    for p in m.parameters():
        p.data[...] = rng.normal(size=p.shape)
    return m


@pytest.mark.parametrize("name", list(CASES))
def test_backward_matches_finite_differences(name, rng):
    make, shape = CASES[name]
    m = make(rng)
    x = rng.normal(size=shape)
    y = m(x)
    dy = rng.normal(size=y.shape)
    m.zero_grad()
    m.forward(x)
    dx = m.backward(dy)
    fd_dx, fd_grads = module_gradients(m, x, dy)
    np.testing.assert_allclose(dx, fd_dx, rtol=RTOL, atol=ATOL)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, fd_grads[n], rtol=RTOL, atol=ATOL, err_msg=n)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 5)], ids=["batched", "unbatched"])
def test_dropout2d_drops_whole_channels_and_its_backward_uses_the_same_mask(shape, rng):
    m = hb.Dropout2d(0.5, rng=rng)
    x = rng.normal(size=shape) + 5.0                     # no element is 0 by chance
    y = m(x)
    kept = (y != 0).all(axis=(-2, -1))
    assert ((y == 0).all(axis=(-2, -1)) | kept).all()      # a channel is dropped or kept whole
    assert 0 < kept.sum() < kept.size                       # (this seed drops some and keeps some)
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
