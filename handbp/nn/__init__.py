"""Where torch keeps helpers under ``torch.nn``: ``hb.nn.utils.clip_grad_norm_`` and friends."""
from . import utils  # noqa: F401
