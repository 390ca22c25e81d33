"""Judging one step: every quantity of handbp's step against torch's, at once.

A step of lockstep yields a few dozen quantities (outputs, loss, gradients, parameters, optimizer
state). ``evaluate_arrays`` concatenates each side's values once and applies the tolerance rule
(``crosscheck.tolerance``) with a few vector operations; a ``Layout``, made once per run and reused
while the quantities repeat, holds what does not change from step to step. Only a mismatch gets a
``Check`` object, for its diagnosis and report.
"""
from dataclasses import dataclass, field

import numpy as np

from .tolerance import elementwise_allowed, float32_allowed, scaled_atol

TINY = 1e-300


@dataclass(slots=True)
class Check:
    """One quantity at one step: handbp's value ``a``, torch's ``b`` (arrays, or None where a side
    has no such value; same dtype as the model), and in float32 mode the float64 twin's ``ref``.
    ``before``: a parameter before the update, for the diagnosis of updates."""

    name: str                   # e.g. "4.weight (Linear)"
    quantity: str               # output, loss, grad_pred, grad_input, grad, param, state.<key>, buffer
    a: object
    b: object
    ref: object = None
    before: object = None
    grad: object = None         # for optimizer state: this step's gradient (to spot a reset buffer)
    previous: object = None     # for a gradient: handbp's gradient of the previous step
    result: dict = field(default=None)

    @property
    def label(self):
        return f"{self.name} {self.quantity}"


class StepResult:
    """What ``evaluate_arrays`` found for one step: per quantity (in order) ``max_abs``, ``norm_rel``
    (max abs error / the largest magnitude of torch's value), ``nonfinite`` (handbp's NaN/Inf
    count) and ``kind_peak`` (the largest magnitude among the step's quantities of its kind), as
    arrays; ``failing``, the indices of the quantities that mismatched, in order; and ``results``,
    for each of those, ``{"max_abs", "norm_rel", "mismatched", "total", "nonfinite"}``."""

    __slots__ = ("max_abs", "norm_rel", "nonfinite", "kind_peak", "failing", "results")

    def __init__(self, n):
        self.max_abs, self.norm_rel, self.kind_peak = np.zeros(n), np.zeros(n), np.zeros(n)
        self.nonfinite = np.zeros(n, dtype=np.int64)
        self.failing, self.results = [], {}

    def fail(self, i, **result):
        self.results[i] = result
        self.failing.append(i)


class Layout:
    """What stays the same from one step to the next of a run: the quantities' keys
    ``(name, quantity)`` in order, their labels, each one's kind (the quantity before any ".": all
    gradients, all outputs, ...) and, for the shapes last seen, sizes and offsets in the flat
    vector. lockstep keeps one per distinct list of keys, so a step pays only for its arithmetic."""

    __slots__ = ("keys", "labels", "kinds", "groups", "shapes", "sizes", "offsets", "dense")

    def __init__(self, keys):
        self.keys = tuple(keys)
        self.labels = [f"{name} {quantity}" for name, quantity in self.keys]
        kinds = {}
        self.kinds = np.array([kinds.setdefault(q.split(".")[0], len(kinds)) for _, q in self.keys], dtype=np.intp)
        self.groups = _groups(self.kinds)
        self.shapes = None

    def fit(self, shapes):
        """Sizes and offsets for these shapes (kept until the shapes change)."""
        if shapes != self.shapes:
            self.shapes = shapes
            self.sizes = np.array([int(np.prod(s)) for s in shapes], dtype=np.intp)
            self.offsets = _offsets(self.sizes)
            self.dense = bool(self.sizes.all())     # no empty quantity (reduceat needs that)
        return self


def _groups(kinds):
    """The order that puts each kind's quantities together, and where each kind starts in it."""
    order = np.argsort(kinds, kind="stable")
    return order, np.flatnonzero(np.diff(kinds[order], prepend=-1))


def _offsets(sizes):
    offsets = np.zeros(len(sizes), dtype=np.intp)
    np.cumsum(sizes[:-1], out=offsets[1:])
    return offsets


def _flat(arrays):
    return np.concatenate(arrays, axis=None, dtype=np.float64)      # axis=None: each one flattened


def evaluate_arrays(layout, A, B, R, tol):
    """Judge every quantity of one step at once: handbp's values ``A``, torch's ``B`` and, in
    float32 mode, the float64 twin's ``R`` (lists in ``layout``'s order; None where a side has no
    such value). One concatenation per side and a few vector operations; a quantity missing on
    one side, or of another shape, fails on its own."""
    n = len(A)
    res = StepResult(n)
    if not n:
        return res
    try:
        shapes = [a.shape for a in A]
        same = shapes == [b.shape for b in B]
    except AttributeError:                       # None on some side
        same = False
    if same and layout.fit(shapes).dense:
        _judge(A, B, R, layout.sizes, layout.offsets, layout.kinds, layout.groups, tol, res, None)
        return res
    where = []
    for i, (a, b) in enumerate(zip(A, B)):
        if a is not None and b is not None and a.shape == b.shape:
            if a.size:
                where.append(i)
        elif a is not None or b is not None:     # one side missing, or shapes differ
            size = int(np.size(b if b is not None else a))
            res.max_abs[i] = res.norm_rel[i] = np.inf
            res.fail(i, max_abs=np.inf, norm_rel=np.inf, mismatched=size, total=size, nonfinite=0)
    if where:
        pick = lambda xs: [xs[i] for i in where]          # noqa: E731
        sizes = np.array([A[i].size for i in where], dtype=np.intp)
        kinds = np.unique(layout.kinds[where], return_inverse=True)[1]      # numbered 0, 1, ... again
        _judge(pick(A), pick(B), None if R is None else pick(R), sizes, _offsets(sizes), kinds, _groups(kinds),
               tol, res, np.array(where))
    res.failing.sort()
    return res


def _kind_peaks(scale, kinds, groups):
    """For each quantity, the largest finite ``scale`` among the quantities of its kind."""
    order, starts = groups
    return np.maximum.reduceat(np.where(np.isfinite(scale), scale, 0.0)[order], starts)[kinds]


def _judge(A, B, R, sizes, offsets, kinds, groups, tol, res, where):
    """The vector part of ``evaluate_arrays``, on non-empty quantities of equal shapes; ``where``
    maps them to their places in ``res`` (None: all of them, in order)."""
    A, B = _flat(A), _flat(B)
    R = _flat(R) if tol.mode == "float32-rule" else None
    peak = np.maximum.reduceat
    nonfinite = None
    with np.errstate(invalid="ignore", over="ignore"):
        d, absb = np.abs(A - B), np.abs(B)
        max_abs, scale = peak(d, offsets), peak(absb, offsets)
        kind_peak = _kind_peaks(scale, kinds, groups)
        # fast path, a sufficient condition: every |a − b| within the quantity's atol alone (float64),
        # or handbp's worst error within the float32 rule's bound; NaN or Inf anywhere fails it
        if R is not None:
            allowed_q = float32_allowed(tol, peak(np.abs(B - R), offsets), peak(np.abs(R), offsets))
            fast = peak(np.abs(A - R), offsets) <= allowed_q
        else:
            atol_q = scaled_atol(tol, scale, kind_peak)
            fast = max_abs <= atol_q
    if fast.all() and np.isfinite(max_abs).all() and np.isfinite(scale).all():
        bad = None
    elif np.isfinite(A).all() and np.isfinite(B).all() and (R is None or np.isfinite(R).all()):
        if R is not None:
            bad = np.abs(A - R) > np.repeat(allowed_q, sizes)
        else:
            bad = d > elementwise_allowed(tol, np.repeat(atol_q, sizes), absb)
    else:
        bad, max_abs, scale, kind_peak = _judge_nonfinite(A, B, R, d, absb, offsets, sizes, kinds, groups, tol)
        nonfinite = np.add.reduceat(~np.isfinite(A), offsets, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_rel = np.where(max_abs == 0, 0.0, max_abs / np.maximum(scale, TINY))
    at = slice(None) if where is None else where
    res.max_abs[at], res.norm_rel[at], res.kind_peak[at] = max_abs, norm_rel, kind_peak
    if nonfinite is not None:
        res.nonfinite[at] = nonfinite
    if bad is not None and bad.any():
        nbad = np.add.reduceat(bad, offsets, dtype=np.int64)
        for k in np.flatnonzero(nbad):
            res.fail(int(k if where is None else where[k]), max_abs=float(max_abs[k]), norm_rel=float(norm_rel[k]),
                     mismatched=int(nbad[k]), total=int(sizes[k]), kind_peak=float(kind_peak[k]),
                     nonfinite=0 if nonfinite is None else int(nonfinite[k]))


def _judge_nonfinite(A, B, R, d, absb, offsets, sizes, kinds, groups, tol):
    """The rule where NaN or Inf appear: equal non-finite values agree; a value non-finite on both
    sides is reported apart (``NonFiniteError``), not as a mismatch. Returns ``(bad, max_abs,
    scale, kind_peak)``."""
    peak = np.maximum.reduceat
    with np.errstate(invalid="ignore", over="ignore"):
        same = (A == B) | (np.isnan(A) & np.isnan(B))
        d = np.where(same, 0.0, d)
        d[np.isnan(d)] = np.inf
        scale = peak(np.where(np.isfinite(absb), absb, 0.0), offsets)
        kind_peak = _kind_peaks(scale, kinds, groups)
        if R is not None:
            e_hb = np.where((A == R) | (np.isnan(A) & np.isnan(R)), 0.0, np.abs(A - R))
            e_t = np.where((B == R) | (np.isnan(B) & np.isnan(R)), 0.0, np.abs(B - R))
            e_t[np.isnan(e_t)] = np.inf
            absr = np.where(np.isfinite(R), np.abs(R), 0.0)
            bad = ~(e_hb <= np.repeat(float32_allowed(tol, peak(e_t, offsets), peak(absr, offsets)), sizes))
        else:
            allowed = elementwise_allowed(tol, np.repeat(scaled_atol(tol, scale, kind_peak), sizes), absb)
            bad = ~(d <= allowed)
        bad &= np.isfinite(A) | np.isfinite(B)       # non-finite on both sides: reported apart
        return bad, peak(d, offsets), scale, kind_peak


def max_rel(check):
    """The largest element-wise relative difference |a − b| / |b|, as ``assert_close`` reports it
    (inf where b is 0 and a is not, or where shapes differ)."""
    a, b = check.a, check.b
    if a is None or b is None or np.shape(a) != np.shape(b):
        return float("inf")
    if np.size(a) == 0:
        return 0.0
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        rel = np.where(same, 0.0, np.abs(a - b) / np.abs(b))
    return float(np.nan_to_num(rel, nan=np.inf).max())
