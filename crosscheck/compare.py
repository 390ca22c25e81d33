"""Comparing handbp's values with torch's: tolerances, the vectorised check of a whole step, the
diagnosis of a mismatch, and the ``Divergence`` report.

Tolerances (``default_tolerance``)
----------------------------------
float64, element-wise as ``torch.testing.assert_close``: ``|h − t| ≤ atol + rtol·|t|`` with
``rtol = 1e-9`` and, unless given, ``atol = 1e-9 · max|t|`` (scaled by the quantity's largest
magnitude, and never below 1e-13 of the largest magnitude of its kind at that step, see
``_scaled_atol``). Why: with the twin re-synchronised every step, the two sides differ only by the rounding
of one step, measured at ~1e-12 relative here (summation order in BLAS vs torch); 1e-9 leaves a
1000× margin against flakiness while any real bug (a wrong factor, a missing term, an ε in the wrong
place) differs by 1e-6 or far more. The atol is scaled because gradients can be tiny (the notebook's
N(0, 0.01) sigmoid net has first-layer gradients ~1e-9): a fixed absolute atol would pass *anything*
there. An ``atol`` given by the caller is absolute, as in ``assert_close``. A quantity that cancels
(terms of 1e6 summing to 4e-7) can differ by more than this between two correct implementations;
lockstep rechecks such a mismatch on the module alone before reporting it (``crosscheck.lockstep``).

float32: a fixed tolerance is either too loose or flaky (deep or saturated nets differ by ~1e-2 even
between two correct float32 implementations). So float32 is judged against a float64 torch twin run
from the same float32 state: handbp's error must not exceed ``factor`` (4) × torch float32's own
error on that quantity, plus a floor of ``floor`` (64) float32 epsilons (7.6e-6) × the quantity's
largest magnitude: "as accurate as torch". The floor covers quantities where torch's own float32
error happens to be tiny: over the ~42,000 float32 quantities of the project's lockstep matrix,
handbp's error exceeded 4 × torch's by at most 2.6e-6 of the largest magnitude, while a backward
that is 1% off exceeds it by 1e-2. Passing ``rtol``/``atol`` for a float32 model switches back to a
plain element-wise comparison with torch float32 (assert_close's anchors: 1.3e-6 / 1e-5).
"""
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

TINY = 1e-300
EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Tolerance:
    """How two values are judged equal. ``mode`` is ``"elementwise"`` or ``"float32-rule"``."""

    mode: str
    rtol: float = 0.0
    atol: object = None         # None: scaled (rtol × the quantity's largest magnitude)
    factor: float = 4.0
    floor: float = 64 * EPS32

    def describe(self):
        if self.mode == "float32-rule":
            return (f"float32 rule: handbp's error vs a float64 twin ≤ {self.factor:g} × torch float32's own "
                    f"error + {self.floor:.2g} × max|value|")
        atol = f"{self.rtol:g} × max|torch|" if self.atol is None else f"{self.atol:g}"
        return f"rtol {self.rtol:g}, atol {atol}"

    def to_dict(self):
        return {"mode": self.mode, "rtol": float(self.rtol), "atol": None if self.atol is None else float(self.atol),
                "factor": float(self.factor), "floor": float(self.floor)}


def _check_tolerance(name, v):
    """``v`` as a float: None, or a finite real number ≥ 0 (Python or NumPy; not a bool or a string)."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a finite number ≥ 0 or None, got {type(v).__name__} {v!r}")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite number ≥ 0 or None, got {v!r}")
    return float(v)


def default_tolerance(dtype, rtol=None, atol=None):
    """The tolerance for a model of ``dtype``; see the module docstring for the reasoning."""
    dtype = np.dtype(dtype)
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    if dtype == np.float32 and rtol is None and atol is None:
        return Tolerance("float32-rule")
    if dtype == np.float32:
        return Tolerance("elementwise", 1.3e-6 if rtol is None else rtol, 1e-5 if atol is None else atol)
    return Tolerance("elementwise", 1e-9 if rtol is None else rtol, atol)


@dataclass(slots=True)
class Check:
    """One quantity at one step: handbp's value ``a``, torch's ``b`` (arrays, or None where a side
    has no such value; same dtype as the model),
    and in float32 mode the float64 twin's ``ref``. ``before``: a parameter before the update, for
    the diagnosis of updates."""

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


def _flat(arrays):
    return np.concatenate(arrays, axis=None, dtype=np.float64)      # axis=None: each one flattened


class StepResult:
    """What ``evaluate_arrays`` found for one step: per quantity (in order) ``max_abs``, ``norm_rel``
    (max abs error / the largest magnitude of torch's value) and ``nonfinite`` (handbp's NaN/Inf
    count), as arrays; ``failing``, the indices of the quantities that mismatched, in order; and
    ``results``, for each of those, ``{"max_abs", "norm_rel", "mismatched", "total", "nonfinite"}``."""

    __slots__ = ("max_abs", "norm_rel", "nonfinite", "failing", "results")

    def __init__(self, n):
        self.max_abs, self.norm_rel = np.zeros(n), np.zeros(n)
        self.nonfinite = np.zeros(n, dtype=np.int64)
        self.failing, self.results = [], {}


class Layout:
    """What stays the same from one step to the next of a run: the quantities' keys
    ``(name, quantity)`` in order, their labels, each one's kind (the quantity before any ".": all
    gradients, all outputs, ...) and, for the shapes last seen, sizes and offsets in the flat
    vector. lockstep keeps one per distinct list of keys, so a step pays only for its arithmetic."""

    __slots__ = ("keys", "labels", "kinds", "order", "starts", "shapes", "sizes", "offsets", "dense")

    def __init__(self, keys):
        self.keys = tuple(keys)
        self.labels = [f"{name} {quantity}" for name, quantity in self.keys]
        kinds = {}
        self.kinds = np.array([kinds.setdefault(q.split(".")[0], len(kinds)) for _, q in self.keys], dtype=np.intp)
        self.order, self.starts = _groups(self.kinds)
        self.shapes = None

    def fit(self, shapes):
        """Sizes and offsets for these shapes (kept until the shapes change)."""
        if shapes != self.shapes:
            self.shapes = shapes
            self.sizes = np.array([int(np.prod(s)) for s in shapes], dtype=np.intp)
            self.offsets = np.zeros(len(shapes), dtype=np.intp)
            np.cumsum(self.sizes[:-1], out=self.offsets[1:])
            self.dense = bool(self.sizes.all())     # no empty quantity (reduceat needs that)
        return self


def _groups(kinds):
    """The order that puts each kind's quantities together, and where each kind starts in it."""
    order = np.argsort(kinds, kind="stable")
    return order, np.flatnonzero(np.diff(kinds[order], prepend=-1))


def evaluate_arrays(layout, A, B, R, tol):
    """Judge every quantity of one step at once: handbp's values ``A``, torch's ``B`` and, in
    float32 mode, the float64 twin's ``R`` (lists in ``layout``'s order; None where a side has no
    such value). One concatenation per side and a few vector operations; a quantity missing on
    one side, or of another shape, fails on its own."""
    n = len(A)
    if not n:
        return StepResult(0)
    try:
        shapes = [a.shape for a in A]
        same = shapes == [b.shape for b in B]
    except AttributeError:                       # None on some side
        same = False
    if same and layout.fit(shapes).dense:
        res = StepResult(n)
        _judge(A, B, R, layout.sizes, layout.offsets, layout.kinds, (layout.order, layout.starts), tol, res, None)
        return res
    res = StepResult(n)
    where, odd = [], []
    for i, (a, b) in enumerate(zip(A, B)):
        if a is not None and b is not None and a.shape == b.shape:
            if a.size:
                where.append(i)
        elif a is not None or b is not None:     # one side missing, or shapes differ
            size = int(np.size(b if b is not None else a))
            res.results[i] = dict(max_abs=np.inf, norm_rel=np.inf, mismatched=size, total=size, nonfinite=0)
            res.max_abs[i] = res.norm_rel[i] = np.inf
            odd.append(i)
    if where:
        pick = lambda xs: [xs[i] for i in where]          # noqa: E731
        sizes = np.array([A[i].size for i in where], dtype=np.intp)
        offsets = np.zeros(len(where), dtype=np.intp)
        np.cumsum(sizes[:-1], out=offsets[1:])
        kinds = np.unique(layout.kinds[where], return_inverse=True)[1]      # numbered 0, 1, ... again
        _judge(pick(A), pick(B), None if R is None else pick(R), sizes, offsets, kinds, _groups(kinds), tol, res,
               np.array(where))
    res.failing = sorted(res.failing + odd)
    return res


NOISE = 1e-13   # below this fraction of the largest value of its kind, a difference is rounding noise


def _scaled_atol(scale, kinds, groups, tol):
    """The default atol: rtol × the quantity's largest magnitude, and at least ``NOISE`` × the
    largest magnitude among quantities of its kind (all gradients, all outputs, ...) at this step.

    The floor matters for a quantity that is exactly zero in exact arithmetic and so is pure
    rounding noise on both sides (the gradient of a bias feeding a BatchNorm, which removes any
    shift): relative to itself that noise is 100%, relative to the step's other gradients it is
    ~1e-16. ``kinds`` numbers the kinds 0, 1, ...; ``groups`` is ``_groups(kinds)``."""
    order, starts = groups
    peak = np.maximum.reduceat(np.where(np.isfinite(scale), scale, 0.0)[order], starts)
    return np.maximum(tol.rtol * scale, NOISE * peak[kinds])


def _judge(A, B, R, sizes, offsets, kinds, groups, tol, res, where):
    """The vector part of ``evaluate_arrays``, on non-empty quantities of equal shapes; ``where``
    maps them to their places in ``res`` (None: all of them, in order)."""
    A, B = _flat(A), _flat(B)
    R = _flat(R) if tol.mode == "float32-rule" else None
    peak = np.maximum.reduceat
    nonfinite = None
    # fast path, a sufficient condition: every |a − b| within the quantity's atol alone (float64),
    # or handbp's worst error within the float32 rule's bound; NaN or Inf anywhere fails it
    with np.errstate(invalid="ignore", over="ignore"):
        d, absb = np.abs(A - B), np.abs(B)
        max_abs, scale = peak(d, offsets), peak(absb, offsets)
        if R is not None:
            thr_q = tol.factor * peak(np.abs(B - R), offsets) + tol.floor * peak(np.abs(R), offsets)
            fast = peak(np.abs(A - R), offsets) <= thr_q
        else:
            atol_q = _scaled_atol(scale, kinds, groups, tol) if tol.atol is None else np.full(len(sizes), tol.atol)
            fast = max_abs <= atol_q
    if fast.all() and np.isfinite(max_abs).all() and np.isfinite(scale).all():
        bad = None
    elif np.isfinite(A).all() and np.isfinite(B).all() and (R is None or np.isfinite(R).all()):
        if R is not None:
            bad = np.abs(A - R) > np.repeat(thr_q, sizes)
        else:
            bad = d > np.repeat(atol_q, sizes) + tol.rtol * absb
    else:                                        # NaN/Inf somewhere: equal non-finite values agree
        with np.errstate(invalid="ignore", over="ignore"):
            same = (A == B) | (np.isnan(A) & np.isnan(B))
            d = np.where(same, 0.0, d)
            d[np.isnan(d)] = np.inf
            scale = peak(np.where(np.isfinite(absb), absb, 0.0), offsets)
            if R is not None:
                e_hb = np.where((A == R) | (np.isnan(A) & np.isnan(R)), 0.0, np.abs(A - R))
                e_t = np.where((B == R) | (np.isnan(B) & np.isnan(R)), 0.0, np.abs(B - R))
                e_t[np.isnan(e_t)] = np.inf
                absr = np.where(np.isfinite(R), np.abs(R), 0.0)
                thr_q = tol.factor * peak(e_t, offsets) + tol.floor * peak(absr, offsets)
                bad = ~(e_hb <= np.repeat(thr_q, sizes))
            else:
                atol_q = _scaled_atol(scale, kinds, groups, tol) if tol.atol is None else np.full(len(sizes), tol.atol)
                bad = ~(d <= np.repeat(atol_q, sizes) + tol.rtol * absb)
            bad &= np.isfinite(A) | np.isfinite(B)       # non-finite on both sides: reported apart
            max_abs = peak(d, offsets)
        nonfinite = np.add.reduceat(~np.isfinite(A), offsets, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_rel = np.where(max_abs == 0, 0.0, max_abs / np.maximum(scale, TINY))
    if where is None:
        res.max_abs, res.norm_rel = max_abs, norm_rel
        if nonfinite is not None:
            res.nonfinite = nonfinite
    else:
        res.max_abs[where], res.norm_rel[where] = max_abs, norm_rel
        if nonfinite is not None:
            res.nonfinite[where] = nonfinite
    if bad is not None and bad.any():
        nbad = np.add.reduceat(bad, offsets, dtype=np.int64)
        for k in np.flatnonzero(nbad):
            i = int(k if where is None else where[k])
            res.results[i] = dict(max_abs=float(max_abs[k]), norm_rel=float(norm_rel[k]), mismatched=int(nbad[k]),
                                  total=int(sizes[k]), nonfinite=0 if nonfinite is None else int(nonfinite[k]))
            res.failing.append(i)


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


# -- diagnosis ------------------------------------------------------------------------------
def _fraction_text(k):
    """'2', '1/32', or '' when k is no simple integer ratio."""
    for value, text in ((k, None), (1 / k if k else 0, "1/")):
        n = round(value)
        if n >= 2 and abs(value - n) <= 1e-6 * n:
            return f"{text or ''}{n}", n
    f = Fraction(k).limit_denominator(16)
    if abs(float(f) - k) <= 1e-9 * abs(k) and f.denominator > 1:
        return f"{f.numerator}/{f.denominator}", None
    return "", None


def _name_size(n, context):
    names = [what for what, size in (context or {}).items() if size == n]
    return f" ({n} = {' = '.join(names)})" if names else ""


def diagnose(check, context=None, ratio_tol=1e-6):
    """Name the pattern of a mismatch, where one fits. Returns ``(hint, text, factor)``:
    hint is one of ``transpose``, ``shape``, ``missing``, ``nonfinite``, ``accumulated``, ``reset``,
    ``never_updated``, ``local_derivative``, ``forward``, ``param_grad``,
    ``weight_decay``, ``zero``, ``sign``, ``factor`` or ``None``; factor is handbp/torch for
    ``factor`` and ``sign``, the coefficient for ``weight_decay``.

    ``context`` maps size names to sizes ({"the batch size": 8, ...}) so a factor that equals one
    of them is named.
    """
    a, b = check.a, check.b
    if a is None and b is not None:
        if check.quantity == "grad":
            return "zero", "handbp's .grad is None where torch's is not: this parameter never received a gradient", None
        return "missing", f"handbp has no {check.quantity} where torch has one", None
    if b is None:
        return "missing", f"torch has no {check.quantity} where handbp has one (an extra state entry?)", None
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        if a.ndim >= 2 and a.shape == b.shape[::-1]:
            return "transpose", (f"handbp's shape {a.shape} is the transpose of torch's {b.shape}: a missing or "
                                 "extra transpose (torch's layout: weight is (out_features, in_features))"), None
        if a.ndim == b.ndim + 1 and a.shape[1:] == b.shape:
            return "shape", (f"handbp's shape {a.shape} has an extra leading dimension of "
                             f"{a.shape[0]}{_name_size(a.shape[0], context)} over torch's {b.shape}: "
                             "a sum over the batch is missing"), None
        return "shape", f"handbp's shape {a.shape} differs from torch's {b.shape}", None
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not fa.all() and fb[~fa].any():
        idx = tuple(int(i) for i in np.argwhere(~fa & fb)[0])
        kind = "NaN" if np.isnan(a[idx]) else "Inf"
        return "nonfinite", (f"{kind} appears in handbp at index {idx} where torch's value is finite "
                             f"({int((~fa & fb).sum())} such elements): an overflow, 0/0 or log(0) in "
                             "handbp's computation"), None
    if not fb.all() and fa[~fb].any():
        idx = tuple(int(i) for i in np.argwhere(fa & ~fb)[0])
        return "nonfinite", (f"torch's value is not finite at index {idx} where handbp's is "
                             f"({int((fa & ~fb).sum())} such elements)"), None
    what = "it"
    if check.previous is not None and check.quantity == "grad":
        prev = np.asarray(check.previous, dtype=np.float64)
        if prev.shape == a.shape and prev.any() and np.allclose(a - b, prev, rtol=1e-6, atol=1e-12 * np.abs(b).max()):
            return "accumulated", ("handbp's gradient = torch's + the previous step's gradient: gradients were "
                                   "not cleared between steps (zero_grad)"), None
    if check.grad is not None and check.quantity.startswith("state."):
        g = np.asarray(check.grad, dtype=np.float64)
        if g.shape == a.shape and np.allclose(a, g, rtol=1e-12, atol=0) and not np.allclose(b, g, rtol=1e-6, atol=0):
            return "reset", (f"handbp's {check.quantity[6:]} equals this step's gradient while torch's does not: "
                             "the buffer is started afresh each step instead of being carried over"), None
    if check.before is not None:
        before = np.asarray(check.before, dtype=np.float64)
        if np.array_equal(a, before) and not np.array_equal(b, before):
            return "never_updated", ("handbp's parameter did not change in this step while torch's did: it was "
                                     "never updated (is the update written to the parameter itself? a dw/dW typo "
                                     "does exactly this)"), None
        nz = np.abs(before) > 1e-3 * np.abs(before).max() if before.any() else np.zeros(before.shape, bool)
        if nz.sum() >= 2:
            r = (a - b)[nz] / before[nz]
            c = float(np.median(r))
            small = (a - b)[~nz]       # elements of tiny |before|: c × before there too, to rounding
            if c != 0 and np.all(np.abs(r - c) <= 1e-6 * abs(c)) and np.allclose(
                    small, c * before[~nz], rtol=1e-3, atol=1e-9 * np.abs(a - b).max()):
                return "weight_decay", (f"handbp's parameter after the step differs from torch's by {c:.6g} × the "
                                        "parameter itself: a weight-decay term applied twice, not at all, or "
                                        "with the wrong coefficient"), c
        a, b, what = a - before, b - before, "the update"
    if not a.any() and b.any():
        if check.quantity == "grad_input":
            return "zero", ("handbp's module returns an all-zero input gradient where torch's is not: the modules "
                            "below it receive nothing (a dropped or overwritten return value)"), None
        if check.quantity in ("grad", "grad_pred"):
            return "zero", ("handbp is zero everywhere torch is not: this never received a gradient "
                            "(the backward does not reach it, or writes it elsewhere)"), None
        return "zero", f"handbp's {what} is zero everywhere torch's is not", None
    big = np.abs(b) > 1e-3 * np.abs(b).max() if b.any() else np.zeros(b.shape, bool)
    if big.any() and np.all(a[~big] * 0 == 0):
        r = a[big] / b[big]
        k = float(np.median(r))
        if k != 0 and np.all(np.abs(r - k) <= ratio_tol * abs(k)) and abs(k - 1) > ratio_tol:
            if abs(k + 1) <= ratio_tol:
                return "sign", ("handbp = −torch: the sign is flipped (ratio −1)" if what == "it" else
                                 f"handbp = −torch for {what}: the sign is flipped (ratio −1)"), -1.0
            text, n = _fraction_text(abs(k))
            sign = "−" if k < 0 else ""
            shown = f"{k:.6g}" + (f" (= {sign}{text})" if text and text != f"{abs(k):.6g}" else "")
            named = _name_size(n, context) if n else ""
            if abs(k) > 1:
                cause = f"an extra factor of {sign}{text or f'{abs(k):.6g}'}{named} (or a missing division)"
            else:
                inv = _fraction_text(1 / abs(k))[0] or f"{1 / abs(k):.6g}"
                cause = f"a missing factor of {sign}{inv}{named} (or an extra division)"
            of = "" if what == "it" else f" for {what}"
            return "factor", f"handbp = {shown} × torch{of}, everywhere: {cause}", k
    # no pattern in the values; but the checks run in causal order, so everything upstream matched
    if check.quantity == "grad_input":
        return "local_derivative", ("the gradient arriving at this module matched torch's, the one it returns does "
                                    "not, by a factor that varies element to element: this module's own backward is "
                                    "wrong (a local derivative taken at the wrong point, e.g. on the pre-activation "
                                    "or an overwritten cache, or a wrong Jacobian)"), None
    if check.quantity == "output":
        return "forward", ("this module's input matched torch's, its output does not: its forward is wrong"), None
    if check.quantity == "grad":
        return "param_grad", ("the gradient arriving at this module matched torch's, this parameter's gradient does "
                              "not: the module's formula for it is wrong"), None
    return None, "no simple pattern (not a constant factor, sign flip, transpose, zero or NaN)", None


# -- the report -----------------------------------------------------------------------------
def _fmt(v):
    return "None" if v is None else f"{v:.10g}"


class Divergence(AssertionError):
    """handbp and torch disagree: the first mismatch of a lockstep run.

    ``str(exc)`` is the report. The attributes hold plain Python values (safe to serialise, e.g.
    across pytest-xdist workers): ``step``, ``name``, ``quantity``, ``shape``, ``index``,
    ``handbp_value``, ``torch_value``, ``max_abs``, ``max_rel``, ``tolerance`` (dict),
    ``hint``, ``diagnosis``, ``factor``, ``mismatched``, ``total``, ``others`` (list of str).
    """

    def __init__(self, step, check, tol, context=None, others=(), ratio_tol=1e-6, mismatched_quantities=None):
        self.step = int(step)
        # every kind of quantity that mismatched at this step (the first one included), for grading
        self.mismatched_quantities = list(mismatched_quantities or [check.quantity])
        self.name, self.quantity = check.name, check.quantity
        self.tolerance = tol.to_dict()
        self._tol_text = tol.describe()
        self.hint, self.diagnosis, factor = diagnose(check, context, ratio_tol)
        self.factor = None if factor is None else float(factor)
        a = None if check.a is None else np.asarray(check.a)
        b = None if check.b is None else np.asarray(check.b)
        self.shape = tuple(int(s) for s in (b.shape if b is not None else a.shape))
        self.handbp_shape = None if a is None else tuple(int(s) for s in a.shape)
        self.index = self.handbp_value = self.torch_value = self.reference_value = None
        if a is not None and b is not None and a.shape == b.shape and a.size:
            with np.errstate(invalid="ignore"):
                d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            d = np.where(same, 0.0, np.nan_to_num(d, nan=np.inf))
            flat = int(np.argmax(d))
            idx = np.unravel_index(flat, a.shape)
            self.index = tuple(int(i) for i in idx)
            self.handbp_value, self.torch_value = float(a[idx]), float(b[idx])
            if check.ref is not None:
                self.reference_value = float(np.asarray(check.ref)[idx])
        r = check.result or {}
        self.max_abs = float(r.get("max_abs", float("inf")))
        self.max_rel = max_rel(check)
        self.mismatched, self.total = int(r.get("mismatched", 0)), int(r.get("total", 0))
        self.others = list(others)
        super().__init__(self.report())

    def report(self):
        lines = [f"handbp and torch diverge at step {self.step}",
                 f"  where:      {self.name}",
                 f"  quantity:   {self.quantity}",
                 f"  shape:      {self.shape}" + (f" (handbp: {self.handbp_shape})"
                                                   if self.handbp_shape not in (None, self.shape) else "")]
        if self.index is not None:
            ref = f", float64 reference {_fmt(self.reference_value)}" if self.reference_value is not None else ""
            lines.append(f"  worst:      index {self.index}: handbp {_fmt(self.handbp_value)}, "
                         f"torch {_fmt(self.torch_value)}{ref}")
        lines.append(f"  error:      max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g} "
                     f"(tolerance: {self._tol_text})")
        lines.append(f"  diagnosis:  {self.diagnosis}")
        if self.total:
            lines.append(f"  mismatched elements: {self.mismatched} / {self.total} "
                         f"({self.mismatched / self.total:.1%})")
        if self.others:
            lines.append(f"  also mismatched at step {self.step} ({len(self.others)}):")
            lines += [f"    - {o}" for o in self.others]
        return "\n".join(lines)

    def to_dict(self):
        """Every field as plain Python types."""
        keys = ("step", "name", "quantity", "shape", "index", "handbp_value", "torch_value", "reference_value",
                "max_abs", "max_rel", "tolerance", "hint", "diagnosis", "factor", "mismatched", "total", "others",
                "mismatched_quantities")
        return {k: getattr(self, k) for k in keys}

    def __reduce__(self):
        # rebuildable from its report alone (pickling across processes keeps the text)
        return (AssertionError, (self.report(),))
