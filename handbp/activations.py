"""Activations as modules. Each caches one array in ``forward`` and multiplies the upstream
gradient by its local derivative in ``backward``; all are stable for inputs of ±1e4."""
import numpy as np

from .errors import LayerValueError
from .module import Module


def sigmoid(x):
    """σ(x) = 1 / (1 + e⁻ˣ), evaluated without overflow: with e = e^(−|x|) ≤ 1,
    σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


class Sigmoid(Module):
    """y = σ(x) = 1 / (1 + e⁻ˣ).  Derivative: dy/dx = σ(x)(1 − σ(x)) = y(1 − y)."""

    def __init__(self):
        super().__init__()
        self.last_o = None

    def forward(self, x):
        self.last_o = sigmoid(x)
        return self.last_o

    def backward(self, dy):
        """dx = dy · y(1 − y), from the cached output y."""
        y = self.last_o
        self._need_cache(y, dy, None if y is None else y.shape)
        return dy * y * (1.0 - y)


class Tanh(Module):
    """y = tanh(x).  Derivative: dy/dx = 1 − tanh²(x) = 1 − y²."""

    def __init__(self):
        super().__init__()
        self.last_o = None

    def forward(self, x):
        self.last_o = np.tanh(x)
        return self.last_o

    def backward(self, dy):
        """dx = dy · (1 − y²)."""
        y = self.last_o
        self._need_cache(y, dy, None if y is None else y.shape)
        return dy * (1.0 - y * y)


class ReLU(Module):
    """y = max(x, 0).  Derivative: 1 where x > 0, else 0 (0 at x = 0, as torch)."""

    def __init__(self):
        super().__init__()
        self.last_mask = None

    def forward(self, x):
        self.last_mask = x > 0
        return np.where(self.last_mask, x, 0.0).astype(x.dtype, copy=False)

    def backward(self, dy):
        """dx = dy · [x > 0]."""
        mask = self.last_mask
        self._need_cache(mask, dy, None if mask is None else mask.shape)
        return np.where(mask, dy, 0.0).astype(dy.dtype, copy=False)


class LeakyReLU(Module):
    """y = x for x > 0, else negative_slope · x.  Derivative: 1 for x > 0, else negative_slope
    (negative_slope at x = 0, as torch)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) \
                or not np.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope: expected a finite number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.last_mask = None

    def forward(self, x):
        self.last_mask = x > 0
        return np.where(self.last_mask, x, x * self.negative_slope)

    def backward(self, dy):
        """dx = dy · (1 if x > 0 else negative_slope)."""
        mask = self.last_mask
        self._need_cache(mask, dy, None if mask is None else mask.shape)
        return np.where(mask, dy, dy * self.negative_slope)

    def config_args(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Identity(Module):
    """y = x.  Derivative: 1."""

    def __init__(self):
        super().__init__()
        self.last_shape = None

    def forward(self, x):
        self.last_shape = x.shape
        return x

    def backward(self, dy):
        """dx = dy."""
        self._need_cache(self.last_shape, dy, self.last_shape)
        return dy


class Softmax(Module):
    """yᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m) along ``dim``, m = maxⱼ xⱼ (the shift changes nothing but
    keeps e^(·) ≤ 1, so ±1e4 cannot overflow).

    Jacobian: ∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ), so the vector-Jacobian product never builds the matrix:
    dx = y ⊙ (dy − Σⱼ dyⱼ yⱼ).
    """

    def __init__(self, dim=-1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Softmax: dim: expected an integer, got {dim!r}")
        self.dim = int(dim)
        self.last_o = None

    def forward(self, x):
        if not -x.ndim <= self.dim < max(x.ndim, 1):
            raise LayerValueError(self, f"dim: {self.dim} is out of range for an input of shape {x.shape}")
        z = np.exp(x - x.max(axis=self.dim, keepdims=True))
        self.last_o = z / z.sum(axis=self.dim, keepdims=True)
        return self.last_o

    def backward(self, dy):
        """dx = y ⊙ (dy − Σ dy ⊙ y) along dim."""
        y = self.last_o
        self._need_cache(y, dy, None if y is None else y.shape)
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True))

    def config_args(self):
        return {"dim": self.dim}

    def extra_repr(self):
        return f"dim={self.dim}"
