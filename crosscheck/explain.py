"""``crosscheck.explain``: handbp's explanation of one training step (``handbp.explain``) with the
torch twin's value beside each of handbp's, and crosscheck's own verdict on each.

The twin's values and the verdicts come from one step of lockstep's own parts (``Plan``, ``Side``,
``Twins``, ``gather``, ``judge``, the recheck) run on copies of the model, loss and optimizer, so
explain marks ✗ exactly the quantities lockstep reports at that step, with the same tolerance
rule, and the hint crosscheck gives for each. handbp then runs and explains the same step on its
own copies (a step is deterministic: a Dropout's generator is copied with it).
"""
import copy

import numpy as np

import handbp as hb
from handbp.explain import Reference, check_arguments
from handbp.recording import Recorder
from handbp.structure import flatten

from ._torch import require_torch, threads_taking_turns
from .diagnose import diagnose
from .lockstep import Plan, Side, Twins, Where, _check_arguments, _context, gather, judge
from .recheck import recheck
from .tolerance import default_tolerance
from .words import check_lang, hint_text


def _keys(plan):
    """lockstep's ``(label, quantity)`` of each quantity → explain's key."""
    keys = {plan.loss_key: "loss", plan.dpred_key: "grad_pred"}
    for i, path in enumerate(plan.paths):
        keys[plan.out_keys[i]] = f"output:{path}"
        keys[plan.gin_keys[i]] = f"grad_input:{path}"
    for b, key in plan.buf_keys.items():
        keys[key] = f"buffer:{b}"
    for n, _ in plan.params:
        keys[plan.grad_keys[n]] = f"grad:{n}"
        keys[plan.param_keys[n]] = f"param:{n}"
    return keys


def _part_key(plan, label, quantity):
    """explain's key of a quantity ``_keys`` does not list: an optimizer's state entry, or one array
    of a leaf's tuple output or input gradient (``output.h_n`` → ``output:<path>.h_n``, as
    ``handbp.explain.parts`` names them)."""
    if quantity.startswith("state."):
        return f"state:{plan.param_of[label]}.{quantity[len('state.'):]}"
    base, _, name = quantity.partition(".")
    return f"{base}:{plan.paths[plan.leaf_index[label]]}.{name}"


def _grad_fns(twin, paths, x, y):
    """The name of the autograd node behind each leaf's output and the loss (torch's ``grad_fn``:
    the backward torch runs for that module)."""
    torch = twin.torch
    names = {}
    with torch.enable_grad():
        h = twin._inputs(x)
        for path, m in zip(paths, twin.leaves):
            h = m(h)
            first = flatten(h)[0]      # (a tuple: several outputs; the first is the output proper)
            names[f"grad_input:{path}"] = type(first.grad_fn).__name__ if first.grad_fn is not None else None
        value = twin.loss(h, twin._target(y))
        names["grad_pred"] = type(value.grad_fn).__name__ if value.grad_fn is not None else None
    return {k: v for k, v in names.items() if v}


def note(check, context, ratio_tol, lang="en"):
    """The line explain shows under a ✗: the hint, what it means (``lang``), and the diagnosis."""
    hint, text, factor = diagnose(check, context, ratio_tol)
    if lang == "en" or not hint:
        return f"hint [{hint}]: {text}" if hint else text
    return f"힌트 [{hint}]: {hint_text(hint, lang)}" + (f" (배수 {factor:.6g})" if factor is not None else "")


def reference(model, loss, optimizer, x, y, *, lang="en"):
    """One step of lockstep on ``model``, ``loss`` and ``optimizer`` (which it changes: pass
    copies) at ``(x, y)``. Returns the ``handbp.explain.Reference`` of the torch twin: its values,
    its ``grad_fn`` names, crosscheck's verdict on every quantity compared and the hint under each
    mismatch."""
    _check_arguments(model, loss, optimizer, [], True, True)
    torch = require_torch()
    tol = default_tolerance(model.dtype)
    ratio_tol = 1e-6 if np.dtype(model.dtype) == np.float64 else 1e-3
    plan = Plan(model, loss, optimizer)
    twins = Twins(model, loss, optimizer, plan, tol, True)
    rec = Recorder(plan.leaf_list, keep=("outputs", "grad_inputs"))
    x = np.asarray(x)
    with rec, threads_taking_turns(torch):
        twins.sync(plan, optimizer)
        before = {n: p.data.copy() for n, p in plan.params}
        # the gradients the model holds before this step's zero_grad: the previous step's, unless
        # cleared (so that gradients piling up across steps are named, as lockstep names them)
        previous = {n: p.grad.copy() for n, p in plan.params if p.grad is not None}
        side = Side.run(model, loss, optimizer, x, y, rec, plan)
        if side.reached == 0 and side.error is not None:
            raise side.error             # the forward or the loss refused the input: bad input
        tw, rf = twins.step(x, y, side)
        rows = gather(plan, side, tw, rf, twins, optimizer)
        where = Where(plan, side, x, before, previous)
        failing = judge(plan, rows, tol, 0, where)[2] if rows else []
        if failing and side.error is None:
            failing = recheck(failing, twins.judge, tol, where)
    keys = _keys(plan)
    values, verdicts, notes = {}, {}, {}
    for (label, quantity), _mine, theirs, _ref in rows:
        key = keys.get((label, quantity)) or _part_key(plan, label, quantity)
        values[key] = None if theirs is None else np.array(theirs, copy=True)
        verdicts[key] = True
    context = _context(x, side.out)
    for c in failing:
        key = keys.get((c.name, c.quantity)) or _part_key(plan, c.name, c.quantity)
        verdicts[key] = False
        notes[key] = note(c, context, ratio_tol, lang)
    labels = _grad_fns(twins.twin, plan.paths, x, y)
    for n, _ in plan.params:
        labels[f"grad:{n}"] = "AccumulateGrad"
    rule = ("verdicts by crosscheck's tolerance rule (" + tol.describe() + "); err = |a − b| / (|a| + |b|)")
    return Reference(values, name="torch", labels=labels, verdicts=verdicts, notes=notes, rule=rule)


def explain(model, loss, x, y, *, optimizer=None, lr=0.01, numbers=4, width=80, lang="en"):
    """``handbp.explain`` of one training step with the torch twin's values beside handbp's, and
    crosscheck's verdict (✓/✗, with the hint under each ✗) on each. Arguments as
    ``handbp.explain``; ``lang``: ``"en"`` or ``"ko"``, the language of the hints. The model, loss
    and optimizer are left as they were."""
    check_lang(lang, "explain: lang")
    check_arguments(model, loss, optimizer, lr, None, numbers, width)
    m, l, o = copy.deepcopy((model, loss, optimizer))
    if o is None:
        o = hb.optim.SGD(m.parameters(), lr=lr)
    ref = reference(m, l, o, x, y, lang=lang)
    return hb.explain(model, loss, x, y, optimizer=optimizer, lr=lr, reference=ref, numbers=numbers, width=width)
