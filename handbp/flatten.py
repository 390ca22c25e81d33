"""Flatten: a reshape between the convolutional part of a network and its fully connected part."""
import math

from . import validate
from .errors import LayerValueError
from .module import Module


class Flatten(Module):
    """y = x with axes ``start_dim`` … ``end_dim`` merged into one: torch's Flatten.

    ``Flatten()`` turns ``(N, C, H, W)`` into ``(N, C·H·W)``; an unbatched ``(C, H, W)`` becomes
    ``(C, H·W)``, as in torch (the axes are counted the same way with or without a batch).

    Args:
        start_dim: the first axis merged (default 1). end_dim: the last (default -1, the last axis).

    Shape:
        x: ``(*, S_start, …, S_end, *)``; y: ``(*, S_start · … · S_end, *)``.
    """

    elementwise = False

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = validate.integer("Flatten", "start_dim", start_dim)
        self.end_dim = validate.integer("Flatten", "end_dim", end_dim)
        self.last_shapes = None        # the shapes of x and y, for dy's check and dx
        self.last_dtype = None         # x's dtype, which dy must have

    def _dims(self, x):
        """start_dim and end_dim as axes of x (counted from the front), or a clear error."""
        n = max(x.ndim, 1)              # a 0-d x counts as one axis, as in torch
        dims = []
        for name, d in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -n <= d < n:
                raise LayerValueError(self, f"{name}: expected an axis in [{-n}, {n - 1}] for x of shape {x.shape}, "
                                            f"got {d}")
            dims.append(d % n)
        if dims[0] > dims[1]:
            raise LayerValueError(self, f"start_dim {self.start_dim} comes after end_dim {self.end_dim} for x of shape "
                                        f"{x.shape} (axes {dims[0]} and {dims[1]})")
        return dims

    def forward(self, x):
        """y = x.reshape(…, S_start · … · S_end, …); caches x's shape."""
        start, end = self._dims(x)
        shape = x.shape or (1,)
        y = x.reshape(shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])
        self.last_shapes, self.last_dtype = (x.shape, y.shape), x.dtype
        return y

    def backward(self, dy):
        """dx = dy reshaped back to x's shape (a reshape moves no value)."""
        shapes = self.last_shapes
        self._need_cache(shapes, dy, None if shapes is None else shapes[1], self.last_dtype)
        return dy.reshape(shapes[0])

    def row_wise(self, x):
        """The batch axis is left alone unless it is flattened too."""
        return None if self._dims(x)[0] >= 1 else "it flattens the batch axis into the others"

    def config_args(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

