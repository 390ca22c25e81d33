"""Central finite differences: the independent reference every hand-written backward is checked
against (float64, per element), and the per-test random generator the engine tests share."""
import zlib

import numpy as np
import pytest

EPS = 1e-6
# central differences with eps 1e-6 in float64: truncation ~eps² ≈ 1e-12, rounding ~1e-16/eps ≈ 1e-10
# of the function's size; a wrong factor, sign or missing term is off by far more
RTOL, ATOL = 1e-6, 1e-8


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

    Returns ``(dx, {parameter name: dθ})``."""
    x = np.array(x, dtype=np.float64)
    loss = lambda: float(np.sum(module.forward(x) * dy))
    dx = fd_gradient(loss, x, eps)
    grads = {name: fd_gradient(loss, p.data, eps) for name, p in module.named_parameters()}
    return dx, grads


@pytest.fixture
def rng(request):
    """A generator seeded by crc32 of the test's node id: the same numbers for a test whatever the
    order, the worker under xdist or the run, so any failure replays by running that test alone."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
