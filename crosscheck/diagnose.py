"""Naming the pattern of a mismatch: a constant factor, a flipped sign, a transpose, a sum over the
batch missing, a gradient that never arrived, a buffer restarted, ...

``diagnose(check)`` tries each pattern in turn, from the most specific; each one is a small
function that returns ``(hint, text, factor)`` when it fits and None otherwise. The hints are a
fixed vocabulary (``HINTS``) that reports, graders and the bug zoo rely on.
"""
from fractions import Fraction

import numpy as np

HINTS = ("transpose", "shape", "missing", "nonfinite", "accumulated", "reset", "never_updated", "weight_decay",
         "zero", "sign", "factor", "local_derivative", "forward", "param_grad", "through_time")
HINTS += ("padding", "flipped_kernel", "unrouted", "stride")          # the convolutional layers' bugs


def _fraction_text(k):
    """'2', '1/32', or '' when k is no simple integer ratio; and the integer, if it is one."""
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


def _missing(check, a, b, context):
    if a is None and b is not None:
        if check.quantity == "grad":
            return "zero", "handbp's .grad is None where torch's is not: this parameter never received a gradient", None
        return "missing", f"handbp has no {check.quantity} where torch has one", None
    if b is None:
        return "missing", f"torch has no {check.quantity} where handbp has one (an extra state entry?)", None
    return None


def _shape(check, a, b, context):
    if a.shape == b.shape:
        return None
    if a.ndim >= 2 and a.shape == b.shape[::-1]:
        return "transpose", (f"handbp's shape {a.shape} is the transpose of torch's {b.shape}: a missing or "
                             "extra transpose (torch's layout: weight is (out_features, in_features))"), None
    if a.ndim == b.ndim + 1 and a.shape[1:] == b.shape:
        return "shape", (f"handbp's shape {a.shape} has an extra leading dimension of "
                         f"{a.shape[0]}{_name_size(a.shape[0], context)} over torch's {b.shape}: "
                         "a sum over the batch is missing"), None
    return "shape", f"handbp's shape {a.shape} differs from torch's {b.shape}", None


def _nonfinite(check, a, b, context):
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
    return None


def _accumulated(check, a, b, context):
    if check.previous is None or check.quantity != "grad":
        return None
    prev = np.asarray(check.previous, dtype=np.float64)
    if prev.shape == a.shape and prev.any() and np.allclose(a - b, prev, rtol=1e-6, atol=1e-12 * np.abs(b).max()):
        return "accumulated", ("handbp's gradient = torch's + the previous step's gradient: gradients were "
                               "not cleared between steps (zero_grad)"), None
    return None


def _reset(check, a, b, context):
    if check.grad is None or not check.quantity.startswith("state."):
        return None
    g = np.asarray(check.grad, dtype=np.float64)
    if g.shape == a.shape and np.allclose(a, g, rtol=1e-12, atol=0) and not np.allclose(b, g, rtol=1e-6, atol=0):
        return "reset", (f"handbp's {check.quantity[6:]} equals this step's gradient while torch's does not: "
                         "the buffer is started afresh each step instead of being carried over"), None
    return None


def _update(check, a, b, before):
    """Patterns of a parameter after its update: never updated, or off by c × itself (weight decay)."""
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
    return None


def _square_transpose(a, b, what):
    """handbp = torchᵀ for a square matrix: the shapes agree, so ``_shape`` cannot see it."""
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2 or not b.any():
        return None
    if np.allclose(a, b.T, rtol=1e-6, atol=1e-12 * np.abs(b).max()):
        of = "" if what == "it" else f" for {what}"
        return "transpose", (f"handbp = torchᵀ{of}: a {a.shape[0]} × {a.shape[1]} matrix, so the shapes agree but "
                             "the values are transposed: a missing or extra transpose (torch's layout: weight is "
                             "(out_features, in_features))"), None
    return None


def _zero(check, a, b, what):
    if a.any() or not b.any():
        return None
    if check.quantity.split(".")[0] == "grad_input":
        return "zero", ("handbp's module returns an all-zero input gradient where torch's is not: the modules "
                        "below it receive nothing (a dropped or overwritten return value)"), None
    if check.quantity in ("grad", "grad_pred"):
        return "zero", ("handbp is zero everywhere torch is not: this never received a gradient "
                        "(the backward does not reach it, or writes it elsewhere)"), None
    what = "value" if what == "it" else what
    return "zero", f"handbp's {what} is zero everywhere torch's is not", None


def _factor(a, b, what, context, ratio_tol):
    """handbp = k × torch everywhere (k = −1: a flipped sign)."""
    big = np.abs(b) > 1e-3 * np.abs(b).max() if b.any() else np.zeros(b.shape, bool)
    if not big.any() or not np.all(a[~big] * 0 == 0):
        return None
    r = a[big] / b[big]
    k = float(np.median(r))
    if k == 0 or not np.all(np.abs(r - k) <= ratio_tol * abs(k)) or abs(k - 1) <= ratio_tol:
        return None
    of = "" if what == "it" else f" for {what}"
    if abs(k + 1) <= ratio_tol:
        return "sign", f"handbp = −torch{of}: the sign is flipped (ratio −1)", -1.0
    text, n = _fraction_text(abs(k))
    sign = "−" if k < 0 else ""
    shown = f"{k:.6g}" + (f" (= {sign}{text})" if text and text != f"{abs(k):.6g}" else "")
    named = _name_size(n, context) if n else ""
    if abs(k) > 1:
        cause = f"an extra factor of {sign}{text or f'{abs(k):.6g}'}{named} (or a missing division)"
    else:
        inv = _fraction_text(1 / abs(k))[0] or f"{1 / abs(k):.6g}"
        cause = f"a missing factor of {sign}{inv}{named} (or an extra division)"
    return "factor", f"handbp = {shown} × torch{of}, everywhere: {cause}", k


def _through_time(check, a, b, context):
    """A recurrent layer's input gradient right at the last steps of the sequence and wrong at every
    step before them: the gradient carried back from step t + 1 to step t is lost on the way. The
    time axis is the first (time-major, or one sequence) or the second (batch_first)."""
    if check.quantity.split(".")[0] != "grad_input" or a.ndim < 2:
        return None
    rel = 1e-6 if np.asarray(check.a).dtype == np.float64 else 1e-3
    for axis in range(min(a.ndim - 1, 2)):
        n = a.shape[axis]
        if n < 3:
            continue
        A, B = (np.moveaxis(v, axis, 0).reshape(n, -1) for v in (a, b))
        close = np.all(np.abs(A - B) <= rel * np.abs(B).max(axis=1, keepdims=True), axis=1)
        k = n - int(np.flatnonzero(~close)[-1]) - 1 if not close.all() else n
        if 0 < k < n and not close[:n - k].any():
            return "through_time", (f"handbp's input gradient matches torch's at the last {k} of {n} steps (axis "
                                    f"{axis}) and at none before them: what is carried back through time (dh, and "
                                    "dc in an LSTM, from step t + 1 to step t) is dropped, cut short or wrong"), None
    return None


# -- the convolutional layers' patterns ---------------------------------------------------
def _padding(check, a, b, context):
    """handbp's array is torch's with a border around its trailing (spatial) axes: a padding that
    was added in the forward and not cut off the input gradient."""
    if a.shape == b.shape or a.ndim != b.ndim or a.ndim < 3:
        return None
    extra = [x - y for x, y in zip(a.shape, b.shape)]
    spatial = a.ndim - 2 if a.ndim >= 3 else 1
    if any(extra[:-spatial]) or min(extra[-spatial:]) < 0 or not any(extra[-spatial:]):
        return None
    for before in _borders(extra[-spatial:]):
        inner = a[(...,) + tuple(slice(p, p + n) for p, n in zip(before, b.shape[-spatial:]))]
        if np.allclose(inner, b, rtol=1e-6, atol=1e-9 * max(np.abs(b).max(initial=0.0), 1e-300)):
            border = ", ".join(f"{p} + {e - p}" for p, e in zip(before, extra[-spatial:]))
            return "padding", (f"handbp's shape {a.shape} is torch's {b.shape} with a border ({border}) around the "
                               "spatial axes, and inside it the values match: the padding added in the forward was "
                               "not cut off (dx = dx_pad[..., p:−p, p:−p])"), None
    return None


def _borders(extra):
    """The ways to split each axis's extra length into a border before and after: even splits first."""
    first = [e // 2 for e in extra]
    yield first
    for shift in ([0] * len(extra), extra):
        if shift != first:
            yield list(shift)


def _flipped_kernel(check, a, b, ratio_tol):
    """handbp = torch with the kernel's spatial axes reversed (a weight ``(O, C, kh, kw)`` or ``(O, C, k)``)."""
    if check.quantity != "grad" or a.ndim < 3 or a.shape != b.shape or max(a.shape[2:]) < 2:
        return None
    flipped = b[(...,) + (slice(None, None, -1),) * (a.ndim - 2)]
    scale = np.abs(b).max(initial=0.0)
    if scale and np.allclose(a, flipped, rtol=ratio_tol, atol=ratio_tol * scale):
        return "flipped_kernel", ("handbp's gradient is torch's with the kernel's spatial axes reversed: the kernel "
                                  "was flipped where it must not be (torch's convolution is a cross-correlation: "
                                  "dW = dy ⋆ x needs no flip) or not flipped where it must be"), None
    return None


def _unrouted(check, a, b, ratio_tol):
    """Where torch's gradient is non-zero handbp's equals it, but handbp's is non-zero in many more
    places: a gradient that should go to one element of each window (max pooling) went to all."""
    if check.quantity != "grad_input" or a.shape != b.shape:
        return None
    scale = np.abs(b).max(initial=0.0)
    routed, spread = b != 0, (b == 0) & (a != 0)
    if not scale or routed.sum() < 2 or spread.sum() < routed.sum() or not np.allclose(
            a[routed], b[routed], rtol=ratio_tol, atol=ratio_tol * scale):
        return None
    return "unrouted", (f"handbp's input gradient equals torch's at the {int(routed.sum())} elements that receive one, "
                        f"and is non-zero at {int(spread.sum())} more that receive none in torch: a gradient that "
                        "belongs to some elements only (the maximum of each pooling window, the positive inputs of "
                        "a ReLU) was sent to all of them"), None


def _stride(check, a, b, ratio_tol):
    """handbp's gradient stops short along the spatial axes, packed into a corner, where torch's
    spreads over the whole input: positions computed as if the stride were 1."""
    if check.quantity != "grad_input" or a.shape != b.shape or a.ndim < 3 or not a.any():
        return None
    spans = []
    for axis in range(2, a.ndim):
        others = tuple(k for k in range(a.ndim) if k != axis)
        ends = [int(np.flatnonzero(np.any(v != 0, axis=others)).max(initial=-1)) + 1 for v in (a, b)]
        spans.append(ends)
    if not all(ea < eb for ea, eb in spans):
        return None
    where = " and ".join(f"{ea} of {eb}" for ea, eb in spans)
    return "stride", (f"handbp's gradient reaches only the first {where} positions along the spatial axes, torch's "
                      "reaches them all: each output's gradient was sent back to where a stride of 1 would have "
                      "read it (the stride is ignored in the backward)"), None


_IN_CAUSAL_ORDER = {
    "grad_input": ("local_derivative", "the gradient arriving at this module matched torch's, the one it returns "
                   "does not, by a factor that varies element to element: this module's own backward is wrong (a "
                   "local derivative taken at the wrong point, e.g. on the pre-activation or an overwritten cache, "
                   "or a wrong Jacobian)"),
    "output": ("forward", "this module's input matched torch's, its output does not: its forward is wrong"),
    "grad": ("param_grad", "the gradient arriving at this module matched torch's, this parameter's gradient does "
             "not: the module's formula for it is wrong"),
}


def diagnose(check, context=None, ratio_tol=1e-6):
    """Name the pattern of a mismatch, where one fits. Returns ``(hint, text, factor)``: hint is one
    of ``HINTS`` or None; factor is handbp/torch for ``factor`` and ``sign``, the coefficient for
    ``weight_decay``.

    ``context`` maps size names to sizes ({"the batch size": 8, ...}) so a factor that equals one
    of them is named.
    """
    found = _missing(check, check.a, check.b, context)
    if found:
        return found
    a, b = np.asarray(check.a, dtype=np.float64), np.asarray(check.b, dtype=np.float64)
    for pattern in (_padding, _shape, _nonfinite, _accumulated, _reset):
        found = pattern(check, a, b, context)
        if found:
            return found
    what = "it"
    if check.before is not None:
        before = np.asarray(check.before, dtype=np.float64)
        found = _update(check, a, b, before)
        if found:
            return found
        a, b, what = a - before, b - before, "the update"
    found = (_zero(check, a, b, what) or _square_transpose(a, b, what) or _factor(a, b, what, context, ratio_tol)
             or _through_time(check, a, b, context))
    if found:
        return found
    for pattern in (_flipped_kernel, _unrouted, _stride):
        found = pattern(check, a, b, ratio_tol)
        if found:
            return found
    # no pattern in the values; but the checks run in causal order, so everything upstream matched
    kind = check.quantity.split(".")[0]       # (output.h_n is an output, grad_input.h_0 an input gradient)
    if kind in _IN_CAUSAL_ORDER:
        hint, text = _IN_CAUSAL_ORDER[kind]
        return hint, text, None
    return None, "no simple pattern (not a constant factor, sign flip, transpose, zero or NaN)", None
