"""The bug zoo: classic backprop bugs as ready-made mutants of handbp's own classes.

Each entry (``Bug``) builds a small training run (model, loss, optimizer, data) with one bug
planted in one class. ``handbp zoo`` runs every entry under crosscheck's lockstep and prints the
bug, the first divergence and the hint crosscheck gives; what crosscheck is expected to say about
each bug (where, which hint) is crosscheck's business and lives there (``crosscheck.zoo``). The
first three bugs are the seed notebook's own silent bugs. The classes here are deliberately wrong:
read each docstring for what the bug is, and the class it derives from for what is right.

More bugs can join from other modules: each module named in ``ZOO_MODULES`` that can be imported
holds a list ``BUGS`` of ``Bug`` entries, and ``bugs()`` gathers them all, this module's first.
"""
import importlib
from dataclasses import dataclass

import numpy as np

from . import optim
from .activations import Sigmoid, Softmax, Tanh
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
    """σ'(x) = y(1 − y) is a formula in the output y; written with the cached pre-activation x in
    its place, it becomes x(1 − x), which is no derivative of anything here."""

    def forward(self, x):
        self.last_x = x
        return super().forward(x)

    def backward(self, dy):
        x = self.last_x
        return dy * x * (1 - x)


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
    """tanh's backward with its sign flipped: −dy · (1 − y²)."""

    def backward(self, dy):
        return -super().backward(dy)


class SigmoidOverflow(Sigmoid):
    """The naive σ(x) = eˣ / (1 + eˣ): for x > 709 eˣ overflows to inf in float64, and inf / inf is
    NaN (the stable forms, 1 / (1 + e⁻ˣ) or handbp's, never divide two infinities)."""

    def forward(self, x):
        with np.errstate(over="ignore", invalid="ignore"):     # the overflow is the bug on show
            e = np.exp(x)
            self.last_o = e / (1 + e)
        return self.last_o


class CrossEntropyNoMean(CrossEntropyLoss):
    """Cross-entropy's gradient without the 1/N of the mean."""

    def backward(self, dy=1.0):
        return super().backward(dy) * len(self.last_p)


class LinearForgetsInputGrad(Linear):
    """Accumulates its own parameters' gradients, then returns zeros instead of dL/dx = dy W: the
    layers below it get nothing."""

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


OVERFLOW = 800.0     # a pre-activation whose eˣ overflows float64 (largest finite: e^709.78)


def simple(hidden=Tanh, first=Linear, last=Linear, opt=optim.SGD, loss=MSELoss, classes=False,
           big=False, n_in=3, width=5, **hyper):
    def make(rng):
        n_out = 3 if classes else 2
        model = mlp(rng, hidden, first, last, n_in=n_in, width=width, n_out=n_out)
        data = batches(rng, n_in=n_in, n_out=n_out, classes=classes)
        if big:     # scale the first layer so that the largest pre-activation of the first batch is +800
            z = data[0][0] @ model[0].weight.data.T
            model[0].weight.data *= OVERFLOW / (z.max() if z.max() >= -z.min() else z.min())
        return model, loss(), opt(model.parameters(), **{"lr": 0.1, **hyper}), data
    return make


@dataclass(frozen=True)
class Bug:
    """One planted bug: ``build(rng)`` returns ``(model, loss, optimizer, data)`` with the bug in it."""

    name: str
    summary: str
    build: object


BUGS = [
    Bug("notebook-mse-without-1/n", "the notebook's MSE gradient h − y, without the 1/n of the mean",
        case_notebook_mse),
    Bug("notebook-dw-typo-grad-never-stored", "the notebook's dw/dW typo: the weight gradient is stored under "
        "another name and the weights never receive it", case_notebook_dw_typo_grad),
    Bug("notebook-dw-typo-weights-never-updated", "the notebook's dw/dW typo, seen from the update: the weights "
        "are stepped with an all-zero dW", case_notebook_dw_typo_update),
    Bug("sigmoid-derivative-on-preactivation", "σ' written as x(1 − x) with the pre-activation x, instead of "
        "y(1 − y) with the output y", simple(hidden=SigmoidOnPreactivation)),
    Bug("missing-transpose", "dW = xᵀ dy, the (in, out) layout, instead of dyᵀ x", simple(first=LinearNoTranspose)),
    Bug("missing-transpose-square", "dW = xᵀ dy in a square 4 × 4 layer: the shape is right, the values are "
        "the transpose", simple(first=LinearNoTranspose, n_in=4, width=4)),
    Bug("bias-grad-not-summed", "the bias gradient left per sample instead of summed over the batch",
        simple(last=LinearBiasNotSummed)),
    Bug("grads-not-zeroed", "zero_grad does nothing: gradients pile up across steps", simple(opt=SGDNoZeroGrad)),
    Bug("cache-overwritten", "tanh's cache overwritten with the input before backward: 1 − x² instead of 1 − y²",
        simple(hidden=TanhCacheOverwritten)),
    Bug("softmax-diagonal-jacobian", "softmax backward with only the Jacobian's diagonal y(1 − y)",
        simple(hidden=SoftmaxDiagonalJacobian)),
    Bug("momentum-reset-each-step", "the momentum buffer started afresh every step",
        simple(opt=SGDMomentumReset, momentum=0.9)),
    Bug("weight-decay-twice", "weight decay added to the gradient, then again by the optimizer",
        simple(opt=SGDWeightDecayTwice, weight_decay=0.1)),
    Bug("sign-flipped", "tanh's backward with its sign flipped", simple(hidden=TanhSignFlipped)),
    Bug("nan-from-overflow", "a naive sigmoid e^x / (1 + e^x): e^x overflows for x > 709 and inf / inf is NaN",
        simple(hidden=SigmoidOverflow, big=True)),
    Bug("cross-entropy-without-mean", "cross-entropy's gradient without the 1/N of the batch mean",
        simple(loss=CrossEntropyNoMean, classes=True)),
    Bug("input-grad-dropped", "a Linear that returns zeros as its input gradient: the layers below learn nothing",
        simple(last=LinearForgetsInputGrad)),
]
ZOO = BUGS      # this module's bugs (``bugs()``: every zoo module's)

# the modules whose BUGS join the zoo; one not there (yet) is skipped
ZOO_MODULES = ("handbp.zoo", "handbp.zoo_conv", "handbp.zoo_rnn")


def bugs():
    """Every bug of every zoo module in ``ZOO_MODULES`` that can be imported, in that order."""
    out = []
    for name in ZOO_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:          # the module is there but something it imports is not
                raise
            continue
        out += module.BUGS
    return out


def planted(case):
    """The objects of a built case ``(model, loss, optimizer, data)`` whose class is a zoo mutant
    (defined in a zoo module): where the bug is."""
    model, loss, optimizer, _ = case
    objects = [m for _, m in model.named_modules()] + [loss, optimizer]
    return [o for o in objects if type(o).__module__ in ZOO_MODULES]
