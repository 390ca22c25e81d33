"""Activations as modules. Each caches one array in ``forward`` and multiplies the upstream
gradient by its local derivative in ``backward``; all are stable for inputs of ±1e4."""
import numpy as np

from . import validate
from .errors import LayerValueError
from .module import Module


def exp(x):
    """eˣ for x ≤ 0 (shifted logits): below about −745 (−103 in float32) it underflows to 0, the
    correctly rounded value, so that expected underflow is not reported, even under
    ``np.errstate(all="raise")``."""
    with np.errstate(under="ignore"):
        return np.exp(x)


def sigmoid(x):
    """σ(x) = 1 / (1 + e⁻ˣ), torch's formula, in three array operations.

    For x below about −709 (−88 in float32) e⁻ˣ overflows to inf and the result is 1/inf = 0,
    which is σ(x) to within the smallest positive float; large positive x give e⁻ˣ = 0 (an
    underflow) and σ = 1. Both are expected, so neither is reported. No NaN for any finite x."""
    with np.errstate(over="ignore", under="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


class Sigmoid(Module):
    """y = σ(x) = 1 / (1 + e⁻ˣ).  Derivative: dy/dx = σ(x)(1 − σ(x)) = y(1 − y)."""

    elementwise = True

    def __init__(self):
        super().__init__()
        self.last_o = None

    def forward(self, x):
        self.last_o = sigmoid(x)
        return self.last_o

    def backward(self, dy):
        """dx = dy · y(1 − y), from the cached output y."""
        y = self.last_o
        self._need_cache(y, dy)
        return dy * y * (1.0 - y)


class Tanh(Module):
    """y = tanh(x).  Derivative: dy/dx = 1 − tanh²(x) = 1 − y²."""

    elementwise = True

    def __init__(self):
        super().__init__()
        self.last_o = None

    def forward(self, x):
        self.last_o = np.tanh(x)
        return self.last_o

    def backward(self, dy):
        """dx = dy · (1 − y²)."""
        y = self.last_o
        self._need_cache(y, dy)
        return dy * (1.0 - y * y)


class ReLU(Module):
    """y = max(x, 0).  Derivative: 1 where x > 0, else 0 (0 at x = 0, as torch)."""

    elementwise = True

    def __init__(self):
        super().__init__()
        self.last_mask = self.last_dtype = None

    def forward(self, x):
        self.last_mask, self.last_dtype = x > 0, x.dtype
        return np.where(self.last_mask, x, 0.0).astype(x.dtype, copy=False)

    def backward(self, dy):
        """dx = dy · [x > 0]."""
        mask = self.last_mask
        self._need_cache(mask, dy, dtype=self.last_dtype)
        return np.where(mask, dy, 0.0).astype(dy.dtype, copy=False)


class LeakyReLU(Module):
    """y = x for x > 0, else negative_slope · x.  Derivative: 1 for x > 0, else negative_slope
    (negative_slope at x = 0, as torch)."""

    elementwise = True

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(validate.number("LeakyReLU", "negative_slope", negative_slope))
        self.last_mask = self.last_dtype = None

    def forward(self, x):
        self.last_mask, self.last_dtype = x > 0, x.dtype
        return np.where(self.last_mask, x, x * self.negative_slope)

    def backward(self, dy):
        """dx = dy · (1 if x > 0 else negative_slope)."""
        mask = self.last_mask
        self._need_cache(mask, dy, dtype=self.last_dtype)
        return np.where(mask, dy, dy * self.negative_slope)

    def config_args(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Identity(Module):
    """y = x.  Derivative: 1."""

    elementwise = True

    def __init__(self):
        super().__init__()
        self.last_shape = self.last_dtype = None

    def forward(self, x):
        self.last_shape, self.last_dtype = x.shape, x.dtype
        return x

    def backward(self, dy):
        """dx = dy."""
        self._need_cache(self.last_shape, dy, self.last_shape, self.last_dtype)
        return dy


class Softmax(Module):
    """yᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m) along ``dim``, m = maxⱼ xⱼ (the shift changes nothing but
    keeps e^(·) ≤ 1, so ±1e4 cannot overflow).

    Jacobian: ∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ), so the vector-Jacobian product never builds the matrix:
    dx = y ⊙ (dy − Σⱼ dyⱼ yⱼ).
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = validate.integer("Softmax", "dim", dim)
        self.last_o = None

    def forward(self, x):
        if not -x.ndim <= self.dim < max(x.ndim, 1):
            raise LayerValueError(self, f"dim: {self.dim} is out of range for an input of shape {x.shape}")
        z = exp(x - x.max(axis=self.dim, keepdims=True))
        self.last_o = z / z.sum(axis=self.dim, keepdims=True)
        return self.last_o

    def row_wise(self, x):
        """Along the last axis each sample is normalized alone; along another, across the batch (a
        one-sample x stacks on a new first axis, so only dim=-1 names its axis there)."""
        if self.dim == -1 or (x.ndim > 1 and self.dim % x.ndim == x.ndim - 1):
            return None
        return f"it normalizes along dim={self.dim}, across the rows of a stack of inputs shaped like {x.shape}"

    def backward(self, dy):
        """dx = y ⊙ (dy − Σ dy ⊙ y) along dim."""
        y = self.last_o
        self._need_cache(y, dy)
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True))

    def config_args(self):
        return {"dim": self.dim}

    def extra_repr(self):
        return f"dim={self.dim}"


# -- the error function, for GELU ------------------------------------------------------------
# NumPy has no erf and handbp does not use SciPy. This is W. J. Cody's rational Chebyshev
# approximation ("Rational Chebyshev approximations for the error function", Math. Comp. 23, 1969),
# with the coefficients of netlib's specfun CALERF, vectorized: relative error within a few units in
# the last place of float64 (tests compare it with math.erf), and fast, unlike calling math.erf
# element by element.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRT_1_PI = 5.6418958354775628695e-1     # 1/√π
# math.h's constants, which torch's GELU kernels use (M_SQRT2 · M_2_SQRTPI · ½ is one ulp above
# the double nearest √(2/π), so we form it the same way)
M_SQRT1_2, M_SQRT2, M_2_SQRTPI = 0.70710678118654752440, 1.41421356237309504880, 1.12837916709551257390


def _ratio(z, num_coef, den_coef):
    """num(z)/den(z) in Cody's Horner form: num's last coefficient leads, den is monic."""
    k = len(den_coef)
    num, den = num_coef[k] * z, z
    for i in range(k - 1):
        num = (num + num_coef[i]) * z
        den = (den + den_coef[i]) * z
    return (num + num_coef[k - 1]) / (den + den_coef[k - 1])


def erf(x):
    """erf(x) = 2/√π ∫₀ˣ e^(−t²) dt, elementwise in float64 (Cody's three intervals).

    |x| ≤ 0.46875: erf(x) = x · R₁(x²). Beyond, erf(x) = sign(x)(1 − erfc(|x|)) with
    erfc(y) = e^(−y²) R₂(y) for y ≤ 4 and e^(−y²)(1/√π − R₃(1/y²)/y²)/y above; e^(−y²) is
    formed as e^(−s²) e^(−(y−s)(y+s)) with s = y rounded down to 1/16, so y² loses nothing.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.empty_like(x)
    small = y <= 0.46875
    out[small] = x[small] * _ratio(y[small] ** 2, _ERF_A, _ERF_B)
    mid = ~small & (y <= 4.0)
    big = y > 4.0
    erfc = np.empty_like(y)
    erfc[mid] = _ratio(y[mid], _ERFC_C, _ERFC_D)
    yb = np.minimum(y[big], 30.0)              # erfc(30) underflows to 0: clipping changes nothing
    zb = 1.0 / (yb * yb)
    erfc[big] = (_SQRT_1_PI - zb * _ratio(zb, _ERFC_P, _ERFC_Q)) / yb
    tail = mid | big
    yt = np.minimum(y[tail], 30.0)
    s = np.trunc(yt * 16.0) / 16.0
    with np.errstate(under="ignore"):
        e = np.exp(-s * s) * np.exp(-(yt - s) * (yt + s)) * erfc[tail]
    out[tail] = np.copysign((0.5 - e) + 0.5, x[tail])
    return out


class GELU(Module):
    """y = x Φ(x), Φ the standard normal CDF: Φ(x) = ½(1 + erf(x/√2)) (``approximate="none"``),
    or with Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))) (``approximate="tanh"``), as torch.

    Derivative: dy/dx = Φ(x) + x φ(x), φ(x) = e^(−x²/2)/√(2π) the normal density (exact form);
    for the tanh form, with u = √(2/π)(x + 0.044715 x³) and t = tanh(u),
    dy/dx = ½(1 + t) + ½ x (1 − t²) √(2/π)(1 + 3 · 0.044715 x²).

    Args:
        approximate: ``"none"`` (default, the exact erf form) or ``"tanh"``.
    """

    elementwise = True

    KAPPA = 0.044715

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = validate.choice("GELU", "approximate", approximate, ("none", "tanh"))
        self.last_x = None      # x, for x φ(x) (or the tanh form's second term)
        self.last_cdf = None    # Φ(x) (exact form) or t = tanh(u) (tanh form), computed by the forward

    def forward(self, x):
        """y = x Φ(x); caches x and Φ(x) (or tanh(u))."""
        if self.approximate == "none":
            cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2).astype(x.dtype, copy=False))
            self.last_x, self.last_cdf = x, cdf
            return x * cdf
        beta = M_SQRT2 * M_2_SQRTPI * 0.5
        t = np.tanh(beta * (x + self.KAPPA * (x * x * x)))
        self.last_x, self.last_cdf = x, t
        return 0.5 * x * (1.0 + t)

    def backward(self, dy):
        """dx = dy · (Φ(x) + x φ(x)); tanh form: dx = dy · (½(1 + t) + ½ x (1 − t²) √(2/π)(1 + 3κ x²))."""
        x = self.last_x
        self._need_cache(x, dy)
        if self.approximate == "none":
            pdf = (M_2_SQRTPI * M_SQRT1_2 * 0.5) * exp(-0.5 * (x * x))
            return dy * (self.last_cdf + x * pdf)
        t, beta = self.last_cdf, M_SQRT2 * M_2_SQRTPI * 0.5
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * beta * (1.0 + 3.0 * self.KAPPA * (x * x)))

    def config_args(self):
        return {"approximate": self.approximate}

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ELU(Module):
    """y = x for x > 0, α(eˣ − 1) for x ≤ 0 (torch's ELU; eˣ − 1 as expm1(x), exact near 0).

    Derivative: dy/dx = 1 for x > 0, α eˣ for x ≤ 0 (α at x = 0, as torch).

    Args:
        alpha: α, the value −α approached as x → −∞ (default 1.0).
    """

    elementwise = True

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(validate.number("ELU", "alpha", alpha))
        self.last_x = None

    def forward(self, x):
        """y = x where x > 0, α·expm1(x) elsewhere; caches x. (expm1 sees min(x, 0) only: the
        branch not taken must not overflow.)"""
        self.last_x = x
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * self.alpha)

    def backward(self, dy):
        """dx = dy where x > 0, dy · α eˣ elsewhere."""
        x = self.last_x
        self._need_cache(x, dy)
        with np.errstate(under="ignore"):       # a product below the smallest float is 0, rightly
            return np.where(x > 0, dy, dy * self.alpha * np.exp(np.minimum(x, 0)))

    def config_args(self):
        return {"alpha": self.alpha}

    def extra_repr(self):
        return f"alpha={self.alpha}"


class SiLU(Module):
    """y = x σ(x) = x / (1 + e⁻ˣ) (SiLU, or swish; torch's formula).

    Derivative: dy/dx = σ(x) + x σ(x)(1 − σ(x)) = σ(x)(1 + x(1 − σ(x))).
    """

    elementwise = True

    def __init__(self):
        super().__init__()
        self.last_x = None          # x, for the x(1 − σ) term
        self.last_sigmoid = None    # σ(x) = 1 / (1 + e⁻ˣ), from the forward's denominator

    def forward(self, x):
        """y = x / (1 + e⁻ˣ); caches x and σ(x). Below about −709 (−88 in float32) e⁻ˣ overflows
        to inf, and y = −0, σ = 0 are the right limits; just above, σ is subnormal. Neither is
        reported."""
        with np.errstate(over="ignore", under="ignore"):
            d = 1.0 + np.exp(-x)
            self.last_x, self.last_sigmoid = x, 1.0 / d
            return x / d

    def backward(self, dy):
        """dx = dy · σ(x)(1 + x(1 − σ(x)))."""
        x, s = self.last_x, self.last_sigmoid
        self._need_cache(x, dy)
        with np.errstate(under="ignore"):       # σ may be subnormal: so may dy · σ, rightly
            return dy * s * (1.0 + x * (1.0 - s))


class Softplus(Module):
    """y = (1/β) log(1 + e^(βx)), and y = x where βx > threshold (torch's rule: there the two agree
    to within rounding, and e^(βx) would overflow further on).

    Derivative: dy/dx = e^(βx) / (1 + e^(βx)) = σ(βx); 1 where βx > threshold.

    Args:
        beta: β > 0 (default 1.0).
        threshold: βx above it takes the linear branch (default 20.0).
    """

    elementwise = True

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = float(validate.number("Softplus", "beta", beta, low=0, low_open=True))
        self.threshold = float(validate.number("Softplus", "threshold", threshold))
        self.last_linear = None     # where βx > threshold
        self.last_z = None          # e^(βx) (of min(βx, threshold): the linear branch does not use it)

    def forward(self, x):
        """y = x where βx > threshold, log1p(e^(βx)) / β elsewhere; caches the branch and e^(βx)."""
        bx = x * self.beta
        linear = bx > self.threshold
        with np.errstate(under="ignore"):       # e^(βx) → 0 for very negative βx, rightly
            z = np.exp(np.minimum(bx, self.threshold))
            self.last_linear, self.last_z = linear, z
            return np.where(linear, x, np.log1p(z) / self.beta)

    def backward(self, dy):
        """dx = dy where βx > threshold, dy · z / (z + 1) elsewhere, z = e^(βx)."""
        z = self.last_z
        self._need_cache(z, dy)
        with np.errstate(under="ignore"):       # z may be subnormal: so may dy · z, rightly
            return np.where(self.last_linear, dy, dy * z / (z + 1.0))

    def config_args(self):
        return {"beta": self.beta, "threshold": self.threshold}

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """y = min_val for x < min_val, max_val for x > max_val, x in between (torch's clamp).

    Derivative: dy/dx = 1 for min_val < x < max_val, 0 elsewhere, the bounds themselves included
    (as torch).

    Args:
        min_val, max_val: the bounds, min_val < max_val (default −1.0 and 1.0).
    """

    elementwise = True

    def __init__(self, min_val=-1.0, max_val=1.0):
        super().__init__()
        self.min_val = float(validate.number("Hardtanh", "min_val", min_val))
        self.max_val = float(validate.number("Hardtanh", "max_val", max_val, low=self.min_val, low_open=True,
                                             what=f"a finite number > min_val ({self.min_val})"))
        self.last_inside = self.last_dtype = None    # where min_val < x < max_val; x's dtype

    def forward(self, x):
        """y = min(max(x, min_val), max_val); caches where x is strictly inside the bounds."""
        self.last_inside, self.last_dtype = (x > self.min_val) & (x < self.max_val), x.dtype
        return np.minimum(np.maximum(x, self.min_val), self.max_val)

    def backward(self, dy):
        """dx = dy where min_val < x < max_val, else 0."""
        inside = self.last_inside
        self._need_cache(inside, dy, dtype=self.last_dtype)
        return np.where(inside, dy, 0.0).astype(dy.dtype, copy=False)

    def config_args(self):
        return {"min_val": self.min_val, "max_val": self.max_val}

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"
