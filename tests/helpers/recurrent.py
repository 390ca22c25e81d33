"""What the recurrent tests share: the recurrent classes (found in the library, so a new one is
covered by default), a builder for each with its input, and ``Readout``, a module that takes every
output of a recurrent layer to the loss (so that the gradients of h_n and c_n are exercised)."""
import numpy as np

import handbp as hb
from handbp.structure import flatten

SEQUENCE_CLASSES = sorted((c for c in vars(hb).values() if isinstance(c, type) and issubclass(c, hb.recurrent.RNNBase)),
                          key=lambda c: c.__name__)
CELL_CLASSES = sorted((c for c in vars(hb).values() if isinstance(c, type) and issubclass(c, hb.recurrent.RNNCellBase)),
                      key=lambda c: c.__name__)
# RNN twice: its two nonlinearities
SEQUENCE_KINDS = [(c.__name__, nl) for c in SEQUENCE_CLASSES for nl in (("tanh", "relu") if c is hb.RNN else (None,))]
CELL_KINDS = [(c.__name__, nl) for c in CELL_CLASSES for nl in (("tanh", "relu") if c is hb.RNNCell else (None,))]


def kind_id(kind, nonlinearity):
    return kind + (f"-{nonlinearity}" if nonlinearity else "")


def build(kind, nonlinearity, input_size, hidden_size, rng, **kwargs):
    extra = {"nonlinearity": nonlinearity} if nonlinearity else {}
    return getattr(hb, kind)(input_size, hidden_size, rng=rng, **extra, **kwargs)


def is_lstm(module):
    return isinstance(module, (hb.LSTM, hb.LSTMCell))


def initial_state(module, shape, rng, dtype):
    """h0 (an LSTM's (h0, c0)) of ``shape``."""
    if is_lstm(module):
        return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def sequence_input(module, T, N, rng, dtype, with_state, batched=True):
    """x for a sequence layer, with (x, hx) when ``with_state``."""
    D = 2 if module.bidirectional else 1
    if batched:
        shape = (N, T, module.input_size) if module.batch_first else (T, N, module.input_size)
        state_shape = (module.num_layers * D, N, module.hidden_size)
    else:
        shape, state_shape = (T, module.input_size), (module.num_layers * D, module.hidden_size)
    x = rng.normal(size=shape).astype(dtype)
    return (x, initial_state(module, state_shape, rng, dtype)) if with_state else x


def cell_input(module, N, rng, dtype, with_state, batched=True):
    x = rng.normal(size=(N, module.input_size) if batched else (module.input_size,)).astype(dtype)
    state_shape = (N, module.hidden_size) if batched else (module.hidden_size,)
    return (x, initial_state(module, state_shape, rng, dtype)) if with_state else x


class Readout(hb.Module):
    """y = every array of x, flattened and concatenated (a tuple's parts all reach the loss).
    Derivative: dx = dy cut back into the parts' shapes, in x's structure."""

    def __init__(self):
        super().__init__()
        self.last_x = None

    def forward(self, x):
        self.last_x = x
        return np.concatenate([p.reshape(-1) for p in flatten(x)])

    def backward(self, dy):
        """dx = dy split and reshaped like x."""
        parts, k = [], 0
        for p in flatten(self.last_x):
            parts.append(dy[k:k + p.size].reshape(p.shape))
            k += p.size
        it = iter(parts)

        def rebuild(t):
            return tuple(rebuild(s) for s in t) if type(t) is tuple else next(it)
        return rebuild(self.last_x)


def register_readout():
    """Readout's torch twin (torch.cat of the flattened parts), registered once."""
    import torch

    import crosscheck as cc
    from crosscheck.registry import entry
    if entry(Readout) is None:
        class TorchReadout(torch.nn.Module):
            def forward(self, x):
                return torch.cat([p.reshape(-1) for p in flatten(x)])
        cc.register(Readout, lambda m, child: TorchReadout())
