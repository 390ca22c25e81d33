"""The checks of user-given arguments (hyperparameters, flags, choices, dtypes): one set, one message.

Every check takes the owner (the class or function the user called), the argument's name and the
value, and either returns the value in plain form or raises::

    {owner}: {arg}: expected {what}, got {given}

e.g. ``Linear: in_features: expected a non-negative integer, got -1``. Python and NumPy scalars are
accepted alike (``np.float32(0.1)`` is a number, ``np.bool_(True)`` a flag) and come back as plain
Python values, so a NumPy scalar never changes the dtype of later arithmetic (``np.float64(0.1) *
float32_array`` is float64). Bools are not numbers here: ``True`` is 1 to Python, but never a
learning rate.

A value of the wrong type raises ``ArgumentTypeError`` (a TypeError and a ValueError); a value of the
right type but out of range, or NaN/Inf, raises ValueError. ``prefix`` puts torch's own wording in
front (``Invalid learning rate: -1 (SGD: lr: expected a finite number >= 0, got -1)``), for the
arguments where users know that message.
"""
import math

import numpy as np

from .errors import ArgumentTypeError, describe

_NUMBER = (int, float, np.integer, np.floating)
_FLAG = (bool, np.bool_)


def given(v):
    """A value as a message shows it: scalars, strings and None as Python writes them (a NumPy
    scalar with its type, ``np.float32(0.1)``), anything else by type (and shape, for an array)."""
    if v is None or isinstance(v, (str, bool, int, float, np.generic)):
        return repr(v)[:120]
    if isinstance(v, np.dtype):
        return str(v)
    return describe(v)


def fail(owner, arg, what, v, error=ValueError, prefix=None):
    """Raise ``error`` with the one message style. ``owner``: a name, an object whose class names
    it, or ``(object, method)`` (so that a hot path need not format a name it almost never shows)."""
    if isinstance(owner, tuple):
        owner = f"{type(owner[0]).__name__}.{owner[1]}"
    elif not isinstance(owner, str):
        owner = type(owner).__name__
    message = f"{owner}: {arg}: expected {what}, got {given(v)}"
    raise error(f"{prefix}: {given(v)} ({message})" if prefix else message)


def is_number(v):
    """True for a real number (a Python or NumPy int or float), False for bools and anything else."""
    return isinstance(v, _NUMBER) and not isinstance(v, _FLAG)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _in_range(v, low, high, low_open, high_open):
    return ((low is None or (v > low if low_open else v >= low))
            and (high is None or (v < high if high_open else v <= high)))


def _bounds(low, high, low_open, high_open):
    """The range as a message says it: ``>= 0``, ``> 0``, ``in [0, 1)``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def number(owner, arg, v, *, low=None, high=None, low_open=False, high_open=False, finite=True, what=None,
           prefix=None):
    """A real number (finite unless ``finite=False``) within the bounds; returns it as a Python
    int or float. ``what`` replaces the generated description."""
    error = ArgumentTypeError
    if is_number(v):
        x = _plain(v)
        if (not finite or not isinstance(x, float) or math.isfinite(x)) and _in_range(x, low, high, low_open,
                                                                                    high_open):
            return x                            # (NaN fails every bound)
        error = ValueError
    if what is None:
        what = " ".join(filter(None, ["a finite number" if finite else "a real number",
                                      _bounds(low, high, low_open, high_open)]))
    fail(owner, arg, what, v, error, prefix)


def integer(owner, arg, v, *, low=None, high=None, what=None, prefix=None):
    """A Python or NumPy integer (not a bool, not a float such as 2.0) within the bounds; returns an int."""
    error = ArgumentTypeError
    if isinstance(v, (int, np.integer)) and not isinstance(v, _FLAG):
        if _in_range(v, low, high, False, False):
            return int(v)
        error = ValueError
    if what is None and high is None and low in (0, 1):
        what = "a non-negative integer" if low == 0 else "a positive integer"
    elif what is None:
        what = " ".join(filter(None, ["an integer", _bounds(low, high, False, False)]))
    fail(owner, arg, what, v, error, prefix)


def probability(owner, arg, v):
    """A number in [0, 1]; returns a float."""
    return float(number(owner, arg, v, low=0, high=1, what="a probability in [0, 1]"))


def flag(owner, arg, v):
    """True or False (a Python or NumPy bool; not 0 or 1); returns a bool."""
    if not isinstance(v, _FLAG):
        fail(owner, arg, "True or False", v, ArgumentTypeError)
    return bool(v)


def choice(owner, arg, v, options):
    """One of ``options`` (strings); returns it."""
    if not (isinstance(v, str) and v in options):
        quoted = [repr(o) for o in options]
        what = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        fail(owner, arg, what, v, ValueError if isinstance(v, str) else ArgumentTypeError)
    return v


def float_dtype(owner, arg, dtype):
    """A real floating dtype (np.float64, "float32", ...); returns the ``np.dtype``."""
    what = "a floating dtype such as np.float64 or np.float32"
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        fail(owner, arg, what, dtype, ArgumentTypeError)
    if dt.kind != "f":
        fail(owner, arg, what, dt, ArgumentTypeError)
    return dt


def generator(owner, arg, v):
    """An ``np.random.Generator``, or a seed for one (an integer >= 0), or None for a fresh one;
    returns the Generator."""
    if v is None or isinstance(v, np.random.Generator):
        return np.random.default_rng(v)      # a Generator given comes back as it is
    return np.random.default_rng(integer(owner, arg, v, low=0, what="an np.random.Generator, a seed >= 0 or None"))


def optional(check, owner, arg, v, **kwargs):
    """``None``, or what ``check`` accepts."""
    return None if v is None else check(owner, arg, v, **kwargs)


def sizes(owner, arg, v, n, *, low=1):
    """An integer >= ``low`` for each of ``n`` dimensions: one integer (the same for every
    dimension) or a tuple or list of ``n`` of them, as torch's ``kernel_size``, ``stride``, ...;
    returns a tuple of ``n`` ints."""
    first = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
    what = f"{first} or a tuple of {n if n > 1 else 'one'} such"
    if isinstance(v, (tuple, list)) and len(v) == n:
        values = list(v)
    elif isinstance(v, (int, np.integer)) and not isinstance(v, _FLAG):
        values = [v] * n
    else:
        fail(owner, arg, what, v, ArgumentTypeError if not isinstance(v, (tuple, list)) else ValueError)
    for x in values:
        if not (isinstance(x, (int, np.integer)) and not isinstance(x, _FLAG)):
            fail(owner, arg, what, v, ArgumentTypeError)
        if x < low:
            fail(owner, arg, what, v)
    return tuple(int(x) for x in values)
