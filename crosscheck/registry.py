"""What crosscheck knows about each handbp class, in one place: one ``register`` call per layer or
loss, keyed by the handbp class.

An entry holds how to build the class's torch twin (``to_torch``) and, for a module that subtracts
inside, its rounding terms (``terms``: the magnitudes summed into each element of a gradient, which
bound how far two correct implementations may differ where the gradient cancels; see
``crosscheck.recheck``). The built-in layers and losses register themselves the same way in
``crosscheck.twins``; a student's or a library's layer joins with the same call::

    @crosscheck.register(MyLayer)
    def my_layer_twin(module, child):
        return torch.nn.Linear(module.in_features, module.out_features, dtype=torch.float64)

A subclass of a registered class uses its parent's entry, so a student's ``Linear`` subclass with a
hand-written backward is checked against ``torch.nn.Linear``.
"""
import inspect
from dataclasses import dataclass

_ENTRIES = {}        # handbp Module or Loss class -> Entry
_OPTIMIZERS = {}     # handbp Optimizer class -> fn(hb_optimizer, torch_param_groups) -> torch optimizer
_loaded = []


@dataclass
class Entry:
    """What crosscheck knows about one handbp class.

    ``to_torch(obj, child)`` returns the torch twin of ``obj`` (a ``torch.nn.Module`` with the same
    structure and dtype whose ``state_dict`` keys equal the handbp module's; weights are copied
    afterwards). ``child(module, name)`` builds the twin of a child module (containers use it;
    leaves and losses ignore it). ``terms(module, x, dy, params, what)`` (optional) returns, for
    the recheck, the magnitudes summed into each element of the input gradient (``what`` is
    ``"grad_input"``) or of a parameter's gradient (``what`` is its local name), from handbp's
    input ``x``, the absolute upstream gradient ``dy`` (both float64) and the parameters before the
    step; None where it has no written-out terms for ``what``."""

    hb_class: type
    to_torch: object
    terms: object = None


def _takes_two(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):      # a builtin or a C callable: nothing to check
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True


def register(hb_class, to_torch=None, *, terms=None):
    """Register the torch twin of a handbp Module or Loss subclass (and, optionally, its rounding
    terms). ``to_torch(obj, child)``: one signature for layers and losses; see ``Entry``. Also a
    decorator: ``@crosscheck.register(MyLayer)``. Returns ``to_torch``."""
    import handbp as hb
    if not (isinstance(hb_class, type) and issubclass(hb_class, hb.Module)):
        raise TypeError(f"register: hb_class: expected a handbp Module or Loss subclass, got {hb_class!r}")
    if terms is not None and not callable(terms):
        raise TypeError(f"register: terms: expected a callable or None, got {terms!r}")
    _load_builtins()

    def deco(fn):
        if not callable(fn):
            raise TypeError(f"register: to_torch: expected a callable, got {fn!r}")
        if not _takes_two(fn):
            raise TypeError(f"register: to_torch: expected a function of (module, child) — one signature for "
                            f"layers and losses; write it as `lambda module, child: ...`, got {fn!r}")
        _ENTRIES[hb_class] = Entry(hb_class, fn, terms)
        return fn

    return deco if to_torch is None else deco(to_torch)


def register_optimizer(hb_class, to_torch):
    """Register ``to_torch(hb_optimizer, param_groups) -> torch.optim.Optimizer``, where
    ``param_groups`` are torch-style dicts already holding the twin's parameters."""
    import handbp as hb
    if not (isinstance(hb_class, type) and issubclass(hb_class, hb.optim.Optimizer)):
        raise TypeError(f"register_optimizer: hb_class: expected a handbp Optimizer subclass, got {hb_class!r}")
    if not callable(to_torch):
        raise TypeError(f"register_optimizer: to_torch: expected a callable, got {to_torch!r}")
    _load_builtins()
    _OPTIMIZERS[hb_class] = to_torch
    return to_torch


def _first_in_mro(table, cls):
    for c in cls.__mro__:
        if c in table:
            return table[c]
    return None


def entry(obj_or_class):
    """The ``Entry`` of a handbp module or loss (or class), through its base classes; None if none."""
    _load_builtins()
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return _first_in_mro(_ENTRIES, cls)


def optimizer_twin(obj_or_class):
    """The registered twin builder of a handbp optimizer (or class), through its base classes."""
    _load_builtins()
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return _first_in_mro(_OPTIMIZERS, cls)


def registered():
    """Every registered handbp Module and Loss class (built-ins included)."""
    _load_builtins()
    return list(_ENTRIES)


def _load_builtins():
    """The built-in entries (``crosscheck.twins``), registered on first use: they need torch."""
    if not _loaded:
        _loaded.append(True)         # (set first: the built-ins call register while they load)
        try:
            from . import twins  # noqa: F401  (registers on import)
        except BaseException:
            _loaded.clear()
            raise
