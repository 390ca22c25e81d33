"""The recurrent modules as a torch user meets them: torch's argument names, order and defaults,
parameter names, shapes and order, initial values; inputs and outputs in torch's structures
(``module(x, hx)``, ``(output, (h_n, c_n))``, unbatched input); backward with the gradients of
every output; the errors (named arguments, nothing changed); Embedding, SelectOutput, Flatten in a
Sequential; checkpoints."""
import copy
import inspect
import warnings

import numpy as np
import pytest
import torch

import handbp as hb
from tests.helpers.recurrent import CELL_CLASSES, SEQUENCE_CLASSES, build, sequence_input

CONFIGS = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=3, bidirectional=True, bias=False),
           dict(batch_first=True, dropout=0.5, num_layers=2)]


@pytest.mark.parametrize("cls", SEQUENCE_CLASSES + CELL_CLASSES, ids=lambda c: c.__name__)
def test_arguments_are_torchs_in_torchs_order_with_torchs_defaults(cls):
    mine = inspect.signature(cls).parameters
    theirs = inspect.signature(getattr(torch.nn, cls.__name__).__init__).parameters
    if cls in (hb.RNN, hb.LSTM, hb.GRU):       # (torch's are *args there; its RNNBase has the list)
        theirs = inspect.signature(torch.nn.RNNBase.__init__).parameters
        expected = ["input_size", "hidden_size", "num_layers"] + (["nonlinearity"] if cls is hb.RNN else []) + \
            ["bias", "batch_first", "dropout", "bidirectional"] + (["proj_size"] if cls is hb.LSTM else [])
        defaults = {n: theirs[n].default for n in expected if n in theirs}
        defaults.update({"nonlinearity": "tanh"} if cls is hb.RNN else {})
    else:
        expected = [n for n in theirs if n not in ("self", "device", "dtype")]
        defaults = {n: theirs[n].default for n in expected}
    positional = [n for n, p in mine.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == expected
    assert {n: mine[n].default for n in expected if mine[n].default is not inspect.Parameter.empty} == \
           {n: v for n, v in defaults.items() if v is not inspect.Parameter.empty}
    assert {"dtype", "rng"} <= set(mine)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("cls", SEQUENCE_CLASSES, ids=lambda c: c.__name__)
def test_parameters_have_torchs_names_shapes_order_and_init(cls, config, rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = cls(3, 5, rng=rng, **config)
        theirs = getattr(torch.nn, cls.__name__)(3, 5, **config)
    assert [(n, p.shape) for n, p in mine.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    # U(−1/√H, 1/√H), torch's init: within the bound, and spread as a uniform is (std bound/√3; with
    # 50 values or more, the sample's std is within 8 of its own standard deviations of that)
    values = np.concatenate([p.data.ravel() for p in mine.parameters()])
    bound = 1 / np.sqrt(5)
    assert np.abs(values).max() <= bound and 0.5 < values.std() / (bound / np.sqrt(3)) < 1.5
    assert list(cls.state_shapes(**mine.config_args())) == [(n, p.shape) for n, p in mine.named_parameters()]


@pytest.mark.parametrize("cls", CELL_CLASSES, ids=lambda c: c.__name__)
def test_cells_have_torchs_parameter_names_and_shapes(cls, rng):
    for bias in (True, False):
        mine, theirs = cls(3, 5, bias=bias, rng=rng), getattr(torch.nn, cls.__name__)(3, 5, bias=bias)
        assert [(n, p.shape) for n, p in mine.named_parameters()] == \
               [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]


def test_outputs_have_torchs_structure_and_shapes(rng):
    lstm = hb.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=rng)
    out, (h, c) = lstm(rng.normal(size=(6, 5, 3)))             # (N, T, input_size)
    assert out.shape == (6, 5, 8) and h.shape == c.shape == (4, 6, 4)
    out, (h, c) = lstm(rng.normal(size=(5, 3)))                # unbatched: batch_first does not apply
    assert out.shape == (5, 8) and h.shape == c.shape == (4, 4)
    gru = hb.GRU(3, 4, rng=rng)
    out, h = gru(rng.normal(size=(5, 6, 3)))
    assert out.shape == (5, 6, 4) and h.shape == (1, 6, 4)
    assert np.array_equal(out[-1], h[0])                      # the last output is the last state
    cell = hb.LSTMCell(3, 4, rng=rng)
    h1, c1 = cell(rng.normal(size=(6, 3)))
    assert h1.shape == c1.shape == (6, 4)


def test_states_given_as_torch_passes_them(rng):
    """``lstm(x, (h0, c0))`` is ``lstm((x, (h0, c0)))``; ``None`` is no state; zeros are the default."""
    lstm = hb.LSTM(3, 4, num_layers=2, rng=rng)
    x = rng.normal(size=(5, 2, 3))
    zeros = (np.zeros((2, 2, 4)), np.zeros((2, 2, 4)))
    a, b, c, d = lstm(x), lstm(x, zeros), lstm((x, zeros)), lstm(x, None)
    for other in (b, c, d):
        for u, v in zip(hb.structure.flatten(a), hb.structure.flatten(other)):
            np.testing.assert_array_equal(u, v)


def test_backward_returns_the_gradients_in_the_inputs_structure(rng):
    lstm = hb.LSTM(3, 4, rng=rng)
    x, state = rng.normal(size=(5, 2, 3)), (rng.normal(size=(1, 2, 4)), rng.normal(size=(1, 2, 4)))
    out, (h, c) = lstm(x, state)
    dx, (dh0, dc0) = lstm.backward((np.ones_like(out), (np.ones_like(h), None)))
    assert dx.shape == x.shape and dh0.shape == dc0.shape == (1, 2, 4)
    lstm(x)
    assert isinstance(lstm.backward((np.ones_like(out), None)), np.ndarray)     # no state given: dx alone
    lstm(x, None)
    dx, none = lstm.backward(np.ones_like(out))                # (x, None) in: (dx, None) out
    assert none is None


def test_an_array_is_the_gradient_of_the_output_alone(rng):
    gru = hb.GRU(3, 4, rng=rng)
    x, dy = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 4))
    gru(x)
    a = gru.backward(dy)
    grads = [p.grad.copy() for p in gru.parameters()]
    gru.zero_grad()
    gru(x)
    np.testing.assert_array_equal(gru.backward((dy, None)), a)
    for g, p in zip(grads, gru.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_the_model_owns_its_input_and_the_caller_its_output(rng):
    lstm = hb.LSTM(3, 4, rng=rng)
    twin = copy.deepcopy(lstm)
    x, state = rng.normal(size=(5, 2, 3)), (rng.normal(size=(1, 2, 4)), rng.normal(size=(1, 2, 4)))
    out, (h, c) = lstm(x, state)
    twin((x.copy(), (state[0].copy(), state[1].copy())))
    x *= -3
    state[1][...] = 7
    out *= 2                                                   # edits before backward change nothing
    dy = (rng.normal(size=out.shape), (rng.normal(size=h.shape), rng.normal(size=c.shape)))
    for u, v in zip(hb.structure.flatten(lstm.backward(dy)), hb.structure.flatten(twin.backward(dy))):
        np.testing.assert_array_equal(u, v)


BAD_ARGUMENTS = [
    (lambda: hb.LSTM(0, 3), ValueError, "LSTM: input_size: expected a positive integer, got 0"),
    (lambda: hb.GRU(3, 2.0), TypeError, "GRU: hidden_size: expected a positive integer, got 2.0"),
    (lambda: hb.RNN(3, 3, num_layers=0), ValueError, "RNN: num_layers: expected a positive integer, got 0"),
    (lambda: hb.GRU(3, 3, bias=1), TypeError, "GRU: bias: expected True or False, got 1"),
    (lambda: hb.LSTM(3, 3, batch_first="yes"), TypeError, "LSTM: batch_first: expected True or False, got 'yes'"),
    (lambda: hb.RNN(3, 3, dropout=1.5), ValueError, "RNN: dropout: expected a probability in [0, 1], got 1.5"),
    (lambda: hb.RNN(3, 3, bidirectional=None), TypeError, "RNN: bidirectional: expected True or False, got None"),
    (lambda: hb.RNN(3, 3, nonlinearity="sigmoid"), ValueError, "RNN: nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"),
    (lambda: hb.LSTM(3, 3, proj_size=2), ValueError, "LSTM: proj_size: expected 0 (handbp's LSTM has no projections), got 2"),
    (lambda: hb.LSTMCell(3, 0), ValueError, "LSTMCell: hidden_size: expected a positive integer, got 0"),
    (lambda: hb.RNNCell(3, 3, nonlinearity="gelu"), ValueError, "RNNCell: nonlinearity: expected 'tanh' or 'relu', got 'gelu'"),
    (lambda: hb.GRU(3, 3, dtype=np.int32), TypeError, "GRU: dtype: expected a floating dtype"),
    (lambda: hb.Embedding(0, 3), ValueError, "Embedding: num_embeddings: expected a positive integer, got 0"),
    (lambda: hb.Embedding(3, 2, padding_idx=3), ValueError, "Embedding: padding_idx: expected None or an index in [-3, 3), got 3"),
    (lambda: hb.SelectOutput(1.0), TypeError, "SelectOutput: index: expected an integer, got 1.0"),
    (lambda: hb.Flatten("1"), TypeError, "Flatten: start_dim: expected an integer, got '1'"),
]


@pytest.mark.parametrize("make, error, message", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value).startswith(message)


def test_dropout_with_one_layer_warns_as_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        hb.GRU(3, 3, dropout=0.2)


BAD_INPUTS = [
    ("wrong input_size", lambda r: (r.normal(size=(2, 2, 5)),), ValueError, "x: expected input_size 3 on the last axis"),
    ("1-D", lambda r: (r.normal(size=(5,)),), ValueError, "x: expected a 2-D (unbatched) or 3-D array"),
    ("state not a pair", lambda r: (r.normal(size=(2, 2, 3)), r.normal(size=(1, 2, 4))), TypeError,
     "hx: expected a pair (h_0, c_0), got array"),
    ("state of another batch", lambda r: (r.normal(size=(2, 2, 3)), (r.normal(size=(1, 3, 4)), r.normal(size=(1, 2, 4)))),
     ValueError, "hx[0]: expected shape (1, 2, 4), got (1, 3, 4)"),
    ("unbatched x, batched state", lambda r: (r.normal(size=(2, 3)), (r.normal(size=(1, 2, 4)), r.normal(size=(1, 2, 4)))),
     ValueError, "hx[0]: expected shape (1, 4), got (1, 2, 4)"),
    ("float32 state", lambda r: (r.normal(size=(2, 2, 3)), (r.normal(size=(1, 2, 4)).astype(np.float32),
                                                            r.normal(size=(1, 2, 4)))), TypeError,
     "hx[0]: expected dtype float64 (the model's dtype), got float32"),
    ("NaN in c0", lambda r: (r.normal(size=(2, 2, 3)), (r.normal(size=(1, 2, 4)), np.full((1, 2, 4), np.nan))),
     ValueError, "hx[1]: expected finite values"),
    ("three parts", lambda r: ((r.normal(size=(2, 2, 3)), None, None),), ValueError,
     "x: expected an array or a pair (x, hx), got a tuple of 3"),
]


@pytest.mark.parametrize("name, make, error, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_are_named_and_change_nothing(name, make, error, message, rng):
    lstm = hb.LSTM(3, 4, rng=rng)
    x = rng.normal(size=(5, 2, 3))
    lstm(x)
    lstm.backward(np.ones((5, 2, 4)))
    before = [(p.data.tobytes(), p.grad.tobytes()) for p in lstm.parameters()]
    with pytest.raises(error) as info:
        lstm(*make(rng))
    assert message in str(info.value)
    assert [(p.data.tobytes(), p.grad.tobytes()) for p in lstm.parameters()] == before
    lstm.backward(np.ones((5, 2, 4)))                         # the cache of the last good forward is intact


BAD_GRADIENTS = [
    ("wrong shape", lambda: np.ones((5, 2, 3)), ValueError, "grad_output: expected shape (5, 2, 4)"),
    ("float32", lambda: np.ones((5, 2, 4), np.float32), TypeError, "grad_output: expected shape (5, 2, 4) and dtype float64"),
    ("h_n not in a pair", lambda: (np.ones((5, 2, 4)), np.ones((1, 2, 4))), ValueError,
     "grad_output: expected the structure of the output (output, (h_n, c_n))"),
    ("c_n's shape", lambda: (np.ones((5, 2, 4)), (None, np.ones((2, 2, 4)))), ValueError, "grad_c_n: expected shape (1, 2, 4)"),
    ("a list", lambda: [np.ones((5, 2, 4))], TypeError, "grad_output: expected shape (5, 2, 4)"),
]


@pytest.mark.parametrize("name, make, error, message", BAD_GRADIENTS, ids=[b[0] for b in BAD_GRADIENTS])
def test_a_bad_upstream_gradient_changes_no_gradient(name, make, error, message, rng):
    lstm = hb.LSTM(3, 4, rng=rng)
    lstm(rng.normal(size=(5, 2, 3)))
    lstm.backward(np.ones((5, 2, 4)))
    before = [p.grad.tobytes() for p in lstm.parameters()]
    with pytest.raises(error) as info:
        lstm.backward(make())
    assert message in str(info.value)
    assert [p.grad.tobytes() for p in lstm.parameters()] == before


@pytest.mark.parametrize("cls", SEQUENCE_CLASSES + CELL_CLASSES, ids=lambda c: c.__name__)
def test_backward_before_forward_says_so(cls):
    with pytest.raises(hb.CallOrderError, match="backward\\(\\) called before forward\\(\\)"):
        cls(3, 4).backward(np.ones((2, 4)))


def test_a_tuple_given_to_a_layer_that_takes_one_array_names_select_output(rng):
    model = hb.Sequential(hb.LSTM(3, 4, rng=rng), hb.Linear(4, 2, rng=rng))
    with pytest.raises(TypeError, match=r"layer '1' \(Linear.*x: expected an array, got a tuple \(array \(5, 2, 4\) "
                                        r"float64, \(array \(1, 2, 4\).*hb\.SelectOutput\(0\)"):
        model(rng.normal(size=(5, 2, 3)))


def test_select_output_refuses_an_array_and_an_index_out_of_range(rng):
    with pytest.raises(TypeError, match="SelectOutput.*x: expected a tuple"):
        hb.SelectOutput(0)(rng.normal(size=(2, 3)))
    with pytest.raises(ValueError, match=r"layer '1' \(SelectOutput\(index=3\)\): index 3 is out of range for a tuple of 2"):
        hb.Sequential(hb.GRU(3, 4, rng=rng), hb.SelectOutput(3))(rng.normal(size=(2, 2, 3)))
    out = hb.Sequential(hb.LSTM(3, 4, rng=rng), hb.SelectOutput(-1), hb.SelectOutput(1))(rng.normal(size=(2, 2, 3)))
    assert out.shape == (1, 2, 4)                              # c_n, picked as output[-1][1]


EMBEDDING_INPUTS = [
    ("floats", np.array([[1.0, 2.0]]), TypeError, "Embedding: x: expected integer indices, got array of shape (1, 2) "
     "and dtype float64 (class ids as floats? convert with x.astype(np.int64))"),
    ("too large", np.array([[1, 5]]), ValueError, "x: expected indices in [0, 5), got 5 at index (0, 1)"),
    ("negative", np.array([-1]), ValueError, "x: expected indices in [0, 5), got -1 at index (0,)"),
    ("strings", ["a"], TypeError, "Embedding: x: expected integer indices"),
]


@pytest.mark.parametrize("name, x, error, message", EMBEDDING_INPUTS, ids=[e[0] for e in EMBEDDING_INPUTS])
def test_embedding_takes_integer_indices_in_range(name, x, error, message, rng):
    model = hb.Sequential(hb.Embedding(5, 3, rng=rng), hb.GRU(3, 2, rng=rng))
    with pytest.raises(error) as info:
        model(x)
    assert message in str(info.value)


def test_embedding_matches_torch_and_keeps_the_padding_row_at_zero(rng):
    emb = hb.Embedding(6, 3, padding_idx=-2, rng=rng)
    assert emb.padding_idx == 4 and not emb.weight.data[4].any()
    theirs = torch.nn.Embedding(6, 3, padding_idx=-2, dtype=torch.float64)
    theirs.weight.data.copy_(torch.from_numpy(emb.weight.data))
    idx = [[0, 4, 4], [5, 1, 0]]                               # a list works, as any integer array
    dy = rng.normal(size=(2, 3, 3))
    np.testing.assert_array_equal(emb(idx), theirs(torch.tensor(idx)).detach().numpy())
    theirs(torch.tensor(idx)).backward(torch.from_numpy(dy))
    emb.backward(dy)
    np.testing.assert_allclose(emb.weight.grad, theirs.weight.grad.numpy(), rtol=1e-15, atol=0)
    assert theirs.padding_idx == emb.padding_idx


def test_fit_trains_a_model_that_starts_with_an_embedding(rng):
    """Integer indices go through fit's input check when the model's first layer takes them: a
    sequence classifier (the sum of the digits, odd or even) learns its training set."""
    x = rng.integers(0, 4, (64, 5))
    y = (x.sum(axis=1) % 2).astype(np.int64)
    model = hb.Sequential(hb.Embedding(4, 8, rng=rng), hb.GRU(8, 16, batch_first=True, rng=rng), hb.SelectOutput(1),
                          hb.Flatten(0, 1), hb.Linear(16, 2, rng=rng))
    history = hb.fit(model, hb.CrossEntropyLoss(), hb.optim.Adam(model.parameters(), lr=0.02), x, y, epochs=60,
                     batch_size=16, rng=0)
    assert history[-1] < 0.5 * history[0] and hb.accuracy(model, x, y) > 0.9


@pytest.mark.parametrize("cls", SEQUENCE_CLASSES, ids=lambda c: c.__name__)
def test_a_checkpoint_rebuilds_the_layer_and_its_state(cls, tmp_path, rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.Sequential(hb.Embedding(7, 3, padding_idx=0, rng=rng),
                              build(cls.__name__, None, 3, 4, rng, num_layers=2, bidirectional=True, batch_first=True,
                                    dropout=0.25), hb.SelectOutput(0), hb.Flatten(0, 1), hb.Linear(8, 7, rng=rng))
    hb.save(model, tmp_path / "m.npz")
    loaded = hb.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    x = rng.integers(0, 7, (2, 5))
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


def test_unrolled_steps_are_the_gates_of_the_last_forward_newest_first(rng):
    lstm = hb.LSTM(2, 3, bidirectional=True, rng=rng)
    x = sequence_input(lstm, 4, 2, rng, np.float64, False)
    out, _ = lstm(x)
    steps = lstm.unrolled(layer=0, direction=1, sample=1)
    assert [s["t"] for s in steps] == [3, 2, 1, 0]             # the reverse direction starts at the end
    for s in steps:
        np.testing.assert_array_equal(s["h"], out[s["t"], 1, 3:])
        assert set(s) == {"t", "i", "f", "g", "o", "c", "h"} and 0 < s["f"].min() and s["f"].max() < 1
    text = lstm.format_unrolled(direction=1, sample=1, numbers=2)
    assert text[0].startswith("LSTM: layer 0, reverse, sample 1, 4 steps, newest first")
    assert text[1].startswith("  step 3 (t = 0): i [") and text[-1].startswith("  step 0 (t = 3)")
    with pytest.raises(ValueError, match=r"LSTM.unrolled: layer: expected an integer in \[0, 0\], got 1"):
        lstm.unrolled(layer=1)
