"""BatchNorm1d, LayerNorm, Dropout and GELU (their backward against finite differences is in
test_gradients.py): forward, backward and running statistics against torch, train/eval modes,
state_dict and checkpoint round trips, and bad input refused with nothing changed."""
import math
import os

import numpy as np
import pytest
import torch

import handbp as hb
from handbp.activations import erf
from tests.helpers.tolerance import TORCH_ATOL, TORCH_RTOL



def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def randomize_affine(m, rng):
    """γ and β away from their ones/zeros init, so that dx depends on them."""
    for p in m.parameters():
        p.data[...] = rng.normal(size=p.shape)


def trained_bn(rng, **kwargs):
    """A BatchNorm1d whose running statistics have moved away from 0 and 1."""
    m = hb.BatchNorm1d(3, **kwargs)
    randomize_affine(m, rng)
    for _ in range(3):
        m(rng.normal(2.0, 3.0, size=(6, 3)))
    return m


# -- against torch -----------------------------------------------------------------------------
def torch_bn(m):
    t = torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                             track_running_stats=m.track_running_stats, bias=m.bias is not None or not m.affine,
                             dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return t


def check_against_torch(m, t, x, rng, where):
    """Forward output, dx and the parameter gradients of ``m`` and ``t`` for input ``x``."""
    y = m(x)
    xt = t64(x)
    yt = t(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"{where}: output")
    dy = rng.normal(size=y.shape)
    m.zero_grad()
    dx = m.backward(dy)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"{where}: dx")
    theirs = dict(t.named_parameters())
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL,
                                   err_msg=f"{where}: {name}.grad")
        theirs[name].grad = None


BN_CASES = {
    "default": (dict(), (8, 3)),
    "NCL": (dict(), (4, 3, 5)),
    "momentum": (dict(momentum=0.3), (8, 3)),
    "momentum-None": (dict(momentum=None), (8, 3)),
    "no-affine": (dict(affine=False), (8, 3)),
    "untracked": (dict(track_running_stats=False), (8, 3)),
    "eps": (dict(eps=0.5), (3, 3)),
}


@pytest.mark.parametrize("case", list(BN_CASES))
def test_batchnorm_matches_torch_in_training_then_eval(case, rng):
    kwargs, shape = BN_CASES[case]
    m = hb.BatchNorm1d(3, **kwargs)
    randomize_affine(m, rng)
    t = torch_bn(m)
    for step in range(4):
        x = rng.normal(rng.normal(size=(1, 3) + (1,) * (len(shape) - 2)) * 3, 2.0, size=shape)
        check_against_torch(m, t, x, rng, f"train step {step}")
        ours, theirs = m.state_dict(), t.state_dict()
        assert list(ours) == list(theirs)
        for k in ours:
            np.testing.assert_allclose(ours[k], theirs[k].numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"step {step}: {k}")
    if m.track_running_stats:
        assert int(m.num_batches_tracked) == 4 and m.num_batches_tracked.dtype == np.int64
    m.eval(); t.eval()
    for batch in (5, 1):                               # eval uses the running statistics: batch 1 is fine
        if batch == 1 and not m.track_running_stats:
            continue
        check_against_torch(m, t, rng.normal(size=(batch,) + shape[1:]), rng, f"eval batch {batch}")
    if m.track_running_stats:
        assert int(m.num_batches_tracked) == 4          # eval updates nothing


def test_batchnorm_running_variance_is_unbiased(rng):
    m = hb.BatchNorm1d(2, momentum=1.0)
    x = rng.normal(size=(5, 2))
    m(x)
    np.testing.assert_allclose(m.running_var, x.var(axis=0, ddof=1), rtol=1e-15)
    np.testing.assert_allclose(m.running_mean, x.mean(axis=0), rtol=1e-15)


LN_CASES = {
    "last": (5, (4, 5)),
    "two-axes": ((2, 4), (3, 2, 4)),
    "unbatched": (5, (5,)),
    "3d-input": (4, (2, 3, 4)),
}


@pytest.mark.parametrize("case", list(LN_CASES))
@pytest.mark.parametrize("affine", ["affine", "no-bias", "none"])
def test_layernorm_matches_torch(case, affine, rng):
    shape, xshape = LN_CASES[case]
    kwargs = dict(elementwise_affine=affine != "none", bias=affine == "affine")
    m = hb.LayerNorm(shape, **kwargs)
    randomize_affine(m, rng)
    t = torch.nn.LayerNorm(shape, **kwargs, dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    assert list(m.state_dict()) == list(t.state_dict())
    for mode in ("train", "eval"):
        getattr(m, mode)(); getattr(t, mode)()
        check_against_torch(m, t, rng.normal(1.0, 3.0, size=xshape), rng, mode)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate, rng):
    m, t = hb.GELU(approximate), torch.nn.GELU(approximate=approximate)
    x = np.concatenate([rng.normal(size=200) * 3, np.linspace(-10, 10, 101), [0.0, -0.4, 0.47, 4.1, -30.0, 40.0]])
    check_against_torch(m, t, x, rng, approximate)


def test_erf_is_accurate_to_a_few_ulps(rng):
    x = np.concatenate([rng.normal(size=20000) * 3, np.linspace(-7, 7, 20001), rng.uniform(-0.5, 0.5, 2000),
                        [0.0, -0.0, 5e-324, 1e-300, 0.46875, -0.46875, 4.0, -4.0, 26.5, 1e10, -np.inf, np.inf]])
    ref = np.array([math.erf(v) for v in x.tolist()])
    got = erf(x)
    ulps = np.abs(got - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))
    assert ulps.max() <= 8, (ulps.max(), x[np.argmax(ulps)])
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))


def test_dropout_mask_scale_and_torch_twin(rng):
    p = 0.25
    d = hb.Dropout(p, rng=np.random.default_rng(7))
    x = rng.normal(size=(200, 50))
    y = d(x)
    mask = d.last_mask
    assert mask.dtype == bool and mask.shape == x.shape
    np.testing.assert_array_equal(y, x * (mask / (1 - p)))
    assert abs(mask.mean() - (1 - p)) < 0.01                 # 10 000 draws: 5 standard deviations
    np.testing.assert_array_equal(mask, np.random.default_rng(7).random(x.shape) >= p)
    # the twin fed the same mask gives the same output and gradient
    xt = t64(x)
    yt = xt * torch.from_numpy(mask) / (1 - p)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-15, atol=0)
    dy = rng.normal(size=x.shape)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(d.backward(dy), xt.grad.numpy(), rtol=1e-15, atol=0)
    # a new draw each call
    d(x)
    assert not np.array_equal(d.last_mask, mask)


def test_dropout_p0_p1_and_eval(rng):
    x = rng.normal(size=(4, 5))
    dy = rng.normal(size=(4, 5))
    keep = hb.Dropout(0.0)
    np.testing.assert_array_equal(keep(x), x)
    np.testing.assert_array_equal(keep.backward(dy), dy)
    drop = hb.Dropout(1.0)
    y = drop(x)
    assert np.all(y == 0) and np.all(np.isfinite(drop.backward(dy))) and np.all(drop.backward(dy) == 0)
    tdrop = torch.nn.Dropout(1.0)
    assert torch.all(tdrop(torch.from_numpy(x)) == 0)
    half = hb.Dropout(0.5).eval()
    np.testing.assert_array_equal(half(x), x)
    np.testing.assert_array_equal(half.backward(dy), dy)
    np.testing.assert_array_equal(torch.nn.Dropout(0.5).eval()(torch.from_numpy(x)).numpy(), x)


def test_train_eval_recurse_and_mirror_torch(rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.BatchNorm1d(4), hb.GELU(), hb.Dropout(0.5, rng=rng),
                          hb.Sequential(hb.LayerNorm(4), hb.Linear(4, 2, rng=rng)))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.GELU(), torch.nn.Dropout(0.5),
                               torch.nn.Sequential(torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)))
    assert list(model.state_dict()) == list(twin.state_dict())
    for mode in ("eval", "train", "eval"):
        assert getattr(model, mode)() is model
        getattr(twin, mode)()
        flags = [m.training for _, m in model.named_modules()]
        assert flags == [m.training for m in twin.modules()] == [mode == "train"] * len(flags)
    twin.double().load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    x = rng.normal(size=(6, 3))
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    model.train()
    a, b = model(x), model(x)                          # fresh dropout masks in training
    assert not np.array_equal(a, b)


def test_state_dict_and_checkpoint_round_trip(rng, tmp_path):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.BatchNorm1d(4, momentum=None), hb.GELU("tanh"),
                          hb.Dropout(0.3), hb.LayerNorm(4, eps=1e-3), hb.Linear(4, 2, rng=rng))
    for _ in range(3):
        model(rng.normal(size=(5, 3)))
    model.eval()
    path = os.path.join(tmp_path, "m.npz")
    hb.save(model, path)
    loaded = hb.load(path)
    assert repr(loaded) == repr(model)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=k)
    x = rng.normal(size=(2, 3))
    np.testing.assert_array_equal(loaded.eval()(x), model(x))
    other = hb.Sequential(hb.Linear(3, 4), hb.BatchNorm1d(4, momentum=None), hb.GELU("tanh"), hb.Dropout(0.3),
                          hb.LayerNorm(4, eps=1e-3), hb.Linear(4, 2)).eval()
    hb.load_into(path, other)
    np.testing.assert_array_equal(other(x), model(x))


def test_float32_batchnorm_and_layernorm(rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.BatchNorm1d(4), hb.LayerNorm(4), hb.GELU(),
                          hb.Dropout(0.1)).float()
    assert all(v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32)
               for k, v in model.state_dict().items())
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = model(x)
    assert y.dtype == np.float32 and model.backward(np.ones_like(y)).dtype == np.float32
    assert hb.BatchNorm1d(4, affine=False, dtype=np.float32)(x @ np.ones((3, 4), np.float32)).dtype == np.float32


# -- bad input ---------------------------------------------------------------------------------
def snapshot(m):
    return {k: (v.tobytes(), v.dtype, v.shape) for k, v in m.state_dict().items()}, \
        [None if p.grad is None else p.grad.tobytes() for p in m.parameters()]


@pytest.mark.parametrize("build, x, message", [
    (lambda: hb.BatchNorm1d(3), np.ones((1, 3)), r"x: expected more than 1 value per channel when training.*\(1, 3\)"),
    (lambda: hb.BatchNorm1d(3), np.ones((1, 3, 1)), r"more than 1 value per channel"),
    (lambda: hb.BatchNorm1d(3, track_running_stats=False).eval(), np.ones((1, 3)), r"more than 1 value per channel"),
    (lambda: hb.BatchNorm1d(3), np.ones((4, 2)), r"x: expected shape \(N, 3\) or \(N, 3, L\), got \(4, 2\)"),
    (lambda: hb.BatchNorm1d(3), np.ones(3), r"x: expected shape \(N, 3\)"),
    (lambda: hb.LayerNorm((2, 3)), np.ones((4, 3, 2)), r"x: expected shape \(\*, 2, 3\), got \(4, 3, 2\)"),
    (lambda: hb.LayerNorm(3), np.ones((2, 4)), r"x: expected shape \(\*, 3\)"),
])
def test_bad_input_is_refused_and_nothing_changes(build, x, message, rng):
    m = build()
    randomize_affine(m, rng)
    if m.training and isinstance(m, hb.BatchNorm1d):
        m(rng.normal(size=(4, 3)))
        m.backward(rng.normal(size=(4, 3)))            # gradients and running statistics in place
    before = snapshot(m)
    with pytest.raises(ValueError, match=message):
        m(x)
    assert snapshot(m) == before


@pytest.mark.parametrize("make, exc, message", [
    (lambda: hb.BatchNorm1d(0), ValueError, r"BatchNorm1d: num_features: expected a positive integer, got 0"),
    (lambda: hb.BatchNorm1d(3, eps=0), ValueError, r"BatchNorm1d: eps: expected a finite number > 0, got 0"),
    (lambda: hb.BatchNorm1d(3, momentum=1.5), ValueError, r"BatchNorm1d: momentum: expected a finite number in \[0, 1\], got 1.5"),
    (lambda: hb.BatchNorm1d(3, affine="no"), TypeError, r"BatchNorm1d: affine: expected True or False"),
    (lambda: hb.BatchNorm1d(3, dtype=np.int32), TypeError, r"BatchNorm1d: dtype: expected a floating dtype"),
    (lambda: hb.LayerNorm(0), ValueError, r"LayerNorm: normalized_shape: expected a positive integer"),
    (lambda: hb.LayerNorm(()), ValueError, r"LayerNorm: normalized_shape"),
    (lambda: hb.LayerNorm(3, eps=-1.0), ValueError, r"LayerNorm: eps: expected a finite number >= 0, got -1.0"),
    (lambda: hb.Dropout(-0.1), ValueError, r"Dropout: p: expected a probability in \[0, 1\], got -0.1"),
    (lambda: hb.Dropout(1.5), ValueError, r"Dropout: p: expected a probability in \[0, 1\], got 1.5"),
    (lambda: hb.Dropout("half"), ValueError, r"Dropout: p: expected a probability"),
    (lambda: hb.Dropout(0.5, rng=np.random), TypeError, r"Dropout: rng: expected an np.random.Generator"),
    (lambda: hb.GELU("fast"), ValueError, r"GELU: approximate: expected 'none' or 'tanh', got 'fast'"),
])
def test_bad_constructor_arguments(make, exc, message):
    with pytest.raises(exc, match=message):
        make()
