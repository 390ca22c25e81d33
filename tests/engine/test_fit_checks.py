"""``fit`` refuses a loss or an optimizer that is not one (or an optimizer over other parameters)
before it touches the model, and a step whose targets the loss refuses is not taken: the forward
it ran has moved BatchNorm's running statistics, which are put back, with every module's
train/eval mode. (A diverged step keeps what its forward did: tests/crosscheck/test_hardening.py.)"""
import numpy as np
import pytest

import handbp as hb


def model_with_buffers(rng):
    """Linear → BatchNorm1d → Linear, in eval mode (fit switches it to train)."""
    return hb.Sequential(hb.Linear(3, 4, rng=rng), hb.BatchNorm1d(4), hb.Linear(4, 2, rng=rng)).eval()


def snapshot(model, opt):
    state = [(k, v.dtype.str, v.tobytes()) for k, v in model.state_dict().items()]
    grads = [None if p.grad is None else p.grad.tobytes() for p in model.parameters()]
    modes = [m.training for _, m in model.named_modules()]
    opt_state = [(k, v.tobytes() if isinstance(v, np.ndarray) else v) for s in opt.state.values() for k, v in s.items()]
    return state, grads, modes, opt_state


CASES = {
    "loss-str": (dict(loss="mse"), TypeError, r"fit: loss: expected a loss object such as hb.MSELoss\(\), got str"),
    "loss-class": (dict(loss=hb.MSELoss), TypeError, r"fit: loss: expected a loss object.*got type"),
    "optimizer-str": (dict(optimizer="sgd"), TypeError, r"fit: optimizer: expected an optimizer object.*got str 'sgd'"),
    "optimizer-class": (dict(optimizer=hb.optim.SGD), TypeError, r"fit: optimizer: expected an optimizer object"),
    "optimizer-of-other-parameters": (dict(optimizer="other"), ValueError,
                                      r"fit: optimizer: expected an optimizer over the model's parameters, got one "
                                      r"that holds none of them"),
    "target-width": (dict(y=np.zeros((8, 3))), ValueError, r"MSELoss: target: expected shape \(8, 2\)"),
    "target-nan": (dict(y=np.full((8, 2), np.nan)), ValueError, r"target: expected finite values"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_fit_refuses_before_changing_the_model(kind, rng):
    model = model_with_buffers(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(rng.normal(size=(8, 3)))
    model.backward(rng.normal(size=(8, 2)))
    opt.step()                                          # some gradients and state to keep
    args = dict(loss=hb.MSELoss(), optimizer=opt, y=rng.normal(size=(8, 2)))
    change, error, message = CASES[kind]
    args.update(change)
    if args["optimizer"] == "other":
        args["optimizer"] = hb.optim.SGD([hb.Parameter(np.zeros(2))], lr=0.1)
    before = snapshot(model, opt)
    with pytest.raises(error, match=message):
        hb.fit(model, args["loss"], args["optimizer"], rng.normal(size=(8, 3)), args["y"], batch_size=8,
               progress=False)
    assert snapshot(model, opt) == before


def test_a_step_with_refused_targets_is_not_taken(rng):
    """Targets with a NaN in the last batch only: the model ends as a run over the batches before."""
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    bad = y.copy()
    bad[-1, 0] = np.nan
    models = [model_with_buffers(np.random.default_rng(7)) for _ in range(2)]
    opts = [hb.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    hb.fit(models[0], hb.MSELoss(), opts[0], x[:8], y[:8], batch_size=4, shuffle=False, progress=False)
    models[0].eval()                                   # fit leaves train mode on; the failed run restores eval
    with pytest.raises(ValueError, match=r"target: expected finite values"):
        hb.fit(models[1], hb.MSELoss(), opts[1], x, bad, batch_size=4, shuffle=False, progress=False)
    assert [m.training for _, m in models[1].named_modules()] == [False] * 4
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)           # the same operations: exact


@pytest.mark.parametrize("model, y, error, message", [
    ("str", [0, 1, 0, 1], TypeError, r"accuracy: model: expected a handbp Module, got str"),
    (None, [0, 1, 0], ValueError, r"accuracy: y: expected 4 class labels .*got list \[0, 1, 0\]"),
    (None, [0.5, 1, 0, 1], ValueError, r"accuracy: y: expected 4 class labels \(whole numbers"),
    (None, [np.nan, 1, 0, 1], ValueError, r"accuracy: y: expected 4 class labels"),
    (None, "abcd", TypeError, r"accuracy: y: expected 4 class labels.*got 'abcd'"),
])
def test_accuracy_refuses_labels_that_do_not_fit(model, y, error, message, rng):
    """Before, a wrong count was NumPy's reshape error and fractional labels scored 0 silently."""
    net = hb.Sequential(hb.Linear(3, 2, rng=rng))
    with pytest.raises(error, match=message):
        hb.accuracy(net if model is None else model, rng.normal(size=(4, 3)), y)


@pytest.mark.parametrize("y", [np.array([1, 0, 1, 1]), np.array([1.0, 0.0, 1.0, 1.0]), np.array([[1], [0], [1], [1]])])
def test_accuracy_takes_integer_and_whole_float_labels(y):
    """A one-logit model scores ``output > 0``; BCE targets (floats 0.0 / 1.0) are labels too."""
    net = hb.Sequential(hb.Identity())
    assert hb.accuracy(net, np.array([[2.0], [-1.0], [-3.0], [0.5]]), y) == 0.75
