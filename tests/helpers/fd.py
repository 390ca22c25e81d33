"""Central finite differences: the independent reference every hand-written backward is checked
against (float64, per element). (Tests draw their numbers from the crosscheck plugin's ``rng``
fixture: base seed + crc32 of the test's node id.)"""
import copy

import numpy as np

from handbp.structure import flatten, map_structure

EPS = 1e-6          # (the tolerance this step allows is FD_RTOL, FD_ATOL in tests/helpers/tolerance.py)


def fd_gradient(f, x, eps=EPS):
    """∂f/∂x for a scalar function f() of the float64 array x (changed in place and restored):
    (f(x + eps·eᵢ) − f(x − eps·eᵢ)) / 2eps for each element i."""
    g = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def module_gradients(module, x, dy, eps=EPS):
    """Finite-difference dL/dx and dL/dθ for L = Σ module(x) ⊙ dy (so dL/d(output) = dy).

    ``x`` may be a tuple (a module with several inputs, ``handbp.structure``) and the output and
    ``dy`` too (a part of ``dy`` may be None: no gradient reached it); dL/dx then has x's
    structure, with None for integer arrays (indices, which have no gradient).

    Each L is computed by a fresh copy of ``module`` (with its parameters perturbed in place), so
    that every point sees the module's state as it was: the same Dropout mask, the same running
    statistics. Returns ``(dx, {parameter name: dθ})``."""
    def own(a):
        a = np.asarray(a)
        return a.copy() if a.dtype.kind in "iub" else np.array(a, dtype=np.float64)
    x = map_structure(own, x)
    dys = flatten(dy)

    def loss():
        out = flatten(copy.deepcopy(module).forward(x))
        return float(sum(np.sum(o * d) for o, d in zip(out, dys) if d is not None))
    dx = map_structure(lambda a: None if a.dtype.kind in "iub" else fd_gradient(loss, a, eps), x)
    grads = {name: fd_gradient(loss, p.data, eps) for name, p in module.named_parameters()}
    return dx, grads
