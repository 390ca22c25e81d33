"""Embedding: a lookup table of vectors, indexed by integers (token ids)."""
import numpy as np

from . import validate
from .errors import ArgumentTypeError, CallOrderError, LayerValueError, describe
from .layers import init_rng
from .module import Module, Parameter


class Embedding(Module):
    """y = W[x]: row x of the weight for each index in x.

    Derivative: dW[k] = Σ of dy over the positions where x = k (rows that no index picked get 0,
    and so does ``padding_idx``'s row); the indices get no gradient (they are not numbers one can
    move by a little).

    Args (torch's):
        num_embeddings: the number of rows (the vocabulary's size).
        embedding_dim: the size of each row.
        padding_idx: an index whose row starts at zeros and is never trained (its gradient is
            always 0); negative counts from the end, as in torch. Default None.
        dtype (keyword): float64 (default) or float32. rng (keyword): as ``Linear``'s; the
            initial rows are drawn from N(0, 1), torch's init.

    Shape:
        x: integer indices of any shape, each in [0, num_embeddings); y: x's shape + (embedding_dim,).

    Attributes:
        weight: Parameter (num_embeddings, embedding_dim).

    torch's ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` are not provided.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=np.float64, rng=None):
        super().__init__()
        num_embeddings = validate.integer("Embedding", "num_embeddings", num_embeddings, low=1)
        embedding_dim = validate.integer("Embedding", "embedding_dim", embedding_dim, low=0)
        if padding_idx is not None:
            padding_idx = validate.integer("Embedding", "padding_idx", padding_idx, low=-num_embeddings,
                                           high=num_embeddings - 1,
                                           what=f"None or an index in [{-num_embeddings}, {num_embeddings})")
            padding_idx %= num_embeddings           # torch stores a negative one counted from the end
        dtype = validate.float_dtype("Embedding", "dtype", dtype)
        rng = init_rng("Embedding", rng)
        W = rng.normal(0.0, 1.0, (num_embeddings, embedding_dim)).astype(dtype)
        if padding_idx is not None:
            W[padding_idx] = 0
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.weight = Parameter(W)
        self.last_x = None

    def check_input(self, x, dtype):
        """Integer indices in [0, num_embeddings) (a list, or an array of any integer dtype), as a
        copy the model owns. (``dtype`` is the model's, which indices do not have.)"""
        given = x
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except (TypeError, ValueError):
                x = np.asarray(None, dtype=object)
        if x.dtype.kind not in "iu":
            raise ArgumentTypeError(f"Embedding: x: expected integer indices, got {describe(given)}"
                                    + (" (class ids as floats? convert with x.astype(np.int64))"
                                       if x.dtype.kind == "f" else ""))
        bad = (x < 0) | (x >= self.num_embeddings)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise LayerValueError(self, f"x: expected indices in [0, {self.num_embeddings}), got {x[first]} at "
                                        f"index {first}")
        return x if x is not given and x.base is None else x.copy()

    def forward(self, x):
        """y = W[x]; caches x (needed for dW)."""
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
            raise LayerValueError(self, f"x: expected an array of integer indices, got {describe(x)}")
        self.last_x = x
        return self.weight.data[x]

    def backward(self, dy):
        """dW[k] = Σ dy over the positions where x = k, row padding_idx left at 0; returns None
        (indices have no gradient)."""
        x = self.last_x
        if x is None:
            raise CallOrderError(self, "backward() called before forward(); run the forward pass first, it caches "
                                       "what backward needs")
        self._need_cache(x, dy, x.shape + (self.embedding_dim,), self.weight.dtype)
        dW = np.zeros(self.weight.shape, dtype=dy.dtype)
        np.add.at(dW, x.reshape(-1), dy.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            dW[self.padding_idx] = 0
        self.weight.accumulate(dW, fresh=True)
        return None

    def row_wise(self, x):
        """None: each index is looked up on its own."""
        return None

    def config_args(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx}

    @classmethod
    def state_shapes(cls, num_embeddings, embedding_dim, padding_idx=None):
        """weight (num_embeddings, embedding_dim); see ``Module.state_shapes``."""
        yield "weight", (num_embeddings, embedding_dim)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + (
            f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
