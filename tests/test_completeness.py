"""Every public layer, container and loss of handbp is covered by default, derived from the classes:
each class that ``import handbp`` offers and that derives from ``hb.Module`` (losses included)

(a) is exported in ``handbp.__all__``;
(b) has a crosscheck registry entry (``crosscheck.registry.entry(cls)``);
(c) is built by the gradient test against finite differences (tests/engine/test_gradients.py) and
    by a lockstep matrix (tests/crosscheck/test_lockstep_matrix*.py), whose cases both derive from
    the examples in tests/helpers/examples.py (a class without an example cannot be built there);
(d) has a fast path in ``handbp.numerical`` or says why not: a layer that numerical_gradient
    cannot stack perturbations through for a reason it states (a BatchNorm1d in training mode)
    passes, one it "does not know" fails; a loss must not be evaluated once per perturbation.

``completeness_problems()`` returns what is missing, one line per problem naming the class; the
tests below show that it reports a dropped registration and a new layer with nothing."""
import copy
import warnings

import numpy as np
import pytest

import handbp as hb
from crosscheck import registry
from handbp.numerical import numerical_gradient
from tests.crosscheck import test_lockstep_matrix, test_lockstep_matrix_layers
from tests.engine import test_gradients
from tests.helpers import examples
from tests.helpers.examples import BASES, FEATURES, LAYERS, LOSSES, Missing, takes_arrays


def _built(ex, *args):
    """The module an example builds (None for a class without one)."""
    return None if isinstance(ex, Missing) else ex.build(*args)


def _in_gradient_tests():
    rng = np.random.default_rng(0)
    built = [_built(ex, rng, FEATURES) for ex, _ in test_gradients.MODULE_CASES]
    built += [_built(ex) for ex, _ in test_gradients.LOSS_CASES]
    return {type(m) for m in built if m is not None}


def _in_lockstep_matrices():
    """Every class in a model (each module of it, the containers included) or a loss that a
    lockstep matrix builds: one model per layer, activation and loss of the matrices."""
    rng, seen = np.random.default_rng(0), set()
    models = []
    for name, ex in test_lockstep_matrix_layers.LAYERS.items():
        if not isinstance(ex, Missing):
            models.append(test_lockstep_matrix_layers.build(name, "float64", rng))
    m = test_lockstep_matrix
    for act, ex in m.ACT.items():
        if not isinstance(ex, Missing):
            models.append(m.build(1, 3, act, next(iter(m.LOSS)), np.float64, rng)[0])
    for name, ex in m.LOSS.items():
        if not isinstance(ex, Missing):
            model, loss = m.build(0, 3, next(iter(m.ACT)), name, np.float64, rng)
            models.append(model)
            seen.add(type(loss))
    models += [test_lockstep_matrix_layers.build_shaped(name, "float64", rng)
               for name in test_lockstep_matrix_layers.SHAPED]
    for model in models:
        seen |= {type(module) for _, module in model.named_modules()}
    return seen


def _layer_fast_path(ex):
    """None, or why numerical_gradient(method="fast") knows nothing about the example's layer: it
    warns "does not know" about a layer it can neither stack through nor give a reason for. A
    layer with input shapes of its own (an image layer) is tried at its first batched one; one whose
    input is not an array of its own shape (integer indices or a tuple) comes first, fed its
    example's first input."""
    if ex.chain:
        layer = ex.chained(np.random.default_rng(0), 3)
        model = hb.Sequential(hb.Linear(3, 3, rng=np.random.default_rng(1)), layer).eval()
        x = np.random.default_rng(2).normal(size=(5, 3))
    elif takes_arrays(ex):
        model = test_lockstep_matrix_layers.build_shaped(ex.name, "float64", np.random.default_rng(1)).eval()
        x = np.random.default_rng(2).normal(size=next(shape for key, shape in ex.inputs.items() if key != "unbatched"))
    else:
        model = hb.Sequential(ex.chained(np.random.default_rng(0), 3), hb.Linear(3, 3, rng=np.random.default_rng(1)))
        x = ex.input(next(iter(ex.inputs)), np.random.default_rng(2), 3)
    y = np.random.default_rng(3).normal(size=copy.deepcopy(model.eval())(x).shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        numerical_gradient(model, hb.MSELoss(), x, y, method="fast")
    unknown = [str(w.message) for w in caught if "does not know" in str(w.message)]
    return unknown[0] if unknown else None


def _loss_fast_path(ex):
    """None, or why not: a loss without a fast path is evaluated once per perturbation (24 for the
    12 weights and biases of a Linear(3, 3)), one with a fast path a few times in all."""
    loss, calls = ex.build(), []
    # count on the class that writes the forward (a forward replaced on the instance would be one
    # whose facts numerical cannot trust, so it would take the loop for that reason alone)
    owner = next(c for c in type(loss).__mro__ if "forward" in vars(c))
    forward = vars(owner)["forward"]
    owner.forward = lambda self, *args: calls.append(1) or forward(self, *args)
    try:
        model = hb.Sequential(hb.Linear(3, 3, rng=np.random.default_rng(1)))
        pred = model(np.random.default_rng(2).normal(size=(5, 3)))
        numerical_gradient(model, loss, np.random.default_rng(2).normal(size=(5, 3)),
                           ex.target(np.random.default_rng(3), pred.shape), method="fast")
    finally:
        owner.forward = forward
    perturbations = 2 * sum(p.data.size for p in model.parameters())
    if len(calls) >= perturbations:
        return f"numerical_gradient(method='fast') called the loss {len(calls)} times for {perturbations} perturbations"
    return None


def completeness_problems():
    """What the tests miss of handbp's public Module and Loss classes: one line per problem."""
    problems = []
    public = examples.public_classes()
    in_gradients, in_matrices = _in_gradient_tests(), _in_lockstep_matrices()
    for name, cls in sorted(public.items()):
        if name not in hb.__all__:
            problems.append(f"{name}: not exported in handbp.__all__")
        if cls in BASES:
            continue
        if registry.entry(cls) is None:
            problems.append(f"{name}: no crosscheck registry entry (crosscheck.register({name}, to_torch))")
        rows = (LOSSES if issubclass(cls, hb.Loss) else LAYERS).get(cls)
        if not rows:
            problems.append(f"{name}: no example in tests/helpers/examples.py: no test can build it")
            continue
        if cls not in in_gradients:
            problems.append(f"{name}: not in the gradient test against finite differences "
                            f"(tests/engine/test_gradients.py)")
        if cls not in in_matrices:
            problems.append(f"{name}: in no lockstep matrix (tests/crosscheck/test_lockstep_matrix*.py)")
        if issubclass(cls, hb.Loss):
            why = _loss_fast_path(rows[0])
        else:
            chainable = [ex for ex in rows if ex.chain]
            why = _layer_fast_path(chainable[0] if chainable else rows[0])
        if why:
            problems.append(f"{name}: no fast path in handbp.numerical, nor a reason it has none: {why}")
    return problems


def test_every_public_layer_and_loss_is_covered():
    problems = completeness_problems()
    assert not problems, "\n".join(problems)


# -- the check fails when something is missing ---------------------------------------------------
class Scale(hb.Module):
    """A new public layer: y = 2x, dx = 2 dy."""

    def forward(self, x):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


class Half(hb.Loss):
    """A new public loss: L = ½ Σ pred², dL/dpred = pred."""

    def forward(self, pred, target):
        self._cache = pred
        return 0.5 * float(np.sum(pred * pred))

    def backward(self, dy=1.0):
        return self._need_forward(dy) * self._cache


def test_a_dropped_registration_is_reported(monkeypatch):
    registry.registered()                               # the built-ins, loaded
    monkeypatch.delitem(registry._ENTRIES, hb.Tanh)
    assert completeness_problems() == ["Tanh: no crosscheck registry entry (crosscheck.register(Tanh, to_torch))"]


def test_a_new_public_layer_with_nothing_is_reported(monkeypatch):
    monkeypatch.setattr(hb, "Scale", Scale, raising=False)
    problems = completeness_problems()
    assert problems == ["Scale: not exported in handbp.__all__",
                        "Scale: no crosscheck registry entry (crosscheck.register(Scale, to_torch))",
                        "Scale: no example in tests/helpers/examples.py: no test can build it"]
    # and the tests over every layer get a case for it that fails, naming it
    missing = [ex for ex in examples.layer_examples() if isinstance(ex, Missing)]
    assert [ex.cls for ex in missing] == [Scale]
    with pytest.raises(pytest.fail.Exception, match=r"\.Scale is public but has no example in tests/helpers/examples"):
        missing[0].fail()


@pytest.mark.parametrize("cls", [Scale, Half], ids=["layer", "loss"])
def test_a_new_class_with_an_example_but_not_in_the_tests_is_reported(cls, monkeypatch):
    """Exported, registered and given an example after the tests' cases were derived: the gradient
    test and the matrices do not build it, and numerical has no fast path for it."""
    name = cls.__name__
    monkeypatch.setattr(hb, name, cls, raising=False)
    monkeypatch.setattr(hb, "__all__", [*hb.__all__, name])
    registry.registered()
    monkeypatch.setitem(registry._ENTRIES, cls, registry.Entry(cls, lambda module, child: None))
    if cls is Scale:
        monkeypatch.setitem(LAYERS, cls, [examples.Layer(name, lambda rng, n: Scale())])
    else:
        monkeypatch.setitem(LOSSES, cls, [examples.Loss(name, Half, examples.real_target, None)])
    problems = completeness_problems()
    assert problems[:2] == [
        f"{name}: not in the gradient test against finite differences (tests/engine/test_gradients.py)",
        f"{name}: in no lockstep matrix (tests/crosscheck/test_lockstep_matrix*.py)"]
    assert len(problems) == 3 and problems[2].startswith(f"{name}: no fast path in handbp.numerical, nor a reason")

