"""The built-in entries of the registry: for each handbp layer, loss and optimizer, its torch twin,
and for the modules that subtract inside, their rounding terms. One ``register`` call per class,
the same call a custom layer uses (``crosscheck.registry``).

Rounding terms (``terms=``): where a gradient is a difference of large numbers (behind a saturated
activation, or a normalisation), two correct implementations may differ by the rounding of the
terms summed into it. For most modules the recheck bounds that by rerunning torch's module on
absolute values (|x|, |W|, |dy|); for a module that subtracts inside, that bounds nothing, so its
terms are written out here. Each takes the handbp module, handbp's input ``x`` and the absolute
upstream gradient ``dy`` (float64), the module's parameters before the step (by local name) and
what is rechecked (``"grad_input"`` or a parameter's local name); None falls back to the
absolute-value run.
"""
import inspect
from collections import OrderedDict

import numpy as np

import handbp as hb

from ._torch import require_torch
from .mirror import MirrorError, torch_dtype
from .registry import register, register_optimizer

torch = require_torch()
nn = torch.nn


# -- rounding terms ---------------------------------------------------------------------------
def softmax_terms(m, x, dy, params, what):
    """dx = y ⊙ (dy − Σ dy ⊙ y): its terms are y ⊙ (|dy| + Σ |dy| ⊙ y)."""
    if what != "grad_input":
        return None
    z = x - x.max(axis=m.dim, keepdims=True)
    y = np.exp(z) / np.exp(z).sum(axis=m.dim, keepdims=True)
    return y * (dy + (dy * y).sum(axis=m.dim, keepdims=True))


def tanh_terms(m, x, dy, params, what):
    """dx = dy ⊙ (1 − y²) subtracts: its terms are |dy| ⊙ (1 + y²). Near saturation the result is
    all rounding of y (one unit in the last place of y = 0.9999994 moves 1 − y² by 10%)."""
    y = np.tanh(x)
    return dy * (1 + y * y) if what == "grad_input" else None


def sigmoid_terms(m, x, dy, params, what):
    """dx = dy ⊙ y(1 − y) = dy ⊙ (y − y²): its terms are |dy| ⊙ y(1 + y)."""
    y = 0.5 * (1 + np.tanh(0.5 * x))         # σ(x), without overflow
    return dy * y * (1 + y) if what == "grad_input" else None


def normalization_terms(x, dy, axes, mu, sigma, batch_stats, weight, what, reduce_axes):
    """x̂ = (x − μ)/σ, normalised over ``axes``. With a = (|x| + |μ|)/σ, which bounds |x̂| and
    carries the rounding of x − μ when |x| is far above σ, and g = γ ⊙ dy:

    * input gradient, batch statistics: dx = (1/σ)(g − mean g − x̂ · mean(g · x̂)); terms
      (1/σ)(|g| + mean |g| + a · mean(|g| · a)); running statistics: dx = g/σ, terms |g|/σ;
    * weight gradient: dγ = Σ dy · x̂ over ``reduce_axes``; terms Σ |dy| · a.
    """
    a = (np.abs(x) + np.abs(mu)) / sigma
    if what == "weight":
        return (dy * a).sum(axis=reduce_axes)
    if what != "grad_input":
        return None
    g = dy if weight is None else dy * np.abs(weight)
    if not batch_stats:
        return g / sigma
    return (g + g.mean(axis=axes, keepdims=True) + a * (g * a).mean(axis=axes, keepdims=True)) / sigma


def layer_norm_terms(m, x, dy, params, what):
    axes = tuple(range(x.ndim - len(m.normalized_shape), x.ndim))
    mu, sigma = x.mean(axis=axes, keepdims=True), np.sqrt(x.var(axis=axes, keepdims=True) + m.eps)
    return normalization_terms(x, dy, axes, mu, sigma, True, params.get("weight"), what,
                               tuple(range(x.ndim - len(m.normalized_shape))))


def batch_norm_terms(m, x, dy, params, what):
    axes = (0,) + tuple(range(2, x.ndim))           # all but the channels: (0,), (0, 2), (0, 2, 3)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    batch_stats = m.training or not m.track_running_stats
    if batch_stats:
        mu, sigma = x.mean(axis=axes, keepdims=True), np.sqrt(x.var(axis=axes, keepdims=True) + m.eps)
    else:
        mu = np.asarray(m.running_mean, np.float64).reshape(shape)
        sigma = np.sqrt(np.asarray(m.running_var, np.float64).reshape(shape) + m.eps)
    weight = params.get("weight")
    return normalization_terms(x, dy, axes, mu, sigma, batch_stats,
                               None if weight is None else weight.reshape(shape[1:]), what, axes)


# -- layers -----------------------------------------------------------------------------------
def _sequential(m, child):
    return nn.Sequential(OrderedDict((name, child(c, name)) for name, c in m._modules.items()))


def _batchnorm(m, child):
    if m.affine and m.bias is None:
        raise MirrorError("cannot mirror BatchNorm1d(bias=False): torch.nn.BatchNorm1d always has a bias "
                          "when affine")
    return nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats, dtype=torch_dtype(m.dtype))


class MaskedDropout(nn.Module):
    """Dropout whose keep-mask is the one its handbp twin just drew (``last_mask``), so both sides
    drop the same elements: y = x ⊙ mask · 1/(1 − p) in training, y = x in eval."""

    def __init__(self, source):
        super().__init__()
        self.source, self.p = source, source.p

    def forward(self, x):
        if not self.training:
            return x
        mask = self.source.last_mask
        if mask is None or tuple(mask.shape) != tuple(x.shape):
            raise RuntimeError("MaskedDropout: the handbp Dropout has not drawn a mask for this input yet; "
                               "run its forward first (lockstep does)")
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        return x * (torch.from_numpy(mask).to(x.dtype) * scale)

    def extra_repr(self):
        return f"p={self.p}, mask from handbp"


register(hb.Sequential, _sequential)
register(hb.Linear, lambda m, child: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                                               dtype=torch_dtype(m.dtype)))
register(hb.Sigmoid, lambda m, child: nn.Sigmoid(), terms=sigmoid_terms)
register(hb.Tanh, lambda m, child: nn.Tanh(), terms=tanh_terms)
register(hb.ReLU, lambda m, child: nn.ReLU())
register(hb.LeakyReLU, lambda m, child: nn.LeakyReLU(m.negative_slope))
register(hb.Identity, lambda m, child: nn.Identity())
register(hb.Softmax, lambda m, child: nn.Softmax(dim=m.dim), terms=softmax_terms)
register(hb.GELU, lambda m, child: nn.GELU(approximate=m.approximate))
register(hb.ELU, lambda m, child: nn.ELU(alpha=m.alpha))
register(hb.SiLU, lambda m, child: nn.SiLU())
register(hb.Softplus, lambda m, child: nn.Softplus(beta=m.beta, threshold=m.threshold))
register(hb.Hardtanh, lambda m, child: nn.Hardtanh(m.min_val, m.max_val))
register(hb.Dropout, lambda m, child: MaskedDropout(m))
register(hb.BatchNorm1d, _batchnorm, terms=batch_norm_terms)
register(hb.LayerNorm, lambda m, child: nn.LayerNorm(m.normalized_shape, eps=m.eps,
                                                      elementwise_affine=m.elementwise_affine,
                                                      bias=m.bias is not None, dtype=torch_dtype(m.dtype)),
         terms=layer_norm_terms)


# -- losses -----------------------------------------------------------------------------------
class HalfMeanSquaredError(nn.Module):
    """The notebook's loss in torch: ½ · mean((h − y)²)."""

    def forward(self, h, y):
        return 0.5 * torch.mean((h - y) ** 2)


register(hb.MeanSquaredError, lambda loss, child: HalfMeanSquaredError())
register(hb.MSELoss, lambda loss, child: nn.MSELoss(reduction=loss.reduction))
register(hb.CrossEntropyLoss, lambda loss, child: nn.CrossEntropyLoss(reduction=loss.reduction))
register(hb.BCEWithLogitsLoss, lambda loss, child: nn.BCEWithLogitsLoss(reduction=loss.reduction))


# -- optimizers -------------------------------------------------------------------------------
_EAGER = {}


def eager(torch_class):
    """``torch_class`` (a ``torch.optim`` optimizer) with its compile-mode wrappers taken off.

    torch.optim wraps its methods for torch.compile: ``step`` sets grad mode and marks graph breaks,
    ``add_param_group`` and ``zero_grad`` are excluded from tracing, and each imports
    ``torch._dynamo`` at its first call, which takes longer than importing torch itself (sympy,
    the inductor's configuration, ...), in every process that cross-checks one step. The subclass
    runs the same functions unwrapped, as eager mode runs them (``step`` with grad mode set to the
    ``differentiable`` default, as its wrapper sets it), so its updates are torch's to the bit;
    under torch.compile, use the torch class itself."""
    sub = _EAGER.get(torch_class)
    if sub is None:
        base = torch.optim.Optimizer
        raw_step = getattr(torch_class.step, "__wrapped__", None)
        raw = {"add_param_group": getattr(base.add_param_group, "__wrapped__", None),
               "zero_grad": getattr(base.zero_grad, "__wrapped__", None)}
        if raw_step is None or None in raw.values():      # another torch: keep its class as it is
            return torch_class

        def step(self, closure=None):
            with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
                return raw_step(self, closure)

        sub = _EAGER[torch_class] = type(torch_class.__name__, (torch_class,),
                                         {"step": step, **raw, "__module__": __name__,
                                          "__doc__": f"torch.optim.{torch_class.__name__}, run eagerly "
                                                     "(see crosscheck.twins.eager)"})
    return sub


def _defaults(opt, torch_class):
    """handbp's constructor arguments (``opt.defaults``) that ``torch_class``'s constructor takes:
    torch reads some of them from its own defaults after construction, not from a param group
    (Adagrad fills the ``sum`` of a parameter added later with ``defaults["initial_accumulator_value"]``)."""
    accepted = inspect.signature(torch_class.__init__).parameters
    return {k: v for k, v in opt.defaults.items() if k in accepted and k != "params"}


def _sgd(opt, groups):
    keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    return eager(torch.optim.SGD)([{**{k: g[k] for k in keys}, "params": g["params"]} for g in groups],
                                  **_defaults(opt, torch.optim.SGD))


def _same_groups(torch_class):
    def build(opt, groups):
        return eager(torch_class)(groups, **_defaults(opt, torch_class))
    return build


register_optimizer(hb.optim.SGD, _sgd)
register_optimizer(hb.optim.Adam, _same_groups(torch.optim.Adam))
register_optimizer(hb.optim.AdamW, _same_groups(torch.optim.AdamW))
register_optimizer(hb.optim.RMSprop, _same_groups(torch.optim.RMSprop))
register_optimizer(hb.optim.Adagrad, _same_groups(torch.optim.Adagrad))


# -- recurrent networks: several inputs and outputs -------------------------------------------------
class SelectOutput(nn.Module):
    """``output[index]``: the small module torch users write to put an LSTM in an nn.Sequential."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]

    def extra_repr(self):
        return f"index={self.index}"


class _PackedArguments:
    """torch's recurrent module, also callable with its arguments packed into one tuple, as a
    handbp Sequential passes ``(x, hx)`` on. Its forward is torch's own."""

    def forward(self, input, hx=None):
        if isinstance(input, tuple) and hx is None:
            input, hx = input
        return super().forward(input, hx)


class _MaskedLayers:
    """torch's RNN, LSTM or GRU, whose dropout between layers uses the masks its handbp twin just
    drew (``last_masks``): in training with dropout, layer by layer through torch's own kernel
    (``torch._VF``, one layer at a time), each layer's output times handbp's mask / (1 − p); else
    torch's forward unchanged."""

    def forward(self, input, hx=None):
        if isinstance(input, tuple) and hx is None:
            input, hx = input
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return super().forward(input, hx)
        return self._layer_by_layer(input, hx)

    def _layer_by_layer(self, x, hx):
        masks = self._crosscheck_source.last_masks
        lstm = isinstance(self, nn.LSTM)
        batched = x.dim() == 3
        if not batched:
            x = x.unsqueeze(1)
            hx = None if hx is None else (tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1))
        elif self.batch_first:
            x = x.transpose(0, 1)
        D = 2 if self.bidirectional else 1
        if hx is None:
            zeros = torch.zeros(self.num_layers * D, x.shape[1], self.hidden_size, dtype=x.dtype)
            hx = (zeros, zeros) if lstm else zeros
        run = {"LSTM": torch._VF.lstm, "GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh,
               "RNN_RELU": torch._VF.rnn_relu}[self.mode]
        finals = []
        for layer in range(self.num_layers):
            names = sum(self._all_weights[layer * D:(layer + 1) * D], [])
            weights = [getattr(self, n) for n in names]
            part = slice(layer * D, (layer + 1) * D)
            state = (hx[0][part], hx[1][part]) if lstm else hx[part]
            out = run(x, state, weights, self.bias, 1, 0.0, self.training, self.bidirectional, False)
            x, finals = out[0], finals + [out[1:]]
            mask = masks[layer]
            if mask is not None:
                x = x * (torch.from_numpy(mask[0]).to(x.dtype) * mask[1])
        hidden = tuple(torch.cat([f[j] for f in finals]) for j in range(len(finals[0])))
        if not batched:
            x, hidden = x.squeeze(1), tuple(h.squeeze(1) for h in hidden)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, (hidden if lstm else hidden[0])


def _recurrent_twin(torch_class):
    twin_class = type(torch_class.__name__, (_MaskedLayers, torch_class), {
        "__doc__": f"torch.nn.{torch_class.__name__}, callable with (x, hx) packed, with handbp's dropout masks"})

    def build(m, child):
        kwargs = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first, dropout=m.dropout,
                      bidirectional=m.bidirectional, dtype=torch_dtype(m.dtype))
        if torch_class is nn.RNN:
            kwargs["nonlinearity"] = m.nonlinearity
        twin = twin_class(m.input_size, m.hidden_size, **kwargs)
        twin._crosscheck_source = m
        return twin
    return build


def _cell_twin(torch_class):
    twin_class = type(torch_class.__name__, (_PackedArguments, torch_class), {
        "__doc__": f"torch.nn.{torch_class.__name__}, callable with (x, hx) packed"})

    def build(m, child):
        extra = {"nonlinearity": m.nonlinearity} if torch_class is nn.RNNCell else {}
        return twin_class(m.input_size, m.hidden_size, bias=m.bias, dtype=torch_dtype(m.dtype), **extra)
    return build


register(hb.Embedding, lambda m, child: nn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx,
                                                     dtype=torch_dtype(m.dtype)))
register(hb.SelectOutput, lambda m, child: SelectOutput(m.index))
register(hb.RNN, _recurrent_twin(nn.RNN))
register(hb.LSTM, _recurrent_twin(nn.LSTM))
register(hb.GRU, _recurrent_twin(nn.GRU))
register(hb.RNNCell, _cell_twin(nn.RNNCell))
register(hb.LSTMCell, _cell_twin(nn.LSTMCell))
register(hb.GRUCell, _cell_twin(nn.GRUCell))


# -- convolutional networks -------------------------------------------------------------------
def group_norm_terms(m, x, dy, params, what):
    """GroupNorm normalises each sample's group of channels, x viewed as (N, G, C/G · spatial):
    the normalisation's terms (``normalization_terms``) over that view's last axis; γ per channel."""
    xg = x.reshape(x.shape[0], m.num_groups, -1)
    mu, sigma = xg.mean(axis=2, keepdims=True), np.sqrt(xg.var(axis=2, keepdims=True) + m.eps)
    if what == "weight":
        a = ((np.abs(xg) + np.abs(mu)) / sigma).reshape(x.shape)
        return (dy * a).sum(axis=(0,) + tuple(range(2, x.ndim)))
    if what != "grad_input":
        return None
    weight = params.get("weight")
    g = dy if weight is None else dy * np.abs(weight).reshape((-1,) + (1,) * (x.ndim - 2))
    return normalization_terms(xg, g.reshape(xg.shape), (2,), mu, sigma, True, None, what, None).reshape(x.shape)


def _conv(torch_class):
    def build(m, child):
        return torch_class(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                           dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                           padding_mode=m.padding_mode, dtype=torch_dtype(m.dtype))
    return build


class MaskedChannelDropout(MaskedDropout):
    """Dropout2d whose channel mask (``(N, C, 1, 1)``, broadcast over each map) is the one its
    handbp twin just drew."""

    def forward(self, x):
        if not self.training:
            return x
        mask = self.source.last_mask
        if mask is None or mask.shape != tuple(x.shape[:-2]) + (1, 1):
            raise RuntimeError("MaskedChannelDropout: the handbp Dropout2d has not drawn a mask for this input yet; "
                               "run its forward first (lockstep does)")
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        return x * (torch.from_numpy(mask).to(x.dtype) * scale)


class ClassWeightedLoss(nn.Module):
    """A torch loss with class weights (``F.nll_loss``, ``F.multi_margin_loss``), its weights cast to
    the input's dtype at each call, so that one twin serves the float32 model and its float64 reference."""

    def __init__(self, fn, weight, **kwargs):
        super().__init__()
        self.fn, self.weight, self.kwargs = fn, weight, kwargs

    def forward(self, x, target):
        weight = None if self.weight is None else torch.as_tensor(self.weight, dtype=x.dtype)
        return self.fn(x, target, weight=weight, **self.kwargs)


def _scalar(loss, build):
    """A loss twin, refused for ``reduction="none"``: lockstep compares one loss per step."""
    if loss.reduction == "none":
        raise MirrorError(f"cannot mirror {type(loss).__name__}(reduction='none') for a training step: lockstep "
                          "needs one loss per step; use reduction='mean' or 'sum'")
    return build()


register(hb.Conv1d, _conv(nn.Conv1d))
register(hb.Conv2d, _conv(nn.Conv2d))
register(hb.MaxPool1d, lambda m, child: nn.MaxPool1d(m.kernel_size, m.stride, m.padding, m.dilation,
                                                      ceil_mode=m.ceil_mode))
register(hb.MaxPool2d, lambda m, child: nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation,
                                                      ceil_mode=m.ceil_mode))
register(hb.AvgPool2d, lambda m, child: nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode,
                                                      count_include_pad=m.count_include_pad,
                                                      divisor_override=m.divisor_override))
register(hb.AdaptiveAvgPool2d, lambda m, child: nn.AdaptiveAvgPool2d(m.output_size))
register(hb.Flatten, lambda m, child: nn.Flatten(m.start_dim, m.end_dim))
register(hb.BatchNorm2d, lambda m, child: nn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                                                          track_running_stats=m.track_running_stats,
                                                          bias=m.bias is not None or not m.affine,
                                                          dtype=torch_dtype(m.dtype)),
         terms=batch_norm_terms)
register(hb.GroupNorm, lambda m, child: nn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps, affine=m.affine,
                                                      bias=m.bias is not None or not m.affine,
                                                      dtype=torch_dtype(m.dtype)),
         terms=group_norm_terms)
register(hb.Dropout2d, lambda m, child: MaskedChannelDropout(m))
register(hb.L1Loss, lambda loss, child: _scalar(loss, lambda: nn.L1Loss(reduction=loss.reduction)))
register(hb.HuberLoss, lambda loss, child: _scalar(loss, lambda: nn.HuberLoss(reduction=loss.reduction,
                                                                               delta=loss.delta)))
register(hb.SmoothL1Loss, lambda loss, child: _scalar(loss, lambda: nn.SmoothL1Loss(reduction=loss.reduction,
                                                                                     beta=loss.beta)))
register(hb.NLLLoss, lambda loss, child: _scalar(loss, lambda: ClassWeightedLoss(
    torch.nn.functional.nll_loss, loss.weight, ignore_index=loss.ignore_index, reduction=loss.reduction)))
register(hb.MultiMarginLoss, lambda loss, child: _scalar(loss, lambda: ClassWeightedLoss(
    torch.nn.functional.multi_margin_loss, loss.weight, p=loss.p, margin=loss.margin, reduction=loss.reduction)))
