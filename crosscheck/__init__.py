"""crosscheck: build the PyTorch twin of a handbp network and prove every training step matches.

``mirror`` builds twins, ``lockstep`` runs and compares them step by step, ``Divergence`` is the
report of the first mismatch. torch is imported only when a twin is built, so importing this
package (and its pytest plugin) works without torch.

The names below are loaded at first use (PEP 562): the pytest plugin, which imports this package
in every pytest run of an environment where handbp is installed, must not bring in handbp and
NumPy for a project that never cross-checks anything.
"""
import importlib
import sys
import types

# public name -> the submodule that defines it
_EXPORTS = {
    "mirror": "mirror", "MirrorError": "mirror", "register": "registry", "register_optimizer": "registry",
    "lockstep": "lockstep", "leaves": "lockstep", "Trace": "trace", "explain": "explain",
    "Divergence": "report", "NonFiniteError": "report", "Tolerance": "tolerance", "default_tolerance": "tolerance",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value          # found directly from now on
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Importing a submodule sets the package's attribute of that name to it. Three submodules share
    their name with the function they define (``crosscheck.lockstep``, ``crosscheck.mirror``,
    ``crosscheck.explain``): for those, the package's name stays the function, as it was when the
    package imported them eagerly."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and name in _EXPORTS:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
