"""What a checkpoint says about a model: its architecture, the classes it may name, the state
that architecture declares, and the model built from it.

An architecture is JSON: ``{"type": "Sequential", "children": [...]}`` for a Sequential,
``{"type": "Linear", "args": {...}}`` (the module's ``config_args()``, or a DNN's ``config``) for
the rest. A checkpoint may name handbp's public layers (the Module classes ``import handbp``
exports) and the classes registered with ``register``; nothing else is built. Before anything is
built, the state the architecture declares (each class's ``state_shapes``: names and shapes its
arguments imply) is compared with the arrays the file holds, so a few kilobytes cannot ask for
terabytes.
"""
import importlib
import inspect
import itertools

import numpy as np

from .errors import CheckpointError, MetadataFieldError, describe, expected_field, required_field
from .module import Module, Sequential
from .network import DNN

_registered = {}                 # class name -> class, filled by register()


def register(cls):
    """Let checkpoints hold ``cls``, a Module class of your own; returns it, so it also works as a
    decorator (``@hb.checkpoint.register``).

    ``hb.load`` builds only classes it knows, by name: handbp's public layers and the classes
    registered here (in the process that loads, before it loads). A registered class is rebuilt
    as ``cls(**module.config_args())``, and a class with parameters or buffers declares them in the
    class method ``state_shapes`` (see ``hb.Linear``), which loading checks against the file first.
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register: expected a handbp Module class, got {describe(cls)}")
    known = known_classes().get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"register: a different class named {cls.__name__!r} is already known "
                         f"({known.__module__}.{known.__qualname__}); checkpoints name classes by name, "
                         "so give yours another name")
    _registered[cls.__name__] = cls
    return cls


def known_classes():
    """The classes a checkpoint may name, by name: handbp's public layers (``hb.Linear``, ...) and
    the registered ones."""
    package = importlib.import_module(__package__)
    public = {obj.__name__: obj for obj in vars(package).values() if isinstance(obj, type) and issubclass(obj, Module)}
    return {**public, **_registered}


def _known_class(name, field):
    if not isinstance(name, str):
        raise expected_field(field, "a class name", name)
    cls = known_classes().get(name)
    if cls is None:
        raise MetadataFieldError(field, f"names {name!r}, which is not one of handbp's public layers; a class of "
                                        f"your own loads once registered: hb.checkpoint.register({name})")
    return cls


def _built_from_children(cls):
    """Whether an architecture describes the class by its children (a Sequential, not a DNN)."""
    return issubclass(cls, Sequential) and not issubclass(cls, DNN)


def architecture(model):
    """A JSON-able description from which ``build`` makes the same model (fresh weights)."""
    cls = type(model)
    if not isinstance(model, Module) or known_classes().get(cls.__name__) is not cls:
        raise TypeError(f"architecture: cannot describe {describe(model)}: only handbp's own modules (those "
                        f"`import handbp` exports) and classes registered with hb.checkpoint.register"
                        f"({cls.__name__}) can be saved with their architecture; or save model.state_dict() "
                        "with np.savez")
    if hasattr(model, "config"):       # DNN and friends: rebuilt from their constructor arguments
        return {"type": cls.__name__, "args": dict(model.config)}
    if isinstance(model, Sequential):
        return {"type": cls.__name__, "children": [architecture(m) for m in model]}
    return {"type": cls.__name__, "args": model.config_args()}


# -- checking a description -------------------------------------------------------------------
def check_description(spec, field="architecture"):
    """Raise MetadataFieldError naming the first field of ``spec`` that is missing or malformed."""
    if not isinstance(spec, dict):
        raise expected_field(field, "a module description (a JSON object)", spec)
    cls = _known_class(required_field(spec, "type", f"{field}.type", str, "a class name"), f"{field}.type")
    if "children" in spec and "args" in spec:
        raise MetadataFieldError(field, "holds both 'args' and 'children'")
    if "children" not in spec and "args" not in spec:
        raise MetadataFieldError(f"{field}.{'children' if _built_from_children(cls) else 'args'}", "is missing")
    if "children" in spec:
        if not _built_from_children(cls):
            raise MetadataFieldError(f"{field}.children", f"is given for {cls.__name__}, which is built from arguments")
        children = required_field(spec, "children", f"{field}.children", list, "a list of module descriptions")
        for i, child in enumerate(children):
            check_description(child, f"{field}.children[{i}]")
        return
    args = required_field(spec, "args", f"{field}.args", dict, "a JSON object of constructor arguments")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):   # a class whose signature Python cannot tell
        parameters = {}
    # an argument whose default is a flag, a number or a string must be one too (a number may be
    # None, as BatchNorm1d's momentum, a list of numbers, as Conv2d's stride, or a string, as
    # Conv2d's padding="same": the class decides)
    for name, parameter in parameters.items():
        default, value, where = parameter.default, args.get(name), f"{field}.args.{name}"
        if name not in args or default is inspect.Parameter.empty:
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise expected_field(where, "True or False", value)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None \
                and not isinstance(value, str) and not _number_or_numbers(value):
            raise expected_field(where, "a number", value)
        if isinstance(default, str) and not isinstance(value, str):
            raise expected_field(where, "a string", value)


def _number_or_numbers(value):
    """A JSON number (True is none), or a list of them (a per-dimension size)."""
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# -- the state a description declares --------------------------------------------------------
def _shape_config(cls, args, field):
    """The arguments of ``cls.state_shapes``: the saved ones, with a DNN's activation as its class."""
    if issubclass(cls, DNN):
        return {**args, "activation": _known_class(args.get("activation"), f"{field}.activation")}
    return args


def _declared(spec, field):
    """Yield (name, shape, field of the module that declares it), children prefixed by their index."""
    cls = _known_class(spec["type"], f"{field}.type")
    if "children" in spec:
        for i, child in enumerate(spec["children"]):
            for name, shape, where in _declared(child, f"{field}.children[{i}]"):
                yield f"{i}.{name}", shape, where
        return
    try:
        for name, shape in cls.state_shapes(**_shape_config(cls, spec["args"], f"{field}.args")):
            yield name, tuple(shape), f"{field}.args"
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise MetadataFieldError(f"{field}.args", f"does not give {cls.__name__}'s state "
                                                  f"({type(e).__name__}: {e})") from None


def declared_state(spec, limit=None):
    """``{name: shape}`` of the parameters and buffers the architecture ``spec`` declares, from each
    class's ``state_shapes``, computed without building anything; at most ``limit`` + 1 entries."""
    pairs = itertools.islice(_declared(spec, "architecture"), None if limit is None else limit + 1)
    return {name: shape for name, shape, _ in pairs}


def check_declared_state(spec, stored):
    """Raise MetadataFieldError unless ``spec`` declares exactly the arrays ``stored`` (name ->
    shape) holds: it stops at the first one too many, however many more are declared."""
    declared = {}                    # name -> the field of the module that declares it
    for name, shape, where in itertools.islice(_declared(spec, "architecture"), len(stored) + 1):
        if name not in stored:
            raise MetadataFieldError(where, f"implies an array '{name}' of shape {shape}, which the file does not "
                                            "hold" if len(declared) < len(stored) else
                                            f"implies more than the {len(stored)} arrays the file holds")
        if shape != stored[name]:
            raise MetadataFieldError(where, f"implies '{name}' of shape {shape}, the file holds shape {stored[name]}")
        declared[name] = where
    missing = [name for name in stored if name not in declared]
    if missing:
        module = missing[0].rpartition(".")[0]
        where = next((w for n, w in declared.items() if n.rpartition(".")[0] == module), "architecture")
        raise MetadataFieldError(where, f"implies no array '{missing[0]}', which the file holds "
                                        f"({len(missing)} such)")


# -- building -----------------------------------------------------------------------------------
def build(spec, dtype=np.float64):
    """Make a model from ``architecture``'s description (checked, its declared state too). Its
    initial weights are placeholders for the loaded ones; numpy's global random state, which
    layers draw them from by default, is left as it was (loading a model must not change the data
    a seeded script draws next)."""
    state = np.random.get_state()
    try:
        return _build(spec, dtype, "architecture")
    finally:
        np.random.set_state(state)


def _build(spec, dtype, field):
    cls = _known_class(spec["type"], f"{field}.type")
    if "children" in spec:
        return cls(*[_build(c, dtype, f"{field}.children[{i}]") for i, c in enumerate(spec["children"])])
    args = dict(spec["args"])
    try:
        if issubclass(cls, DNN):
            act = _known_class(args.pop("activation", None), f"{field}.args.activation")
            act_args = args.pop("activation_args", {})
            args["activation"] = (lambda: act(**act_args)) if act_args else act
            module = cls(**args, dtype=dtype, rng=np.random.default_rng(0))
        else:
            module = cls(**args).to(dtype)
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise MetadataFieldError(f"{field}.args", f"does not build a {cls.__name__} ({e})") from None
    # a save writes every argument: one the file lacks would be taken from its default, silently
    lacking = [key for key in architecture(module)["args"] if key not in spec["args"]]
    if lacking:
        raise MetadataFieldError(f"{field}.args.{lacking[0]}", "is missing")
    return module


# -- comparing two descriptions -----------------------------------------------------------------
ABSENT = object()


def _json_kind(v):
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else type(v)


def first_difference(saved, mine, field="architecture"):
    """The first field where two descriptions differ, as (field, saved value, model's value; ABSENT
    where a side lacks it), or None when they are the same (True and 1 are not: JSON tells them
    apart)."""
    if isinstance(saved, dict) and isinstance(mine, dict):
        for key in sorted(set(saved) | set(mine), key=str):
            found = first_difference(saved.get(key, ABSENT), mine.get(key, ABSENT), f"{field}.{key}")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(mine, list) and len(saved) == len(mine):
        for i, (a, b) in enumerate(zip(saved, mine)):
            found = first_difference(a, b, f"{field}[{i}]")
            if found:
                return found
        return None
    return None if _json_kind(saved) == _json_kind(mine) and saved == mine else (field, saved, mine)
