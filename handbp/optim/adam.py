"""Adam, with torch's exact update order (coupled or decoupled weight decay, AMSGrad, maximize)."""
import numpy as np

from .. import validate
from ..errors import ArgumentTypeError
from .optimizer import FLOAT32, Optimizer, add_product, add_quotient, add_scaled


def lerp_(start, end, weight):
    """``start ← start + weight · (end − start)`` in place, evaluated as torch's ``lerp_`` is:
    from ``start`` when |weight| < 0.5, else from ``end`` as ``end − (end − start)(1 − weight)``
    (the same value in exact arithmetic; the two roundings differ, so we round as torch does).

    torch fuses the multiply and the add (one rounding). That matters where the two terms cancel
    (a gradient close to its running mean): rounding ``weight · (end − start)`` first can cost
    hundreds of units in the last place of the result. In float32 the fused operation is exact
    in float64 arithmetic (a float32 product fits), so it is done there and rounded once; in
    float64 the ordinary expression is used."""
    diff = end - start
    if abs(weight) < 0.5:
        return add_scaled(start, diff, weight, out=start)
    if start.dtype == FLOAT32:    # (1 − weight) is formed in float32 first, as torch does
        start[...] = end.astype(np.float64) - diff * np.float64(np.float32(1) - np.float32(weight))
    else:
        start[...] = end - diff * (1 - weight)
    return start


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``.

    For each parameter p with gradient g, on step t = 1, 2, …, in this order::

        g ← −g                                   if maximize
        p ← p · (1 − lr · weight_decay)          if decoupled_weight_decay (AdamW)
        g ← g + weight_decay · p                 otherwise (L2 penalty, added to the gradient)
        m ← m + (1 − β₁)(g − m)                  (torch's lerp; = β₁ m + (1 − β₁) g)
        v ← β₂ v + (1 − β₂) g²
        v_max ← max(v_max, v)                    if amsgrad, and v_max replaces v below
        p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)

    Note where eps goes: it is added *after* √v is divided by √(1 − β₂ᵗ), so it is not scaled by
    the bias correction; and the bias correction of m is folded into the step size.

    Args:
        params: iterable of Parameters, or of dicts (parameter groups).
        lr: learning rate (default 1e-3), ≥ 0.
        betas: (β₁, β₂), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8), ≥ 0.
        weight_decay: ≥ 0 (default 0); an L2 penalty unless ``decoupled_weight_decay``.
        amsgrad: use the running maximum of v (AMSGrad).
        maximize: ascend instead of descend.
        decoupled_weight_decay: shrink p directly, as AdamW (torch ≥ 2.6 has this argument too).

    State per parameter, created on its first step: ``step`` (a float; torch keeps a float32
    scalar tensor), ``exp_avg`` (m), ``exp_avg_sq`` (v), and ``max_exp_avg_sq`` with amsgrad.
    """

    _state_keys = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
    _array_state_keys = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))
        self.defaults["betas"] = tuple(self.defaults["betas"])

    def _check_hyperparameters(self, g):
        owner = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            self._number(g, key, low=0)
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            validate.fail(owner, "betas", "a pair (beta1, beta2)", betas,
                          ValueError if isinstance(betas, (tuple, list)) else ArgumentTypeError)
        g["betas"] = tuple(validate.number(owner, f"betas[{i}]", b, low=0, high=1, high_open=True,
                                           prefix=f"Invalid beta parameter at index {i}") for i, b in enumerate(betas))
        for key in ("amsgrad", "maximize", "decoupled_weight_decay"):
            self._flag(g, key)

    def _required_state_keys(self, group):
        keys = {"step", "exp_avg", "exp_avg_sq"}
        return frozenset(keys | {"max_exp_avg_sq"} if group["amsgrad"] else keys)

    def step(self):
        """Update every parameter that has a gradient (parameters with ``grad`` None are skipped)."""
        self._check_grads()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0.0
                    state["exp_avg"] = np.zeros_like(p.data)
                    state["exp_avg_sq"] = np.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = np.zeros_like(p.data)
                g = -p.grad if group["maximize"] else p.grad
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1 - lr * wd
                    else:
                        g = add_scaled(g, p.data, wd)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                lerp_(m, g, 1 - beta1)
                v *= beta2
                add_product(v, 1 - beta2, g, g, out=v)
                step_size = lr / (1 - beta1 ** t)
                bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
                if group["amsgrad"]:
                    v_max = state["max_exp_avg_sq"]
                    np.maximum(v_max, v, out=v_max)
                    v = v_max
                denom = np.sqrt(v) / bias_correction2_sqrt + eps
                add_quotient(p.data, -step_size, m, denom, out=p.data)
