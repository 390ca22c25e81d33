"""Parameter, Module and Sequential: the containers every layer builds on.

A module has two halves, the chain rule's two directions:

* ``forward(x)`` computes the output and *caches* what the backward will need (the seed notebook's
  "dynamic programming memory": ``last_x``, ``last_o``), one slot, overwritten on every call;
* ``backward(dy)`` takes dL/d(output), returns dL/d(input), and **adds** dL/d(parameter) into each
  parameter's ``.grad`` (torch's accumulate semantics: call ``zero_grad()`` between steps).

A module may also take or return a tuple of arrays (an LSTM returns ``(output, (h_n, c_n))``); its
backward then takes the gradients of every output and returns those of every input, in the same
structures (``handbp.structure``). Sequential passes whatever a child returns on to the next.

Names follow torch: ``named_parameters()`` of a ``Sequential`` yields ``"0.weight"``, ``"0.bias"``,
``"2.weight"``, ..., so a ``state_dict`` here has the same keys and shapes as its torch twin's.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from . import structure, validate
from .errors import (ArgumentTypeError, CallOrderError, LayerError, LayerTypeError, LayerValueError,
                     StateDictKeyError, as_float_array, check_finite, describe)


def own_float_array(x, name, dtype):
    """``x`` as a finite floating array of ``dtype`` that nobody else holds: a copy, unless it was
    made here from a list. The check ``module(x)`` makes of its input."""
    given = x
    x = check_finite(as_float_array(x, name, dtype), name)
    return x if x is not given and x.base is None else x.copy()


def own_floats(x, name, dtype):
    """``own_float_array`` on ``x``, or on each array of a tuple (named ``x[1][0]``...)."""
    if type(x) is tuple:
        return tuple(own_floats(part, f"{name}[{i}]", dtype) for i, part in enumerate(x))
    return own_float_array(x, name, dtype)


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns, as torch's ``_IncompatibleKeys``: the model's keys the
    state_dict lacked and the state_dict's keys the model lacks (both empty under ``strict``)."""

    __slots__ = ()

    def __repr__(self):
        return "<All keys matched successfully>" if not (self.missing_keys or self.unexpected_keys) \
            else super().__repr__()


class Parameter:
    """A trainable array and its gradient.

    Attributes:
        data: the values (a C-contiguous ndarray, a copy of what was given, updated in place by
            optimizers). Contiguous as torch's parameters are: the notebook's init draws W as
            (in, out) and transposes it, and a transposed array made every in-place update and
            gradient sum mix two memory orders, several times slower on small layers.
        grad: dL/d(data) accumulated by backward passes, or ``None`` before the first one and after
            ``zero_grad()`` (as in torch, where ``zero_grad`` sets gradients to None).
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.array(data, copy=True, order="C")
        if self.data.dtype.kind != "f":
            raise TypeError(f"Parameter: expected floating-point data, got dtype {self.data.dtype}")
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, g, fresh=False):
        """``grad += g`` (``grad = g`` when there is none yet): torch's accumulation.

        ``fresh=True`` says ``g`` is a new array nobody else holds, so it can become ``grad``
        without a copy."""
        if self.grad is not None:
            self.grad += g
        elif fresh and (g.dtype is self.data.dtype or g.dtype == self.data.dtype):
            self.grad = g
        else:
            self.grad = np.array(g, dtype=self.data.dtype, copy=True)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: subclasses set parameters and submodules as attributes, and write
    ``forward`` and ``backward``.

    ``module(x)`` checks ``x`` once (a floating array of the module's dtype, all finite) and then
    calls ``forward``. Containers call their children's ``forward`` directly, so the check runs
    once per call, at the boundary, not once per layer.

    Class facts: what the rest of handbp knows about a layer, declared by the layer's class next to
    its forward (numerical differentiation and the command line read them; nothing keeps a table
    of classes):

    * ``elementwise``: y[i] depends on x[i] alone and y has x's shape (the activations);
    * ``row_wise(x)``: None when each sample of a batch ``x`` goes through independently of the
      others, else why not.

    A fact speaks for the forward it was declared with: a subclass that writes its own forward
    declares them again, or it has Module's defaults (see ``declares``).
    """

    elementwise = False

    def row_wise(self, x):
        """None when ``forward`` treats each sample of the batch ``x`` independently of the others,
        so that inputs stacked along the first axis (x's rows times R, or R one-sample inputs on a
        new first axis) go through in one call as they would one by one; else a short reason.
        Element-wise modules are; by default handbp does not know."""
        if self.elementwise:
            return None
        return f"handbp does not know whether {type(self).__name__} treats the rows of a batch independently"

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        # every name in the three tables above: a forward's cache stores (``self.last_x = x``) ask
        # this one set instead of three tables, on every call
        object.__setattr__(self, "_registered", set())
        object.__setattr__(self, "training", True)

    # -- registration: assigning a Parameter or Module to an attribute registers it, as in torch
    def __setattr__(self, name, value):
        try:
            registered = self._registered
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes") from None
        d = self.__dict__
        if name in registered or isinstance(value, (Parameter, Module)):
            # an array assigned to a buffer's name stays that buffer, as in torch
            if isinstance(value, Parameter):
                home = self._parameters
            elif isinstance(value, Module):
                home = self._modules
            else:
                home = d["_buffers"] if name in d["_buffers"] and isinstance(value, np.ndarray) else None
            # leave the name where it is in its own table (a dict keeps a replaced key's place), so
            # that replacing a weight keeps torch's state_dict order; drop it from the others
            for table in (self._parameters, self._modules, self._buffers):
                if table is not home:
                    table.pop(name, None)
            if home is None:
                registered.discard(name)    # a plain attribute from now on
            else:
                registered.add(name)
                home[name] = True if home is d["_buffers"] else value
        d[name] = value          # plain attributes (the caches) take this path alone

    def register_buffer(self, name, array):
        """A state array that is saved and loaded but not trained (BatchNorm's running mean)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True
        self._registered.add(name)

    # -- calling
    def __call__(self, x, *more):
        """Check ``x``, run ``forward``, return its output.

        ``module(x, hx)`` passes the tuple ``(x, hx)`` as the one input, as torch's
        ``lstm(x, (h0, c0))`` reads (see ``handbp.structure``).

        Layers keep arrays for backward by reference (Linear its input, Tanh its output), and the
        caller may edit its ``x`` or the returned output in place before calling backward (torch
        raises "modified by an inplace operation" then). So the model gets its own copy of ``x``
        (``check_input``) and the caller its own copy of the output: here, at the boundary, because
        containers call their children's ``forward`` directly and nothing inside a model is copied.
        (Copying always is cheaper than asking a Sequential which of its children keep what.)
        """
        x = self.check_input((x,) + more if more else x, self.dtype)
        try:
            y = self.forward(x)
        except LayerError as e:
            raise e from None  # drop handbp's own frames: the message says where
        return y.copy() if type(y) is np.ndarray else structure.copy(y)

    def check_input(self, x, dtype):
        """``x`` checked and made the model's own: a floating array of ``dtype``, all finite (a copy
        unless it was made here from a list). A tuple is checked part by part (``x[1][0]``...).
        A layer whose input is something else (``Embedding``'s integer indices, a recurrent layer's
        ``(x, hx)``) overrides this; a Sequential asks its first child."""
        return own_float_array(x, "x", dtype) if type(x) is not tuple else own_floats(x, "x", dtype)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _need_cache(self, cached, dy, shape=None, dtype=None):
        """Raise if backward comes before forward (nothing ``cached``), or if ``dy`` is not an array
        of the last forward's output's shape and dtype (by default, those of ``cached``). NaN and
        Inf in ``dy`` pass, as in torch. Called before anything is accumulated."""
        if cached is None:
            raise CallOrderError(self, "backward() called before forward(); "
                                       "run the forward pass first, it caches what backward needs")
        if shape is None:
            shape = cached.shape
        if dtype is None:
            dtype = getattr(cached, "dtype", None)
        # (``is`` first: the dtypes of one model's arrays are one object, and ``==`` costs more)
        if not (isinstance(dy, np.ndarray) and dy.shape == shape and (dy.dtype is dtype or dy.dtype == dtype)):
            self._refuse_grad_output(dy, shape, dtype)

    def _refuse_grad_output(self, dy, shape, dtype):
        """``_need_cache``'s error; a cache that is no float array (a custom layer's mask or shape)
        leaves the dtype open: any floating ``dy`` of the right shape passes."""
        if dtype is None or dtype.kind != "f":
            right_dtype, expected = isinstance(dy, np.ndarray) and dy.dtype.kind == "f", "a floating dtype"
        else:
            right_dtype, expected = isinstance(dy, np.ndarray) and dy.dtype == dtype, f"dtype {dtype}"
        if right_dtype and dy.shape == shape:
            return
        raise (LayerValueError if right_dtype else LayerTypeError)(
            self, f"grad_output: expected shape {shape} and {expected} (the last forward's output), got {describe(dy)}")

    # -- parameters
    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(name, Parameter)`` pairs, own parameters first, then each child's, as torch.

        A Parameter held by two modules (tied weights) is yielded once, under its first name, as
        torch does by default: an optimizer or ``clip_grad_norm_`` given ``model.parameters()``
        must see it once (its ``grad`` already sums both uses). ``remove_duplicate=False`` yields
        every name; ``recurse=False`` only this module's own parameters."""
        if recurse is not True or remove_duplicate is not True:     # (the defaults skip the checks: every step asks)
            recurse = validate.flag((self, "named_parameters"), "recurse", recurse)
            remove_duplicate = validate.flag((self, "named_parameters"), "remove_duplicate", remove_duplicate)
        return self._named_parameters(prefix, recurse, set() if remove_duplicate else None)

    def _named_parameters(self, prefix, recurse, seen):
        for name, p in self._parameters.items():
            if seen is not None:
                if id(p) in seen:
                    continue
                seen.add(id(p))
            yield prefix + name, p
        if recurse:
            for name, m in self._modules.items():
                yield from m._named_parameters(prefix + name + ".", True, seen)

    def parameters(self, recurse=True):
        """The Parameters of ``named_parameters(recurse=recurse)``, each once, as a list."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix=""):
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for name, m in self._modules.items():
            yield from m.named_buffers(prefix + name + ".")

    def named_modules(self, prefix=""):
        """Yield ``(path, module)`` for this module (path ``""``) and every descendant."""
        yield prefix.rstrip("."), self
        for name, m in self._modules.items():
            yield from m.named_modules(prefix + name + ".")

    def children(self):
        return list(self._modules.values())

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: ``None`` (torch's default) or zeros."""
        set_to_none = validate.flag((self, "zero_grad"), "set_to_none", set_to_none)
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    @property
    def dtype(self):
        """The dtype of the first parameter (float64 for a module without parameters)."""
        p = self._first_parameter()
        return p.data.dtype if p is not None else np.dtype(getattr(self, "_dtype", np.float64))

    def _first_parameter(self):
        """The first of ``named_parameters()``, or None; without its names and generators, as
        ``module(x)`` asks for the dtype on every call."""
        for p in self._parameters.values():
            return p
        for m in self._modules.values():
            p = m._first_parameter()
            if p is not None:
                return p
        return None

    def to(self, dtype):
        """Cast every parameter and buffer to ``dtype`` in place; returns self (torch's ``.to``)."""
        dtype = validate.float_dtype(f"{type(self).__name__}.to", "dtype", dtype)
        for _, m in self.named_modules():
            object.__setattr__(m, "_dtype", dtype)
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = None if p.grad is None else p.grad.astype(dtype)
            for name in m._buffers:
                buf = getattr(m, name)
                if isinstance(buf, np.ndarray) and buf.dtype.kind == "f":
                    object.__setattr__(m, name, buf.astype(dtype))
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # -- modes
    def train(self, mode=True):
        mode = validate.flag(f"{type(self).__name__}.train", "mode", mode)
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    # -- state
    def state_dict(self):
        """``name -> copy of the array``, module by module: each module's parameters, then its
        buffers, then its children's (torch's keys, in torch's order)."""
        out = OrderedDict()
        for path, m in self.named_modules():
            prefix = f"{path}." if path else ""
            for n, p in m._parameters.items():
                out[prefix + n] = p.data.copy()
            for n in m._buffers:
                out[prefix + n] = np.array(getattr(m, n), copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Checked first, all of it: with ``strict`` the names must be exactly this module's; each
        array's shape and dtype must match. On any error nothing is changed.

        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``, as torch does, so that
        ``strict=False`` tells what was left out.
        """
        strict = validate.flag(f"{type(self).__name__}.load_state_dict", "strict", strict)
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array, got {describe(state_dict)}")
        targets = OrderedDict()         # every key of state_dict(), in its order (a tied weight under each name)
        for path, m in self.named_modules():
            prefix = f"{path}." if path else ""
            for name, p in m._parameters.items():
                targets[prefix + name] = ("param", p)
            for name in m._buffers:
                targets[prefix + name] = ("buffer", (m, name))
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise StateDictKeyError(f"load_state_dict: state_dict does not match the model: "
                                    f"missing keys {missing}, unexpected keys {unexpected}")
        plan = []
        for key, (kind, target) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            current = target.data if kind == "param" else getattr(*target)
            arr = np.asarray(value)
            if arr.shape != np.shape(current):
                raise ValueError(f"load_state_dict: '{key}': expected shape {np.shape(current)}, got {arr.shape}")
            if arr.dtype != np.asarray(current).dtype:
                raise TypeError(f"load_state_dict: '{key}': expected dtype {np.asarray(current).dtype}, got {arr.dtype}")
            plan.append((kind, target, arr))
        for kind, target, arr in plan:
            if kind == "param":
                target.data[...] = arr
            else:
                m, name = target
                object.__setattr__(m, name, np.array(arr, copy=True))
        return IncompatibleKeys(missing, unexpected)

    def config_args(self):
        """Constructor arguments that rebuild this module (used by checkpoints)."""
        return {}

    @classmethod
    def state_shapes(cls, **config_args):
        """Yield ``(name, shape)`` for each parameter and buffer that ``cls(**config_args)`` would
        hold, in ``state_dict()`` order, worked out without building anything. A checkpoint's loader
        checks a file's arrays against it before it builds a module, so a file cannot make it
        allocate more than the file holds. A module without state yields nothing; a class with
        parameters or buffers declares them (``Linear.state_shapes``)."""
        return iter(())

    # -- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def declares(obj, fact):
    """Whether the class fact ``fact`` (``"elementwise"``, ``"row_wise"``, a loss's ``"per_row"``)
    speaks for the forward ``obj`` runs: the class that writes that forward, or a subclass of it,
    declares the fact, and the forward is not replaced on the instance. A subclass that writes its
    own forward (a student's Linear with a forward of their own) inherits no fact about its
    parent's: what it computes is not known until it says so."""
    if "forward" in vars(obj):
        return False
    for cls in type(obj).__mro__:
        if fact in vars(cls):
            return True
        if "forward" in vars(cls):
            return False
    return False


def rows_independent(module, x):
    """``module.row_wise(x)`` where the module's facts speak for its forward (see ``declares``),
    else the reason they do not: None when a stack of inputs can go through it in one call."""
    if "forward" in vars(module):
        return "its forward is replaced on the instance"
    if declares(module, "elementwise") and module.elementwise:
        return None
    if declares(module, "row_wise"):
        return module.row_wise(x)
    name = type(module).__name__
    return (f"handbp does not know whether {name} treats the rows of a batch independently ({name} writes "
            f"its own forward and declares neither elementwise nor row_wise for it)")


class Sequential(Module):
    """Modules applied in order: ``y = fₙ(…f₂(f₁(x)))``; backward applies the chain rule in
    reverse, ``dx = J₁ᵀ(J₂ᵀ(… Jₙᵀ dy))``, each factor supplied by one module's ``backward``.

    Children are named ``"0"``, ``"1"``, …, as in ``torch.nn.Sequential``.
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i}: expected a handbp Module, got {describe(m)}")
            setattr(self, str(i), m)

    def check_input(self, x, dtype):
        """The first child's check (an Embedding first takes integer indices), with this model's dtype."""
        for m in self._modules.values():
            return m.check_input(x, dtype)
        return super().check_input(x, dtype)

    def forward(self, x):
        for name, m in self._modules.items():
            try:
                x = m.forward(x)
            except LayerError as e:
                raise e.within(name) from None
            except (AttributeError, TypeError) as e:
                if type(x) is tuple:     # a tuple reached a layer that takes one array
                    raise _tuple_refused(m, x, name, e) from None
                raise
        return x

    def backward(self, dy):
        for name, m in reversed(self._modules.items()):
            try:
                dy = m.backward(dy)
            except LayerError as e:
                raise e.within(name) from None
        return dy

    def row_wise(self, x):
        """None when every child is row-wise for the input it receives, else the first child's
        reason, naming it. Runs the children's forward up to the first that is not, as a forward
        would (overwriting their caches)."""
        for name, m in self._modules.items():
            reason = rows_independent(m, x)
            if reason is not None:
                return f"its layer '{name}' ({m!r}): {reason}"
            try:
                x = m.forward(x)
            except LayerError as e:
                raise e.within(name) from None
        return None

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise ArgumentTypeError(f"Sequential: index: expected an integer or a slice, got {describe(idx)}")
        if not -len(mods) <= idx < len(mods):
            raise IndexError(f"Sequential: index: expected an integer in [{-len(mods)}, {len(mods)}), got {idx}")
        return mods[idx]

    def append(self, module):
        """Add ``module`` at the end, named ``str(len(self))``; returns self."""
        if not isinstance(module, Module):
            raise ArgumentTypeError(f"Sequential.append: module: expected a handbp Module, got {describe(module)}")
        setattr(self, str(len(self)), module)
        return self


def _tuple_refused(module, x, name, error):
    """The error for a tuple (several outputs, ``(output, h_n)``) given to a layer that takes one array."""
    return LayerTypeError(module, f"x: expected an array, got a tuple {structure.describe_structure(x)} (the "
                                  "outputs of the module before it; it raised "
                                  f"{type(error).__name__}: {error}); pick the part to pass on with "
                                  "hb.SelectOutput(0), as torch users write a small module that returns "
                                  "output[0]").within(name)
