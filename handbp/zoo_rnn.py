"""The bug zoo's recurrent bugs: the silent mistakes of backpropagation through time, as mutants of
handbp's LSTM and GRU (``handbp zoo`` runs them with the others; ``handbp.zoo`` has the format).

Each mutant changes one line of the right code (``handbp.recurrent_steps``, ``handbp.recurrent``),
and its forward and backward stay consistent with each other where the bug is in the model (the
gates read in another order, the reverse direction's outputs left unreversed): then a finite-
difference check of the mutant alone passes, and only the comparison with torch finds it.
"""
import numpy as np

from . import optim
from .layers import Linear
from .losses import MSELoss
from .module import Sequential
from .recurrent import GRU, LSTM
from .recurrent_steps import LSTMSteps, add, dot, multiply
from .shape import Flatten, SelectOutput
from .zoo import Bug


# -- the mutants ----------------------------------------------------------------------------------
class _LSTMBackward(LSTMSteps):
    """LSTMSteps whose backward loop is written out here with switches for the mutants below."""

    carry = True            # add the gradient carried from step t + 1 to dh_t
    window = None           # carried back in chunks of this many steps (truncated BPTT), None: all
    tanh_c_in_do = True     # da_o = dh ⊙ tanh(c) ⊙ o(1 − o)

    def backward(self, run, dH, d_state, W_hh):
        i, f, g, o = run["gates"]
        tc, c_prev = run["tanh_c"], run["Cs"][:-1]
        T, N, H = tc.shape
        dc_from_dh = o * (1 - tc * tc)
        k_ifg = np.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], axis=2)
        k_o = (tc if self.tanh_c_in_do else 1) * o * (1 - o)
        dA = np.empty((T, N, 4, H), dtype=tc.dtype)
        da_ifg, da_o, dA_t = dA[:, :, :3], dA[:, :, 3], dA.reshape(T, N, 4 * H)
        dh, dc = d_state[0].copy(), d_state[1].copy()
        for t in range(T - 1, -1, -1):
            if not self.carry or (self.window is not None and t < T - 1 and (T - 1 - t) % self.window == 0):
                dh[...], dc[...] = 0, 0         # the bug: what came back from step t + 1 is dropped
            add(dh, dH[t], dh)
            dc += dh * dc_from_dh[t]
            multiply(dc[:, None, :], k_ifg[t], da_ifg[t])
            multiply(dh, k_o[t], da_o[t])
            multiply(dc, f[t], dc)
            dot(dA_t[t], W_hh, dh)
        return dA_t, dA_t, (dh, dc)


class _NotCarried(_LSTMBackward):
    carry = False


class _Truncated(_LSTMBackward):
    window = 2


class _NoTanhC(_LSTMBackward):
    tanh_c_in_do = False


class LSTMGradNotCarried(LSTM):
    """dh_t = dH[t] only: the gradient that reached h_t through h_{t+1} (and c_t through c_{t+1}) is
    not added, so each step learns from its own output alone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = _NotCarried()


class LSTMTruncatedBPTT(LSTM):
    """Truncated backpropagation through time (chunks of 2 steps) where the full gradient was asked
    for: what is carried back is dropped at every chunk's start."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = _Truncated()


class LSTMOutputGateWithoutTanhC(LSTM):
    """da_o = dh ⊙ o(1 − o): the tanh(c_t) of h_t = o ⊙ tanh(c_t) forgotten in the output gate's
    gradient."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = _NoTanhC()


def _swap_g_o(a):
    """The chunks of a (4H, …) weight or (4H,) bias read as i, f, o, g instead of i, f, g, o."""
    i, f, g, o = np.split(a, 4)
    return np.concatenate([i, f, o, g])


class LSTMGatesSwapped(LSTM):
    """The weights' chunks read in the order i, f, o, g (some papers' and libraries' order) instead
    of torch's i, f, g, o: the cell gate comes out of o's rows and the output gate out of g's. The
    backward is that of the same mistake, consistent with the forward."""

    def _run(self, X, state0, W_ih, W_hh, b_ih, b_hh, reverse=False):
        swapped = [None if w is None else _swap_g_o(w) for w in (W_ih, W_hh, b_ih, b_hh)]
        return super()._run(X, state0, *swapped, reverse=reverse)

    def _run_backward(self, run, dY, d_last, W_ih, W_hh):
        dX, d_state0, grads = super()._run_backward(run, dY, d_last, _swap_g_o(W_ih), _swap_g_o(W_hh))
        return dX, d_state0, tuple(_swap_g_o(g) for g in grads)


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
