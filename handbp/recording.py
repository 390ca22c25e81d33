"""Looking inside a step: the leaf modules of a model, and a recorder of what each one computed.

Used by ``explain`` and by crosscheck's lockstep, so that both see the user's model run its own
code (the recorder wraps each leaf's ``forward`` and ``backward`` for the duration of a ``with``
block, and records inputs, outputs, upstream gradients and returned gradients)."""
import numpy as np

from . import structure
from .module import Sequential


def leaves(model, prefix=""):
    """``(path, module)`` for each leaf: Sequentials are opened, anything else (a layer, a custom
    module) is a leaf. Paths are those of ``named_modules`` (``"0"``, ``"2.1"``; ``""`` for a model
    that is itself a leaf)."""
    if isinstance(model, Sequential):
        out = []
        for name, child in model._modules.items():
            out += leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix, model)]


def _copy(a):
    """A copy of an array, or of each array of a tuple (a module with several outputs)."""
    if type(a) is np.ndarray:
        return a.copy()
    return structure.copy(a) if type(a) is tuple else np.array(a, copy=True)


class Recorder:
    """``with Recorder(leaves(model)) as rec:`` records, per leaf path, ``inputs``, ``outputs``,
    ``upstream`` (the dy given to backward) and ``grad_inputs`` (the dx it returned), as copies;
    ``keep`` names the ones to record."""

    def __init__(self, leaf_list, keep=("inputs", "outputs", "upstream", "grad_inputs")):
        self.leaves = list(leaf_list)
        self.keep = frozenset(keep)
        self.paths = [p for p, _ in self.leaves]
        self.inputs, self.outputs, self.upstream, self.grad_inputs = {}, {}, {}, {}

    def __enter__(self):
        for path, m in self.leaves:
            fwd, bwd = m.forward, m.backward

            def forward(x, _f=fwd, _p=path, _in="inputs" in self.keep, _out="outputs" in self.keep):
                if _in:
                    self.inputs[_p] = _copy(x)
                y = _f(x)
                if _out:
                    self.outputs[_p] = _copy(y)
                return y

            def backward(dy, _b=bwd, _p=path, _up="upstream" in self.keep, _gi="grad_inputs" in self.keep):
                if _up:
                    self.upstream[_p] = _copy(dy)
                dx = _b(dy)
                if _gi:
                    self.grad_inputs[_p] = None if dx is None else _copy(dx)
                return dx

            object.__setattr__(m, "forward", forward)
            object.__setattr__(m, "backward", backward)
        return self

    def __exit__(self, *exc):
        for _, m in self.leaves:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("backward", None)
