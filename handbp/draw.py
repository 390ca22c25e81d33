"""``draw``: a model as a computational graph, the shape of the array on every edge and, once a loss
and a target are given, the gradient norms of a backward pass.

It needs matplotlib (``pip install "handbp[plot]"``), imported when ``draw`` is called: the rest of
handbp runs without it.
"""
import copy

import numpy as np

from .errors import describe
from .recording import Recorder, leaves
from .losses import Loss
from .module import Module

PLOT_HINT = 'hb.draw needs matplotlib: install it with  pip install "handbp[plot]"'

# colours: modules, parameters, the loss, and the gradients written under the edges
MODULE, PARAM, LOSS, GRAD = "#dbe9f6", "#fdf2d0", "#f9dcdc", "#b03a2e"


def _shape(a):
    return "(" + ", ".join(map(str, np.shape(a))) + ("," if np.ndim(a) == 1 else "") + ")"


def _norm(a):
    return "‖·‖ none" if a is None else f"‖·‖ {np.linalg.norm(np.asarray(a, np.float64)):.3g}"


def _pass(model, loss, x, y):
    """A forward (and, with a loss, a backward) on copies: per leaf, its input, its output and the
    gradient that leaves it toward its input; each parameter's gradient; the loss's value."""
    model, loss = copy.deepcopy((model, loss))
    model.zero_grad()
    found = leaves(model)
    with Recorder(found) as rec:
        out = model(x)
        value = dpred = None
        if loss is not None:
            value = loss(out, y)
            dpred = loss.backward()
            model.backward(dpred)
    grads = {n: p.grad for n, p in model.named_parameters()}
    return found, rec, out, value, dpred, grads, {id(p): n for n, p in model.named_parameters()}


def draw(model, x, y=None, loss=None, *, path=None, ax=None, title=None):
    """Draw ``model`` as the computational graph of one forward pass on ``x``, left to right: the
    input, each leaf module (Sequentials opened) with its parameters above it, and the loss. Every
    edge carries the shape of the array that flows along it. With ``y`` and ``loss``, a backward
    pass is run too (on copies: the model is left as it was) and the norm of each gradient is
    written in red: under each edge, ‖dL/d(that array)‖; beside each parameter, ‖dL/dW‖.

    Args:
        model: a handbp Module. x: an input it accepts.
        y, loss: the target and a handbp loss (both, or neither).
        path: save the picture there (PNG, SVG, PDF: by the suffix).
        ax: a matplotlib Axes to draw into (default: a new Figure).
        title: a title (default: the model's class and the input's shape).

    Returns:
        the matplotlib Figure.
    """
    if not isinstance(model, Module) or isinstance(model, Loss):
        raise TypeError(f"draw: model: expected a handbp Module, got {describe(model)}")
    if (y is None) != (loss is None):
        raise ValueError("draw: y and loss: expected both (to draw the gradients) or neither, got "
                         f"{'y' if loss is None else 'loss'} alone")
    if loss is not None and not isinstance(loss, Loss):
        raise TypeError(f"draw: loss: expected a handbp loss, got {describe(loss)}")
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyBboxPatch  # noqa: F401  (matplotlib complete enough)
    except ImportError as e:
        raise ImportError(f"{PLOT_HINT}  ({e})") from None
    found, rec, out, value, dpred, grads, names = _pass(model, loss, x, y)
    n = len(found) + 1 + (loss is not None)
    if ax is None:
        fig = Figure(figsize=(min(2.1 * n, 24), 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.set_axis_off()
    ax.set_xlim(-0.9, 2.2 * (n - 1) + 0.9)
    ax.set_ylim(-1.55, 1.75)
    small = 8 if n <= 10 else 6

    def node(i, text, colour):
        ax.text(2.2 * i, 0, text, ha="center", va="center", fontsize=small + 1,
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="#555555"))

    def edge(i, shape, grad):
        x0, x1 = 2.2 * i + 0.62, 2.2 * (i + 1) - 0.62
        ax.annotate("", xy=(x1, 0), xytext=(x0, 0), arrowprops=dict(arrowstyle="->", color="#333333"))
        ax.text((x0 + x1) / 2, 0.13, shape, ha="center", va="bottom", fontsize=small)
        if grad is not None:
            ax.text((x0 + x1) / 2, -0.13, grad, ha="center", va="top", fontsize=small, color=GRAD)

    node(0, "x", "#eeeeee")
    for i, (p, m) in enumerate(found, start=1):
        node(i, f"{p or 'model'}\n{type(m).__name__}", MODULE)
        g = rec.grad_inputs.get(p) if loss is not None else None
        edge(i - 1, _shape(rec.inputs[p]), None if loss is None else _norm(g))
        params = list(m.named_parameters())
        for k, (local, prm) in enumerate(params):
            yk = 1.05 + 0.42 * k
            text = f"{local} {_shape(prm.data)}"
            if loss is not None:
                text += f"  {_norm(grads[names[id(prm)]])}"
            ax.text(2.2 * i, yk, text, ha="center", va="center", fontsize=small,
                    bbox=dict(boxstyle="round,pad=0.25", fc=PARAM, ec="#b59b3b"))
        if params:
            ax.annotate("", xy=(2.2 * i, 0.32), xytext=(2.2 * i, 0.85),
                        arrowprops=dict(arrowstyle="->", color="#b59b3b"))
    last = len(found)
    if loss is not None:
        node(last + 1, f"{type(loss).__name__}\nL = {value:.4g}", LOSS)
        edge(last, _shape(out), _norm(dpred))
        ax.text(2.2 * (last + 1), -0.95, f"target y {_shape(y)}", ha="center", va="center", fontsize=small,
                bbox=dict(boxstyle="round,pad=0.25", fc="#eeeeee", ec="#999999"))
        ax.annotate("", xy=(2.2 * (last + 1), -0.32), xytext=(2.2 * (last + 1), -0.78),
                    arrowprops=dict(arrowstyle="->", color="#999999"))
        ax.text(2.2 * (n - 1) + 0.9, -1.5, "red: ‖dL/d·‖ of a backward pass", ha="right", va="bottom",
                fontsize=small, color=GRAD)
    ax.set_title(title if title is not None else f"{type(model).__name__} on x {_shape(np.asarray(x))}",
                 fontsize=small + 2)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
