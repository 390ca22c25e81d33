"""Mutation tests: known backprop bugs injected into handbp must make lockstep raise, at the right
place, with the hint that fits. The first two are the seed notebook's own silent bugs."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb


# -- the mutants ----------------------------------------------------------------------------
class MSEWithoutOneOverN(hb.MeanSquaredError):
    """The notebook's MSE gradient: h − y, without the 1/n."""

    def backward(self, dy=1.0):
        return self.last_diff * dy


class LinearGradIntoDw(hb.Linear):
    """The notebook's typo, first form: the weight gradient lands in ``self.dw``, never in
    ``weight.grad`` (the update reads the latter)."""

    def backward(self, dy):
        x = self.last_x
        self.dw = np.outer(dy, x) if x.ndim == 1 else dy.T @ x
        self.bias.accumulate(dy if x.ndim == 1 else dy.sum(axis=0))
        return dy @ self.weight.data


class SGDUpdatesWithZeros(hb.optim.SGD):
    """The notebook's typo, second form: the update uses an all-zero ``dW`` for the weights."""

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dW = np.zeros_like(p.data) if p.data.ndim == 2 else p.grad
                p.data -= g["lr"] * dW


class SigmoidOnPreactivation(hb.Sigmoid):
    """σ'(x) evaluated on the output y instead of the input: y(1−y) becomes σ(y)(1−σ(y))."""

    def forward(self, x):
        self.last_x = x
        return super().forward(x)

    def backward(self, dy):
        s = hb.activations.sigmoid(self.last_o)
        return dy * s * (1 - s)


class LinearNoTranspose(hb.Linear):
    """dW computed as xᵀ dy: the (in, out) layout instead of torch's (out, in)."""

    def backward(self, dy):
        self.weight.accumulate(self.last_x.T @ dy)
        self.bias.accumulate(dy.sum(axis=0))
        return dy @ self.weight.data


class LinearBiasNotSummed(hb.Linear):
    """The bias gradient left per sample: (N, out) instead of summed over the batch."""

    def backward(self, dy):
        self.weight.accumulate(dy.T @ self.last_x)
        self.bias.grad = dy.copy()
        return dy @ self.weight.data


class SGDNoZeroGrad(hb.optim.SGD):
    """zero_grad that does nothing: gradients pile up across steps."""

    def zero_grad(self, set_to_none=True):
        pass


class TanhCacheOverwritten(hb.Tanh):
    """The cache is overwritten with the input before backward: (1 − x²) instead of (1 − y²)."""

    def forward(self, x):
        y = super().forward(x)
        self.last_o = x
        return y


class SoftmaxDiagonalJacobian(hb.Softmax):
    """Softmax backward with only the diagonal of the Jacobian: y(1−y)·dy."""

    def backward(self, dy):
        y = self.last_o
        return dy * y * (1 - y)


class SGDMomentumReset(hb.optim.SGD):
    """The momentum buffer started afresh each step."""

    def step(self):
        self.state.clear()
        super().step()


class SGDWeightDecayTwice(hb.optim.SGD):
    """Weight decay added to the gradient, and then again by the step."""

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = p.grad + g["weight_decay"] * p.data
        super().step()


class TanhSignFlipped(hb.Tanh):
    def backward(self, dy):
        return -super().backward(dy)


class SigmoidOverflow(hb.Sigmoid):
    """The naive σ with a log: NaN appears for large pre-activations."""

    def forward(self, x):
        with np.errstate(all="ignore"):
            self.last_o = np.exp(-np.log1p(np.exp(-x)))
            self.last_o = np.where(x < -30, np.nan, self.last_o)
        return self.last_o


class CrossEntropyNoMean(hb.CrossEntropyLoss):
    """Cross-entropy's gradient without the 1/N of the mean."""

    def backward(self, dy=1.0):
        return super().backward(dy) * len(self.last_p)


class LinearForgetsInputGrad(hb.Linear):
    """Returns dy Wᵀ... as dy @ W computed from a zeroed copy: the layers below get nothing."""

    def backward(self, dy):
        super().backward(dy)
        return np.zeros(self.last_x.shape)


# -- the cases ------------------------------------------------------------------------------
def mlp(rng, hidden=hb.Tanh, first=hb.Linear, last=hb.Linear, n_in=3, width=5, n_out=2):
    return hb.Sequential(first(n_in, width, rng=rng), hidden(), last(width, n_out, rng=rng))


def batches(rng, n_in=3, n_out=2, batch=4, steps=3, classes=False):
    out = []
    for _ in range(steps):
        x = rng.normal(size=(batch, n_in))
        y = rng.integers(0, n_out, batch) if classes else rng.normal(size=(batch, n_out))
        out.append((x, y))
    return out


def case_notebook_mse(rng):
    np.random.seed(int(rng.integers(2**31)))
    model = hb.DNN(hidden_depth=2, num_neuron=8, input=10, output=2)
    data = [(np.random.normal(0, 1, (10,)), np.random.normal(0, 1, (2,)))] * 3
    return model, MSEWithoutOneOverN(), hb.optim.SGD(model.parameters(), lr=0.01), data


def case_notebook_dw_typo_grad(rng):
    model = mlp(rng, first=LinearGradIntoDw)
    return model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), batches(rng)


def case_notebook_dw_typo_update(rng):
    model = mlp(rng)
    return model, hb.MSELoss(), SGDUpdatesWithZeros(model.parameters(), lr=0.1), batches(rng)


def simple(hidden=hb.Tanh, first=hb.Linear, last=hb.Linear, opt=hb.optim.SGD, loss=hb.MSELoss, classes=False,
           big=False, **hyper):
    def make(rng):
        model = mlp(rng, hidden, first, last, n_out=3 if classes else 2)
        if big:
            model[0].weight.data *= 40
        data = batches(rng, n_out=3 if classes else 2, classes=classes)
        return model, loss(), opt(model.parameters(), **{"lr": 0.1, **hyper}), data
    return make


# id -> (builder, expected hint, expected location (substring of "name quantity"), factor or None)
MUTANTS = {
    "notebook-mse-without-1/n": (case_notebook_mse, "factor", "loss (MSEWithoutOneOverN) grad_pred", 2.0),
    "notebook-dw-typo-grad-never-stored": (case_notebook_dw_typo_grad, "zero", "0.weight (LinearGradIntoDw) grad", None),
    "notebook-dw-typo-weights-never-updated": (case_notebook_dw_typo_update, "never_updated", "0.weight (Linear) param", None),
    "sigmoid-derivative-on-preactivation": (simple(hidden=SigmoidOnPreactivation), None, "1 (SigmoidOnPreactivation) grad_input", None),
    "missing-transpose": (simple(first=LinearNoTranspose), "transpose", "0.weight (LinearNoTranspose) grad", None),
    "bias-grad-not-summed": (simple(last=LinearBiasNotSummed), "shape", "2.bias (LinearBiasNotSummed) grad", None),
    "grads-not-zeroed": (simple(opt=SGDNoZeroGrad), "accumulated", "0.weight (Linear) grad", None),
    "cache-overwritten": (simple(hidden=TanhCacheOverwritten), None, "1 (TanhCacheOverwritten) grad_input", None),
    "softmax-diagonal-jacobian": (simple(hidden=SoftmaxDiagonalJacobian), None, "1 (SoftmaxDiagonalJacobian) grad_input", None),
    "momentum-reset-each-step": (simple(opt=SGDMomentumReset, momentum=0.9), "reset", "state.momentum_buffer", None),
    "weight-decay-twice": (simple(opt=SGDWeightDecayTwice, weight_decay=0.1), "weight_decay", "param", None),
    "sign-flipped": (simple(hidden=TanhSignFlipped), "sign", "1 (TanhSignFlipped) grad_input", -1.0),
    "nan-from-overflow": (simple(hidden=SigmoidOverflow, big=True), "nonfinite", "1 (SigmoidOverflow) output", None),
    "cross-entropy-without-mean": (simple(loss=CrossEntropyNoMean, classes=True), "factor", "grad_pred", 4.0),
    "input-grad-dropped": (simple(last=LinearForgetsInputGrad), "zero", "2 (LinearForgetsInputGrad) grad_input", None),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_with_its_hint(name, rng):
    build, hint, where, factor = MUTANTS[name]
    model, loss, optimizer, data = build(rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, loss, optimizer, data)
    d = info.value
    assert where in f"{d.name} {d.quantity}", str(d)
    assert d.hint == hint, str(d)
    if factor is not None:
        assert d.factor == pytest.approx(factor, rel=1e-6), str(d)
    assert "diagnosis:" in str(d) and f"step {d.step}" in str(d)


@pytest.mark.parametrize("name", ["sigmoid-derivative-on-preactivation", "missing-transpose", "sign-flipped"])
def test_the_same_model_without_the_bug_passes(name, rng):
    """The mutants fail because of the bug alone: their correct parents pass the same run."""
    fixed = {"sigmoid-derivative-on-preactivation": simple(hidden=hb.Sigmoid),
             "missing-transpose": simple(), "sign-flipped": simple()}[name]
    model, loss, optimizer, data = fixed(rng)
    assert cc.lockstep(model, loss, optimizer, data).divergence is None


def test_notebook_bugs_are_caught_on_the_first_step(rng):
    for name in ("notebook-mse-without-1/n", "notebook-dw-typo-grad-never-stored",
                 "notebook-dw-typo-weights-never-updated"):
        model, loss, optimizer, data = MUTANTS[name][0](rng)
        with pytest.raises(cc.Divergence) as info:
            cc.lockstep(model, loss, optimizer, data)
        assert info.value.step == 0


def test_mse_factor_names_the_output_size(rng):
    model, loss, optimizer, data = case_notebook_mse(rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, loss, optimizer, data)
    assert "2 = the number of output elements" in info.value.diagnosis
    # every gradient below it is off by the same factor, and the report lists them
    assert any("0.weight (Linear) grad" in o and "[factor]" in o for o in info.value.others)
