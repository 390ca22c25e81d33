"""The pytest plugins load in every pytest run of an environment where handbp is installed, so they
import nothing heavy: loading ``crosscheck.plugin`` and ``crosscheck.grading`` leaves handbp, NumPy
and torch unimported, and an unrelated project's suite runs even when all three are broken. The
package's public names load at first use, whatever was imported before. Each check runs in a
fresh process, where nothing is imported yet."""
import os
import subprocess
import sys

import pytest

HEAVY = ("handbp", "numpy", "torch")


def python(code, **kwargs):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("modules", [["crosscheck"], ["crosscheck.plugin"], ["crosscheck.grading"],
                                     ["crosscheck.plugin", "crosscheck.grading"]])
def test_loading_the_plugins_imports_nothing_heavy(modules):
    loaded = python(f"import sys, {', '.join(modules)}\n"
                    f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded == "[]\n"


@pytest.mark.parametrize("first", ["", "import crosscheck.lockstep, crosscheck.mirror\n",
                                   "from crosscheck.lockstep import lockstep\nfrom crosscheck.mirror import mirror\n",
                                   "import crosscheck.report\n"])
def test_the_package_names_are_the_functions_whatever_was_imported_first(first):
    """``crosscheck.lockstep`` and ``crosscheck.mirror`` are submodules and the functions they
    define: importing a submodule sets the package's attribute, and the package keeps the function."""
    out = python(first + (
        "import crosscheck as cc\n"
        "from crosscheck import lockstep, mirror, Divergence, register\n"
        "import crosscheck.lockstep as L, crosscheck.mirror as M, crosscheck.report as C\n"
        "import importlib, types\n"
        "real = importlib.import_module('crosscheck.lockstep'), importlib.import_module('crosscheck.mirror')\n"
        "print(isinstance(real[0], types.ModuleType), isinstance(real[1], types.ModuleType))\n"
        "print(cc.lockstep is lockstep is real[0].lockstep, cc.mirror is mirror is real[1].mirror)\n"
        "print(cc.Divergence is Divergence is C.Divergence, cc.register is register)\n"
        "print(sorted(set(cc.__all__) - set(dir(cc))), all(callable(getattr(cc, n)) for n in cc.__all__))\n"
        "try:\n"
        "    cc.no_such_name\n"
        "except AttributeError as e:\n"
        "    print(e)\n"))
    assert out.splitlines() == ["True True", "True True", "True True", "[] True",
                                "module 'crosscheck' has no attribute 'no_such_name'"]


UNRELATED = '''
def test_passes():
    assert 1 + 1 == 2

def test_fails():
    assert 1 + 1 == 3
'''


@pytest.fixture
def broken_heavy(tmp_path):
    """A folder for PYTHONPATH, ahead of the installed packages, where importing handbp, numpy or
    torch raises."""
    shadow = tmp_path / "shadow"
    for name in HEAVY:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise RuntimeError('{name} is broken here')\n")
    return shadow


@pytest.mark.parametrize("args", [[], ["-n", "2"]])
def test_an_unrelated_project_runs_with_handbp_numpy_and_torch_broken(args, broken_heavy, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_unrelated.py").write_text(UNRELATED)
    env = {**os.environ, "PYTHONPATH": str(broken_heavy)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("1 failed, 1 passed")
    assert "is broken here" not in done.stdout + done.stderr
    # the plugins did load: their options are there
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "--crosscheck-seed" in done.stdout and "--crosscheck-gradescope" in done.stdout
