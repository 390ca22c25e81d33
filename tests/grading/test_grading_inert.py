"""Installing handbp registers the grading plugin in every pytest run of the environment; in an
unrelated project's run (no grading option, no ``points`` marker) it stays inert: it imports
nothing beyond its own small entry module (no grader, no NumPy, torch or handbp), and registers no
hook that runs per test, serially and on xdist's workers. (xdist's controller, which collects
nothing and so cannot know whether a test is graded, keeps one hook per report: a test of the
report's ``user_properties``, empty in such a run.) Each run writes what its process holds at its
very end, from the project's own conftest."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.inner_runs import FAST

UNRELATED = '''
def test_passes():
    assert 1 + 1 == 2

def test_also_passes():
    assert "a" * 2 == "aa"
'''

RECORDER = '''
import json, os, sys

def pytest_unconfigure(config):
    hooks = {}
    for name in dir(config.hook):
        for impl in getattr(getattr(config.hook, name), "get_hookimpls", lambda: [])():
            module = getattr(impl.plugin, "__name__", None) or type(impl.plugin).__module__
            if module.startswith("crosscheck.grading"):
                hooks.setdefault(config.pluginmanager.get_name(impl.plugin), []).append(name)
    loaded = [m for m in sys.modules if m.split(".")[0] in ("numpy", "torch", "handbp", "crosscheck")]
    if hasattr(config, "workerinput"):
        where = config.workerinput["workerid"]
    else:
        where = "controller" if config.getoption("dist", "no") != "no" else "serial"
    with open(os.path.join(os.environ["RECORD_TO"], where + ".json"), "w") as f:
        json.dump({"modules": sorted(loaded), "hooks": {k: sorted(v) for k, v in hooks.items()}}, f)
'''

ENTRY = {"crosscheck-grading": ["pytest_addoption", "pytest_configure"]}     # options, the marker (and the fixture)
WATCH = {"serial": ["pytest_collection_modifyitems"], "gw0": ["pytest_collection_modifyitems"],
         "gw1": ["pytest_collection_modifyitems"], "controller": ["pytest_runtest_logreport"]}


def outer_env():
    """This process's environment without what an xdist worker of this suite sets (its worker id)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}


def run_project(tmp_path, tests, *args):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_unrelated.py").write_text(tests)
    (project / "conftest.py").write_text(RECORDER)
    records = tmp_path / "records"
    records.mkdir()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *FAST, *args], cwd=project, capture_output=True,
                          text=True, timeout=300, env={**outer_env(), "RECORD_TO": str(records)})
    assert done.returncode == 0, done.stdout + done.stderr
    return {p.stem: json.loads(p.read_text()) for p in records.iterdir()}


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_an_unrelated_projects_run_imports_nothing_and_runs_no_grading_hook_per_test(tmp_path, args):
    records = run_project(tmp_path, UNRELATED, *args)
    assert set(records) == ({"serial"} if not args else {"controller", "gw0", "gw1"})
    for where, record in records.items():
        # crosscheck's package and its two plugin modules: nothing of the grader, NumPy, torch or handbp
        assert record["modules"] == ["crosscheck", "crosscheck.grading", "crosscheck.plugin"], where
        assert record["hooks"] == {**ENTRY, "crosscheck-grading-watch": WATCH[where]}, where


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_points_marker_is_what_wakes_it(tmp_path, args):
    """The same records with one graded test: the check above can tell."""
    graded = "import pytest\n\n@pytest.mark.points(1)\ndef test_graded():\n    pass\n" + UNRELATED
    records = run_project(tmp_path, graded, *args)
    for where, record in records.items():
        assert "crosscheck.grading.grader" in record["modules"], where
        assert any(h.startswith("pytest_runtest") for h in record["hooks"].get("crosscheck-grader", [])), where
