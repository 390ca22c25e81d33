"""A catalogue of bad inputs: each must raise the stated exception with a message that names the
argument (or the layer), and leave the model's parameters, gradients and the optimizer's state
byte-for-byte as they were."""
import os

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main


def world(dtype=np.float64):
    """A small trained-once model, optimizer with momentum state, and a batch."""
    rng = np.random.default_rng(0)
    model = hb.Sequential(hb.Linear(4, 5, rng=rng, dtype=dtype), hb.Tanh(), hb.Linear(5, 3, rng=rng, dtype=dtype))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = rng.normal(size=(6, 4)).astype(dtype)
    y = rng.normal(size=(6, 3)).astype(dtype)
    loss = hb.MSELoss()
    opt.zero_grad(); loss(model(x), y); model.backward(loss.backward()); opt.step()
    loss(model(x), y); model.backward(loss.backward())          # leave gradients in place too
    return model, opt, x, y


def snapshot(model, opt):
    params = [(p.data.tobytes(), None if p.grad is None else p.grad.tobytes()) for p in model.parameters()]
    state = [(id(p), {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in s.items()})
             for p, s in opt.state.items()]
    return params, state, repr(opt.param_groups)


def _ckpt_truncated(model, opt, tmp):
    path = os.path.join(tmp, "m.npz")
    hb.save(model, path, optimizer=opt)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return lambda: hb.load_into(path, model, opt)


def _ckpt_corrupt(model, opt, tmp):
    path = os.path.join(tmp, "m.npz")
    hb.save(model, path, optimizer=opt)
    data = bytearray(open(path, "rb").read())
    for i in range(200, 260):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))
    return lambda: hb.load_into(path, model, opt)


def _ckpt_other_arch(model, opt, tmp):
    path = os.path.join(tmp, "m.npz")
    hb.save(hb.Sequential(hb.Linear(4, 7), hb.Tanh(), hb.Linear(7, 3)), path)
    return lambda: hb.load_into(path, model)


def _ckpt_other_dtype(model, opt, tmp):
    path = os.path.join(tmp, "m.npz")
    hb.save(hb.Sequential(hb.Linear(4, 5), hb.Tanh(), hb.Linear(5, 3)).to(np.float32), path)
    return lambda: hb.load_into(path, model)


def _ckpt_not_a_checkpoint(model, opt, tmp):
    path = os.path.join(tmp, "m.npz")
    np.savez(path, a=np.zeros(3))
    return lambda: hb.load_into(path, model)


def _backward_before_forward(model, opt, tmp):
    fresh = hb.Linear(4, 5)
    return lambda: hb.Sequential(fresh).backward(np.ones((2, 5)))


def _state_dict(model, opt, tmp, **change):
    sd = model.state_dict()
    sd.update(change)
    return sd


CASES = {
    # -- forward: shapes, dtypes, values
    "x-wrong-features": (lambda m, o, x, y, t: lambda: m(np.ones((6, 3))), ValueError, r"layer '0'.*Linear.*\(N, 4\)"),
    "x-wrong-features-inner": (lambda m, o, x, y, t: lambda: hb.Sequential(m, hb.Linear(2, 2))(x), ValueError,
                               r"layer '1'.*Linear.*in_features=2"),
    "x-3d": (lambda m, o, x, y, t: lambda: m(np.ones((2, 6, 4))), ValueError, r"layer '0'.*shape"),
    "x-nan": (lambda m, o, x, y, t: lambda: m(np.where(np.eye(6, 4) > 0, np.nan, x)), ValueError, r"x: expected finite"),
    "x-inf": (lambda m, o, x, y, t: lambda: m(np.full((6, 4), np.inf)), ValueError, r"x: expected finite"),
    "x-float32-into-float64": (lambda m, o, x, y, t: lambda: m(x.astype(np.float32)), TypeError, r"x: expected dtype float64"),
    "x-int": (lambda m, o, x, y, t: lambda: m(np.ones((6, 4), dtype=int)), TypeError, r"x: expected a floating"),
    "x-string": (lambda m, o, x, y, t: lambda: m("abc"), TypeError, r"x: expected"),
    "x-object": (lambda m, o, x, y, t: lambda: m(object()), TypeError, r"x: expected"),
    # -- backward
    "backward-before-forward": (lambda m, o, x, y, t: _backward_before_forward(m, o, t), hb.CallOrderError,
                                r"backward\(\) called before forward"),
    "grad-output-wrong-shape": (lambda m, o, x, y, t: (m(x), lambda: m.backward(np.ones((6, 2))))[1], ValueError,
                                r"layer '2'.*grad_output: expected shape \(6, 3\)"),
    "grad-output-not-array": (lambda m, o, x, y, t: (m(x), lambda: m.backward([1.0]))[1], ValueError, r"grad_output"),
    "loss-backward-before-call": (lambda m, o, x, y, t: lambda: hb.MSELoss().backward(), hb.CallOrderError,
                                  r"before the loss was computed"),
    # -- losses and targets
    "target-wrong-shape": (lambda m, o, x, y, t: lambda: hb.MSELoss()(m(x), y[:, :2]), ValueError,
                           r"target: expected shape \(6, 3\)"),
    "target-nan": (lambda m, o, x, y, t: lambda: hb.MSELoss()(m(x), np.full_like(y, np.nan)), ValueError,
                   r"target: expected finite"),
    "target-wrong-dtype": (lambda m, o, x, y, t: lambda: hb.MSELoss()(m(x), y.astype(np.float32)), TypeError,
                           r"target: expected dtype float64"),
    "pred-empty": (lambda m, o, x, y, t: lambda: hb.MSELoss()(np.zeros((0, 3)), np.zeros((0, 3))), ValueError,
                   r"pred: expected at least one element"),
    "ce-class-out-of-range": (lambda m, o, x, y, t: lambda: hb.CrossEntropyLoss()(m(x), np.array([0, 1, 2, 3, 0, 1])),
                              ValueError, r"target: expected class indices in \[0, 3\), got 3"),
    "ce-negative-class": (lambda m, o, x, y, t: lambda: hb.CrossEntropyLoss()(m(x), np.array([0, -1, 2, 1, 0, 1])),
                          ValueError, r"got -1"),
    "ce-target-wrong-shape": (lambda m, o, x, y, t: lambda: hb.CrossEntropyLoss()(m(x), np.array([0, 1])), ValueError,
                              r"target: expected class indices of shape \(6,\)"),
    "ce-target-bool": (lambda m, o, x, y, t: lambda: hb.CrossEntropyLoss()(m(x), np.ones(6, dtype=bool)), TypeError,
                       r"target: expected integer class indices"),
    "ce-logits-3d": (lambda m, o, x, y, t: lambda: hb.CrossEntropyLoss()(np.ones((2, 2, 2)), np.zeros((2, 2), int)),
                     ValueError, r"pred: expected logits"),
    "loss-bad-reduction": (lambda m, o, x, y, t: lambda: hb.MSELoss(reduction="avg"), ValueError,
                           r"reduction: expected 'mean' or 'sum', got 'avg'"),
    # -- construction
    "linear-negative-size": (lambda m, o, x, y, t: lambda: hb.Linear(-1, 3), ValueError, r"in_features"),
    "linear-float-size": (lambda m, o, x, y, t: lambda: hb.Linear(3, 2.5), ValueError, r"out_features"),
    "linear-int-dtype": (lambda m, o, x, y, t: lambda: hb.Linear(3, 2, dtype=np.int32), TypeError, r"dtype"),
    "dnn-zero-width": (lambda m, o, x, y, t: lambda: hb.DNN(2, 0, 3, 1), ValueError, r"num_neuron"),
    "dnn-bad-activation": (lambda m, o, x, y, t: lambda: hb.DNN(1, 3, 3, 1, activation="relu"), TypeError, r"activation"),
    "leaky-relu-nan-slope": (lambda m, o, x, y, t: lambda: hb.LeakyReLU(float("nan")), ValueError, r"negative_slope"),
    "softmax-bad-dim": (lambda m, o, x, y, t: lambda: hb.Softmax(dim="last"), TypeError, r"dim"),
    "sequential-not-module": (lambda m, o, x, y, t: lambda: hb.Sequential(m, np.tanh), TypeError, r"argument 1"),
    # -- optimizers
    "sgd-negative-lr": (lambda m, o, x, y, t: lambda: hb.optim.SGD(m.parameters(), lr=-1), ValueError, r"learning rate"),
    "sgd-nesterov-no-momentum": (lambda m, o, x, y, t: lambda: hb.optim.SGD(m.parameters(), lr=0.1, nesterov=True),
                                 ValueError, r"Nesterov"),
    "sgd-single-parameter": (lambda m, o, x, y, t: lambda: hb.optim.SGD(m[0].weight, lr=0.1), TypeError, r"params"),
    "sgd-empty": (lambda m, o, x, y, t: lambda: hb.optim.SGD([], lr=0.1), ValueError, r"params"),
    "sgd-load-wrong-shape": (lambda m, o, x, y, t: lambda: o.load_state_dict(
        {"state": {0: {"momentum_buffer": np.zeros(2)}}, "param_groups": o.state_dict()["param_groups"]}),
        ValueError, r"momentum_buffer.*shape"),
    "sgd-load-unknown-key": (lambda m, o, x, y, t: lambda: o.load_state_dict(
        {"state": {0: {"exp_avg": np.zeros((5, 4))}}, "param_groups": o.state_dict()["param_groups"]}),
        ValueError, r"unexpected state 'exp_avg'"),
    "sgd-load-bad-lr": (lambda m, o, x, y, t: lambda: o.load_state_dict(
        {"state": {}, "param_groups": [{**o.state_dict()["param_groups"][0], "lr": -1.0}]}), ValueError, r"learning rate"),
    "gradient-descent-bad-alpha": (lambda m, o, x, y, t: lambda: hb.gradient_descent(m, x, y, hb.MSELoss(), alpha=-1),
                                   ValueError, r"alpha"),
    "gradient-descent-bad-target": (lambda m, o, x, y, t: lambda: hb.gradient_descent(m, x, y[:2], hb.MSELoss()),
                                    ValueError, r"target"),
    # -- state dicts
    "load-missing-key": (lambda m, o, x, y, t: lambda: m.load_state_dict({k: v for k, v in m.state_dict().items()
                                                                          if k != "2.bias"}), KeyError, r"missing keys \['2.bias'\]"),
    "load-extra-key": (lambda m, o, x, y, t: lambda: m.load_state_dict(_state_dict(m, o, t, extra=np.zeros(1))),
                       KeyError, r"unexpected keys \['extra'\]"),
    "load-wrong-shape": (lambda m, o, x, y, t: lambda: m.load_state_dict(_state_dict(m, o, t, **{"0.weight": np.zeros((4, 5))})),
                         ValueError, r"'0.weight': expected shape \(5, 4\)"),
    "load-wrong-dtype": (lambda m, o, x, y, t: lambda: m.load_state_dict(
        _state_dict(m, o, t, **{"2.bias": np.zeros(3, dtype=np.float32)})), TypeError, r"'2.bias': expected dtype float64"),
    "load-not-a-mapping": (lambda m, o, x, y, t: lambda: m.load_state_dict([1, 2]), TypeError, r"mapping"),
    # -- training
    "fit-zero-epochs": (lambda m, o, x, y, t: lambda: hb.fit(m, hb.MSELoss(), o, x, y, epochs=0), ValueError, r"epochs"),
    "fit-mismatched-lengths": (lambda m, o, x, y, t: lambda: hb.fit(m, hb.MSELoss(), o, x, y[:4]), ValueError, r"y: expected 6"),
    "fit-empty": (lambda m, o, x, y, t: lambda: hb.fit(m, hb.MSELoss(), o, x[:0], y[:0]), ValueError, r"x: expected at least"),
    "fit-nan-x": (lambda m, o, x, y, t: lambda: hb.fit(m, hb.MSELoss(), o, x * np.nan, y), ValueError, r"x: expected finite"),
    # -- checkpoints
    "checkpoint-truncated": (lambda m, o, x, y, t: _ckpt_truncated(m, o, t), hb.CheckpointError, r"truncated or corrupt"),
    "checkpoint-corrupt": (lambda m, o, x, y, t: _ckpt_corrupt(m, o, t), hb.CheckpointError, r"truncated or corrupt|not a handbp"),
    "checkpoint-other-architecture": (lambda m, o, x, y, t: _ckpt_other_arch(m, o, t), hb.CheckpointError,
                                      r"different architecture"),
    "checkpoint-other-dtype": (lambda m, o, x, y, t: _ckpt_other_dtype(m, o, t), hb.CheckpointError, r"dtype float32"),
    "checkpoint-foreign-npz": (lambda m, o, x, y, t: _ckpt_not_a_checkpoint(m, o, t), hb.CheckpointError,
                               r"truncated or corrupt|not a handbp"),
    "checkpoint-missing-file": (lambda m, o, x, y, t: lambda: hb.load_into(os.path.join(t, "nope.npz"), m),
                                FileNotFoundError, r"nope.npz"),
}


def test_the_catalogue_has_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_changes_nothing(case, tmp_path):
    build, exc, message = CASES[case]
    model, opt, x, y = world()
    call = build(model, opt, x, y, str(tmp_path))
    before = snapshot(model, opt)
    with pytest.raises(exc, match=message):
        call()
    assert snapshot(model, opt) == before


def test_errors_carry_no_numpy_traceback_depth():
    """The error is raised by handbp's own check, not from deep inside NumPy."""
    model, _, _, _ = world()
    with pytest.raises(ValueError) as info:
        model(np.ones((2, 3)))
    assert info.traceback[-1].path.name in ("layers.py", "module.py")


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "--width", "0"], "--width"),
    (["demo", "--epochs", "0"], "--epochs"),
    (["demo", "--alpha", "nan"], "--alpha"),
    (["bench", "engine", "--repeats", "0"], "--repeats"),
    (["bench", "engine", "--sizes", "5:x:1"], "--sizes"),
    (["explain", "--checkpoint", "/nonexistent/model.npz"], "model.npz"),
    (["zoo", "--bug", "nope"], "--bug"),
])
def test_cli_bad_arguments_exit_2_naming_the_argument(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
