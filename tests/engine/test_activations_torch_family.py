"""ELU, SiLU, Softplus and Hardtanh: torch's names, defaults and values (at their ties and bounds
too), each backward against central finite differences (batched, unbatched, a batch of one), inputs
of ±1e4 without any floating-point event, bad arguments named, and a checkpoint round trip.

Tolerances: finite differences in float64 with eps 1e-6 (``FD_RTOL``, ``FD_ATOL`` in tests/helpers/tolerance.py: ~1e-9 relative
is their own error); against torch, a few units in the last place (NumPy's and torch's exp, expm1
and log1p may each round differently by one unit), exact where no such function is involved."""
import warnings

import numpy as np
import pytest
import torch

import crosscheck as cc
import handbp as hb
from tests.helpers.fd import module_gradients
from tests.helpers.tolerance import FD_ATOL as ATOL, FD_RTOL as RTOL

# name -> (factory, the kinks of its derivative: finite differences stay away from them)
CASES = {
    "ELU": (hb.ELU, [0.0]),
    "ELU-alpha": (lambda: hb.ELU(alpha=0.5), [0.0]),
    "SiLU": (hb.SiLU, []),
    "Softplus": (hb.Softplus, [20.0]),
    "Softplus-beta-threshold": (lambda: hb.Softplus(beta=2.0, threshold=3.0), [1.5]),   # both branches in range
    "Hardtanh": (hb.Hardtanh, [-1.0, 1.0]),
    "Hardtanh-bounds": (lambda: hb.Hardtanh(min_val=-0.5, max_val=2.0), [-0.5, 2.0]),
}
SHAPES = {"batched": (5, 4), "unbatched": (4,), "batch1": (1, 4)}
ULPS = 4          # units in the last place allowed against torch where exp, expm1 or log1p round


def away_from(x, kinks, margin=0.05):
    """x with every element within ``margin`` of a kink moved 2·margin above it."""
    for k in kinks:
        x = np.where(np.abs(x - k) < margin, k + 2 * margin, x)
    return x


def torch_values(m, x, dy):
    """The torch twin's output and input gradient (the twin crosscheck registers for ``m``)."""
    twin = cc.mirror(m)
    t = torch.tensor(x, requires_grad=True)
    out = twin(t)
    out.backward(torch.from_numpy(dy))
    return out.detach().numpy(), t.grad.numpy()


def assert_ulps(a, b, dtype, terms=None):
    """|a − b| within ULPS units in the last place of b, or of ``terms`` (the magnitudes summed
    into b) where b is a difference of them."""
    scale = np.abs(b) if terms is None else np.maximum(np.abs(b), terms)
    assert np.all(np.abs(a - b) <= ULPS * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny), (a, b)


def silu_terms(x, dy):
    """SiLU's dx = dy · σ(1 + x(1 − σ)) cancels where x(1 − σ) ≈ −1 (x ≈ −1.28, its minimum), and
    1 − σ, taken from a rounded σ ≈ 1, carries σ's own rounding (eps · σ) times |x| (at x ≈ 7 that
    is 7 ulps of dx): the rounding is relative to |dy| · σ(1 + |x|(1 − σ) + |x|σ), not to dx."""
    x = x.astype(np.float64)
    s = 0.5 * (1 + np.tanh(0.5 * x))
    return np.abs(dy) * s * (1 + np.abs(x) * (1 - s) + np.abs(x) * s)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list(CASES))
def test_backward_matches_finite_differences(name, shape, rng):
    make, kinks = CASES[name]
    m = make()
    x = away_from(rng.normal(scale=3.0, size=SHAPES[shape]), kinks)
    y = m(x)
    dy = rng.normal(size=y.shape)
    dx = m.backward(dy)
    fd_dx, _ = module_gradients(m, x, dy)
    assert y.shape == x.shape and dx.shape == x.shape
    np.testing.assert_allclose(dx, fd_dx, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_equal_torchs(name, dtype, rng):
    m = CASES[name][0]().to(dtype)
    x = (rng.normal(scale=5.0, size=(6, 7))).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    y, dx = m(x), m.backward(dy)
    ty, tdx = torch_values(m, x, dy)
    assert y.dtype == dx.dtype == dtype
    assert_ulps(y, ty, dtype)
    assert_ulps(dx, tdx, dtype, silu_terms(x, dy) if isinstance(m, hb.SiLU) else None)


def _next(v, toward):
    return float(np.nextafter(v, toward))


# (module, x, the output torch gives, the derivative torch gives), at the ties and bounds
TIES = [
    ("ELU at 0: the x ≤ 0 branch, slope α", lambda: hb.ELU(alpha=0.5), [0.0, -0.0], [0.0, 0.0], [0.5, 0.5]),
    ("ELU just above 0: slope 1", lambda: hb.ELU(alpha=0.5), [_next(0.0, 1.0)], [_next(0.0, 1.0)], [1.0]),
    ("Hardtanh at its bounds: slope 0", hb.Hardtanh, [-1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]),
    ("Hardtanh just inside its bounds: slope 1", lambda: hb.Hardtanh(-0.5, 2.0), [_next(-0.5, 0.0), _next(2.0, 0.0)],
     [_next(-0.5, 0.0), _next(2.0, 0.0)], [1.0, 1.0]),
    ("Hardtanh beyond its bounds: clamped, slope 0", lambda: hb.Hardtanh(-0.5, 2.0), [-3.0, 1e4], [-0.5, 2.0],
     [0.0, 0.0]),
    ("Softplus just above βx = threshold: linear", lambda: hb.Softplus(beta=2.0, threshold=5.0), [_next(2.5, 3.0)],
     [_next(2.5, 3.0)], [1.0]),
    ("SiLU at 0", hb.SiLU, [0.0], [0.0], [0.5]),
]


@pytest.mark.parametrize("case", TIES, ids=[c[0] for c in TIES])
def test_ties_and_bounds_take_torchs_branch(case):
    """Exact values: at these points each side's branch gives a number without any rounding."""
    _, make, x, y, slope = case
    m = make()
    x = np.array(x)
    out, dx = m(x), m.backward(np.ones_like(x))
    ty, tdx = torch_values(m, x, np.ones_like(x))
    assert out.tolist() == y == ty.tolist()
    assert dx.tolist() == slope == tdx.tolist()


def test_softplus_at_the_threshold_takes_the_log_branch():
    """βx = threshold exactly is not above it: log(1 + e^5)/2, not x (torch's rule, '>')."""
    m = hb.Softplus(beta=2.0, threshold=5.0)
    x = np.array([2.5])
    y, dx = m(x), m.backward(np.ones(1))
    ty, tdx = torch_values(m, x, np.ones(1))
    assert y[0] == pytest.approx(np.log1p(np.exp(5.0)) / 2, rel=1e-15) and y[0] != 2.5
    assert dx[0] == pytest.approx(np.exp(5.0) / (1 + np.exp(5.0)), rel=1e-15)
    assert_ulps(y, ty, np.float64)
    assert_ulps(dx, tdx, np.float64)


BIG = np.array([[-1e4, -800.0, -740.0, -709.5, -50.0, -1e-3, 0.0, 1e-3, 50.0, 800.0, 1e4],
                [1e4, -1e4, -100.0, -88.5, -87.0, 3.0, -3.0, 88.5, 20.0, 1e4, -1e4]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x", [BIG, BIG[0]], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(CASES))
def test_inputs_of_1e4_raise_no_floating_point_event(name, x, dtype):
    """Overflow, underflow (to a subnormal or 0), invalid and divide all raise here, and any warning
    is an error; forward and backward stay finite and equal torch's. (−709.5 and −740, −87 and
    −88.5 in float32, are where e^(−x) overflows or a product with e^x falls below the normal range.)"""
    m = CASES[name][0]().to(dtype)
    x = x.astype(dtype)
    dy = np.linspace(-1.0, 1.0, x.size).reshape(x.shape).astype(dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = m(x)
        dx = m.backward(dy)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    ty, tdx = torch_values(m, x, dy)
    assert_ulps(y, ty, dtype)
    assert_ulps(dx, tdx, dtype, silu_terms(x, dy) if isinstance(m, hb.SiLU) else None)


# (call, the error, what the message must say)
BAD = [
    (lambda: hb.ELU(alpha="1"), TypeError, "ELU: alpha: expected a finite number, got '1'"),
    (lambda: hb.ELU(alpha=float("nan")), ValueError, "ELU: alpha: expected a finite number, got nan"),
    (lambda: hb.ELU(alpha=True), TypeError, "ELU: alpha: expected a finite number, got True"),
    (lambda: hb.Softplus(beta=0), ValueError, "Softplus: beta: expected a finite number > 0, got 0"),
    (lambda: hb.Softplus(beta=-1.0), ValueError, "Softplus: beta: expected a finite number > 0, got -1.0"),
    (lambda: hb.Softplus(threshold=float("inf")), ValueError, "Softplus: threshold: expected a finite number, got inf"),
    (lambda: hb.Softplus(threshold=None), TypeError, "Softplus: threshold: expected a finite number, got None"),
    (lambda: hb.Hardtanh(1.0, -1.0), ValueError, "Hardtanh: max_val: expected a finite number > min_val (1.0), got -1.0"),
    (lambda: hb.Hardtanh(0.5, 0.5), ValueError, "Hardtanh: max_val: expected a finite number > min_val (0.5), got 0.5"),
    (lambda: hb.Hardtanh(min_val=float("-inf")), ValueError, "Hardtanh: min_val: expected a finite number, got -inf"),
    (lambda: hb.Hardtanh(max_val=[1.0]), TypeError, "Hardtanh: max_val: expected a finite number > min_val (-1.0), got list"),
    (lambda: hb.SiLU(1.0), TypeError, "takes 1 positional argument"),
]


@pytest.mark.parametrize("call, error, message", BAD, ids=[b[2] for b in BAD])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("name", list(CASES))
def test_torchs_repr_and_a_checkpoint_round_trip(name, rng, tmp_path):
    """The same repr as the torch twin (torch's argument names and defaults), and ``config_args``
    rebuild the module from a checkpoint with its arguments."""
    act = CASES[name][0]()
    assert repr(act) == repr(cc.mirror(act))
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), act, hb.Linear(4, 2, rng=rng))
    hb.save(model, tmp_path / "m.npz")
    loaded = hb.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    x = rng.normal(size=(5, 3))
    assert np.array_equal(loaded(x), model(x))


@pytest.mark.parametrize("name", list(CASES))
def test_backward_before_forward_and_a_wrong_grad_output_are_refused(name):
    m = CASES[name][0]()
    with pytest.raises(hb.CallOrderError, match="backward\\(\\) called before forward"):
        m.backward(np.ones(3))
    m(np.ones((2, 3)))
    with pytest.raises(ValueError, match="grad_output: expected shape \\(2, 3\\)"):
        m.backward(np.ones((3, 2)))
