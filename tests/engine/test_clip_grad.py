"""hb.nn.utils.clip_grad_norm_ and clip_grad_value_ against torch.nn.utils': the total norm returned
and every gradient after, over norm types, dtypes, clipping or not, parameters without a gradient;
non-finite norms; the arguments torch takes and the ones refused (nothing changed)."""
import math

import numpy as np
import pytest
import torch

import handbp as hb
from handbp.nn.utils import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm

SHAPES = [(3, 4), (5,), (2, 2, 2), (1,)]
NORMS = [2.0, 1, 3.5, math.inf, "inf", 0, -math.inf]
CASES = [(p, dtype, max_norm) for p in NORMS for dtype in ("float64", "float32") for max_norm in (0.5, 1e9)]


def both(rng, dtype, without_grad=(1,)):
    """Parameters with gradients (some without), and torch's copies."""
    ps, ts = [], []
    for k, shape in enumerate(SHAPES):
        p = hb.Parameter(rng.normal(size=shape).astype(dtype))
        t = torch.nn.Parameter(torch.from_numpy(p.data.copy()))
        if k not in without_grad:
            p.grad = rng.normal(size=shape).astype(dtype) * (k + 1)
            t.grad = torch.from_numpy(p.grad.copy())
        ps.append(p)
        ts.append(t)
    return ps, ts


def tolerance(dtype):
    return dict(rtol=1e-13, atol=0) if dtype == "float64" else dict(rtol=2e-6, atol=0)


@pytest.mark.parametrize("norm_type, dtype, max_norm", CASES, ids=[f"p={p}-{d}-max{m:g}" for p, d, m in CASES])
def test_clip_grad_norm_matches_torch(norm_type, dtype, max_norm, rng):
    ps, ts = both(rng, dtype)
    total = clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type=norm_type)
    assert isinstance(total, np.floating) and total.dtype == np.dtype(dtype)
    np.testing.assert_allclose(total, theirs.item(), **tolerance(dtype))
    for p, t in zip(ps, ts):
        if t.grad is None:
            assert p.grad is None
        else:
            np.testing.assert_allclose(p.grad, t.grad.numpy(), **tolerance(dtype))


def test_the_norm_clips_to_max_norm_and_keeps_the_direction(rng):
    ps, _ = both(rng, "float64", without_grad=())
    before = np.concatenate([p.grad.ravel() for p in ps])
    total = clip_grad_norm_(iter(ps), 1.0)                     # any iterable, as model.parameters()
    after = np.concatenate([p.grad.ravel() for p in ps])
    assert total == pytest.approx(np.linalg.norm(before), rel=1e-14)
    assert np.linalg.norm(after) == pytest.approx(1.0, rel=1e-5)       # (1e-6 added to the norm, as torch)
    np.testing.assert_allclose(after * total, before * 1.0, rtol=1e-5)


def test_a_non_finite_norm_is_scaled_in_or_refused_as_torch(rng):
    ps, ts = both(rng, "float64")
    ps[0].grad[0, 0] = np.inf
    ts[0].grad[0, 0] = np.inf
    saved = [None if p.grad is None else p.grad.copy() for p in ps]
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm of order 2.0 for gradients from "
                                           "`parameters` is non-finite, so it cannot be clipped"):
        clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    assert all(s is None and p.grad is None or np.array_equal(s, p.grad) for s, p in zip(saved, ps))
    with np.errstate(invalid="ignore"):
        total = clip_grad_norm_(ps, 1.0)
    assert total == torch.nn.utils.clip_grad_norm_(ts, 1.0).item() == math.inf
    for p, t in zip(ps, ts):
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, t.grad.numpy())     # 0, and NaN where inf · 0


def test_no_gradient_gives_zero_and_an_empty_generator_warns():
    assert clip_grad_norm_([hb.Parameter(np.ones(3))], 1.0) == 0.0
    assert clip_grad_norm_([], 1.0) == 0.0
    with pytest.warns(UserWarning, match="`parameters` is an empty generator, no gradient clipping will occur"):
        clip_grad_norm_((p for p in []), 1.0)


def test_foreach_is_accepted_and_changes_nothing(rng):
    results = []
    for foreach in (None, True, False):
        ps, _ = both(np.random.default_rng(0), "float64")
        results.append((clip_grad_norm_(ps, 0.5, foreach=foreach), [p.grad for p in ps]))
    for total, grads in results[1:]:
        assert total == results[0][0]
        assert all(a is None and b is None or np.array_equal(a, b) for a, b in zip(grads, results[0][1]))


def test_the_two_halves_are_clip_grad_norm_(rng):
    ps, _ = both(rng, "float32")
    qs = [hb.Parameter(p.data) for p in ps]
    for p, q in zip(ps, qs):
        q.grad = None if p.grad is None else p.grad.copy()
    total = get_total_norm([p.grad for p in ps if p.grad is not None], norm_type=3.0)
    clip_grads_with_norm_(ps, 0.1, total)
    assert clip_grad_norm_(qs, 0.1, norm_type=3.0) == total
    assert all(p.grad is None or np.array_equal(p.grad, q.grad) for p, q in zip(ps, qs))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_value_matches_torch(dtype, rng):
    ps, ts = both(rng, dtype)
    assert clip_grad_value_(ps, 0.7) is None
    torch.nn.utils.clip_grad_value_(ts, 0.7)
    for p, t in zip(ps, ts):
        assert (p.grad is None) == (t.grad is None)
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, t.grad.numpy())
            assert p.grad.dtype == np.dtype(dtype)


BAD = [
    (lambda ps: clip_grad_norm_(ps, -1.0), ValueError, "clip_grad_norm_: max_norm: expected a real number >= 0, got -1.0"),
    (lambda ps: clip_grad_norm_(ps, float("nan")), ValueError, "clip_grad_norm_: max_norm: expected a real number >= 0"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type="fro"), TypeError, "clip_grad_norm_: norm_type: expected a number or "
     "'inf', got 'fro'"),
    (lambda ps: clip_grad_norm_(ps, 1.0, error_if_nonfinite=1), TypeError, "clip_grad_norm_: error_if_nonfinite: "
     "expected True or False, got 1"),
    (lambda ps: clip_grad_norm_(ps, 1.0, foreach="yes"), TypeError, "clip_grad_norm_: foreach: expected True or False"),
    (lambda ps: clip_grad_norm_(hb.Linear(2, 2), 1.0), TypeError, "clip_grad_norm_: parameters: expected a Parameter or "
     "an iterable of Parameters, got Linear"),
    (lambda ps: clip_grad_norm_(ps + [np.ones(2)], 1.0), TypeError, "clip_grad_norm_: parameters: item 4: expected a "
     "Parameter, got array"),
    (lambda ps: clip_grad_value_(ps, -0.1), ValueError, "clip_grad_value_: clip_value: expected a real number >= 0"),
]


@pytest.mark.parametrize("call, error, message", BAD, ids=[m.split(": ")[1] + "-" + str(i) for i, (_, _, m) in enumerate(BAD)])
def test_bad_arguments_are_named_and_change_nothing(call, error, message, rng):
    ps, _ = both(rng, "float64")
    saved = [None if p.grad is None else p.grad.copy() for p in ps]
    with pytest.raises(error) as info:
        call(ps)
    assert str(info.value).startswith(message)
    assert all(s is None and p.grad is None or np.array_equal(s, p.grad) for s, p in zip(saved, ps))


def test_a_gradient_of_the_wrong_shape_is_refused_before_any_is_scaled(rng):
    ps, _ = both(rng, "float64", without_grad=())
    ps[2].grad = ps[2].grad.reshape(-1)
    saved = [p.grad.copy() for p in ps]
    with pytest.raises(TypeError, match=r"clip_grad_norm_: parameters: item 2: expected its grad to be a floating "
                                        r"array of shape \(2, 2, 2\)"):
        clip_grad_norm_(ps, 1e-3)
    assert all(np.array_equal(s, p.grad) for s, p in zip(saved, ps))
