"""clip_grad_norm_'s norm_type: NaN is refused before any gradient changes (torch computes a NaN
norm and multiplies every gradient by NaN); every other order, inf included, is still taken."""
import math

import numpy as np
import pytest

import handbp as hb
from handbp.nn.utils import clip_grad_norm_, get_total_norm


@pytest.mark.parametrize("call", [lambda ps, t: clip_grad_norm_(ps, 1.0, norm_type=t),
                                  lambda ps, t: get_total_norm([p.grad for p in ps], norm_type=t)],
                         ids=["clip_grad_norm_", "get_total_norm"])
@pytest.mark.parametrize("norm_type", [math.nan, np.float64(np.nan), "nan"])
def test_nan_norm_type_is_refused_and_nothing_changes(call, norm_type, rng):
    params = [hb.Parameter(rng.normal(size=(3, 2))), hb.Parameter(rng.normal(size=4))]
    for p in params:
        p.grad = rng.normal(size=p.shape)
    before = [p.grad.tobytes() for p in params]
    with pytest.raises(ValueError, match=r"norm_type: expected a number or 'inf', got nan"):
        call(params, norm_type)
    assert [p.grad.tobytes() for p in params] == before


@pytest.mark.parametrize("norm_type", [2, 1, 0.5, 0, math.inf, -math.inf, "inf", "-inf"])
def test_other_norm_types_still_work(norm_type, rng):
    p = hb.Parameter(np.zeros(3))
    p.grad = np.array([3.0, -4.0, 0.0])
    # (order 0 counts the non-zero per-gradient norms, as torch: one here)
    expected = {2: 5.0, 1: 7.0, 0.5: (3 ** 0.5 + 4 ** 0.5) ** 2, 0: 1.0, math.inf: 4.0, -math.inf: 0.0}
    total = clip_grad_norm_([p], 1e9, norm_type=norm_type)
    np.testing.assert_allclose(total, expected[float(norm_type)], rtol=1e-15)     # a few roundings in float64
