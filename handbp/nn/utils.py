"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_``, ``clip_grad_value_``, and the two
halves of the first, ``get_total_norm`` and ``clip_grads_with_norm_``.

Recurrent networks need it: backpropagation through time multiplies the gradient by W_hh once per
step, and a few large steps can throw the weights far away ("exploding gradients"). Rescaling the
whole gradient when its norm passes ``max_norm`` keeps its direction and bounds the step.

torch's semantics, read from ``torch/nn/utils/clip_grad.py``:

* the total norm is the p-norm of the per-gradient p-norms (the norm of all gradients as one
  vector); p may be ``inf`` (the largest |g|), ``-inf``, 0 (a count of non-zero entries) or any
  other number; the gradients' dtype (the norms are accumulated in float64, as torch's CPU kernels
  do, and rounded to it);
* every gradient is multiplied in place by min(max_norm / (total + 1e-6), 1), even when that is 1
  (and by NaN when the total is NaN, unless ``error_if_nonfinite``, which raises first);
* the total norm is returned (a NumPy scalar of the gradients' dtype); parameters without a
  gradient are skipped; no gradient at all gives 0.0;
* ``foreach`` selects torch's kernel, not the result; here both are the same code, so True,
  False and None are accepted and give the same numbers.
"""
import math
import types
import warnings

import numpy as np

from .. import validate
from ..errors import ArgumentTypeError, describe
from ..module import Module, Parameter


def _parameters(owner, parameters):
    """A list of Parameters from a Parameter or an iterable of them (a Module is refused by name:
    torch takes ``model.parameters()``)."""
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, (Module, np.ndarray, str, bytes)) or not hasattr(parameters, "__iter__"):
        hint = "; pass model.parameters()" if isinstance(parameters, Module) else ""
        raise ArgumentTypeError(f"{owner}: parameters: expected a Parameter or an iterable of Parameters, got "
                                f"{describe(parameters)}{hint}")
    generator = isinstance(parameters, types.GeneratorType)
    params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise ArgumentTypeError(f"{owner}: parameters: item {i}: expected a Parameter, got {describe(p)}")
    if generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", UserWarning,
                      stacklevel=3)
    return params


def _grads(owner, params):
    """The gradients of ``params`` (those that have one), each checked to be a floating array of its
    parameter's shape, before anything is changed."""
    grads = []
    for i, p in enumerate(params):
        g = p.grad
        if g is None:
            continue
        if not (isinstance(g, np.ndarray) and g.dtype.kind == "f" and g.shape == p.shape):
            raise ArgumentTypeError(f"{owner}: parameters: item {i}: expected its grad to be a floating array of "
                                    f"shape {p.shape} (the parameter's), got {describe(g)}")
        grads.append(g)
    return grads


def _norm_type(owner, norm_type):
    if isinstance(norm_type, str):
        try:
            norm_type = float(norm_type)     # torch reads it with float(): "inf", "2"
        except ValueError:
            validate.fail(owner, "norm_type", "a number or 'inf'", norm_type, ArgumentTypeError)
    norm_type = float(validate.number(owner, "norm_type", norm_type, finite=False, what="a number or 'inf'"))
    if math.isnan(norm_type):       # (torch computes a NaN norm and multiplies every gradient by NaN)
        validate.fail(owner, "norm_type", "a number or 'inf'", norm_type)
    return norm_type


def _vector_norm(v, p):
    """‖v‖_p of a flat float64 array, as ``torch.linalg.vector_norm``."""
    a = np.abs(v)
    if p == math.inf:
        return a.max(initial=0.0)
    if p == -math.inf:
        return a.min(initial=math.inf)
    if p == 0:
        return float(np.count_nonzero(a))
    if p == 2:
        return math.sqrt(float(np.dot(a, a)))
    with np.errstate(divide="ignore", over="ignore"):
        return float(np.sum(a ** p) ** (1.0 / p))


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The p-norm of the arrays ``tensors`` (an array or an iterable of them) viewed as one vector:
    ‖[‖g₁‖_p, ‖g₂‖_p, …]‖_p. Returns a NumPy scalar of their dtype (0.0 for none)."""
    owner = "get_total_norm"
    norm_type = _norm_type(owner, norm_type)
    error_if_nonfinite = validate.flag(owner, "error_if_nonfinite", error_if_nonfinite)
    validate.optional(validate.flag, owner, "foreach", foreach)
    arrays = [tensors] if isinstance(tensors, np.ndarray) else list(tensors)
    for i, g in enumerate(arrays):
        if not (isinstance(g, np.ndarray) and g.dtype.kind == "f"):
            raise ArgumentTypeError(f"{owner}: tensors: item {i}: expected a floating array, got {describe(g)}")
    return _total_norm(owner, arrays, norm_type, error_if_nonfinite)


def _total_norm(owner, grads, norm_type, error_if_nonfinite):
    if not grads:
        return np.float64(0.0)
    dtype = np.result_type(*grads)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.array([_vector_norm(g.ravel().astype(np.float64, copy=False), norm_type) for g in grads],
                         dtype=dtype)          # each rounded to the gradients' dtype, as torch's
        total = dtype.type(_vector_norm(norms.astype(np.float64), norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"{owner}: the total norm of order {norm_type} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the gradients by "
                           "the non-finite norm anyway, set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale every gradient of ``parameters`` in place by min(max_norm / (total_norm + 1e-6), 1)."""
    owner = "clip_grads_with_norm_"
    params = _parameters(owner, parameters)
    max_norm = float(validate.number(owner, "max_norm", max_norm, low=0, finite=False))
    total_norm = validate.number(owner, "total_norm", total_norm, finite=False)
    validate.optional(validate.flag, owner, "foreach", foreach)
    _scale(_grads(owner, params), max_norm, total_norm)


def _scale(grads, max_norm, total_norm):
    for g in grads:
        t = g.dtype.type
        with np.errstate(invalid="ignore", over="ignore"):
            coef = t(max_norm) / (t(total_norm) + t(1e-6))
        g *= np.minimum(coef, t(1.0))      # (NaN stays NaN, as torch's clamp)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Rescale the gradients of ``parameters`` in place so that their total ``norm_type``-norm is at
    most ``max_norm``: each g ← g · min(max_norm / (total + 1e-6), 1).

    Args (torch's):
        parameters: a Parameter or an iterable of Parameters (``model.parameters()``).
        max_norm: the largest total norm left (≥ 0; inf: no clipping).
        norm_type: p of the p-norm (default 2.0); ``inf`` or ``'inf'`` for the largest |g|.
        error_if_nonfinite: raise (and change nothing) if the total norm is NaN or ±inf.
        foreach: accepted as in torch (None, True, False); the result is the same.

    Returns:
        The total norm before clipping, a NumPy scalar of the gradients' dtype.
    """
    owner = "clip_grad_norm_"
    params = _parameters(owner, parameters)
    max_norm = float(validate.number(owner, "max_norm", max_norm, low=0, finite=False))
    norm_type = _norm_type(owner, norm_type)
    error_if_nonfinite = validate.flag(owner, "error_if_nonfinite", error_if_nonfinite)
    validate.optional(validate.flag, owner, "foreach", foreach)
    grads = _grads(owner, params)
    total = _total_norm(owner, grads, norm_type, error_if_nonfinite)
    _scale(grads, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clip every gradient of ``parameters`` in place to [−clip_value, clip_value]. Returns None.

    Args (torch's): parameters as ``clip_grad_norm_``; clip_value ≥ 0; foreach accepted."""
    owner = "clip_grad_value_"
    params = _parameters(owner, parameters)
    clip_value = float(validate.number(owner, "clip_value", clip_value, low=0, finite=False))
    validate.optional(validate.flag, owner, "foreach", foreach)
    for g in _grads(owner, params):
        t = g.dtype.type
        np.clip(g, t(-clip_value), t(clip_value), out=g)
