"""Build the torch twin of a handbp model, loss or optimizer.

The registry (``crosscheck.registry``) gives, for each handbp class, the function that builds the
torch equivalent (structure and dtype); the weights are then copied generically through
``state_dict``, whose keys are identical on both sides.
"""
import numpy as np

import handbp as hb

from ._torch import require_torch, to_tensor
from .registry import entry, optimizer_twin, register, register_optimizer  # noqa: F401  (re-exported)


class MirrorError(TypeError):
    """The model holds something crosscheck has no torch twin for."""


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
    found = entry(module)
    if found is None or isinstance(module, hb.Loss):
        where = f"module '{path}' " if path else "the model "
        raise MirrorError(f"cannot mirror {where}({type(module).__name__}): no torch twin is registered for it; "
                          f"register one with crosscheck.register({type(module).__name__}, to_torch=...)")
    return found.to_torch(module, lambda child, name: _build(child, f"{path}.{name}" if path else str(name)))


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
    for path, m in model.named_modules():          # parents first: a child in another mode keeps its own
        try:
            (twin.get_submodule(path) if path else twin).train(m.training)
        except AttributeError:                      # a registered twin built differently inside
            pass
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
    topt = build_optimizer(optimizer, twin)
    load_optimizer_state(optimizer, topt, twin_param_map(optimizer, twin))
    return topt


def build_optimizer(optimizer, twin):
    """The torch optimizer over ``twin``'s parameters with ``optimizer``'s param groups, as its own
    constructor leaves it: with the state it makes itself (Adagrad's ``sum``), not handbp's."""
    fn = optimizer_twin(optimizer)
    if fn is None:
        raise MirrorError(f"cannot mirror optimizer {type(optimizer).__name__}: no torch twin is registered; "
                          "use crosscheck.register_optimizer")
    mapping = twin_param_map(optimizer, twin)
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[p] for p in g["params"]]}
              for g in optimizer.param_groups]
    return fn(optimizer, groups)


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
    if isinstance(obj, hb.Loss):
        found = entry(obj)
        if found is None:
            raise MirrorError(f"cannot mirror loss {type(obj).__name__}: no torch twin is registered; "
                              f"use crosscheck.register({type(obj).__name__}, to_torch=...)")
        return found.to_torch(obj, None)
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
