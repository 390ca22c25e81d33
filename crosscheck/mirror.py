"""Build the torch twin of a handbp model, loss or optimizer.

A registry maps each handbp class to a function that builds the torch equivalent (structure and
dtype); the weights are then copied generically through ``state_dict``, whose keys are identical on
both sides. Student or library layers join with ``register(MyLayer, to_torch=...)``.
"""
from collections import OrderedDict

import numpy as np

import handbp as hb

from ._torch import require_torch, to_tensor

_MODULES = OrderedDict()      # handbp Module class -> fn(hb_module, mirror_child) -> torch.nn.Module
_LOSSES = OrderedDict()       # handbp Loss class -> fn(hb_loss) -> torch callable
_OPTIMIZERS = OrderedDict()   # handbp Optimizer class -> fn(hb_opt, torch_param_groups) -> torch optimizer


class MirrorError(TypeError):
    """The model holds something crosscheck has no torch twin for."""


def register(hb_class, to_torch=None):
    """Register the torch twin of a handbp Module subclass.

    ``to_torch(module)`` returns a ``torch.nn.Module`` with the same structure and dtype whose
    ``state_dict`` keys equal the handbp module's (weights are copied afterwards). Also usable as a
    decorator: ``@crosscheck.register(MyLayer)``. A subclass of a registered class uses its
    parent's twin, so a student's ``Linear`` subclass with a hand-written backward is checked
    against ``torch.nn.Linear``.
    """
    if not (isinstance(hb_class, type) and issubclass(hb_class, hb.Module)):
        raise TypeError(f"register: hb_class: expected a handbp Module subclass, got {hb_class!r}")

    _ensure_builtins()

    def deco(fn):
        if not callable(fn):
            raise TypeError(f"register: to_torch: expected a callable, got {fn!r}")
        target = _LOSSES if issubclass(hb_class, hb.Loss) else _MODULES
        target[hb_class] = fn
        return fn

    return deco if to_torch is None else deco(to_torch)


def register_optimizer(hb_class, to_torch):
    """Register ``to_torch(hb_optimizer, param_groups) -> torch.optim.Optimizer``, where
    ``param_groups`` are torch-style dicts already holding the twin's parameters."""
    _OPTIMIZERS[hb_class] = to_torch
    return to_torch


def _lookup(table, obj):
    for cls in type(obj).__mro__:
        if cls in table:
            return table[cls]
    return None


SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def torch_dtype(np_dtype):
    """torch's dtype for a model's NumPy dtype (float64 or float32; a MirrorError otherwise)."""
    torch = require_torch()
    np_dtype = np.dtype(np_dtype)
    if np_dtype not in SUPPORTED_DTYPES:
        raise MirrorError(f"cannot mirror dtype {np_dtype}: crosscheck supports float64 and float32 models "
                          "(convert with model.to(np.float32))")
    return torch.float64 if np_dtype == np.float64 else torch.float32


def _build(module, path=""):
    fn = _lookup(_MODULES, module)
    if fn is None:
        where = f"module '{path}' " if path else "the model "
        raise MirrorError(f"cannot mirror {where}({type(module).__name__}): no torch twin is registered for it; "
                          f"register one with crosscheck.register({type(module).__name__}, to_torch=...)")
    return fn(module, lambda child, name: _build(child, f"{path}.{name}" if path else str(name)))


def mirror_module(model):
    """The torch twin of a handbp module: same structure, same dtype, copies of the same weights."""
    torch = require_torch()
    twin = _build(model)
    twin.to(torch_dtype(model.dtype))
    ours, theirs = list(model.state_dict()), list(twin.state_dict())
    if ours != theirs:
        raise MirrorError(f"the torch twin of {type(model).__name__} has state_dict keys {theirs}, "
                          f"handbp's are {ours}; the registered to_torch must build the same structure")
    load_into_twin(model, twin)
    twin.train(model.training)
    twin._crosscheck_source = model
    return twin


def load_into_twin(model, twin, state=None):
    """Copy every parameter and buffer of ``model`` into ``twin`` (same keys), in place.
    ``state``: the twin's ``state_dict(keep_vars=True)``, when the caller keeps it."""
    torch = require_torch()
    state = twin.state_dict(keep_vars=True) if state is None else state
    with torch.no_grad():
        for name, p in model.named_parameters():
            _copy_into(state[name], p.data)
        for name, b in model.named_buffers():
            _copy_into(state[name], b)


def _copy_into(tensor, value):
    if tensor.dtype in (require_torch().float64, require_torch().float32):
        tensor.detach().numpy()[...] = value          # a view: no new tensor
    else:
        tensor.copy_(require_torch().as_tensor(np.asarray(value), dtype=tensor.dtype))


# -- built-in twins -------------------------------------------------------------------------
def _builtin_modules():
    torch = require_torch()
    nn = torch.nn

    def sequential(m, child):
        return nn.Sequential(OrderedDict((name, child(c, name)) for name, c in m._modules.items()))

    register(hb.Sequential, sequential)
    register(hb.Linear, lambda m, _: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                                               dtype=torch_dtype(m.dtype)))
    register(hb.Sigmoid, lambda m, _: nn.Sigmoid())
    register(hb.Tanh, lambda m, _: nn.Tanh())
    register(hb.ReLU, lambda m, _: nn.ReLU())
    register(hb.LeakyReLU, lambda m, _: nn.LeakyReLU(m.negative_slope))
    register(hb.Identity, lambda m, _: nn.Identity())
    register(hb.Softmax, lambda m, _: nn.Softmax(dim=m.dim))

    class HalfMeanSquaredError(nn.Module):
        """The notebook's loss in torch: ½ · mean((h − y)²)."""

        def forward(self, h, y):
            return 0.5 * torch.mean((h - y) ** 2)

    register(hb.MeanSquaredError, lambda l: HalfMeanSquaredError())
    register(hb.MSELoss, lambda l: nn.MSELoss(reduction=l.reduction))
    register(hb.CrossEntropyLoss, lambda l: nn.CrossEntropyLoss(reduction=l.reduction))
    register(hb.BCEWithLogitsLoss, lambda l: nn.BCEWithLogitsLoss(reduction=l.reduction))

    def sgd(opt, groups):
        keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
        return torch.optim.SGD([{**{k: g[k] for k in keys}, "params": g["params"]} for g in groups],
                               lr=opt.defaults["lr"])

    register_optimizer(hb.optim.SGD, sgd)


_ready = False


def _ensure_builtins():
    global _ready
    if not _ready:
        _ready = True
        _builtin_modules()
        try:
            from . import mirror_extra  # twins of the optimizers and layers beyond the engine's
        except ImportError:
            pass


# -- optimizers -----------------------------------------------------------------------------
def twin_param_map(optimizer, twin):
    """For each handbp Parameter in ``optimizer``, the twin's parameter of the same name."""
    source = getattr(twin, "_crosscheck_source", None)
    if source is None:
        raise MirrorError("mirror(optimizer, torch_model): torch_model must come from crosscheck.mirror(model)")
    names = {id(p): n for n, p in source.named_parameters()}
    theirs = dict(twin.named_parameters())
    mapping = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            if id(p) not in names:
                raise MirrorError("mirror(optimizer, torch_model): the optimizer holds a parameter that is not "
                                  "in the model torch_model mirrors")
            mapping[p] = theirs[names[id(p)]]
    return mapping


def state_to_torch(key, value, like):
    """One optimizer state entry in torch's form: arrays as tensors of the parameter's dtype,
    ``step`` as torch's scalar tensor."""
    torch = require_torch()
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value, dtype=like.dtype).clone()
    if key == "step":
        from torch.optim.optimizer import _get_scalar_dtype
        return torch.tensor(float(value), dtype=_get_scalar_dtype())
    return value


def mirror_optimizer(optimizer, twin):
    """A ``torch.optim`` optimizer over ``twin``'s parameters with the same hyperparameters and state."""
    fn = _lookup(_OPTIMIZERS, optimizer)
    if fn is None:
        raise MirrorError(f"cannot mirror optimizer {type(optimizer).__name__}: no torch twin is registered; "
                          "use crosscheck.register_optimizer")
    mapping = twin_param_map(optimizer, twin)
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[p] for p in g["params"]]}
              for g in optimizer.param_groups]
    topt = fn(optimizer, groups)
    load_optimizer_state(optimizer, topt, mapping)
    return topt


def load_optimizer_state(optimizer, topt, mapping):
    """Copy handbp's optimizer state into the torch optimizer (every buffer and step counter):
    in place where torch already holds a buffer of that shape, else as a new tensor."""
    torch = require_torch()
    stale = set(topt.state) - {mapping[p] for p, e in optimizer.state.items() if p in mapping and e}
    for tp in stale:
        del topt.state[tp]
    for p, entry in optimizer.state.items():
        if p not in mapping or not entry:
            continue
        tp = mapping[p]
        theirs = topt.state.get(tp)
        if theirs is None or set(theirs) != set(entry):
            topt.state[tp] = {k: state_to_torch(k, v, tp) for k, v in entry.items()}
            continue
        for k, v in entry.items():
            t = theirs[k]
            if isinstance(v, np.ndarray) and isinstance(t, torch.Tensor) and t.shape == v.shape:
                t.numpy()[...] = v
            else:
                theirs[k] = state_to_torch(k, v, tp)


def mirror(obj, torch_model=None):
    """The torch twin of a handbp model, loss or optimizer.

    * ``mirror(model)`` → ``torch.nn.Module``, same structure and dtype, copies of the weights
      (``state_dict`` keys identical);
    * ``mirror(loss)`` → a torch callable with the same definition (``MeanSquaredError``'s ½ included);
    * ``mirror(optimizer, torch_model)`` → a ``torch.optim`` optimizer over ``torch_model`` (which must
      come from ``mirror(model)``) with the same hyperparameters and state.
    """
    require_torch()
    _ensure_builtins()
    if isinstance(obj, hb.Loss):
        fn = _lookup(_LOSSES, obj)
        if fn is None:
            raise MirrorError(f"cannot mirror loss {type(obj).__name__}: no torch twin is registered; "
                              f"use crosscheck.register({type(obj).__name__}, to_torch=...)")
        return fn(obj)
    if isinstance(obj, hb.Module):
        return mirror_module(obj)
    if isinstance(obj, hb.optim.Optimizer):
        if torch_model is None:
            raise TypeError("mirror(optimizer, torch_model): torch_model is required (the twin from mirror(model))")
        return mirror_optimizer(obj, torch_model)
    raise MirrorError(f"mirror: expected a handbp Module, Loss or Optimizer, got {type(obj).__name__}")


def target_tensor(y, dtype):
    """A target in torch's form: integer class indices as int64, float targets in the model dtype."""
    y = np.asarray(y)
    t = to_tensor(y)
    return t if y.dtype.kind in "iu" else t.to(torch_dtype(dtype))
