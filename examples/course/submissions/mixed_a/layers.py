"""Six failures, one per class: a wrong bias gradient (Linear), a hang (Sigmoid), a segfault
(ReLU), a raise in the backward (SiLU), sys.exit (SoftmaxCrossEntropy), os._exit (MSE)."""
import ctypes
import os
import sys

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
        self.weight.accumulate(dy.T @ self.last_x)
        self.bias.accumulate(2 * dy.sum(axis=0))          # wrong value: twice the bias gradient
        return dy @ self.weight.data


class Sigmoid(hb.Module):
    """y = 1 / (1 + e⁻ˣ); dy/dx = y (1 − y)."""

    def forward(self, x):
        self.last_o = 1 / (1 + np.exp(-x))
        return self.last_o

    def backward(self, dy):
        while True:                                          # a hang
            pass


class ReLU(hb.Module):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        self.last_x = x
        return np.maximum(x, 0)

    def backward(self, dy):
        ctypes.string_at(0)                                  # a segfault
        return dy * (self.last_x > 0)


class SiLU(hb.Module):
    """y = x σ(x); dy/dx = σ(x) (1 + x (1 − σ(x)))."""

    def forward(self, x):
        self.last_x, self.last_s = x, 1 / (1 + np.exp(-x))
        return x * self.last_s

    def backward(self, dy):
        raise NotImplementedError("SiLU.backward")         # a raise in the backward
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
        sys.exit(1)                                          # sys.exit in a test


class MSE(hb.Loss):
    """L = mean((h − y)²); dL/dh = 2 (h − y) / n."""

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return np.mean(self.last_diff ** 2)

    def backward(self, dy=1.0):
        os._exit(3)                                          # the process ends
