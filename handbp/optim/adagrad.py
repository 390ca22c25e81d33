"""Adagrad with torch's exact update order (lr decay, weight decay, initial accumulator, maximize)."""
import numpy as np

from .optimizer import Optimizer, add_product, add_quotient, add_scaled


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), as ``torch.optim.Adagrad``.

    For each parameter p with gradient g, on its step t = 1, 2, …, in this order::

        g ← −g                                   if maximize
        g ← g + weight_decay · p                 (L2 penalty, added to the gradient)
        clr ← lr / (1 + (t − 1) · lr_decay)
        s ← s + g²                               (sum, which starts at initial_accumulator_value)
        p ← p − clr · g / (√s + eps)

    eps is added outside the square root; the learning-rate decay uses t − 1, so the first step
    uses lr itself.

    Args:
        params: iterable of Parameters, or of dicts (parameter groups).
        lr: learning rate (default 1e-2), ≥ 0.
        lr_decay: (default 0), ≥ 0.
        weight_decay: L2 penalty (default 0), ≥ 0.
        initial_accumulator_value: the starting value of every element of ``sum`` (default 0), ≥ 0.
        eps: added to the denominator (default 1e-10), ≥ 0.
        maximize: ascend instead of descend.

    State per parameter, created here in the constructor as torch does (not on the first step):
    ``step`` (a float, 0.0) and ``sum`` (filled with initial_accumulator_value). A parameter
    without a gradient is skipped, its step not counted. Like torch, ``sum`` is always filled with
    the constructor's initial_accumulator_value: a param group's own value is kept in the group
    but not used.
    """

    _state_keys = frozenset({"step", "sum"})
    _array_state_keys = frozenset({"sum"})

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        self.state[p] = {"step": 0.0, "sum": np.full_like(p.data, self.defaults["initial_accumulator_value"])}

    def _check_hyperparameters(self, g):
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            self._number(g, key, low=0)
        self._flag(g, "maximize")

    def _required_state_keys(self, group):
        return frozenset({"step", "sum"})

    def step(self):
        """Update every parameter that has a gradient (parameters with ``grad`` None are skipped)."""
        self._check_grads()
        for group in self.param_groups:
            lr, lr_decay, eps, wd = group["lr"], group["lr_decay"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if not state:                      # a group added after construction: as torch, lazily
                    self._init_state(p)
                    state = self.state[p]
                state["step"] += 1
                g = -p.grad if group["maximize"] else p.grad
                if wd != 0:
                    g = add_scaled(g, p.data, wd)
                clr = lr / (1 + (state["step"] - 1) * lr_decay)
                s = state["sum"]
                add_product(s, 1, g, g, out=s)
                add_quotient(p.data, -clr, g, np.sqrt(s) + eps, out=p.data)
