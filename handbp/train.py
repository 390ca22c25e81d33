"""A ``fit`` loop: epochs of shuffled mini-batches, returning the loss history."""
import sys

import numpy as np

from . import structure, validate
from .errors import ArgumentTypeError, describe
from .recording import Recorder, leaves
from .module import Module


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf: training stops at that step instead of going on with NaN."""


def first_nonfinite(model, x):
    """Where NaN or Inf first appears when ``model`` runs on ``x``: a parameter, or a module's output."""
    for name, p in model.named_parameters():
        if not np.isfinite(p.data).all():
            return f"parameter '{name}' holds non-finite values"
    leaf_list = leaves(model)
    state = model.state_dict()             # running statistics must not see this extra forward
    try:
        with np.errstate(all="ignore"), Recorder(leaf_list, keep=("outputs",)) as rec:
            model.forward(x)
    finally:
        model.load_state_dict(state)
    for path, m in leaf_list:
        out = rec.outputs.get(path)
        if out is not None and not all(np.isfinite(a).all() for a in structure.flatten(out) if a is not None):
            return f"the first non-finite value is the output of layer '{path}' ({type(m).__name__})"
    return "every module's output is finite, so the loss itself overflowed"


def batches(n, batch_size, shuffle, rng):
    """Index arrays covering range(n) in chunks of batch_size (the last one may be smaller)."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def fit(model, loss, optimizer, x, y, *, epochs=1, batch_size=32, shuffle=True, rng=None,
        progress=None, callback=None):
    """Train ``model`` on ``(x, y)`` and return the mean loss of each epoch.

    One step per mini-batch: forward, loss, ``optimizer.zero_grad()``, backward, ``optimizer.step()``.
    Gradients are cleared only once the loss is computed, so targets that do not fit the model's
    output raise with every parameter, gradient and optimizer state untouched.

    Args:
        x: inputs ``(N, ...)``; y: targets with the same first dimension.
        epochs: number of passes over the data. batch_size: samples per step (the last batch of
            an epoch may be smaller).
        shuffle: reshuffle the order each epoch, drawing from ``rng``.
        rng: ``np.random.Generator`` or seed (0 when omitted, so runs repeat exactly).
        progress: show a tqdm progress bar; by default only when stderr is a terminal.
        callback: called as ``callback(epoch, epoch_loss)`` after each epoch.

    Returns:
        list of floats, one mean loss per epoch.

    Raises:
        TrainingDiverged: the loss or a gradient became non-finite; the message names the epoch,
            the step, and the parameter or the first module whose output went NaN/Inf. The step
            that would have written NaN into the parameters is not taken.
    """
    if not isinstance(model, Module):
        raise TypeError(f"fit: model: expected a handbp Module, got {describe(model)}")
    if isinstance(loss, type) or not (callable(loss) and callable(getattr(loss, "backward", None))):
        raise ArgumentTypeError(f"fit: loss: expected a loss object such as hb.MSELoss(), got {describe(loss)}")
    if isinstance(optimizer, type) or not all(callable(getattr(optimizer, a, None)) for a in ("zero_grad", "step")):
        raise ArgumentTypeError(f"fit: optimizer: expected an optimizer object such as "
                                f"hb.optim.SGD(model.parameters(), lr=0.1), got {describe(optimizer)}")
    _check_optimizer_holds_the_model(model, optimizer)
    epochs = validate.integer("fit", "epochs", epochs, low=1)
    batch_size = validate.integer("fit", "batch_size", batch_size, low=1)
    shuffle = validate.flag("fit", "shuffle", shuffle)
    progress = validate.optional(validate.flag, "fit", "progress", progress)
    if callback is not None and not callable(callback):
        raise ArgumentTypeError(f"fit: callback: expected a callable or None, got {describe(callback)}")
    rng = validate.generator("fit", "rng", 0 if rng is None else rng)
    x = model.check_input(x, model.dtype)     # (floats of the model's dtype; an Embedding first takes indices)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"fit: x: expected one array of samples, got {describe(x)}")
    y = np.asarray(y)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"fit: x: expected at least one sample, got shape {x.shape}")
    if y.ndim < 1 or len(y) != len(x):
        raise ValueError(f"fit: y: expected {len(x)} targets (x has {len(x)} samples), got shape {y.shape}")
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, desc="fit", unit="epoch")
    history = []
    modes = [(m, m.training) for _, m in model.named_modules()]
    buffers = [(m, name) for _, m in model.named_modules() for name in m._buffers]
    model.train()
    try:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for step, idx in enumerate(batches(len(x), batch_size, shuffle, rng)):
                # targets the loss refuses are bad input, refused with the model as it was: the
                # forward before the loss has moved BatchNorm's running statistics, which are put
                # back (a diverged step keeps them, as a torch loop's forward would)
                saved = [np.array(getattr(m, name), copy=True) for m, name in buffers]
                try:
                    value = _step(model, loss, optimizer, x[idx], y[idx], epoch, step)
                except TrainingDiverged:
                    raise
                except Exception:
                    _restore(buffers, saved, modes)
                    raise
                total += value * len(idx)
                count += len(idx)
            history.append(total / count)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.4g}")
            if callback is not None:
                callback(epoch, history[-1])
    finally:
        if bar is not None:
            bar.close()
    return history


def _step(model, loss, optimizer, x, y, epoch, step):
    """One training step on the batch ``(x, y)``; returns its loss. Gradients are cleared only
    once the loss is computed, and the step is taken only if every gradient is finite."""
    value = loss(model(x), y)
    if not np.isfinite(value):
        raise TrainingDiverged(f"fit: at epoch {epoch}, step {step} the loss is {value}: "
                               f"{first_nonfinite(model, x)}; lower the learning rate or check the data")
    optimizer.zero_grad()
    model.backward(loss.backward())
    bad = next((n for n, p in model.named_parameters() if p.grad is not None and not np.isfinite(p.grad).all()),
               None)
    if bad is not None:
        raise TrainingDiverged(f"fit: at epoch {epoch}, step {step} the gradient of '{bad}' is not "
                               "finite (the step was not taken); lower the learning rate")
    optimizer.step()
    return value


def _check_optimizer_holds_the_model(model, optimizer):
    """An optimizer over none of the model's parameters would train nothing, silently."""
    groups = getattr(optimizer, "param_groups", None)
    params = model.parameters()
    if groups is None or not params:
        return
    held = {id(p) for g in groups for p in g["params"]}
    if not any(id(p) in held for p in params):
        raise ValueError("fit: optimizer: expected an optimizer over the model's parameters, got one that holds "
                         "none of them (build it from model.parameters())")


def _restore(buffers, saved, modes):
    """Put the buffers and the train/eval modes back as they were."""
    for (m, name), value in zip(buffers, saved):
        current = getattr(m, name)
        if isinstance(current, np.ndarray) and current.shape == value.shape and current.dtype == value.dtype:
            current[...] = value
        else:
            object.__setattr__(m, name, value)
    for m, mode in modes:
        object.__setattr__(m, "training", mode)


def accuracy(model, x, y):
    """Fraction of samples whose predicted class equals ``y``: argmax of the output for several
    outputs, ``output > 0`` (a logit) for one."""
    if not isinstance(model, Module):
        raise ArgumentTypeError(f"accuracy: model: expected a handbp Module, got {describe(model)}")
    out = model(x)
    pred = out.argmax(axis=-1) if out.shape[-1] > 1 else (out[..., 0] > 0).astype(np.int64)
    labels = np.asarray(y)
    # whole-number floats pass: a BCE target (0.0 / 1.0) is a label too
    kind_ok = labels.dtype.kind in "iub" or (labels.dtype.kind == "f" and bool(np.all(labels == np.round(labels))))
    if not kind_ok or labels.size != pred.size:
        validate.fail("accuracy", "y", f"{pred.size} class labels (whole numbers, one per sample, as the model's "
                      f"output {out.shape} gives)", y, ValueError if kind_ok or labels.dtype.kind == "f"
                      else ArgumentTypeError)
    return float(np.mean(pred == labels.reshape(pred.shape)))
