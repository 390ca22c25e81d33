"""Normalization layers: ``BatchNorm1d`` and ``LayerNorm``, torch's names, defaults and buffers.

Both compute x̂ = (x − μ) / σ with σ = √(var + eps) over some axes (the batch for BatchNorm, the
trailing features for LayerNorm), then y = γ ⊙ x̂ + β. Their backward passes share one formula.

The input gradient, derived once. Let the normalization run over n values x₁ … xₙ (one channel
of a batch, or one sample's features), μ = Σ xᵢ / n, var = Σ (xᵢ − μ)² / n (biased), and write
ĝᵢ = dyᵢ γ for the gradient reaching x̂. Then

    ∂μ/∂xⱼ = 1/n,   ∂var/∂xⱼ = 2 (xⱼ − μ) / n = 2 σ x̂ⱼ / n,   so  ∂σ/∂xⱼ = x̂ⱼ / n,

    ∂x̂ᵢ/∂xⱼ = (δᵢⱼ − 1/n) / σ − (xᵢ − μ) x̂ⱼ / (n σ²) = (δᵢⱼ − 1/n − x̂ᵢ x̂ⱼ / n) / σ,

and the chain rule dxⱼ = Σᵢ ĝᵢ ∂x̂ᵢ/∂xⱼ gives the compact form

    dx = (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ,

three reductions and no n × n Jacobian: the gradient minus its mean (μ moves with every x) minus
its projection on x̂ (σ does). When the statistics are constants (BatchNorm in eval mode, using
its running estimates), only the diagonal term is left: dx = ĝ / σ.
"""
import numpy as np

from . import validate
from .errors import ArgumentTypeError, LayerValueError
from .module import Module, Parameter


def normalized_backward(g_hat, xhat, inv_std, axes):
    """dx = (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ, the means over ``axes`` (see the module docstring)."""
    mean_g = g_hat.mean(axis=axes, keepdims=True)
    mean_gx = (g_hat * xhat).mean(axis=axes, keepdims=True)
    return (g_hat - mean_g - xhat * mean_gx) * inv_std


class _BatchNorm(Module):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, per channel, over the batch (and spatial) axes.

    In training mode (``train()``, the default) the mean and the biased variance of the current
    batch normalize it, and the running estimates move toward the batch's::

        running_mean ← (1 − momentum) · running_mean + momentum · mean
        running_var  ← (1 − momentum) · running_var  + momentum · var · n / (n − 1)

    the variance stored is the *unbiased* one (n values per channel), the one used to normalize is
    the biased one, as in torch. ``num_batches_tracked`` counts training batches; with
    ``momentum=None`` the factor is 1 / num_batches_tracked (a cumulative average). In eval mode
    (``eval()``) the running estimates normalize, and nothing is updated. With
    ``track_running_stats=False`` there are no running estimates and batch statistics are used in
    both modes.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance, > 0 (default 1e-5).
        momentum: factor of the running estimates' update, in [0, 1] or None (default 0.1).
        affine: learn γ (``weight``, ones) and β (``bias``, zeros).
        track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
            ``num_batches_tracked`` (0, int64) as buffers.
        bias: with affine, whether to learn β (torch's keyword).
        dtype: dtype of parameters and buffers (float64 by default).

    Shape: see ``BatchNorm1d`` and ``BatchNorm2d``; in training, N times the spatial size must
        exceed 1.
    """

    _shapes = ()          # the input shapes a subclass takes, as text with C for the channels

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
                 bias=True, dtype=np.float64):
        super().__init__()
        owner = type(self).__name__
        num_features = validate.integer(owner, "num_features", num_features, low=1)
        eps = validate.number(owner, "eps", eps, low=0, low_open=True)
        momentum = validate.optional(validate.number, owner, "momentum", momentum, low=0, high=1)
        affine, track_running_stats, bias = (validate.flag(owner, key, v) for key, v in (
            ("affine", affine), ("track_running_stats", track_running_stats), ("bias", bias)))
        dtype = validate.float_dtype(owner, "dtype", dtype)
        object.__setattr__(self, "_dtype", dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self.last_xhat = None          # x̂, for dx and dW
        self.last_inv_std = None       # 1/σ per channel (shaped to broadcast), for dx
        self.last_batch_stats = None   # whether the batch's own statistics normalized x

    def _axes(self, x):
        """The axes the statistics are taken over: all but the channels' (axis 1)."""
        if x.ndim not in [s.count(",") + 1 for s in self._shapes] or x.shape[1] != self.num_features:
            shapes = " or ".join(s.replace("C", str(self.num_features)) for s in self._shapes)
            raise LayerValueError(self, f"x: expected shape {shapes}, got {x.shape}")
        return (0,) + tuple(range(2, x.ndim))

    def _shape(self, v, x):
        """A per-channel vector shaped to broadcast against x: (C,), (C, 1) or (C, 1, 1)."""
        return v.reshape(v.shape + (1,) * (x.ndim - 2))

    def forward(self, x):
        """x̂ = (x − μ) / σ,  y = γ x̂ + β; caches x̂ and 1/σ. In training, updates the running estimates."""
        axes = self._axes(x)
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            n = x.size // self.num_features
            if n <= 1:
                raise LayerValueError(self, f"x: expected more than 1 value per channel when training "
                                            f"(torch's rule: the batch variance needs two), got input size {x.shape}")
            mean = x.mean(axis=axes)
            centered = x - self._shape(mean, x)
            var_sum = (centered * centered).sum(axis=axes)
            var = var_sum / n
            if self.training and self.track_running_stats:
                count = self.num_batches_tracked           # updated in place: these are the buffers
                count += 1
                f = 1.0 / float(count) if self.momentum is None else self.momentum
                rm, rv = self.running_mean, self.running_var
                rm[...] = f * mean + (1 - f) * rm
                rv[...] = f * (var_sum / (n - 1)) + (1 - f) * rv
        else:
            centered = x - self._shape(self.running_mean, x)
            var = self.running_var
        inv_std = self._shape(1.0 / np.sqrt(var + self.eps), x).astype(x.dtype, copy=False)
        xhat = centered * inv_std
        self.last_xhat, self.last_inv_std, self.last_batch_stats = xhat, inv_std, batch_stats
        y = xhat if self.weight is None else xhat * self._shape(self.weight.data, x)
        if self.bias is not None:
            y = y + self._shape(self.bias.data, x)
        return y

    def backward(self, dy):
        """dγ = Σ dy ⊙ x̂,  dβ = Σ dy (over N and the spatial axes),  ĝ = dy γ,
        dx = (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ with batch statistics, dx = ĝ / σ with running ones."""
        xhat = self.last_xhat
        self._need_cache(xhat, dy)
        axes = (0,) + tuple(range(2, xhat.ndim))
        if self.weight is not None:
            self.weight.accumulate((dy * xhat).sum(axis=axes))
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=axes))
        g_hat = dy if self.weight is None else dy * self._shape(self.weight.data, xhat)
        if not self.last_batch_stats:
            return g_hat * self.last_inv_std
        return normalized_backward(g_hat, xhat, self.last_inv_std, axes)

    def row_wise(self, x):
        """With the running estimates (eval mode) each row is normalized alone; with the batch's
        statistics every row moves every other."""
        if self.training or not self.track_running_stats:
            return "it normalizes with the batch's statistics (training mode)"
        return None

    def config_args(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats,
                "bias": self.bias is not None or not self.affine}

    @classmethod
    def state_shapes(cls, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, bias=True):
        """weight and bias (num_features,) with affine; running_mean, running_var (num_features,) and
        num_batches_tracked () when tracking; see ``Module.state_shapes``."""
        if affine:
            yield "weight", (num_features,)
            if bias:
                yield "bias", (num_features,)
        if track_running_stats:
            yield "running_mean", (num_features,)
            yield "running_var", (num_features,)
            yield "num_batches_tracked", ()

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, per channel, over the batch (and length) axes:
    torch's BatchNorm1d. The arguments, the running estimates and the modes are ``_BatchNorm``'s
    (read its docstring: ``help(hb.normalization._BatchNorm)``).

    Args:
        num_features: C. eps: > 0 (1e-5). momentum: in [0, 1] or None (0.1). affine, bias,
        track_running_stats: as torch's. dtype: of parameters and buffers (float64).

    Shape:
        x and y: ``(N, C)`` or ``(N, C, L)``; in training N (· L) must exceed 1.
    """

    _shapes = ("(N, C)", "(N, C, L)")


class BatchNorm2d(_BatchNorm):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, per channel, over the batch and both spatial
    axes: torch's BatchNorm2d. Each channel's mean and variance are taken over its N·H·W values;
    everything else is ``BatchNorm1d``'s (``help(hb.normalization._BatchNorm)``).

    Args:
        num_features: C. eps: > 0 (1e-5). momentum: in [0, 1] or None (0.1). affine, bias,
        track_running_stats: as torch's. dtype: of parameters and buffers (float64).

    Shape:
        x and y: ``(N, C, H, W)`` (torch takes no unbatched form); in training N·H·W must exceed 1.
    """

    _shapes = ("(N, C, H, W)",)


class LayerNorm(Module):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, the statistics over the last
    ``len(normalized_shape)`` axes of each sample (biased variance), the same in train and eval.

    Args:
        normalized_shape: the trailing shape to normalize over (an int for the last axis).
        eps: added to the variance, ≥ 0 (default 1e-5).
        elementwise_affine: learn γ (``weight``, ones) and β (``bias``, zeros) of that shape.
        bias: with elementwise_affine, whether to learn β.
        dtype: dtype of the parameters (float64 by default).

    Shape:
        x and y: ``(*, *normalized_shape)``.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *, dtype=np.float64):
        super().__init__()
        owner = "LayerNorm"
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        integers = isinstance(shape, (tuple, list)) and all(validate.is_number(d) and isinstance(d, (int, np.integer))
                                                            for d in shape)
        if not integers or not shape or min(shape) < 1:
            validate.fail(owner, "normalized_shape", "a positive integer or a non-empty tuple of them",
                          normalized_shape, ValueError if integers else ArgumentTypeError)
        shape = tuple(int(d) for d in shape)
        eps = validate.number(owner, "eps", eps, low=0)
        elementwise_affine = validate.flag(owner, "elementwise_affine", elementwise_affine)
        bias = validate.flag(owner, "bias", bias)
        dtype = validate.float_dtype(owner, "dtype", dtype)
        object.__setattr__(self, "_dtype", dtype)
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype)) if elementwise_affine and bias else None
        self.last_xhat = None          # x̂, for dx and dW
        self.last_inv_std = None       # 1/σ per sample (trailing axes kept as 1), for dx

    def _axes(self, x):
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            raise LayerValueError(self, f"x: expected shape (*, {', '.join(map(str, self.normalized_shape))}), "
                                        f"got {x.shape}")
        return tuple(range(x.ndim - k, x.ndim))

    def forward(self, x):
        """x̂ = (x − μ) / σ over the trailing axes,  y = γ x̂ + β; caches x̂ and 1/σ."""
        axes = self._axes(x)
        centered = x - x.mean(axis=axes, keepdims=True)
        var = (centered * centered).mean(axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = centered * inv_std
        self.last_xhat, self.last_inv_std = xhat, inv_std
        y = xhat if self.weight is None else xhat * self.weight.data
        return y if self.bias is None else y + self.bias.data

    def backward(self, dy):
        """dγ = Σ dy ⊙ x̂,  dβ = Σ dy (over the leading axes),  ĝ = dy γ,
        dx = (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ, means over the normalized axes."""
        xhat = self.last_xhat
        self._need_cache(xhat, dy)
        k = len(self.normalized_shape)
        lead, axes = tuple(range(xhat.ndim - k)), tuple(range(xhat.ndim - k, xhat.ndim))
        if self.weight is not None:
            self.weight.accumulate((dy * xhat).sum(axis=lead))
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=lead))
        g_hat = dy if self.weight is None else dy * self.weight.data
        return normalized_backward(g_hat, xhat, self.last_inv_std, axes)

    def row_wise(self, x):
        """Each sample is normalized over its own trailing axes, unless x is a single sample of
        the normalized shape."""
        if x.ndim == 1 or len(self.normalized_shape) < x.ndim:
            return None
        return f"it normalizes over all of x's axes (shape {x.shape}), across the batch"

    def config_args(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias is not None or not self.elementwise_affine}

    @classmethod
    def state_shapes(cls, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        """weight and bias of shape normalized_shape with elementwise_affine; see ``Module.state_shapes``."""
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if elementwise_affine:
            yield "weight", shape
            if bias:
                yield "bias", shape

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, the statistics of each sample over each group of
    C/G channels (and all their positions): torch's GroupNorm. Unlike BatchNorm, nothing mixes the
    samples of a batch, and training and eval compute the same thing.

    x is viewed as ``(N, G, C/G · spatial)`` and normalised over its last axis (biased variance),
    so the backward is the normalisation's (the module docstring) over that axis; γ and β are per
    channel.

    Args:
        num_groups: G, which must divide num_channels. num_channels: C.
        eps: added to the variance, ≥ 0 (default 1e-5).
        affine: learn γ (``weight``, ones) and β (``bias``, zeros), shape (C,).
        bias: with affine, whether to learn β (torch's keyword).
        dtype: dtype of the parameters (float64 by default).

    Shape:
        x and y: ``(N, C, *)``.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, bias=True, dtype=np.float64):
        super().__init__()
        owner = "GroupNorm"
        num_groups = validate.integer(owner, "num_groups", num_groups, low=1)
        num_channels = validate.integer(owner, "num_channels", num_channels, low=1)
        if num_channels % num_groups:
            validate.fail(owner, "num_channels", f"a multiple of num_groups={num_groups}", num_channels)
        eps = validate.number(owner, "eps", eps, low=0)
        affine, bias = validate.flag(owner, "affine", affine), validate.flag(owner, "bias", bias)
        dtype = validate.float_dtype(owner, "dtype", dtype)
        object.__setattr__(self, "_dtype", dtype)
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine and bias else None
        self.last_xhat = None          # x̂ (N, G, C/G · spatial), for dx and dW
        self.last_inv_std = None       # 1/σ per sample and group (N, G, 1), for dx
        self.last_shape = None         # x's shape

    def _grouped(self, a):
        return a.reshape(a.shape[0], self.num_groups, -1)

    def _per_channel(self, v, x):
        """A per-channel vector shaped to broadcast against x ``(N, C, *)``."""
        return v.reshape(v.shape + (1,) * (x.ndim - 2))

    def forward(self, x):
        """x̂ = (x − μ) / σ per sample and group,  y = γ x̂ + β per channel; caches x̂ and 1/σ."""
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise LayerValueError(self, f"x: expected shape (N, {self.num_channels}, *), got {x.shape}")
        if x.shape[0] == 0:
            raise LayerValueError(self, f"x: expected at least one sample, got shape {x.shape}")
        g = self._grouped(x)
        centered = g - g.mean(axis=2, keepdims=True)
        inv_std = 1.0 / np.sqrt((centered * centered).mean(axis=2, keepdims=True) + self.eps)
        xhat = centered * inv_std
        self.last_xhat, self.last_inv_std, self.last_shape = xhat, inv_std, x.shape
        y = xhat.reshape(x.shape)
        if self.weight is not None:
            y = y * self._per_channel(self.weight.data, x)
        return y if self.bias is None else y + self._per_channel(self.bias.data, x)

    def backward(self, dy):
        """dγ = Σ dy ⊙ x̂,  dβ = Σ dy (over N and the positions),  ĝ = dy γ,
        dx = (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ, the means over each sample's group.
        Shapes: dy and dx (N, C, *); x̂ and ĝ viewed as (N, G, C/G · spatial); σ (N, G, 1)."""
        xhat = self.last_xhat
        self._need_cache(xhat, dy, self.last_shape)
        axes = (0,) + tuple(range(2, dy.ndim))
        if self.weight is not None:
            self.weight.accumulate((dy * xhat.reshape(dy.shape)).sum(axis=axes))
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=axes))
        g_hat = dy if self.weight is None else dy * self._per_channel(self.weight.data, dy)
        return normalized_backward(self._grouped(g_hat), xhat, self.last_inv_std, (2,)).reshape(dy.shape)

    def row_wise(self, x):
        """Each sample is normalised alone."""
        return None

    def config_args(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine, "bias": self.bias is not None or not self.affine}

    @classmethod
    def state_shapes(cls, num_groups, num_channels, eps=1e-5, affine=True, bias=True):
        """weight and bias (num_channels,) with affine; see ``Module.state_shapes``."""
        if affine:
            yield "weight", (num_channels,)
            if bias:
                yield "bias", (num_channels,)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
