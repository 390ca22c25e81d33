"""Every public layer of handbp, built for tests that run over all of them (the list is checked
against the library, so a new layer joins by default or fails the completeness test)."""
import numpy as np

import handbp as hb

# name -> a factory of a layer that takes x of shape (4, 3) and returns an output of shape (4, 3);
# Dropout draws from its own Generator, so two copies built alike draw the same masks
LAYERS = {
    "Linear": lambda: hb.Linear(3, 3, rng=np.random.default_rng(0)),
    "Sigmoid": hb.Sigmoid, "Tanh": hb.Tanh, "ReLU": hb.ReLU, "LeakyReLU": lambda: hb.LeakyReLU(0.2),
    "Identity": hb.Identity, "Softmax": hb.Softmax,
    "GELU": hb.GELU, "GELU-tanh": lambda: hb.GELU("tanh"),
    "BatchNorm1d": lambda: hb.BatchNorm1d(3), "BatchNorm1d-plain": lambda: hb.BatchNorm1d(3, affine=False),
    "BatchNorm1d-eval": lambda: hb.BatchNorm1d(3).eval(),
    "LayerNorm": lambda: hb.LayerNorm(3), "LayerNorm-plain": lambda: hb.LayerNorm(3, elementwise_affine=False),
    "Dropout": lambda: hb.Dropout(0.5, rng=np.random.default_rng(0)),
    "Dropout-eval": lambda: hb.Dropout(0.5, rng=np.random.default_rng(0)).eval(),
    "RNNCell": lambda: hb.RNNCell(3, 3, rng=np.random.default_rng(0)),
    "GRUCell": lambda: hb.GRUCell(3, 3, rng=np.random.default_rng(0)),
    "Flatten": hb.Flatten,
}
# the layers whose input or output is not one array of shape (4, 3): integer indices, tuples
# (several inputs or outputs); tests/recurrent covers them
STRUCTURED = {
    "Embedding": lambda: hb.Embedding(5, 3, rng=np.random.default_rng(0)),
    "SelectOutput": hb.SelectOutput,
    "RNN": lambda: hb.RNN(3, 3, rng=np.random.default_rng(0)),
    "LSTM": lambda: hb.LSTM(3, 3, rng=np.random.default_rng(0)),
    "GRU": lambda: hb.GRU(3, 3, rng=np.random.default_rng(0)),
    "LSTMCell": lambda: hb.LSTMCell(3, 3, rng=np.random.default_rng(0)),
}
LOSSES = {"MeanSquaredError": hb.MeanSquaredError, "MSELoss": hb.MSELoss, "CrossEntropyLoss": hb.CrossEntropyLoss,
          "BCEWithLogitsLoss": hb.BCEWithLogitsLoss}
SHAPE = (4, 3)


def public_classes(base):
    """The concrete classes handbp exports that derive from ``base``."""
    return {obj for name in hb.__all__ for obj in [getattr(hb, name)]
            if isinstance(obj, type) and issubclass(obj, base)}


def targets(loss, rng, dtype=np.float64):
    """A target for ``loss`` and predictions of shape (4, 3)."""
    if isinstance(loss, hb.CrossEntropyLoss):
        return rng.integers(0, 3, 4)
    if isinstance(loss, hb.BCEWithLogitsLoss):
        return rng.uniform(0, 1, SHAPE).astype(dtype)
    return rng.normal(size=SHAPE).astype(dtype)

