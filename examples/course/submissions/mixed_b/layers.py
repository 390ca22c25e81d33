"""A transposed weight gradient (Linear: it differs, then the optimizer's step raises), a Sigmoid
that inherits handbp's, a raise in the forward (ReLU), NaN outputs (SiLU); the two losses are right."""
import numpy as np

import handbp as hb


class Linear(hb.Module):
    """y = x Wᵀ + b, W of shape (out_features, in_features) as in torch."""

    def __init__(self, in_features, out_features, rng=None):
        super().__init__()
        rng = np.random.default_rng() if rng is None else rng
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / np.sqrt(in_features)
        self.weight = hb.Parameter(rng.uniform(-bound, bound, (out_features, in_features)))
        self.bias = hb.Parameter(rng.uniform(-bound, bound, out_features))

    def forward(self, x):
        self.last_x = x
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
        """dW = dyᵀ x, db = Σₙ dy, dx = dy W."""
        self.weight.accumulate(self.last_x.T @ dy)            # transposed: the optimizer's step then raises
        self.bias.accumulate(dy.sum(axis=0))
        return dy @ self.weight.data


class Sigmoid(hb.Sigmoid):                                   # forward and backward inherited from handbp
    pass


class ReLU(hb.Module):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        raise ValueError("ReLU: not done yet")               # a raise in the forward

    def backward(self, dy):
        return dy * (self.last_x > 0)


class SiLU(hb.Module):
    """y = x σ(x); dy/dx = σ(x) (1 + x (1 − σ(x)))."""

    def forward(self, x):
        self.last_x, self.last_s = x, 1 / (1 + np.exp(-x))
        with np.errstate(invalid="ignore"):
            return np.exp(np.log(x) + np.log(self.last_s))   # NaN where x < 0

    def backward(self, dy):
        s = self.last_s
        return dy * s * (1 + self.last_x * (1 - s))


class SoftmaxCrossEntropy(hb.Loss):
    """L = −(1/N) Σₙ Σ_c pₙc log softmax(zₙ)_c for class probabilities p; dL/dz = (softmax(z) − p) / N."""

    def forward(self, z, p):
        shifted = z - z.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.last_softmax, self.last_p = np.exp(log_softmax), p
        self._cache = True
        return -(p * log_softmax).sum() / len(z)

    def backward(self, dy=1.0):
        return dy * (self.last_softmax - self.last_p) / len(self.last_p)


class MSE(hb.Loss):
    """L = mean((h − y)²); dL/dh = 2 (h − y) / n."""

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return np.mean(self.last_diff ** 2)

    def backward(self, dy=1.0):
        return dy * 2 * self.last_diff / self.last_diff.size
