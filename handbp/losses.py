"""Losses. ``loss(pred, target)`` returns a Python float (with ``reduction="none"``, an array of the
losses of each element) and caches what ``backward()`` needs; ``backward()`` returns dLoss/dpred,
an array of pred's shape."""
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
        value = self.forward(pred, target)
        return value if np.ndim(value) else float(value)      # reduction="none": one loss per element

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


# -- losses with torch's three reductions ---------------------------------------------------
ALL_REDUCTIONS = ("mean", "sum", "none")


class _ReducedLoss(Loss):
    """A loss made of per-element terms ℓ, reduced as torch's ``reduction`` says: ``"mean"`` (Σℓ / n,
    or over the summed class weights where there are weights), ``"sum"`` or ``"none"`` (the array of
    ℓ itself; then ``backward(dy)`` takes dy of ℓ's shape, or a number for all of them).

    A subclass writes ``_terms(pred, target)`` (ℓ, computed along any leading axes, so that a
    stack of predictions gives a stack of losses) and ``_gradient(upstream)`` (dL/dpred, given
    dL/dℓ); ``forward``, the reductions, ``per_row`` and ``backward``'s checks are here."""

    def _init_reduction(self, reduction):
        self.reduction = validate.choice(type(self).__name__, "reduction", reduction, ALL_REDUCTIONS)
        self.last_count = None      # what "mean" divides by
        self.last_shapes = None     # (pred's shape, ℓ's shape)

    def _count(self, pred, target):
        """What "mean" divides Σℓ by: the number of terms (a subclass with weights: their sum)."""
        return pred.size

    def forward(self, pred, target):
        terms = self._terms(pred, target)
        self.last_count = self._count(pred, target)
        self.last_shapes, self.last_dtype = (pred.shape, terms.shape), pred.dtype
        self._cache = True
        if self.reduction == "none":
            return terms.astype(pred.dtype)
        total = terms.sum()
        return total if self.reduction == "sum" else _divide(total, self.last_count)

    def per_row(self, preds, target):
        """The loss of each of R predictions stacked along a new leading axis ``(R, *pred.shape)``,
        with the same formula as ``loss(pred, target)``: a float64 array ``(R,)``."""
        if self.reduction == "none":
            raise ValueError(f"{type(self).__name__}.per_row: reduction='none' has no single loss per row")
        pred = preds[0]
        target = self._check_target(pred, target)
        terms = self._terms(preds, target).astype(np.float64, copy=False)
        total = terms.reshape(len(preds), -1).sum(axis=1)
        return total if self.reduction == "sum" else _divide(total, self._count(pred, target))

    def _upstream(self, dy):
        """dL/dℓ from backward's dy: a number (scaled by 1/n for the mean), or with reduction="none"
        an array of ℓ's shape."""
        if self.reduction == "none" and isinstance(dy, np.ndarray):
            if self._cache is None:
                self._need_forward()
            if dy.shape != self.last_shapes[1] or dy.dtype.kind != "f":
                raise ArgumentTypeError(f"{type(self).__name__}.backward: dy: expected a number or a float array "
                                        f"of the losses' shape {self.last_shapes[1]}, got {describe(dy)}")
            return dy.astype(np.float64)
        dy = self._need_forward(dy)
        return _divide(dy, self.last_count) if self.reduction == "mean" else dy

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _divide(a, b):
    """a / b, NaN (without a warning) where b is 0: torch's mean over no element."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.true_divide(a, b)


class L1Loss(_ReducedLoss):
    """ℓ = |h − y|, L = mean ℓ (or Σ ℓ, or ℓ itself): torch's L1Loss.

    Derivative: dℓ/dh = sign(h − y) (0 where h = y, as torch); dL/dh = sign(h − y) / n for the mean.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self._init_reduction(reduction)
        self.last_diff = None        # h − y, for the derivative

    def _terms(self, h, y):
        self.last_diff = h - y
        return np.abs(self.last_diff)

    def backward(self, dy=1.0):
        """dL/dh = sign(h − y) · dL/dℓ (dL/dℓ = 1/n for the mean)."""
        up = self._upstream(dy)
        return (np.sign(self.last_diff) * up).astype(self.last_diff.dtype, copy=False)


class HuberLoss(_ReducedLoss):
    """ℓ = ½ d² where |d| < δ, else δ (|d| − ½ δ), d = h − y: torch's HuberLoss (quadratic near 0,
    linear beyond δ, and the two meet with the same slope at |d| = δ).

    Derivative: dℓ/dh = d clipped to [−δ, δ].

    Args:
        reduction: "mean" (default), "sum" or "none". delta: δ > 0 (default 1.0).
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__()
        self._init_reduction(reduction)
        self.delta = float(validate.number("HuberLoss", "delta", delta, low=0, low_open=True))
        self.last_diff = None

    def _terms(self, h, y):
        d = self.last_diff = h - y
        a = np.abs(d)
        return np.where(a < self.delta, 0.5 * d * d, self.delta * (a - 0.5 * self.delta))

    def backward(self, dy=1.0):
        """dL/dh = clip(h − y, −δ, δ) · dL/dℓ."""
        up = self._upstream(dy)
        return (np.clip(self.last_diff, -self.delta, self.delta) * up).astype(self.last_diff.dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, delta={self.delta}"


class SmoothL1Loss(_ReducedLoss):
    """ℓ = ½ d² / β where |d| < β, else |d| − ½ β, d = h − y: torch's SmoothL1Loss (HuberLoss / β;
    with β = 0, the L1 loss).

    Derivative: dℓ/dh = d / β clipped to [−1, 1] (sign(d) for β = 0).

    Args:
        reduction: "mean" (default), "sum" or "none". beta: β ≥ 0 (default 1.0).
    """

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__()
        self._init_reduction(reduction)
        self.beta = float(validate.number("SmoothL1Loss", "beta", beta, low=0))
        self.last_diff = None

    def _terms(self, h, y):
        d = self.last_diff = h - y
        a = np.abs(d)
        if self.beta == 0:
            return a
        return np.where(a < self.beta, 0.5 * d * d / self.beta, a - 0.5 * self.beta)

    def backward(self, dy=1.0):
        """dL/dh = clip((h − y) / β, −1, 1) · dL/dℓ (sign(h − y) for β = 0)."""
        up = self._upstream(dy)
        d = self.last_diff
        slope = np.sign(d) if self.beta == 0 else np.clip(d / self.beta, -1, 1)
        return (slope * up).astype(d.dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, beta={self.beta}"


class _ClassLoss(_ReducedLoss):
    """A loss of class scores ``(N, C)`` (or ``(C,)``) against integer class indices, with torch's
    optional per-class ``weight``."""

    spatial = False            # NLLLoss also takes (N, C, d1, …) with targets (N, d1, …)

    def _init_weight(self, weight):
        owner = type(self).__name__
        if weight is None:
            self.weight = None
            return
        w = np.array(weight, dtype=np.float64) if not isinstance(weight, (str, bytes)) else None
        if w is None or w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
            validate.fail(owner, "weight", "None or a 1-D array of finite class weights", weight,
                          ValueError if w is not None else ArgumentTypeError)
        self.weight = w

    def _check_target(self, pred, target):
        owner = type(self).__name__
        rank_ok = pred.ndim in (1, 2) or (self.spatial and pred.ndim > 2)
        if not rank_ok:
            shapes = "(N, C), (C,) or (N, C, d1, …)" if self.spatial else "(N, C) or (C,)"
            raise ValueError(f"{owner}: pred: expected class scores of shape {shapes}, got {pred.shape}")
        C = pred.shape[1] if pred.ndim >= 2 else pred.shape[0]
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            raise ArgumentTypeError(f"{owner}: target: expected integer class indices, got {describe(target)}")
        expected = pred.shape[:1] + pred.shape[2:] if pred.ndim >= 2 else ()
        if t.shape != expected:
            raise ValueError(f"{owner}: target: expected class indices of shape {expected} for pred of shape "
                             f"{pred.shape}, got {t.shape}")
        if self.weight is not None and self.weight.size != C:
            raise ValueError(f"{owner}: weight: expected one weight per class ({C} for pred of shape {pred.shape}), "
                             f"got {self.weight.size}")
        ignored = t == getattr(self, "ignore_index", None)
        bad = ((t < 0) | (t >= C)) & ~ignored
        if bad.any():
            extra = f" or ignore_index={self.ignore_index}" if hasattr(self, "ignore_index") else ""
            raise ValueError(f"{owner}: target: expected class indices in [0, {C}){extra}, got {int(t[bad].ravel()[0])}")
        return t.astype(np.int64, copy=True)

    @staticmethod
    def _onehot(pred, t):
        """True at each target's class: pred's shape, the class axis 1 (0 for one sample ``(C,)``)."""
        axis = 1 if pred.ndim >= 2 else 0
        classes = np.arange(pred.shape[axis]).reshape((-1,) + (1,) * (pred.ndim - axis - 1))
        return np.expand_dims(t, axis) == classes

    def _class_weights(self, t):
        """w[y] for each target (1 without weights; 0 where ignored)."""
        w = np.ones(t.shape) if self.weight is None else self.weight[np.where(t >= 0, t, 0)]
        ignore = getattr(self, "ignore_index", None)
        return np.where(t == ignore, 0.0, w) if ignore is not None else w


class NLLLoss(_ClassLoss):
    """ℓₙ = −w[yₙ] · x[n, yₙ] for log-probabilities x ``(N, C)`` and class indices y: torch's
    NLLLoss. With ``reduction="mean"``, L = Σ ℓₙ / Σ w[yₙ], the weighted mean (a target equal to
    ``ignore_index`` counts for nothing; the mean of nothing is NaN, as in torch).

    On log-softmax outputs this is the cross-entropy; on raw scores it is −(the right class's score).

    Derivative: dL/dx[n, yₙ] = −w[yₙ] / Σ w (mean), −w[yₙ] (sum); 0 at every other class.

    Args:
        weight: None or one weight per class. ignore_index: a target value that is skipped
            (default −100). reduction: "mean" (default), "sum" or "none".

    Shape:
        pred ``(N, C)``, ``(C,)`` or ``(N, C, d1, …)``; target ``(N,)``, ``()`` or ``(N, d1, …)``,
        integers in [0, C) or ignore_index. With "none", the losses have target's shape.
    """

    spatial = True

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        self._init_reduction(reduction)
        self._init_weight(weight)
        self.ignore_index = validate.integer("NLLLoss", "ignore_index", ignore_index)
        self.last_onehot = self.last_w = None      # where each target's class is, and its weight

    def _terms(self, x, t):
        n = t.ndim + 1                                  # the rank of one prediction
        onehot, w = self._onehot(np.empty(x.shape[x.ndim - n:], bool), t), self._class_weights(t)
        self.last_onehot, self.last_w = onehot, w
        class_axis = (1 if n >= 2 else 0) - n          # counted from the end: leading stack axes pass
        return -w * np.where(onehot, x, 0).astype(np.float64).sum(axis=class_axis)

    def _count(self, pred, target):
        return float(self._class_weights(target).sum())

    def backward(self, dy=1.0):
        """dL/dx = −w[y] · dL/dℓ at each target's class, 0 elsewhere."""
        up = self._upstream(dy)
        axis = 1 if self.last_onehot.ndim >= 2 else 0
        with np.errstate(invalid="ignore"):         # every target ignored: 0 · (1/0), NaN as torch's
            g = np.where(self.last_onehot, np.expand_dims(-self.last_w * up, axis), 0.0)
        return g.astype(self.last_dtype, copy=False)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class MultiMarginLoss(_ClassLoss):
    """The multiclass SVM (hinge) loss: ℓₙ = Σ_{i ≠ yₙ} w[yₙ] · max(0, margin − x[n, yₙ] + x[n, i])ᵖ / C,
    torch's MultiMarginLoss (CS231n's SVM loss, divided by C): every wrong class whose score comes
    within ``margin`` of the right one's costs.

    Derivative, for each wrong class i with zᵢ = margin − x[yₙ] + x[i] > 0: g = w[yₙ] · p·zᵢᵖ⁻¹ / C;
    dℓ/dx[i] = g, dℓ/dx[yₙ] = −Σᵢ g (a hinge at exactly 0 passes nothing, as torch).

    Args:
        p: 1 (default) or 2. margin: default 1. weight: None or one weight per class.
        reduction: "mean" (default: over the N samples), "sum" or "none".

    Shape:
        pred ``(N, C)`` or ``(C,)``; target ``(N,)`` or ``()``; with "none", the losses ``(N,)`` or ``()``.
    """

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__()
        owner = "MultiMarginLoss"
        self._init_reduction(reduction)
        self.p = validate.integer(owner, "p", p, low=1, high=2, what="1 or 2")
        self.margin = float(validate.number(owner, "margin", margin))
        self._init_weight(weight)
        self.last_onehot = self.last_z = self.last_w = None

    def _terms(self, x, t):
        n = t.ndim + 1
        onehot, w = self._onehot(np.empty(x.shape[x.ndim - n:], bool), t), self._class_weights(t)
        x = x.astype(np.float64)
        right = np.where(onehot, x, 0).sum(axis=-1, keepdims=True)
        z = np.where(onehot, 0.0, self.margin - right + x)          # the right class itself costs nothing
        self.last_onehot, self.last_z, self.last_w = onehot, z, w
        hinge = np.maximum(z, 0)
        return w * (hinge if self.p == 1 else hinge * hinge).sum(axis=-1) / x.shape[-1]

    def _count(self, pred, target):
        return int(target.size)

    def backward(self, dy=1.0):
        """dℓ/dx[i] = w[y] · p·zᵢᵖ⁻¹ / C where zᵢ > 0 (i ≠ y), dℓ/dx[y] = −Σᵢ of those; times dL/dℓ."""
        up = self._upstream(dy)
        z = self.last_z
        slope = (z > 0) * (1.0 if self.p == 1 else 2 * z)
        g = (slope - self.last_onehot * slope.sum(axis=-1, keepdims=True)) * (self.last_w * up / z.shape[-1])[..., None]
        return g.astype(self.last_dtype, copy=False)

    def extra_repr(self):
        return f"p={self.p}, margin={self.margin}, reduction={self.reduction!r}"
