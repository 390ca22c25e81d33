"""Small tasks generated in code, so that training needs no download.

Each returns ``(x, y)`` as float64 arrays (class targets as int64) from an explicit seed or
``np.random.Generator``.
"""
import numpy as np

from . import validate


def _check(owner, n, noise, rng, min_n=1):
    """The task's arguments, checked: ``(n, noise, Generator)``."""
    return (validate.integer(owner, "n", n, low=min_n), validate.number(owner, "noise", noise, low=0),
            validate.generator(owner, "rng", rng))


def spirals(n=400, noise=0.1, rng=0):
    """Two interleaved spirals in the plane: x ``(n, 2)``, y ``(n,)`` with classes 0 and 1.
    A classic that no linear model separates; a small tanh MLP reaches ~100% train accuracy."""
    n, noise, rng = _check("spirals", n, noise, rng, min_n=2)
    y = np.arange(n) % 2
    t = rng.uniform(0.25, 1.0, n) * 3 * np.pi          # angle along the arm
    r = t / (3 * np.pi) * 2.0                           # radius grows with the angle
    phase = np.pi * y
    x = np.stack([r * np.cos(t + phase), r * np.sin(t + phase)], axis=1)
    x += rng.normal(0.0, noise * 0.5, x.shape) if noise else 0
    return x, y.astype(np.int64)


def xor(n=200, noise=0.1, rng=0):
    """XOR: the four corners (±1, ±1) with noise; class 1 where the signs differ.
    x ``(n, 2)``, y ``(n,)``."""
    n, noise, rng = _check("xor", n, noise, rng)
    corners = rng.integers(0, 2, (n, 2))
    x = corners * 2.0 - 1.0 + rng.normal(0.0, noise, (n, 2))
    y = (corners[:, 0] != corners[:, 1]).astype(np.int64)
    return x, y


def sine(n=200, noise=0.05, rng=0):
    """Noisy sine regression: x uniform in [−π, π] ``(n, 1)``, y = sin(x) + noise ``(n, 1)``."""
    n, noise, rng = _check("sine", n, noise, rng)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    return x, np.sin(x) + rng.normal(0.0, noise, (n, 1))


TASKS = {"spirals": spirals, "xor": xor, "sine": sine}


def digits(test_fraction=0.2, rng=0):
    """scikit-learn's handwritten digits: 1,797 grey 8 × 8 images of 0–9 (shipped inside
    scikit-learn, no download), split into a training and a held-out test set, each class in the
    same proportion (``test_fraction`` of it, rounded, to the test set), then standardized: both sets
    less the training images' mean pixel, over their pixels' standard deviation (two numbers, from
    the training set only, so that nothing of the test set leaks into the training). Centred inputs
    train the CNN faster and to a better test accuracy than the raw 0–16 or [0, 1] values.

    Returns ``(x_train, y_train, x_test, y_test)``: images ``(n, 1, 8, 8)`` (one channel, as a
    Conv2d takes them) and labels ``(n,)`` int64. Needs scikit-learn: ``pip install "handbp[digits]"``.
    """
    test_fraction = validate.number("digits", "test_fraction", test_fraction, low=0, high=1, low_open=True,
                                    high_open=True)
    rng = validate.generator("digits", "rng", rng)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError('digits: the images ship with scikit-learn, which is not installed; install it with: '
                          'pip install "handbp[digits]"') from None
    data = load_digits()
    x = data.images[:, None, :, :].astype(np.float64)          # pixel values are 0..16
    y = data.target.astype(np.int64)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test[members[:int(round(test_fraction * len(members)))]] = True
    mean, std = x[~test].mean(), x[~test].std()
    x = (x - mean) / std
    return x[~test], y[~test], x[test], y[test]
