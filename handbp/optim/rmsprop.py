"""RMSprop with torch's exact update order (momentum, centered, weight decay, maximize)."""
import numpy as np

from .adam import lerp_
from .optimizer import Optimizer, add_product, add_quotient, add_scaled


class RMSprop(Optimizer):
    """RMSprop (Hinton), as ``torch.optim.RMSprop``.

    For each parameter p with gradient g, in this order::

        g ← −g                                   if maximize
        g ← g + weight_decay · p                 (L2 penalty, added to the gradient)
        v ← α v + (1 − α) g²                     (square_avg)
        ḡ ← ḡ + (1 − α)(g − ḡ)                   if centered (grad_avg; torch's lerp)
        d ← √(v − ḡ²) + eps   if centered,  else  d ← √v + eps
        b ← momentum · b + g / d,  p ← p − lr · b      if momentum > 0
        p ← p − lr · g / d                             otherwise

    eps is added outside the square root. Unlike SGD's, the momentum buffer starts at zeros, so
    the first step is ``b = g / d``, and there is no bias correction of v.

    Args:
        params: iterable of Parameters, or of dicts (parameter groups).
        lr: learning rate (default 1e-2), ≥ 0.
        alpha: smoothing constant of v (default 0.99), ≥ 0.
        eps: added to the denominator (default 1e-8), ≥ 0.
        weight_decay: L2 penalty (default 0), ≥ 0.
        momentum: (default 0), ≥ 0.
        centered: divide by an estimate of the gradient's variance instead of its raw second moment.
        maximize: ascend instead of descend.

    State per parameter, created on its first step: ``step`` (a float), ``square_avg``,
    ``momentum_buffer`` when momentum > 0, ``grad_avg`` when centered.
    """

    _state_keys = frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"})
    _array_state_keys = frozenset({"square_avg", "momentum_buffer", "grad_avg"})

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, maximize=maximize))

    def _check_hyperparameters(self, g):
        for key in ("lr", "eps", "momentum", "weight_decay", "alpha"):
            self._number(g, key, low=0)
        for key in ("centered", "maximize"):
            self._flag(g, key)

    def _required_state_keys(self, group):
        keys = {"step", "square_avg"}
        if group["momentum"] > 0:
            keys.add("momentum_buffer")
        if group["centered"]:
            keys.add("grad_avg")
        return frozenset(keys)

    def step(self):
        """Update every parameter that has a gradient (parameters with ``grad`` None are skipped)."""
        self._check_grads()
        for group in self.param_groups:
            lr, alpha, eps, wd, mu = (group[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0.0
                    state["square_avg"] = np.zeros_like(p.data)
                    if mu > 0:
                        state["momentum_buffer"] = np.zeros_like(p.data)
                    if group["centered"]:
                        state["grad_avg"] = np.zeros_like(p.data)
                g = -p.grad if group["maximize"] else p.grad
                state["step"] += 1
                if wd != 0:
                    g = add_scaled(g, p.data, wd)
                v = state["square_avg"]
                v *= alpha
                add_product(v, 1 - alpha, g, g, out=v)
                if group["centered"]:
                    g_avg = lerp_(state["grad_avg"], g, 1 - alpha)
                    denom = np.sqrt(add_product(v, -1, g_avg, g_avg)) + eps
                else:
                    denom = np.sqrt(v) + eps
                if mu > 0:
                    buf = state["momentum_buffer"]
                    buf *= mu
                    buf += g / denom
                    add_scaled(p.data, buf, -lr, out=p.data)
                else:
                    add_quotient(p.data, -lr, g, denom, out=p.data)
