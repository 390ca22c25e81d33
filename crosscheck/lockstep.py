"""``lockstep``: one training step at a time on handbp and on its torch twin, compared at every step.

Per step, in causal order: each module's forward output (and buffers such as running statistics),
the loss, dL/dpred, each module's gradient with respect to its input (last module first), each
parameter's gradient, each parameter after the optimizer step, and the optimizer's state. The
first mismatch raises ``Divergence``; the report lists every other quantity that also mismatched.

Each step starts from handbp's state as it is at that moment, as a plain torch loop would: before
step k, handbp's parameters, buffers, the gradients of parameters outside the optimizer (they
accumulate, as in torch), every module's train/eval mode, the optimizer's param groups with every
hyperparameter, and its state are copied into the twin (``Twin.sync``). Whatever the user's loop
did between two steps (a scheduler, ``eval()``, weights or learning rates edited by hand, a param
group added) is followed, and a mismatch means that the same step, from the same state, gave
different results. The twin's optimizer clears the gradients of its own parameters only, as
``zero_grad`` does.

This also keeps errors from compounding: two correct implementations drift apart when run freely
(rounding differences grow with the dynamics), and each step here measures only its own error.
State is compared after the step, before the next copy, so a bug in how it is stored is caught;
the state an optimizer's constructor makes (Adagrad's ``sum``) is compared with torch's before the
first step (``built_state``). An optimizer that divides by a gradient's size (Adam, RMSprop,
Adagrad; not SGD, whose update is linear in it) steps on the twin's side with handbp's gradient of
each parameter whose gradient agrees with the twin's (``Twins._agreeing``): the update then carries
only the optimizer's rounding, not the gradients' (a gradient that is pure rounding noise, divided
by its own size, differs by 100%), while a wrong gradient still shows in the update.
With ``resync=False`` a third, free-running twin (it follows modes and hyperparameters, not
values) records the drift per step beside the per-step checks, so the drift can be seen, and told
apart from a bug.

A mismatch is rechecked on the module alone before it is reported (``crosscheck.recheck``): where a
gradient cancels, rounding amplified on its way through the network is not called a bug.

The parts: ``Plan`` (names, labels and keys, made once per run), ``Side`` (handbp's step,
recorded), ``Twins`` (the torch side), ``gather`` (the quantities of a step, in causal order),
``judge`` (the tolerance rule on all of them at once, then the recheck), and the report.

While it runs, NumPy's BLAS pool and torch's share the threads torch has (``threads_taking_turns``):
they take turns within each step, and at full size each, one's idle threads spin while the other
works. Both are restored afterwards.
"""
import time

import numpy as np

import handbp as hb
from handbp.errors import describe
from handbp.recording import Recorder, leaves
from handbp.structure import flatten, flatten_like, map_structure, names

from ._torch import require_torch, threads_taking_turns
from .compare import Check, Layout, evaluate_arrays, max_rel
from .diagnose import diagnose
from .mirror import SUPPORTED_DTYPES
from .recheck import recheck
from .report import Divergence, NonFiniteError
from .tolerance import default_tolerance, elementwise_allowed, scaled_atol
from .trace import Trace
from .twin import Twin, group_layout


def lockstep(model, loss, optimizer, data, *, rtol=None, atol=None, resync=True, raise_on_divergence=True):
    """Train ``model`` one step per ``(x, y)`` in ``data`` on handbp and on a torch twin, and
    compare every quantity of every step.

    A step is ``optimizer.zero_grad()``, forward, loss, backward, ``optimizer.step()``; code the
    caller runs between steps (from the data iterator: a scheduler, ``eval()``, edits) is followed
    by the twin, which starts each step from handbp's state.

    Args:
        model: a handbp Module (its torch twin is built by ``mirror``).
        loss: a handbp loss. optimizer: a handbp optimizer over ``model``'s parameters.
        data: iterable of ``(x, y)`` batches; at least one.
        rtol, atol: override the default tolerance (see ``crosscheck.tolerance``).
        resync: ``False`` also runs a free twin and records its drift (the compared twin
            always starts each step from handbp's state, so errors never compound).
        raise_on_divergence: raise ``Divergence`` at the first mismatch (default); else stop
            there and return the trace with ``trace.divergence`` set.

    Returns:
        Trace. Raises Divergence (an AssertionError) at the first mismatch.
    """
    _check_arguments(model, loss, optimizer, data, resync, raise_on_divergence)
    torch = require_torch()
    tol = default_tolerance(model.dtype, rtol, atol)
    ratio_tol = 1e-6 if np.dtype(model.dtype) == np.float64 else 1e-3   # how constant a "factor" must be
    plan = Plan(model, loss, optimizer)
    twins = Twins(model, loss, optimizer, plan, tol, resync)
    trace = Trace(tol, np.dtype(model.dtype), resync)
    previous_grads = {}
    masks = MaskCounts(plan)
    t0 = time.perf_counter()
    rec = Recorder(plan.leaf_list, keep=("outputs", "grad_inputs"))
    with rec, threads_taking_turns(torch):     # (see threads_taking_turns: the pools would fight)
        for step, item in enumerate(data):
            x, y = _pair(item, step)
            plan.follow(optimizer)             # the user's loop may have changed anything since the last step
            twins.sync(plan, optimizer)
            built = built_state(plan, optimizer, twins, tol, step, x, ratio_tol)
            if built is not None:
                return _stopped(trace, built, t0, raise_on_divergence)
            before = {n: p.data.copy() for n, p in plan.params}
            side = Side.run(model, loss, optimizer, x, y, rec, plan)
            tw, rf = twins.step(x, y, side)
            rows = gather(plan, side, tw, rf, twins, optimizer)
            where = Where(plan, side, x, before, previous_grads)
            layout, result, failing = judge(plan, rows, tol, step, where)
            if failing and side.error is None:
                failing = recheck(failing, twins.judge, tol, where)
            if not failing and side.error is None:
                wrong = masks.count(plan, side)
                if wrong is not None:
                    return _stopped(trace, masks.divergence(wrong, step, tol, x), t0, raise_on_divergence)
            if side.error is not None and not failing:
                raise side.error
            if not failing and result.nonfinite.any():
                k = int(np.flatnonzero(result.nonfinite)[0])
                raise NonFiniteError(step, layout.labels[k], result.nonfinite[k], np.size(rows[k][1]))
            trace.record(layout, result)
            if side.value is not None:
                trace.losses.append(float(side.value))
                trace.torch_losses.append(tw["loss"])
            if twins.free is not None:
                trace.drift.append(twins.drift(plan))
            if failing:
                return _stopped(trace, _divergence(step, failing, tol, ratio_tol, x, side), t0, raise_on_divergence)
            previous_grads = side.grads or {}
    if not len(trace):
        raise ValueError("lockstep: data: expected at least one (x, y) pair, got none: a check of zero steps "
                         "would pass on nothing")
    trace.elapsed = time.perf_counter() - t0
    return trace


def _stopped(trace, divergence, t0, raise_on_divergence):
    """The trace of a run stopped at ``divergence``, or the divergence raised when asked to."""
    trace.divergence, trace.elapsed = divergence, time.perf_counter() - t0
    if raise_on_divergence:
        raise divergence
    return trace


def _check_arguments(model, loss, optimizer, data, resync, raise_on_divergence):
    if not isinstance(model, hb.Module):
        raise TypeError(f"lockstep: model: expected a handbp Module, got {type(model).__name__}")
    if not isinstance(loss, hb.Loss):
        raise TypeError(f"lockstep: loss: expected a handbp loss, got {type(loss).__name__}")
    if not isinstance(optimizer, hb.optim.Optimizer):
        raise TypeError(f"lockstep: optimizer: expected a handbp optimizer, got {type(optimizer).__name__}")
    for name, flag in (("resync", resync), ("raise_on_divergence", raise_on_divergence)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"lockstep: {name}: expected True or False, got {describe(flag)}")
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(f"lockstep: data: expected an iterable of (x, y) pairs, got {describe(data)}")
    dtype = np.dtype(model.dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"lockstep: model: dtype {dtype} is not supported; crosscheck compares models of "
                        f"dtype {' or '.join(map(str, SUPPORTED_DTYPES))} (convert with model.to(np.float32))")


def _pair(item, step):
    """One item of lockstep's ``data`` as ``(x, y)``, or a TypeError saying what it is."""
    try:
        x, y = item
    except (TypeError, ValueError):
        raise TypeError(f"lockstep: data: item {step}: expected an (x, y) pair, got {describe(item)}") from None
    return (np.asarray(x) if type(x) is not tuple else map_structure(np.asarray, x)), y


# -- what stays the same through a run -----------------------------------------------------
class Plan:
    """Names, labels and the keys ``(label, quantity)`` of every quantity a step compares, made
    once per run: per leaf module (outputs, input gradients), per parameter (gradient, value,
    optimizer state), per buffer, and the loss. ``follow(optimizer)`` keeps the list of the
    optimizer's parameters current (a param group may be added between steps)."""

    def __init__(self, model, loss, optimizer):
        self.leaf_list = leaves(model)
        self.paths = [p for p, _ in self.leaf_list]
        self.modules = [m for _, m in self.leaf_list]
        self.params = list(model.named_parameters())
        self.names = {id(p): n for n, p in self.params}
        owner = {id(p): m for _, m in model.named_modules() for p in m._parameters.values()}
        self.label = {n: f"{n} ({type(owner[id(p)]).__name__})" for n, p in self.params}
        self.param_of = {lab: n for n, lab in self.label.items()}
        self.buffers = [(f"{path}.{b}" if path else b, (m, b)) for path, m in model.named_modules() for b in m._buffers]
        leaf_labels = self.leaf_labels = [f"{path or 'model'} ({type(m).__name__})" for path, m in self.leaf_list]
        self.leaf_index = {lab: i for i, lab in enumerate(leaf_labels)}
        for n, _ in self.params:            # a parameter's label -> the index of the leaf that owns it
            i = max((i for i, p in enumerate(self.paths) if p == "" or n.startswith(p + ".")),
                    key=lambda i: len(self.paths[i]), default=None)
            if i is not None:
                self.leaf_index[self.label[n]] = i
        self.out_keys = [(lab, "output") for lab in leaf_labels]
        self.gin_keys = [(lab, "grad_input") for lab in leaf_labels]
        self.buf_keys = {b: (f"{b} ({type(m).__name__})", "buffer") for b, (m, _) in self.buffers}
        self.grad_keys = {n: (self.label[n], "grad") for n, _ in self.params}
        self.param_keys = {n: (self.label[n], "param") for n, _ in self.params}
        loss_label = f"loss ({type(loss).__name__})"
        self.loss_key, self.dpred_key = (loss_label, "loss"), (loss_label, "grad_pred")
        self._state_keys, self._part_keys, self.layouts, self.layout = {}, {}, {}, None
        self.opt_layout = None
        self.follow(optimizer)

    def follow(self, optimizer):
        """``opt_named``: ``(parameter, name)`` for each parameter the optimizer updates."""
        now = group_layout(optimizer)
        if now == self.opt_layout:
            return
        named = []
        for i, g in enumerate(optimizer.param_groups):
            for p in g["params"]:
                if id(p) not in self.names:
                    raise ValueError(f"lockstep: optimizer: param group {i} updates a parameter that is not "
                                     "in the model")
                named.append((p, self.names[id(p)]))
        self.opt_layout, self.opt_named = now, named

    def state_key(self, name, key):
        k = self._state_keys.get((name, key))
        if k is None:
            k = self._state_keys[(name, key)] = (self.label[name], f"state.{key}")
        return k

    def part_keys(self, i, base, tree):
        """The keys of the arrays of a tuple that leaf ``i`` returned (``base`` "output") or got the
        gradients of (``base`` "grad_input"): the first array is ``base`` itself, each other
        ``base.name``, named by the module (``output.h_n``, ``grad_input.h_0``), or for a gradient
        by the module before it, else by position. (Named under the kind "output" or "grad_input",
        so the tolerance rule and the diagnosis treat them as such.)"""
        m = self.modules[i]
        declared = getattr(m, "output_names" if base == "output" else "input_names", None)
        if declared is None and base == "grad_input" and i > 0:
            declared = getattr(self.modules[i - 1], "output_names", None)
        parts = tuple(names(tree, declared))
        keys = self._part_keys.get((i, base, parts))
        if keys is None:
            label = self.leaf_labels[i]
            keys = self._part_keys[(i, base, parts)] = [(label, base if k == 0 else f"{base}.{n}")
                                                        for k, n in enumerate(parts)]
        return keys

    def layout_for(self, keys):
        """The ``Layout`` of this list of keys (they repeat step after step: compared by identity)."""
        if self.layout is None or keys != self.layout.keys:
            self.layout = self.layouts.get(keys)
            if self.layout is None:
                self.layout = self.layouts[keys] = Layout(keys)
        return self.layout


# -- handbp's side of a step ---------------------------------------------------------------
class Side:
    """handbp's step, recorded: the prediction ``out``, the loss ``value``, ``dpred`` (dL/dpred),
    every parameter's gradient after the backward (``grads``, copies), each leaf's output and
    returned input gradient (the recorder's ``outputs``, ``grad_inputs``), how far it got
    (``reached``: 1 loss, 2 gradients, 3 updated) and the ``error`` that stopped it, if any. An
    exception part-way is held back: what was computed before it is still compared, as a wrong
    shape often makes a later phase fail, and the Divergence explains why."""

    __slots__ = ("out", "value", "dpred", "grads", "reached", "error", "outputs", "grad_inputs", "paths", "x")

    @classmethod
    def run(cls, model, loss, optimizer, x, y, rec, plan):
        side = cls()
        side.out = side.value = side.dpred = side.grads = side.error = None
        side.reached, side.paths, side.x = 0, plan.paths, x
        side.outputs, side.grad_inputs = rec.outputs, rec.grad_inputs
        rec.outputs.clear()
        rec.grad_inputs.clear()
        try:
            optimizer.zero_grad()
            side.out = model(x)
            side.value = loss(side.out, y)
            side.reached = 1
            side.dpred = loss.backward()
            model.backward(side.dpred)
            side.grads = {n: (None if p.grad is None else p.grad.copy()) for n, p in plan.params}
            side.reached = 2
            optimizer.step()
            side.reached = 3
        except Exception as e:   # noqa: BLE001 - re-raised by lockstep unless a mismatch explains it
            side.error = e
            _mark_phase(e, side.reached)
        return side

    def input_of(self, i, x):
        """The input handbp's leaf ``i`` received (None if it never ran)."""
        return x if i == 0 else self.outputs.get(self.paths[i - 1])

    def upstream_of(self, i):
        """The gradient handbp's leaf ``i`` received in the backward (None if it never got one)."""
        return self.dpred if i == len(self.paths) - 1 else self.grad_inputs.get(self.paths[i + 1])


PHASES = ("forward", "backward", "step")     # where handbp's step stopped, by ``Side.reached``


def _mark_phase(error, reached):
    """Say on the exception that stopped handbp's step which phase raised it (``lockstep_phase``:
    ``"forward"`` for the model or the loss, ``"backward"``, or the optimizer's ``"step"``): the
    phases after it could not run, which the grading plugin scores as failed."""
    try:
        error.lockstep_phase = PHASES[reached]
    except (AttributeError, TypeError):     # an exception type that takes no attributes
        pass


class Where:
    """What the recheck and the diagnosis need of a step: handbp's recorded ``side``, its input
    ``x``, the parameters ``before`` the step, the previous step's gradients, and the plan's map
    from labels to leaves."""

    def __init__(self, plan, side, x, before, previous_grads):
        self.plan, self.side, self.x, self.before, self.previous_grads = plan, side, x, before, previous_grads
        self.leaf_index, self.modules = plan.leaf_index, plan.modules

    def _prefix(self, i):
        return f"{self.plan.paths[i]}." if self.plan.paths[i] else ""

    def local_params(self, i):
        """Leaf ``i``'s parameters before the step, by local name."""
        prefix = self._prefix(i)
        return {n[len(prefix):]: v for n, v in self.before.items() if n.startswith(prefix)}

    def local_name(self, i, label):
        """The local name, in leaf ``i``, of the parameter a label names."""
        return label.split(" ")[0][len(self._prefix(i)):]


# -- the torch side ----------------------------------------------------------------------
class Twins:
    """The torch twin (``twin``), in float32 mode the float64 reference run on handbp's inputs
    (``ref``; it also judges the recheck), and with ``resync=False`` a free-running twin."""

    def __init__(self, model, loss, optimizer, plan, tol, resync):
        self.tol = tol
        self.twin = Twin(model, loss, optimizer, plan.paths)
        self.ref = Twin(model, loss, optimizer, plan.paths, dtype=np.float64) if tol.mode == "float32-rule" else None
        self.free = Twin(model, loss, optimizer, plan.paths) if not resync else None
        self.judge = self.twin if self.ref is None else self.ref
        # SGD's update is linear in the gradient: a gradient's rounding noise moves it by lr times
        # that noise, which the parameters' tolerance allows, so its twin keeps its own gradients
        # (and lockstep the cost of choosing). Adam, RMSprop and Adagrad divide by the gradient's
        # size and turn noise into a whole step: see _agreeing.
        self.normalizing = not isinstance(optimizer, hb.optim.SGD)

    def sync(self, plan, optimizer):
        for t in (self.twin, self.ref):
            if t is not None:
                t.sync(plan.params, plan.buffers, optimizer)
        if self.free is not None:
            self.free.sync(plan.params, plan.buffers, optimizer, values=False)

    def step(self, x, y, side):
        """The twins' steps: their own (float64), or module by module on handbp's inputs (float32,
        once handbp has its gradients). Returns the twin's values and the reference's (or None)."""
        try:
            if self.ref is None:      # (the update from handbp's gradients, once it has them: see _agreeing)
                chosen = self._agreeing(side) if side.reached >= 3 and self.normalizing else None
                tw, rf = self.twin.step(x, y, update_with=chosen), None
            elif side.reached >= 2:
                tw, rf = self.twin.local_step(x, y, side), self.ref.local_step(x, y, side)
            else:   # handbp failed before its gradients: compare the twins' own steps
                tw, rf = self.twin.step(x, y), self.ref.step(x, y)
            if self.free is not None:
                self.free.step(x, y, record=False)
        except Exception:
            if side.error is not None:
                raise side.error from None     # bad input: handbp's own error says what is wrong
            raise
        return tw, rf

    def _agreeing(self, side):
        """What the twin's optimizer steps with (float64): handbp's gradient of each parameter whose
        gradient agrees with the twin's own under the tolerance rule, the twin's own elsewhere.

        Where they agree, the update then carries only the optimizer's rounding: a gradient that is
        pure rounding noise (a bias before a BatchNorm: exactly 0 in exact arithmetic, passed by the
        noise floor of ``scaled_atol``) differs by 100% between two correct sides, and Adagrad or
        centered RMSprop divides it by its own size, so the two updates from it differ by ±lr.
        Where they disagree (a bug in the backward), the twin keeps its own: the update shows what
        the wrong gradient did, as a plain torch loop would."""
        tol, mine = self.tol, side.grads

        def choose(own):
            names = [n for n, b in own.items()
                     if b is not None and b.size and (a := mine.get(n)) is not None and a.shape == b.shape]
            if not names:
                return {}
            # every parameter in one pass (this runs on every step): the rule per element, as the
            # judge applies it, then "all of its elements pass" per parameter; NaN and Inf fail
            sizes = [own[n].size for n in names]
            starts = np.cumsum([0] + sizes[:-1])
            a = np.concatenate([mine[n].ravel() for n in names])
            b = np.concatenate([own[n].ravel() for n in names])
            abs_b = np.abs(b)
            scale = np.maximum.reduceat(abs_b, starts)
            compared = set(names)
            rest = [float(np.abs(v).max(initial=0.0)) for n, v in own.items() if v is not None and n not in compared]
            atol = scaled_atol(tol, scale, max([float(scale.max())] + rest))    # (the peak of all gradients)
            passes = np.abs(a - b) <= elementwise_allowed(tol, np.repeat(atol, sizes), abs_b)
            # (slices of ``a``, a copy nobody else holds: the twin takes them as its gradients uncopied)
            return {n: a[i:i + size].reshape(mine[n].shape)
                    for n, i, size, ok in zip(names, starts, sizes, np.logical_and.reduceat(passes, starts)) if ok}
        return choose

    def drift(self, plan):
        """The largest relative difference between handbp's parameters and the free twin's."""
        worst = 0.0
        for n, p in plan.params:
            scale = max(float(np.abs(p.data).max(initial=0.0)), 1e-300)
            worst = max(worst, float(np.abs(p.data - self.free.views[n]).max(initial=0.0)) / scale)
        return worst


# -- the quantities of a step, in causal order --------------------------------------------
def gather(plan, side, tw, rf, twins, optimizer):
    """``(key, handbp's value, the twin's, the float64 reference's or None)`` for every quantity
    handbp got to: outputs and buffers, the loss, dL/dpred, input gradients (last leaf first),
    parameter gradients, then the optimizer state and the updated parameters."""
    rows = []
    add, ref = rows.append, twins.ref
    for i, path in enumerate(plan.paths):
        if path in side.outputs:
            mine = side.outputs[path]
            if type(mine) is np.ndarray:
                add((plan.out_keys[i], mine, tw["outputs"][i], rf and rf["outputs"][i]))
            else:                  # several outputs: one quantity per array
                theirs = tw["outputs"][i]
                _add_parts(rows, plan.part_keys(i, "output", mine), flatten(mine), flatten_like(theirs, mine),
                           rf and flatten_like(rf["outputs"][i], mine))
    if side.reached >= 1:          # (buffers move in the forward: unless handbp finished it, nothing to compare)
        for b, (m, attr) in plan.buffers:
            add((plan.buf_keys[b], getattr(m, attr), twins.twin.views[b], rf and ref.views[b]))
        add((plan.loss_key, np.float64(side.value), np.float64(tw["loss"]), rf and np.float64(rf["loss"])))
    if side.dpred is not None:
        add((plan.dpred_key, side.dpred, tw["grad_pred"], rf and rf["grad_pred"]))
    for i in reversed(range(len(plan.paths))):
        if plan.paths[i] in side.grad_inputs:
            mine, theirs = side.grad_inputs[plan.paths[i]], tw["grad_inputs"][i]
            if type(theirs) is list:       # several inputs: one quantity per array
                like = side.input_of(i, side.x)
                _add_parts(rows, plan.part_keys(i, "grad_input", like), flatten_like(mine, like), theirs,
                           rf and rf["grad_inputs"][i])
            elif mine is not None or theirs is not None:     # (integer indices have no gradient on either side)
                add((plan.gin_keys[i], mine if mine is None or type(mine) is np.ndarray else None, theirs,
                     rf and rf["grad_inputs"][i]))
    if side.reached >= 2:
        for n, _ in plan.params:
            add((plan.grad_keys[n], side.grads[n], tw["grads"][n], rf and rf["grads"][n]))
    if side.reached >= 3:
        rows += _state_rows(plan, optimizer, twins, rf is not None)
        for n, p in plan.params:
            add((plan.param_keys[n], p.data, twins.twin.views[n], rf and ref.views[n]))
    return rows


def _array_or_none(v):
    """handbp's value as a row holds it: an array, or None for anything else (a tuple where torch
    has one array: reported as missing)."""
    return v if v is None or isinstance(v, np.ndarray) else None


def _add_parts(rows, keys, mine, theirs, ref):
    """One row per array of a tuple, skipping those that neither side has (a gradient that
    reached no input: h_n unused, an initial state not given)."""
    for k, key in enumerate(keys):
        a, b = _array_or_none(mine[k]), theirs[k] if k < len(theirs) else None
        if a is not None or b is not None:
            rows.append((key, a, b, ref and ref[k]))


def _state_rows(plan, optimizer, twins, with_ref):
    """The optimizer state of each of its parameters, entry by entry, on every side."""
    rows, twin, ref = [], twins.twin, twins.ref
    for p, n in plan.opt_named:
        mine, theirs = optimizer.state.get(p), twin.optimizer.state.get(twin.mapping[p])
        if not mine and not theirs:
            continue
        mine, theirs = mine or {}, theirs or {}
        refs = ref.optimizer.state.get(ref.mapping[p], {}) if with_ref else {}
        for key in sorted(set(mine) | set(theirs)) if mine.keys() != theirs.keys() else mine:
            a = mine.get(key)
            a = None if a is None else np.asarray(a, dtype=np.float64 if key == "step" else None)
            rows.append((plan.state_key(n, key), a, _state_value(theirs.get(key)),
                         with_ref and _state_value(refs.get(key))))
    return rows


def _state_value(v):
    if v is None:
        return None
    if hasattr(v, "detach"):
        return v.detach().numpy().astype(np.float64) if v.ndim == 0 else v.detach().numpy()
    return np.asarray(v, dtype=np.float64)


def built_state(plan, optimizer, twins, tol, step, x, ratio_tol):
    """The optimizer state handbp's constructor made (Adagrad's ``sum``, before any step) against
    the state torch's constructor makes, once per twin optimizer built: sync copies handbp's state
    into the twin before every step, so without this a wrong initial state would be copied over and
    never seen. Only a parameter whose handbp state has ``step`` 0 is compared (a state loaded or
    carried from earlier steps is the user's). Returns a ``Divergence``, or None."""
    built = [t.constructed if t is not None else {} for t in (twins.twin, twins.ref)]
    twins.twin.constructed = {}
    if twins.ref is not None:
        twins.ref.constructed = {}
    rows = []
    for p, n in plan.opt_named:
        mine, theirs = optimizer.state.get(p), built[0].get(p)
        if not mine or not theirs or "step" not in mine or float(mine["step"]) != 0:
            continue
        refs = built[1].get(p, {})
        for key in sorted(set(mine) | set(theirs)):
            a = mine.get(key)
            a = None if a is None else np.asarray(a, dtype=np.float64 if key == "step" else None)
            rows.append((plan.state_key(n, key), a, theirs.get(key), refs.get(key)))
    if not rows:
        return None
    columns = tuple(zip(*rows))
    _, failing = _evaluate(Layout(columns[0]), columns, tol)
    if not failing:
        return None
    others = [f"(before step {step}: the state {type(optimizer).__name__}'s constructor made, against the "
              "state torch's own constructor makes with the same param groups)"]
    others += [f"{c.label}: max rel {max_rel(c):.3g}" for c in failing[1:]]
    return Divergence(step, failing[0], tol, _context(x, None), others, ratio_tol, [c.quantity for c in failing])


class MaskCounts:
    """How often each Dropout of the model kept an element, over the run, against Bernoulli(1 − p).

    The twin drops what handbp's mask drops (torch cannot draw the same random numbers), so a mask
    drawn wrong (kept with probability p instead of 1 − p) would pass every comparison: its
    frequency is the one thing left to check. Reported when the count of kept elements is further
    from its mean than Bernstein's inequality allows at a probability of e^−``LOG_ODDS`` (about
    1e-15) per check, ``L/3 + √(L²/9 + 2Lσ²)``: about 8.4 σ for large counts, and never below
    23 elements for rare drops, where the normal approximation fails; for p = 0 or 1 (no
    randomness) a count other than all or nothing."""

    LOG_ODDS = 35.0

    def __init__(self, plan):
        self.leaves = [(i, path, m) for i, (path, m) in enumerate(plan.leaf_list) if isinstance(m, hb.Dropout)]
        self.labels = plan.leaf_labels
        self.counts = {i: [0, 0, 0.0, 0.0] for i, _, _ in self.leaves}    # kept, drawn, mean, variance

    def count(self, plan, side):
        """Add this step's masks; the first Dropout whose count is out of bounds, else None."""
        for i, path, m in self.leaves:
            mask = m.last_mask
            if not m.training or path not in side.outputs or mask is None or not 0 <= m.p <= 1:
                continue
            c = self.counts[i]
            n = int(np.size(mask))
            c[0] += int(np.count_nonzero(mask))
            c[1] += n
            c[2] += n * (1 - m.p)
            c[3] += n * m.p * (1 - m.p)
            L = self.LOG_ODDS
            if abs(c[0] - c[2]) > (L / 3 + (L * L / 9 + 2 * L * c[3]) ** 0.5 if c[3] > 0 else 0.5):
                return i, m
        return None

    def divergence(self, wrong, step, tol, x):
        i, m = wrong
        kept, drawn, mean, var = self.counts[i]
        check = Check(self.labels[i], "mask", np.array([kept / drawn]), np.array([mean / drawn]))
        check.result = {"max_abs": abs(kept - mean) / drawn, "mismatched": 1, "total": 1}
        d = Divergence(step, check, tol, _context(x, None))
        d.hint = "forward"
        d.diagnosis = (f"handbp's {type(m).__name__} kept {kept} of the {drawn} elements its masks drew up to this "
                       f"step ({kept / drawn:.1%}), where Bernoulli(1 − p) with p = {m.p:g} keeps {mean / drawn:.1%} "
                       f"(± {var ** 0.5 / drawn:.1%}): its mask is drawn wrong (the twin drops what handbp's mask "
                       "drops, so only how often it keeps can be checked)")
        d.args = (d.report(),)
        return d


# -- the verdict -------------------------------------------------------------------------
def judge(plan, rows, tol, step, where):
    """Every quantity of the step under the tolerance rule at once; a ``Check`` (with what its
    diagnosis needs) for each mismatch. Returns ``(layout, result, failing)``."""
    if not rows:
        if where.side.error is not None:
            raise where.side.error
        raise ValueError(f"lockstep: step {step} compared no quantity (handbp's step produced nothing to "
                         "compare), so it proves nothing")
    columns = tuple(zip(*rows))
    layout = plan.layout_for(columns[0])

    def context(name, quantity):
        n = plan.param_of.get(name)
        return dict(before=where.before[n] if quantity == "param" else None,
                    grad=where.side.grads[n] if quantity.startswith("state.") else None,
                    previous=where.previous_grads.get(n) if quantity == "grad" else None)
    result, failing = _evaluate(layout, columns, tol, context)
    return layout, result, failing


def _evaluate(layout, columns, tol, context=None):
    """The rows' columns ``(keys, handbp's, the twin's, the reference's)`` under the tolerance rule
    at once: the result, and a ``Check`` for each mismatch (``context(name, quantity)``: what else
    its diagnosis needs)."""
    keys, A, B, R = columns
    float32 = tol.mode == "float32-rule"
    result = evaluate_arrays(layout, A, B, R if float32 else None, tol)
    failing = []
    for k in result.failing:
        c = Check(*keys[k], A[k], B[k], R[k] if float32 else None, **(context(*keys[k]) if context else {}))
        c.result = result.results[k]
        failing.append(c)
    return result, failing


def _context(x, out):
    """Sizes a constant factor may come from, so the diagnosis can name them."""
    ctx = {}
    x = flatten(x)[0]
    if np.ndim(x) >= 2:
        ctx["the batch size"] = int(np.shape(x)[0])
    if out is not None:
        ctx["the number of output elements"] = int(np.size(out))
        ctx["the number of outputs per sample"] = int(np.shape(out)[-1])
    return ctx


def _divergence(step, failing, tol, ratio_tol, x, side):
    """The report of the first mismatch, with every other one of the step in a line each."""
    ctx = _context(x, side.out)
    others = []
    for c in failing[1:]:
        hint = diagnose(c, ctx, ratio_tol)[0]
        others.append(f"{c.label}: max rel {max_rel(c):.3g}" + (f" [{hint}]" if hint else ""))
    if side.error is not None:
        others.append(f"then handbp raised {type(side.error).__name__}: {side.error}")
    exc = Divergence(step, failing[0], tol, ctx, others, ratio_tol, [c.quantity for c in failing])
    exc.__cause__ = side.error
    return exc
