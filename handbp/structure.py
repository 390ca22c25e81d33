"""Modules with several inputs or outputs: nested tuples of arrays.

Most modules take one array and return one. A recurrent layer takes ``x`` or ``(x, h0)`` (an LSTM
``(x, (h0, c0))``) and returns ``(output, h_n)`` (an LSTM ``(output, (h_n, c_n))``), torch's
structures. The rule that keeps every other module and ``Sequential`` unchanged:

* ``forward(x)`` takes one object, an array or a tuple (possibly nested) of arrays;
  ``module(x, hx)`` is ``module((x, hx))``, so ``lstm(x, (h0, c0))`` reads as in torch;
* ``backward(dy)`` takes the gradient in the structure of the output, where any part may be
  ``None`` (no gradient reached it: zero, as in torch's autograd), and returns the gradient in the
  structure of the input, ``None`` for a part that has none (integer indices, an initial state
  that was not given).

A Sequential passes whatever one child returns to the next, forward and backward, as before; a
structure is taken apart by a module that says which part it wants (``SelectOutput``).

The helpers here walk such structures: ``flatten`` lists the arrays in order, ``flatten_like``
lists a gradient's parts in the order of the value it is the gradient of (a ``None`` standing for
a whole part gives ``None`` for each array in it), ``names`` gives each array a name for reports.
"""
import numpy as np


def is_structure(x):
    """True for a tuple (the only container a module's input or output may be)."""
    return type(x) is tuple


def flatten(tree):
    """The leaves of ``tree`` (arrays, or None), depth first: ``(a, (b, c))`` → ``[a, b, c]``."""
    if type(tree) is not tuple:
        return [tree]
    out = []
    for part in tree:
        out += flatten(part)
    return out


def flatten_like(grad, like):
    """The parts of ``grad`` in the order of ``like``'s leaves: one entry per leaf of ``like``;
    ``None`` (for a leaf, or for a whole sub-tuple) gives ``None`` for each leaf it stands for. A
    ``grad`` whose shape of nesting differs from ``like``'s is returned as one entry per leaf of
    ``like`` anyway (the extra nesting kept, the missing filled with None), so a report can show it."""
    if type(like) is not tuple:
        return [grad]
    if grad is None or type(grad) is not tuple or len(grad) != len(like):
        return [grad if i == 0 else None for i in range(len(flatten(like)))] if grad is not None \
            else [None] * len(flatten(like))
    out = []
    for g, part in zip(grad, like):
        out += flatten_like(g, part)
    return out


def map_structure(fn, tree):
    """``tree`` with ``fn`` applied to each leaf (None leaves stay None)."""
    if type(tree) is tuple:
        return tuple(map_structure(fn, part) for part in tree)
    return None if tree is None else fn(tree)


def copy(tree):
    """A copy of every array in ``tree`` (other leaves as they are)."""
    if type(tree) is np.ndarray:
        return tree.copy()
    if type(tree) is tuple:
        return tuple(copy(part) for part in tree)
    return tree


def names(tree, declared=None):
    """A name for each leaf of ``tree``, in ``flatten`` order, from ``declared`` (the same nesting
    of strings, e.g. ``("output", ("h_n", "c_n"))``) where it gives one, else the leaf's position
    (``"1.0"``). A leaf given a whole declared sub-tuple takes its first name."""
    out = []

    def walk(t, d, path):
        if type(t) is not tuple:
            while type(d) is tuple and d:
                d = d[0]
            out.append(d if isinstance(d, str) else ".".join(map(str, path)) or "0")
            return
        for i, part in enumerate(t):
            walk(part, d[i] if type(d) is tuple and i < len(d) else None, path + (i,))

    walk(tree, declared, ())
    return out


def describe_structure(tree):
    """The nesting and shapes of ``tree`` for a message: ``(array (2, 3), (array (1, 2, 4), None))``."""
    if type(tree) is tuple:
        return "(" + ", ".join(describe_structure(t) for t in tree) + ("," if len(tree) == 1 else "") + ")"
    if isinstance(tree, np.ndarray):
        return f"array {tree.shape} {tree.dtype}"
    return "None" if tree is None else type(tree).__name__
