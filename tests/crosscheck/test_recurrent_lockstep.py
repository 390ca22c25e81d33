"""The lockstep matrix of the recurrent layers: every sequence layer (RNN tanh and relu, LSTM, GRU)
× 1 and 2 layers × uni- and bidirectional × batch_first both ways × with and without initial
states × float64 and float32, and every cell × batched or not × with and without a state × dtype,
against torch's own modules, several training steps each. Every output (output, h_n, c_n) reaches
the loss through ``Readout``, so every step compares the outputs, the final states, the input
gradients (h0's and c0's too) and every parameter's gradient and value."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb
from tests.helpers.recurrent import (CELL_KINDS, SEQUENCE_KINDS, Readout, build, cell_input, is_lstm, kind_id,
                               register_readout, sequence_input)

DTYPES = ["float64", "float32"]
SEQUENCE_CASES = [(k, nl, layers, bidir, bf, state, dtype) for k, nl in SEQUENCE_KINDS for layers in (1, 2)
                  for bidir in (False, True) for bf in (False, True) for state in (False, True) for dtype in DTYPES]
CELL_CASES = [(k, nl, batched, state, dtype) for k, nl in CELL_KINDS for batched in (True, False)
              for state in (False, True) for dtype in DTYPES]


def _id(case):
    kind, nl, layers, bidir, bf, state, dtype = case
    return (f"{kind_id(kind, nl)}-L{layers}-{'bi' if bidir else 'uni'}-{'bf' if bf else 'tf'}-"
            f"{'h0' if state else 'noh0'}-{dtype[5:]}")


def test_the_matrix_covers_every_recurrent_class():
    assert {k for k, *_ in SEQUENCE_CASES} == {"RNN", "LSTM", "GRU"}
    assert {k for k, *_ in CELL_CASES} == {"RNNCell", "LSTMCell", "GRUCell"}


def _labels(trace):
    return {label for step in trace.steps for label in step}


@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=[_id(c) for c in SEQUENCE_CASES])
def test_sequence_layer_in_lockstep(case, crosscheck, rng):
    kind, nl, layers, bidir, bf, state, dtype = case
    register_readout()
    dtype = np.dtype(dtype)
    layer = build(kind, nl, 3, 4, rng, num_layers=layers, bidirectional=bidir, batch_first=bf, dtype=dtype)
    model = hb.Sequential(layer, Readout())
    data = []
    for _ in range(3):
        x = sequence_input(layer, 5, 2, rng, dtype, state)
        data.append((x, rng.normal(size=model(x).shape).astype(dtype)))
    trace = crosscheck.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.5), data)
    labels = _labels(trace)
    expected = {f"0 ({kind}) output", f"0 ({kind}) output.h_n", f"0 ({kind}) grad_input"}
    if is_lstm(layer):
        expected.add(f"0 ({kind}) output.c_n")
    if state:
        expected |= {f"0 ({kind}) grad_input.h_0"} | ({f"0 ({kind}) grad_input.c_0"} if is_lstm(layer) else set())
    expected |= {f"0.{name} ({kind}) grad" for name, _ in layer.named_parameters()}
    assert expected <= labels, expected - labels


@pytest.mark.parametrize("case", CELL_CASES, ids=["-".join([kind_id(c[0], c[1]), "batched" if c[2] else "unbatched",
                                                          "hx" if c[3] else "nohx", c[4][5:]]) for c in CELL_CASES])
def test_cell_in_lockstep(case, crosscheck, rng):
    kind, nl, batched, state, dtype = case
    register_readout()
    dtype = np.dtype(dtype)
    cell = build(kind, nl, 3, 4, rng, dtype=dtype)
    model = hb.Sequential(cell, Readout())
    data = []
    for _ in range(3):
        x = cell_input(cell, 2, rng, dtype, state, batched)
        data.append((x, rng.normal(size=model(x).shape).astype(dtype)))
    trace = crosscheck.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    labels = _labels(trace)
    assert f"0 ({kind}) output" in labels and f"0.weight_hh ({kind}) grad" in labels
    if state:
        assert any(label.startswith(f"0 ({kind}) grad_input.") for label in labels)


LANGUAGE_CASES = [(kind, dtype) for kind in ("LSTM", "GRU", "RNN") for dtype in DTYPES]


@pytest.mark.parametrize("kind, dtype", LANGUAGE_CASES, ids=[f"{k}-{d[5:]}" for k, d in LANGUAGE_CASES])
def test_a_language_model_in_lockstep(kind, dtype, crosscheck, rng):
    """Embedding (with a padding row), two layers with dropout between them, SelectOutput, Flatten,
    Linear, cross-entropy and Adam with gradient clipping before each step: the char-level task's
    model, every step compared."""
    dtype = np.dtype(dtype)
    V, E, H, N, T = 7, 4, 5, 3, 6
    model = hb.Sequential(hb.Embedding(V, E, padding_idx=0, rng=rng, dtype=dtype),
                          getattr(hb, kind)(E, H, num_layers=2, dropout=0.3, batch_first=True, rng=rng, dtype=dtype),
                          hb.SelectOutput(0), hb.Flatten(0, 1), hb.Linear(H, V, rng=rng, dtype=dtype))
    data = [(rng.integers(0, V, (N, T)), rng.integers(0, V, N * T)) for _ in range(4)]
    optimizer = hb.optim.Adam(model.parameters(), lr=0.01)
    trace = crosscheck.lockstep(model, hb.CrossEntropyLoss(), optimizer, data)
    assert len(trace) == 4
    assert "0.weight (Embedding) grad" in _labels(trace)


def test_a_wrong_gradient_of_c0_is_caught_there(rng):
    """The check reaches h0's and c0's gradients: scaling dc0 alone is reported at grad_input.c_0."""
    register_readout()

    class LSTMBadC0(hb.LSTM):
        def backward(self, dy):
            dx, (dh0, dc0) = super().backward(dy)
            return dx, (dh0, dc0 * 2)
    layer = LSTMBadC0(3, 4, rng=rng)
    model = hb.Sequential(layer, Readout())
    x = sequence_input(layer, 5, 2, rng, np.float64, True)
    data = [(x, rng.normal(size=model(x).shape))]
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    assert (info.value.name, info.value.quantity, info.value.hint) == ("0 (LSTMBadC0)", "grad_input.c_0", "factor")


def test_every_public_layer_has_a_torch_twin():
    """Derived from the library: a layer handbp exports and crosscheck cannot mirror is reported here."""
    from crosscheck.registry import entry
    layers = {c for c in vars(hb).values() if isinstance(c, type) and issubclass(c, hb.Module)} - {hb.Module, hb.Loss}
    assert {c.__name__ for c in layers if entry(c) is None} == set()
