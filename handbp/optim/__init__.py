"""Optimizers with torch's names, defaults and update order."""
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD"]
