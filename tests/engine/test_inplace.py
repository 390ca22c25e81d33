"""In-place edits cannot reach a backward. Layers keep arrays for backward by reference (Linear its
input, Tanh its output); ``module(x)`` hands the model its own copy of x and the caller its own copy
of the output, so editing either before ``backward`` changes nothing (torch raises "modified by an
inplace operation" instead; here the gradients are those without the edit).

Which layers keep which array is found, not listed: each layer's ``forward`` runs directly (no
copies) and NumPy says whether one of its caches shares memory with x or with the output. Every
layer that keeps one is tested, so a new layer that caches is covered by default."""
import copy

import numpy as np
import pytest

import handbp as hb
from tests.helpers.examples import CHAIN_LAYERS, IMAGE_LAYERS, SHAPE, shape_of

LAYERS = {**CHAIN_LAYERS, **IMAGE_LAYERS}


def kept(layer):
    """Which of its arrays ("input", "output") a layer's forward keeps, by reference."""
    m = LAYERS[layer]()
    x = np.random.default_rng(0).normal(size=shape_of(layer))
    y = m.forward(x)
    caches = [v for v in vars(m).values() if isinstance(v, np.ndarray)]
    return sorted(what for what, a in (("input", x), ("output", y)) if any(np.shares_memory(a, c) for c in caches))


CASES = [(layer, what) for layer in LAYERS for what in kept(layer)]
CONTEXTS = {"alone": lambda m: m, "in a Sequential": lambda m: hb.Sequential(m),
            "between pass-throughs": lambda m: hb.Sequential(hb.Identity(), m, hb.Dropout(0.5).eval())}


def test_the_layers_known_to_keep_an_array_are_found():
    assert {("Linear", "input"), ("GELU", "input"), ("GELU-tanh", "input"), ("Tanh", "output"),
            ("Sigmoid", "output"), ("Softmax", "output"), ("BatchNorm1d-no-affine", "output"),
            ("LayerNorm-no-affine", "output")} <= set(CASES)


def same(a, b, name=""):
    """Equal within 1e-12 of the largest value: an edit (×−3 + 1) that reached the backward moves
    the gradients by O(1); a BLAS kernel's rounding, by far less."""
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max(), err_msg=name)


def step(model, x, dy, edit):
    """Forward, then the edit (of x or of the output, in place), then backward: dx and the grads."""
    out = model(x)
    edited = {"input": x, "output": out}.get(edit)
    if edited is not None:
        edited *= -3.0
        edited += 1.0
    dx = model.backward(dy)
    return dx, [(name, p.grad) for name, p in model.named_parameters()]


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("layer, edit", CASES, ids=[f"{layer}-{edit}" for layer, edit in CASES])
def test_editing_in_place_before_backward_changes_no_gradient(layer, edit, context, rng):
    model = CONTEXTS[context](LAYERS[layer]())
    twin = copy.deepcopy(model)                 # (Dropout's generator too: the same masks)
    x, dy = rng.normal(size=shape_of(layer)), rng.normal(size=shape_of(layer))
    dx, grads = step(model, x.copy(), dy, edit)
    dx_ref, grads_ref = step(twin, x.copy(), dy, None)
    same(dx, dx_ref)
    for (name, g), (_, g_ref) in zip(grads, grads_ref):
        same(g, g_ref, name)


class ArrayLike:
    """Not an ndarray, but NumPy reads it as a view of the caller's memory (as a CPU torch tensor)."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return self.data.view()


def test_editing_an_array_like_input_before_backward_changes_nothing(rng):
    model = hb.Linear(3, 3, rng=rng)
    twin = copy.deepcopy(model)
    x, dy = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    held = x.copy()
    model(ArrayLike(held))
    held *= -3.0
    twin(x)
    same(model.backward(dy), twin.backward(dy))
    same(model.weight.grad, twin.weight.grad)


def test_editing_a_probability_target_before_backward_changes_nothing(rng):
    """CrossEntropyLoss with class probabilities keeps them for backward: its own copy."""
    pred = rng.normal(size=SHAPE)
    target = rng.dirichlet(np.ones(3), size=4)
    loss, twin = hb.CrossEntropyLoss(), hb.CrossEntropyLoss()
    loss(pred, target)
    twin(pred.copy(), target.copy())
    target[...] = np.eye(4, 3)
    same(loss.backward(), twin.backward())
