"""The recurrence of one layer in one direction, forward and back through time: the Elman RNN, the
LSTM and the GRU cell, each as a loop over the steps of a sequence (``handbp.recurrent`` builds
the layers, the cells, stacking and directions on top of these).

Every step of every cell is a function of the input's projection and the previous state::

    gates_t = (x_t W_ihᵀ + b_ih) + (h_{t−1} W_hhᵀ + b_hh)

The input's projection does not depend on the recurrence, so the caller computes it for all the
steps at once, one matrix product (``gx``, shape (T, N, G)), and the loop is left with one small
product per step (h_{t−1} W_hhᵀ) and the element-wise gate arithmetic. Backward, the same split:
the loop carries dh (and dc) back from step to step and records the gradient of each step's
gates; the weight gradients are then sums over the steps, which the caller forms as one product
each (dW_ih = Σ_t dgates_tᵀ x_t, dW_hh = Σ_t dgates_tᵀ h_{t−1}).

Backpropagation through time in one line: h_t reaches the loss twice, through the output at step
t (the upstream gradient ``dH[t]``) and through h_{t+1}; so dh_t = dH[t] + (dgates_{t+1}) W_hh,
summed before it is used. Forgetting the second term is the classic silent bug (training then
only learns one-step dependencies).

Arrays are time-major, in the order the steps are taken (the caller reverses a sequence for the
reverse direction). The state is a tuple: (h,), or (h, c) for the LSTM (``states`` arrays).
``forward(gx, state0, W_hh, b_hh)`` returns ``Hs``, (T + 1, N, H), with Hs[0] = h0 and
Hs[t + 1] = h_t, the last state, and a ``run`` holding what ``backward`` needs;
``backward(run, dH, d_state, W_hh)`` takes the gradients of every h_t from above (``dH``,
(T, N, H)) and of the last state, and returns the gradients of the input-side and the hidden-side
gate pre-activations (``dGx``, ``dGh``; the same array unless the cell treats them apart, as the
GRU does) and of the initial state. ``input_bias`` is the bias the
caller adds to the input's projection (every bias that can be added outside the loop).

σ is computed as ½ + ½ tanh(a/2) (the same function, no overflow for any a): the gates' rows of
W_hh are halved once per call, so one ``tanh`` per step serves all the gates.
"""
import numpy as np


# positional ``out`` arguments: a call on a small array costs about half of what it does with out=
dot, add, subtract, multiply, tanh = np.dot, np.add, np.subtract, np.multiply, np.tanh


def _half_rows(W, halved, chunks):
    """W with the rows of the chunks in ``halved`` × ½, transposed and contiguous for h W_hhᵀ (one
    ``dot`` per step), and the scale and shift that turn tanh(½a) into σ(a) = ½ + ½ tanh(½a) for
    those chunks (and leave tanh(a) for the others)."""
    H = W.shape[0] // chunks
    scale = np.ones(W.shape[0], dtype=W.dtype)
    for k in halved:
        scale[k * H:(k + 1) * H] = 0.5
    shift = np.where(scale == 0.5, scale, 0).astype(W.dtype)
    return np.ascontiguousarray((W * scale[:, None]).T), scale, shift


class RNNSteps:
    """Elman RNN: h_t = tanh(a_t) (or relu(a_t)), a_t = gx_t + h_{t−1} W_hhᵀ."""

    chunks, states = 1, 1

    def __init__(self, nonlinearity="tanh"):
        self.nonlinearity = nonlinearity

    def input_bias(self, b_ih, b_hh):
        return b_ih + b_hh

    def forward(self, gx, state, W_hh, b_hh):
        (h0,), T = state, len(gx)
        Hs = np.empty((T + 1,) + h0.shape, dtype=gx.dtype)
        Hs[0] = h0
        WT = np.ascontiguousarray(W_hh.T)
        relu = self.nonlinearity == "relu"
        for t in range(T):
            a = Hs[t + 1]
            dot(Hs[t], WT, a)
            add(a, gx[t], a)
            if relu:
                np.maximum(a, 0, out=a)
            else:
                tanh(a, a)
        return Hs, (Hs[T],), {"Hs": Hs}

    def backward(self, run, dH, d_state, W_hh):
        """dh_t = dH[t] + da_{t+1} W_hh;  da_t = dh_t ⊙ (1 − h_t²) (tanh) or dh_t ⊙ [h_t > 0] (relu)."""
        h = run["Hs"][1:]
        local = (h > 0).astype(h.dtype) if self.nonlinearity == "relu" else 1 - h * h   # da/dh, all steps at once
        dA = np.empty_like(h)
        dh = d_state[0].copy()
        for t in range(len(h) - 1, -1, -1):
            add(dh, dH[t], dh)
            multiply(dh, local[t], dA[t])
            dot(dA[t], W_hh, dh)
        return dA, dA, (dh,)


class LSTMSteps:
    """LSTM, gates in torch's order i, f, g, o::

        i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g);  a = gx_t + h_{t−1} W_hhᵀ
        c_t = f ⊙ c_{t−1} + i ⊙ g
        h_t = o ⊙ tanh(c_t)
    """

    chunks, states = 4, 2

    def input_bias(self, b_ih, b_hh):
        return b_ih + b_hh

    def forward(self, gx, state, W_hh, b_hh):
        (h0, c0), T = state, len(gx)
        N, H = h0.shape
        WT, scale, shift = _half_rows(W_hh, (0, 1, 3), 4)
        gates = gx                                    # filled in place: (T, N, 4H), then i, f, g, o
        gates *= scale
        i, f, g, o = (gates.reshape(T, N, 4, H)[:, :, k] for k in range(4))
        Hs = np.empty((T + 1, N, H), dtype=gx.dtype)
        Cs = np.empty((T + 1, N, H), dtype=gx.dtype)
        tanh_c = np.empty((T, N, H), dtype=gx.dtype)
        Hs[0], Cs[0] = h0, c0
        hW, ig = np.empty((N, 4 * H), dtype=gx.dtype), np.empty((N, H), dtype=gx.dtype)
        # step t's slices of every buffer (zip makes them in C, cheaper than indexing each one)
        for a, h_prev, h, c_prev, c, tc, it, ft, gt, ot in zip(gates, Hs[:-1], Hs[1:], Cs[:-1], Cs[1:], tanh_c,
                                                              i, f, g, o):
            dot(h_prev, WT, hW)
            add(a, hW, a)
            tanh(a, a)
            multiply(a, scale, a)                     # σ = ½ + ½ tanh(½a) for i, f, o
            add(a, shift, a)
            multiply(ft, c_prev, c)                   # c = f ⊙ c_{t−1} + i ⊙ g
            multiply(it, gt, ig)
            add(c, ig, c)
            tanh(c, tc)                               # h = o ⊙ tanh(c)
            multiply(ot, tc, h)
        return Hs, (Hs[T], Cs[T]), {"Hs": Hs, "Cs": Cs, "tanh_c": tanh_c, "gates": (i, f, g, o)}

    def backward(self, run, dH, d_state, W_hh):
        """With dh_t = dH[t] + da_{t+1} W_hh and dc_t = dc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o ⊙ (1 − tanh²(c_t)):
        da_i = dc ⊙ g ⊙ i(1 − i),  da_f = dc ⊙ c_{t−1} ⊙ f(1 − f),  da_g = dc ⊙ i ⊙ (1 − g²),
        da_o = dh ⊙ tanh(c_t) ⊙ o(1 − o)."""
        i, f, g, o = run["gates"]
        tc, c_prev = run["tanh_c"], run["Cs"][:-1]
        T, N, H = tc.shape
        # the factors that do not depend on the recurrence, for all steps at once
        dc_from_dh = o * (1 - tc * tc)
        k_ifg = np.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], axis=2)   # (T, N, 3, H)
        k_o = tc * o * (1 - o)
        dA = np.empty((T, N, 4, H), dtype=tc.dtype)
        da_ifg, da_o, dA_t = dA[:, :, :3], dA[:, :, 3], dA.reshape(T, N, 4 * H)
        dh, dc = d_state[0].copy(), d_state[1].copy()
        dc_each, tmp = dc[:, None, :], np.empty_like(dc)     # (dc for each of the gates i, f, g)
        back = slice(None, None, -1)                  # the steps, last first
        for dH_t, k_dc, k3, ko, ft, da3, dao, da in zip(dH[back], dc_from_dh[back], k_ifg[back], k_o[back], f[back],
                                                        da_ifg[back], da_o[back], dA_t[back]):
            add(dh, dH_t, dh)
            multiply(dh, k_dc, tmp)
            add(dc, tmp, dc)
            multiply(dc_each, k3, da3)                # da_i, da_f, da_g
            multiply(dh, ko, dao)
            multiply(dc, ft, dc)                      # to c_{t−1}
            dot(da, W_hh, dh)                         # to h_{t−1}
        return dA_t, dA_t, (dh, dc)


class GRUSteps:
    """GRU, gates in torch's order r, z, n; b_hn stays inside the reset gate's product::

        r, z = σ(gx_r + h W_hrᵀ + b_hr), σ(gx_z + h W_hzᵀ + b_hz)
        n = tanh(gx_n + r ⊙ (h W_hnᵀ + b_hn))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

    (gx holds x W_ihᵀ + b_ih, and b_hr, b_hz, which can be added outside the loop; b_hn cannot.)
    """

    chunks, states = 3, 1

    def input_bias(self, b_ih, b_hh):
        H = len(b_hh) // 3
        return b_ih + np.concatenate([b_hh[:2 * H], np.zeros(H, dtype=b_hh.dtype)])

    def forward(self, gx, state, W_hh, b_hh):
        (h0,), T = state, len(gx)
        N, H = h0.shape
        b_hn = None if b_hh is None else b_hh[2 * H:]
        WT, scale, shift = _half_rows(W_hh, (0, 1), 3)
        gx[:, :, :2 * H] *= scale[:2 * H]
        gh = np.empty((T, N, 3 * H), dtype=gx.dtype)  # h W_hhᵀ (+ b_hn): gh_n is needed backward
        rz = np.empty((T, N, 2 * H), dtype=gx.dtype)
        n = np.empty((T, N, H), dtype=gx.dtype)
        gx_rz, gx_n, gh_rz, gh_n = gx[:, :, :2 * H], gx[:, :, 2 * H:], gh[:, :, :2 * H], gh[:, :, 2 * H:]
        r, z = rz[:, :, :H], rz[:, :, H:]
        Hs = np.empty((T + 1, N, H), dtype=gx.dtype)
        Hs[0] = h0
        s, b = scale[:2 * H], shift[:2 * H]
        for t in range(T):
            dot(Hs[t], WT, gh[t])
            a = rz[t]                                  # r, z = σ(…), as ½ + ½ tanh(½ …)
            add(gx_rz[t], gh_rz[t], a)
            tanh(a, a)
            multiply(a, s, a)
            add(a, b, a)
            if b_hn is not None:
                add(gh_n[t], b_hn, gh_n[t])
            nt = n[t]                                  # n = tanh(gx_n + r ⊙ gh_n)
            multiply(r[t], gh_n[t], nt)
            add(nt, gx_n[t], nt)
            tanh(nt, nt)
            h = Hs[t + 1]                              # h = n + z ⊙ (h_{t−1} − n)
            subtract(Hs[t], nt, h)
            multiply(h, z[t], h)
            add(h, nt, h)
        return Hs, (Hs[T],), {"Hs": Hs, "gates": (r, z, n), "gh_n": gh_n}

    def backward(self, run, dH, d_state, W_hh):
        """With dh = dH[t] + (carried from step t + 1):
        da_n = dh ⊙ (1 − z) ⊙ (1 − n²),  da_z = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z),
        da_r = da_n ⊙ (h W_hnᵀ + b_hn) ⊙ r(1 − r);  the hidden side of n gets r ⊙ da_n;
        dh_{t−1} = dh ⊙ z + [da_r, da_z, r ⊙ da_n] W_hh."""
        r, z, n = run["gates"]
        gh_n, h_prev = run["gh_n"], run["Hs"][:-1]
        T, N, H = n.shape
        k_n, k_z, k_r = (1 - z) * (1 - n * n), (h_prev - n) * z * (1 - z), gh_n * r * (1 - r)
        dGx = np.empty((T, N, 3 * H), dtype=n.dtype)
        dGh = np.empty((T, N, 3 * H), dtype=n.dtype)
        da_r, da_z, da_n, dh_hn = dGh[:, :, :H], dGh[:, :, H:2 * H], dGx[:, :, 2 * H:], dGh[:, :, 2 * H:]
        dh = d_state[0].copy()
        tmp = np.empty_like(dh)
        for t in range(T - 1, -1, -1):
            add(dh, dH[t], dh)
            multiply(dh, k_n[t], da_n[t])
            multiply(dh, k_z[t], da_z[t])
            multiply(da_n[t], k_r[t], da_r[t])
            multiply(da_n[t], r[t], dh_hn[t])
            multiply(dh, z[t], dh)                     # dh_{t−1} = dh ⊙ z + dGh W_hh
            dot(dGh[t], W_hh, tmp)
            add(dh, tmp, dh)
        dGx[:, :, :2 * H] = dGh[:, :, :2 * H]          # r and z: the same pre-activation on both sides
        return dGx, dGh, (dh,)
