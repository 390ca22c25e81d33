"""What each class declares about itself, and what reads it: ``Module.elementwise``,
``Module.row_wise``, ``Loss.per_row`` and ``handbp.module.declares``. Numerical differentiation
takes its stacks only where the classes say so (a class that declares nothing, or a subclass
with a forward of its own, falls back to the element loop with a warning naming the layer and the
reason), and takes the loss of each row from the loss itself.

Tolerances: the fast and loop methods agree within 1e-8·max(1, |L|) + 1e-6 relative (the rounding
of two central differences, see tests/test_numerical.py); a stack through a row-wise layer gives,
row by row, the layer's own output to 1e-12 relative (a matrix product on more rows may group its
sums differently); per_row equals the loss called row by row to 1e-14 relative (one reduction
order against another)."""
import warnings

import numpy as np
import pytest

import handbp as hb
from handbp.module import declares, rows_independent
from handbp.numerical import compare_gradients, numerical_gradient
from tests.helpers.examples import CHAIN_LAYERS

EXTRA = {"ELU": lambda: hb.ELU(0.5), "SiLU": hb.SiLU, "Softplus": lambda: hb.Softplus(2.0, 1.0),
         "Hardtanh": lambda: hb.Hardtanh(-0.5, 0.5), "Softmax-dim0": lambda: hb.Softmax(dim=0),
         "DNN": lambda: hb.DNN(1, 3, 3, 3, activation=hb.SiLU, rng=0),
         "Sequential-BatchNorm1d": lambda: hb.Sequential(hb.Linear(3, 3, rng=0), hb.BatchNorm1d(3))}
MODULES = {**CHAIN_LAYERS, **{k: v for k, v in EXTRA.items() if k not in CHAIN_LAYERS}}


def public_modules():
    return [c for c in (getattr(hb, n) for n in hb.__all__) if isinstance(c, type) and issubclass(c, hb.Module)]


def elementwise_classes():
    return [c for c in public_modules() if c.elementwise]


def test_the_activations_say_they_are_elementwise():
    names = {c.__name__ for c in elementwise_classes()}
    assert {"Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "GELU", "ELU", "SiLU", "Softplus", "Hardtanh"} <= names
    assert not names & {"Linear", "Softmax", "Dropout", "BatchNorm1d", "LayerNorm", "Sequential", "DNN", "Module"}


@pytest.mark.parametrize("cls", elementwise_classes(), ids=lambda c: c.__name__)
def test_an_elementwise_module_moves_one_output_per_input(cls, rng):
    """The fact checked on the class: moving x[i] moves y[i] alone, and dy = eᵢ gives dx = c·eᵢ."""
    m = cls()
    x = rng.normal(size=(3, 4))
    y = m(x)
    assert y.shape == x.shape
    for i in np.ndindex(x.shape):
        moved = x.copy()
        moved[i] += 0.25
        changed = m(moved) != y
        assert not np.delete(changed.ravel(), np.ravel_multi_index(i, x.shape)).any()
        m(x)
        dy = np.zeros_like(x)
        dy[i] = 1.0
        dx = m.backward(dy)
        assert not np.delete(dx.ravel(), np.ravel_multi_index(i, x.shape)).any()


def _stack(x, rows):
    """R inputs shaped like x stacked as numerical differentiation stacks them."""
    return np.concatenate(rows) if x.ndim > 1 else np.stack(rows)


STACK_CASES = [(name, shape) for name in MODULES for shape in ((4, 3), (3,))
               if len(shape) == 2 or not any(k in name for k in ("BatchNorm1d", "GroupNorm"))]  # (batches only)


@pytest.mark.parametrize("name, shape", STACK_CASES, ids=[f"{n}-{len(s)}d" for n, s in STACK_CASES])
def test_a_row_wise_module_takes_a_stack_as_it_takes_each_input(name, shape, rng):
    """Where a module says None, R perturbed inputs stacked go through in one call exactly as one by
    one; where it says no, it gives a reason (a string)."""
    m = MODULES[name]()
    x = rng.normal(size=shape)
    reason = rows_independent(m, x)
    if reason is not None:
        assert isinstance(reason, str) and reason
        return
    inputs = [x + 0.1 * rng.normal(size=shape) for _ in range(3)]
    one_by_one = [m.forward(v) for v in inputs]
    stacked = m.forward(_stack(x, inputs))
    np.testing.assert_allclose(stacked, _stack(one_by_one[0], one_by_one), rtol=1e-12, atol=0)


# (module, input shape, the fragment of the reason)
NOT_ROW_WISE = [
    ("BatchNorm1d in training", lambda: hb.BatchNorm1d(3), (4, 3), "the batch's statistics"),
    ("Softmax(dim=0) of a batch", lambda: hb.Softmax(dim=0), (4, 3), "across the rows"),
    ("Softmax(dim=0) of one sample", lambda: hb.Softmax(dim=0), (3,), "across the rows"),
    ("LayerNorm over all of x", lambda: hb.LayerNorm((4, 3)), (4, 3), "across the batch"),
    ("Dropout in training", lambda: hb.Dropout(0.5, rng=0), (4, 3), "random mask"),
    ("a Sequential holding one", lambda: hb.Sequential(hb.Linear(3, 3, rng=0), hb.BatchNorm1d(3)), (4, 3),
     "its layer '1' (BatchNorm1d"),
]


@pytest.mark.parametrize("case", NOT_ROW_WISE, ids=[c[0] for c in NOT_ROW_WISE])
def test_modules_that_mix_rows_say_why(case):
    _, make, shape, fragment = case
    assert fragment in rows_independent(make(), np.ones(shape))


def test_softmax_along_the_features_of_one_sample_is_row_wise():
    """dim=-1 names the features of a stack of one-sample inputs too; dim=0 names the stack's axis."""
    assert rows_independent(hb.Softmax(dim=-1), np.ones(3)) is None
    assert rows_independent(hb.Softmax(dim=1), np.ones((2, 3))) is None
    assert rows_independent(hb.Softmax(dim=0), np.ones(3)) is not None


# -- which classes speak for the forward they run ---------------------------------------------------
class TanhOwnBackward(hb.Tanh):
    """Only the backward changed: Tanh's facts still describe its forward."""

    def backward(self, dy):
        return super().backward(dy)


class TanhOwnForward(hb.Tanh):
    """Its own forward, the same maths: the facts must be declared again to count."""

    def forward(self, x):
        return super().forward(x)


class TanhOwnForwardDeclared(TanhOwnForward):
    elementwise = True


class Scale(hb.Module):
    """A custom module that declares nothing: y = 2x."""

    def forward(self, x):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


def test_declares_follows_the_forward():
    assert declares(hb.Tanh(), "elementwise") and declares(TanhOwnBackward(), "elementwise")
    assert not declares(TanhOwnForward(), "elementwise") and declares(TanhOwnForwardDeclared(), "elementwise")
    assert declares(hb.Linear(2, 2), "row_wise") and not declares(Scale(), "row_wise")
    replaced = hb.Tanh()
    object.__setattr__(replaced, "forward", lambda x: x)
    assert not declares(replaced, "elementwise")
    assert rows_independent(replaced, np.ones(3)) == "its forward is replaced on the instance"
    assert "Scale writes its own forward and declares neither" in rows_independent(Scale(), np.ones(3))
    assert rows_independent(TanhOwnBackward(), np.ones(3)) is None


def agree(model, loss, x, y):
    return dict(atol=1e-8 * max(1.0, abs(loss(model(x), y))), rtol=1e-6)


# (the middle layer, whether the fast method falls back to the loop for what comes before it)
MIDDLES = [("Tanh", hb.Tanh, False), ("a subclass with its own backward", TanhOwnBackward, False),
           ("a subclass with its own forward", TanhOwnForward, True),
           ("a subclass with its own forward that declares it", TanhOwnForwardDeclared, False),
           ("a custom module", Scale, True), ("Softmax(dim=0) of one sample", lambda: hb.Softmax(dim=0), True)]


@pytest.mark.parametrize("case", MIDDLES, ids=[c[0] for c in MIDDLES])
def test_the_fast_method_falls_back_visibly_and_agrees(case, rng):
    """The stacks go where the classes say, the element loop elsewhere, with a warning naming the
    layer and the reason; both give the loop's numbers. (Softmax(dim=0) of one sample once took
    the stack, and normalized across it: gradients 10% off, silently.)"""
    _, middle, falls_back = case
    model = hb.Sequential(hb.Linear(4, 5, rng=rng), middle(), hb.Linear(5, 3, rng=rng))
    x, y, loss = rng.normal(size=4), rng.normal(size=3), hb.MSELoss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = numerical_gradient(model, loss, x, y)
    messages = [str(w.message) for w in caught]
    if falls_back:
        assert len(messages) == 1
        assert f"layer '1' ({model[1]!r}) cannot take a stack of perturbed inputs: " in messages[0]
        assert rows_independent(model[1], model[0](x)) in messages[0] and "element loop" in messages[0]
    else:
        assert messages == []
    loop = numerical_gradient(model, loss, x, y, method="loop")
    assert not [r for r in compare_gradients(loop, fast, **agree(model, loss, x, y)) if r["failed"]]


# -- the loss of each row ------------------------------------------------------------------------
LOSSES = {
    "MeanSquaredError": (hb.MeanSquaredError, "normal"), "MSELoss": (hb.MSELoss, "normal"),
    "MSELoss-sum": (lambda: hb.MSELoss("sum"), "normal"), "CrossEntropyLoss": (hb.CrossEntropyLoss, "indices"),
    "CrossEntropyLoss-sum-probabilities": (lambda: hb.CrossEntropyLoss("sum"), "probabilities"),
    "BCEWithLogitsLoss": (hb.BCEWithLogitsLoss, "unit"), "BCEWithLogitsLoss-sum": (lambda: hb.BCEWithLogitsLoss("sum"), "unit"),
}


def target(kind, shape, rng):
    if kind == "indices":
        return rng.integers(0, shape[-1], shape[:-1])
    if kind == "probabilities":
        p = rng.uniform(size=shape)
        return p / p.sum(axis=-1, keepdims=True)
    return rng.uniform(size=shape) if kind == "unit" else rng.normal(size=shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(6, 3), (3,)], ids=["batch", "one-sample"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_per_row_is_the_loss_of_each_row(name, shape, dtype, rng):
    make, kind = LOSSES[name]
    loss = make()
    preds = rng.normal(size=(5,) + shape).astype(dtype)
    y = target(kind, shape, rng)
    y = y.astype(dtype) if y.dtype.kind == "f" else y
    rows = loss.per_row(preds, y)
    assert rows.dtype == np.float64 and rows.shape == (5,)
    np.testing.assert_allclose(rows, [loss(p, y) for p in preds], rtol=1e-14 if dtype == np.float64 else 1e-6)
    assert declares(loss, "per_row")


class DoubledMSE(hb.MSELoss):
    """A loss with a forward of its own: its parent's per_row does not speak for it."""

    def forward(self, h, y):
        return 2 * super().forward(h, y)

    def backward(self, dy=1.0):
        return 2 * super().backward(dy)


class HalvedValue(hb.MSELoss):
    """Only the formula changed: forward and per_row both call it."""

    def value(self, diff, axis=None):
        return 0.5 * super().value(diff, axis)


class Plain(hb.Loss):
    """A loss of one's own, without per_row: the base class's, row by row through forward."""

    def forward(self, h, y):
        self.last_diff = h - y
        self._cache = True
        return float(np.sum(self.last_diff ** 3))


@pytest.mark.parametrize("cls, factor", [(DoubledMSE, 2.0), (HalvedValue, 0.5)], ids=["own forward", "own value"])
def test_numerical_gradients_use_the_losss_own_formula(cls, factor, rng):
    """Each derived loss is differentiated as itself: the fast method equals the loop, and both are
    ``factor`` times MSELoss's."""
    model = hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh(), hb.Linear(5, 3, rng=rng))
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    loss = cls()
    assert declares(loss, "per_row") == (cls is HalvedValue)
    fast = numerical_gradient(model, loss, x, y)
    loop = numerical_gradient(model, loss, x, y, method="loop")
    plain = numerical_gradient(model, hb.MSELoss(), x, y)
    assert not [r for r in compare_gradients(loop, fast, **agree(model, loss, x, y)) if r["failed"]]
    scaled = {k: factor * v for k, v in plain.items()}
    assert not [r for r in compare_gradients(scaled, fast, **agree(model, loss, x, y)) if r["failed"]]


def test_the_default_per_row_runs_forward_row_by_row(rng):
    preds, y = rng.normal(size=(4, 2, 3)), rng.normal(size=(2, 3))
    np.testing.assert_array_equal(Plain().per_row(preds, y), [np.sum((p - y) ** 3) for p in preds])


@pytest.mark.parametrize("call, fragment", [
    (lambda: hb.MSELoss().per_row(np.float64(1.0), 1.0), "MSELoss: preds: expected predictions stacked along a new first axis"),
    (lambda: hb.MSELoss().per_row(np.ones((2, 3)), np.ones(4)), "MSELoss: target: expected shape (3,)"),
    (lambda: hb.MSELoss().per_row(["a"], np.ones(1)), "preds: expected an array of floats"),
    (lambda: hb.CrossEntropyLoss().per_row(np.ones((2, 3)), np.array(3)), "expected class indices in [0, 3), got 3"),
], ids=["0-d", "target shape", "strings", "class index"])
def test_per_row_refuses_bad_input(call, fragment):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert fragment in str(info.value)
