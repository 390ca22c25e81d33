"""Losses. ``loss(pred, target)`` returns a Python float and caches what ``backward()`` needs;
``backward()`` returns dLoss/dpred, an array of pred's shape."""
import numpy as np

from . import validate
from .errors import ArgumentTypeError, CallOrderError, as_float_array, check_finite, describe
from .activations import exp, sigmoid
from .module import Module

REDUCTIONS = ("mean", "sum")


class Loss(Module):
    """Base class: validates ``pred`` and ``target``, then calls ``forward(pred, target)``."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def __call__(self, pred, target):
        pred = as_float_array(pred, "pred")
        if pred.size == 0:
            raise ValueError(f"{type(self).__name__}: pred: expected at least one element, got shape {pred.shape}")
        target = self._check_target(pred, target)
        return float(self.forward(pred, target))

    def _check_target(self, pred, target):
        """Default: a float target of exactly pred's shape and dtype, all finite."""
        target = as_float_array(target, "target", pred.dtype)
        if target.shape != pred.shape:
            raise ValueError(f"{type(self).__name__}: target: expected shape {pred.shape} (pred's shape), "
                             f"got {target.shape}")
        return check_finite(target, "target")

    def _need_forward(self, dy=1.0):
        """Raise if backward comes before the loss, or if ``dy`` (dL_outer/dL, a scalar as the loss
        is one) is not a real number; NaN and Inf pass, as in torch. Returns it as a Python float."""
        if self._cache is None:
            raise CallOrderError(self, "backward() called before the loss was computed; call loss(pred, target) first")
        return dy if type(dy) is float else float(validate.number((self, "backward"), "dy", dy, finite=False))

    def backward(self, dy=1.0):
        raise NotImplementedError


class MeanSquaredError(Loss):
    """The notebook's loss: L = ½ · mean((h − y)²), the mean over every element.

    Derivative: dL/dh = (h − y) / n, n the number of elements. The notebook returned h − y and
    so dropped the 1/n; the ½ is there so that the 2 from the square cancels.
    """

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return 0.5 * np.mean(np.square(self.last_diff))

    def backward(self, dy=1.0):
        """dL/dh = (h − y) / n."""
        dy = self._need_forward(dy)
        return self.last_diff * (dy / self.last_diff.size)

    def grad(self):
        """The notebook's name for ``backward()`` (with the 1/n it was missing)."""
        return self.backward()


class MSELoss(Loss):
    """torch's MSE: L = mean((h − y)²) (``reduction="mean"``) or Σ(h − y)² (``"sum"``).

    Derivative: dL/dh = 2(h − y)/n for the mean, 2(h − y) for the sum.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = validate.choice("MSELoss", "reduction", reduction, REDUCTIONS)

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        sq = np.square(self.last_diff)
        return sq.mean() if self.reduction == "mean" else sq.sum()

    def backward(self, dy=1.0):
        """dL/dh = 2(h − y) · (1/n if mean)."""
        dy = self._need_forward(dy)
        scale = 2.0 * dy / (self.last_diff.size if self.reduction == "mean" else 1)
        return self.last_diff * scale

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def log_softmax(z, axis=-1):
    """log softmax(z) = z − m − log Σ e^(z − m), m = max z: no overflow for any finite z."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(exp(shifted).sum(axis=axis, keepdims=True))


class CrossEntropyLoss(Loss):
    """torch's cross-entropy on logits: L = −(1/N) Σₙ log softmax(zₙ)[yₙ] (``reduction="mean"``).

    ``pred``: logits ``(N, C)`` or ``(C,)``. ``target``: class indices ``(N,)`` / ``()`` (integers in
    [0, C)), or class probabilities of pred's shape (floats), as torch accepts both.

    Derivative: dL/dz = (softmax(z) − onehot(y)) / N (with probabilities p: softmax(z)·Σp − p).
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = validate.choice("CrossEntropyLoss", "reduction", reduction, REDUCTIONS)

    def _check_target(self, pred, target):
        if pred.ndim not in (1, 2):
            raise ValueError(f"CrossEntropyLoss: pred: expected logits of shape (N, C) or (C,), got {pred.shape}")
        t = np.asarray(target)
        C = pred.shape[-1]
        if t.dtype.kind in "iu":
            if t.shape != pred.shape[:-1]:
                raise ValueError(f"CrossEntropyLoss: target: expected class indices of shape {pred.shape[:-1]} "
                                 f"for logits of shape {pred.shape}, got {t.shape}")
            if t.size and (t.min() < 0 or t.max() >= C):
                bad = t[(t < 0) | (t >= C)].ravel()[0]
                raise ValueError(f"CrossEntropyLoss: target: expected class indices in [0, {C}), got {int(bad)}")
            return t
        if t.dtype.kind == "f":
            if t.shape != pred.shape and t.shape == pred.shape[:-1]:
                raise ValueError(f"CrossEntropyLoss: target: expected integer class indices of shape {t.shape} "
                                 f"or float class probabilities of the logits' shape {pred.shape}, got floats of "
                                 f"shape {t.shape}: float targets are read as probabilities; for class indices "
                                 f"use target.astype(np.int64)")
            return Loss._check_target(self, pred, t)
        raise ArgumentTypeError(f"CrossEntropyLoss: target: expected integer class indices or float probabilities, "
                                f"got {describe(target)}")

    def forward(self, z, y):
        batched = z.ndim == 2
        z2 = z if batched else z[None, :]
        # float32 logits are worked in float64 here, as torch's CPU kernel accumulates in double:
        # softmax(z) − onehot(y) cancels when the right class is nearly certain
        logp = log_softmax(z2.astype(np.float64))
        if y.dtype.kind == "f":     # a copy: the caller may edit its target before backward
            p = (y if batched else y[None, :]).astype(np.float64)
            per_sample = -(p * logp).sum(axis=1)
        else:
            idx = y if batched else y[None]
            p = np.zeros(z2.shape)
            p[np.arange(len(idx)), idx] = 1.0
            per_sample = -logp[np.arange(len(idx)), idx]
        self.last_softmax, self.last_p, self.last_shape, self.last_dtype = exp(logp), p, z.shape, z.dtype
        self._cache = True
        return per_sample.mean() if self.reduction == "mean" else per_sample.sum()

    def backward(self, dy=1.0):
        """dL/dz = (softmax(z) · Σp − p) / N, which is (softmax(z) − onehot(y)) / N for indices."""
        dy = self._need_forward(dy)
        s, p = self.last_softmax, self.last_p
        g = s * p.sum(axis=1, keepdims=True) - p
        g *= dy / (len(p) if self.reduction == "mean" else 1)
        return g.reshape(self.last_shape).astype(self.last_dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits z with targets y ∈ [0, 1]:
    ℓ = −[y log σ(z) + (1 − y) log(1 − σ(z))] = max(z, 0) − z·y + log(1 + e^(−|z|)),
    the right-hand form being stable for any z. L = mean ℓ (or Σ ℓ).

    Derivative: dℓ/dz = σ(z) − y; dL/dz = (σ(z) − y)/n for the mean.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = validate.choice("BCEWithLogitsLoss", "reduction", reduction, REDUCTIONS)

    def forward(self, z, y):
        # float32 is worked in float64 here, as for CrossEntropyLoss: σ(z) − y cancels when the
        # prediction is nearly right, and a float32 σ one unit in the last place off is then
        # thousands of units off in the difference
        self.last_dtype = z.dtype
        z, y = z.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
        per = np.maximum(z, 0) - z * y + np.log1p(exp(-np.abs(z)))
        self.last_diff = sigmoid(z) - y
        self._cache = True
        return per.mean() if self.reduction == "mean" else per.sum()

    def backward(self, dy=1.0):
        """dL/dz = (σ(z) − y) · (1/n if mean)."""
        dy = self._need_forward(dy)
        g = self.last_diff * (dy / (self.last_diff.size if self.reduction == "mean" else 1))
        return g.astype(self.last_dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
