"""Dropout: zero each element with probability p in training, scale the survivors by 1 / (1 − p)."""
import numpy as np

from . import validate
from .errors import LayerValueError
from .module import Module


class Dropout(Module):
    """y = x ⊙ mask / (1 − p) in training, mask ~ Bernoulli(1 − p) elementwise; y = x in eval.

    The scaling keeps E[y] = x, so eval mode needs no correction ("inverted" dropout, as torch).
    The keep-mask is drawn from ``rng`` (an ``np.random.Generator``) and cached as ``last_mask``,
    a boolean array of x's shape, so the same mask can be handed to a torch twin. With p = 1
    every element is dropped and y = 0 (torch's rule; 1 / (1 − p) is never formed).

    Args:
        p: probability of dropping an element, in [0, 1] (default 0.5).
        rng: the Generator masks are drawn from, or a seed for one (``np.random.default_rng()``
            when omitted); each training forward draws ``rng.random(x.shape)`` and keeps the
            elements ≥ p.

    Shape:
        x and y: any shape.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        self.p = validate.probability(type(self).__name__, "p", p)
        self.rng = validate.generator(type(self).__name__, "rng", rng)
        self.last_mask = None      # the keep-mask (all True in eval), for dx
        self.last_scale = None     # 1 / (1 − p) in training (0 when p = 1), 1 in eval
        self.last_dtype = None     # x's dtype, which dy must have

    def forward(self, x):
        """y = x ⊙ mask · scale; caches the mask and the scale."""
        if self.training:
            mask = self.rng.random(x.shape) >= self.p
            scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        else:
            mask, scale = np.ones(x.shape, dtype=bool), 1.0
        self.last_mask, self.last_scale, self.last_dtype = mask, scale, x.dtype
        return x * (mask * x.dtype.type(scale)) if self.training else x

    def backward(self, dy):
        """dx = dy ⊙ mask / (1 − p) (the same mask as the forward); dx = dy in eval."""
        mask = self.last_mask
        self._need_cache(mask, dy, dtype=self.last_dtype)
        return dy * (mask * dy.dtype.type(self.last_scale))

    def row_wise(self, x):
        """In eval (or with p = 0) the identity; in training every call draws a new mask, so a stack
        of inputs would not see the masks each input saw."""
        if self.training and self.p > 0:
            return "it draws a new random mask on every forward (training mode)"
        return None

    def config_args(self):
        return {"p": self.p}

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """y = x ⊙ mask / (1 − p) in training, one Bernoulli(1 − p) draw per channel: a channel
    ``x[n, c]`` (a whole H × W map) is kept or zeroed as one; y = x in eval.

    Neighbouring pixels of a feature map are strongly correlated, so dropping them one by one
    hardly regularises a convolutional layer; dropping whole channels does (torch's Dropout2d).
    The mask is drawn from ``rng`` as ``rng.random((N, C))`` (kept where ≥ p) and cached as
    ``last_mask``, shaped ``(N, C, 1, 1)`` (``(C, 1, 1)`` unbatched) to broadcast over each map.

    Args:
        p: probability of dropping a channel, in [0, 1] (default 0.5).
        rng: the Generator masks are drawn from, or a seed for one.

    Shape:
        x and y: ``(N, C, H, W)`` or ``(C, H, W)``. (torch reads a 3-D input as ``(N, C, L)`` for
        now, with a warning that this will change to ``(C, H, W)``; handbp reads it as the latter.)
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__(p, rng=rng)
        self.last_shape = None     # x's shape, which dy must have (the mask is smaller)

    def forward(self, x):
        """y = x ⊙ mask · scale, the mask ``(N, C, 1, 1)``; caches the mask, the scale and x's shape."""
        if x.ndim not in (3, 4):
            raise LayerValueError(self, f"x: expected shape (N, C, H, W) or (C, H, W), got {x.shape}")
        if self.training:
            mask = (self.rng.random(x.shape[:-2]) >= self.p)[..., None, None]
            scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        else:
            mask, scale = np.ones(x.shape[:-2] + (1, 1), dtype=bool), 1.0
        self.last_mask, self.last_scale, self.last_dtype, self.last_shape = mask, scale, x.dtype, x.shape
        return x * (mask * x.dtype.type(scale)) if self.training else x

    def row_wise(self, x):
        """In eval (or with p = 0) the identity on each sample; in training every call draws new masks."""
        if self.training and self.p > 0:
            return "it draws a new random mask on every forward (training mode)"
        return "its input is unbatched" if x.ndim == 3 else None

    def backward(self, dy):
        """dx = dy ⊙ mask / (1 − p), each channel's mask broadcast over its map; dx = dy in eval."""
        mask = self.last_mask
        self._need_cache(mask, dy, None if mask is None else self.last_shape, self.last_dtype)
        return dy * (mask * dy.dtype.type(self.last_scale))
