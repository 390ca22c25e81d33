"""The bug zoo's recurrent bugs: the silent mistakes of backpropagation through time, as mutants of
handbp's LSTM and GRU (``handbp zoo`` runs them with the others; ``handbp.zoo`` has the format).

Each mutant changes one line of the right code (``handbp.recurrent_steps``, ``handbp.recurrent``),
and its forward and backward stay consistent with each other where the bug is in the model (the
gates read in another order, the reverse direction's outputs left unreversed): then a finite-
difference check of the mutant alone passes, and only the comparison with torch finds it.
"""
import numpy as np

from . import optim
from .flatten import Flatten
from .layers import Linear
from .losses import MSELoss
from .module import Sequential
from .recurrent import GRU, LSTM
from .shape import SelectOutput
from .zoo import Bug


# -- the mutants ----------------------------------------------------------------------------------
# The LSTM's backward through the steps, written plainly, step by step (``LSTMSteps.backward`` is
# the same maths, faster): each of the three mutants below is this code with one line changed.
#
#     for t in reversed(range(T)):
#         dh = dh + dH[t]                               # from step t's output and from step t + 1
#         dc = dc + dh * o[t] * (1 - tc[t] ** 2)         # through h_t = o ⊙ tanh(c_t)
#         da[t, :, 0] = dc * g[t] * i[t] * (1 - i[t])
#         da[t, :, 1] = dc * c_prev[t] * f[t] * (1 - f[t])
#         da[t, :, 2] = dc * i[t] * (1 - g[t] ** 2)
#         da[t, :, 3] = dh * tc[t] * o[t] * (1 - o[t])
#         dh, dc = da[t].reshape(N, 4 * H) @ W_hh, dc * f[t]     # to step t − 1
#
# Each mutant is self-contained (``handbp exercise start bug:...`` writes it out as an exercise).
class LSTMGradNotCarried(LSTM):
    """dh_t = dH[t] only: the gradient that reached h_t through h_{t+1} (and c_t through c_{t+1}) is
    not added, so each step learns from its own output alone."""

    def _steps_backward(self, run, dH, d_state, W_hh):
        i, f, g, o = run["gates"]
        tc, c_prev = run["tanh_c"], run["Cs"][:-1]
        T, N, H = tc.shape
        da = np.empty((T, N, 4, H), dtype=tc.dtype)
        dh, dc = d_state
        for t in reversed(range(T)):
            dh = dH[t]
            dc = dh * o[t] * (1 - tc[t] ** 2)
            da[t, :, 0] = dc * g[t] * i[t] * (1 - i[t])
            da[t, :, 1] = dc * c_prev[t] * f[t] * (1 - f[t])
            da[t, :, 2] = dc * i[t] * (1 - g[t] ** 2)
            da[t, :, 3] = dh * tc[t] * o[t] * (1 - o[t])
            dh, dc = da[t].reshape(N, 4 * H) @ W_hh, dc * f[t]
        da = da.reshape(T, N, 4 * H)
        return da, da, (dh, dc)


class LSTMTruncatedBPTT(LSTM):
    """Truncated backpropagation through time (chunks of 2 steps) where the full gradient was asked
    for: what is carried back is dropped at every chunk's start."""

    def _steps_backward(self, run, dH, d_state, W_hh):
        i, f, g, o = run["gates"]
        tc, c_prev = run["tanh_c"], run["Cs"][:-1]
        T, N, H = tc.shape
        da = np.empty((T, N, 4, H), dtype=tc.dtype)
        dh, dc = d_state
        for t in reversed(range(T)):
            if t < T - 1 and (T - 1 - t) % 2 == 0:
                dh, dc = 0 * dh, 0 * dc
            dh = dh + dH[t]
            dc = dc + dh * o[t] * (1 - tc[t] ** 2)
            da[t, :, 0] = dc * g[t] * i[t] * (1 - i[t])
            da[t, :, 1] = dc * c_prev[t] * f[t] * (1 - f[t])
            da[t, :, 2] = dc * i[t] * (1 - g[t] ** 2)
            da[t, :, 3] = dh * tc[t] * o[t] * (1 - o[t])
            dh, dc = da[t].reshape(N, 4 * H) @ W_hh, dc * f[t]
        da = da.reshape(T, N, 4 * H)
        return da, da, (dh, dc)


class LSTMOutputGateWithoutTanhC(LSTM):
    """da_o = dh ⊙ o(1 − o): the tanh(c_t) of h_t = o ⊙ tanh(c_t) forgotten in the output gate's
    gradient."""

    def _steps_backward(self, run, dH, d_state, W_hh):
        i, f, g, o = run["gates"]
        tc, c_prev = run["tanh_c"], run["Cs"][:-1]
        T, N, H = tc.shape
        da = np.empty((T, N, 4, H), dtype=tc.dtype)
        dh, dc = d_state
        for t in reversed(range(T)):
            dh = dh + dH[t]
            dc = dc + dh * o[t] * (1 - tc[t] ** 2)
            da[t, :, 0] = dc * g[t] * i[t] * (1 - i[t])
            da[t, :, 1] = dc * c_prev[t] * f[t] * (1 - f[t])
            da[t, :, 2] = dc * i[t] * (1 - g[t] ** 2)
            da[t, :, 3] = dh * o[t] * (1 - o[t])
            dh, dc = da[t].reshape(N, 4 * H) @ W_hh, dc * f[t]
        da = da.reshape(T, N, 4 * H)
        return da, da, (dh, dc)


class LSTMGatesSwapped(LSTM):
    """The weights' chunks read in the order i, f, o, g (some papers' and libraries' order) instead
    of torch's i, f, g, o: the cell gate comes out of o's rows and the output gate out of g's. The
    backward is that of the same mistake, consistent with the forward."""

    @staticmethod
    def _swap(a):
        """The chunks of a (4H, …) weight or (4H,) bias read as i, f, o, g instead of i, f, g, o."""
        i, f, g, o = np.split(a, 4)
        return np.concatenate([i, f, o, g])

    def _run(self, X, state0, W_ih, W_hh, b_ih, b_hh, reverse=False):
        swapped = [None if w is None else self._swap(w) for w in (W_ih, W_hh, b_ih, b_hh)]
        return super()._run(X, state0, *swapped, reverse=reverse)

    def _run_backward(self, run, dY, d_last, W_ih, W_hh):
        dX, d_state0, grads = super()._run_backward(run, dY, d_last, self._swap(W_ih), self._swap(W_hh))
        return dX, d_state0, tuple(self._swap(g) for g in grads)


class GRUReverseNotReversed(GRU):
    """Bidirectional, but the reverse direction's outputs are left in the order its steps were taken
    (from the end of the sequence) instead of being put back in the sequence's order: output[t]
    pairs step t forward with step T − 1 − t backward. The backward makes the same mistake."""

    def _run(self, X, state0, W_ih, W_hh, b_ih, b_hh, reverse=False):
        out, last, run = super()._run(X, state0, W_ih, W_hh, b_ih, b_hh, reverse=reverse)
        return (out[::-1] if reverse else out), last, run

    def _run_backward(self, run, dY, d_last, W_ih, W_hh):
        return super()._run_backward(run, dY[::-1] if run["reverse"] else dY, d_last, W_ih, W_hh)


# -- the cases ------------------------------------------------------------------------------------
def sequence_model(layer, bidirectional=False, **kwargs):
    """``(model, loss, optimizer, data)``: the recurrent ``layer`` (a class) reading sequences of 6 steps
    of 3 features, batch_first, its outputs through a Linear to 2 values per step, MSE, SGD."""
    def make(rng):
        H, D = 4, 2 if bidirectional else 1
        model = Sequential(layer(3, H, batch_first=True, bidirectional=bidirectional, rng=rng, **kwargs),
                           SelectOutput(0), Flatten(0, 1), Linear(D * H, 2, rng=rng))
        data = [(rng.normal(size=(5, 6, 3)), rng.normal(size=(30, 2))) for _ in range(3)]
        return model, MSELoss(), optim.SGD(model.parameters(), lr=0.1), data
    return make


BUGS = [
    Bug("rnn-dh-not-carried-back", "LSTM backward: dh_t is the gradient of step t's output alone; what came back "
        "from step t + 1 is not added", sequence_model(LSTMGradNotCarried)),
    Bug("rnn-truncated-bptt", "LSTM backward carries the gradient back in chunks of 2 steps (truncated BPTT) where "
        "the full backpropagation through time was asked for", sequence_model(LSTMTruncatedBPTT)),
    Bug("rnn-output-gate-without-tanh-c", "LSTM backward: the output gate's gradient dh ⊙ o(1 − o) without the "
        "tanh(c_t) of h_t = o ⊙ tanh(c_t)", sequence_model(LSTMOutputGateWithoutTanhC)),
    Bug("rnn-gates-swapped", "LSTM gates read from the weights in the order i, f, o, g instead of torch's i, f, g, o",
        sequence_model(LSTMGatesSwapped)),
    Bug("rnn-reverse-direction-not-reversed", "bidirectional GRU: the reverse direction's outputs left in the "
        "order its steps were taken, not put back in the sequence's order",
        sequence_model(GRUReverseNotReversed, bidirectional=True)),
]
