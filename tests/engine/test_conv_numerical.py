"""Numerical differentiation through convolutional networks: the fast method (perturbations stacked
through the layers that treat each sample on its own, as the classes declare) agrees with the
element loop and with backprop; where a layer mixes the samples of a batch (BatchNorm2d in
training) the parameters before it fall back to the loop, with a warning naming the layer."""
import warnings

import numpy as np
import pytest

import handbp as hb
from handbp.numerical import gradcheck, numerical_gradient

MODELS = {
    "conv-pool-linear": lambda r: hb.Sequential(hb.Conv2d(1, 2, 3, padding=1, rng=r), hb.ReLU(), hb.MaxPool2d(2),
                                                hb.Flatten(), hb.Linear(8, 3, rng=r)),
    "conv1d-avg-groupnorm": lambda r: hb.Sequential(hb.Conv1d(2, 2, 3, stride=2, rng=r), hb.GroupNorm(1, 2), hb.Tanh(),
                                                    hb.Flatten(), hb.Linear(12, 3, rng=r)),
    "conv-avg-adaptive": lambda r: hb.Sequential(hb.Conv2d(1, 2, 2, rng=r), hb.AvgPool2d(2, stride=1, padding=1),
                                                 hb.AdaptiveAvgPool2d(2), hb.Flatten(), hb.Linear(8, 3, rng=r)),
    "batchnorm2d-eval": lambda r: hb.Sequential(hb.Conv2d(1, 2, 3, rng=r), _stepped(hb.BatchNorm2d(2)), hb.Flatten(),
                                                hb.Linear(8, 3, rng=r)),
}
INPUTS = {"conv-pool-linear": (3, 1, 4, 4), "conv1d-avg-groupnorm": (3, 2, 13), "conv-avg-adaptive": (3, 1, 4, 4),
          "batchnorm2d-eval": (3, 1, 4, 4)}
LOSSES = {"CrossEntropyLoss": hb.CrossEntropyLoss, "NLLLoss": lambda: hb.NLLLoss(weight=[1.0, 2.0, 0.5]),
          "MultiMarginLoss": lambda: hb.MultiMarginLoss(p=2), "HuberLoss": lambda: hb.HuberLoss(delta=0.5),
          "SmoothL1Loss": hb.SmoothL1Loss, "L1Loss": lambda: hb.L1Loss("sum")}


def _stepped(bn):
    bn(np.random.default_rng(1).normal(1.0, 2.0, size=(4, bn.num_features, 2, 2)))
    return bn.eval()


def target(loss, n, rng):
    if isinstance(loss, (hb.CrossEntropyLoss, hb.NLLLoss, hb.MultiMarginLoss)):
        return rng.integers(0, 3, n)
    return rng.normal(size=(n, 3))


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("model", list(MODELS))
def test_the_fast_method_stacks_through_convolutional_layers_and_agrees_with_the_loop(model, loss, rng):
    net, fn = MODELS[model](rng), LOSSES[loss]()
    x = rng.normal(size=INPUTS[model])
    y = target(fn, len(x), rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no layer here falls back to the loop
        fast = numerical_gradient(net, fn, x, y, method="fast")
        assert gradcheck(net, fn, x, y, method="fast")
    loop = numerical_gradient(net, fn, x, y, method="loop")
    for name in fast:
        np.testing.assert_allclose(fast[name], loop[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_batchnorm2d_in_training_falls_back_to_the_loop_visibly(rng):
    net = hb.Sequential(hb.Conv2d(1, 2, 3, rng=rng), hb.BatchNorm2d(2), hb.Flatten(), hb.Linear(8, 3, rng=rng))
    x, y = rng.normal(size=(3, 1, 4, 4)), rng.integers(0, 3, 3)
    with pytest.warns(UserWarning, match=r"layer '1' \(BatchNorm2d\(2, .*\)\) cannot take a stack of perturbed inputs: "
                                         r"it normalizes with the batch's statistics \(training mode\)"):
        assert gradcheck(net, hb.CrossEntropyLoss(), x, y, method="fast")


def test_an_unbatched_image_falls_back_to_the_loop_visibly(rng):
    net = hb.Sequential(hb.Conv2d(1, 2, 3, rng=rng), hb.Flatten(0), hb.Linear(8, 3, rng=rng))
    x, y = rng.normal(size=(1, 4, 4)), np.int64(1)
    with pytest.warns(UserWarning, match=r"layer '1' \(Flatten\(start_dim=0, end_dim=-1\)\) cannot take a stack of "
                                         r"perturbed inputs: it flattens the batch axis into the others"):
        assert gradcheck(net, hb.CrossEntropyLoss(), x, y, method="fast")


@pytest.mark.parametrize("name", ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "GroupNorm",
                                  "Conv1d", "MaxPool1d"])
def test_a_row_wise_layer_takes_a_stack_as_it_takes_each_input(name, rng):
    """What row_wise declares, checked: inputs stacked along the batch axis give the stacked outputs."""
    layer = {"Conv2d": lambda: hb.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng), "MaxPool2d": lambda: hb.MaxPool2d(2),
             "AvgPool2d": lambda: hb.AvgPool2d(3, 1, 1), "AdaptiveAvgPool2d": lambda: hb.AdaptiveAvgPool2d(3),
             "Flatten": hb.Flatten, "GroupNorm": lambda: hb.GroupNorm(2, 2), "Conv1d": lambda: hb.Conv1d(2, 2, 3, rng=rng),
             "MaxPool1d": lambda: hb.MaxPool1d(2)}[name]()
    shape = (3, 2, 7) if name.endswith("1d") else (3, 2, 5, 6)
    xs = [rng.normal(size=shape) for _ in range(4)]
    assert layer.row_wise(xs[0]) is None
    stacked = layer(np.concatenate(xs))
    np.testing.assert_allclose(stacked, np.concatenate([layer(x) for x in xs]), rtol=1e-13, atol=1e-13)
    if name not in ("Flatten", "GroupNorm"):          # (both read any rank as a batch)
        assert layer.row_wise(xs[0][0]) == "its input is unbatched"
