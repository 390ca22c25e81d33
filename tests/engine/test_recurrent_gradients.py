"""Every recurrent module's backward against central finite differences (float64, short sequences):
the input's gradient, the initial states' (h0, c0), every parameter's, with every output (output,
h_n, c_n) given its own upstream gradient, over layers, directions, batch_first, unbatched input and
dropout masks held fixed; and the same for Embedding, SelectOutput and Flatten."""
import numpy as np
import pytest

import handbp as hb
from tests.helpers.fd import fd_gradient
from tests.helpers.tolerance import FD_ATOL, FD_RTOL
from handbp.structure import flatten
from tests.helpers.recurrent import CELL_KINDS, SEQUENCE_KINDS, build, cell_input, kind_id, sequence_input

SEQUENCE_CASES = [(k, nl, layers, bidir, bf, state, batched) for k, nl in SEQUENCE_KINDS
                  for layers, bidir, bf, state, batched in [(1, False, False, True, True), (2, True, True, True, True),
                                                            (2, False, True, False, True), (1, True, False, True, False),
                                                            (2, True, False, False, False)]]
CELL_CASES = [(k, nl, state, batched) for k, nl in CELL_KINDS for state in (True, False) for batched in (True, False)]


def upstream(out, rng):
    """A random gradient for every array of the output, in its structure."""
    return _like(out, lambda a: rng.normal(size=a.shape))


def _like(tree, fn):
    return tuple(_like(t, fn) for t in tree) if type(tree) is tuple else fn(tree)


def check_against_fd(module, x, rng):
    """backward's gradients of every input array and every parameter against finite differences of
    L = Σ ⟨output part, its upstream gradient⟩."""
    dy = upstream(module.forward(x), rng)
    inputs = [a for a in flatten(x)]

    def loss():
        return sum(float(np.sum(o * d)) for o, d in zip(flatten(module.forward(x)), flatten(dy)))

    module.zero_grad()
    module.forward(x)
    dx = module.backward(dy)
    for a, g in zip(inputs, flatten(dx)):
        np.testing.assert_allclose(g, fd_gradient(loss, a), rtol=FD_RTOL, atol=FD_ATOL)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, fd_gradient(loss, p.data), rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)
    return dx


@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=[f"{kind_id(c[0], c[1])}-L{c[2]}-{'bi' if c[3] else 'uni'}-"
                                                      f"{'bf' if c[4] else 'tf'}-{'h0' if c[5] else 'noh0'}-"
                                                      f"{'batched' if c[6] else 'unbatched'}" for c in SEQUENCE_CASES])
def test_sequence_layer_gradients(case, rng):
    kind, nl, layers, bidir, bf, state, batched = case
    layer = build(kind, nl, 2, 3, rng, num_layers=layers, bidirectional=bidir, batch_first=bf)
    x = sequence_input(layer, 3, 2, rng, np.float64, state, batched)
    dx = check_against_fd(layer, x, rng)
    assert (type(dx) is tuple) == state


@pytest.mark.parametrize("case", CELL_CASES, ids=[f"{kind_id(c[0], c[1])}-{'hx' if c[2] else 'nohx'}-"
                                                  f"{'batched' if c[3] else 'unbatched'}" for c in CELL_CASES])
def test_cell_gradients(case, rng):
    kind, nl, state, batched = case
    cell = build(kind, nl, 2, 3, rng)
    check_against_fd(cell, cell_input(cell, 2, rng, np.float64, state, batched), rng)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_gradients_with_dropout_between_layers(kind, rng):
    """With the masks held fixed (the generator reset before each forward), the loss is a function of
    the weights and dropout's backward must match it."""
    layer = getattr(hb, kind)(2, 3, num_layers=3, dropout=0.4, rng=rng)
    x = rng.normal(size=(4, 2, 2))
    state = layer.dropout_rng.bit_generator.state
    forward = layer.forward

    def same_masks(v):
        layer.dropout_rng.bit_generator.state = state
        return forward(v)
    layer.forward = same_masks
    check_against_fd(layer, x, rng)
    assert any(m is not None and not m[0].all() for m in layer.last_masks)


def test_bias_free_layers(rng):
    for make in (lambda: hb.LSTM(2, 3, bias=False, rng=rng), lambda: hb.GRUCell(2, 3, bias=False, rng=rng)):
        m = make()
        x = rng.normal(size=(3, 2, 2)) if isinstance(m, hb.LSTM) else rng.normal(size=(2, 2))
        check_against_fd(m, x, rng)
        assert all("bias" not in name for name, _ in m.named_parameters())


def test_embedding_gradient(rng):
    emb = hb.Embedding(5, 3, padding_idx=1, rng=rng)
    idx = np.array([[0, 1, 4], [4, 4, 1]])
    dy = rng.normal(size=(2, 3, 3))
    loss = lambda: float(np.sum(emb.forward(idx) * dy))          # noqa: E731
    emb.forward(idx)
    assert emb.backward(dy) is None
    fd = fd_gradient(loss, emb.weight.data)
    fd[1] = 0                                                    # the padding row is never trained
    np.testing.assert_allclose(emb.weight.grad, fd, rtol=FD_RTOL, atol=FD_ATOL)
    assert not emb.weight.grad[1].any() and emb.weight.grad[4].any()


@pytest.mark.parametrize("module, shape", [(hb.Flatten(), (2, 3, 4)), (hb.Flatten(0, 1), (2, 3, 4)),
                                           (hb.Flatten(1, 2), (2, 3, 4, 2)), (hb.Flatten(-2, -1), (3, 2))])
def test_flatten_gradient(module, shape, rng):
    x = rng.normal(size=shape)
    dy = rng.normal(size=module.forward(x).shape)
    loss = lambda: float(np.sum(module.forward(x) * dy))         # noqa: E731
    module.forward(x)
    np.testing.assert_allclose(module.backward(dy), fd_gradient(loss, x), rtol=FD_RTOL, atol=FD_ATOL)


def test_select_output_gradient(rng):
    """The picked part gets dy, the others None (zero): a Sequential through an LSTM and SelectOutput
    matches finite differences of the loss on the selected part alone."""
    model = hb.Sequential(hb.LSTM(2, 3, rng=rng), hb.SelectOutput(0), hb.Flatten(0, 1), hb.Linear(3, 2, rng=rng))
    x = rng.normal(size=(4, 2, 2))
    dy = rng.normal(size=(8, 2))
    loss = lambda: float(np.sum(model.forward(x) * dy))          # noqa: E731
    model.zero_grad()
    model.forward(x)
    np.testing.assert_allclose(model.backward(dy), fd_gradient(loss, x), rtol=FD_RTOL, atol=FD_ATOL)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, fd_gradient(loss, p.data), rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)
    d_out = rng.normal(size=(4, 2, 3))
    parts = model[1].backward(d_out)
    assert len(parts) == 2 and parts[0] is d_out and parts[1] is None
