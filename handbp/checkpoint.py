"""Checkpoints: a model's architecture and state (and optionally an optimizer's) in one ``.npz`` file.

The file is a NumPy zip archive, read with ``allow_pickle=False`` (loading it runs no code):
``__meta__`` holds JSON (format version, architecture, dtype, optimizer hyperparameters, the names
of the arrays), every other member is one array. Writes are atomic (``handbp.atomic``): a crash
never leaves half a checkpoint behind, and the next save removes what a killed one left.

A checkpoint is data, and loading one does nothing its bytes do not carry: every metadata field
is checked (a missing or malformed one is a ``CheckpointError`` naming it), the architecture names
only handbp's public layers or classes registered with ``register``, and the state it declares
must be the arrays the file holds, checked before any module is built (``handbp.architecture``).
"""
import copy
import io
import json
import os

import numpy as np

from .architecture import (ABSENT, architecture, build, check_declared_state, check_description, declared_state,
                           first_difference)
from .architecture import register  # noqa: F401  (public here, as hb.checkpoint.register)
from .atomic import write_atomic
from .errors import ArgumentTypeError, CheckpointError, MetadataFieldError, describe, expected_field, required_field
from .module import Module, Parameter

FORMAT = "handbp-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"        # how every .npz archive (a zip file) begins


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, tuple):
        return {"__tuple__": [_jsonable(i) for i in v]}
    return v


def _unjson(v):
    if isinstance(v, dict) and isinstance(v.get("__tuple__"), list):
        return tuple(v["__tuple__"])
    return v


def _check_declares_its_state(spec, state):
    """What a load checks, checked at the save: a registered class with parameters or buffers that
    does not declare them (``state_shapes``) is found now, not when the file is loaded."""
    held = {k: v.shape for k, v in state.items()}
    try:
        declared = declared_state(spec, limit=len(held))
    except CheckpointError as e:
        raise TypeError(f"save: {e}") from None
    if declared != held:
        name = next(k for k in [*held, *declared] if declared.get(k) != held.get(k))
        raise TypeError(f"save: the model holds '{name}' with shape {held.get(name)}, its classes' state_shapes "
                        f"declare {declared.get(name)}: a class with parameters or buffers declares them in its "
                        "state_shapes class method (see hb.Linear.state_shapes)")


def _check_arguments(owner, path, model=None, optimizer=None):
    """The path, model and optimizer checked before any file is touched."""
    if not isinstance(path, (str, os.PathLike)):         # (save's atomic write joins str paths only)
        raise ArgumentTypeError(f"{owner}: path: expected a file path (str or os.PathLike), got {describe(path)}")
    if model is not None and not isinstance(model, Module):
        raise ArgumentTypeError(f"{owner}: model: expected a handbp Module, got {describe(model)}")
    if optimizer is not None and (isinstance(optimizer, type) or not all(
            callable(getattr(optimizer, a, None)) for a in ("state_dict", "load_state_dict"))):
        raise ArgumentTypeError(f"{owner}: optimizer: expected None or an optimizer such as "
                                f"hb.optim.SGD(model.parameters(), lr=0.1), got {describe(optimizer)}")


def save(model, path, optimizer=None):
    """Save ``model`` (architecture + parameters + buffers) and, if given, ``optimizer``'s state."""
    _check_arguments("save", path, model, optimizer)
    meta = {"format": FORMAT, "version": VERSION, "architecture": architecture(model), "dtype": str(model.dtype)}
    state = model.state_dict()
    _check_declares_its_state(meta["architecture"], state)
    arrays = {f"model/{k}": v for k, v in state.items()}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars = {}
        for idx, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{idx}/{key}"] = value
                else:
                    scalars.setdefault(str(idx), {})[key] = _jsonable(value)
        meta["optimizer"] = {"type": type(optimizer).__name__, "scalars": scalars,
                             "param_groups": [{k: _jsonable(v) for k, v in g.items()} for g in sd["param_groups"]]}
    buf = io.BytesIO()
    meta["arrays"] = sorted(arrays)     # the zip's directory has no checksum: a damaged one can drop members
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    write_atomic(path, buf.getvalue())


# -- checking the metadata ------------------------------------------------------------------------
def _kind(value):
    """What a hyperparameter is, for comparing a saved one with an optimizer's default."""
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, tuple):
        return f"a tuple of ({', '.join(_kind(v) for v in value)})"
    return f"a {type(value).__name__}"


def _optimizer_defaults(name):
    """The hyperparameters of ``hb.optim``'s optimizer ``name``, or None for a class it lacks (a
    user's optimizer: ``load_into``, which has it, checks against it)."""
    from . import optim
    cls = getattr(optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
        return None
    try:
        return cls([Parameter(np.zeros(1))]).defaults
    except (TypeError, ValueError):   # the base class, which has no defaults of its own
        return None


def _check_param_groups(groups, defaults, owner):
    """Each saved group holds every hyperparameter of ``defaults``, each of its default's kind."""
    for i, group in enumerate(groups):
        for key, default in defaults.items():
            field = f"optimizer.param_groups[{i}].{key}"
            if key not in group:
                raise MetadataFieldError(field, "is missing")
            if default is not None and _kind(_unjson(group[key])) != _kind(default):
                raise expected_field(field, f"{_kind(default)}, as {owner}'s {key} is", group[key])


def _check_optimizer(info, arrays):
    if not isinstance(info, dict):
        raise expected_field("optimizer", "a JSON object", info)
    name = required_field(info, "type", "optimizer.type", str, "an optimizer's class name")
    groups = required_field(info, "param_groups", "optimizer.param_groups", list, "a list of parameter groups")
    held = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise expected_field(f"optimizer.param_groups[{i}]", "a JSON object", group)
        params = required_field(group, "params", f"optimizer.param_groups[{i}].params", list, "a list of parameter indices")
        for j, idx in enumerate(params):
            if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
                raise expected_field(f"optimizer.param_groups[{i}].params[{j}]", "a parameter index", idx)
        held.update(params)
    defaults = _optimizer_defaults(name)
    if defaults is not None:
        _check_param_groups(groups, defaults, name)
    scalars = required_field(info, "scalars", "optimizer.scalars", dict, "a JSON object of per-parameter values")
    for key, entry in scalars.items():
        if not key.isdigit() or int(key) not in held:
            raise MetadataFieldError(f"optimizer.scalars.{key}", "is not the index of a parameter the groups hold")
        if not isinstance(entry, dict):
            raise expected_field(f"optimizer.scalars.{key}", "a JSON object", entry)
        for state_key, value in entry.items():     # scalar state, such as Adam's step: a number
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise expected_field(f"optimizer.scalars.{key}.{state_key}", "a number", value)
    for key in arrays:
        parts = key.split("/")
        if parts[0] == "optim" and (len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) not in held):
            raise MetadataFieldError("arrays", f"lists '{key}', which is not the state of a parameter the groups hold")


def _check_meta(meta, arrays):
    """Every field after format, version and arrays, before anything is built."""
    if "architecture" not in meta:
        raise MetadataFieldError("architecture", "is missing")
    check_description(meta["architecture"])
    dtype = required_field(meta, "dtype", "dtype", str, "a floating dtype's name")
    try:
        floating = np.dtype(dtype).kind == "f"
    except TypeError:
        floating = False
    if not floating:
        raise expected_field("dtype", "a floating dtype's name such as 'float64'", dtype)
    if "optimizer" in meta:
        _check_optimizer(meta["optimizer"], arrays)
    for key in arrays:
        if not key.startswith(("model/", "optim/")):
            raise MetadataFieldError("arrays", f"lists '{key}', neither model nor optimizer state")
    check_declared_state(meta["architecture"], {k: v.shape for k, v in _model_state(arrays).items()})


def _read(path):
    """(meta, arrays) from a checkpoint, every member read and CRC-checked and every metadata field
    checked, or CheckpointError. A file that cannot be opened (missing, a folder, no permission)
    raises its OSError as it is."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt (the file is empty)")
    if head != ZIP_MAGIC:
        raise CheckpointError(f"'{path}' is not a handbp checkpoint (not a NumPy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:      # zipfile, zlib and numpy each have their own ways to fail on bad bytes
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}: {e})") from None
    if "__meta__" not in arrays:
        raise CheckpointError(f"'{path}' is not a handbp checkpoint (an .npz archive without handbp's __meta__)")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (ValueError, RecursionError) as e:     # bad UTF-8, bad JSON, or nested beyond reason
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = expected_field("format", repr(FORMAT), meta.get("format")) if isinstance(meta, dict) else "no JSON object"
        raise CheckpointError(f"'{path}' is not a handbp checkpoint ({found})")
    if meta.get("version") != VERSION or isinstance(meta.get("version"), bool):     # True == 1
        raise CheckpointError(f"checkpoint '{path}' has format version {meta.get('version')!r} (metadata field "
                              f"'version'), this handbp reads version {VERSION}")
    listed = meta.get("arrays", sorted(arrays))     # absent from checkpoints written before it was added
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise CheckpointError(f"checkpoint '{path}': {expected_field('arrays', 'a list of array names', listed)}")
    if sorted(arrays) != listed:
        lost = sorted(set(listed) - set(arrays)) or sorted(set(arrays) - set(listed))
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt (its archive's directory does not "
                              f"list the arrays it was saved with: {lost[:3]})")
    try:
        _check_meta(meta, arrays)
    except MetadataFieldError as e:
        raise CheckpointError(f"checkpoint '{path}': {e}") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint '{path}': metadata field 'architecture' is nested too deeply") from None
    return meta, arrays


def _model_state(arrays):
    return {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}


def _optimizer_state(meta, arrays):
    info = meta["optimizer"]
    state = {}
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, entry in info["scalars"].items():
        state.setdefault(int(idx), {}).update({k: _unjson(v) for k, v in entry.items()})
    groups = [{k: _unjson(v) for k, v in g.items()} for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


# -- loading --------------------------------------------------------------------------------------
def load(path):
    """A new model built and filled from the checkpoint at ``path``."""
    _check_arguments("load", path)
    meta, arrays = _read(path)
    try:
        model = build(meta["architecture"], np.dtype(meta["dtype"]))
        model.load_state_dict(_model_state(arrays))
    except MetadataFieldError as e:
        raise CheckpointError(f"checkpoint '{path}': {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{path}' does not describe a valid model: {e}") from None
    return model


def _show(value):
    return "absent" if value is ABSENT else json.dumps(value)[:100]


def load_into(path, model, optimizer=None):
    """Load the checkpoint's state into an existing ``model`` (and ``optimizer``).

    The architecture, names, shapes and dtypes must match; the optimizer must be of the saved type.
    Everything is checked before anything is changed: on error, model and optimizer are untouched.
    """
    _check_arguments("load_into", path, model, optimizer)
    meta, arrays = _read(path)
    mine = architecture(model)
    difference = first_difference(meta["architecture"], mine)
    if difference is not None:
        field, saved, have = difference
        raise CheckpointError(f"checkpoint '{path}' holds a different architecture: '{field}' is {_show(saved)} in "
                              f"the file, {_show(have)} in the model (saved {json.dumps(meta['architecture'])[:300]}, "
                              f"model {json.dumps(mine)[:300]})")
    if meta["dtype"] != str(model.dtype):
        raise CheckpointError(f"checkpoint '{path}' holds dtype {meta['dtype']}, the model is {model.dtype}")
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"checkpoint '{path}' holds no optimizer state")
        if meta["optimizer"]["type"] != type(optimizer).__name__:
            raise CheckpointError(f"checkpoint '{path}' holds {meta['optimizer']['type']} state, "
                                  f"not {type(optimizer).__name__}")
        try:
            _check_param_groups(meta["optimizer"]["param_groups"], optimizer.defaults, type(optimizer).__name__)
        except MetadataFieldError as e:
            raise CheckpointError(f"checkpoint '{path}': {e}") from None
    # dry runs on copies first, so that a failure in either leaves both untouched
    try:
        copy.deepcopy(model).load_state_dict(_model_state(arrays))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{path}': its model state does not fit the model: {e}") from None
    if optimizer is not None:
        try:
            opt_sd = _optimizer_state(meta, arrays)
            copy.deepcopy(optimizer).load_state_dict(opt_sd)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint '{path}': its optimizer state does not fit the optimizer "
                                  f"({type(e).__name__}: {e})") from None
    model.load_state_dict(_model_state(arrays))
    if optimizer is not None:
        optimizer.load_state_dict(opt_sd)
