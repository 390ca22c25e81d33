"""AdamW: Adam with decoupled weight decay, as ``torch.optim.AdamW``."""
from .adam import Adam


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameter directly instead of entering the gradient
    (Loshchilov & Hutter), as ``torch.optim.AdamW``. Per step, in this order::

        g ← −g                                   if maximize
        p ← p · (1 − lr · weight_decay)          (decoupled: m and v never see the decay)
        m ← m + (1 − β₁)(g − m),   v ← β₂ v + (1 − β₂) g²,   v_max ← max(v_max, v) if amsgrad
        p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)

    The shrink uses the parameter *before* this step's Adam update and is multiplicative, so with
    lr = 0 nothing moves. Everything else is ``Adam``'s; torch, too, makes AdamW an Adam with
    ``decoupled_weight_decay=True``, which its param groups carry.

    Args:
        params, lr, betas, eps, amsgrad, maximize: as ``Adam``.
        weight_decay: decay coefficient λ, ≥ 0 (default 1e-2, torch's, unlike Adam's 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def _check_hyperparameters(self, g):
        super()._check_hyperparameters(g)
        if not g["decoupled_weight_decay"]:
            raise ValueError("AdamW: decoupled_weight_decay: expected True (AdamW's decay is always "
                             "decoupled; use Adam for the L2 penalty), got False")
