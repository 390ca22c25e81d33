"""All or nothing: a bad gradient stops an optimizer step before any parameter or state changes,
and a bad upstream gradient stops a backward before any ``.grad`` changes. NaN and Inf pass, as in
torch (``fit`` stops on them).

Plus the smaller cases: ``model(None)``, finite input whose sum overflows, and float class labels
given to CrossEntropyLoss."""
import copy
import warnings

import numpy as np
import pytest

import handbp as hb
from tests.helpers.examples import CHAIN_LAYERS, IMAGE_LAYERS
from tests.helpers.examples import FIRST_LOSSES as LOSSES
from tests.helpers.examples import SHAPE, prefix_for, shape_of, targets

LAYERS = {**CHAIN_LAYERS, **IMAGE_LAYERS}


# -- optimizers ------------------------------------------------------------------------------
OPTIMIZERS = {
    "SGD": lambda ps: hb.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "Adam": lambda ps: hb.optim.Adam(ps, lr=0.1, amsgrad=True),
    "AdamW": lambda ps: hb.optim.AdamW(ps, lr=0.1),
    "RMSprop": lambda ps: hb.optim.RMSprop(ps, lr=0.1, momentum=0.9, centered=True),
    "Adagrad": lambda ps: hb.optim.Adagrad(ps, lr=0.1),
}
SHAPES = [(3, 4), (3,), (3, 2), (2,)]
BAD = 2                                  # the bad gradient's parameter: two before it would have moved
BAD_GRADS = {                            # grad -> the error it raises
    "complex": (lambda g: g.astype(np.complex128), TypeError),
    "int": (lambda g: g.astype(np.int64), TypeError),
    "object": (lambda g: g.astype(object), TypeError),
    "float32": (lambda g: g.astype(np.float32), TypeError),
    "wrong-shape": (lambda g: g.reshape(2, 3), ValueError),
    "one-more-axis": (lambda g: g[None], ValueError),
    "list": (lambda g: g.tolist(), TypeError),
    "scalar": (lambda g: 1.0, TypeError),
}


def optimizer_state(opt):
    """Every parameter's values and every state entry, as bytes."""
    params = [p.data.tobytes() for g in opt.param_groups for p in g["params"]]
    state = sorted((i, k, v.tobytes() if isinstance(v, np.ndarray) else v)
                   for i, s in opt.state_dict()["state"].items() for k, v in s.items())
    return params, state


def optimizer_with_grads(name, rng, stepped):
    ps = [hb.Parameter(rng.normal(size=s)) for s in SHAPES]
    opt = OPTIMIZERS[name](ps)
    for p in ps:
        p.grad = rng.normal(size=p.shape)
    if stepped:                          # state in place: buffers a partial step would change
        opt.step()
    return ps, opt


@pytest.mark.parametrize("stepped", [False, True], ids=["fresh", "stepped"])
@pytest.mark.parametrize("bad", list(BAD_GRADS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_bad_gradient_changes_no_parameter_and_no_state(name, bad, stepped, rng):
    ps, opt = optimizer_with_grads(name, rng, stepped)
    make_bad, error = BAD_GRADS[bad]
    ps[BAD].grad = make_bad(ps[BAD].grad)
    before = optimizer_state(opt)
    with pytest.raises(error) as info:
        opt.step()
    assert str(info.value).startswith(f"{name}.step: grad of parameter {BAD}: expected an array of dtype float64 "
                                      f"and shape (3, 2) (the parameter's), got "), str(info.value)
    assert optimizer_state(opt) == before


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_parameter_is_counted_across_param_groups(name, rng):
    ps = [hb.Parameter(rng.normal(size=s)) for s in SHAPES]
    opt = OPTIMIZERS[name]([{"params": ps[:2]}, {"params": ps[2:]}])
    for p in ps:
        p.grad = rng.normal(size=p.shape)
    ps[3].grad = ps[3].grad.astype(np.float32)
    with pytest.raises(TypeError, match=rf"^{name}.step: grad of parameter 3: expected an array of dtype float64 "
                                        r"and shape \(2,\) \(the parameter's\), got array of shape \(2,\) and "
                                        r"dtype float32; nothing was updated$"):
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_nan_and_inf_gradients_are_taken_as_in_torch(name, rng):
    ps, opt = optimizer_with_grads(name, rng, stepped=False)
    ps[BAD].grad[0, 0], ps[BAD].grad[1, 1] = np.nan, np.inf
    with np.errstate(invalid="ignore"):
        opt.step()
    assert not np.isfinite(ps[BAD].data).all() and np.isfinite(ps[0].data).all()


# -- backward: the upstream gradient ---------------------------------------------------------
BAD_DY = {                               # dy -> the error it raises
    "complex": (lambda dy: dy.astype(np.complex128), TypeError),
    "object": (lambda dy: dy.astype(object), TypeError),
    "int": (lambda dy: dy.astype(np.int64), TypeError),
    "float32": (lambda dy: dy.astype(np.float32), TypeError),
    "bool": (lambda dy: dy > 0, TypeError),
    "wrong-shape": (lambda dy: dy.T, ValueError),
    "unbatched": (lambda dy: dy[0], ValueError),
    "list": (lambda dy: dy.tolist(), TypeError),
    "None": (lambda dy: None, TypeError),
    "scalar": (lambda dy: 1.0, TypeError),
}


def grads(model):
    """Every gradient, and every parameter and buffer (running statistics), as bytes."""
    return [(n, None if p.grad is None else p.grad.tobytes()) for n, p in model.named_parameters()] + \
        [(k, v.tobytes()) for k, v in model.state_dict().items()]


def with_grads(model, rng, shape=SHAPE):
    """``model`` after a forward and a backward: gradients and caches in place."""
    model(rng.normal(size=shape))
    model.backward(rng.normal(size=shape))
    model(rng.normal(size=shape))
    return model


@pytest.mark.parametrize("bad", list(BAD_DY))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_bad_upstream_gradient_changes_no_gradient(layer, bad, rng):
    make_bad, error = BAD_DY[bad]
    shape = shape_of(layer)
    inner = LAYERS[layer]()         # (a layer, or one with the SelectOutput that follows it: 1.1 then)
    for model, where in ((inner, ""), (hb.Sequential(prefix_for(layer, rng), LAYERS[layer]()),
                                       "layer '1." if isinstance(inner, hb.Sequential) else "layer '1'")):
        with_grads(model, rng, shape)
        before = grads(model)
        with pytest.raises(error) as info:
            model.backward(make_bad(rng.normal(size=shape)))
        assert isinstance(info.value, ValueError)             # as every bad argument here
        assert where in str(info.value)
        assert f"grad_output: expected shape {shape} and dtype float64 (the last forward's output), got " \
               in str(info.value)
        assert grads(model) == before


class Masked(hb.Module):
    """A custom layer written against the old helper: it caches a mask, not a float array, and
    gives the shape itself."""

    def forward(self, x):
        self.last_mask = x > 0
        return x * self.last_mask

    def backward(self, dy):
        self._need_cache(self.last_mask, dy, self.last_mask.shape)
        return dy * self.last_mask


@pytest.mark.parametrize("dtype, error", [(np.float64, None), (np.float32, None), (np.complex128, TypeError),
                                          (np.int64, TypeError)])
def test_a_custom_layer_that_caches_a_mask_takes_any_floating_upstream_gradient(dtype, error, rng):
    layer = Masked()
    layer(rng.normal(size=SHAPE))
    dy = rng.normal(size=SHAPE).astype(dtype)
    if error is None:
        assert layer.backward(dy).dtype == dtype
        with pytest.raises(ValueError, match=r"grad_output: expected shape \(4, 3\) and a floating dtype"):
            layer.backward(dy.T)
    else:
        with pytest.raises(error, match=r"grad_output: expected shape \(4, 3\) and a floating dtype \(the last "
                                        r"forward's output\), got array of shape \(4, 3\)"):
            layer.backward(dy)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_nan_in_the_upstream_gradient_passes_as_in_torch(layer, rng):
    shape = shape_of(layer)
    model = with_grads(hb.Sequential(prefix_for(layer, rng), LAYERS[layer]()), rng, shape)
    dy = rng.normal(size=shape)
    dy.flat[dy.size // 2] = np.nan
    with np.errstate(invalid="ignore"):
        dx = model.backward(dy)
    assert dx.shape == shape and dx.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_loss_takes_a_real_number_as_its_upstream_gradient(loss, dtype, rng):
    """backward(dy) scales dL/dpred by dy, a Python or NumPy number (NaN, Inf too); the result
    keeps pred's dtype."""
    fn = LOSSES[loss]()
    fn(rng.normal(size=SHAPE).astype(dtype), targets(fn, rng, dtype))
    base = fn.backward()
    for dy in (2.0, 2, np.float64(2.0), np.float32(2.0), np.int64(2)):
        g = fn.backward(dy)
        assert g.dtype == dtype
        np.testing.assert_allclose(g, 2 * base, rtol=4 * np.finfo(dtype).eps, atol=0)
    with np.errstate(invalid="ignore"):     # (NLLLoss's gradient is exactly 0 off the targets' classes, as torch's)
        assert np.isnan(fn.backward(float("nan"))[base != 0]).all() and np.isinf(fn.backward(np.inf)).any()


@pytest.mark.parametrize("dy", ["1.0", None, [1.0], True, np.bool_(True), np.ones(1), 1j])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_loss_refuses_anything_else_as_its_upstream_gradient(loss, dy, rng):
    fn = LOSSES[loss]()
    fn(rng.normal(size=SHAPE), targets(fn, rng))
    before = fn.backward().tobytes()
    with pytest.raises(TypeError, match=rf"^{loss}.backward: dy: expected a real number, got "):
        fn.backward(dy)
    assert fn.backward().tobytes() == before


# -- the smaller cases -----------------------------------------------------------------------
@pytest.mark.parametrize("x, given", [(None, "NoneType None"), ("1.5", "str '1.5'"), ([1.0, None, 2.0, 3.0], "list"),
                                      ([[1.0, 2.0], [3.0]], "list"), (1j, "complex 1j"), ([True] * 3, "list")])
def test_the_input_must_be_numbers(x, given, rng):
    model = hb.Sequential(hb.Linear(3, 2, rng=rng))
    with pytest.raises(TypeError, match=rf"^x: expected an array of floats, got {given}"):
        model(x)


def test_a_list_of_numbers_is_an_input():
    model = hb.Sequential(hb.Linear(3, 2, rng=np.random.default_rng(0)))
    expected = model(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(model([1, 2, 3]), expected, rtol=1e-12, atol=1e-12)     # the same input


@pytest.mark.parametrize("where", ["model", "fit", "loss target"])
def test_finite_input_whose_sum_overflows_raises_no_warning(where, rng):
    """3e38 in float32 is finite; the finiteness check must not sum it (the sum overflows)."""
    x = np.full((4, 3), 3e38, np.float32)
    model = hb.Sequential(hb.Identity()).to(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if where == "model":
            np.testing.assert_array_equal(model(x), x)                 # exact: Identity
        elif where == "fit":
            hb.fit(model, hb.MSELoss(), hb.optim.SGD([hb.Parameter(np.zeros(1, np.float32))], lr=0.0), x, x)
        else:
            assert hb.MSELoss()(x, x) == 0


@pytest.mark.parametrize("logits, labels", [((2, 3), [0.0, 2.0]), ((3,), 2.0), ((5, 4), [1.0] * 5)])
def test_float_class_labels_get_a_message_that_says_what_happened(logits, labels):
    with pytest.raises(ValueError) as info:
        hb.CrossEntropyLoss()(np.zeros(logits), np.array(labels))
    batch = logits[:-1]
    assert str(info.value) == (f"CrossEntropyLoss: target: expected integer class indices of shape {batch} or "
                               f"float class probabilities of the logits' shape {logits}, got floats of shape "
                               f"{batch}: float targets are read as probabilities; for class indices use "
                               f"target.astype(np.int64)")
    hb.CrossEntropyLoss()(np.zeros(logits), np.array(labels).astype(np.int64))     # and that works


def test_a_model_is_unchanged_by_a_refused_backward_through_gradient_descent(rng):
    """gradient_descent runs forward, backward and the update: a loss that hands back a wrong
    gradient is refused before any gradient or weight changes."""
    class WrongLoss(hb.MSELoss):
        def backward(self, dy=1.0):
            return super().backward(dy).astype(np.complex128)

    model = hb.DNN(1, 4, 3, 2, rng=rng)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(TypeError, match=r"layer '5' \(Sigmoid\(\)\): grad_output"):
        hb.gradient_descent(model, rng.normal(size=3), rng.normal(size=2), WrongLoss(), alpha=0.1)
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
