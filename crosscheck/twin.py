"""The torch side of a lockstep step: a twin of model, loss and optimizer, made to start each step
from handbp's state (``sync``), and its instrumented training step (``step``, or ``local_step``
module by module on handbp's own inputs, for the float32 rule)."""
import numpy as np

from handbp.structure import flatten, flatten_like, map_structure

from ._torch import require_torch, to_numpy
from .mirror import build_optimizer, load_optimizer_state, mirror, target_tensor, torch_dtype, twin_param_map


def vjp(out, dy):
    """The scalar ``Σ out ⊙ dy``, whose backward sends exactly ``dy`` into ``out`` (its gradient
    with respect to ``out`` is ``1 · dy``): ``out.backward(dy)`` without the upstream gradient,
    which torch checks against ``out``'s shape through its symbolic-shapes module, importing sympy
    (longer than importing torch itself) in the process that first does so."""
    return (out * dy).sum()


def group_layout(optimizer):
    """Which parameters each param group holds, by identity: a change means the twin's optimizer
    must be rebuilt (``add_param_group`` between steps)."""
    return tuple(tuple(map(id, g["params"])) for g in optimizer.param_groups)


class Twin:
    """A torch twin of model, loss and optimizer, and one instrumented training step on it.

    ``leaf_paths``: the handbp leaves' paths (the twin is run leaf by leaf, so every leaf's input
    gradient is known); ``dtype``: build the twin in this dtype instead of the model's (the
    float64 reference of the float32 rule)."""

    def __init__(self, model, loss, optimizer, leaf_paths, dtype=None):
        torch = self.torch = require_torch()
        self.model = mirror(model)
        if dtype is not None:
            self.model.to(torch_dtype(dtype))
        self.loss = mirror(loss)
        self.leaves = [self.model.get_submodule(p) if p else self.model for p in leaf_paths]
        self.params = dict(self.model.named_parameters())
        self.param_list = [p for p in self.params.values() if p.requires_grad]   # (a custom twin may freeze some)
        # NumPy views of the twin's parameters and buffers (updated in place by torch)
        self.views = {k: t.detach().numpy() for k, t in self.model.state_dict(keep_vars=True).items()}
        self.dtype = next(iter(self.params.values())).dtype if self.params else torch_dtype(model.dtype)
        self.np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        self.module_pairs = []           # each handbp module beside its twin, parents first (modes)
        for path, m in model.named_modules():
            try:
                self.module_pairs.append((m, self.model.get_submodule(path) if path else self.model))
            except AttributeError:      # a registered twin built differently inside: its parent sets it
                pass
        self._mirror_optimizer(optimizer)

    def _mirror_optimizer(self, optimizer):
        self.optimizer = build_optimizer(optimizer, self.model)
        self.mapping = twin_param_map(optimizer, self.model)
        # The state torch's constructor makes (Adagrad's ``sum``), kept before handbp's replaces it:
        # since every step starts from handbp's state, this is the one look at the state handbp's
        # constructor made (lockstep compares the two before the first step)
        self.constructed = {p: {k: _state_copy(v) for k, v in self.optimizer.state[tp].items()}
                            for p, tp in self.mapping.items() if self.optimizer.state.get(tp)}
        load_optimizer_state(optimizer, self.optimizer, self.mapping)
        self.groups_seen = group_layout(optimizer)
        owned = {id(t) for t in self.mapping.values()}
        self.owned = [id(t) in owned for t in self.param_list]   # zero_grad clears only these

    def _tensor(self, a):
        """A tensor holding a copy of ``a`` in the twin's dtype."""
        return self.torch.from_numpy(np.array(a, dtype=self.np_dtype))

    def _target(self, y):
        y = np.asarray(y)
        return self._tensor(y) if y.dtype.kind == "f" else target_tensor(y, self.np_dtype)

    # -- starting a step where handbp starts it
    def sync(self, params, buffers, optimizer, values=True):
        """Make the twin start this step where handbp starts it: in place, handbp's parameters,
        buffers (``(name, (module, attribute))``), the gradients of parameters outside the
        optimizer (they accumulate across steps; the optimizer's own are cleared by the step),
        every module's train/eval mode, the optimizer's param groups (a group added, every
        hyperparameter, so a scheduler or a hand edit carries over) and its state. With
        ``values=False`` (the free-running twin) only the modes and the hyperparameters."""
        for m, t in self.module_pairs:
            if t.training != m.training:
                t.train(m.training)
        if group_layout(optimizer) != self.groups_seen:      # a param group added between steps
            self._mirror_optimizer(optimizer)
            if not values:
                self.optimizer.state.clear()
        for mine, theirs in zip(optimizer.param_groups, self.optimizer.param_groups):
            theirs.update((key, v) for key, v in mine.items() if key != "params")
        if not values:
            return
        views = self.views
        for n, p in params:
            views[n][...] = p.data
        for n, (m, attr) in buffers:
            views[n][...] = getattr(m, attr)
        if len(self.mapping) != len(params):
            for n, p in params:
                if p not in self.mapping:
                    self.params[n].grad = None if p.grad is None else self._tensor(p.grad)
        load_optimizer_state(optimizer, self.optimizer, self.mapping)

    # -- the twin's own step
    def _inputs(self, x):
        """A module's input as tensors: float arrays as copies in the twin's dtype that require grad,
        integer ones (indices) as int64, a tuple part by part."""
        def one(a):
            a = np.asarray(a)
            if a.dtype.kind in "iub":
                return self.torch.from_numpy(a.astype(np.int64))
            return self._tensor(a).requires_grad_(True)
        return one(x) if type(x) is not tuple else map_structure(one, x)

    def step(self, x, y, record=True, update_with=None):
        """The twin's own training step: forward leaf by leaf, loss, one backward pass that returns
        the gradient of every leaf's input and every parameter (``torch.autograd.grad``), the
        optimizer's zero_grad (its own parameters) and step. ``update_with(own)``: given the twin's
        own gradients (by parameter name), the ones to step with instead (handbp's, where they
        agree with the twin's: see ``lockstep.Twins.step``), as arrays nobody else holds: they
        become the twin's gradients without a copy. Returns NumPy values: ``outputs``,
        ``grad_inputs`` (per leaf), ``grad_pred``, ``loss``, ``grads`` (per parameter name). A leaf
        whose input or output is a tuple (several, ``handbp.structure``) has them as tuples and
        its input gradients as a list, one per array of its input (None where none reached it)."""
        xt = self._inputs(x)
        h, ins, structured = xt, [xt], type(xt) is tuple
        for m in self.leaves:
            h = m(h)
            if type(h) is tuple:
                # each array of a tuple as its own alias: the gradient autograd gives for it is then
                # the one that reached it from the next leaf, as handbp's (h_n = o ⊙ tanh(c_n):
                # c_n's own tensor would also collect what reached h_n)
                h, structured = map_structure(lambda t: t.view_as(t), h), True
            ins.append(h)
        loss = self.loss(h, self._target(y))
        if structured:
            flat = [flatten(t) for t in ins]
        else:                      # one tensor per leaf (the input's may be integer indices)
            flat = [[t] for t in ins]
        wanted = [t for ts in flat for t in ts if t is not None and t.requires_grad]
        gs = self.torch.autograd.grad(loss, wanted + self.param_list, allow_unused=True)
        k = len(wanted)
        for p, g, own in zip(self.param_list, gs[k:], self.owned):
            if own or p.grad is None:
                p.grad = g
            elif g is not None:
                p.grad = p.grad + g
        if update_with is not None:
            own = {n: None if p.grad is None else p.grad.numpy() for n, p in self.params.items()}
            for n, g in update_with(own).items():         # (arrays of its own: used, not copied)
                self.params[n].grad = self.torch.from_numpy(np.asarray(g, dtype=self.np_dtype))
        self.optimizer.step()
        if not record:
            return None
        # (gradients from autograd.grad do not require grad: .numpy() needs no detach)
        if structured:
            found = {id(t): None if g is None else g.numpy() for t, g in zip(wanted, gs[:k])}
            grads = [[found.get(id(t)) for t in ts] for ts in flat]
            grad_inputs = [g if type(t) is tuple else g[0] for t, g in zip(ins[:-1], grads[:-1])]
            outputs, grad_pred = [_numpy(o) for o in ins[1:]], grads[-1][0]
        else:
            grads = [None if g is None else g.numpy() for g in gs[:k]]
            grads = [None] * (len(ins) - k) + grads        # (no gradient for integer inputs)
            grad_inputs, grad_pred = grads[:-1], grads[-1]
            outputs = [o.detach().numpy() for o in ins[1:]]
        if update_with is None:
            own = {n: None if p.grad is None else p.grad.numpy() for n, p in self.params.items()}
        return dict(outputs=outputs, grad_inputs=grad_inputs, grad_pred=grad_pred, loss=loss.item(), grads=own)

    def local_step(self, x, y, mine):
        """Each module on handbp's own inputs: leaf i gets handbp's input to leaf i for its forward
        and handbp's upstream gradient for its backward; the loss gets handbp's prediction; the
        optimizer steps with handbp's gradients. Every value then carries only that one operation's
        rounding, so no error is amplified on its way through the network (float32's rule).
        ``mine``: handbp's recorded step (``lockstep.Side``)."""
        self.optimizer.zero_grad()
        outputs, grad_inputs = [], []
        for i, m in enumerate(self.leaves):
            xi = self._inputs(mine.input_of(i, x))
            oi = m(xi)
            outputs.append(_numpy(oi))
            dy = mine.upstream_of(i)
            if dy is None:
                grad_inputs.append(None)
                continue
            pairs = [(o, d) for o, d in zip(flatten(oi), flatten_like(dy, oi))
                     if o is not None and d is not None and o.requires_grad]
            if pairs:                   # (the scalar Σ o ⊙ d of each output: see vjp)
                sum(vjp(o, self._tensor(d)) for o, d in pairs).backward()
            g = [None if t is None or t.grad is None else to_numpy(t.grad) for t in flatten(xi)]
            grad_inputs.append(g if type(xi) is tuple else g[0])
        pred = self._tensor(mine.out).requires_grad_(True)
        loss = self.loss(pred, self._target(y))
        loss.backward()
        result = dict(outputs=outputs, grad_inputs=grad_inputs, grad_pred=to_numpy(pred.grad),
                      loss=float(loss.detach()))
        result["grads"] = {n: None if p.grad is None else to_numpy(p.grad).copy() for n, p in self.params.items()}
        with self.torch.no_grad():
            for n, p in self.params.items():
                g = mine.grads.get(n)
                p.grad = None if g is None else self._tensor(g)
        self.optimizer.step()
        return result

    # -- one module alone, for the recheck
    def rerun(self, i, quantity, x, dy, params, local=None):
        """Leaf ``i`` alone: its forward on ``x`` and, unless ``quantity`` is ``"output"``, its
        backward on ``dy``, with its parameters set to ``params`` (by local name) for the run and
        restored afterwards. Returns the output, the input gradient (``"grad_input"``) or the
        gradient of parameter ``local`` (``"grad"``) as a NumPy array, or None."""
        torch, leaf = self.torch, self.leaves[i]
        saved = {k: t.detach().clone() for k, t in leaf.state_dict(keep_vars=True).items()}
        try:
            with torch.no_grad():
                for n, t in leaf.named_parameters():
                    if n in params:
                        t.copy_(torch.from_numpy(params[n]))
            xi = self._tensor(x).requires_grad_(True)
            out = leaf(xi)
            if quantity == "output":
                return out.detach().numpy().copy()
            target = xi if quantity == "grad_input" else dict(leaf.named_parameters()).get(local)
            if target is None:
                return None
            (g,) = torch.autograd.grad(vjp(out, self._tensor(dy)), target, allow_unused=True)
            return None if g is None else g.numpy().copy()
        finally:
            with torch.no_grad():
                for k, t in leaf.state_dict(keep_vars=True).items():
                    t.copy_(saved[k])


def _state_copy(v):
    """An optimizer state entry as a NumPy copy (a scalar ``step`` as a float64 0-d array)."""
    if hasattr(v, "detach"):
        v = v.detach().numpy()
        return v.astype(np.float64) if v.ndim == 0 else v.copy()
    return np.asarray(v, dtype=np.float64)


def _numpy(t):
    """A tensor, or a tuple of them, as NumPy values (detached views)."""
    return to_numpy(t) if type(t) is not tuple else map_structure(to_numpy, t)
