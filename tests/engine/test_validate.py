"""Hyperparameters are checked by one set of validators (``handbp.validate``), so every constructor
and public function accepts and refuses the same values, with one message:
``{owner}: {arg}: expected {what}, got {given}`` (torch's words in front for the optimizers).

The table lists each (owner, argument) with the kind of value it takes; a kind expands into values
that must be accepted (Python and NumPy scalars alike, stored back as plain Python values) and
values that must be refused (bools as numbers, NaN, Inf, strings, None, lists, out of range)."""
import numpy as np
import pytest

import handbp as hb
from handbp import numerical

NAN, INF = float("nan"), float("inf")


# -- kinds: lists of (label, value, verdict); verdict "ok", "type" (refused for its type: a
# TypeError that is also a ValueError) or "value" (refused for its value: a ValueError)
def number(good, *out_of_range, finite=True, optional=False):
    cases = [("float", float(good), "ok"), ("np.float64", np.float64(good), "ok"),
             ("np.float32", np.float32(good), "ok"),
             ("True", True, "type"), ("np.bool_", np.bool_(True), "type"), ("str", str(good), "type"),
             ("list", [good], "type"), ("None", None, "ok" if optional else "type")]
    if float(good).is_integer():
        cases += [("int", int(good), "ok"), ("np.int64", np.int64(good), "ok")]
    cases += [(label, v, "value" if finite else "ok") for label, v in
              (("nan", NAN), ("inf", INF), ("-inf", -INF), ("np.float32-nan", np.float32(NAN)))]
    return cases + [(f"out-of-range {v}", v, "value") for v in out_of_range]


def integer(good, *out_of_range):
    return [("int", good, "ok"), ("np.int64", np.int64(good), "ok"), ("np.int32", np.int32(good), "ok"),
            ("float", float(good), "type"), ("True", True, "type"), ("np.bool_", np.bool_(True), "type"),
            ("str", str(good), "type"), ("None", None, "type"), ("list", [good], "type")] + \
        [(f"out-of-range {v}", v, "value") for v in out_of_range]


def flag(optional=False):
    return [("True", True, "ok"), ("False", False, "ok"), ("np.bool_", np.bool_(False), "ok"),
            ("1", 1, "type"), ("0", 0, "type"), ("np.int64", np.int64(1), "type"), ("str", "True", "type"),
            ("None", None, "ok" if optional else "type")]


def choice(*options):
    return [(o, o, "ok") for o in options] + [("other", "other", "value"), ("upper", options[0].upper(), "value"),
                                              ("None", None, "type"), ("int", 1, "type")]


def dtype():
    return [("np.float64", np.float64, "ok"), ("np.float32", np.float32, "ok"), ("str", "float32", "ok"),
            ("np.dtype", np.dtype("float64"), "ok"), ("np.int32", np.int32, "type"), ("bool", bool, "type"),
            ("complex", np.complex128, "type"), ("nonsense", "nonsense", "type")]


def generator():
    return [("None", None, "ok"), ("seed", 3, "ok"), ("np.int64-seed", np.int64(3), "ok"),
            ("Generator", np.random.default_rng(1), "ok"), ("negative", -1, "value"), ("float", 1.5, "type"),
            ("True", True, "type"), ("str", "3", "type"), ("np.random", np.random, "type")]


def init_generator():
    """An initializer's rng: a Generator or seed, or numpy's global state (None, np.random) or a RandomState."""
    return [(label, v, "ok" if label == "np.random" else verdict) for label, v, verdict in generator()] + \
        [("RandomState", np.random.RandomState(0), "ok")]


def shape():
    return [("int", 3, "ok"), ("np.int64", np.int64(3), "ok"), ("tuple", (2, 3), "ok"), ("list", [3], "ok"),
            ("zero", 0, "value"), ("empty", (), "value"), ("tuple-zero", (2, 0), "value"), ("float", 2.5, "type"),
            ("str", "3", "type"), ("True", True, "type"), ("None", None, "type")]


# -- what the calls need
def params():
    return [hb.Parameter(np.zeros(2))]


def sgd():
    return hb.optim.SGD(params(), lr=0.1)


def net():
    return hb.Sequential(hb.Linear(2, 2, rng=np.random.default_rng(0)), hb.Tanh())


X, Y = np.linspace(-1, 1, 8).reshape(4, 2), np.linspace(1, -1, 8).reshape(4, 2)


def fit(**kwargs):
    """``hb.fit`` on a fresh net with an SGD over its parameters (fit refuses one over others)."""
    model = net()
    return hb.fit(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), X, Y, **kwargs)


def after_forward(make_loss):
    loss = make_loss()
    if isinstance(loss, hb.CrossEntropyLoss):
        loss(X, np.array([0, 1, 1, 0]))
    else:
        loss(X, (Y > 0).astype(np.float64))
    return loss


def group(key):
    return lambda o: o.param_groups[0][key]


def attr(name):
    return lambda m: getattr(m, name)


# (owner, argument, call(value), kind, stored(result) or None)
TABLE = [
    ("Linear", "in_features", lambda v: hb.Linear(v, 2), integer(3, -1), attr("in_features")),
    ("Linear", "out_features", lambda v: hb.Linear(2, v), integer(3, -1), attr("out_features")),
    ("Linear", "bias", lambda v: hb.Linear(2, 2, bias=v), flag(), None),
    ("Linear", "dtype", lambda v: hb.Linear(2, 2, dtype=v), dtype(), None),
    ("Linear", "init", lambda v: hb.Linear(2, 2, init=v), choice("torch", "normal"), None),
    ("Linear", "std", lambda v: hb.Linear(2, 2, init="normal", std=v), number(0.5, -0.1), None),
    ("Linear", "rng", lambda v: hb.Linear(2, 2, rng=v), init_generator(), None),
    ("LeakyReLU", "negative_slope", lambda v: hb.LeakyReLU(v), number(0.25), attr("negative_slope")),
    ("Softmax", "dim", lambda v: hb.Softmax(v), integer(-1), attr("dim")),
    ("GELU", "approximate", lambda v: hb.GELU(v), choice("none", "tanh"), attr("approximate")),
    ("Dropout", "p", lambda v: hb.Dropout(v), number(0.25, -0.1, 1.5), attr("p")),
    ("Dropout", "rng", lambda v: hb.Dropout(0.5, rng=v), generator(), None),
    ("BatchNorm1d", "num_features", lambda v: hb.BatchNorm1d(v), integer(3, 0, -1), attr("num_features")),
    ("BatchNorm1d", "eps", lambda v: hb.BatchNorm1d(3, eps=v), number(0.5, 0.0, -1e-5), attr("eps")),
    ("BatchNorm1d", "momentum", lambda v: hb.BatchNorm1d(3, momentum=v), number(0.25, -0.1, 1.5, optional=True),
     attr("momentum")),
    ("BatchNorm1d", "affine", lambda v: hb.BatchNorm1d(3, affine=v), flag(), attr("affine")),
    ("BatchNorm1d", "track_running_stats", lambda v: hb.BatchNorm1d(3, track_running_stats=v), flag(),
     attr("track_running_stats")),
    ("BatchNorm1d", "bias", lambda v: hb.BatchNorm1d(3, bias=v), flag(), None),
    ("BatchNorm1d", "dtype", lambda v: hb.BatchNorm1d(3, dtype=v), dtype(), None),
    ("LayerNorm", "normalized_shape", lambda v: hb.LayerNorm(v), shape(), None),
    ("LayerNorm", "eps", lambda v: hb.LayerNorm(3, eps=v), number(0.5, -1e-5), attr("eps")),
    ("LayerNorm", "elementwise_affine", lambda v: hb.LayerNorm(3, elementwise_affine=v), flag(),
     attr("elementwise_affine")),
    ("LayerNorm", "bias", lambda v: hb.LayerNorm(3, bias=v), flag(), None),
    ("LayerNorm", "dtype", lambda v: hb.LayerNorm(3, dtype=v), dtype(), None),
    ("MSELoss", "reduction", lambda v: hb.MSELoss(v), choice("mean", "sum"), attr("reduction")),
    ("CrossEntropyLoss", "reduction", lambda v: hb.CrossEntropyLoss(v), choice("mean", "sum"), attr("reduction")),
    ("BCEWithLogitsLoss", "reduction", lambda v: hb.BCEWithLogitsLoss(v), choice("mean", "sum"),
     attr("reduction")),
    ("SGD", "lr", lambda v: hb.optim.SGD(params(), lr=v), number(0.5, -0.1), group("lr")),
    ("SGD", "momentum", lambda v: hb.optim.SGD(params(), lr=0.1, momentum=v), number(0.5, -0.5),
     group("momentum")),
    ("SGD", "dampening", lambda v: hb.optim.SGD(params(), lr=0.1, dampening=v), number(0.5), group("dampening")),
    ("SGD", "weight_decay", lambda v: hb.optim.SGD(params(), lr=0.1, weight_decay=v), number(0.5, -1e-3),
     group("weight_decay")),
    ("SGD", "nesterov", lambda v: hb.optim.SGD(params(), lr=0.1, momentum=0.9, nesterov=v), flag(),
     group("nesterov")),
    ("SGD", "maximize", lambda v: hb.optim.SGD(params(), lr=0.1, maximize=v), flag(), group("maximize")),
    ("Adam", "lr", lambda v: hb.optim.Adam(params(), lr=v), number(0.5, -0.1), group("lr")),
    ("Adam", "betas[0]", lambda v: hb.optim.Adam(params(), betas=(v, 0.999)), number(0.5, -0.1, 1.0),
     lambda o: o.param_groups[0]["betas"][0]),
    ("Adam", "betas[1]", lambda v: hb.optim.Adam(params(), betas=(0.9, v)), number(0.5, -0.1, 1.0),
     lambda o: o.param_groups[0]["betas"][1]),
    ("Adam", "eps", lambda v: hb.optim.Adam(params(), eps=v), number(0.5, -1e-8), group("eps")),
    ("Adam", "weight_decay", lambda v: hb.optim.Adam(params(), weight_decay=v), number(0.5, -1.0),
     group("weight_decay")),
    ("Adam", "amsgrad", lambda v: hb.optim.Adam(params(), amsgrad=v), flag(), group("amsgrad")),
    ("Adam", "maximize", lambda v: hb.optim.Adam(params(), maximize=v), flag(), group("maximize")),
    ("Adam", "decoupled_weight_decay", lambda v: hb.optim.Adam(params(), decoupled_weight_decay=v), flag(),
     group("decoupled_weight_decay")),
    ("AdamW", "lr", lambda v: hb.optim.AdamW(params(), lr=v), number(0.5, -1.0), group("lr")),
    ("AdamW", "weight_decay", lambda v: hb.optim.AdamW(params(), weight_decay=v), number(0.5, -0.01),
     group("weight_decay")),
    ("AdamW", "betas[1]", lambda v: hb.optim.AdamW(params(), betas=(0.9, v)), number(0.5, 1.5),
     lambda o: o.param_groups[0]["betas"][1]),
    ("AdamW", "amsgrad", lambda v: hb.optim.AdamW(params(), amsgrad=v), flag(), group("amsgrad")),
    ("RMSprop", "lr", lambda v: hb.optim.RMSprop(params(), lr=v), number(0.5, -0.01), group("lr")),
    ("RMSprop", "alpha", lambda v: hb.optim.RMSprop(params(), alpha=v), number(0.5, -0.5), group("alpha")),
    ("RMSprop", "eps", lambda v: hb.optim.RMSprop(params(), eps=v), number(0.5, -1.0), group("eps")),
    ("RMSprop", "weight_decay", lambda v: hb.optim.RMSprop(params(), weight_decay=v), number(0.5, -1.0),
     group("weight_decay")),
    ("RMSprop", "momentum", lambda v: hb.optim.RMSprop(params(), momentum=v), number(0.5, -0.9),
     group("momentum")),
    ("RMSprop", "centered", lambda v: hb.optim.RMSprop(params(), centered=v), flag(), group("centered")),
    ("RMSprop", "maximize", lambda v: hb.optim.RMSprop(params(), maximize=v), flag(), group("maximize")),
    ("Adagrad", "lr", lambda v: hb.optim.Adagrad(params(), lr=v), number(0.5, -0.01), group("lr")),
    ("Adagrad", "lr_decay", lambda v: hb.optim.Adagrad(params(), lr_decay=v), number(0.5, -0.1),
     group("lr_decay")),
    ("Adagrad", "weight_decay", lambda v: hb.optim.Adagrad(params(), weight_decay=v), number(0.5, -1.0),
     group("weight_decay")),
    ("Adagrad", "initial_accumulator_value", lambda v: hb.optim.Adagrad(params(), initial_accumulator_value=v),
     number(0.5, -1.0), group("initial_accumulator_value")),
    ("Adagrad", "eps", lambda v: hb.optim.Adagrad(params(), eps=v), number(0.5, -1.0), group("eps")),
    ("Adagrad", "maximize", lambda v: hb.optim.Adagrad(params(), maximize=v), flag(), group("maximize")),
    ("StepLR", "step_size", lambda v: hb.optim.lr_scheduler.StepLR(sgd(), v), integer(3, 0, -1), attr("step_size")),
    ("StepLR", "gamma", lambda v: hb.optim.lr_scheduler.StepLR(sgd(), 3, gamma=v), number(0.5), attr("gamma")),
    ("StepLR", "last_epoch", lambda v: hb.optim.lr_scheduler.StepLR(sgd(), 3, last_epoch=v), integer(-1, -2), None),
    ("ExponentialLR", "gamma", lambda v: hb.optim.lr_scheduler.ExponentialLR(sgd(), v), number(0.5), attr("gamma")),
    ("CosineAnnealingLR", "T_max", lambda v: hb.optim.lr_scheduler.CosineAnnealingLR(sgd(), v), integer(10, 0),
     attr("T_max")),
    ("CosineAnnealingLR", "eta_min", lambda v: hb.optim.lr_scheduler.CosineAnnealingLR(sgd(), 10, eta_min=v),
     number(0.5), attr("eta_min")),
    ("DNN", "hidden_depth", lambda v: hb.DNN(v, 4, 2, 1), integer(1, -1), lambda m: m.config["hidden_depth"]),
    ("DNN", "num_neuron", lambda v: hb.DNN(1, v, 2, 1), integer(4, 0), lambda m: m.config["num_neuron"]),
    ("DNN", "input", lambda v: hb.DNN(1, 4, v, 1), integer(2, 0), lambda m: m.config["input"]),
    ("DNN", "output", lambda v: hb.DNN(1, 4, 2, v), integer(1, 0), lambda m: m.config["output"]),
    ("DNN", "init", lambda v: hb.DNN(1, 4, 2, 1, init=v), choice("notebook", "torch"), None),
    ("DNN", "std", lambda v: hb.DNN(1, 4, 2, 1, std=v), number(0.5, -0.01), None),
    ("DNN", "dtype", lambda v: hb.DNN(1, 4, 2, 1, dtype=v), dtype(), None),
    ("DNN", "rng", lambda v: hb.DNN(1, 4, 2, 1, rng=v), init_generator(), None),
    ("gradient_descent", "alpha", lambda v: hb.gradient_descent(net(), X, Y, hb.MSELoss(), alpha=v),
     number(0.5, -0.1), None),
    ("fit", "epochs", lambda v: fit(epochs=v), integer(1, 0), None),
    ("fit", "batch_size", lambda v: fit(batch_size=v), integer(2, 0), None),
    ("fit", "shuffle", lambda v: fit(shuffle=v), flag(), None),
    ("fit", "progress", lambda v: fit(progress=v),
     [c for c in flag(optional=True) if c[1] is not True], None),
    ("fit", "rng", lambda v: fit(rng=v), generator(), None),
    ("spirals", "n", lambda v: hb.datasets.spirals(n=v), integer(10, 1, -1), None),
    ("spirals", "noise", lambda v: hb.datasets.spirals(noise=v), number(0.5, -0.1), None),
    ("spirals", "rng", lambda v: hb.datasets.spirals(rng=v), generator(), None),
    ("xor", "n", lambda v: hb.datasets.xor(n=v), integer(8, 0), None),
    ("xor", "noise", lambda v: hb.datasets.xor(noise=v), number(0.5, -0.1), None),
    ("sine", "n", lambda v: hb.datasets.sine(n=v), integer(8, 0), None),
    ("sine", "noise", lambda v: hb.datasets.sine(noise=v), number(0.5, -0.1), None),
    ("numerical_gradient", "eps", lambda v: numerical.numerical_gradient(net(), hb.MSELoss(), X, Y, eps=v),
     number(1e-3, 0.0, -1e-6), None),
    ("numerical_gradient", "method", lambda v: numerical.numerical_gradient(net(), hb.MSELoss(), X, Y, method=v),
     choice("fast", "loop"), None),
    ("gradcheck", "atol", lambda v: numerical.gradcheck(net(), hb.MSELoss(), X, Y, atol=v),
     number(1e-3, -1.0, optional=True), None),
    ("gradcheck", "rtol", lambda v: numerical.gradcheck(net(), hb.MSELoss(), X, Y, rtol=v), number(1e-3, -1.0),
     None),
    ("gradcheck", "raise_exception", lambda v: numerical.gradcheck(net(), hb.MSELoss(), X, Y, raise_exception=v),
     flag(), None),
    ("numerical_gradient_descent", "alpha",
     lambda v: numerical.numerical_gradient_descent(net(), X, Y, hb.MSELoss(), alpha=v), number(0.5, -0.1), None),
    ("explain", "numbers", lambda v: hb.explain(net(), hb.MSELoss(), X, Y, numbers=v), integer(2, 0), None),
    ("explain", "lr", lambda v: hb.explain(net(), hb.MSELoss(), X, Y, lr=v), number(0.1, -0.1), None),
    ("Sequential.train", "mode", lambda v: net().train(v), flag(), attr("training")),
    ("Sequential.zero_grad", "set_to_none", lambda v: net().zero_grad(v), flag(), None),
    ("Sequential.to", "dtype", lambda v: net().to(v), dtype(), None),
    ("Sequential.load_state_dict", "strict", lambda v: (lambda m: m.load_state_dict(m.state_dict(), strict=v))(net()),
     flag(), None),
    ("SGD.zero_grad", "set_to_none", lambda v: sgd().zero_grad(v), flag(), None),
] + [(f"{name}.backward", "dy", lambda v, make=make: after_forward(make).backward(v), number(2.0, finite=False), None)
     for name, make in (("MeanSquaredError", hb.MeanSquaredError), ("MSELoss", hb.MSELoss),
                        ("CrossEntropyLoss", hb.CrossEntropyLoss), ("BCEWithLogitsLoss", hb.BCEWithLogitsLoss))]

CASES = [(owner, arg, call, label, value, verdict, stored)
         for owner, arg, call, kind, stored in TABLE for label, value, verdict in kind]


def shown(value):
    """How the message must show the value given."""
    if isinstance(value, list):
        return "list ["
    if isinstance(value, type) or isinstance(value, np.dtype):
        return str(np.dtype(value))              # a dtype-like given is shown as the dtype it names
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    return type(value).__name__


@pytest.mark.parametrize("owner, arg, call, label, value, verdict, stored", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_arguments_are_accepted_or_refused_alike_everywhere(owner, arg, call, label, value, verdict, stored):
    if verdict == "ok":
        result = call(value)
        if stored is not None:          # kept as a plain Python value, equal to the one given
            kept = stored(result)
            assert (kept is None) if value is None else \
                type(kept) in (bool, int, float, str) and kept == (value.item() if isinstance(value, np.generic)
                                                                   else value)
        return
    with pytest.raises((ValueError, TypeError)) as info:
        call(value)
    message = str(info.value)
    assert f"{owner}: {arg}: expected " in message, message
    assert f"got {shown(value)}" in message, message
    if verdict == "type":
        assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError), type(info.value)
    else:
        assert isinstance(info.value, ValueError), type(info.value)


def test_the_table_covers_every_optimizer_hyperparameter():
    """Each optimizer's every default appears in the table (betas as betas[0] and betas[1])."""
    listed = {(owner, arg.split("[")[0]) for owner, arg, *_ in TABLE}
    for cls in (hb.optim.SGD, hb.optim.Adam, hb.optim.RMSprop, hb.optim.Adagrad):
        missing = {k for k in cls(params()).defaults if (cls.__name__, k) not in listed}
        assert not missing, (cls.__name__, missing)


def test_torchs_words_lead_the_optimizers_messages():
    with pytest.raises(ValueError) as info:
        hb.optim.SGD(params(), lr=-1)
    assert str(info.value) == "Invalid learning rate: -1 (SGD: lr: expected a finite number >= 0, got -1)"
    with pytest.raises(ValueError) as info:
        hb.optim.Adam(params(), betas=(0.9, np.float32(1)))
    assert str(info.value) == ("Invalid beta parameter at index 1: np.float32(1.0) "
                               "(Adam: betas[1]: expected a finite number in [0, 1), got np.float32(1.0))")


def test_a_seed_is_one_generator_for_the_whole_network():
    """DNN(rng=seed) draws every layer from one Generator (not each layer from the same seed)."""
    by_seed, by_generator = hb.DNN(2, 4, 4, 4, rng=7), hb.DNN(2, 4, 4, 4, rng=np.random.default_rng(7))
    for (name, a), (_, b) in zip(by_seed.named_parameters(), by_generator.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)         # exact: the same draws
    assert not np.array_equal(by_seed[2].weight.data, by_seed[4].weight.data)


def test_a_numpy_scalar_does_not_change_a_float32_models_dtype():
    """Values come back as Python numbers, so np.float64(0.1) · float32 stays float32."""
    p = hb.Parameter(np.ones(3, np.float32))
    p.grad = np.ones(3, np.float32)
    hb.optim.SGD([p], lr=np.float64(0.1), momentum=np.float64(0.5)).step()
    assert p.data.dtype == np.float32
    m = hb.Sequential(hb.LeakyReLU(np.float64(0.5)), hb.Dropout(np.float64(0.25), rng=0)).to(np.float32)
    loss = hb.MSELoss()
    loss(m(-np.ones((2, 3), np.float32)), np.zeros((2, 3), np.float32))
    assert loss.backward(np.float64(2.0)).dtype == np.float32
    assert m.backward(np.ones((2, 3), np.float32)).dtype == np.float32
