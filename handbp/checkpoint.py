"""Checkpoints: a model's architecture and state (and optionally an optimizer's) in one ``.npz`` file.

The file is a NumPy zip archive, read with ``allow_pickle=False`` (loading it runs no code):
``__meta__`` holds JSON (format version, architecture, dtype, optimizer hyperparameters, the names
of the arrays), every other member is one array. Writes go to a temporary file in the same folder,
are flushed to disk and then renamed over the target, so a crash never leaves half a checkpoint
behind.
"""
import copy
import io
import json
import os
import secrets

import numpy as np

from .errors import describe
from .module import Module, Sequential

FORMAT = "handbp-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"        # how every .npz archive (a zip file) begins


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt, or does not fit the model it is loaded into."""


def _module_classes():
    """Every handbp Module class by name (the only classes a checkpoint may name)."""
    found, todo = {}, [Module]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("handbp."):
                found[sub.__name__] = sub
            todo.append(sub)
    return found


def architecture(model):
    """A JSON-able description from which ``build`` makes the same model (fresh weights)."""
    cls = type(model)
    if getattr(cls, "__module__", "").split(".")[0] != "handbp" or not isinstance(model, Module):
        raise TypeError(f"architecture: cannot describe {describe(model)}: only handbp's own modules can be "
                        "saved with their architecture; save model.state_dict() with np.savez instead")
    if hasattr(model, "config"):       # DNN and friends: rebuilt from their constructor arguments
        return {"type": cls.__name__, "args": dict(model.config)}
    if isinstance(model, Sequential):
        return {"type": cls.__name__, "children": [architecture(m) for m in model]}
    return {"type": cls.__name__, "args": model.config_args()}


def build(spec, dtype=np.float64):
    """Make a model from ``architecture``'s description. Its initial weights are placeholders for
    the loaded ones; numpy's global random state, which layers draw them from by default, is left
    as it was (loading a model must not change the data a seeded script draws next)."""
    state = np.random.get_state()
    try:
        return _build(spec, dtype)
    finally:
        np.random.set_state(state)


def _build(spec, dtype):
    classes = _module_classes()
    name = spec.get("type") if isinstance(spec, dict) else None
    if name not in classes:
        raise CheckpointError(f"checkpoint names an unknown module type {name!r}")
    cls = classes[name]
    if "children" in spec:
        return cls(*[_build(c, dtype) for c in spec["children"]])
    args = dict(spec.get("args", {}))
    if name == "DNN":
        act, act_args = classes[args.pop("activation")], args.pop("activation_args", {})
        args["activation"] = (lambda: act(**act_args)) if act_args else act
        return cls(**args, dtype=dtype, rng=np.random.default_rng(0))
    return cls(**args).to(dtype)


def _write_atomic(path, payload):
    """Write a new file beside ``path``, flush it to disk, then rename it over ``path``: a reader
    finds the old file or the new one, never half of one. The new file gets the permissions
    ``open()`` would give it (0o666 less the umask; tempfile.mkstemp's are private, 0o600)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".handbp-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, tuple):
        return {"__tuple__": [_jsonable(i) for i in v]}
    return v


def _unjson(v):
    if isinstance(v, dict) and "__tuple__" in v:
        return tuple(v["__tuple__"])
    return v


def save(model, path, optimizer=None):
    """Save ``model`` (architecture + parameters + buffers) and, if given, ``optimizer``'s state."""
    meta = {"format": FORMAT, "version": VERSION, "architecture": architecture(model), "dtype": str(model.dtype)}
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
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
    _write_atomic(os.fspath(path), buf.getvalue())


def _read(path):
    """(meta, arrays) from a checkpoint, every member read and CRC-checked, or CheckpointError.
    A file that cannot be opened (missing, a folder, no permission) raises its OSError as it is."""
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
    except ValueError as e:     # bad UTF-8 or bad JSON
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a handbp checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {meta.get('version')}, "
                              f"this handbp reads version {VERSION}")
    listed = meta.get("arrays")         # absent from checkpoints written before it was added
    if listed is not None and sorted(arrays) != listed:
        lost = sorted(set(listed) - set(arrays)) or sorted(set(arrays) - set(listed))
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt (its archive's directory does not "
                              f"list the arrays it was saved with: {lost[:3]})")
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


def load(path):
    """A new model built and filled from the checkpoint at ``path``."""
    meta, arrays = _read(path)
    try:
        model = build(meta["architecture"], np.dtype(meta["dtype"]))
        model.load_state_dict(_model_state(arrays))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint '{path}' does not describe a valid model: {e}") from None
    return model


def load_into(path, model, optimizer=None):
    """Load the checkpoint's state into an existing ``model`` (and ``optimizer``).

    The architecture, names, shapes and dtypes must match; the optimizer must be of the saved type.
    Everything is checked before anything is changed: on error, model and optimizer are untouched.
    """
    meta, arrays = _read(path)
    mine = architecture(model)
    if meta["architecture"] != mine:
        raise CheckpointError(f"checkpoint '{path}' holds a different architecture: "
                              f"saved {json.dumps(meta['architecture'])[:300]}, model {json.dumps(mine)[:300]}")
    if meta["dtype"] != str(model.dtype):
        raise CheckpointError(f"checkpoint '{path}' holds dtype {meta['dtype']}, the model is {model.dtype}")
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"checkpoint '{path}' holds no optimizer state")
        if meta["optimizer"]["type"] != type(optimizer).__name__:
            raise CheckpointError(f"checkpoint '{path}' holds {meta['optimizer']['type']} state, "
                                  f"not {type(optimizer).__name__}")
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
