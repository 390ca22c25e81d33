"""handbp: backpropagation written by hand in NumPy.

Every layer's ``forward`` caches what its ``backward`` needs; every ``backward`` is the chain rule,
with its derivative in the docstring. Layouts and names follow PyTorch, so that ``crosscheck`` can
build a torch twin and compare every step.
"""
from . import checkpoint, datasets, numerical, optim   # hb.checkpoint.register: classes of your own
from .activations import ELU, GELU, Hardtanh, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from .checkpoint import CheckpointError, load, load_into, save
from .draw import draw
from .dropout import Dropout
from .errors import CallOrderError
from .explain import explain
from .layers import Linear
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MeanSquaredError, MSELoss
from .module import Module, Parameter, Sequential
from .network import DNN, gradient_descent
from .normalization import BatchNorm1d, LayerNorm
from .train import TrainingDiverged, accuracy, fit
# convolutional networks
from .conv import Conv1d, Conv2d
from .dropout import Dropout2d
from .flatten import Flatten
from .losses import HuberLoss, L1Loss, MultiMarginLoss, NLLLoss, SmoothL1Loss
from .normalization import BatchNorm2d, GroupNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool1d, MaxPool2d

__version__ = "0.1.0"

# ``from handbp import *`` gives what the seed notebook uses, and the rest of the public API
__all__ = [
    "DNN", "Sigmoid", "MeanSquaredError", "gradient_descent",
    "Parameter", "Module", "Sequential", "Linear",
    "Tanh", "ReLU", "LeakyReLU", "Identity", "Softmax", "GELU", "ELU", "SiLU", "Softplus", "Hardtanh",
    "BatchNorm1d", "LayerNorm", "Dropout",
    "Loss", "MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss",
    "optim", "numerical", "fit", "accuracy", "datasets", "save", "load", "load_into",
    "CheckpointError", "CallOrderError", "TrainingDiverged", "explain", "draw",
]
__all__ += [
    "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "BatchNorm2d", "GroupNorm", "Dropout2d",
    "NLLLoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "MultiMarginLoss",
]

# -- recurrent networks: several inputs and outputs (handbp.structure), sequences, gradient clipping
from . import nn, structure  # noqa: E402  (hb.nn.utils.clip_grad_norm_, as torch.nn.utils)
from .embedding import Embedding  # noqa: E402
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: E402
from .shape import SelectOutput  # noqa: E402

__all__ += ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Embedding", "SelectOutput", "nn"]
