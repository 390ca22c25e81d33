"""The optimizer base class: parameter groups, per-parameter state, and torch's state_dict format."""
import copy

import numpy as np

from .. import validate
from ..errors import ArgumentTypeError, describe
from ..module import Parameter

# torch's own words for a bad hyperparameter, which users know: they lead our message
TORCH_WORDING = {"lr": "Invalid learning rate", "eps": "Invalid epsilon value", "momentum": "Invalid momentum value",
                 "weight_decay": "Invalid weight_decay value", "alpha": "Invalid alpha value",
                 "lr_decay": "Invalid lr_decay value",
                 "initial_accumulator_value": "Invalid initial_accumulator_value value"}
FLOAT32 = np.dtype(np.float32)     # (comparing with np.float32, a type, converts it on every call)


def _fused_add(a, x, y, out):
    """``a + x · y`` with one rounding, as torch's fused CPU kernels compute it. In float32 that is
    exact in float64 arithmetic (a product of two float32 numbers fits), so it is formed there and
    rounded once; in float64 the plain expression is used (NumPy has no fused multiply-add)."""
    if a.dtype != FLOAT32:
        return np.add(a, x * y, out=out)
    return _fused_add32(a, x, y, out)


def _fused_add32(a, x, y, out):
    """``_fused_add`` for a float32 ``a``."""
    result = a.astype(np.float64) + np.asarray(x, np.float32).astype(np.float64) * y
    if out is None:
        return result.astype(np.float32)
    out[...] = result
    return out


def add_scaled(a, b, alpha, out=None):
    """``a + alpha · b``, rounded as torch's ``a.add(b, alpha=alpha)`` is: one rounding, as torch
    fuses the multiply and the add (alpha first cast to a's dtype). Rounding ``alpha · b`` first
    can cost many units in the last place where the two terms cancel (a step that brings a weight
    close to 0). ``out``: write the result there (e.g. ``a``)."""
    if a.dtype != FLOAT32:                  # (``_fused_add`` written out: one call less per parameter)
        return np.add(a, alpha * b, out=out)
    return _fused_add32(a, alpha, b, out)


def add_product(a, value, b, c, out=None):
    """``a + value · b · c``, rounded as torch's ``a.addcmul(b, c, value=value)`` is: ``value · b``
    rounded, then multiplied by ``c`` and added to ``a`` with one rounding. ``out``: write the
    result there."""
    return _fused_add(a, value * b, c, out)


def add_quotient(a, value, b, c, out):
    """``a + value · b / c`` into ``out``, rounded as torch's ``a.addcdiv_(b, c, value=value)`` is:
    ``(value · b) / c``, then the sum, each rounded (the order matters to the last bit)."""
    out[...] = a + (value * b) / c
    return out


def plain(v):
    """A hyperparameter as a Python number (a tuple's items too): a NumPy scalar would promote a
    float32 parameter's arithmetic, since ``np.float64(0.1) * float32_array`` is float64."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return tuple(plain(i) for i in v)
    return v


class Optimizer:
    """Holds ``param_groups`` (a list of dicts: ``"params"`` plus hyperparameters) and ``state``
    (a dict Parameter → dict of arrays), exactly as ``torch.optim.Optimizer`` does.

    Subclasses set ``defaults`` through ``__init__`` and write ``step()``.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Parameter):
            raise TypeError(f"{type(self).__name__}: params: expected an iterable of Parameters, "
                            "got a single Parameter (wrap it in a list)")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{type(self).__name__}: params: expected an iterable of Parameters or of dicts, "
                            f"got {describe(params)}") from None
        if not params:
            raise ValueError(f"{type(self).__name__}: params: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: param group: expected a dict with 'params', got {describe(group)}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: params[{i}]: expected a handbp Parameter, got {describe(p)}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one group")
        full = dict(self.defaults)
        full.update((k, v) for k, v in group.items() if k != "params")
        self._check_hyperparameters(full)
        full = {k: plain(v) for k, v in full.items()}
        full["params"] = params
        self.param_groups.append(full)

    def _check_hyperparameters(self, group):
        """Check a group's hyperparameters (with ``_number`` and ``_flag``), storing them back as
        plain Python values. Subclasses write it."""

    def _number(self, group, key, **bounds):
        """``group[key]`` checked by ``validate.number`` (torch's words in front where torch has
        some), stored back as a Python number."""
        group[key] = validate.number(self, key, group[key], prefix=TORCH_WORDING.get(key), **bounds)

    def _flag(self, group, key):
        group[key] = validate.flag(self, key, group[key])

    def _check_grads(self):
        """Check every gradient before any parameter or state changes, so that a bad one changes
        nothing: a gradient, where there is one, must be an array of its parameter's dtype and
        shape (NaN and Inf are fine, as in torch; ``fit`` stops on them)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is not None and not (isinstance(g, np.ndarray) and g.shape == (data := p.data).shape
                                          and (g.dtype is data.dtype or g.dtype == data.dtype)):
                    self._bad_grad(p)

    def _bad_grad(self, p):
        index = [q for group in self.param_groups for q in group["params"]].index(p)
        g = p.grad
        error = ValueError if isinstance(g, np.ndarray) and g.dtype == p.data.dtype else ArgumentTypeError
        raise error(f"{type(self).__name__}.step: grad of parameter {index}: expected an array of dtype "
                    f"{p.data.dtype} and shape {p.data.shape} (the parameter's), got {describe(g)}; "
                    "nothing was updated")

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter this optimizer updates."""
        set_to_none = validate.flag((self, "zero_grad"), "set_to_none", set_to_none)
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self):
        raise NotImplementedError

    # -- state, in torch's format: parameters are numbered across groups in order
    def state_dict(self):
        """``{"state": {index: {name: value}}, "param_groups": [{hyper..., "params": [index, ...]}]}``,
        torch's layout; arrays are copies."""
        index, groups, i = {}, [], 0
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = list(range(i, i + len(g["params"])))
            for p in g["params"]:
                index[id(p)] = i
                i += 1
            groups.append(packed)
        state = {index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load state saved by ``state_dict()``. Group count, sizes, hyperparameters, state keys
        (unexpected and missing ones), shapes and dtypes are all checked before anything changes."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups', "
                             f"got {describe(state_dict)}")
        saved, state = state_dict["param_groups"], state_dict["state"]
        # the layout first, so that a malformed dict gets a message, not a TypeError from inside
        if not isinstance(saved, (list, tuple)):
            raise ArgumentTypeError(f"{name}.load_state_dict: 'param_groups': expected a list of dicts, "
                                    f"got {describe(saved)}")
        for k, s in enumerate(saved):
            if not (isinstance(s, dict) and isinstance(s.get("params"), (list, tuple))
                    and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in s["params"])):
                raise ArgumentTypeError(f"{name}.load_state_dict: param group {k}: expected a dict with a list "
                                        f"'params' of parameter indices, got {describe(s)}")
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: expected {len(self.param_groups)} param groups, got {len(saved)}")
        indices = [i for s in saved for i in s["params"]]
        if len(set(indices)) != len(indices):
            raise ValueError(f"{name}.load_state_dict: 'param_groups': expected each parameter index once, "
                             f"got {indices}")
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"{name}.load_state_dict: 'state': expected a dict of parameter index -> "
                                    f"state, got {describe(state)}")
        new_groups, by_index = [], {}
        for k, (g, s) in enumerate(zip(self.param_groups, saved)):
            if len(s["params"]) != len(g["params"]):
                raise ValueError(f"{name}.load_state_dict: param group {k}: expected {len(g['params'])} parameters, "
                                 f"got {len(s['params'])}")
            merged = {key: copy.deepcopy(v) for key, v in s.items() if key != "params"}
            missing = set(self.defaults) - set(merged)
            if missing:
                raise ValueError(f"{name}.load_state_dict: param group {k} lacks {sorted(missing)}")
            self._check_hyperparameters(merged)
            merged = {key: plain(v) for key, v in merged.items()}
            merged["params"] = g["params"]
            new_groups.append(merged)
            by_index.update((idx, (p, merged)) for idx, p in zip(s["params"], g["params"]))
        new_state = {}
        for idx, entry in state.items():
            if idx not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter {idx}, which no group holds")
            p, group = by_index[idx]
            new_state[p] = self._checked_state_entry(idx, entry, p, group)
        self.state = new_state
        self.param_groups = new_groups

    def _checked_state_entry(self, idx, entry, p, group):
        """A copy of one parameter's saved state, or an error naming the parameter and the key."""
        name = type(self).__name__
        if not hasattr(entry, "items"):
            raise TypeError(f"{name}.load_state_dict: parameter {idx}: expected a dict of state, got {describe(entry)}")
        required = self._required_state_keys(group)
        missing = required - set(entry)
        if entry and missing:
            raise ValueError(f"{name}.load_state_dict: parameter {idx}: state lacks {sorted(missing)} "
                             f"(with these hyperparameters {name} keeps {sorted(required)})")
        new_entry = {}
        for key, value in entry.items():
            if key not in self._state_keys:
                raise ValueError(f"{name}.load_state_dict: parameter {idx}: unexpected state '{key}' "
                                 f"(expected some of {sorted(self._state_keys)})")
            if key in self._array_state_keys:
                if not isinstance(value, np.ndarray):
                    raise TypeError(f"{name}.load_state_dict: parameter {idx}: '{key}': expected an array, "
                                    f"got {describe(value)}")
                if value.shape != p.data.shape:
                    raise ValueError(f"{name}.load_state_dict: parameter {idx}: '{key}': expected shape "
                                     f"{p.data.shape}, got {value.shape}")
                if value.dtype != p.data.dtype:
                    raise TypeError(f"{name}.load_state_dict: parameter {idx}: '{key}': expected dtype "
                                    f"{p.data.dtype}, got {value.dtype}")
                value = value.copy()
            elif key == "step":
                if isinstance(value, np.ndarray) and value.ndim == 0:
                    value = value.item()           # a scalar saved as a 0-d array
                if not validate.is_number(value) or not np.isfinite(value) or value < 0 or value != int(value):
                    raise ValueError(f"{name}.load_state_dict: parameter {idx}: 'step': expected a whole "
                                     f"number >= 0, got {describe(value)}")
                value = float(value)
            new_entry[key] = value
        return new_entry

    def _required_state_keys(self, group):
        """The state keys every non-empty entry must hold under ``group``'s hyperparameters."""
        return frozenset()

    _state_keys = frozenset()
    _array_state_keys = frozenset()

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])
