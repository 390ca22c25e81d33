"""The student's code: where it is, importing it inside a test, and provenance.

``--crosscheck-submission PATH`` names a ``.py`` file, or a folder holding the ini's
``crosscheck_submission_file`` (found at the top or, if the student zipped a folder, in exactly one
place below). The ``submission`` fixture imports it inside the test that asks for it, once per
process (a graded test runs in a process of its own), so an import error, a syntax error or a crash
at import costs the tests, each scored 0 with the error (file, line, message), never the
collection. The submission's folder is put on ``sys.path``, so its own helper modules import.

Provenance, off by default (the ini's ``crosscheck_forbid_imports`` and ``crosscheck_own_code``, or
the ``points`` marker's ``forbid_imports=`` and ``own_code=`` for one test):

* **forbidden imports**: the submission's source may not import a listed module (``torch`` forbids
  ``torch.nn`` too), and ``handbp-layers`` forbids handbp's own layers, activations and losses
  (every ``hb.Module`` subclass handbp exports but ``Module``, ``Sequential`` and ``Loss``, which a
  student builds on). Read from the source (imports, ``handbp.X`` attributes, ``from handbp import
  X``) and from the imported module's names; with a list given, ``__import__``,
  ``importlib.import_module``, ``exec`` and ``eval`` are refused too. A violation scores every test
  that uses the submission 0, with the lines that broke the rule.
* **own code**: the classes a test grades (the marker's ``own_code="Linear"`` or a list of
  names) must define the ini's ``crosscheck_own_code`` methods (``forward backward`` unless set)
  in the submission's own files: not inherited from handbp's layer, and not handbp's layer under
  the course's name (``Linear = hb.Linear``). A violation scores that test 0.

These catch shortcuts (handbp's layer under the student's name, torch's autograd inside a
backward), not a determined adversary: the student's code runs in the grading process.
"""
import ast
import importlib.util
import os
import sys
import traceback

HANDBP_LAYERS = "handbp-layers"
_DYNAMIC = {"__import__", "exec", "eval"}
_LOADED = {}      # path -> module, or the SubmissionError its import raised (one import per process)


class SubmissionError(Exception):
    """The submission could not be imported: the message names the file, the line and the error."""


class ProvenanceError(Exception):
    """The submission uses what the course does not allow (see the module docstring)."""


# -- where it is ---------------------------------------------------------------------------
def locate(config):
    """``(file, root)``: the submission's ``.py`` file to import, and what the student submitted
    (that file, or the folder). A missing or ambiguous file is a ``SubmissionError``."""
    given = config.getoption("crosscheck_submission", None)
    if not given:
        raise SubmissionError("no submission given: run pytest with --crosscheck-submission=PATH (a .py file, or a "
                              "folder with the ini's crosscheck_submission_file)")
    given = os.path.abspath(os.path.join(str(config.invocation_params.dir), given))
    if os.path.isfile(given):
        return given, given
    if not os.path.isdir(given):
        raise SubmissionError(f"--crosscheck-submission: {given}: no such file or folder")
    name = config.getini("crosscheck_submission_file")
    if not name:
        found = sorted(f for f in os.listdir(given) if f.endswith(".py"))
        if len(found) != 1:
            raise SubmissionError(f"--crosscheck-submission: {given} is a folder with {len(found)} .py files; set "
                                  "the ini's crosscheck_submission_file to the one to import")
        return os.path.join(given, found[0]), given
    if os.path.isfile(os.path.join(given, name)):
        return os.path.join(given, name), given
    below = sorted(os.path.join(d, name) for d, _, files in os.walk(given) if name in files)
    if len(below) == 1:
        return below[0], given
    raise SubmissionError(f"your submission has no file named {name}" if not below else
                          f"your submission has {len(below)} files named {name}; keep one")


# -- importing it -----------------------------------------------------------------------------
def load(request):
    """The ``submission`` fixture: the imported module, checked against the course's provenance
    settings (forbidden imports; the test's classes written by the student)."""
    path, root = locate(request.config)
    module = _import(path)
    forbidden = forbidden_imports(request.config, request.node)
    if forbidden:
        found = check_imports(path, module, forbidden)
        if found:
            raise ProvenanceError(_provenance_text(path, root, found, forbidden))
    names = own_code_classes(request.node)
    if names:
        problems = check_own_code(module, names, request.config.getini("crosscheck_own_code") or
                                  ("forward", "backward"), root)
        if problems:
            shown = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            raise ProvenanceError(f"This test grades your own {shown}, but:\n"
                                  + "\n".join(f"  {p}" for p in problems)
                                  + "\nWrite these methods yourself; this test scores 0 until then.")
    return module


def loaded_modules():
    """The submission modules imported in this process."""
    return [m for m in _LOADED.values() if not isinstance(m, Exception)]


def submission_roots(config):
    """What the student submitted (a file or a folder), for trimming tracebacks; [] without one."""
    try:
        return [locate(config)[1]]
    except SubmissionError:
        return []


def _import(path):
    done = _LOADED.get(path)
    if isinstance(done, Exception):
        raise done
    if done is not None:
        return done
    folder = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else f"submission_{abs(hash(path))}"
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True                 # no __pycache__ among the student's files
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:           # noqa: BLE001 - any failure at import is the student's
        del sys.modules[name]
        error = SubmissionError(_import_error_text(e, path))
        _LOADED[path] = error
        raise error from None
    finally:
        sys.dont_write_bytecode = writes
    _LOADED[path] = module
    return module


def _import_error_text(e, path):
    """``layers.py, line 12: SyntaxError: invalid syntax`` and, for an error raised while the file
    ran, its frames in the submission."""
    base = os.path.dirname(path)
    shown = os.path.basename(path)
    if isinstance(e, SyntaxError) and e.filename:
        where = os.path.relpath(os.path.abspath(e.filename), base) if e.filename.startswith(os.sep) else e.filename
        text = f"{where}, line {e.lineno}: {type(e).__name__}: {e.msg}"
        if e.text:
            text += f"\n    {e.text.strip()}"
        return f"Your code could not be imported ({shown}):\n{text}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename).startswith(base + os.sep)]
    where = f"{os.path.relpath(frames[-1].filename, base)}, line {frames[-1].lineno}: " if frames else ""
    for f in frames:
        f.filename = os.path.relpath(os.path.abspath(f.filename), base)
    detail = "".join(traceback.format_list(frames))
    last = "".join(traceback.format_exception_only(type(e), e)).strip()
    return f"Your code could not be imported ({shown}):\n{where}{last}" + (f"\n{detail.rstrip()}" if detail else "")


# -- provenance: imports ---------------------------------------------------------------------
def forbidden_imports(config, item):
    """The ini's ``crosscheck_forbid_imports`` and the test's marker's ``forbid_imports``."""
    names = list(config.getini("crosscheck_forbid_imports"))
    marker = item.get_closest_marker("points") if item is not None else None
    if marker is not None:
        extra = marker.kwargs.get("forbid_imports") or ()
        names += [extra] if isinstance(extra, str) else list(extra)
    return tuple(dict.fromkeys(names))


def handbp_layer_names():
    """handbp's layers, activations and losses: the ``Module`` subclasses it exports, but the
    classes a student's own layer builds on."""
    import handbp as hb
    base = {hb.Module, hb.Sequential, hb.Loss}
    return {n for n in dir(hb) if isinstance(getattr(hb, n), type) and issubclass(getattr(hb, n), hb.Module)
            and getattr(hb, n) not in base}


def _module_forbidden(name, modules):
    return any(name == m or name.startswith(m + ".") for m in modules)


def check_imports(path, module, forbidden):
    """``[(line, text)]``: each place the submission's source (and the module's names) breaks the
    ``forbidden`` list."""
    modules = [m for m in forbidden if m != HANDBP_LAYERS]
    layers = handbp_layer_names() if HANDBP_LAYERS in forbidden else set()
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    tree = ast.parse(source, path)
    found = _Visitor(modules, layers).run(tree)
    if not found:               # what the module holds, however it got there (sys.modules, getattr, ...)
        for name, value in vars(module).items():
            text = _forbidden_value(name, value, modules, layers)
            if text:
                found.append((None, text))
    return found


def _forbidden_value(name, value, modules, layers):
    import types
    if isinstance(value, types.ModuleType):
        if _module_forbidden(value.__name__, modules):
            return f"{name} is the module {value.__name__}"
        return None
    owner = getattr(value, "__module__", None)
    if isinstance(owner, str) and _module_forbidden(owner, modules) and (callable(value) or isinstance(value, type)):
        return f"{name} comes from {owner}"
    if layers and isinstance(value, type) and value.__module__.startswith("handbp") and value.__name__ in layers:
        return f"{name} is handbp's {value.__name__}"
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, modules, layers):
        self.modules, self.layers, self.found = modules, layers, []
        self.handbp = set()           # local names bound to handbp or one of its modules

    def run(self, tree):
        self.visit(tree)
        return sorted(self.found, key=lambda f: f[0])

    def add(self, node, text):
        self.found.append((node.lineno, text))

    def visit_Import(self, node):
        for alias in node.names:
            if _module_forbidden(alias.name, self.modules):
                self.add(node, f"import {alias.name}")
            elif alias.name == "handbp" or alias.name.startswith("handbp."):
                self.handbp.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if node.level == 0 and _module_forbidden(mod, self.modules):
            self.add(node, f"from {mod} import ...")
        elif node.level == 0 and (mod == "handbp" or mod.startswith("handbp.")):
            for alias in node.names:
                if alias.name in self.layers:
                    self.add(node, f"from {mod} import {alias.name}")
                elif alias.name == "*" and self.layers:
                    self.add(node, f"from {mod} import * (it brings in handbp's layers)")
                elif _module_forbidden(f"{mod}.{alias.name}", self.modules):
                    self.add(node, f"from {mod} import {alias.name}")
                else:
                    self.handbp.add(alias.asname or alias.name)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if self.layers and node.attr in self.layers:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.handbp:
                self.add(node, f"{ast.unparse(node)} (handbp's {node.attr})")
        if node.attr == "import_module" and self.modules + list(self.layers):
            self.add(node, f"{ast.unparse(node)} (imports by name are not allowed here)")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in _DYNAMIC and (self.modules or self.layers):
            self.add(node, f"{node.id} (not allowed here: it can import or run any code)")


def _provenance_text(path, root, found, forbidden):
    shown = [m if m != HANDBP_LAYERS else "handbp's own layers, activations and losses" for m in forbidden]
    lines = [f"This course does not allow your code to use: {', '.join(shown)}.",
             f"In {os.path.basename(path)}:"]
    lines += [f"  line {line}: {text}" if line else f"  {text}" for line, text in found]
    lines.append("Write these parts yourself with NumPy; the tests that use your code score 0 until then.")
    return "\n".join(lines)


# -- provenance: own code ------------------------------------------------------------------
def own_code_classes(item):
    """The submission's classes the test grades (the ``points`` marker's ``own_code``: a name or a
    list of names)."""
    marker = item.get_closest_marker("points") if item is not None else None
    value = marker.kwargs.get("own_code") if marker is not None else None
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check_own_code(module, names, methods, root):
    """``[text]``: each class ``names`` of the submission that is missing, not a class, or does
    not define each of ``methods`` in the submission's own files (``root``: the submitted file or
    folder) — inherited from handbp, or handbp's own class under the course's name."""
    root = os.path.abspath(root)
    problems = []
    for name in names:
        cls = getattr(module, name, None)
        if not isinstance(cls, type):
            continue            # (a missing class fails the tests that use it, with its AttributeError)
        for method in methods:
            text = _own_method(cls, name, method, root)
            if text:
                problems.append(text)
    return problems


def _own_method(cls, name, method, root):
    for klass in cls.__mro__:
        if method in vars(klass):
            fn = vars(klass)[method]
            code = getattr(getattr(fn, "__func__", fn), "__code__", None)
            path = os.path.abspath(code.co_filename) if code is not None else ""
            if path == root or os.path.isdir(root) and path.startswith(root + os.sep):
                return None
            where = f"{klass.__module__}.{klass.__qualname__}.{method}"
            how = "is handbp's own class" if klass is cls else f"inherits it from {klass.__module__}.{klass.__qualname__}"
            return f"{name}.{method} is not written in your code: {name} {how} ({where})"
    return f"{name} has no {method} method"
