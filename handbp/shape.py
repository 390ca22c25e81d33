"""Modules that only move values around: ``Flatten`` (torch's) and ``SelectOutput``, which picks
one output of a module that returns several (an LSTM's ``(output, (h_n, c_n))``) so that a
Sequential can go on with it."""
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


class Flatten(Module):
    """Flattens the axes ``start_dim`` … ``end_dim`` into one (torch's ``nn.Flatten``; defaults
    1 and −1 keep the batch axis). ``Flatten(0, 1)`` turns (N, T, H) into (N·T, H): every step
    of every sequence a row, for a Linear and a CrossEntropyLoss.

    Derivative: none beyond the reshape; dx = dy reshaped to x's shape.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = validate.integer("Flatten", "start_dim", start_dim)
        self.end_dim = validate.integer("Flatten", "end_dim", end_dim)
        self.last_shape = self.last_dtype = None

    def _axes(self, ndim):
        n = max(ndim, 1)
        start, end = self.start_dim, self.end_dim
        for name, d in (("start_dim", start), ("end_dim", end)):
            if not -n <= d < n:
                raise LayerValueError(self, f"{name} {d} is out of range for an input of {ndim} dimensions")
        start, end = start % n, end % n
        if start > end:
            raise LayerValueError(self, f"start_dim {self.start_dim} comes after end_dim {self.end_dim} for an input "
                                        f"of {ndim} dimensions")
        return start, end

    def forward(self, x):
        """y = x reshaped, axes start_dim … end_dim merged."""
        if not isinstance(x, np.ndarray):
            raise LayerTypeError(self, f"x: expected an array, got {describe(x)}")
        start, end = self._axes(x.ndim)
        self.last_shape, self.last_dtype = x.shape, x.dtype
        shape = x.shape if x.ndim else (1,)
        return x.reshape(shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])

    def backward(self, dy):
        """dx = dy reshaped to x's shape."""
        if self.last_shape is None:
            raise CallOrderError(self, "backward() called before forward(); run the forward pass first")
        start, end = self._axes(len(self.last_shape))
        shape = self.last_shape if self.last_shape else (1,)
        out = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
        self._need_cache(self.last_shape, dy, out, self.last_dtype)
        return dy.reshape(self.last_shape)

    def row_wise(self, x):
        """None when the batch axis (the first) stays apart, else why not."""
        try:
            start, _ = self._axes(np.ndim(x))
        except LayerValueError as e:         # (its forward refuses x itself: one sample, say)
            return f"it cannot take this input ({e})"
        return None if start >= 1 else "it merges the batch axis with the next"

    def config_args(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
