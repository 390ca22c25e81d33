"""The bug zoo: classic backprop bugs as ready-made mutants of handbp's own classes.

Each entry builds a small training run (model, loss, optimizer, data) with one bug planted, and
names the hint crosscheck should give and where the first divergence should appear. ``handbp zoo``
runs every entry under lockstep and prints the bug, the first divergence and the hint; the first
three are the seed notebook's own silent bugs. The classes here are deliberately wrong: read
each docstring for what the bug is, and the class it derives from for what is right.
"""
from dataclasses import dataclass

import numpy as np

from . import optim
from .activations import Sigmoid, Softmax, Tanh, sigmoid
from .layers import Linear
from .losses import CrossEntropyLoss, MeanSquaredError, MSELoss
from .module import Sequential
from .network import DNN

# -- the mutants ----------------------------------------------------------------------------
class MSEWithoutOneOverN(MeanSquaredError):
    """The notebook's MSE gradient: h − y, without the 1/n."""

    def backward(self, dy=1.0):
        return self.last_diff * dy


class LinearGradIntoDw(Linear):
    """The notebook's typo, first form: the weight gradient lands in ``self.dw``, never in
    ``weight.grad`` (the update reads the latter)."""

    def backward(self, dy):
        x = self.last_x
        self.dw = np.outer(dy, x) if x.ndim == 1 else dy.T @ x
        self.bias.accumulate(dy if x.ndim == 1 else dy.sum(axis=0))
        return dy @ self.weight.data


class SGDUpdatesWithZeros(optim.SGD):
    """The notebook's typo, second form: the update uses an all-zero ``dW`` for the weights."""

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dW = np.zeros_like(p.data) if p.data.ndim == 2 else p.grad
                p.data -= g["lr"] * dW


class SigmoidOnPreactivation(Sigmoid):
    """σ'(x) evaluated on the output y instead of the input: y(1−y) becomes σ(y)(1−σ(y))."""

    def forward(self, x):
        self.last_x = x
        return super().forward(x)

    def backward(self, dy):
        s = sigmoid(self.last_o)
        return dy * s * (1 - s)


class LinearNoTranspose(Linear):
    """dW computed as xᵀ dy: the (in, out) layout instead of torch's (out, in)."""

    def backward(self, dy):
        self.weight.accumulate(self.last_x.T @ dy)
        self.bias.accumulate(dy.sum(axis=0))
        return dy @ self.weight.data


class LinearBiasNotSummed(Linear):
    """The bias gradient left per sample: (N, out) instead of summed over the batch."""

    def backward(self, dy):
        self.weight.accumulate(dy.T @ self.last_x)
        self.bias.grad = dy.copy()
        return dy @ self.weight.data


class SGDNoZeroGrad(optim.SGD):
    """zero_grad that does nothing: gradients pile up across steps."""

    def zero_grad(self, set_to_none=True):
        pass


class TanhCacheOverwritten(Tanh):
    """The cache is overwritten with the input before backward: (1 − x²) instead of (1 − y²)."""

    def forward(self, x):
        y = super().forward(x)
        self.last_o = x
        return y


class SoftmaxDiagonalJacobian(Softmax):
    """Softmax backward with only the diagonal of the Jacobian: y(1−y)·dy."""

    def backward(self, dy):
        y = self.last_o
        return dy * y * (1 - y)


class SGDMomentumReset(optim.SGD):
    """The momentum buffer started afresh each step."""

    def step(self):
        self.state.clear()
        super().step()


class SGDWeightDecayTwice(optim.SGD):
    """Weight decay added to the gradient, and then again by the step."""

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = p.grad + g["weight_decay"] * p.data
        super().step()


class TanhSignFlipped(Tanh):
    def backward(self, dy):
        return -super().backward(dy)


class SigmoidOverflow(Sigmoid):
    """The naive σ with a log: NaN appears for large pre-activations."""

    def forward(self, x):
        with np.errstate(all="ignore"):
            self.last_o = np.exp(-np.log1p(np.exp(-x)))
            self.last_o = np.where(x < -30, np.nan, self.last_o)
        return self.last_o


class CrossEntropyNoMean(CrossEntropyLoss):
    """Cross-entropy's gradient without the 1/N of the mean."""

    def backward(self, dy=1.0):
        return super().backward(dy) * len(self.last_p)


class LinearForgetsInputGrad(Linear):
    """Returns dy Wᵀ... as dy @ W computed from a zeroed copy: the layers below get nothing."""

    def backward(self, dy):
        super().backward(dy)
        return np.zeros(self.last_x.shape)


# -- the cases ------------------------------------------------------------------------------
def mlp(rng, hidden=Tanh, first=Linear, last=Linear, n_in=3, width=5, n_out=2):
    return Sequential(first(n_in, width, rng=rng), hidden(), last(width, n_out, rng=rng))


def batches(rng, n_in=3, n_out=2, batch=4, steps=3, classes=False):
    out = []
    for _ in range(steps):
        x = rng.normal(size=(batch, n_in))
        y = rng.integers(0, n_out, batch) if classes else rng.normal(size=(batch, n_out))
        out.append((x, y))
    return out


def case_notebook_mse(rng):
    np.random.seed(int(rng.integers(2**31)))
    model = DNN(hidden_depth=2, num_neuron=8, input=10, output=2)
    data = [(np.random.normal(0, 1, (10,)), np.random.normal(0, 1, (2,)))] * 3
    return model, MSEWithoutOneOverN(), optim.SGD(model.parameters(), lr=0.01), data


def case_notebook_dw_typo_grad(rng):
    model = mlp(rng, first=LinearGradIntoDw)
    return model, MSELoss(), optim.SGD(model.parameters(), lr=0.1), batches(rng)


def case_notebook_dw_typo_update(rng):
    model = mlp(rng)
    return model, MSELoss(), SGDUpdatesWithZeros(model.parameters(), lr=0.1), batches(rng)


def simple(hidden=Tanh, first=Linear, last=Linear, opt=optim.SGD, loss=MSELoss, classes=False,
           big=False, **hyper):
    def make(rng):
        model = mlp(rng, hidden, first, last, n_out=3 if classes else 2)
        data = batches(rng, n_out=3 if classes else 2, classes=classes)
        if big:     # scale the first layer so that some pre-activation of the first batch is -60
            z = data[0][0] @ model[0].weight.data.T
            model[0].weight.data *= 60 / -z.min() if -z.min() >= z.max() else -60 / z.max()
        return model, loss(), opt(model.parameters(), **{"lr": 0.1, **hyper}), data
    return make


@dataclass(frozen=True)
class Bug:
    """One planted bug: ``build(rng)`` returns ``(model, loss, optimizer, data)``; crosscheck should
    diverge at ``where`` (a substring of "name quantity") with ``hint`` (and ``factor``)."""

    name: str
    summary: str
    build: object
    hint: str
    where: str
    factor: float = None


ZOO = [
    Bug("notebook-mse-without-1/n", "the notebook's MSE gradient h − y, without the 1/n of the mean",
        case_notebook_mse, "factor", "loss (MSEWithoutOneOverN) grad_pred", 2.0),
    Bug("notebook-dw-typo-grad-never-stored", "the notebook's dw/dW typo: the weight gradient is stored under "
        "another name and the weights never receive it", case_notebook_dw_typo_grad, "zero",
        "0.weight (LinearGradIntoDw) grad"),
    Bug("notebook-dw-typo-weights-never-updated", "the notebook's dw/dW typo, seen from the update: the weights "
        "are stepped with an all-zero dW", case_notebook_dw_typo_update, "never_updated", "0.weight (Linear) param"),
    Bug("sigmoid-derivative-on-preactivation", "σ' evaluated at the wrong point: σ(y)(1 − σ(y)) instead of y(1 − y)",
        simple(hidden=SigmoidOnPreactivation), "local_derivative", "1 (SigmoidOnPreactivation) grad_input"),
    Bug("missing-transpose", "dW = xᵀ dy, the (in, out) layout, instead of dyᵀ x", simple(first=LinearNoTranspose),
        "transpose", "0.weight (LinearNoTranspose) grad"),
    Bug("bias-grad-not-summed", "the bias gradient left per sample instead of summed over the batch",
        simple(last=LinearBiasNotSummed), "shape", "2.bias (LinearBiasNotSummed) grad"),
    Bug("grads-not-zeroed", "zero_grad does nothing: gradients pile up across steps", simple(opt=SGDNoZeroGrad),
        "accumulated", "0.weight (Linear) grad"),
    Bug("cache-overwritten", "tanh's cache overwritten with the input before backward: 1 − x² instead of 1 − y²",
        simple(hidden=TanhCacheOverwritten), "local_derivative", "1 (TanhCacheOverwritten) grad_input"),
    Bug("softmax-diagonal-jacobian", "softmax backward with only the Jacobian's diagonal y(1 − y)",
        simple(hidden=SoftmaxDiagonalJacobian), "local_derivative", "1 (SoftmaxDiagonalJacobian) grad_input"),
    Bug("momentum-reset-each-step", "the momentum buffer started afresh every step",
        simple(opt=SGDMomentumReset, momentum=0.9), "reset", "state.momentum_buffer"),
    Bug("weight-decay-twice", "weight decay added to the gradient, then again by the optimizer",
        simple(opt=SGDWeightDecayTwice, weight_decay=0.1), "weight_decay", "param"),
    Bug("sign-flipped", "tanh's backward with its sign flipped", simple(hidden=TanhSignFlipped), "sign",
        "1 (TanhSignFlipped) grad_input", -1.0),
    Bug("nan-from-overflow", "a naive sigmoid that produces NaN for large pre-activations",
        simple(hidden=SigmoidOverflow, big=True), "nonfinite", "1 (SigmoidOverflow) output"),
    Bug("cross-entropy-without-mean", "cross-entropy's gradient without the 1/N of the batch mean",
        simple(loss=CrossEntropyNoMean, classes=True), "factor", "grad_pred", 4.0),
    Bug("input-grad-dropped", "a Linear that returns zeros as its input gradient: the layers below learn nothing",
        simple(last=LinearForgetsInputGrad), "zero", "2 (LinearForgetsInputGrad) grad_input"),
]
