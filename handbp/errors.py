"""Errors handbp raises for bad input, and the checks that raise them.

Every message names the argument (or the layer), what was expected and what was given. Checks run
*before* anything is modified, so a failed call leaves the model, its gradients and the optimizer
exactly as they were.
"""
import numpy as np


class LayerError(Exception):
    """Mixin for an error raised inside a layer: knows the layer and its path in the model.

    Containers re-raise it with their child's name prefixed (``within``), so the final message
    says ``layer '2' (Linear(in_features=32, out_features=32))``: which layer, by the same path
    ``named_parameters()`` uses.
    """

    def __init__(self, module, message, path=""):
        self.module, self.message, self.path = module, message, path
        where = f"layer '{path}' ({module!r})" if path else repr(module)
        super().__init__(f"{where}: {message}")

    def within(self, name):
        path = f"{name}.{self.path}" if self.path else str(name)
        return type(self)(self.module, self.message, path)


class LayerValueError(LayerError, ValueError):
    """Bad value or shape given to a layer."""


class LayerTypeError(LayerError, TypeError, ValueError):
    """Bad dtype or type given to a layer (a TypeError, and a ValueError as every bad argument is)."""


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string for a learning rate, 1 for a flag).

    A TypeError, as Python's convention has it, and a ValueError like every other bad argument
    here (handbp raised ValueError for some of these before, so ``except ValueError`` still works).
    """


class CallOrderError(LayerError, RuntimeError, ValueError):
    """A method called out of order, e.g. ``backward`` before ``forward``.

    A RuntimeError as in torch, and a ValueError like every other bad-usage error here.
    """


class StateDictKeyError(KeyError, ValueError):
    """A state_dict whose names do not match the model's. A KeyError, as it always was, and a
    ValueError like every other bad argument here (torch raises a RuntimeError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""   # KeyError's own str() would quote the message


def describe(x):
    """A short, safe description of a given value for error messages."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def as_float_array(x, name, dtype=None):
    """``x`` as a floating ndarray (lists accepted), or a TypeError naming ``name``.

    With ``dtype`` given, the array must already have it: handbp never casts silently (torch
    raises for mixed dtypes too), so a float32 model fed float64 data is an error, not a slowdown.
    """
    if not isinstance(x, np.ndarray):
        try:
            # numbers only: np.asarray(None, float) would be NaN, and np.asarray("1.5", float) 1.5
            kind = "O" if x is None else np.asarray(x).dtype.kind
        except (TypeError, ValueError):                  # ragged nested lists
            kind = "O"
        if kind not in "iuf":
            raise TypeError(f"{name}: expected an array of floats, got {describe(x)}")
        x = np.asarray(x, dtype=dtype if dtype is not None else np.float64)
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {x.dtype} "
                        f"(convert with {name}.astype(np.float64))")
    if dtype is not None and x.dtype is not dtype and x.dtype != dtype:    # (``is``: the cheap common answer)
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (the model's dtype), got {x.dtype}; "
                        f"convert the data with .astype(np.{np.dtype(dtype)}) or the model with .to(np.{x.dtype})")
    return x


def check_finite(x, name):
    """ValueError naming ``name`` when ``x`` holds NaN or Inf. (Not ``isfinite(x.sum())``: a sum of
    finite values can overflow, and that would warn. Nor ``isfinite(x).all()``: counting is the
    same answer in about half the time on a small array, and every ``module(x)`` asks.)"""
    if np.count_nonzero(np.isfinite(x)) != x.size:
        bad = np.argwhere(~np.isfinite(x))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name}: expected finite values, got {len(bad)} non-finite "
                         f"(first at index {first}: {x[first].item()!r})")
    return x


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt, or does not fit the model it is loaded into."""


class MetadataFieldError(CheckpointError):
    """A checkpoint's metadata field that is missing or malformed, named by its path
    (``architecture.children[0].args``); the loader adds the file's path to the message."""

    def __init__(self, field, problem):
        super().__init__(f"metadata field '{field}' {problem}")


def expected_field(field, what, value):
    """MetadataFieldError: ``field`` is not ``what``."""
    return MetadataFieldError(field, f"is not {what} (got {describe(value)})")


def required_field(obj, key, field, kind, what):
    """``obj[key]``, an instance of ``kind`` (True is no number here), or MetadataFieldError naming
    ``field``: missing, or not ``what``."""
    if key not in obj:
        raise MetadataFieldError(field, "is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise expected_field(field, what, value)
    return value
