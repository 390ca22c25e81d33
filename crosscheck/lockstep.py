"""``lockstep``: one training step at a time on handbp and on its torch twin, compared at every step.

Per step, in causal order: each module's forward output (and buffers such as running statistics),
the loss, dL/dpred, each module's gradient with respect to its input (last module first), each
parameter's gradient, each parameter after the optimizer step, and the optimizer's state. The
first mismatch raises ``Divergence``; the report lists every other quantity that also mismatched.

Errors must not compound: two correct implementations drift apart when run freely (rounding
differences grow with the dynamics). So by default (``resync=True``), after step k is compared,
handbp's parameters, buffers and optimizer state are copied into the twin, and step k+1 measures
only step k+1's error. State is compared *before* the copy, so a bug in how it is stored is caught.
With ``resync=False`` a third, free-running twin records the drift per step beside the per-step
checks, so the drift can be seen, and told apart from a bug.
"""
import time

import numpy as np

import handbp as hb
from handbp.inspect import Recorder, leaves

from ._torch import require_torch, to_numpy
from .compare import Check, Divergence, default_tolerance, diagnose, evaluate
from .mirror import (load_into_twin, load_optimizer_state, mirror, torch_dtype, target_tensor,
                     twin_param_map)


def _label(path, module):
    return f"{path or 'model'} ({type(module).__name__})"


class NonFiniteError(FloatingPointError):
    """handbp and torch both produced NaN or Inf: the training diverged on both sides (a learning
    rate too large, inputs too big). Not a mismatch between them, but nothing after it means anything."""

    def __init__(self, step, label, count, total):
        self.step, self.name, self.count, self.total = int(step), label, int(count), int(total)
        super().__init__(f"step {step}: {label} holds {count} of {total} non-finite values on both sides "
                         "(handbp and torch agree): the training diverged — lower the learning rate or scale "
                         "the inputs; the comparison stops here")


class _Twin:
    """A torch twin of model, loss and optimizer, and one instrumented training step on it."""

    def __init__(self, model, loss, optimizer, leaf_paths, dtype=None):
        torch = require_torch()
        self.torch = torch
        self.model = mirror(model)
        if dtype is not None:
            self.model.to(torch_dtype(dtype))
        self.loss = mirror(loss)
        self.optimizer = mirror(optimizer, self.model)
        self.mapping = twin_param_map(optimizer, self.model)
        self.leaf_modules = [self.model.get_submodule(p) if p else self.model for p in leaf_paths]
        self.params = dict(self.model.named_parameters())
        self.dtype = next(iter(self.params.values())).dtype if self.params else torch_dtype(model.dtype)

    def _tensor(self, a):
        return self.torch.from_numpy(np.array(a, copy=True)).to(self.dtype)

    def _target(self, y):
        return target_tensor(y, np.float64 if self.dtype == self.torch.float64 else np.float32)

    def step(self, x, y, record=True):
        """The twin's own training step: forward leaf by leaf (keeping each output's gradient),
        loss, backward, optimizer step. Returns NumPy values: outputs, grad_inputs (per leaf),
        grad_pred, loss, grads (per parameter name)."""
        xt = self._tensor(x).requires_grad_(True)
        self.optimizer.zero_grad()
        h, outs = xt, []
        for m in self.leaf_modules:
            h = m(h)
            if record:
                h.retain_grad()
                outs.append(h)
        loss = self.loss(h, self._target(y))
        loss.backward()
        if not record:
            self.optimizer.step()
            return None
        inputs = [xt] + outs[:-1]
        result = dict(outputs=[to_numpy(o) for o in outs], grad_inputs=[to_numpy(i.grad) for i in inputs],
                      grad_pred=to_numpy(outs[-1].grad), loss=float(loss.detach()))
        result["grads"] = {n: None if p.grad is None else to_numpy(p.grad).copy() for n, p in self.params.items()}
        self.optimizer.step()
        return result

    def local_step(self, x, y, rec, dpred, out, grads):
        """Each module on handbp's own inputs: leaf i gets handbp's input to leaf i for its forward
        and handbp's upstream gradient for its backward; the loss gets handbp's prediction; the
        optimizer steps with handbp's gradients. Every value then carries only that one operation's
        rounding, so no error is amplified on its way through the network (float32's rule)."""
        torch = self.torch
        self.optimizer.zero_grad()
        paths = rec.paths
        outputs, grad_inputs = [], []
        for i, m in enumerate(self.leaf_modules):
            xi = self._tensor(x if i == 0 else rec.outputs[paths[i - 1]]).requires_grad_(True)
            oi = m(xi)
            outputs.append(to_numpy(oi))
            dy = dpred if i == len(paths) - 1 else rec.grad_inputs.get(paths[i + 1])
            if dy is None:
                grad_inputs.append(None)
                continue
            oi.backward(self._tensor(dy))
            grad_inputs.append(to_numpy(xi.grad))
        pred = self._tensor(out).requires_grad_(True)
        loss = self.loss(pred, self._target(y))
        loss.backward()
        result = dict(outputs=outputs, grad_inputs=grad_inputs, grad_pred=to_numpy(pred.grad),
                      loss=float(loss.detach()))
        result["grads"] = {n: None if p.grad is None else to_numpy(p.grad).copy() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.grad = None if grads.get(n) is None else self._tensor(grads[n])
        self.optimizer.step()
        return result

    def resync(self, model, optimizer):
        load_into_twin(model, self.model)
        load_optimizer_state(optimizer, self.optimizer, self.mapping)


class Trace:
    """What lockstep measured: per step, per quantity, the max abs and rel error.

    Attributes:
        steps: list (one per step) of dicts ``label -> {"max_abs", "max_rel", "norm_rel"}``: the
            largest absolute difference, the largest element-wise relative difference (as
            ``torch.testing.assert_close`` reports it), and the largest absolute difference over
            the largest magnitude of torch's value.
        drift: with ``resync=False``, per step the largest relative difference between handbp's
            parameters and a free-running twin's; else empty.
        tolerance: the tolerance used (a dict); dtype: the model's dtype name.
    """

    def __init__(self, tolerance, dtype, resync):
        self.steps, self.drift, self.losses, self.torch_losses = [], [], [], []
        self.tolerance, self.dtype, self.resync = tolerance.to_dict(), str(dtype), resync
        self._tol_text = tolerance.describe()
        self.elapsed = 0.0

    def __len__(self):
        return len(self.steps)

    def worst(self):
        """``(step, label, max_abs, norm_rel)`` of the largest error relative to the quantity's
        largest magnitude, or None."""
        best = None
        for i, step in enumerate(self.steps):
            for label, r in step.items():
                if best is None or r["norm_rel"] > best[3]:
                    best = (i, label, r["max_abs"], r["norm_rel"])
        return best

    def worst_by_kind(self):
        """Per kind of quantity (output, loss, grad, ...), the largest max-abs error relative to
        the quantity's largest magnitude over all steps."""
        out = {}
        for step in self.steps:
            for label, r in step.items():
                kind = label.rsplit(" ", 1)[-1].split(".")[0]
                out[kind] = max(out.get(kind, 0.0), r["norm_rel"])
        return out

    def summary(self):
        """A readable account: steps, quantities, worst errors, drift."""
        n_q = len(self.steps[0]) if self.steps else 0
        lines = [f"crosscheck lockstep: {len(self.steps)} steps, {n_q} quantities per step, all matched "
                 f"({self.dtype}; {self._tol_text}; {'re-synchronised each step' if self.resync else 'free-running'})"]
        kinds = self.worst_by_kind()
        if kinds:
            lines.append("  worst error by quantity (max abs / max magnitude): " +
                         ", ".join(f"{k} {v:.2g}" for k, v in kinds.items()))
        w = self.worst()
        if w:
            lines.append(f"  worst overall: step {w[0]}, {w[1]}: max abs {w[2]:.3g} ({w[3]:.3g} of its largest magnitude)")
        if self.drift:
            lines.append(f"  free-running drift (max relative parameter difference to an unsynchronised twin): "
                         f"step 0 {self.drift[0]:.2g}, step {len(self.drift) - 1} {self.drift[-1]:.2g}, "
                         f"max {max(self.drift):.2g}")
            lines.append("  every per-step check passed, so this drift is numerics (rounding differences "
                         "amplified by the training dynamics), not a bug")
        return "\n".join(lines)

    def to_dict(self):
        return {"steps": self.steps, "drift": list(self.drift), "tolerance": self.tolerance, "dtype": self.dtype,
                "resync": self.resync, "losses": list(self.losses), "torch_losses": list(self.torch_losses)}

    def plot_drift(self, path):
        """Write a PNG of the free-running drift per step (needs matplotlib)."""
        if not self.drift:
            raise ValueError("plot_drift: no drift recorded; run lockstep with resync=False")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.semilogy(range(len(self.drift)), np.maximum(self.drift, 1e-17))
        ax.set_xlabel("step")
        ax.set_ylabel("max relative parameter difference")
        ax.set_title("handbp vs a free-running torch twin")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _context(x, out, target):
    """Sizes a constant factor may come from, so the diagnosis can name them."""
    ctx = {}
    if np.ndim(x) >= 2:
        ctx["the batch size"] = int(np.shape(x)[0])
    if out is not None:
        ctx["the number of output elements"] = int(np.size(out))
        ctx["the number of outputs per sample"] = int(np.shape(out)[-1])
    return ctx


def lockstep(model, loss, optimizer, data, *, rtol=None, atol=None, resync=True, raise_on_divergence=True):
    """Train ``model`` one step per ``(x, y)`` in ``data`` on handbp and on a torch twin, and
    compare every quantity of every step.

    Args:
        model: a handbp Module (its torch twin is built by ``mirror``).
        loss: a handbp loss. optimizer: a handbp optimizer over ``model``'s parameters.
        data: iterable of ``(x, y)`` batches.
        rtol, atol: override the default tolerance (see ``crosscheck.compare``).
        resync: copy handbp's state into the twin after each compared step (default), so
            errors never compound; ``False`` also runs a free twin and records its drift.
        raise_on_divergence: raise ``Divergence`` at the first mismatch (default); else stop
            there and return the trace with ``trace.divergence`` set.

    Returns:
        Trace. Raises Divergence (an AssertionError) at the first mismatch.
    """
    torch = require_torch()
    if not isinstance(model, hb.Module):
        raise TypeError(f"lockstep: model: expected a handbp Module, got {type(model).__name__}")
    if not isinstance(loss, hb.Loss):
        raise TypeError(f"lockstep: loss: expected a handbp loss, got {type(loss).__name__}")
    if not isinstance(optimizer, hb.optim.Optimizer):
        raise TypeError(f"lockstep: optimizer: expected a handbp optimizer, got {type(optimizer).__name__}")
    dtype = np.dtype(model.dtype)
    tol = default_tolerance(dtype, rtol, atol)
    ratio_tol = 1e-6 if dtype == np.float64 else 1e-3
    leaf_list = leaves(model)
    paths = [p for p, _ in leaf_list]
    names = {id(p): n for n, p in model.named_parameters()}
    owners = {}
    for path, m in model.named_modules():
        for pname, p in m._parameters.items():
            owners[id(p)] = type(m).__name__
    params = list(model.named_parameters())
    label = {n: f"{n} ({owners[id(p)]})" for n, p in params}
    opt_params = [p for g in optimizer.param_groups for p in g["params"]]
    for p in opt_params:
        if id(p) not in names:
            raise ValueError("lockstep: optimizer: it updates a parameter that is not in the model")
    twin = _Twin(model, loss, optimizer, paths)
    ref = _Twin(model, loss, optimizer, paths, dtype=np.float64) if tol.mode == "float32-rule" else None
    free = _Twin(model, loss, optimizer, paths) if not resync else None
    trace = Trace(tol, dtype, resync)
    buffer_owner = {}
    for path, m in model.named_modules():
        for bname in m._buffers:
            buffer_owner[f"{path}.{bname}" if path else bname] = type(m).__name__
    loss_label = f"loss ({type(loss).__name__})"
    t0 = time.perf_counter()
    previous_grads = {}
    for step, (x, y) in enumerate(data):
        x = np.asarray(x)
        before = {n: p.data.copy() for n, p in params}
        # -- handbp's step, recorded
        # (an exception part-way is held back: what was computed before it is still compared, as
        # a wrong shape often makes a later phase fail, and the Divergence explains why)
        out = value = dpred = grads = None
        reached, error = 0, None
        with Recorder(leaf_list) as rec:
            try:
                optimizer.zero_grad()
                out = model(x)
                value = loss(out, y)
                reached = 1
                dpred = loss.backward()
                model.backward(dpred)
                grads = {n: (None if p.grad is None else p.grad.copy()) for n, p in params}
                reached = 2
                optimizer.step()
                reached = 3
            except Exception as e:   # noqa: BLE001 - re-raised below unless a mismatch explains it
                error = e
        # -- the twins' steps
        try:
            if ref is None:
                tw = twin.step(x, y)
                rf = None
            elif reached >= 2:
                tw = twin.local_step(x, y, rec, dpred, out, grads)
                rf = ref.local_step(x, y, rec, dpred, out, grads)
            else:   # handbp failed before its gradients: compare the twins' own steps
                tw, rf = twin.step(x, y), ref.step(x, y)
            if free is not None:
                free.step(x, y, record=False)
        except Exception:
            if error is not None:
                raise error from None     # bad input: handbp's own error says what is wrong
            raise
        # -- the checks, in causal order; ``get(twin, result, key)`` reads torch's value
        checks = []
        sides = [(twin, tw)] + ([(ref, rf)] if ref is not None else [])

        def add(name, quantity, a, get, key=None, bef=None):
            vals = [get(t, r, key) for t, r in sides]
            checks.append(Check(name, quantity, a, vals[0], vals[1] if ref is not None else None, bef))

        for i, (path, m) in enumerate(leaf_list):
            if error is not None and path not in rec.outputs:
                continue
            add(_label(path, m), "output", rec.outputs.get(path), lambda t, r, i: r["outputs"][i], i)
        for bname, buf in model.named_buffers():
            add(f"{bname} ({buffer_owner[bname]})", "buffer", np.asarray(buf),
                lambda t, r, k: to_numpy(t.model.get_buffer(k)), bname)
        if reached >= 1:
            add(loss_label, "loss", np.float64(value), lambda t, r, _: np.float64(r["loss"]))
        if dpred is not None:
            add(loss_label, "grad_pred", dpred, lambda t, r, _: r["grad_pred"])
        for i in reversed(range(len(leaf_list))):
            if error is not None and leaf_list[i][0] not in rec.grad_inputs:
                continue
            path, m = leaf_list[i]
            add(_label(path, m), "grad_input", rec.grad_inputs.get(path),
                lambda t, r, i: r["grad_inputs"][i], i)
        for n, p in (params if reached >= 2 else ()):
            add(label[n], "grad", grads[n], lambda t, r, k: r["grads"][k], n)
            checks[-1].previous = previous_grads.get(n)
        for p in (opt_params if reached >= 3 else ()):
            n = names[id(p)]
            mine = optimizer.state.get(p, {})
            keys = set(mine) | set(twin.optimizer.state.get(twin.mapping[p], {}))
            for key in sorted(keys):
                a = mine.get(key)
                a = None if a is None else np.asarray(a, dtype=np.float64 if key == "step" else None)
                add(label[n], f"state.{key}", a,
                    lambda t, r, k: _state_value(t.optimizer.state.get(t.mapping[p], {}).get(k)), key)
                checks[-1].grad = grads[n]
        for n, p in (params if reached >= 3 else ()):
            add(label[n], "param", p.data, lambda t, r, k: to_numpy(t.params[k]), n, before[n])
        failing = evaluate(checks, tol)
        if error is not None and not failing:
            raise error
        if not failing:
            blown = next((c for c in checks if c.result.get("nonfinite")), None)
            if blown is not None:
                raise NonFiniteError(step, blown.label, blown.result["nonfinite"], blown.result["total"])
        trace.steps.append({c.label: {k: c.result[k] for k in ("max_abs", "max_rel", "norm_rel")}
                            for c in checks})
        trace.losses.append(float(value))
        trace.torch_losses.append(tw["loss"])
        if free is not None:
            trace.drift.append(_drift(params, free))
        if failing:
            ctx = _context(x, out, y)
            first, rest = failing[0], failing[1:]
            others = []
            for c in rest:
                hint = diagnose(c, ctx, ratio_tol)[0]
                others.append(f"{c.label}: max rel {c.result['max_rel']:.3g}" + (f" [{hint}]" if hint else ""))
            if error is not None:
                others.append(f"then handbp raised {type(error).__name__}: {error}")
            exc = Divergence(step, first, tol, ctx, others, ratio_tol)
            exc.__cause__ = error
            trace.divergence = exc
            trace.elapsed = time.perf_counter() - t0
            if raise_on_divergence:
                raise exc
            return trace
        previous_grads = grads or {}
        twin.resync(model, optimizer)
        if ref is not None:
            ref.resync(model, optimizer)
    trace.divergence = None
    trace.elapsed = time.perf_counter() - t0
    return trace


def _state_value(v):
    if v is None:
        return None
    if hasattr(v, "detach"):
        return v.detach().numpy().astype(np.float64) if v.ndim == 0 else v.detach().numpy()
    return np.asarray(v, dtype=np.float64)


def _drift(params, free):
    worst = 0.0
    for n, p in params:
        t = to_numpy(free.params[n])
        scale = max(float(np.abs(p.data).max(initial=0.0)), 1e-300)
        worst = max(worst, float(np.abs(p.data - t).max(initial=0.0)) / scale)
    return worst
