"""Importing torch lazily, with a clear message when it is missing, and array conversions."""
import contextlib

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


_BLAS = []    # a threadpoolctl controller of the loaded BLAS libraries, made once (scanning the loaded libraries is slow next to a step)


def _blas_controller():
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except ImportError:
            _BLAS.append(None)
    return _BLAS[0]


@contextlib.contextmanager
def threads_taking_turns(torch):
    """Within a lockstep step NumPy (its BLAS pool) and torch (its OpenMP pool) take turns; left at
    full size each, one pool's idle threads spin while the other works, and the two slow each other
    down (measured on 2 cores: 40 steps of a width-128 net in 0.53–0.69 s against 0.25 s with one
    thread each; width 1024: 1.36 s against 1.00–1.10 s). So for the block, the threads torch has
    are shared out: torch keeps half (at least 1) and BLAS gets the rest (never more than it had).
    Without threadpoolctl BLAS cannot be limited, and torch runs on 1 thread instead. Restored on
    exit. An xdist worker of the plugin, already at 1 thread each, is left as it is."""
    t = torch.get_num_threads()
    blas = _blas_controller()
    mine = max(1, t // 2) if blas is not None else 1
    theirs = max(1, t - mine)
    limit = None
    if blas is not None and blas.lib_controllers:
        if max(c.num_threads for c in blas.lib_controllers) > theirs:
            limit = blas.limit(limits=theirs)
    if mine != t:
        torch.set_num_threads(mine)
    try:
        yield
    finally:
        if mine != t:
            torch.set_num_threads(t)
        if limit is not None:
            limit.restore_original_limits()
