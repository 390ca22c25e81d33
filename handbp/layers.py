"""Layers with parameters. ``Linear`` is the notebook's ``Neuron`` without its activation."""
import math

import numpy as np

from . import validate
from .errors import LayerValueError
from .module import Module, Parameter


def init_rng(owner, rng):
    """The source of random numbers: a Generator (or a seed for one, or a RandomState), or numpy's
    global state when None (so that ``np.random.seed`` reproduces a model, as in the notebook)."""
    if rng is None or rng is np.random:
        return np.random
    return rng if isinstance(rng, np.random.RandomState) else validate.generator(owner, "rng", rng)


class Linear(Module):
    """y = x Wᵀ + b.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: whether to learn an additive bias ``b``.
        dtype: dtype of the parameters (float64 by default); inputs must have the same dtype.
        rng: ``np.random.Generator`` (or a seed) for the initial values; numpy's global state
            when omitted.
        init: ``"torch"`` (default): W and b from U(−1/√in_features, 1/√in_features), torch's
            default; ``"normal"``: W from N(0, std²) and b = 0, the notebook's init.
        std: standard deviation for ``init="normal"`` (the notebook's 0.01).

    Shape:
        x: ``(in_features,)`` (one sample, as in the notebook) or ``(N, in_features)``;
        y: ``(out_features,)`` or ``(N, out_features)``.

    Attributes:
        weight: Parameter of shape ``(out_features, in_features)``, torch's layout.
        bias: Parameter of shape ``(out_features,)`` or None.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float64, rng=None,
                 init="torch", std=0.01):
        super().__init__()
        in_features = validate.integer("Linear", "in_features", in_features, low=0)
        out_features = validate.integer("Linear", "out_features", out_features, low=0)
        bias = validate.flag("Linear", "bias", bias)
        dtype = validate.float_dtype("Linear", "dtype", dtype)
        init = validate.choice("Linear", "init", init, ("torch", "normal"))
        std = validate.number("Linear", "std", std, low=0)
        rng = init_rng("Linear", rng)
        self.in_features, self.out_features = in_features, out_features
        if init == "torch":
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
            W = rng.uniform(-bound, bound, (out_features, in_features))
            b = rng.uniform(-bound, bound, (out_features,)) if bias else None
        else:
            # drawn as (in, out) and transposed: the notebook's draw order, so np.random.seed
            # gives the notebook's very numbers
            W = rng.normal(0.0, std, (in_features, out_features)).T
            b = np.zeros(out_features) if bias else None
        self.weight = Parameter(W.astype(dtype))
        self.bias = Parameter(b.astype(dtype)) if bias else None
        self.last_x = None

    def forward(self, x):
        """y = x Wᵀ + b; caches x (needed for dW)."""
        if x.ndim not in (1, 2) or x.shape[-1] != self.in_features:
            raise LayerValueError(self, f"x: expected shape ({self.in_features},) or (N, {self.in_features}), "
                                        f"got {x.shape}")
        self.last_x = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy):
        """dW = dyᵀ x,  db = Σₙ dy,  dx = dy W   (a batch: x (N, in), dy (N, out)).

        One sample (x (in,), dy (out,)): dW = dy xᵀ, an outer product; db = dy."""
        x = self.last_x
        self._need_cache(x, dy, None if x is None else x.shape[:-1] + (self.out_features,))
        if x.ndim == 1:                        # one sample: dyᵀ x is the outer product
            self.weight.accumulate(dy[:, None] * x, fresh=True)
            if self.bias is not None:
                self.bias.accumulate(dy)
        else:
            self.weight.accumulate(dy.T @ x, fresh=True)
            if self.bias is not None:
                self.bias.accumulate(dy.sum(axis=0), fresh=True)
        return dy @ self.weight.data

    def row_wise(self, x):
        """Each row is x Wᵀ + b on its own."""
        return None

    def config_args(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}

    @classmethod
    def state_shapes(cls, in_features, out_features, bias=True):
        """weight (out_features, in_features), bias (out_features,); see ``Module.state_shapes``."""
        yield "weight", (out_features, in_features)
        if bias:
            yield "bias", (out_features,)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
