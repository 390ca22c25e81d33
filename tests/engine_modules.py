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
    # convolutional layers, each keeping the shape of its input (IMAGE or, as noted, SHAPE)
    "Conv1d": lambda: hb.Conv1d(4, 4, 3, padding=1, rng=np.random.default_rng(0)),       # (C, L) = SHAPE
    "Conv2d": lambda: hb.Conv2d(3, 3, 3, padding="same", groups=3, rng=np.random.default_rng(0)),
    "MaxPool1d": lambda: hb.MaxPool1d(3, stride=1, padding=1),                              # (C, L) = SHAPE
    "MaxPool2d": lambda: hb.MaxPool2d(3, stride=1, padding=1),
    "AvgPool2d": lambda: hb.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "AdaptiveAvgPool2d": lambda: hb.AdaptiveAvgPool2d(IMAGE[2:]),
    "Flatten": hb.Flatten,                                                                  # SHAPE
    "BatchNorm2d": lambda: hb.BatchNorm2d(3), "BatchNorm2d-eval": lambda: hb.BatchNorm2d(3).eval(),
    "GroupNorm": lambda: hb.GroupNorm(3, 3),                                                # SHAPE
    "Dropout2d": lambda: hb.Dropout2d(0.5, rng=np.random.default_rng(0)),
}
LOSSES = {"MeanSquaredError": hb.MeanSquaredError, "MSELoss": hb.MSELoss, "CrossEntropyLoss": hb.CrossEntropyLoss,
          "BCEWithLogitsLoss": hb.BCEWithLogitsLoss, "NLLLoss": hb.NLLLoss, "L1Loss": hb.L1Loss,
          "HuberLoss": hb.HuberLoss, "SmoothL1Loss": hb.SmoothL1Loss, "MultiMarginLoss": hb.MultiMarginLoss}
SHAPE = (4, 3)
IMAGE = (2, 3, 4, 5)             # (N, C, H, W): the input of the layers that need an image
CLASS_INDEX_LOSSES = (hb.CrossEntropyLoss, hb.NLLLoss, hb.MultiMarginLoss)


def shape_of(layer):
    """The input (and output) shape of the layer named ``layer`` in LAYERS."""
    return IMAGE if type(LAYERS[layer]()).__name__.endswith("2d") else SHAPE


def prefix_for(layer, rng):
    """A module to put before ``layer`` in a Sequential: a Linear for SHAPE, an Identity for images."""
    return hb.Linear(3, 3, rng=rng) if shape_of(layer) == SHAPE else hb.Identity()


def public_classes(base):
    """The concrete classes handbp exports that derive from ``base``."""
    return {obj for name in hb.__all__ for obj in [getattr(hb, name)]
            if isinstance(obj, type) and issubclass(obj, base)}


def targets(loss, rng, dtype=np.float64):
    """A target for ``loss`` and predictions of shape (4, 3)."""
    if isinstance(loss, CLASS_INDEX_LOSSES):
        return rng.integers(0, 3, 4)
    if isinstance(loss, hb.BCEWithLogitsLoss):
        return rng.uniform(0, 1, SHAPE).astype(dtype)
    return rng.normal(size=SHAPE).astype(dtype)

