"""The tolerance rule, written once: how far handbp's value may be from torch's.

float64, element-wise as ``torch.testing.assert_close``: ``|h − t| ≤ atol + rtol·|t|`` with
``rtol = 1e-9`` and, unless given, ``atol = 1e-9 · max|t|`` (scaled by the quantity's largest
magnitude, and never below ``NOISE`` of the largest magnitude of its kind at that step, see
``scaled_atol``). Why: with the twin starting every step from handbp's state, the two sides differ
only by the rounding of one step (summation order in BLAS vs torch); 1e-9 leaves a wide margin
against flakiness while any real bug (a wrong factor, a missing term, an ε in the wrong place)
differs by 1e-6 or far more. The atol is scaled because gradients can be tiny (the notebook's
N(0, 0.01) sigmoid net has first-layer gradients ~1e-9): a fixed absolute atol would pass
*anything* there. An ``atol`` given by the caller is absolute, as in ``assert_close``.

float32: a fixed tolerance is either too loose or flaky (deep or saturated nets differ by ~1e-2
even between two correct float32 implementations). So float32 is judged against a float64 torch
twin run from the same float32 state: handbp's error must not exceed ``factor`` (4) × torch
float32's own error on that quantity, plus a floor of ``floor`` (64) float32 epsilons × the
quantity's largest magnitude: "as accurate as torch". The floor covers quantities where torch's own
float32 error happens to be tiny; a backward that is 1% off exceeds it by far. Passing
``rtol``/``atol`` for a float32 model switches back to a plain element-wise comparison with torch
float32 (assert_close's anchors: 1.3e-6 / 1e-5).

A quantity that cancels (terms of 1e6 summing to 4e-7) can differ by more than this between two
correct implementations: lockstep rechecks such a mismatch on the module alone before reporting it
(``crosscheck.recheck``), with this same rule plus the rounding of the terms summed.

The three functions at the bottom are the rule itself. The vector judge (``crosscheck.compare``)
calls them on arrays of every quantity of a step at once, the recheck on one quantity.
"""
from dataclasses import dataclass

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
NOISE = 1e-13    # below this fraction of the largest value of its kind, a difference is rounding noise


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


# -- the rule ---------------------------------------------------------------------------------
def scaled_atol(tol, scale, kind_peak):
    """A quantity's atol: the caller's, or rtol × its largest magnitude ``scale`` and at least
    ``NOISE`` × ``kind_peak``, the largest magnitude among quantities of its kind (all gradients,
    all outputs, ...) at this step.

    The floor matters for a quantity that is exactly zero in exact arithmetic and so is pure
    rounding noise on both sides (the gradient of a bias feeding a BatchNorm, which removes any
    shift): relative to itself that noise is 100%, relative to the step's other gradients it is
    ~1e-16. Scalars or arrays (one entry per quantity)."""
    if tol.atol is not None:
        return np.full(np.shape(scale), tol.atol)
    return np.maximum(tol.rtol * scale, NOISE * kind_peak)


def elementwise_allowed(tol, atol, abs_torch):
    """The float64 rule per element: ``atol + rtol · |torch|``."""
    return atol + tol.rtol * abs_torch


def float32_allowed(tol, torch_error, ref_scale):
    """The float32 rule per quantity: ``factor`` × torch float32's own largest error against the
    float64 twin + ``floor`` × the float64 value's largest magnitude."""
    return tol.factor * torch_error + tol.floor * ref_scale
