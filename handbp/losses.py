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

    def per_row(self, preds, target):
        """The loss of each of R predictions stacked along a new first axis, as a float64 array
        (R,): ``[loss(p, target) for p in preds]``, the loss's own formula. handbp's losses write
        their formula once, for ``forward`` and ``per_row`` alike, and reduce it over each row in
        one call; this default runs ``forward`` row by row (it overwrites the cache, as a call
        does). Numerical differentiation uses it on stacks of perturbed predictions."""
        preds, target = self._check_rows(preds, target)
        return np.array([float(self.forward(p, target)) for p in preds], dtype=np.float64)

    def _check_rows(self, preds, target):
        """``preds`` (R, *pred's shape) and the target as one prediction's ``__call__`` checks it."""
        preds = as_float_array(preds, "preds")
        if preds.ndim == 0 or preds[0].size == 0:
            raise ValueError(f"{type(self).__name__}: preds: expected predictions stacked along a new first axis, "
                             f"each with at least one element, got shape {preds.shape}")
        return preds, self._check_target(preds[0], target)


def _rows(a):
    """The axes of one row of a stack (every axis but the first), for reducing per row."""
    return tuple(range(1, a.ndim))


def _reduce(values, reduction, axis):
    """mean or sum of ``values`` over ``axis`` (None: all of them)."""
    return values.mean(axis=axis) if reduction == "mean" else values.sum(axis=axis)


class MeanSquaredError(Loss):
    """The notebook's loss: L = ½ · mean((h − y)²), the mean over every element.

    Derivative: dL/dh = (h − y) / n, n the number of elements. The notebook returned h − y and
    so dropped the 1/n; the ½ is there so that the 2 from the square cancels.
    """

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return self.value(self.last_diff)

    def per_row(self, preds, target):
        preds, y = self._check_rows(preds, target)
        return self.value(preds - y, axis=_rows(preds)).astype(np.float64)

    @staticmethod
    def value(diff, axis=None):
        """L = ½ · mean((h − y)²) from diff = h − y, the mean over ``axis`` (all elements: None)."""
        return 0.5 * np.square(diff).mean(axis=axis)

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
        return self.value(self.last_diff)

    def per_row(self, preds, target):
        preds, y = self._check_rows(preds, target)
        return self.value(preds - y, axis=_rows(preds)).astype(np.float64)

    def value(self, diff, axis=None):
        """L = mean((h − y)²) or Σ(h − y)² from diff = h − y, over ``axis`` (all elements: None)."""
        return _reduce(np.square(diff), self.reduction, axis)

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
        z2, y2 = (z, y) if batched else (z[None, :], y[None])
        # float32 logits are worked in float64 here, as torch's CPU kernel accumulates in double:
        # softmax(z) − onehot(y) cancels when the right class is nearly certain
        logp = log_softmax(z2.astype(np.float64))
        if y.dtype.kind == "f":     # a copy: the caller may edit its target before backward
            p = y2.astype(np.float64)
        else:
            p = np.zeros(z2.shape)
            p[np.arange(len(y2)), y2] = 1.0
        self.last_softmax, self.last_p, self.last_shape, self.last_dtype = exp(logp), p, z.shape, z.dtype
        self._cache = True
        return self.value(logp, y2)

    def per_row(self, preds, target):
        preds, y = self._check_rows(preds, target)
        batched = preds.ndim == 3
        logp = log_softmax(preds.astype(np.float64) if batched else preds[:, None, :].astype(np.float64))
        return self.value(logp, y if batched else y[None])

    def value(self, logp, y):
        """L = mean (or Σ) over the samples of ℓₙ = −log softmax(zₙ)[yₙ] (−Σ_c pₙ_c log softmax(zₙ)_c
        for probabilities), from logp = log softmax(z) of shape (..., N, C) and y (N,) or (N, C)."""
        if y.dtype.kind == "f":
            per_sample = -(y * logp).sum(axis=-1)
        else:
            per_sample = -logp[..., np.arange(len(y)), y]
        return _reduce(per_sample, self.reduction, -1)

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
        self.last_diff = sigmoid(z) - y
        self._cache = True
        return self.value(z, y)

    def per_row(self, preds, target):
        preds, y = self._check_rows(preds, target)
        return self.value(preds.astype(np.float64, copy=False), y.astype(np.float64, copy=False), axis=_rows(preds))

    def value(self, z, y, axis=None):
        """L = mean (or Σ) of ℓ = max(z, 0) − z·y + log(1 + e^(−|z|)) over ``axis`` (all: None)."""
        return _reduce(np.maximum(z, 0) - z * y + np.log1p(exp(-np.abs(z))), self.reduction, axis)

    def backward(self, dy=1.0):
        """dL/dz = (σ(z) − y) · (1/n if mean)."""
        dy = self._need_forward(dy)
        g = self.last_diff * (dy / (self.last_diff.size if self.reduction == "mean" else 1))
        return g.astype(self.last_dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
