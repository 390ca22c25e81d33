"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` over sequences, and ``RNNCell``, ``LSTMCell``,
``GRUCell`` for one step, with torch's names, arguments, defaults, parameter names and layouts.

One step of each cell (torch's equations; ``handbp.recurrent_steps`` runs them over a sequence,
forward and back through time, with every derivative written out)::

    RNN:   h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)                    (or relu)
    LSTM:  i, f, g, o = σ, σ, tanh, σ of (x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), in chunks of H
           c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
    GRU:   r, z = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr), σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
           n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)),   h' = (1 − z) ⊙ n + z ⊙ h

A sequence layer stacks ``num_layers`` of these (layer l + 1 reads layer l's outputs, through
dropout in training when ``dropout`` > 0); ``bidirectional`` adds a second recurrence per layer
that reads the sequence from its end, whose outputs are put back in the sequence's order and
concatenated to the first one's (features [forward, reverse]).

Inputs and outputs, as torch's (``handbp.structure`` says how a module takes several)::

    rnn(x) or rnn(x, h0) → (output, h_n);   lstm(x) or lstm(x, (h0, c0)) → (output, (h_n, c_n))
    x: (T, N, input_size), (N, T, input_size) with batch_first, or (T, input_size) unbatched
    h0, c0, h_n, c_n: (num_layers · D, N, hidden_size), or (num_layers · D, hidden_size) unbatched
    output: (T, N, D · hidden_size) (batch_first: (N, T, ...)); D = 2 if bidirectional else 1

``backward`` takes the gradients of the outputs in the same structure, any part ``None`` (a
plain array is the gradient of ``output`` alone), and returns those of the inputs: ``dx``, or
``(dx, dh0)`` / ``(dx, (dh0, dc0))`` when initial states were given.
"""
import math
import warnings

import numpy as np

from . import structure, validate
from .errors import CallOrderError, LayerTypeError, LayerValueError, describe
from .layers import init_rng
from .module import Module, Parameter, own_float_array
from .recurrent_steps import GRUSteps, LSTMSteps, RNNSteps


def _check_sizes(owner, input_size, hidden_size):
    return (validate.integer(owner, "input_size", input_size, low=1),
            validate.integer(owner, "hidden_size", hidden_size, low=1))


def _init(rng, bound, shape, dtype):
    """U(−bound, bound), torch's init for every recurrent parameter (bound = 1/√hidden_size)."""
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _given(v):
    """A value as an error shows it: a tuple by its structure and shapes."""
    return f"a tuple {structure.describe_structure(v)}" if type(v) is tuple else describe(v)


def _accumulate(params, grads):
    for p, g in zip(params, grads):
        if p is not None:
            p.accumulate(g, fresh=True)


class _Recurrent(Module):
    """What the sequence layers and the cells share: the input's structure, the states (a tuple:
    (h,), or (h, c) for an LSTM), the gate names, and the one-layer, one-direction pass (``_run``,
    ``_run_backward``)."""

    gate_names = ()
    input_names = ("input", "h_0")
    output_names = ("output", "h_n")

    # -- the input: x or (x, hx); hx is h0, or (h0, c0) for an LSTM
    def check_input(self, x, dtype):
        """``x`` or ``(x, hx)``: floating arrays of the model's dtype, all finite, made the model's
        own (``hx`` may be None)."""
        x, hx, packed = self._unpack(x)
        x = own_float_array(x, "x", dtype)
        if not packed:
            return x
        if hx is None:
            return x, None
        names = self._state_names()
        states = [own_float_array(s, name, dtype) for s, name in zip(self._states_of(hx), names)]
        return x, (tuple(states) if len(states) > 1 else states[0])

    def _unpack(self, x):
        """(x, hx or None, whether x came as the pair (x, hx))."""
        if type(x) is not tuple:
            return x, None, False
        if len(x) != 2:
            raise LayerValueError(self, f"x: expected an array or a pair (x, hx), got a tuple of {len(x)}")
        return x[0], x[1], True

    def _state_names(self):
        return ("hx[0]", "hx[1]") if self.steps.states == 2 else ("hx",)

    def _states_of(self, hx):
        """hx as the tuple of its states: (h0,), or (h0, c0) for an LSTM (which must give a pair)."""
        if self.steps.states == 1:
            return (hx,)
        if type(hx) is not tuple or len(hx) != 2:
            raise LayerTypeError(self, f"hx: expected a pair (h_0, c_0), got {_given(hx)}")
        return hx

    def _check_states(self, hx, shape, dtype):
        """hx's states, each an array of ``shape`` and ``dtype``."""
        states = self._states_of(hx)
        for s, name in zip(states, self._state_names()):
            if not isinstance(s, np.ndarray) or s.dtype != dtype:
                raise LayerTypeError(self, f"{name}: expected an array of dtype {dtype}, got {_given(s)}")
            if s.shape != shape:
                raise LayerValueError(self, f"{name}: expected shape {shape}, got {s.shape}")
        return states

    def _packed(self, x, states):
        """The gradients of the inputs in the structure the input came in: dx, (dx, None) or
        (dx, dh0) / (dx, (dh0, dc0))."""
        packed, given = self.last_form[2], self.last_form[3]
        if not packed:
            return x
        if not given:
            return x, None
        return x, (tuple(states) if len(states) > 1 else states[0])

    # -- one layer, one direction
    def _run(self, X, state0, W_ih, W_hh, b_ih, b_hh, reverse=False):
        """The recurrence over time-major ``X`` (T, N, I) from ``state0``; returns its outputs in
        the sequence's order (T, N, H), its last state, and what the backward needs."""
        T, N, I = X.shape
        Xd = np.ascontiguousarray(X[::-1] if reverse else X).reshape(T * N, I)   # the steps in the order taken
        gx = Xd @ W_ih.T
        if b_ih is not None:
            gx += self.steps.input_bias(b_ih, b_hh)
        Hs, last, run = self.steps.forward(gx.reshape(T, N, -1), state0, W_hh, b_hh)
        run.update(X=Xd, reverse=reverse)
        return (Hs[:0:-1] if reverse else Hs[1:]), last, run

    def _run_backward(self, run, dY, d_last, W_ih, W_hh):
        """Backward through ``_run``: dY (T, N, H) in the sequence's order, ``d_last`` that of the
        last state. Returns dX (T, N, I), the initial state's gradient and (dW_ih, dW_hh, db_ih, db_hh):
        dW_ih = Σ_t dGx_tᵀ x_t, dW_hh = Σ_t dGh_tᵀ h_{t−1}, db = Σ_t dG_t, dX = dGx W_ih."""
        dH = dY[::-1] if run["reverse"] else dY
        dGx, dGh, d_state0 = self._steps_backward(run, dH, d_last, W_hh)
        T, N, G = dGx.shape
        dGx, dGh = dGx.reshape(T * N, G), dGh.reshape(T * N, G)
        h_prev = run["Hs"][:-1].reshape(T * N, -1)
        grads = (dGx.T @ run["X"], dGh.T @ h_prev, dGx.sum(axis=0), dGh.sum(axis=0))
        dX = (dGx @ W_ih).reshape(T, N, -1)
        return (dX[::-1] if run["reverse"] else dX), d_state0, grads

    def _steps_backward(self, run, dH, d_state, W_hh):
        """Back through the steps of one layer and direction (``handbp.recurrent_steps``)."""
        return self.steps.backward(run, dH, d_state, W_hh)

    def _need_forward(self):
        if self.last_runs is None:
            raise CallOrderError(self, "backward() called before forward(); run the forward pass first, it caches "
                                       "what backward needs")

    # -- explain: the unrolled steps
    def unrolled(self, layer=0, direction=0, sample=0):
        """The last forward's steps of one layer and direction for one sample, in the order they
        were taken: a list of ``{"t": position in the sequence, gate name: values, ("c": the cell
        state,) "h": the hidden state}``, each value an array (hidden_size,)."""
        runs = self.last_runs
        if not runs:
            raise LayerValueError(self, "unrolled: no forward has run yet; call the module on a sequence first")
        D = 2 if getattr(self, "bidirectional", False) else 1
        owner = (self, "unrolled")
        layer = validate.integer(owner, "layer", layer, low=0, high=getattr(self, "num_layers", 1) - 1)
        direction = validate.integer(owner, "direction", direction, low=0, high=D - 1)
        run = runs[layer * D + direction]
        sample = validate.integer(owner, "sample", sample, low=0, high=run["Hs"].shape[1] - 1)
        T = len(run["Hs"]) - 1
        out = []
        for k in range(T):
            step = {"t": T - 1 - k if run["reverse"] else k}
            for name, values in zip(self.gate_names, run.get("gates", ())):
                step[name] = values[k, sample]
            if "Cs" in run:
                step["c"] = run["Cs"][k + 1, sample]
            step["h"] = run["Hs"][k + 1, sample]
            out.append(step)
        return out

    def format_unrolled(self, layer=0, direction=0, sample=0, numbers=4):
        """``unrolled``'s steps as lines of text, the newest first (the order backpropagation visits
        them), ``numbers`` values of each array."""
        numbers = validate.integer((self, "format_unrolled"), "numbers", numbers, low=1)
        steps = self.unrolled(layer, direction, sample)
        lines = [f"{type(self).__name__}: layer {layer}{', reverse' if direction else ''}, sample {sample}, "
                 f"{len(steps)} steps, newest first"]
        for k, step in reversed(list(enumerate(steps))):
            parts = [f"{name} {_numbers(v, numbers)}" for name, v in step.items() if name != "t"]
            lines.append(f"  step {k} (t = {step['t']}): " + "  ".join(parts))
        return lines


def _numbers(a, k):
    flat = np.asarray(a).ravel()
    return "[" + ", ".join(f"{v:.4g}" for v in flat[:k]) + (", …" if flat.size > k else "") + "]"


def _check_grads(module, parts, names, shapes, dtype):
    """Each given part of an upstream gradient: None, or an array of its shape and dtype."""
    for part, name, shape in zip(parts, names, shapes):
        if part is not None and not (isinstance(part, np.ndarray) and part.shape == shape and part.dtype == dtype):
            error = LayerValueError if isinstance(part, np.ndarray) and part.dtype == dtype else LayerTypeError
            raise error(module, f"{name}: expected shape {shape} and dtype {dtype} (the last forward's), "
                                f"got {_given(part)}")


# -- the sequence layers ------------------------------------------------------------------------
class RNNBase(_Recurrent):
    """The sequence layers' common part (torch's ``RNNBase``): parameters ``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``_reverse`` for the second direction),
    in torch's order and layout: weight_ih (chunks · hidden_size, input size of the layer),
    weight_hh (chunks · hidden_size, hidden_size), initial values U(−1/√hidden_size, 1/√hidden_size)."""

    def __init__(self, steps, owner, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float64, rng=None):
        super().__init__()
        input_size, hidden_size = _check_sizes(owner, input_size, hidden_size)
        num_layers = validate.integer(owner, "num_layers", num_layers, low=1)
        bias = validate.flag(owner, "bias", bias)
        batch_first = validate.flag(owner, "batch_first", batch_first)
        dropout = validate.probability(owner, "dropout", dropout)
        bidirectional = validate.flag(owner, "bidirectional", bidirectional)
        dtype = validate.float_dtype(owner, "dtype", dtype)
        rng = init_rng(owner, rng)
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{owner}: dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", UserWarning, stacklevel=3)
        self.steps = steps
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, dropout, bidirectional
        bound = 1 / math.sqrt(hidden_size)
        for name, shape in self.state_shapes(input_size, hidden_size, num_layers, bias, bidirectional=bidirectional):
            setattr(self, name, Parameter(_init(rng, bound, shape, dtype)))
        # the masks of the dropout between layers come from their own generator (seeded from rng)
        seed = rng.integers(2**31) if isinstance(rng, np.random.Generator) else rng.randint(2**31 - 1)
        self.dropout_rng = np.random.default_rng(int(seed))
        self.last_runs = self.last_masks = self.last_form = None

    @classmethod
    def state_shapes(cls, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                     bidirectional=False, **_):
        """Per layer and direction: weight_ih_l{k}[_reverse] (chunks·H, input size of the layer),
        weight_hh_l{k} (chunks·H, H), bias_ih_l{k} and bias_hh_l{k} (chunks·H,); see ``Module.state_shapes``."""
        G, D = cls.chunks * hidden_size, 2 if bidirectional else 1
        for layer in range(num_layers):
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                yield f"weight_ih{suffix}", (G, input_size if layer == 0 else hidden_size * D)
                yield f"weight_hh{suffix}", (G, hidden_size)
                if bias:
                    yield f"bias_ih{suffix}", (G,)
                    yield f"bias_hh{suffix}", (G,)

    def config_args(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "bias": self.bias, "batch_first": self.batch_first, "dropout": self.dropout,
                "bidirectional": self.bidirectional}

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def row_wise(self, x):
        """None when each sample is processed apart along axis 0 (batch_first, a 3-D array), else why not."""
        if type(x) is tuple:
            return "its initial states hold the batch on their second axis"
        if not self.batch_first or np.ndim(x) != 3:
            return "the batch is not on the first axis (batch_first=False, or one unbatched sequence)"
        return None

    def _weights(self, k):
        """The Parameters (None where there is no bias) of layer and direction k = layer · D + direction."""
        layer, direction = divmod(k, 2 if self.bidirectional else 1)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return [getattr(self, f"{w}{suffix}", None) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    # -- layouts: the user's (batch_first, unbatched) and the time-major one the loops use
    def _time_major(self, x):
        """x as (T, N, input_size) (a view), and whether it had a batch axis."""
        if not isinstance(x, np.ndarray) or x.ndim not in (2, 3):
            raise LayerValueError(self, f"x: expected a 2-D (unbatched) or 3-D array, got {describe(x)}")
        if x.shape[-1] != self.input_size:
            raise LayerValueError(self, f"x: expected input_size {self.input_size} on the last axis, got shape "
                                        f"{x.shape}")
        if x.ndim == 2:
            return x[:, None, :], False
        return (x.transpose(1, 0, 2) if self.batch_first else x), True

    def _users(self, Y, batched):
        """A time-major (T, N, ·) array in the user's layout."""
        return (Y.transpose(1, 0, 2) if self.batch_first else Y) if batched else Y[:, 0]

    def _states_shape(self, N, batched):
        L, D, H = self.num_layers, 2 if self.bidirectional else 1, self.hidden_size
        return (L * D, N, H) if batched else (L * D, H)

    # -- forward
    def forward(self, x):
        """Each layer, each direction: the recurrence over the sequence (``_run``), the outputs of the
        two directions side by side, dropout before the next layer in training. Caches every run, the
        dropout masks and the input's form."""
        x, hx, packed = self._unpack(x)
        L, D, H = self.num_layers, 2 if self.bidirectional else 1, self.hidden_size
        X, batched = self._time_major(x)
        T, N, _ = X.shape
        if hx is None:
            states0 = [np.zeros((L * D, N, H), dtype=X.dtype)] * self.steps.states
        else:
            states0 = [s if batched else s[:, None, :]
                       for s in self._check_states(hx, self._states_shape(N, batched), X.dtype)]
        runs, masks, finals = [], [], []
        for layer in range(L):
            Y = np.empty((T, N, D * H), dtype=X.dtype)
            for direction in range(D):
                k = layer * D + direction
                weights = [None if p is None else p.data for p in self._weights(k)]
                Y[:, :, direction * H:(direction + 1) * H], last, run = self._run(
                    X, tuple(s[k] for s in states0), *weights, reverse=direction == 1)
                runs.append(run)
                finals.append(last)
            X, mask = self._dropout(Y) if layer < L - 1 else (Y, None)
            masks.append(mask)
        self.last_runs, self.last_masks = runs, masks
        self.last_form = (x.shape, batched, packed, hx is not None, x.dtype)
        states = [np.stack(s) if batched else np.stack(s)[:, 0] for s in zip(*finals)]   # (L·D, N, H) each
        return self._users(X, batched), (tuple(states) if len(states) > 1 else states[0])

    def _dropout(self, Y):
        """Y ⊙ mask / (1 − p) in training with dropout (torch's, between layers), and (mask, scale)."""
        if not (self.training and self.dropout > 0):
            return Y, None
        mask = self.dropout_rng.random(Y.shape) >= self.dropout
        scale = 0.0 if self.dropout == 1 else 1.0 / (1.0 - self.dropout)
        return Y * (mask * Y.dtype.type(scale)), (mask, scale)

    # -- backward
    def backward(self, dy):
        """Back through the layers, the top one first: each direction's ``_run_backward`` (BPTT),
        the two directions' input gradients summed, the dropout mask applied on the way down."""
        self._need_forward()
        shape, batched, packed, given, dtype = self.last_form
        L, D, H = self.num_layers, 2 if self.bidirectional else 1, self.hidden_size
        T, N = (shape[1], shape[0]) if batched and self.batch_first else (shape[0], shape[1] if batched else 1)
        d_out, d_finals = self._upstream(dy, (shape[:2] if batched else (T,)) + (D * H,),
                                         self._states_shape(N, batched), dtype)
        dY = np.zeros((T, N, D * H), dtype) if d_out is None else self._time_major_grad(d_out, batched)
        d_finals = [np.zeros((L * D, N, H), dtype) if d is None else d if batched else d[:, None, :] for d in d_finals]
        grads, d_states0 = {}, [np.empty((L * D, N, H), dtype) for _ in d_finals]
        for layer in reversed(range(L)):
            mask = self.last_masks[layer]
            if mask is not None:
                dY = dY * (mask[0] * dtype.type(mask[1]))
            dX = 0
            for direction in range(D):
                k = layer * D + direction
                W_ih, W_hh = self._weights(k)[0].data, self._weights(k)[1].data
                dXd, d_first, grads[k] = self._run_backward(self.last_runs[k], dY[:, :, direction * H:(direction + 1) * H],
                                                            tuple(d[k] for d in d_finals), W_ih, W_hh)
                for d, v in zip(d_states0, d_first):
                    d[k] = v
                dX = dX + dXd
            dY = dX
        for k, g in grads.items():           # every gradient computed: now accumulate
            _accumulate(self._weights(k), g)
        return self._packed(self._users(dY, batched), [d if batched else d[:, 0] for d in d_states0])

    def _time_major_grad(self, d, batched):
        return (d.transpose(1, 0, 2) if self.batch_first else d) if batched else d[:, None, :]

    def _upstream(self, dy, out_shape, state_shape, dtype):
        """dy's gradient of ``output`` and those of the last states (each None if not given),
        checked: dy is (d_output, d_h_n) or (d_output, (d_h_n, d_c_n)), or an array (d_output)."""
        n = self.steps.states
        if type(dy) is not tuple:
            parts = [dy] + [None] * n
        elif len(dy) == 2 and (dy[1] is None or n == 1 or type(dy[1]) is tuple and len(dy[1]) == n):
            parts = [dy[0]] + ([None] * n if dy[1] is None else list(dy[1]) if n > 1 else [dy[1]])
        else:
            raise LayerValueError(self, "grad_output: expected the structure of the output "
                                        f"{'(output, (h_n, c_n))' if n > 1 else '(output, h_n)'} (any part None), "
                                        f"got {_given(dy)}")
        names = ["grad_output", "grad_h_n", "grad_c_n"][:n + 1]
        _check_grads(self, parts, names, [out_shape] + [state_shape] * n, dtype)
        return parts[0], parts[1:]


class RNN(RNNBase):
    """Elman RNN over a sequence: h_t = tanh(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh) (or relu).

    Args (torch's, in torch's order):
        input_size, hidden_size: features of x and of h.
        num_layers: stacked layers (default 1). nonlinearity: ``"tanh"`` (default) or ``"relu"``.
        bias: learn b_ih and b_hh (default True). batch_first: x and output as (N, T, ·).
        dropout: probability of dropping each output of every layer but the last, in training.
        bidirectional: add a reverse direction.
        dtype (keyword): float64 (default) or float32. rng (keyword): ``np.random.Generator`` or a
            seed for the initial values and the dropout masks; numpy's global state when omitted.

    Input ``x`` or ``(x, h0)``; output ``(output, h_n)`` (see ``handbp.recurrent``).
    """

    chunks = 1
    gate_names = ()

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float64, rng=None):
        nonlinearity = validate.choice("RNN", "nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(RNNSteps(nonlinearity), "RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def backward(self, dy):
        """da_t = dh_t ⊙ (1 − h_t²) (relu: ⊙ [h_t > 0]), dh_t = dH[t] + da_{t+1} W_hh, back through time.

        Per layer and direction; then dW_ih = Σ_t da_tᵀ x_t, dW_hh = Σ_t da_tᵀ h_{t−1},
        db_ih = db_hh = Σ_t da_t, dx_t = da_t W_ih."""
        return super().backward(dy)

    def config_args(self):
        return {**super().config_args(), "nonlinearity": self.nonlinearity}

    def extra_repr(self):
        return super().extra_repr() + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


class LSTM(RNNBase):
    """Long short-term memory over a sequence, gates in torch's order i, f, g, o::

        i, f, g, o = σ, σ, tanh, σ of (x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh)
        c_t = f ⊙ c_{t−1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    Args: as ``RNN`` without ``nonlinearity`` (``proj_size`` must be 0: no projections here).

    Input ``x`` or ``(x, (h0, c0))``; output ``(output, (h_n, c_n))`` (see ``handbp.recurrent``).
    """

    chunks = 4
    gate_names = ("i", "f", "g", "o")
    input_names = ("input", ("h_0", "c_0"))
    output_names = ("output", ("h_n", "c_n"))

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, dtype=np.float64, rng=None):
        validate.integer("LSTM", "proj_size", proj_size, low=0, high=0, what="0 (handbp's LSTM has no projections)")
        super().__init__(LSTMSteps(), "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, rng=rng)

    def backward(self, dy):
        """dc_t = dc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o ⊙ (1 − tanh²c_t), dh_t = dH[t] + da_{t+1} W_hh, back through time.

        The gates: da_i = dc ⊙ g ⊙ i(1−i), da_f = dc ⊙ c_{t−1} ⊙ f(1−f), da_g = dc ⊙ i ⊙ (1−g²),
        da_o = dh ⊙ tanh(c_t) ⊙ o(1−o). Per layer and direction; then dW_ih = Σ_t da_tᵀ x_t,
        dW_hh = Σ_t da_tᵀ h_{t−1}, db_ih = db_hh = Σ_t da_t, dx_t = da_t W_ih."""
        return super().backward(dy)


class GRU(RNNBase):
    """Gated recurrent unit over a sequence, gates in torch's order r, z, n::

        r, z = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr), σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
        n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)),   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

    Args: as ``RNN`` without ``nonlinearity``. Input ``x`` or ``(x, h0)``; output ``(output, h_n)``.
    """

    chunks = 3
    gate_names = ("r", "z", "n")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, dtype=np.float64, rng=None):
        super().__init__(GRUSteps(), "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, rng=rng)

    def backward(self, dy):
        """dh_{t−1} = dH[t−1] + dh_t ⊙ z + [da_r, da_z, r ⊙ da_n] W_hh, back through time.

        The gates: da_n = dh ⊙ (1−z) ⊙ (1−n²), da_z = dh ⊙ (h_{t−1} − n) ⊙ z(1−z),
        da_r = da_n ⊙ (h W_hnᵀ + b_hn) ⊙ r(1−r). Per layer and direction; then dW_ih = Σ_t [da_r,
        da_z, da_n]ᵀ x_t, dW_hh = Σ_t [da_r, da_z, r ⊙ da_n]ᵀ h_{t−1}, dx_t = [da_r, da_z, da_n] W_ih."""
        return super().backward(dy)


# -- the cells: one step --------------------------------------------------------------------------
class RNNCellBase(_Recurrent):
    """The cells' common part (torch's ``RNNCellBase``): ``weight_ih`` (chunks · hidden_size,
    input_size), ``weight_hh`` (chunks · hidden_size, hidden_size), ``bias_ih``, ``bias_hh``
    (chunks · hidden_size,), initial values U(−1/√hidden_size, 1/√hidden_size). One step is the
    sequence layers' recurrence over a sequence of length 1.

    Shape: x (N, input_size) or (input_size,); hx, h' (N, hidden_size) or (hidden_size,).
    """

    input_names = ("input", "hx")
    output_names = "output"

    def __init__(self, steps, owner, input_size, hidden_size, bias=True, *, dtype=np.float64, rng=None):
        super().__init__()
        input_size, hidden_size = _check_sizes(owner, input_size, hidden_size)
        bias = validate.flag(owner, "bias", bias)
        dtype = validate.float_dtype(owner, "dtype", dtype)
        rng = init_rng(owner, rng)
        self.steps, self.input_size, self.hidden_size, self.bias = steps, input_size, hidden_size, bias
        bound = 1 / math.sqrt(hidden_size)
        for name, shape in self.state_shapes(input_size, hidden_size, bias):
            setattr(self, name, Parameter(_init(rng, bound, shape, dtype)))
        if not bias:
            self.bias_ih = self.bias_hh = None
        self.last_runs = self.last_form = None

    @classmethod
    def state_shapes(cls, input_size, hidden_size, bias=True, **_):
        """weight_ih (chunks·H, input_size), weight_hh (chunks·H, H), bias_ih, bias_hh (chunks·H,)."""
        G = cls.chunks * hidden_size
        yield "weight_ih", (G, input_size)
        yield "weight_hh", (G, hidden_size)
        if bias:
            yield "bias_ih", (G,)
            yield "bias_hh", (G,)

    def config_args(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def row_wise(self, x):
        """None when the samples are the rows of a 2-D x, else why not."""
        if type(x) is tuple:
            return "its state hx is a second input the rows of x are stacked apart from"
        return None if np.ndim(x) == 2 else "one unbatched sample"

    def _weights(self, k=0):
        return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]

    def forward(self, x):
        """One step of the recurrence (the sequence layers' loop, T = 1); caches the run."""
        x, hx, packed = self._unpack(x)
        if not isinstance(x, np.ndarray) or x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise LayerValueError(self, f"x: expected shape (N, {self.input_size}) or ({self.input_size},), "
                                        f"got {describe(x)}")
        batched = x.ndim == 2
        N = len(x) if batched else 1
        if hx is None:
            states0 = (np.zeros((N, self.hidden_size), dtype=x.dtype),) * self.steps.states
        else:
            shape = (N, self.hidden_size) if batched else (self.hidden_size,)
            states0 = tuple(s if batched else s[None] for s in self._check_states(hx, shape, x.dtype))
        weights = [None if p is None else p.data for p in self._weights()]
        _, last, run = self._run(x[None] if batched else x[None, None], states0, *weights)
        self.last_runs, self.last_form = [run], (N, batched, packed, hx is not None, x.dtype)
        last = last if batched else tuple(s[0] for s in last)
        return last if len(last) > 1 else last[0]

    def backward(self, dy):
        """dW_ih = daᵀ x, dW_hh = daᵀ h, db = Σ da, dx = da W_ih: the sequence layers' backward, one step.

        The gradient of h' (and c') is that of the last state; da is given by each cell's backward."""
        self._need_forward()
        N, batched, packed, given, dtype = self.last_form
        shape, n = (N, self.hidden_size) if batched else (self.hidden_size,), self.steps.states
        if n == 1:
            if not (isinstance(dy, np.ndarray) and dy.shape == shape and dy.dtype == dtype):
                self._refuse_grad_output(dy, shape, dtype)
            parts = [dy]
        else:
            parts = list(dy) if type(dy) is tuple and len(dy) == 2 else [dy, None] if type(dy) is not tuple else None
            if parts is None:
                raise LayerValueError(self, f"grad_output: expected (dh, dc) (either may be None), got {_given(dy)}")
            _check_grads(self, parts, ["grad_h_1", "grad_c_1"], [shape, shape], dtype)
        d_last = tuple(np.zeros((N, self.hidden_size), dtype) if d is None else d if batched else d[None] for d in parts)
        dX, d_first, grads = self._run_backward(self.last_runs[0], np.zeros((1, N, self.hidden_size), dtype), d_last,
                                                self.weight_ih.data, self.weight_hh.data)
        _accumulate(self._weights(), grads)
        return self._packed(dX[0] if batched else dX[0, 0], [d if batched else d[0] for d in d_first])


class RNNCell(RNNCellBase):
    """One Elman step: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (or relu).

    Args (torch's order): input_size, hidden_size, bias=True, nonlinearity="tanh"; dtype, rng
    (keywords) as ``Linear``. Input ``x`` or ``(x, hx)``; output h'.
    """

    chunks = 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype=np.float64, rng=None):
        nonlinearity = validate.choice("RNNCell", "nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(RNNSteps(nonlinearity), "RNNCell", input_size, hidden_size, bias, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def backward(self, dy):
        """da = dh' ⊙ (1 − h'²) (relu: ⊙ [h' > 0]); dx = da W_ih, dh = da W_hh.

        dW_ih = daᵀ x, dW_hh = daᵀ h, db_ih = db_hh = Σ da."""
        return super().backward(dy)

    def config_args(self):
        return {**super().config_args(), "nonlinearity": self.nonlinearity}

    def extra_repr(self):
        return super().extra_repr() + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


class LSTMCell(RNNCellBase):
    """One LSTM step: i, f, g, o = σ, σ, tanh, σ of (x W_ihᵀ + b_ih + h W_hhᵀ + b_hh);
    c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').

    Args: input_size, hidden_size, bias=True; dtype, rng (keywords). Input ``x`` or
    ``(x, (h0, c0))``; output ``(h', c')``.
    """

    chunks = 4
    gate_names = ("i", "f", "g", "o")
    input_names = ("input", ("h_0", "c_0"))
    output_names = ("h_1", "c_1")

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float64, rng=None):
        super().__init__(LSTMSteps(), "LSTMCell", input_size, hidden_size, bias, dtype=dtype, rng=rng)

    def backward(self, dy):
        """dc = dc' + dh' ⊙ o ⊙ (1 − tanh²c'); dc_prev = dc ⊙ f, dh = da W_hh, dx = da W_ih.

        The gates: da_i = dc ⊙ g ⊙ i(1−i), da_f = dc ⊙ c ⊙ f(1−f), da_g = dc ⊙ i ⊙ (1−g²),
        da_o = dh' ⊙ tanh(c') ⊙ o(1−o); dW_ih = daᵀ x, dW_hh = daᵀ h, db_ih = db_hh = Σ da."""
        return super().backward(dy)


class GRUCell(RNNCellBase):
    """One GRU step: r, z = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr), σ(… z …);
    n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h.

    Args: input_size, hidden_size, bias=True; dtype, rng (keywords). Input ``x`` or ``(x, hx)``;
    output h'.
    """

    chunks = 3
    gate_names = ("r", "z", "n")

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float64, rng=None):
        super().__init__(GRUSteps(), "GRUCell", input_size, hidden_size, bias, dtype=dtype, rng=rng)

    def backward(self, dy):
        """dh = dh' ⊙ z + [da_r, da_z, r ⊙ da_n] W_hh, dx = [da_r, da_z, da_n] W_ih.

        The gates: da_n = dh' ⊙ (1−z) ⊙ (1−n²), da_z = dh' ⊙ (h − n) ⊙ z(1−z),
        da_r = da_n ⊙ (h W_hnᵀ + b_hn) ⊙ r(1−r)."""
        return super().backward(dy)
