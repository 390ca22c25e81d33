"""``explain``: one training step's backward pass, read aloud, module by module.

From the loss back to the input: for each module, the upstream gradient it receives, the values
its forward cached (the notebook's "dynamic programming memory"), its local derivative (the first
line of its ``backward`` docstring), and the gradients it produces. With torch installed, each line
also shows what the torch twin computed (the ``grad_fn`` that produced it and the matching value)
and a ✓ or ✗.

This is the one place in handbp's library that reaches for crosscheck (and so torch), lazily and
only if it is installed; without it the explanation is handbp's alone.
"""
import copy

import numpy as np

from . import validate
from .errors import ArgumentTypeError, describe
from .inspect import Recorder, leaves
from .losses import Loss
from .module import Module


def _numbers(a, k):
    a = np.asarray(a)
    flat = a.ravel()
    shown = ", ".join(f"{v:.4g}" for v in flat[:k])
    return f"[{shown}{', …' if flat.size > k else ''}]"


def _value(a, k):
    if a is None:                         # no gradient (an Embedding's integer input)
        return "None"
    if type(a) is tuple:                  # several outputs or inputs (handbp.structure)
        return "(" + ", ".join(_value(p, k) for p in a) + ")"
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return f"shape {a.shape}: {_numbers(a, k)}"


def _derivative(obj):
    doc = (type(obj).backward.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else "(no derivative documented)"


def _caches(module, k):
    out = []
    for name, v in vars(module).items():
        if name.startswith("last_") and isinstance(v, np.ndarray):
            out.append(f"{name} {_value(v, k)}")
    return out


class Explanation:
    """The text of an explanation (``str()``), plus the numbers behind it: ``rows``, a list of dicts
    with the module path, type, local derivative and produced gradients, and ``all_match``
    (None without torch)."""

    def __init__(self, lines, rows, all_match):
        self.lines, self.rows, self.all_match = lines, rows, all_match

    def __str__(self):
        return "\n".join(self.lines)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle):       # IPython / Jupyter show the text as it is
        p.text(str(self))


def _reference(model, loss, x, y, use_torch):
    if use_torch is False:
        return None
    try:
        from crosscheck._torch import require_torch
        from crosscheck.explain import reference
        require_torch()             # crosscheck imports without torch; the twin needs it
    except ImportError:
        if use_torch is True:
            raise
        return None
    return reference(model, loss, x, y)


def explain(model, loss, x, y, *, torch="auto", numbers=4):
    """Explain one forward and backward pass of ``model`` on ``(x, y)`` under ``loss``.

    Args:
        model: a handbp Module; it is copied first, so its parameters, gradients and caches are
            left exactly as they were.
        loss: a handbp loss.
        torch: ``"auto"`` (compare with the torch twin when crosscheck and torch are installed),
            ``True`` (require them) or ``False``.
        numbers: how many numbers of each array to show.

    Returns:
        Explanation (print it).
    """
    if not isinstance(model, Module):
        raise TypeError(f"explain: model: expected a handbp Module, got {describe(model)}")
    if not isinstance(loss, Loss):
        raise TypeError(f"explain: loss: expected a handbp loss, got {describe(loss)}")
    if isinstance(torch, (bool, np.bool_)):
        torch = bool(torch)
    elif not (isinstance(torch, str) and torch == "auto"):
        validate.fail("explain", "torch", "'auto', True or False", torch, ArgumentTypeError)
    numbers = validate.integer("explain", "numbers", numbers, low=1)
    model, loss = copy.deepcopy(model), copy.deepcopy(loss)
    model.zero_grad()
    leaf_list = leaves(model)
    with Recorder(leaf_list) as rec:
        out = model(x)
        value = loss(out, y)
        dpred = loss.backward()
        model.backward(dpred)
    ref = _reference(model, loss, x, y, torch)
    tol = 1e-9 if np.dtype(model.dtype) == np.float64 else 1e-4
    verdicts = []

    def beside(mine, key, label="torch"):
        if ref is None:
            return ""
        theirs = ref["values"].get(key)
        if theirs is None:
            return f"\n      {label}: —"
        mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
        ok = mine.shape == theirs.shape and bool(np.all(np.abs(mine - theirs) <= tol * max(np.abs(theirs).max(), 1e-300)))
        verdicts.append(ok)
        fn = ref["grad_fn"].get(key)
        return f"\n      {label}{' ' + fn if fn else ''}: {_numbers(theirs, numbers)} {'✓' if ok else '✗'}"

    lines = [f"One training step of {type(model).__name__}, explained from the loss back to the input",
             f"  input x {_value(x, numbers)}",
             "" if ref is not None else "  (torch not available: handbp's values only)"]
    lines = [l for l in lines if l]
    lines += ["", f"loss: {type(loss).__name__}    value {value:.6g}" + beside(value, "loss"),
              f"  local derivative: {_derivative(loss)}",
              f"  cached: " + ("; ".join(_caches(loss, numbers)) or "—"),
              f"  produces dL/dpred {_value(dpred, numbers)}" + beside(dpred, "grad_pred")]
    rows = []
    names = {id(p): n for n, p in model.named_parameters()}
    for path, m in reversed(leaf_list):
        title = f"{path or 'model'} ({type(m).__name__})"
        lines += ["", f"module {title}",
                  f"  upstream dL/d(output) {_value(rec.upstream[path], numbers)}",
                  f"  cached: " + ("; ".join(_caches(m, numbers)) or "—"),
                  f"  local derivative: {_derivative(m)}",
                  f"  produces dL/d(input) {_value(rec.grad_inputs[path], numbers)}"
                  + beside(rec.grad_inputs[path], f"grad_input:{path}")]
        grads = {}
        for pname, p in m._parameters.items():
            full = names[id(p)]
            grads[full] = p.grad
            lines.append(f"  produces dL/d({full}) {_value(p.grad, numbers)}" + beside(p.grad, f"grad:{full}"))
        if hasattr(m, "format_unrolled"):     # a recurrent layer: its steps, the newest first
            lines += ["  " + line for line in m.format_unrolled(numbers=numbers)]
        rows.append({"path": path, "type": type(m).__name__, "derivative": _derivative(m),
                     "grad_input": rec.grad_inputs[path], "grads": grads})
    all_match = None if ref is None else all(verdicts)
    if ref is not None:
        lines += ["", f"{'every value matches the torch twin ✓' if all_match else 'some values differ from the torch twin ✗'}"
                      f" (tolerance {tol:g} of each array's largest magnitude)"]
    return Explanation(lines, rows, all_match)
