"""Numerical differentiation: the gradient by central differences, ``gradcheck``, and training with it.

For the loss L(θ) = loss(model(x), y) and each parameter element θᵢ::

    ∂L/∂θᵢ ≈ (L(θ + hᵢ⁺eᵢ) − L(θ − hᵢ⁻eᵢ)) / (hᵢ⁺ + hᵢ⁻),   hᵢ± ≈ ε

where hᵢ⁺ = fl(θᵢ + ε) − θᵢ and hᵢ⁻ = θᵢ − fl(θᵢ − ε) are the steps actually taken once θᵢ ± ε
is rounded to the parameter's dtype (the textbook refinement of (L⁺ − L⁻) / 2ε; the two are the
same in exact arithmetic). Truncation error is O(ε²), rounding error about u·|L|/ε (u the dtype's
unit roundoff), so ε = 1e-6 suits float64 and float32 needs ε of 1e-3 or more.

Two ways to compute the same numbers, 2 forward passes per parameter element either way:

* ``method="loop"``: the element-by-element loop a student writes: perturb one element, run the
  whole model and the loss, twice, restore, next element.
* ``method="fast"`` (default): the model's leaves (a ``Sequential`` opened recursively) run once
  and each leaf's input and output are kept; then, layer by layer, the 2k perturbations of that
  layer's k parameter elements are stacked along a new leading axis and only the rest of the
  network (and the loss) runs, on the whole stack at once. For a ``Linear``, W + h·E_ab moves
  only output a, by h·x_b: the stack is the cached output with one column moved, element-wise
  activations run on that column alone, and the next Linear's output moves by the change times
  its weight's column a. Other layers run their own ``forward`` once per perturbation. The loss
  of every row of a stack comes from the loss itself (``Loss.per_row``).

  What can go through a stack is what the classes declare (``Module.elementwise``,
  ``Module.row_wise``; see ``handbp.module.declares``), not a list kept here: a layer that mixes
  the rows of a batch (``BatchNorm1d`` in training mode), or one whose class declares nothing (a
  custom module), cannot be stacked through: the parameters before it use the loop, with a
  warning naming the layer and the reason.

Nothing about the model changes: parameters are restored bit for bit, gradients and buffers are
left as they were, and the forward caches end up holding an ordinary forward pass at θ (so a
``model.backward(loss.backward())`` right after gives backprop's gradient at the same point).
"""
import warnings
from collections import OrderedDict

import numpy as np

from . import validate
from .dropout import Dropout
from .errors import describe
from .layers import Linear
from .losses import Loss
from .module import Module, declares, rows_independent
from .recording import leaves

__all__ = ["numerical_gradient", "gradcheck", "compare_gradients", "format_report", "numerical_step",
           "numerical_gradient_descent", "GradcheckError", "METHODS"]

METHODS = ("fast", "loop")
TINY = 1e-300            # floor of the relative error's denominator: 0 vs 0 is no error
BLOCK_ELEMENTS = 1 << 14      # a block of stacked rows holds about this many values per activation...
MAX_BLOCK_ELEMENTS = 1 << 20  # ...and never more than this


# -- checks ----------------------------------------------------------------------------------------
def _check_eps(eps, owner):
    return float(validate.number(owner, "eps", eps, low=0, low_open=True))


def _warn_small_eps(eps, dtype, owner):
    """Rounding error of a central difference is about u·|L|/ε: below ε = √u it swamps the signal."""
    limit = float(np.sqrt(np.finfo(dtype).eps))
    if eps < limit:
        hint = "use eps ≥ 1e-3 in float32, or model.double()" if dtype == np.float32 else \
            f"use eps ≥ {limit:.1e}"
        warnings.warn(f"{owner}: eps={eps:g} is below √(machine epsilon) of {dtype} ({limit:.1e}): "
                      f"L(θ + ε) − L(θ − ε) is dominated by rounding, so the numerical gradient is "
                      f"meaningless; {hint}", UserWarning, stacklevel=4)


def _check_model_and_loss(model, loss, owner):
    if not isinstance(model, Module):
        raise TypeError(f"{owner}: model: expected a handbp Module, got {describe(model)}")
    if not callable(loss):
        raise TypeError(f"{owner}: loss: expected a handbp loss such as hb.MeanSquaredError(), "
                        f"got {describe(loss)}")
    named = list(model.named_parameters(remove_duplicate=False))  # (every name, tied ones too)
    if not named:
        raise ValueError(f"{owner}: model: {type(model).__name__} has no parameters to differentiate")
    for path, m in model.named_modules():
        if isinstance(m, Dropout) and m.training and m.p > 0:
            where = f"layer '{path}'" if path else "the model"
            raise ValueError(f"{owner}: {where} ({m!r}) draws a new random mask on every forward in training "
                             f"mode, so the loss is not a function of the parameters; call model.eval() first")
    return named


def _loss_value(loss, pred, y, owner):
    value = loss(pred, y)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: loss: expected loss(pred, target) to return a number, got {describe(value)}")
    return float(value)


class _Preserved:
    """Saves what numerical differentiation could disturb and puts it back on exit, error or not:
    every parameter's values (bit for bit, in the same array) and gradient, every buffer (values,
    in the same object). On a normal exit the model and the loss are run once more at θ, so the
    forward caches describe θ, not the last perturbation."""

    def __init__(self, model, loss, x, y):
        self.model, self.loss, self.x, self.y = model, loss, x, y

    def __enter__(self):
        self.params = [(p, p.data, p.data.copy(), p.grad) for p in self.model.parameters()]
        self.buffers = []
        for _, m in self.model.named_modules():
            for name in m._buffers:
                buf = getattr(m, name)
                self.buffers.append((m, name, buf, np.array(buf, copy=True) if isinstance(buf, np.ndarray) else buf))
        return self

    def __exit__(self, exc_type, *exc):
        try:
            for p, data, saved, _ in self.params:
                p.data = data
                data[...] = saved
            if exc_type is None:
                self.loss(self.model.forward(self.x), self.y)
        finally:
            for p, _, _, grad in self.params:
                p.grad = grad
            for m, name, buf, saved in self.buffers:
                if isinstance(buf, np.ndarray):
                    buf[...] = saved
                object.__setattr__(m, name, buf)
        return False


# -- what the classes say about themselves ---------------------------------------------------------
def _row_losses(loss, y):
    """``f(preds) -> float64 array (R,)``: the loss of each of R predictions stacked along a new
    leading axis. A handbp loss says it itself (``Loss.per_row``, its own formula; row by row
    through its forward when its class writes a forward of its own without a ``per_row``); any
    other callable is called row by row."""
    if isinstance(loss, Loss):
        per_row = loss.per_row if declares(loss, "per_row") else lambda P, t: Loss.per_row(loss, P, t)
        return lambda P: per_row(P, y)
    return lambda P: np.array([loss(p, y) for p in P], dtype=np.float64)


def _elementwise(m):
    """``m`` says it is element-wise (``Module.elementwise``), for the forward it runs."""
    return declares(m, "elementwise") and m.elementwise


def _plain_linear(m):
    """``m`` runs Linear's own forward, y = x Wᵀ + b (a subclass may change its backward), which
    the Linear shortcut below works out without calling it."""
    return isinstance(m, Linear) and type(m).forward is Linear.forward and "forward" not in vars(m)


def _stack_input(stack):
    """(R, *S) → (R·S₀, *S[1:]) for a batched S, (R, S₀) for one sample."""
    return stack.reshape((-1,) + stack.shape[2:]) if stack.ndim > 2 else stack


def _run_suffix(suffix, stack, rows, out_shape):
    """Run the stacked inputs (R, *S) through the leaves ``suffix``; returns (R, *out_shape)."""
    h = _stack_input(stack)
    for _, m in suffix:
        h = m.forward(h)
    return h.reshape((rows,) + out_shape)


# -- the two methods -------------------------------------------------------------------------------
def _steps(values, eps):
    """θ ± ε rounded to the parameter's dtype, and the steps actually taken (float64)."""
    up = (values + values.dtype.type(eps)).astype(values.dtype)
    down = (values - values.dtype.type(eps)).astype(values.dtype)
    v64 = values.astype(np.float64)
    return up, down, up.astype(np.float64) - v64, v64 - down.astype(np.float64)


class _Loop:
    """The student's loop: for each element, set θᵢ ± ε, run ``loss(model(x), y)``, put θᵢ back."""

    def __init__(self, model, loss, x, y, eps):
        self.model, self.loss, self.x, self.y = model, loss, x, y
        self.eps = eps

    def gradient(self, p):
        data, eps = p.data, self.eps
        flat = data.reshape(-1)
        g = np.zeros(data.size, dtype=np.float64)
        model, loss, x, y = self.model, self.loss, self.x, self.y
        for i in range(data.size):
            old = flat[i]
            flat[i] = old + eps
            up, h_up = loss(model(x), y), float(flat[i]) - float(old)
            flat[i] = old - eps
            down, h_down = loss(model(x), y), float(old) - float(flat[i])
            flat[i] = old
            g[i] = (up - down) / (h_up + h_down)
        return g.reshape(data.shape)


def _fast(model, loss, x, y, eps, named, owner):
    """Layer by layer: the prefix once, the layer's perturbations stacked through the suffix."""
    leaf_list = leaves(model)
    inputs, h = [], x
    for path, m in leaf_list:
        inputs.append(h)
        h = m.forward(h)
    outputs = inputs[1:] + [h]
    pred0 = h
    row_loss = _row_losses(loss, y)
    # where each parameter lives; a parameter used by two leaves (tied weights) takes the loop
    owners = {}
    for i, (path, m) in enumerate(leaf_list):
        for _, p in m.named_parameters():
            owners.setdefault(id(p), set()).add(i)
    # blocked[i]: the first leaf after i that a stack cannot go through, and why
    blocked, first = [None] * len(leaf_list), None
    for i in range(len(leaf_list) - 1, -1, -1):
        blocked[i] = first
        reason = rows_independent(leaf_list[i][1], inputs[i])
        if reason is not None:
            first = (i, reason)
    loop = _Loop(model, loss, x, y, eps)
    grads, warned = {}, set()
    for i, (path, m) in enumerate(leaf_list):
        for _, p in m.named_parameters():
            if id(p) in grads:
                continue
            if len(owners[id(p)]) > 1 or blocked[i] is not None:
                if blocked[i] is not None and blocked[i][0] not in warned:
                    j, reason = blocked[i]
                    warned.add(j)
                    jp, jm = leaf_list[j]
                    warnings.warn(f"{owner}(method='fast'): layer '{jp}' ({jm!r}) cannot take a stack of "
                                  f"perturbed inputs: {reason}; the parameters before it use the element loop",
                                  UserWarning, stacklevel=4)
                grads[id(p)] = loop.gradient(p)
                continue
            suffix = leaf_list[i + 1:]
            row_elements = max(o.size for o in outputs[i:])
            if _plain_linear(m):
                grads[id(p)] = _linear_parameter(leaf_list, i, p, inputs, outputs, row_loss, eps, row_elements)
            else:
                grads[id(p)] = _generic_parameter(m, p, inputs[i], suffix, row_loss, pred0.shape, eps,
                                                  row_elements)
    return OrderedDict((name, grads[id(p)]) for name, p in named)


def _chunk(size, row_elements):
    """Elements per block (2 rows each): about 256 rows keep the matrix products efficient, and a
    block stays under 2²⁰ values per activation (8 MB in float64), whatever the batch."""
    rows = max(256, BLOCK_ELEMENTS // max(row_elements, 1))
    rows = min(rows, max(2, MAX_BLOCK_ELEMENTS // max(row_elements, 1)))
    return max(1, min(size, rows // 2))


def _linear_parameter(leaf_list, i, p, inputs, outputs, row_loss, eps, row_elements):
    """Perturbations of one Linear parameter, without a matrix product.

    W + h·E_ab changes z = x Wᵀ + b only in output a, by h·x_b (b + h·e_a by h): each row of the
    stack is the cached z with one entry per sample moved. Elementwise activations keep the change
    in that one column, so they run on the moved entries alone, and the next Linear's output moves
    by the change times its weight's column a: z' = z'(θ) + Δ·W'[:, a]. The stack becomes dense
    only there, and the rest of the network runs on it as usual.
    """
    m, x, z = leaf_list[i][1], inputs[i], outputs[i]
    j = i + 1
    while j < len(leaf_list) and _elementwise(leaf_list[j][1]):
        j += 1
    sparse = j < len(leaf_list) and _plain_linear(leaf_list[j][1])
    acts = [a for _, a in leaf_list[i + 1:j]]
    values = p.data.reshape(-1)
    up, down, h_up, h_down = _steps(values, eps)
    d_up, d_down = up - values, values - down        # the steps, in the parameter's dtype
    is_weight = p is m.weight
    n_in, batched = m.in_features, z.ndim == 2
    out_shape = outputs[-1].shape
    g = np.empty(values.size, dtype=np.float64)
    k = _chunk(values.size, row_elements)
    for start in range(0, values.size, k):
        idx = np.arange(start, min(start + k, values.size))
        kk, rows = len(idx), np.arange(2 * len(idx))
        step = np.concatenate([d_up[idx], -d_down[idx]])
        col = np.concatenate([idx, idx]) // (n_in if is_weight else 1)       # the output a each row moves
        # v: the moved entries, (2k,) for one sample, (2k, N) for a batch
        if is_weight:
            b = np.concatenate([idx, idx]) % n_in
            v = z[col] + step * x[b] if not batched else z[:, col].T + step[:, None] * x[:, b].T
        else:
            v = z[col] + step if not batched else z[:, col].T + step[:, None]
        if sparse:
            for act in acts:
                v = act.forward(v)
            before = outputs[j - 1]
            delta = v - (before[col] if not batched else before[:, col].T)
            w_col = leaf_list[j][1].weight.data.T[col]                    # (2k, out'): W'[:, a] per row
            stack = outputs[j] + (delta[:, None] * w_col if not batched else delta[:, :, None] * w_col[:, None, :])
            suffix = leaf_list[j + 1:]
        else:
            stack = np.empty((2 * kk,) + z.shape, dtype=z.dtype)
            stack[...] = z
            if batched:
                stack[rows[:, None], np.arange(z.shape[0])[None, :], col[:, None]] = v
            else:
                stack[rows, col] = v
            suffix = leaf_list[i + 1:]
        losses = row_loss(_run_suffix(suffix, stack, 2 * kk, out_shape) if suffix else stack)
        g[idx] = (losses[:kk] - losses[kk:]) / (h_up[idx] + h_down[idx])
    return g.reshape(p.data.shape)


def _generic_parameter(m, p, x, suffix, row_loss, out_shape, eps, row_elements):
    """Perturbations of any layer's parameter: the layer's own forward once per perturbation, the
    outputs stacked, the suffix once per block."""
    data = p.data
    flat = data.reshape(-1)
    up, down, h_up, h_down = _steps(flat.copy(), eps)
    out0 = m.forward(x)
    g = np.empty(flat.size, dtype=np.float64)
    k = _chunk(flat.size, row_elements)
    for start in range(0, flat.size, k):
        stop = min(start + k, flat.size)
        kk = stop - start
        stack = np.empty((2 * kk,) + out0.shape, dtype=out0.dtype)
        for j, i in enumerate(range(start, stop)):
            old = flat[i]
            flat[i] = up[i]
            stack[j] = m.forward(x)
            flat[i] = down[i]
            stack[kk + j] = m.forward(x)
            flat[i] = old
        losses = row_loss(_run_suffix(suffix, stack, 2 * kk, out_shape) if suffix else stack)
        g[start:stop] = (losses[:kk] - losses[kk:]) / (h_up[start:stop] + h_down[start:stop])
    return g.reshape(data.shape)


# -- the public functions ---------------------------------------------------------------------------
def numerical_gradient(model, loss, x, y, eps=1e-6, method="fast"):
    """∂L/∂θ for every parameter by central differences, L(θ) = loss(model(x), y).

    Args:
        model: a handbp Module (a ``Sequential`` or ``DNN`` for the fast method's stacking; any
            other module is perturbed element by element through its own forward).
        loss: a handbp loss (``hb.MeanSquaredError()``, ``hb.MSELoss()``, ``hb.CrossEntropyLoss()``,
            ``hb.BCEWithLogitsLoss()``), or any callable ``loss(pred, y)`` returning a number.
        x, y: the input (one sample ``(in,)`` or a batch ``(N, in)``) and the target, as the loss
            takes them.
        eps: the step ε > 0 (1e-6 for float64; float32 needs 1e-3 or more, and warns below √u).
        method: ``"fast"`` (default: cached prefix, perturbations stacked) or ``"loop"`` (the
            element-by-element loop). The two agree to rounding (about u·|L|/ε).

    Returns:
        OrderedDict ``name -> float64 array shaped like the parameter``, under the names of
        ``model.named_parameters(remove_duplicate=False)`` (a tied weight under each of its names).

    Raises:
        ValueError: eps ≤ 0 or not finite, unknown method, a model without parameters, a Dropout
            in training mode (the loss would be random), a non-finite loss at θ or at θ ± ε.
        TypeError: a model that is not a handbp Module, a loss that is not callable or does not
            return a number.

    The model is left as it was (see the module's docstring).
    """
    return _gradient(model, loss, x, y, eps, method, "numerical_gradient")[0]


def _gradient(model, loss, x, y, eps, method, owner):
    """numerical_gradient's work: returns (grads, L(θ))."""
    eps = _check_eps(eps, owner)
    validate.choice(owner, "method", method, METHODS)
    named = _check_model_and_loss(model, loss, owner)
    x = model.check_input(x, model.dtype)    # (floats of its dtype; integer indices for an Embedding first)
    _warn_small_eps(eps, model.dtype, owner)
    with _Preserved(model, loss, x, y):
        value = _loss_value(loss, model(x), y, owner)          # bad x, y or loss raise here, first
        if not np.isfinite(value):
            raise ValueError(f"{owner}: the loss at θ is {value}; a numerical gradient needs a finite loss")
        if method == "loop":
            loop = _Loop(model, loss, x, y, eps)
            done = {}
            grads = OrderedDict()
            for name, p in named:
                if id(p) not in done:
                    done[id(p)] = loop.gradient(p)
                grads[name] = done[id(p)]
        else:
            grads = _fast(model, loss, x, y, eps, named, owner)
    for name, g in grads.items():
        if not np.isfinite(g).all():
            i = tuple(int(v) for v in np.argwhere(~np.isfinite(g))[0])
            raise ValueError(f"{owner}: the loss is not finite at θ ± ε for '{name}'{list(i)} (ε = {eps:g}); "
                             f"the model overflows there, try a smaller eps or check the model")
    return grads, value


class GradcheckError(AssertionError):
    """Backprop's gradient and the numerical one differ. ``results`` holds one dict per parameter
    (see ``compare_gradients``); the message is the report."""

    def __init__(self, report, results):
        super().__init__(report)
        self.report, self.results = report, results


def compare_gradients(analytic, numerical, *, atol, rtol, modules=None):
    """Compare two ``name -> array`` gradients element by element.

    An element fails when |a − n| > atol + rtol · max(|a|, |n|): its relative error as CS231n
    defines it, |a − n| / max(|a|, |n|), exceeds rtol, and its absolute error exceeds atol (which
    keeps elements whose true gradient is ~0 from failing on rounding noise).

    Returns a list with one dict per parameter: ``name``, ``shape``, ``max_rel_error``,
    ``failed`` (count), ``size``, and the worst element (the largest relative error among failing
    elements, or among all when none fails): ``index``, ``analytic``, ``numerical``,
    ``abs_error``, ``rel_error``. ``modules`` (name → module description) labels the parameters.
    """
    results = []
    for name, n in numerical.items():
        a = np.asarray(analytic[name], dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        if a.shape != n.shape:
            raise ValueError(f"compare_gradients: '{name}': analytic gradient has shape {a.shape}, "
                             f"numerical {n.shape}")
        diff = np.abs(a - n)
        scale = np.maximum(np.abs(a), np.abs(n))
        rel = diff / np.maximum(scale, TINY)
        bad = diff > atol + rtol * scale
        r = {"name": name, "module": (modules or {}).get(name, ""), "shape": a.shape, "size": a.size,
             "failed": int(bad.sum()), "max_rel_error": float(rel.max()) if a.size else 0.0}
        if a.size:
            pick = np.where(bad, rel, -1.0) if bad.any() else rel
            i = np.unravel_index(int(np.argmax(pick)), a.shape)
            r.update(index=tuple(int(v) for v in i), analytic=float(a[i]), numerical=float(n[i]),
                     abs_error=float(diff[i]), rel_error=float(rel[i]))
        results.append(r)
    return results


def format_report(results, *, atol, rtol, eps, dtype, loss_value=None):
    """The table gradcheck prints: one line per parameter, the worst element of each failing one.
    ``loss_value``: L(θ), when the atol was scaled by it (gradcheck's default)."""
    failing = [r for r in results if r["failed"]]
    scaled = "" if loss_value is None else f" = 1e-8 · max(1, |L|), L = {loss_value:.4g}"
    head = (f"gradcheck {'failed' if failing else 'passed'}: {len(failing)} of {len(results)} parameters have "
            f"elements with |backprop − numerical| > atol + rtol·max(|backprop|, |numerical|) "
            f"(atol={atol:.3g}{scaled}, rtol={rtol:g}, eps={eps:g}, {dtype})")
    width = max(len(f"{r['name']} ({r['module']})" if r["module"] else r["name"]) for r in results)
    lines = [head, f"  {'parameter':<{width}}  {'shape':<12} {'max rel. error':>14}  failing"]
    for r in results:
        label = f"{r['name']} ({r['module']})" if r["module"] else r["name"]
        lines.append(f"  {label:<{width}}  {str(r['shape']):<12} {r['max_rel_error']:14.2e}  "
                     f"{r['failed']}/{r['size']}")
    for r in failing:
        lines.append(f"  worst element of '{r['name']}': index {list(r['index'])}: backprop {r['analytic']:.10e}, "
                     f"numerical {r['numerical']:.10e}, |difference| {r['abs_error']:.3e}, "
                     f"relative error {r['rel_error']:.3e}")
    lines.append("  relative error as CS231n: |a − n| / max(|a|, |n|); ≲1e-7 is right, ≳1e-2 is a bug "
                 "(near ReLU's kink or with float32, up to ~1e-4 can be right)")
    return "\n".join(lines)


def gradcheck(model, loss, x, y, *, eps=1e-6, atol=None, rtol=1e-5, raise_exception=True, method="fast"):
    """Check backprop's gradient of every parameter against central differences, in the spirit of
    ``torch.autograd.gradcheck``.

    Backprop's gradient is ``model.backward(loss.backward())`` after one forward at θ (the
    parameters' ``.grad`` are put back afterwards); the numerical one is
    ``numerical_gradient(model, loss, x, y, eps, method)``.

    Args:
        eps: the finite-difference step (1e-6).
        atol, rtol: an element fails when |a − n| > atol + rtol · max(|a|, |n|). The numerical
            gradient's own error is about u·|L|/ε (rounding; u the unit roundoff): measured up to
            3e-10 · max(1, |L|) in float64 with ε = 1e-6. So the default atol scales with the loss,
            1e-8 · max(1, |L(θ)|), and rtol is 1e-5; a bug (a missing factor, a wrong sign) shows
            relative errors of 1e-2 and more. (torch's defaults are a fixed atol 1e-5, rtol 1e-3.)
        raise_exception: raise ``GradcheckError`` (an AssertionError) with the report on failure
            (default), or warn with it and return False.
        method: ``"fast"`` or ``"loop"``, as ``numerical_gradient``.

    Returns:
        True when every element passes.

    Warns: UserWarning when the model is not float64 (a float32 check is coarse: use eps ≥ 1e-3
    and looser tolerances), and when eps is too small for the dtype.
    """
    owner = "gradcheck"
    eps = _check_eps(eps, owner)
    atol = validate.optional(validate.number, owner, "atol", atol, low=0)
    rtol = validate.number(owner, "rtol", rtol, low=0)
    raise_exception = validate.flag(owner, "raise_exception", raise_exception)
    named = _check_model_and_loss(model, loss, owner)
    dtype = model.dtype
    if dtype != np.float64:
        warnings.warn(f"{owner}: the model is {dtype}, not float64: finite differences lose most of their "
                      f"digits to rounding, so the check is coarse (use eps ≥ 1e-3 and loose tolerances, or "
                      f"check a float64 copy: model.double())", UserWarning, stacklevel=2)
    if not hasattr(loss, "backward"):
        raise TypeError(f"{owner}: loss: expected a handbp loss with a backward(), got {describe(loss)}")
    x = model.check_input(x, dtype)
    numerical, value = _gradient(model, loss, x, y, eps, method, owner)     # checks x, y and the loss first
    scaled_by = value if atol is None else None
    if atol is None:
        atol = 1e-8 * max(1.0, abs(value))
    saved = [(p, p.grad) for _, p in named]
    try:
        model.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        analytic = OrderedDict((name, np.zeros(p.shape) if p.grad is None else np.array(p.grad, dtype=np.float64))
                               for name, p in named)
    finally:
        for p, g in saved:
            p.grad = g
    modules = _module_names(model, named)
    results = compare_gradients(analytic, numerical, atol=atol, rtol=rtol, modules=modules)
    if not any(r["failed"] for r in results):
        return True
    report = format_report(results, atol=atol, rtol=rtol, eps=eps, dtype=dtype, loss_value=scaled_by)
    if raise_exception:
        raise GradcheckError(report, results)
    warnings.warn(report, UserWarning, stacklevel=2)
    return False


def _module_names(model, named):
    """parameter name → the type of the module that holds it ("0.weight" → "Linear")."""
    out = {}
    for path, m in model.named_modules():
        prefix = f"{path}." if path else ""
        for n in m._parameters:
            out[prefix + n] = type(m).__name__
    return {name: out.get(name, "") for name, _ in named}


# -- training by numerical gradients -----------------------------------------------------------------
def numerical_step(model, loss, optimizer, x, y, *, eps=1e-6, method="fast"):
    """One training step with finite differences in place of backprop.

    Sets every parameter's ``.grad`` to its numerical gradient (replacing what was there, as
    ``optimizer.zero_grad()`` followed by a backward would), then ``optimizer.step()``. Any handbp
    optimizer works, so the same optimizer can train one model by backprop and a copy by numerical
    gradients side by side.

    Returns:
        the loss at θ, before the update, as a float.
    """
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"numerical_step: optimizer: expected a handbp optimizer such as hb.optim.SGD, "
                        f"got {describe(optimizer)}")
    grads, value = _gradient(model, loss, x, y, eps, method, "numerical_step")
    for p, g in _unique(model, grads):
        p.grad = g.astype(p.dtype)
    optimizer.step()
    return value


def _unique(model, grads):
    """(Parameter, gradient) once per Parameter, even when two names share one (tied weights):
    ``named_parameters()`` yields a shared one once, under its first name."""
    for name, p in model.named_parameters():
        yield p, grads[name]


def numerical_gradient_descent(network, x, y, loss_obj, alpha=0.01, *, eps=1e-6, method="fast"):
    """The notebook's ``gradient_descent`` with the gradient from finite differences (its title):
    ``p ← p − alpha · ∂L/∂p`` for every parameter. Returns the loss before the update."""
    alpha = validate.number("numerical_gradient_descent", "alpha", alpha, low=0)
    grads, value = _gradient(network, loss_obj, x, y, eps, method, "numerical_gradient_descent")
    for p, g in _unique(network, grads):
        p.data -= alpha * g.astype(p.dtype)
    return value
