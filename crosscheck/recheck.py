"""Rechecking a mismatch on the module alone, before it is reported.

Within one step, rounding can be magnified on its way through the network: behind a saturated
softmax and weights of 1e4, a gradient is a sum of terms of 1e6 that cancel to 4e-7, and its last
digits differ by 1e-3 of it between any two correct implementations. So each mismatch, in causal
order, is recomputed by torch's module alone on handbp's own input and upstream gradient (in
float32 mode by the float64 twin). If handbp agrees with that value within the tolerance rule
(``crosscheck.tolerance``) plus ``TERMS_ROUNDING`` epsilons of the terms summed into each element,
the module is right and the mismatch was rounding amplified by cancellation: it is dropped. The
first check that still fails is a real divergence, and it and everything after it (its
consequences, which the report lists) are kept as they were.

The terms: a module's registered ``terms`` where it subtracts inside (``crosscheck.twins``), else
the module rerun on absolute values (|x|, |W|, |dy|: for a Linear, |dy|·|W| bounds the terms summed
into each element of the input gradient).
"""
import numpy as np

from .registry import entry
from .tolerance import elementwise_allowed, float32_allowed, scaled_atol

TERMS_ROUNDING = 16   # × eps × the magnitude of the terms: the rounding two correct sums may differ by
RECHECKED = ("output", "grad_input", "grad")


def recheck(failing, judge, tol, where):
    """The mismatches of ``failing`` (Checks in causal order) that are more than rounding: the
    first that survives its recheck and everything after it; [] when all were rounding.

    ``judge``: the twin that reruns modules (the float64 one in float32 mode); ``where``: the
    step's ``lockstep.Where`` (leaf of each label, handbp's inputs and upstream gradients, the
    parameters before the step)."""
    for k, c in enumerate(failing):
        if not _only_rounding(c, judge, tol, where):
            return failing[k:]
    return []


def _only_rounding(c, judge, tol, where):
    i = where.leaf_index.get(c.name)
    if i is None or c.quantity not in RECHECKED or c.a is None:
        return False
    a = np.asarray(c.a)
    if not np.all(np.isfinite(a)):
        return False
    x, dy = where.side.input_of(i, where.x), where.side.upstream_of(i)
    if x is None or (c.quantity != "output" and dy is None):
        return False
    params = where.local_params(i)
    local = where.local_name(i, c.name) if c.quantity == "grad" else None
    try:
        value = judge.rerun(i, c.quantity, x, dy, params, local)
        terms = None if value is None else _terms(judge, where.modules[i], i, c.quantity, x, dy, params, local,
                                                   value.shape)
    except Exception:      # noqa: BLE001 - a module that cannot be rerun alone: report as is
        return False
    if value is None or value.shape != a.shape:
        return False
    rounding = TERMS_ROUNDING * np.finfo(a.dtype).eps * terms
    if tol.mode == "float32-rule":
        b, r = np.asarray(c.b, dtype=np.float64), np.asarray(c.ref, dtype=np.float64)
        allowed = float32_allowed(tol, np.abs(b - r).max(initial=0.0), np.abs(r).max(initial=0.0))
    else:
        atol = scaled_atol(tol, np.abs(value).max(initial=0.0), (c.result or {}).get("kind_peak", 0.0))
        allowed = elementwise_allowed(tol, atol, np.abs(value))
    return bool(np.all(np.abs(a.astype(np.float64) - value) <= allowed + rounding))


def _terms(judge, module, i, quantity, x, dy, params, local, shape):
    """The magnitude of the terms summed into each element of the rechecked value."""
    what = "grad_input" if quantity == "grad_input" else local if quantity == "grad" else None
    found = entry(module)
    written = found.terms if found is not None and what is not None else None
    if written is not None:
        terms = written(module, np.asarray(x, np.float64), np.abs(np.asarray(dy, np.float64)), params, what)
        if terms is not None:
            return np.broadcast_to(terms, shape)
    absolute = {n: np.abs(v) for n, v in params.items()}
    terms = judge.rerun(i, quantity, np.abs(x), None if dy is None else np.abs(dy), absolute, local)
    return 0.0 if terms is None else np.abs(terms)
