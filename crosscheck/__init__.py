"""crosscheck: build the PyTorch twin of a handbp network and prove every training step matches.

``mirror`` builds twins, ``lockstep`` runs and compares them step by step, ``Divergence`` is the
report of the first mismatch. torch is imported only when a twin is built, so importing this
package (and its pytest plugin) works without torch.
"""
from .compare import Divergence, Tolerance, default_tolerance
from .lockstep import NonFiniteError, Trace, leaves, lockstep
from .mirror import MirrorError, mirror, register, register_optimizer

__all__ = ["mirror", "lockstep", "Divergence", "Trace", "Tolerance", "default_tolerance",
           "register", "register_optimizer", "MirrorError", "NonFiniteError", "leaves"]
