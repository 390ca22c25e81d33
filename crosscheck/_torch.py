"""Importing torch lazily, with a clear message when it is missing, and array conversions."""
import numpy as np

INSTALL_HINT = 'crosscheck needs PyTorch: install it with  pip install "handbp[torch]"'


def require_torch():
    """Return the torch module, or raise ImportError saying how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT}  ({e})") from None
    return torch


def to_tensor(a, requires_grad=False):
    """A torch tensor holding a copy of ``a`` (dtype preserved; integer targets become int64)."""
    torch = require_torch()
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        a = a.astype(np.int64)
    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(True) if requires_grad else t


def to_numpy(t):
    """A NumPy view (or the value) of a tensor, detached; ``None`` stays ``None``."""
    if t is None:
        return None
    return t.detach().numpy()
