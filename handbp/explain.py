"""``explain``: one training step, read aloud: forward, loss, backward, update.

For each module, from the input to the loss: its output and what its forward caches for the
backward (the seed notebook's "dynamic programming memory": ``last_x``, ``last_o``, ...). Then the
loss: its formula, the target, n, the value. Then from the loss back to the input: each module's
local derivative (the whole docstring of its ``backward``), the upstream gradient it receives, the
cached values it uses and the gradients it produces (the chain rule, one module at a time). Then
the update of every parameter: before, gradient, after.

Beside each value, ``reference`` values may be shown (crosscheck's torch twin gives them: see
``crosscheck.explain``; ``handbp explain`` on the command line puts the two together), each marked
✓ or ✗ with its error. handbp itself imports nothing beyond NumPy here.

The error of a value ``a`` against its reference ``b`` is CS231n's relative error
``|a − b| / (|a| + |b|)``, taken over the whole array (the largest difference over the largest
magnitudes, so an element that is 0 in exact arithmetic does not read as 100 % off), with a floor
under the denominator: ``noise / rtol`` × the largest magnitude among the step's values of the
same kind (all outputs, all parameter gradients, ...). Two values that are both rounding noise at
the scale of the whole step (the gradient of a bias that feeds a BatchNorm, which is 0 in exact
arithmetic) so pass, while any real mistake (a factor, a sign, a transpose) is far above ``rtol``.
A reference may carry its own verdicts (crosscheck's: the tolerance rule lockstep uses); then
those decide ✓/✗ and the error is shown beside them.

A gradient that never arrived (``.grad`` None), a backward or an update that raised, and a NaN or
Inf are ✗ lines too, with or without a reference: explain never stops half-way on a broken step.
"""
import copy
import inspect
import re
import unicodedata

import numpy as np

from . import structure, validate
from .errors import ArgumentTypeError, describe
from .recording import Recorder, leaves
from .losses import Loss
from .module import Module
from .optim import SGD, Optimizer

# per dtype: (rtol, noise): ✓ when the error is ≤ rtol; a difference below noise × the step's
# largest value of its kind always passes (the floor under the denominator is noise / rtol × it)
RULE = {np.dtype(np.float64): (1e-9, 1e-13), np.dtype(np.float32): (1e-4, 1e-6)}
MIN_WIDTH = 40


class Reference:
    """Values to show beside explain's own, by key, and optionally a verdict on each.

    Keys: ``"loss"``, ``"grad_pred"`` (dL/dpred), ``"output:<path>"``, ``"grad_input:<path>"``
    (dL/d(input) of the leaf module at ``path``), ``"grad:<param>"`` (dL/d(param)),
    ``"param:<param>"`` (the parameter after the update), ``"buffer:<name>"`` (after the
    forward), ``"state:<param>.<key>"`` (optimizer state after the update). Paths and names are
    those of ``named_modules`` / ``named_parameters`` (``"0"``, ``"0.weight"``).

    Args:
        values: dict key → array (or number, or None where the reference has no such value).
        name: what the values are (``"torch"``).
        labels: dict key → a short label shown with the value (torch's ``grad_fn`` name).
        verdicts: dict key → bool, the reference's own judgement; keys left out (or ``verdicts``
            None) are judged by explain's rule (see the module docstring).
        notes: dict key → a sentence shown under a ✗ (crosscheck's hint).
        rule: one line saying how the verdicts were made.
    """

    def __init__(self, values, *, name="reference", labels=None, verdicts=None, notes=None, rule=None):
        if not isinstance(values, dict):
            raise ArgumentTypeError(f"Reference: values: expected a dict of key → array, got {describe(values)}")
        self.values, self.name = dict(values), str(name)
        self.labels, self.notes = dict(labels or {}), dict(notes or {})
        self.verdicts = None if verdicts is None else dict(verdicts)
        self.rule = rule


def relative_error(a, b, floor=0.0):
    """``max|a − b| / max(max|a| + max|b|, floor)`` (0 where a and b are equal, including equal
    NaN/Inf; inf for different shapes, or NaN/Inf on one side only)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    if not (np.isfinite(a[~same]).all() and np.isfinite(b[~same]).all()):
        return float("inf")
    diff = np.abs(a - b)[~same].max()
    scale = np.abs(a[np.isfinite(a)]).max(initial=0.0) + np.abs(b[np.isfinite(b)]).max(initial=0.0)
    return float(diff / max(scale, floor, np.finfo(np.float64).tiny))


def kind(key):
    """The kind of a key, whose largest value sets the floor: ``grad``, ``grad_input``, ``param``, ..."""
    return key.split(":")[0]


def parts(key, value, declared=None):
    """``[(key, array)]`` for a value: itself under ``key``, or for a tuple (a module with several
    inputs or outputs) each array, the first under ``key``, the others under ``key.name``, named
    by ``declared`` (``handbp.structure.names``) as crosscheck's lockstep names them."""
    if not structure.is_structure(value):
        return [(key, value)]
    leaves = structure.flatten(value)
    return [(key if k == 0 else f"{key}.{name}", a)
            for k, (name, a) in enumerate(zip(structure.names(value, declared), leaves))]


# -- the text ------------------------------------------------------------------------------
def _num(v):
    v = float(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def _shape(a):
    return "(" + ", ".join(map(str, a.shape)) + ("," if a.ndim == 1 else "") + ")"


def columns(s):
    """The columns ``s`` takes on a terminal: East Asian wide characters (Korean) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def wrap(text, width, indent=0, hang=2):
    """``text`` in lines of at most ``width`` columns (Korean counted double), the first indented
    by ``indent``, the others by ``indent + hang``; spaces inside a line are kept as they are."""
    lines, line = [], " " * indent
    for chunk in re.findall(r"\S+|\s+", text.strip()):
        if chunk.isspace():
            line += chunk
            continue
        if line.strip() and columns(line) + columns(chunk) > width:
            lines.append(line.rstrip())
            line = " " * (indent + hang)
        while columns(line) + columns(chunk) > width and len(chunk) > 1:     # a word longer than a line
            room = max(1, width - columns(line))
            cut = next(i for i in range(len(chunk), 0, -1) if columns(chunk[:i]) <= room or i == 1)
            lines.append(line + chunk[:cut])
            line, chunk = " " * (indent + hang), chunk[cut:]
        line += chunk
    lines.append(line.rstrip())
    return lines


class Text:
    """The lines of an explanation, each at most ``width`` columns: prose is wrapped, arrays are
    cut to the numbers that fit (at most ``numbers`` per row, ``numbers`` rows)."""

    def __init__(self, width, numbers):
        self.width, self.numbers, self.lines = width, numbers, []

    def add(self, s="", indent=0, hang=2):
        """Prose, wrapped to the width (continuation lines indented by ``hang`` more)."""
        if not s:
            self.lines.append("")
            return
        for para in s.split("\n"):
            self.lines += wrap(para, self.width, indent, hang)

    def row(self, head, tail, indent):
        """``head`` then ``tail`` on one line if they fit, else ``tail`` on the next, further in."""
        line = " " * indent + head
        if tail and columns(line) + 1 + columns(tail) <= self.width:
            self.lines.append(f"{line} {tail}")
        else:
            self.add(head, indent)
            if tail:
                self.add(tail, indent + 4)

    def vector(self, flat, room):
        """``[a, b, c, …]`` with as many numbers (≤ numbers) as fit in ``room`` columns."""
        for k in range(min(self.numbers, flat.size), 0, -1):
            s = "[" + ", ".join(_num(v) for v in flat[:k]) + (", …]" if flat.size > k else "]")
            if len(s) <= room or k == 1:
                return s
        return "[]"

    def array(self, label, a, indent, tail="", shape=True):
        """``label`` and the value: a number; a vector on one line; a matrix (the last two axes of
        the first slice, for rank 3 and more) as rows. ``shape``: say the shape. A tuple (a module
        with several inputs or outputs) shows each of its arrays, named by position."""
        if type(a) is tuple:
            for name, part in zip(structure.names(a), structure.flatten(a)):
                self.array(f"{label} [{name}]", part, indent, tail, shape)
            return
        if a is None:
            self.row(f"{label} none", tail, indent)
            return
        a = np.asarray(a)
        if a.ndim == 0:
            self.row(f"{label} {_num(a)}", tail, indent)
            return
        head = f"{label} {_shape(a)}" if shape else label
        if a.ndim == 1 or a.size == 0:
            room = self.width - indent - len(head) - 1
            self.row(f"{head} {self.vector(a.ravel(), max(room, 12))}", tail, indent)
            return
        m = a[(0,) * (a.ndim - 2)] if a.ndim > 2 else a
        if a.ndim > 2:
            head += f", first slice [{', '.join(['0'] * (a.ndim - 2))}, :, :]"
        self.row(head, tail, indent)
        rows = min(m.shape[0], self.numbers)
        cells = [[_num(v) for v in r] for r in m[:rows]]
        w = max(len(c) for r in cells for c in r) if m.shape[1] else 1
        inner = indent + 2
        cols = max(1, min(self.numbers, m.shape[1], (self.width - inner - 6) // (w + 1)))
        for i, r in enumerate(cells):
            body = " ".join(c.rjust(w) for c in r[:cols]) + (" …" if m.shape[1] > cols else "")
            start = "[[" if i == 0 else " ["
            end = "]]" if i == rows - 1 and rows == m.shape[0] else "]"
            self.lines.append(" " * inner + start + body + end)
        if m.shape[0] > rows:
            more = m.shape[0] - rows
            self.lines.append(" " * inner + f"  … {more} more row{'s' if more > 1 else ''}]")


class Explanation:
    """The text of an explanation (``str()``) and what it found.

    Attributes:
        lines: the text, one line each.
        verdicts: dict key → True/False for every value judged (see ``Reference`` for the keys;
            ``"error:<phase>"`` for a phase that raised, ``"grad:<param>"`` for a missing gradient).
        errors: dict key → the relative error of every value compared with the reference.
        failed: the keys marked ✗, in the order they appear.
        all_match: True if there was a reference and nothing is ✗; False if anything is ✗;
            None without a reference and no ✗.
        notes: dict key → the reference's note (a hint) on each ✗ that has one.
        raised: dict phase (``"backward"``, ``"update"``) → the error it raised, as text.
        rows: per leaf module (last first), ``{"path", "type", "derivative", "grad_input", "grads"}``.
    """

    def __init__(self, lines, verdicts, errors, rows, has_reference, notes=None, raised=None):
        self.lines, self.verdicts, self.errors, self.rows = lines, verdicts, errors, rows
        self.notes, self.raised = dict(notes or {}), dict(raised or {})
        self.failed = [k for k, ok in verdicts.items() if not ok]
        self.all_match = False if self.failed else (True if has_reference else None)

    def __str__(self):
        return "\n".join(self.lines)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle):       # IPython / Jupyter show the text as it is
        p.text(str(self))


def derivative(obj):
    """The whole docstring of ``type(obj).backward``, dedented: the local derivative."""
    doc = inspect.getdoc(type(obj).backward)
    return doc if doc else "(no derivative documented)"


def summary(obj):
    """The first paragraph of the class docstring (the forward's formula), as plain text."""
    doc = inspect.getdoc(type(obj)) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "").strip()


def caches(module):
    """``(name, array)`` for what the module's forward cached for its backward: its ``last_*``
    arrays (a list or tuple of arrays, one per time step, gives ``name[i]`` each). A module may
    list its own instead with ``explain_caches()``."""
    if hasattr(module, "explain_caches"):
        return list(module.explain_caches())
    out = []
    for name, v in vars(module).items():
        if not name.startswith("last_"):
            continue
        if isinstance(v, np.ndarray):
            out.append((name, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(e, np.ndarray) for e in v):
            out += [(f"{name}[{i}]", e) for i, e in enumerate(v)]
    return out


# -- one step, recorded --------------------------------------------------------------------
class Step:
    """handbp's step on copies: forward (recorded per leaf), loss, backward, update."""

    def __init__(self, model, loss, optimizer, x, y):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.leaves = leaves(model)
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.out = self.value = self.dpred = None
        self.grads, self.before, self.error = {}, {}, None
        rec = Recorder(self.leaves)
        optimizer.zero_grad()
        with rec:
            self.out = model(x)                  # bad input raises here, as it would anywhere
            self.value = loss(self.out, y)
            try:
                self.dpred = loss.backward()
                model.backward(self.dpred)
            except Exception as e:   # noqa: BLE001 - shown as a ✗ line: the student's backward is on trial
                self.error = ("backward", e)
        self.rec = rec
        self.grads = {n: None if p.grad is None else np.array(p.grad, copy=True) for n, p in model.named_parameters()}
        self.before = {n: p.data.copy() for n, p in model.named_parameters()}
        if self.error is None:
            try:
                optimizer.step()
            except Exception as e:   # noqa: BLE001 - as above: a wrong gradient makes the update raise
                self.error = ("update", e)


def check_arguments(model, loss, optimizer, lr, reference, numbers, width):
    """explain's arguments checked (before anything is copied or run); returns lr, numbers, width."""
    if not isinstance(model, Module) or isinstance(model, Loss):
        raise TypeError(f"explain: model: expected a handbp Module, got {describe(model)}")
    if not isinstance(loss, Loss):
        raise TypeError(f"explain: loss: expected a handbp loss, got {describe(loss)}")
    lr = validate.number("explain", "lr", lr, low=0)
    numbers = validate.integer("explain", "numbers", numbers, low=1)
    width = validate.integer("explain", "width", width, low=MIN_WIDTH)
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            validate.fail("explain", "optimizer", "a handbp optimizer or None", optimizer, ArgumentTypeError)
        mine = {id(p) for p in model.parameters()}
        if any(id(p) not in mine for g in optimizer.param_groups for p in g["params"]):
            raise ValueError("explain: optimizer: expected an optimizer over the model's parameters, got one that "
                             "updates a parameter that is not in the model")
    if reference is not None and not isinstance(reference, (Reference, dict)):
        validate.fail("explain", "reference", "a Reference, a dict of key → array, or None", reference,
                      ArgumentTypeError)
    return lr, numbers, width


def explain(model, loss, x, y, *, optimizer=None, lr=0.01, reference=None, numbers=4, width=80):
    """Explain one training step of ``model`` on ``(x, y)`` under ``loss``: forward, loss, backward
    and update, module by module.

    Args:
        model: a handbp Module. model, loss and optimizer are copied first: the originals'
            parameters, gradients, caches and state are left exactly as they were.
        loss: a handbp loss.
        optimizer: a handbp optimizer over ``model``'s parameters; by default plain gradient
            descent ``SGD(lr=lr)``, the notebook's ``p ← p − lr · dL/dp``.
        lr: the default optimizer's learning rate (the notebook's alpha, 0.01).
        reference: values to show beside handbp's (a ``Reference``, or a dict key → array); see
            ``crosscheck.explain`` for torch's.
        numbers: how many numbers of each array to show (per row, and rows of a matrix).
        width: the longest line, in columns (≥ 40).

    Returns:
        Explanation (print it).
    """
    lr, numbers, width = check_arguments(model, loss, optimizer, lr, reference, numbers, width)
    if isinstance(reference, dict):
        reference = Reference(reference)
    model, loss, optimizer = copy.deepcopy((model, loss, optimizer))
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr=lr)
    step = Step(model, loss, optimizer, x, y)
    return _Writer(step, reference, Text(width, numbers), x, y).write()


class _Writer:
    """Turns a recorded ``Step`` (and a reference) into an ``Explanation``."""

    def __init__(self, step, ref, text, x, y):
        self.s, self.ref, self.t, self.y = step, ref, text, y
        self.x = x if structure.is_structure(x) else np.asarray(x)
        self.dtype = np.dtype(step.model.dtype)
        self.rtol, self.noise = RULE.get(self.dtype, RULE[np.dtype(np.float64)])
        self.verdicts, self.errors, self.rows = {}, {}, []
        self.peaks = self._peaks()

    def _mine(self):
        """Every value of handbp's step by reference key (for the floors)."""
        s, rec = self.s, self.s.rec
        v = {"loss": s.value, "grad_pred": s.dpred}
        for i, (path, m) in enumerate(s.leaves):
            for base, got in (("output", rec.outputs), ("grad_input", rec.grad_inputs)):
                for key, part in parts(f"{base}:{path}", got.get(path), self.declared(i, base)):
                    v[key] = part
        for n, p in s.model.named_parameters():
            v[f"grad:{n}"], v[f"param:{n}"] = s.grads[n], p.data
        return v

    def _peaks(self):
        peaks = {}
        sources = [self._mine()] + ([self.ref.values] if self.ref else [])
        for values in sources:
            for key, a in values.items():
                if a is None:
                    continue
                a = np.asarray(a, np.float64)
                finite = a[np.isfinite(a)]
                if finite.size:
                    peaks[kind(key)] = max(peaks.get(kind(key), 0.0), float(np.abs(finite).max()))
        return peaks

    # -- one value, judged
    def judge(self, key, mine):
        """The verdict on handbp's value ``mine`` (None where nothing is judged) and the tail of
        its line (``✓ err 3e-17``)."""
        ref = self.ref
        if ref is None or key not in ref.values:
            if mine is not None and np.size(mine) and not np.all(np.isfinite(np.asarray(mine, np.float64))):
                self.verdicts[key] = False
                return False, "✗ not finite"
            return None, ""
        theirs = ref.values[key]
        if mine is None and theirs is None:
            return None, ""
        if mine is None or theirs is None:
            err = float("inf")
        else:
            err = relative_error(mine, theirs, self.noise / self.rtol * self.peaks.get(kind(key), 0.0))
        self.errors[key] = err
        if ref.verdicts is not None and key in ref.verdicts:
            ok = bool(ref.verdicts[key])
        else:
            ok = err <= self.rtol
        self.verdicts[key] = ok
        return ok, f"{'✓' if ok else '✗'} err {err:.2g}"

    def declared(self, i, base):
        """The names leaf ``i`` gives the arrays of its output (``base`` "output") or input
        ("grad_input"; else the names of the output of the leaf before it), as lockstep names them."""
        m = self.s.leaves[i][1]
        names = getattr(m, "output_names" if base == "output" else "input_names", None)
        if names is None and base == "grad_input" and i > 0:
            names = getattr(self.s.leaves[i - 1][1], "output_names", None)
        return names

    def value(self, label, key, mine, indent, declared=None):
        """handbp's value, then the reference's (a matrix only when they differ) and the verdict;
        a tuple (several inputs or outputs) array by array, each under its own key (``parts``)."""
        if structure.is_structure(mine):
            for k, (part_key, part) in enumerate(parts(key, mine, declared)):
                name = part_key[len(key) + 1:] if k else structure.names(mine, declared)[0]
                self.value(f"{label} {name}", part_key, part, indent)
            return
        ok, tail = self.judge(key, mine)
        ref = self.ref
        if ref is None or key not in ref.values or (ok is None and not tail):
            self.t.array(label, mine, indent, tail if ref is None or key not in ref.values else "")
            return
        theirs = ref.values[key]
        name = ref.name + (f" {ref.labels[key]}" if key in ref.labels else "")
        self.beside(label, mine, name, theirs, ok, tail, indent)
        if ok is False and key in ref.notes:
            self.t.add(ref.notes[key], indent + 2)

    def beside(self, label, mine, name, theirs, ok, tail, indent):
        """handbp's value and the reference's: a number on one line, a matrix only when they differ."""
        if mine is not None and theirs is not None and np.ndim(mine) == 0 and np.ndim(theirs) == 0:
            self.t.row(f"{label} {_num(mine)}", f"{name} {_num(theirs)} {tail}", indent)
            return
        self.t.array(label, mine, indent)
        if ok and theirs is not None and np.ndim(theirs) >= 2:
            self.t.row(f"{name}: the same", tail, indent)
        else:
            same = mine is not None and theirs is not None and np.shape(mine) == np.shape(theirs)
            self.t.array(name, theirs, indent, tail, shape=not same)

    def missing(self, label, key, why, indent):
        self.verdicts[key] = False
        theirs = self.ref.values.get(key) if self.ref else None
        self.t.row(f"{label} none", "✗", indent)
        self.t.add(why, indent + 2)
        if theirs is not None:
            self.t.array(self.ref.name, theirs, indent)
            self.errors[key] = float("inf")
        if self.ref and key in self.ref.notes:
            self.t.add(self.ref.notes[key], indent + 2)

    # -- the sections
    def write(self):
        self.header()
        self.forward()
        self.loss()
        self.backward()
        self.update()
        self.verdict()
        lines = []
        for line in self.t.lines:      # (every writer above keeps to the width; this is the guarantee)
            lines += wrap(line, self.t.width, len(line) - len(line.lstrip()), 4) if columns(line) > self.t.width \
                else [line]
        notes = {k: self.ref.notes[k] for k, ok in self.verdicts.items() if not ok and self.ref and k in self.ref.notes}
        raised = {} if self.s.error is None else {self.s.error[0]: f"{type(self.s.error[1]).__name__}: {self.s.error[1]}"}
        return Explanation(lines, self.verdicts, self.errors, self.rows, self.ref is not None, notes, raised)

    def header(self):
        t, s = self.t, self.s
        t.add(f"One training step of {type(s.model).__name__}, explained (dtype {self.dtype})")
        t.array("input x", self.x, 2)
        t.array("target y", np.asarray(self.y), 2)
        if self.ref is None:
            t.add("(no reference values: handbp's own only; a missing gradient, an error or a NaN is still "
                  "marked)", 2)
        else:
            t.add(f"beside each value: {self.ref.name}'s" + (f"; {self.ref.rule}" if self.ref.rule else
                  f"; ✓ when the error |a − b| / (|a| + |b|) ≤ {self.rtol:g}"), 2)

    def forward(self):
        t, s = self.t, self.s
        t.add()
        t.add("FORWARD: each module computes its output and caches what its backward will need")
        buffers = dict(s.model.named_buffers())
        for i, (path, m) in enumerate(s.leaves):
            t.add()
            t.add(f"module {path or 'model'} ({type(m).__name__}): {summary(m)}", 2, hang=4)
            self.value("output", f"output:{path}", s.rec.outputs.get(path), 4, self.declared(i, "output"))
            names = [n for n, _ in caches(m)]
            if names:
                t.add("caches " + ", ".join(names), 4)
            for local, _ in m.named_buffers():
                full = f"{path}.{local}" if path else local
                self.value(f"buffer {local}", f"buffer:{full}", buffers.get(full), 4)

    def loss(self):
        t, s = self.t, self.s
        pred = np.asarray(s.out)
        t.add()
        t.add(f"LOSS ({type(s.loss).__name__}): {summary(s.loss)}", 0, hang=4)
        sizes = f"n = {pred.size} elements in the prediction"
        if pred.ndim >= 2:
            sizes += f", N = {pred.shape[0]} samples"
        t.add(sizes, 2)
        t.array("prediction h", pred, 2)
        t.array("target y", np.asarray(self.y), 2)
        self.value("value L", "loss", s.value, 2)

    def backward(self):
        t, s = self.t, self.s
        t.add()
        t.add("BACKWARD: from the loss back to the input; each module multiplies the upstream gradient by "
              "its local derivative (the chain rule)")
        t.add()
        t.add(f"loss ({type(s.loss).__name__})", 2)
        self.derivative(s.loss)
        for name, v in caches(s.loss):
            t.array(f"cached {name}", v, 4)
        if s.dpred is None:
            self.missing("dL/dpred", "grad_pred", self.raised("the loss's backward"), 4)
        else:
            self.value("dL/dpred", "grad_pred", s.dpred, 4)
        failed_at = None
        if s.error and s.error[0] == "backward":
            self.verdicts["error:backward"] = False
            failed_at = next((p for p, _ in reversed(s.leaves)
                              if p in s.rec.upstream and p not in s.rec.grad_inputs), None)
        for path, m in reversed(s.leaves):
            self.module(path, m, failed_at)

    def raised(self, where):
        e = self.s.error[1] if self.s.error else None
        return f"{where} raised {type(e).__name__}: {e}" if e else f"{where} returned None"

    def derivative(self, obj):
        self.t.add("local derivative:", 4)
        for line in derivative(obj).replace("``", "").splitlines():
            if line.strip():
                self.t.add(line, 6, hang=2)

    def module(self, path, m, failed_at):
        t, s, rec = self.t, self.s, self.s.rec
        t.add()
        t.add(f"module {path or 'model'} ({type(m).__name__})", 2)
        self.derivative(m)
        up = rec.upstream.get(path)
        if up is None:
            t.add("upstream dL/d(output): none (the backward stopped above)", 4)
        else:
            t.array("upstream dL/d(output)", up, 4)
        for name, v in caches(m):
            t.array(f"cached {name}", v, 4)
        key = f"grad_input:{path}"
        dx = rec.grad_inputs.get(path)
        given = rec.inputs.get(path)
        if dx is None and path in rec.grad_inputs and getattr(given, "dtype", None) is not None \
                and given.dtype.kind in "iub":
            t.add("dL/d(input): none: integer indices have no gradient", 4)
        elif dx is None:
            why = (self.raised("its backward") if path == failed_at else
                   "its backward returned None" if path in rec.grad_inputs else "the backward never reached it")
            self.missing("dL/d(input)", key, why, 4)
        else:
            self.value("dL/d(input)", key, dx, 4, self.declared([p for p, _ in s.leaves].index(path), "grad_input"))
        grads = {}
        for local, p in m.named_parameters():
            full = s.names[id(p)]
            g = grads[full] = s.grads[full]
            gkey = f"grad:{full}"
            if g is None:
                theirs = self.ref.values.get(gkey) if self.ref else None
                if self.ref is not None and gkey in self.ref.values and theirs is None:
                    t.add(f"dL/d({full}): none, on both sides", 4)
                    continue
                self.missing(f"dL/d({full})", gkey, ".grad is None: the backward never added a gradient to "
                             f"{full} (stored under another name, or never computed)", 4)
            else:
                self.value(f"dL/d({full})", gkey, g, 4)
        # a recurrent layer: its steps, the newest first (when its forward recorded them: a forward
        # of one's own, as in an exercise, records nothing)
        if hasattr(m, "format_unrolled") and getattr(m, "last_runs", None):
            for line in m.format_unrolled(numbers=t.numbers):
                t.add(line, 4)
        self.rows.append({"path": path, "type": type(m).__name__, "derivative": derivative(m),
                          "grad_input": dx, "grads": grads})

    def update(self):
        t, s = self.t, self.s
        opt = s.optimizer
        t.add()
        rule = (inspect.getdoc(type(opt)) or type(opt).__name__).split("\n")[0].replace("``", "")
        lrs = sorted({g.get("lr") for g in opt.param_groups if "lr" in g})
        t.add(f"UPDATE ({type(opt).__name__}" + (f", lr {', '.join(map(str, lrs))}" if lrs else "") + f"): {rule}",
              hang=4)
        if isinstance(opt, SGD) and all(g["momentum"] == 0 and g["weight_decay"] == 0 and not g["maximize"]
                                        for g in opt.param_groups):
            t.add("p ← p − lr · dL/dp", 2)
        if s.error and s.error[0] == "update":
            self.verdicts["error:update"] = False
            t.row("the update", "✗", 2)
            t.add(self.raised("the optimizer's step"), 4)
        stepped = {id(p) for g in opt.param_groups for p in g["params"]}
        for n, p in s.model.named_parameters():
            t.add()
            t.add(f"{n} {_shape(p.data)}" + ("" if id(p) in stepped else ": not in the optimizer"), 2)
            t.array("before", s.before[n], 4)
            if s.grads[n] is None:
                t.row("gradient none", "✗" if f"grad:{n}" in self.verdicts else "", 4)
            else:
                t.array("gradient", s.grads[n], 4)
            if s.error is not None:
                t.add("after: not updated (the step did not finish)", 4)
                continue
            self.after(n, p, 4)
            for key, v in (opt.state.get(p) or {}).items():
                if isinstance(v, np.ndarray) or np.isscalar(v):
                    self.value(f"state {key}", f"state:{n}.{key}", np.asarray(v), 4)

    def after(self, n, p, indent):
        """The parameter after the step, shown as the step taken (after − before, which at a small
        lr is far easier to read than after itself), judged as lockstep judges it: after itself."""
        key, before = f"param:{n}", self.s.before[n]
        ok, tail = self.judge(key, p.data)
        ref = self.ref
        theirs = ref.values.get(key) if ref else None
        if np.array_equal(p.data, before):
            self.t.row("after  unchanged (= before)", tail, indent)
            if ok is False and theirs is not None:
                self.t.array(f"{ref.name}'s after − before", np.asarray(theirs) - before, indent)
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                mine_step = p.data - before
                theirs_step = None if theirs is None else np.asarray(theirs) - before
            if theirs is None:
                self.t.array("after − before", mine_step, indent, tail)
            else:
                self.beside("after − before", mine_step, f"{ref.name}'s after − before", theirs_step, ok, tail, indent)
        if ok is False and ref and key in ref.notes:
            self.t.add(ref.notes[key], indent + 2)

    def verdict(self):
        t = self.t
        t.add()
        failed = [k for k, ok in self.verdicts.items() if not ok]
        if failed:
            t.add(f"✗ {len(failed)} of {len(self.verdicts)} values judged are wrong or missing; the first: "
                  f"{failed[0]}")
        elif self.ref is not None:
            worst = max(self.errors.values(), default=0.0)
            t.add(f"✓ every value matches {self.ref.name}'s ({len(self.verdicts)} compared, largest error "
                  f"{worst:.2g})")
        else:
            t.add("no reference values to compare with; no gradient is missing and nothing raised")
