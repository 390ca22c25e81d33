"""Optimizers with torch's names, defaults and update order, and learning-rate schedulers
(``handbp.optim.lr_scheduler``, as ``torch.optim.lr_scheduler``)."""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
