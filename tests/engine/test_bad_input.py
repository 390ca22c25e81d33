"""Bad input: each case raises ValueError or TypeError (backward before forward: hb.CallOrderError,
both a RuntimeError and a ValueError), with a message that names the argument or the layer, and
leaves every parameter, gradient, optimizer state and cached forward exactly as it was."""
import numpy as np
import pytest

import handbp as hb
from tests.helpers.examples import CHAIN_LAYERS, FIRST_LOSSES, SHAPE


class Ctx:
    """Models with gradients, forward caches and optimizer state in place: what a bad call must
    not change."""

    def __init__(self, rng):
        self.model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh(), hb.Linear(5, 3, rng=rng))
        self.act_first = hb.Sequential(hb.Tanh(), hb.Identity(), hb.Linear(4, 3, rng=rng))
        self.nested = hb.Sequential(hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh()), hb.Linear(5, 3, rng=rng))
        self.dnn = hb.DNN(1, 6, 4, 3, rng=rng)
        self.fresh = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh(), hb.Linear(5, 3, rng=rng))
        self.models = [self.model, self.act_first, self.nested, self.dnn]
        self.x = rng.normal(size=(2, 4))
        self.y = rng.normal(size=(2, 3))
        self.opt = hb.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.loss = hb.MSELoss()
        self.ce = hb.CrossEntropyLoss()
        for m in self.models:
            self.loss(m(self.x), self.y)
            m.backward(self.loss.backward())
        self.opt.step()
        self.ce(self.model(self.x), np.array([0, 2]))
        self.loss(self.model(self.x), self.y)

    def snapshot(self):
        out = []
        for m in self.models + [self.fresh]:
            out += [(n, p.data.dtype.str, p.data.tobytes(), None if p.grad is None else p.grad.tobytes())
                    for n, p in m.named_parameters()]
        out += [(k, v.tobytes()) for s in self.opt.state.values() for k, v in s.items()]
        out += [sorted(g.items(), key=lambda kv: kv[0]) for g in
                ({k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups)]
        # the forward caches: a backward after the failed call gives the gradients it gave before
        out += [self.loss.backward().tobytes(), self.ce.backward().tobytes()]
        return out


def sd_with(ctx, **changes):
    sd = ctx.model.state_dict()
    sd.update(changes)
    return sd


def sd_without(ctx, key):
    return {k: v for k, v in ctx.model.state_dict().items() if k != key}


LINEAR = r"layer '{}' \(Linear\(in_features={}, out_features={}, bias=True\)\)"
CASES = {
    # -- model input
    "features": (lambda c: c.model(np.ones((2, 5))), ValueError,
                 LINEAR.format(0, 4, 5) + r": x: expected shape \(4,\) or \(N, 4\), got \(2, 5\)"),
    "features-unbatched": (lambda c: c.model(np.ones(3)), ValueError, LINEAR.format(0, 4, 5) + r".*got \(3,\)"),
    "features-layer-2": (lambda c: c.act_first(np.ones((2, 5))), ValueError,
                         LINEAR.format(2, 4, 3) + r": x: expected shape \(4,\) or \(N, 4\), got \(2, 5\)"),
    "features-nested": (lambda c: c.nested(np.ones((2, 3))), ValueError, LINEAR.format("0.0", 4, 5)),
    "features-dnn": (lambda c: c.dnn(np.ones((2, 7))), ValueError, LINEAR.format(0, 4, 6)),
    "ndim-3": (lambda c: c.model(np.ones((2, 3, 4))), ValueError, LINEAR.format(0, 4, 5) + r".*got \(2, 3, 4\)"),
    "ndim-0": (lambda c: c.model(np.float64(1.0)), ValueError, LINEAR.format(0, 4, 5) + r".*got \(\)"),
    "nan-x": (lambda c: c.model(np.where(np.eye(2, 4) > 0, np.nan, 1.0)), ValueError,
              r"x: expected finite values, got 2 non-finite \(first at index \(0, 0\): nan\)"),
    "inf-x": (lambda c: c.dnn(np.array([1.0, -np.inf, 0.0, 1.0])), ValueError, r"x: expected finite values.*-inf"),
    "float32-x": (lambda c: c.model(np.ones((2, 4), np.float32)), TypeError,
                  r"x: expected dtype float64 \(the model's dtype\), got float32"),
    "int-x": (lambda c: c.model(np.ones((2, 4), np.int64)), TypeError,
              r"x: expected a floating-point array, got dtype int64"),
    "str-x": (lambda c: c.model("abcd"), TypeError, r"x: expected an array of floats, got str"),
    "object-x": (lambda c: c.model(object()), TypeError, r"x: expected an array of floats, got object"),
    # -- backward
    "backward-before-forward": (lambda c: c.fresh.backward(np.ones((2, 3))), hb.CallOrderError,
                                LINEAR.format(2, 5, 3) + r": backward\(\) called before forward\(\)"),
    "loss-backward-before-forward": (lambda c: hb.MSELoss().backward(), hb.CallOrderError,
                                     r"MSELoss.*backward\(\) called before the loss was computed"),
    "grad-output-shape": (lambda c: c.model.backward(np.ones((2, 4))), ValueError,
                          LINEAR.format(2, 5, 3) + r": grad_output: expected shape \(2, 3\).*got array of shape \(2, 4\)"),
    "grad-output-unbatched": (lambda c: c.model.backward(np.ones(3)), ValueError, r"grad_output: expected shape \(2, 3\)"),
    "grad-output-activation": (lambda c: c.dnn.backward(np.ones((3, 3))), ValueError,
                               r"layer '5' \(Sigmoid\(\)\): grad_output: expected shape \(2, 3\)"),
    "grad-output-list": (lambda c: c.model.backward([[1.0, 2.0, 3.0]] * 2), ValueError, r"grad_output.*got list"),
    # -- constructors and hyperparameters
    "linear-negative": (lambda c: hb.Linear(-1, 3), ValueError, r"Linear: in_features: expected a non-negative integer, got -1"),
    "linear-float": (lambda c: hb.Linear(4, 2.5), ValueError, r"Linear: out_features: .*got 2.5"),
    "linear-bool": (lambda c: hb.Linear(True, 2), ValueError, r"Linear: in_features: .*got True"),
    "linear-init": (lambda c: hb.Linear(2, 2, init="xavier"), ValueError, r"Linear: init: expected 'torch' or 'normal'"),
    "linear-dtype": (lambda c: hb.Linear(2, 2, dtype=np.int32), TypeError, r"Linear: dtype: expected a floating dtype"),
    "dnn-depth": (lambda c: hb.DNN(-1, 4, 2, 1), ValueError, r"DNN: hidden_depth: expected a non-negative integer, got -1"),
    "dnn-width": (lambda c: hb.DNN(1, 0, 2, 1), ValueError, r"DNN: num_neuron: expected a positive integer, got 0"),
    "dnn-input": (lambda c: hb.DNN(1, 4, 2.0, 1), ValueError, r"DNN: input: expected a positive integer, got 2.0"),
    "dnn-output": (lambda c: hb.DNN(1, 4, 2, None), ValueError, r"DNN: output: .*got None"),
    "dnn-activation-instance": (lambda c: hb.DNN(1, 4, 2, 1, activation=hb.Tanh()), TypeError,
                                r"DNN: activation: expected a Module class"),
    "dnn-activation-str": (lambda c: hb.DNN(1, 4, 2, 1, activation="relu"), TypeError,
                           r"DNN: activation: expected a Module class such as hb.Sigmoid, got str 'relu'"),
    "dnn-activation-function": (lambda c: hb.DNN(1, 4, 2, 1, activation=np.tanh), TypeError,
                                r"DNN: activation: expected a Module class"),
    "dnn-init": (lambda c: hb.DNN(1, 4, 2, 1, init="zeros"), ValueError, r"DNN: init: expected 'notebook' or 'torch'"),
    "leaky-slope-str": (lambda c: hb.LeakyReLU("0.1"), ValueError, r"LeakyReLU: negative_slope: expected a finite number"),
    "leaky-slope-nan": (lambda c: hb.LeakyReLU(float("nan")), ValueError, r"LeakyReLU: negative_slope"),
    "softmax-dim-type": (lambda c: hb.Softmax(dim=1.0), TypeError, r"Softmax: dim: expected an integer"),
    "softmax-dim-range": (lambda c: hb.Sequential(hb.Softmax(dim=2))(np.ones((2, 3))), ValueError,
                          r"layer '0' \(Softmax\(dim=2\)\): dim: 2 is out of range for an input of shape \(2, 3\)"),
    "sgd-lr": (lambda c: hb.optim.SGD(c.model.parameters(), lr=-0.1), ValueError, r"Invalid learning rate: -0.1"),
    "sgd-momentum": (lambda c: hb.optim.SGD(c.model.parameters(), lr=0.1, momentum=-1), ValueError,
                     r"Invalid momentum value: -1"),
    "sgd-weight-decay": (lambda c: hb.optim.SGD(c.model.parameters(), lr=0.1, weight_decay=-1), ValueError,
                         r"Invalid weight_decay value: -1"),
    "sgd-nesterov": (lambda c: hb.optim.SGD(c.model.parameters(), lr=0.1, nesterov=True), ValueError,
                     r"Nesterov momentum requires a momentum and zero dampening"),
    "sgd-empty": (lambda c: hb.optim.SGD([], lr=0.1), ValueError, r"SGD: params: got an empty parameter list"),
    "sgd-one-parameter": (lambda c: hb.optim.SGD(c.model[0].weight, lr=0.1), TypeError,
                          r"SGD: params: .*got a single Parameter"),
    "sgd-not-parameters": (lambda c: hb.optim.SGD([np.ones(3)], lr=0.1), TypeError,
                           r"SGD: params\[0\]: expected a handbp Parameter"),
    "sgd-step-bad-grad": (lambda c: c.opt.step(), ValueError,
                          r"SGD.step: grad of parameter 3: expected an array of dtype float64 and shape \(3,\) "
                          r"\(the parameter's\), got array of shape \(4,\) and dtype float64; nothing was updated"),
    "reduction-mse": (lambda c: hb.MSELoss(reduction="none"), ValueError,
                      r"MSELoss: reduction: expected 'mean' or 'sum', got 'none'"),
    "reduction-ce": (lambda c: hb.CrossEntropyLoss(reduction="avg"), ValueError, r"CrossEntropyLoss: reduction"),
    "reduction-bce": (lambda c: hb.BCEWithLogitsLoss(reduction=None), ValueError, r"BCEWithLogitsLoss: reduction"),
    "gd-alpha": (lambda c: hb.gradient_descent(c.dnn, c.x, c.y, hb.MeanSquaredError(), alpha=-0.1), ValueError,
                 r"gradient_descent: alpha: expected a finite number >= 0, got -0.1"),
    "gd-target": (lambda c: hb.gradient_descent(c.dnn, c.x, c.y[:1], hb.MeanSquaredError()), ValueError,
                  r"MeanSquaredError: target: expected shape \(2, 3\) \(pred's shape\), got \(1, 3\)"),
    "gd-x": (lambda c: hb.gradient_descent(c.dnn, c.x[:, :3], c.y, hb.MeanSquaredError()), ValueError,
             LINEAR.format(0, 4, 6)),
    # -- losses
    "mse-target-shape": (lambda c: c.loss(c.model(c.x), np.ones((2, 4))), ValueError,
                         r"MSELoss: target: expected shape \(2, 3\) \(pred's shape\), got \(2, 4\)"),
    "mse-target-nan": (lambda c: c.loss(c.model(c.x), np.full((2, 3), np.nan)), ValueError,
                       r"target: expected finite values"),
    "mse-target-float32": (lambda c: c.loss(c.model(c.x), np.ones((2, 3), np.float32)), TypeError,
                           r"target: expected dtype float64"),
    "mse-pred-int": (lambda c: c.loss(np.ones((2, 3), np.int64), c.y), TypeError, r"pred: expected a floating-point"),
    "mse-empty": (lambda c: c.loss(np.ones((0, 3)), np.ones((0, 3))), ValueError,
                  r"MSELoss: pred: expected at least one element, got shape \(0, 3\)"),
    "ce-empty": (lambda c: c.ce(np.ones((0, 3)), np.ones(0, np.int64)), ValueError,
                 r"CrossEntropyLoss: pred: expected at least one element"),
    "ce-index-high": (lambda c: c.ce(c.model(c.x), np.array([0, 3])), ValueError,
                      r"CrossEntropyLoss: target: expected class indices in \[0, 3\), got 3"),
    "ce-index-negative": (lambda c: c.ce(c.model(c.x), np.array([-1, 0])), ValueError,
                          r"target: expected class indices in \[0, 3\), got -1"),
    "ce-index-unbatched": (lambda c: c.ce(np.ones(3), 5), ValueError, r"class indices in \[0, 3\), got 5"),
    "ce-target-shape": (lambda c: c.ce(c.model(c.x), np.array([0, 1, 2])), ValueError,
                        r"target: expected class indices of shape \(2,\) for logits of shape \(2, 3\), got \(3,\)"),
    "ce-float-indices": (lambda c: c.ce(c.model(c.x), np.array([0.0, 1.0])), ValueError,
                         r"CrossEntropyLoss: target: expected integer class indices of shape \(2,\) or float class "
                         r"probabilities of the logits' shape \(2, 3\), got floats of shape \(2,\): float targets "
                         r"are read as probabilities; for class indices use target.astype\(np.int64\)"),
    "ce-bool-target": (lambda c: c.ce(c.model(c.x), np.array([True, False])), TypeError,
                       r"target: expected integer class indices or float probabilities"),
    "ce-str-target": (lambda c: c.ce(c.model(c.x), np.array(["a", "b"])), TypeError, r"target: expected integer"),
    "ce-prob-inf": (lambda c: c.ce(c.model(c.x), np.full((2, 3), np.inf)), ValueError, r"target: expected finite"),
    "ce-pred-3d": (lambda c: c.ce(np.ones((2, 3, 4)), np.zeros((2, 4), np.int64)), ValueError,
                   r"CrossEntropyLoss: pred: expected logits of shape \(N, C\) or \(C,\), got \(2, 3, 4\)"),
    "bce-int-target": (lambda c: hb.BCEWithLogitsLoss()(c.y, np.ones((2, 3), np.int64)), TypeError,
                       r"target: expected a floating-point array"),
    "bce-nan-target": (lambda c: hb.BCEWithLogitsLoss()(c.y, np.full((2, 3), np.nan)), ValueError,
                       r"target: expected finite"),
    # -- state dicts
    "load-missing-key": (lambda c: c.model.load_state_dict(sd_without(c, "2.bias")), KeyError,
                         r"missing keys \['2.bias'\]"),
    "load-extra-key": (lambda c: c.model.load_state_dict(sd_with(c, extra=np.zeros(1))), KeyError,
                       r"unexpected keys \['extra'\]"),
    "load-shape": (lambda c: c.model.load_state_dict(sd_with(c, **{"2.weight": np.zeros((5, 3))})), ValueError,
                   r"'2.weight': expected shape \(3, 5\), got \(5, 3\)"),
    "load-shape-not-strict": (lambda c: c.model.load_state_dict({"0.bias": np.zeros(4)}, strict=False), ValueError,
                              r"'0.bias': expected shape \(5,\), got \(4,\)"),
    "load-dtype": (lambda c: c.model.load_state_dict(sd_with(c, **{"0.bias": np.zeros(5, np.float32)})), TypeError,
                   r"'0.bias': expected dtype float64, got float32"),
    "load-not-a-mapping": (lambda c: c.model.load_state_dict([np.zeros(3)]), TypeError,
                           r"load_state_dict: expected a mapping of name -> array"),
    "parameter-int": (lambda c: hb.Parameter(np.arange(3)), TypeError, r"Parameter: expected floating-point data"),
    # -- fit
    "fit-epochs": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x, c.y, epochs=0), ValueError,
                   r"fit: epochs: expected a positive integer, got 0"),
    "fit-batch-size": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x, c.y, batch_size=2.0), ValueError,
                       r"fit: batch_size"),
    "fit-y-length": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x, c.y[:1]), ValueError,
                     r"fit: y: expected 2 targets \(x has 2 samples\), got shape \(1, 3\)"),
    "fit-x-dtype": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x.astype(np.float32), c.y), TypeError,
                    r"x: expected dtype float64"),
    "fit-x-nan": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x * np.nan, c.y), ValueError, r"x: expected finite"),
    "fit-empty": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x[:0], c.y[:0]), ValueError,
                  r"fit: x: expected at least one sample, got shape \(0, 4\)"),
    "fit-target-shape": (lambda c: hb.fit(c.model, c.loss, c.opt, c.x, c.y[:, :2]), ValueError,
                         r"MSELoss: target: expected shape \(2, 3\)"),
}


# set up before the snapshot: the bad state the call meets
PREPARE = {"sgd-step-bad-grad": lambda c: setattr(c.model[2].bias, "grad", np.ones(4))}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_a_clear_error_and_changes_nothing(case, rng):
    call, error, message = CASES[case]
    # (a state_dict's key mismatch is a KeyError, as in torch, and a ValueError)
    assert error in (hb.CallOrderError, KeyError, ValueError, TypeError)
    ctx = Ctx(rng)
    PREPARE.get(case, lambda c: None)(ctx)
    before = ctx.snapshot()
    with pytest.raises(error, match=message) as info:
        call(ctx)
    assert isinstance(info.value, (ValueError, TypeError))
    assert ctx.snapshot() == before


def test_the_catalogue_has_at_least_forty_cases():
    assert len(CASES) >= 40


def test_errors_carry_no_numpy_traceback_depth():
    """The error is raised by handbp's own check, not from deep inside NumPy."""
    model = hb.Sequential(hb.Linear(4, 5), hb.Tanh(), hb.Linear(5, 3))
    with pytest.raises(ValueError) as info:
        model(np.ones((2, 3)))
    assert info.traceback[-1].path.name in ("layers.py", "module.py")


def test_call_order_error_is_a_runtime_error_and_a_value_error(rng):
    assert issubclass(hb.CallOrderError, RuntimeError) and issubclass(hb.CallOrderError, ValueError)
    for module in [make() for make in CHAIN_LAYERS.values()] + [hb.DNN(1, 3, 3, 3)]:     # every public layer
        with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\)"):
            module.backward(np.ones(SHAPE))
    for name, make in FIRST_LOSSES.items():                                              # every public loss
        with pytest.raises(hb.CallOrderError, match=name):
            make().backward()


def test_a_failed_forward_keeps_the_previous_forward_for_backward(rng):
    """model(bad x) raises at the first layer before any cache is overwritten."""
    ctx = Ctx(rng)
    x = rng.normal(size=(3, 4))
    ctx.model(x)
    with pytest.raises(ValueError):
        ctx.model(np.ones((3, 5)))
    dx = ctx.model.backward(np.ones((3, 3)))
    assert dx.shape == (3, 4)
