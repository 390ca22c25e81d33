"""Torch twins of the layers and optimizers beyond the engine's: BatchNorm1d, LayerNorm, Dropout,
GELU; Adam, AdamW, RMSprop, Adagrad. Loaded by ``mirror`` on first use."""
import handbp as hb

from ._torch import require_torch
from .mirror import MirrorError, register, register_optimizer, torch_dtype

torch = require_torch()
nn = torch.nn


def _batchnorm(m, _):
    if m.affine and m.bias is None:
        raise MirrorError("cannot mirror BatchNorm1d(bias=False): torch.nn.BatchNorm1d always has a bias "
                          "when affine")
    return nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats, dtype=torch_dtype(m.dtype))


def _layernorm(m, _):
    return nn.LayerNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                        bias=m.bias is not None, dtype=torch_dtype(m.dtype))


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


register(hb.BatchNorm1d, _batchnorm)
register(hb.LayerNorm, _layernorm)
register(hb.GELU, lambda m, _: nn.GELU(approximate=m.approximate))
register(hb.Dropout, lambda m, _: MaskedDropout(m))


def _optimizer(torch_class):
    def build(opt, groups):
        return torch_class(groups, lr=opt.defaults["lr"])
    return build


register_optimizer(hb.optim.Adam, _optimizer(torch.optim.Adam))
register_optimizer(hb.optim.AdamW, _optimizer(torch.optim.AdamW))
register_optimizer(hb.optim.RMSprop, _optimizer(torch.optim.RMSprop))
register_optimizer(hb.optim.Adagrad, _optimizer(torch.optim.Adagrad))
