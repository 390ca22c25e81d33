"""Bad arguments and bad inputs of the convolutional layers and the new losses: a clear error that
names the argument (or the layer), what was expected and what was given, raised before anything
changes (the layer's parameters, gradients and caches stay as they were)."""
import numpy as np
import pytest

import handbp as hb

CONSTRUCTORS = [
    (lambda: hb.Conv2d(3, 4, 0), ValueError, "Conv2d: kernel_size: expected a positive integer or a tuple of 2 such, got 0"),
    (lambda: hb.Conv2d(3, 4, (3, 3, 3)), ValueError, "Conv2d: kernel_size: expected a positive integer or a tuple of 2"),
    (lambda: hb.Conv2d(3, 4, 3, stride=(1, 0)), ValueError, "Conv2d: stride: expected a positive integer"),
    (lambda: hb.Conv2d(3, 4, 3, padding=-1), ValueError, "Conv2d: padding: expected a non-negative integer"),
    (lambda: hb.Conv2d(3, 4, 3, padding="full"), ValueError, "Conv2d: padding: expected 'same' or 'valid', got 'full'"),
    (lambda: hb.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "padding='same' needs stride 1"),
    (lambda: hb.Conv2d(3, 4, 3, dilation=1.5), TypeError, "Conv2d: dilation: expected a positive integer"),
    (lambda: hb.Conv2d(3, 4, 3, groups=2), ValueError, "Conv2d: in_channels: expected a multiple of groups=2, got 3"),
    (lambda: hb.Conv2d(4, 3, 3, groups=2), ValueError, "Conv2d: out_channels: expected a multiple of groups=2, got 3"),
    (lambda: hb.Conv2d(0, 3, 3), ValueError, "Conv2d: in_channels: expected a positive integer, got 0"),
    (lambda: hb.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError, "Conv2d: padding_mode: expected 'zeros', got 'reflect'"),
    (lambda: hb.Conv1d(3, 4, (3, 3)), ValueError, "Conv1d: kernel_size: expected a positive integer or a tuple of one such"),
    (lambda: hb.Conv1d(3, 4, 3, bias=1), TypeError, "Conv1d: bias: expected True or False, got 1"),
    (lambda: hb.MaxPool2d(3, padding=2), ValueError, "MaxPool2d: padding: expected at most half the kernel size (3, 3)"),
    (lambda: hb.MaxPool2d(2, return_indices=True), ValueError, "MaxPool2d: return_indices: expected False"),
    (lambda: hb.MaxPool1d(0), ValueError, "MaxPool1d: kernel_size: expected a positive integer"),
    (lambda: hb.AvgPool2d(2, divisor_override=0), ValueError, "AvgPool2d: divisor_override: expected a positive integer, got 0"),
    (lambda: hb.AvgPool2d(2, count_include_pad="yes"), TypeError, "AvgPool2d: count_include_pad: expected True or False"),
    (lambda: hb.AdaptiveAvgPool2d(0), ValueError, "AdaptiveAvgPool2d: output_size: expected a positive integer, None"),
    (lambda: hb.AdaptiveAvgPool2d((2, 2, 2)), TypeError, "AdaptiveAvgPool2d: output_size: expected a positive integer"),
    (lambda: hb.AdaptiveAvgPool2d(2.5), TypeError, "AdaptiveAvgPool2d: output_size: expected a positive integer"),
    (lambda: hb.Flatten(1.0), TypeError, "Flatten: start_dim: expected an integer, got 1.0"),
    (lambda: hb.BatchNorm2d(0), ValueError, "BatchNorm2d: num_features: expected a positive integer, got 0"),
    (lambda: hb.BatchNorm2d(3, momentum=2), ValueError, "BatchNorm2d: momentum: expected a finite number in [0, 1]"),
    (lambda: hb.GroupNorm(3, 4), ValueError, "GroupNorm: num_channels: expected a multiple of num_groups=3, got 4"),
    (lambda: hb.GroupNorm(2, 4, eps=-1), ValueError, "GroupNorm: eps: expected a finite number >= 0, got -1"),
    (lambda: hb.Dropout2d(1.5), ValueError, "Dropout2d: p: expected a probability in [0, 1], got 1.5"),
    (lambda: hb.NLLLoss(reduction="avg"), ValueError, "NLLLoss: reduction: expected 'mean', 'sum' or 'none', got 'avg'"),
    (lambda: hb.NLLLoss(weight=[[1.0]]), ValueError, "NLLLoss: weight: expected None or a 1-D array of finite class weights"),
    (lambda: hb.NLLLoss(weight=[1.0, np.nan]), ValueError, "NLLLoss: weight: expected None or a 1-D array of finite"),
    (lambda: hb.NLLLoss(ignore_index=1.0), TypeError, "NLLLoss: ignore_index: expected an integer, got 1.0"),
    (lambda: hb.MultiMarginLoss(p=3), ValueError, "MultiMarginLoss: p: expected 1 or 2, got 3"),
    (lambda: hb.MultiMarginLoss(margin="1"), TypeError, "MultiMarginLoss: margin: expected a finite number, got '1'"),
    (lambda: hb.HuberLoss(delta=0), ValueError, "HuberLoss: delta: expected a finite number > 0, got 0"),
    (lambda: hb.SmoothL1Loss(beta=-1), ValueError, "SmoothL1Loss: beta: expected a finite number >= 0, got -1"),
    (lambda: hb.L1Loss(reduction=None), TypeError, "L1Loss: reduction: expected 'mean', 'sum' or 'none', got None"),
]


@pytest.mark.parametrize("make, error, message", CONSTRUCTORS, ids=[m for _, _, m in CONSTRUCTORS])
def test_bad_constructor_arguments_are_named(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)               # as every bad argument here


# layer, bad input, the error's message (after the layer's description)
INPUTS = [
    (lambda: hb.Conv2d(3, 4, 5), (1, 3, 2, 6), "x: the kernel spans 5 values along the height (kernel_size 5, dilation 1), "
                                              "more than the padded input's 2 (height 2 + padding 0 + 0), so there is no "
                                              "output position; got x of shape (1, 3, 2, 6)"),
    (lambda: hb.Conv2d(3, 4, 3, dilation=(1, 3), padding=1), (1, 3, 5, 4),
     "x: the kernel spans 7 values along the width (kernel_size 3, dilation 3), more than the padded input's 6 (width 4 "
     "+ padding 1 + 1)"),
    (lambda: hb.Conv1d(2, 2, 4), (2, 3), "x: the kernel spans 4 values along the length"),
    (lambda: hb.Conv2d(3, 4, 3), (2, 4, 5, 5), "x: expected shape (N, 3, H, W) or (3, H, W), got (2, 4, 5, 5)"),
    (lambda: hb.Conv2d(3, 4, 3), (3, 5), "x: expected shape (N, 3, H, W) or (3, H, W), got (3, 5)"),
    (lambda: hb.Conv1d(3, 4, 3), (1, 3, 5, 5), "x: expected shape (N, 3, L) or (3, L), got (1, 3, 5, 5)"),
    (lambda: hb.MaxPool2d(3), (1, 2, 2, 5), "x: the window spans 3 values along the height (kernel_size 3, dilation 1), "
                                            "more than the padded input's 2 (height 2 + 2 × padding 0), so there is no "
                                            "output"),
    (lambda: hb.MaxPool2d(2), (4, 5), "x: expected shape (N, C, H, W) or (C, H, W), got (4, 5)"),
    (lambda: hb.MaxPool1d(2, dilation=3), (2, 3), "x: the window spans 4 values along the length"),
    (lambda: hb.AvgPool2d(2), (2, 3, 4, 5, 6), "x: expected shape (N, C, H, W) or (C, H, W), got (2, 3, 4, 5, 6)"),
    (lambda: hb.AdaptiveAvgPool2d(2), (3, 0, 4), "x: expected a non-empty height and width, got shape (3, 0, 4)"),
    (lambda: hb.Flatten(1, 3), (2, 3, 4), "end_dim: expected an axis in [-3, 2] for x of shape (2, 3, 4), got 3"),
    (lambda: hb.Flatten(2, 1), (2, 3, 4), "start_dim 2 comes after end_dim 1 for x of shape (2, 3, 4)"),
    (lambda: hb.BatchNorm2d(3), (2, 3, 4), "x: expected shape (N, 3, H, W), got (2, 3, 4)"),
    (lambda: hb.BatchNorm2d(3), (1, 3, 1, 1), "x: expected more than 1 value per channel when training"),
    (lambda: hb.GroupNorm(2, 4), (2, 3, 5), "x: expected shape (N, 4, *), got (2, 3, 5)"),
    (lambda: hb.Dropout2d(0.5), (2, 3), "x: expected shape (N, C, H, W) or (C, H, W), got (2, 3)"),
]


@pytest.mark.parametrize("make, shape, message", INPUTS, ids=[m[:50] for _, _, m in INPUTS])
def test_bad_inputs_are_refused_before_anything_changes(make, shape, message, rng):
    layer = make()
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    caches = {k: v for k, v in vars(layer).items() if k.startswith("last_")}
    with pytest.raises(ValueError) as info:
        layer(rng.normal(size=shape))
    assert str(info.value).startswith(repr(layer) + ": "), str(info.value)
    assert message in str(info.value)
    assert {k: v.tobytes() for k, v in layer.state_dict().items()} == {k: v.tobytes() for k, v in before.items()}
    assert {k: v for k, v in vars(layer).items() if k.startswith("last_")} == caches


def test_an_error_inside_a_model_names_the_layer(rng):
    model = hb.Sequential(hb.Conv2d(1, 2, 3, rng=rng), hb.ReLU(), hb.MaxPool2d(2), hb.Conv2d(2, 2, 3, rng=rng))
    with pytest.raises(ValueError, match=r"^layer '3' \(Conv2d\(2, 2, kernel_size=\(3, 3\), stride=\(1, 1\)\)\): x: the "
                                         r"kernel spans 3 values along the height"):
        model(rng.normal(size=(1, 1, 6, 6)))


@pytest.mark.parametrize("make, shape, dy_shape", [
    (lambda: hb.Conv2d(2, 3, 3), (2, 2, 5, 5), (2, 3, 3, 4)), (lambda: hb.Conv1d(2, 3, 3), (2, 5), (3, 4)),
    (lambda: hb.MaxPool2d(2), (2, 2, 4, 4), (2, 2, 2, 3)), (lambda: hb.AvgPool2d(2), (2, 4, 4), (2, 3, 2)),
    (lambda: hb.AdaptiveAvgPool2d(2), (2, 2, 4, 4), (2, 2, 2)), (lambda: hb.Flatten(), (2, 3, 4), (2, 3, 4)),
    (lambda: hb.GroupNorm(1, 2), (2, 2, 3), (2, 2)), (lambda: hb.Dropout2d(0.5), (2, 2, 3, 3), (2, 2, 1, 1)),
    (lambda: hb.BatchNorm2d(2), (2, 2, 3, 3), (2, 2, 3)),
], ids=["Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "GroupNorm", "Dropout2d",
        "BatchNorm2d"])
def test_backward_checks_dy_before_any_gradient_changes(make, shape, dy_shape, rng):
    layer = make()
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        layer.backward(rng.normal(size=dy_shape))
    y = layer(rng.normal(size=shape))
    layer.backward(rng.normal(size=y.shape))
    grads = [p.grad.tobytes() for p in layer.parameters()]
    with pytest.raises(ValueError, match=rf"grad_output: expected shape {re_shape(y.shape)} and dtype float64"):
        layer.backward(rng.normal(size=dy_shape))
    with pytest.raises(TypeError, match=rf"grad_output: expected shape {re_shape(y.shape)} and dtype float64"):
        layer.backward(rng.normal(size=y.shape).astype(np.float32))
    assert [p.grad.tobytes() for p in layer.parameters()] == grads


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


TARGETS = [
    (lambda: hb.NLLLoss(), (3, 4), np.array([0, 4, 1]), ValueError, "NLLLoss: target: expected class indices in [0, 4) "
                                                                    "or ignore_index=-100, got 4"),
    (lambda: hb.NLLLoss(), (3, 4), np.array([0.0, 1.0, 1.0]), TypeError, "NLLLoss: target: expected integer class indices"),
    (lambda: hb.NLLLoss(), (3, 4), np.array([0, 1]), ValueError, "NLLLoss: target: expected class indices of shape (3,) "
                                                                 "for pred of shape (3, 4), got (2,)"),
    (lambda: hb.NLLLoss(weight=[1.0, 2.0]), (3, 4), np.array([0, 1, 1]), ValueError,
     "NLLLoss: weight: expected one weight per class (4 for pred of shape (3, 4)), got 2"),
    (lambda: hb.NLLLoss(), (3, 4, 2), np.array([[0, 1]] * 3), None, None),
    (lambda: hb.MultiMarginLoss(), (3, 4, 2), np.array([[0, 1]] * 3), ValueError,
     "MultiMarginLoss: pred: expected class scores of shape (N, C) or (C,), got (3, 4, 2)"),
    (lambda: hb.MultiMarginLoss(), (3, 4), np.array([0, -1, 1]), ValueError,
     "MultiMarginLoss: target: expected class indices in [0, 4), got -1"),
    (lambda: hb.L1Loss(), (3, 4), np.zeros((4, 3)), ValueError, "L1Loss: target: expected shape (3, 4) (pred's shape)"),
    (lambda: hb.HuberLoss(), (3, 4), np.full((3, 4), np.nan), ValueError, "target: expected finite values"),
]


@pytest.mark.parametrize("make, pred_shape, target, error, message", TARGETS, ids=[str(m)[:40] for *_, m in TARGETS])
def test_bad_targets_are_named(make, pred_shape, target, error, message, rng):
    loss = make()
    pred = rng.normal(size=pred_shape)
    if error is None:
        assert np.isfinite(loss(pred, target))
        return
    with pytest.raises(error) as info:
        loss(pred, target)
    assert message in str(info.value)


def test_backward_of_reduction_none_checks_dy(rng):
    loss = hb.HuberLoss("none")
    terms = loss(rng.normal(size=(3, 4)), rng.normal(size=(3, 4)))
    with pytest.raises(TypeError, match=r"HuberLoss.backward: dy: expected a number or a float array of the losses' "
                                        r"shape \(3, 4\), got array of shape \(4, 3\)"):
        loss.backward(np.ones((4, 3)))
    assert loss.backward(np.ones(terms.shape)).shape == (3, 4)
