"""Provenance: the forbidden imports read from a submission's source and from what it holds, the
classes a test grades written by the student, and where a submission's file is found."""
import types

import pytest

import handbp as hb
from crosscheck.grading import handin as S


def check(tmp_path, source, forbidden, name="layers"):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except ImportError:
        pass                                     # (a forbidden module that is not installed: the source says it)
    return S.check_imports(str(path), module, forbidden)


@pytest.mark.parametrize("source, forbidden, found", [
    ("import numpy as np\nimport handbp as hb\nclass L(hb.Module): pass\n", ("torch", "handbp-layers"), []),
    ("import torch\n", ("torch",), [(1, "import torch")]),
    ("import numpy\nimport torch.nn as nn\n", ("torch",), [(2, "import torch.nn")]),
    ("from torch.nn import functional as F\n", ("torch",), [(1, "from torch.nn import ...")]),
    ("from torch import tanh\n", ("torch",), [(1, "from torch import ...")]),
    ("import handbp as hb\nLinear = hb.Linear\n", ("handbp-layers",), [(2, "hb.Linear (handbp's Linear)")]),
    ("import handbp\nclass S(handbp.activations.Sigmoid): pass\n", ("handbp-layers",),
     [(2, "handbp.activations.Sigmoid (handbp's Sigmoid)")]),
    ("from handbp import ReLU as R\n", ("handbp-layers",), [(1, "from handbp import ReLU")]),
    ("from handbp.layers import *\n", ("handbp-layers",), [(1, "from handbp.layers import * (it brings in handbp's layers)")]),
    ("import handbp as hb\nLinear = hb.Linear\n", ("torch",), []),       # handbp's layers allowed unless listed
    ("t = __import__('to' + 'rch')\n", ("torch",),
     [(1, "__import__ (not allowed here: it can import or run any code)")]),
    ("import importlib\nt = importlib.import_module('torch')\n", ("torch",),
     [(2, "importlib.import_module (imports by name are not allowed here)")]),
    ("import scipy.special\n", ("scipy",), [(1, "import scipy.special")]),
    ("import torchvision\n", ("torch",), []),                            # another package, not a torch module
])
def test_forbidden_imports_are_read_from_the_source(tmp_path, source, forbidden, found):
    assert check(tmp_path, source, forbidden) == found


def test_what_the_module_holds_is_checked_too(tmp_path):
    """A name bound at run time, whatever the source says (here through sys.modules)."""
    source = "import sys\nT = sys.modules['torch']\nMy = sys.modules['handbp'].__dict__['Sigmoid']\n"
    import torch  # noqa: F401  (so that sys.modules holds it)
    assert check(tmp_path, source, ("torch", "handbp-layers")) == [(None, "T is the module torch"),
                                                                 (None, "My is handbp's Sigmoid")]


def test_handbp_layers_are_its_modules_but_the_bases_a_student_builds_on():
    names = S.handbp_layer_names()
    assert {"Linear", "Sigmoid", "ReLU", "Tanh", "MSELoss", "CrossEntropyLoss", "BatchNorm1d"} <= names
    assert not names & {"Module", "Sequential", "Loss", "Parameter"}


OWN = '''
import handbp as hb

class Mine(hb.Module):
    def forward(self, x):
        return x
    def backward(self, dy):
        return dy

class Half(hb.Module):
    def forward(self, x):
        return x

class Inherits(hb.Sigmoid):
    pass

class Child(Mine):
    pass

Alias = hb.Linear
NotAClass = 3
'''


@pytest.mark.parametrize("name, problems", [
    ("Mine", []),
    ("Child", []),                                         # inherits the student's own methods: theirs
    ("Half", ["Half.backward is not written in your code: Half inherits it from handbp.module.Module "
              "(handbp.module.Module.backward)"]),
    ("Inherits", ["Inherits.forward is not written in your code: Inherits inherits it from "
                  "handbp.activations.Sigmoid (handbp.activations.Sigmoid.forward)",
                  "Inherits.backward is not written in your code: Inherits inherits it from "
                  "handbp.activations.Sigmoid (handbp.activations.Sigmoid.backward)"]),
    ("Alias", ["Alias.forward is not written in your code: Alias is handbp's own class (handbp.layers.Linear.forward)",
               "Alias.backward is not written in your code: Alias is handbp's own class "
               "(handbp.layers.Linear.backward)"]),
    ("Missing", []), ("NotAClass", []),                    # these fail the test that uses them, on their own
])
def test_a_graded_class_must_write_its_own_methods(tmp_path, name, problems):
    path = tmp_path / "layers.py"
    path.write_text(OWN)
    module = types.ModuleType("layers")
    exec(compile(OWN, str(path), "exec"), module.__dict__)
    got = S.check_own_code(module, [name], ("forward", "backward"), str(path))
    assert got == problems
    assert S.check_own_code(module, [name], ("forward", "backward"), str(tmp_path)) == got   # a folder submitted


class _Config:
    def __init__(self, given, tmp_path, ini=""):
        self.option = types.SimpleNamespace(crosscheck_submission=given)
        self.invocation_params = types.SimpleNamespace(dir=tmp_path)
        self.ini = ini

    def getoption(self, name, default=None):
        return getattr(self.option, name, default)

    def getini(self, name):
        return self.ini


def test_where_the_submission_is(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "layers.py").write_text("")
    assert S.locate(_Config("one/layers.py", tmp_path))[0] == str(tmp_path / "one" / "layers.py")
    assert S.locate(_Config("one", tmp_path)) == (str(tmp_path / "one" / "layers.py"), str(tmp_path / "one"))
    (tmp_path / "zipped" / "hw1").mkdir(parents=True)           # a student who zipped a folder
    (tmp_path / "zipped" / "hw1" / "layers.py").write_text("")
    (tmp_path / "zipped" / "notes.py").write_text("")
    assert S.locate(_Config("zipped", tmp_path, "layers.py"))[0] == str(tmp_path / "zipped" / "hw1" / "layers.py")
    assert S.locate(_Config("zipped", tmp_path))[0] == str(tmp_path / "zipped" / "notes.py")   # the only one
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.py").write_text("")
    (tmp_path / "two" / "b.py").write_text("")
    for given, ini, message in [
            (None, "", "no submission given: run pytest with --crosscheck-submission=PATH"),
            ("nowhere", "", "nowhere: no such file or folder"),
            ("two", "", "is a folder with 2 .py files; set the ini's crosscheck_submission_file"),
            ("one", "model.py", "your submission has no file named model.py")]:
        with pytest.raises(S.SubmissionError, match=message.replace("(", r"\(").replace("?", r"\?")):
            S.locate(_Config(given, tmp_path, ini))
    (tmp_path / "zipped" / "layers.py").write_text("")
    (tmp_path / "zipped" / "hw1" / "extra").mkdir()
    (tmp_path / "zipped" / "hw1" / "extra" / "layers.py").write_text("")
    assert S.locate(_Config("zipped", tmp_path, "layers.py"))[0] == str(tmp_path / "zipped" / "layers.py")


def test_the_handbp_layers_list_follows_the_library():
    """Derived from the classes handbp exports: a new layer is forbidden with the rest."""
    assert S.handbp_layer_names() == {n for n in dir(hb) if isinstance(getattr(hb, n), type)
                                      and issubclass(getattr(hb, n), hb.Module)} - {"Module", "Sequential", "Loss"}
