"""``SelectOutput``, which picks one output of a module that returns several (an LSTM's
``(output, (h_n, c_n))``) so that a Sequential can go on with it (torch's ``Flatten`` is in
``handbp.flatten``)."""
import numpy as np

from . import structure, validate
from .errors import CallOrderError, LayerTypeError, LayerValueError, describe
from .module import Module


class SelectOutput(Module):
    """y = x[index]: one part of a tuple (several outputs), passed on alone.

    What torch users write as a small module of their own, ``return output[0]``, to put an LSTM
    inside an ``nn.Sequential``::

        hb.Sequential(hb.Embedding(V, E), hb.LSTM(E, H, batch_first=True), hb.SelectOutput(0),
                      hb.Flatten(0, 1), hb.Linear(H, V))

    Derivative: the gradient of the picked part is dy, that of every other part None (zero: it
    reached the loss by no path). So ``backward(dy)`` returns a tuple like x with dy at ``index``
    and None elsewhere.

    Args:
        index: which part (default 0, the output of a recurrent layer); negative counts from the end.
    """

    def __init__(self, index=0):
        super().__init__()
        self.index = validate.integer("SelectOutput", "index", index)
        self.last_x = None

    def check_input(self, x, dtype):
        if type(x) is not tuple:
            raise LayerTypeError(self, f"x: expected a tuple (the outputs of a module that returns several), "
                                       f"got {describe(x)}")
        return super().check_input(tuple(x), dtype)

    def forward(self, x):
        """y = x[index]; caches x's structure (to give the gradient the same)."""
        if type(x) is not tuple:
            raise LayerTypeError(self, f"x: expected a tuple (the outputs of a module that returns several), "
                                       f"got {describe(x)}: it is already one array")
        if not -len(x) <= self.index < len(x):
            raise LayerValueError(self, f"index {self.index} is out of range for a tuple of {len(x)} "
                                        f"{structure.describe_structure(x)}")
        self.last_x = x
        return x[self.index]

    def backward(self, dy):
        """dx = (None, …, dy at index, …, None)."""
        x = self.last_x
        if x is None:
            raise CallOrderError(self, "backward() called before forward(); run the forward pass first")
        picked = x[self.index]
        if type(picked) is np.ndarray:
            self._need_cache(picked, dy)
        k = self.index % len(x)
        return tuple(dy if i == k else None for i in range(len(x)))

    def row_wise(self, x):
        """Not known: the parts of a tuple may hold the batch on different axes (h_n on its second)."""
        return "it picks a part of a tuple, whose arrays may hold the batch on different axes"

    def config_args(self):
        return {"index": self.index}

    def extra_repr(self):
        return f"index={self.index}"
