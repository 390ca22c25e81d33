"""fit: the per-epoch loss history, deterministic given its rng, the same steps as a hand-written
loop; the generated tasks; a tanh MLP learns the two spirals."""
import numpy as np
import pytest

import handbp as hb


def mlp(rng, out=2, width=32):
    return hb.Sequential(hb.Linear(2, width, rng=rng), hb.Tanh(), hb.Linear(width, width, rng=rng), hb.Tanh(),
                         hb.Linear(width, out, rng=rng))


@pytest.mark.parametrize("task, n, x_shape, y_shape, y_dtype", [
    ("spirals", 400, (400, 2), (400,), np.int64), ("spirals", 7, (7, 2), (7,), np.int64),
    ("xor", 200, (200, 2), (200,), np.int64), ("xor", 1, (1, 2), (1,), np.int64),
    ("sine", 200, (200, 1), (200, 1), np.float64), ("sine", 3, (3, 1), (3, 1), np.float64)])
def test_task_shapes_and_determinism(task, n, x_shape, y_shape, y_dtype):
    make = getattr(hb.datasets, task)
    x, y = make(n, rng=0)
    assert x.shape == x_shape and x.dtype == np.float64 and y.shape == y_shape and y.dtype == y_dtype
    assert np.isfinite(x).all() and np.isfinite(y).all()
    x2, y2 = make(n, rng=np.random.default_rng(0))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(make(n, rng=1)[0], x)
    if y_dtype == np.int64:
        assert set(np.unique(y)) <= {0, 1}


@pytest.mark.parametrize("task, shapes", [("spirals", ((400, 2), (400,))), ("xor", ((200, 2), (200,))),
                                           ("sine", ((200, 1), (200, 1)))])
def test_each_task_in_the_table_has_its_default_size(task, shapes):
    x, y = hb.datasets.TASKS[task](rng=3)
    assert (x.shape, y.shape) == shapes


def test_task_contents():
    x, y = hb.datasets.spirals(400, rng=0)
    assert np.bincount(y).tolist() == [200, 200]
    x, y = hb.datasets.xor(400, noise=0.0, rng=0)
    assert np.array_equal(y, (np.sign(x[:, 0]) != np.sign(x[:, 1])).astype(np.int64))
    x, y = hb.datasets.sine(400, noise=0.0, rng=0)
    assert np.abs(x).max() <= np.pi and np.allclose(y, np.sin(x), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_task_sizes_are_checked(n):
    with pytest.raises(ValueError, match="n: expected an integer"):
        hb.datasets.spirals(n)


@pytest.mark.parametrize("n, batch_size, epochs", [(10, 4, 3), (8, 8, 2), (5, 32, 2), (1, 1, 2)])
def test_fit_returns_the_mean_loss_of_each_epoch(n, batch_size, epochs, rng):
    x, y = rng.normal(size=(n, 2)), rng.integers(0, 2, n)
    model = mlp(rng)
    history = hb.fit(model, hb.CrossEntropyLoss(), hb.optim.SGD(model.parameters(), lr=0.1), x, y,
                     epochs=epochs, batch_size=batch_size, shuffle=False, rng=0)
    assert isinstance(history, list) and len(history) == epochs and all(isinstance(h, float) for h in history)


def test_fit_takes_the_steps_of_a_hand_written_loop(rng):
    """zero_grad, forward, loss, backward, step per mini-batch, shuffled by rng; the history is the
    sample-weighted mean of the batch losses (the last batch is smaller)."""
    x, y = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    model = mlp(rng)
    twin = mlp(rng)
    twin.load_state_dict(model.state_dict())
    history = hb.fit(model, hb.CrossEntropyLoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x, y,
                     epochs=3, batch_size=4, rng=np.random.default_rng(7))
    order_rng = np.random.default_rng(7)
    opt = hb.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    loss, expected = hb.CrossEntropyLoss(), []
    for _ in range(3):
        order, total = order_rng.permutation(10), 0.0
        for idx in (order[0:4], order[4:8], order[8:10]):
            opt.zero_grad()
            value = loss(twin(x[idx]), y[idx])
            twin.backward(loss.backward())
            opt.step()
            total += value * len(idx)
        expected.append(total / 10)
    assert history == expected
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)


def run(seed, rng_arg, shuffle=True):
    x, y = hb.datasets.xor(40, rng=seed)
    model = mlp(np.random.default_rng(seed), out=1, width=8)
    history = hb.fit(model, hb.BCEWithLogitsLoss(), hb.optim.SGD(model.parameters(), lr=0.2), x, y[:, None] * 1.0,
                     epochs=4, batch_size=8, shuffle=shuffle, rng=rng_arg)
    return history, [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("rng_arg", [3, "generator", None], ids=["int", "generator", "default"])
def test_fit_is_deterministic_given_its_rng(rng_arg):
    make = (lambda: np.random.default_rng(3)) if rng_arg == "generator" else (lambda: rng_arg)
    (h1, p1), (h2, p2) = run(0, make()), run(0, make())
    assert h1 == h2 and all(np.array_equal(a, b) for a, b in zip(p1, p2))


def test_fit_shuffles_with_its_rng():
    assert run(0, 1)[0] != run(0, 2)[0]                       # a different order, a different history
    assert run(0, 1, shuffle=False)[0] == run(0, 2, shuffle=False)[0]


def test_fit_does_not_touch_numpys_global_random_state():
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        expected = np.random.normal(size=3)
        np.random.seed(0)
        run(0, 5)
        assert np.array_equal(np.random.normal(size=3), expected)
    finally:
        np.random.set_state(saved)


def test_a_tanh_mlp_learns_the_spirals():
    """400 points of two interleaved spirals, 2-32-32-2 tanh MLP, SGD with momentum, 100 epochs
    (about 0.2 s): every point classified right (the bar is 95%)."""
    x, y = hb.datasets.spirals(400, rng=0)
    model = mlp(np.random.default_rng(0))
    loss = hb.CrossEntropyLoss()
    before = hb.accuracy(model, x, y)
    history = hb.fit(model, loss, hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x, y,
                     epochs=100, batch_size=32, rng=0)
    acc = hb.accuracy(model, x, y)
    assert acc > 0.95, f"train accuracy {acc:.3f} (before training {before:.3f})"
    assert before < 0.8
    assert history[-1] < 0.05 * history[0]


def test_xor_with_one_logit_and_sine_regression_train():
    x, y = hb.datasets.xor(200, rng=0)
    model = mlp(np.random.default_rng(1), out=1, width=8)
    hb.fit(model, hb.BCEWithLogitsLoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x,
           y[:, None].astype(np.float64), epochs=60, batch_size=20, rng=0)
    assert hb.accuracy(model, x, y) > 0.95                       # one output: the class is logit > 0
    x, y = hb.datasets.sine(200, rng=0)
    model = hb.Sequential(hb.Linear(1, 16, rng=np.random.default_rng(2)), hb.Tanh(),
                          hb.Linear(16, 1, rng=np.random.default_rng(3)))
    history = hb.fit(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x, y,
                     epochs=150, batch_size=20, rng=0)
    assert history[-1] < 0.01 < history[0]


def test_accuracy_counts_argmax_matches():
    model = hb.Identity()
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert hb.accuracy(model, out, np.array([1, 0, 0, 0])) == 0.75
    assert hb.accuracy(model, np.array([[2.0], [-1.0]]), np.array([1, 1])) == 0.5
