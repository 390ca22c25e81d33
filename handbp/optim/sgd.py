"""Stochastic gradient descent with torch's exact semantics."""
from .optimizer import Optimizer, add_scaled


class SGD(Optimizer):
    """Gradient descent with optional momentum, as ``torch.optim.SGD``.

    For each parameter p with gradient g, in this order::

        g ← −g                              if maximize
        g ← g + weight_decay · p            (L2 penalty, added to the gradient)
        b ← g                               on the first step (the buffer starts as the gradient)
        b ← momentum · b + (1 − dampening) · g   from the second step on
        g ← g + momentum · b  if nesterov,  else  g ← b
        p ← p − lr · g

    Args:
        params: iterable of Parameters, or of dicts (parameter groups).
        lr: learning rate (torch's default 1e-3). momentum, dampening, weight_decay: ≥ 0.
        nesterov: Nesterov momentum; needs momentum > 0 and dampening = 0.
        maximize: ascend instead of descend.

    State: ``momentum_buffer`` per parameter, created on the first step when momentum ≠ 0.
    """

    _state_keys = frozenset({"momentum_buffer"})
    _array_state_keys = frozenset({"momentum_buffer"})

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check_hyperparameters(self, g):
        for key in ("lr", "momentum", "weight_decay"):
            self._number(g, key, low=0)
        self._number(g, "dampening")
        for key in ("nesterov", "maximize"):
            self._flag(g, key)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening (SGD: nesterov: expected "
                             f"momentum > 0 and dampening = 0, got momentum={g['momentum']} and "
                             f"dampening={g['dampening']})")

    def step(self):
        """Update every parameter that has a gradient (parameters with ``grad`` None are skipped).
        Every gradient is checked first, so a wrong one leaves all parameters and state unchanged."""
        self._check_grads()
        for group in self.param_groups:
            lr, mu, damp, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            maximize = group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                # (each "x + c · y" is rounded once, as torch's add(y, alpha=c) is: see add_scaled)
                g = -p.grad if maximize else p.grad
                if wd != 0:
                    g = add_scaled(g, p.data, wd)
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= mu
                        add_scaled(buf, g, 1 - damp, out=buf)
                    g = add_scaled(g, buf, mu) if group["nesterov"] else buf
                add_scaled(p.data, g, -lr, out=p.data)
