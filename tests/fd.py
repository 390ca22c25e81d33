"""Central finite differences: the independent reference every hand-written backward is checked
against (float64, per element)."""
import numpy as np


def fd_gradient(f, x, eps=1e-6):
    """∂f/∂x for a scalar function f of the array x (changed in place and restored)."""
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


def module_gradients(module, x, dy, eps=1e-6):
    """Finite-difference dL/dx and dL/dθ for L = Σ module(x) ⊙ dy (so dL/d(output) = dy)."""
    x = np.array(x, dtype=np.float64)
    loss = lambda: float(np.sum(module.forward(x) * dy))
    dx = fd_gradient(loss, x, eps)
    grads = {name: fd_gradient(loss, p.data, eps) for name, p in module.named_parameters()}
    return dx, grads
