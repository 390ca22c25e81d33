"""The grading plugin in inner pytest runs of small suites that need no torch: a crash, a hang or
``sys.exit`` in a graded test costs that test only, serially and under xdist; the submission
fixture turns an import error into 0 points per test with the error; the Autolab line comes last;
bad markers and options are usage errors; and the plugin is inert unless grading is asked for."""
import json
import subprocess
import sys

import pytest

from tests.helpers.inner_runs import FAST

pytest_plugins = ["pytester"]

CRASHES = '''
import ctypes, os, sys, time
import pytest

@pytest.mark.points(1)
def test_before():
    print("before: all is well")

@pytest.mark.points(2, problem="exit")
def test_os_exit():
    print("about to leave")
    os._exit(3)

@pytest.mark.points(2, problem="segfault")
def test_segfault():
    ctypes.string_at(0)

@pytest.mark.points(2, problem="sys_exit")
def test_sys_exit():
    sys.exit(4)

@pytest.mark.points(2, problem="hang")
def test_hang():
    while True:
        pass

@pytest.mark.points(1)
def test_after():
    print("after: all is well")

def test_not_graded():
    pass
'''


def by_name(doc):
    return {t["name"].split("::")[-1]: t for t in doc["tests"]}


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_crash_or_a_hang_costs_that_test_only(pytester, tmp_path, args):
    pytester.makepyfile(test_crashes=CRASHES)
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(f"--crosscheck-gradescope={out}", "--crosscheck-timeout=2",
                                           "--crosscheck-autolab", "--crosscheck-seed=1", *FAST, *args)
    assert result.ret == 1
    doc = json.loads(out.read_text())
    tests = by_name(doc)
    assert list(tests) == ["test_before", "test_os_exit", "test_segfault", "test_sys_exit", "test_hang", "test_after"]
    assert [(t["score"], t["tags"]) for t in tests.values()] == [
        (1.0, ["passed"]), (0.0, ["crashed"]), (0.0, ["crashed"]), (0.0, ["crashed"]), (0.0, ["timeout"]),
        (1.0, ["passed"])]
    assert "exit status 3" in tests["test_os_exit"]["output"]
    assert "SIGSEGV" in tests["test_segfault"]["output"]
    assert "sys.exit(4)" in tests["test_sys_exit"]["output"]
    assert "time limit of 2 s" in tests["test_hang"]["output"]
    assert doc["score"] == 2.0
    text = result.stdout.str()
    assert "about to leave" not in text.split("test_after")[-1]         # a crashed test's output stays its own
    assert "crashed while running" not in text and "replacing crashed worker" not in text    # xdist's workers live on
    last = result.outlines[-1]
    assert json.loads(last) == {"scores": {"test_before": 1.0, "exit": 0.0, "segfault": 0.0, "sys_exit": 0.0,
                                           "hang": 0.0, "test_after": 1.0}}


def test_without_isolation_the_time_limit_still_holds(pytester, tmp_path):
    pytester.makepyfile('''
        import time, pytest
        @pytest.mark.points(2)
        def test_slow():
            try:
                time.sleep(30)
            except Exception:        # a student's catch-all does not swallow the time limit
                pass
        @pytest.mark.points(1)
        def test_fast():
            pass
    ''')
    out = tmp_path / "r.json"
    result = pytester.runpytest_subprocess(f"--crosscheck-gradescope={out}", "--crosscheck-timeout=1",
                                           "--crosscheck-isolation=none", *FAST)
    tests = by_name(json.loads(out.read_text()))
    assert (tests["test_slow"]["score"], tests["test_slow"]["tags"]) == (0.0, ["timeout"])
    assert "time limit of 1 s" in tests["test_slow"]["output"] and tests["test_fast"]["score"] == 1.0
    assert result.ret == 1


SUITE = '''
import pytest

@pytest.mark.points(3, problem="one")
def test_one(submission):
    assert submission.answer() == 42

@pytest.mark.points(2, problem="two")
def test_two(submission):
    assert submission.answer() > 0
'''


@pytest.mark.parametrize("source, line, message", [
    ("def answer()\n    return 42\n", 1, "SyntaxError: expected ':'"),
    ("import no_such_module_here\n", 1, "ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("x = 1\nraise RuntimeError('boom at import')\n", 2, "RuntimeError: boom at import"),
])
def test_an_import_error_scores_every_test_0_with_the_error(pytester, tmp_path, source, line, message):
    pytester.makepyfile(test_suite=SUITE)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "answer.py").write_text(source)
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(f"--crosscheck-submission={tmp_path / 'sub'}",
                                           f"--crosscheck-gradescope={out}", *FAST)
    assert result.ret == 1
    doc = json.loads(out.read_text())
    assert [(t["score"], t["tags"]) for t in doc["tests"]] == [(0.0, ["import_error"])] * 2
    where = f"answer.py, line {line}: "
    for t in doc["tests"]:
        assert where in t["output"] and message in t["output"], t["output"]
        assert str(tmp_path) not in t["output"]                          # paths as the student knows them
    assert where in doc["output"] and message in doc["output"]


def test_a_working_submission_from_a_file_or_a_folder(pytester, tmp_path):
    pytester.makepyfile(test_suite=SUITE)
    (tmp_path / "hw" / "nested").mkdir(parents=True)
    (tmp_path / "hw" / "nested" / "answer.py").write_text("from helper import X\ndef answer():\n    return X\n")
    (tmp_path / "hw" / "nested" / "helper.py").write_text("X = 42\n")
    pytester.makeini("[pytest]\ncrosscheck_submission_file = answer.py\n")
    for given in (tmp_path / "hw", tmp_path / "hw" / "nested" / "answer.py"):
        out = tmp_path / "r.json"
        result = pytester.runpytest_subprocess(f"--crosscheck-submission={given}", f"--crosscheck-gradescope={out}",
                                               *FAST)
        assert result.ret == 0, result.stdout.str()
        assert json.loads(out.read_text())["score"] == 5.0
        assert not list((tmp_path / "hw").rglob("__pycache__"))         # nothing written among the student's files


@pytest.mark.parametrize("marker, message", [
    ("points(2, visibility='secret')", "visibility must be one of"),
    ("points(-1)", "expected one number ≥ 0"),
    ("points(True)", "expected one number ≥ 0"),
    ("points(2, partial={'forward': 1, 'backward': 1})", "partial must be True, False or a dict"),
    ("points(2, problem=3)", "problem must be a string"),
    ("points(2, own_code=[1])", "own_code must be a name or a list of names"),
    ("points(2, weight=3)", "unknown arguments ['weight']"),
])
def test_a_bad_points_marker_is_a_usage_error(pytester, marker, message):
    pytester.makepyfile(f"import pytest\n@pytest.mark.{marker}\ndef test_x(): pass\n")
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e300", "abc", ""])
def test_a_bad_timeout_is_a_usage_error(pytester, value):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess(f"--crosscheck-timeout={value}", *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--crosscheck-timeout" in result.stderr.str() and "seconds" in result.stderr.str()


def test_a_timeout_of_zero_means_no_limit(pytester):
    pytester.makepyfile("import time\ndef test_x(): time.sleep(0.2)")
    assert pytester.runpytest_inprocess("--crosscheck-timeout=0", *FAST).ret == pytest.ExitCode.OK


# -- inert unless asked for ----------------------------------------------------------------
PROBE = '''
import os, sys
def test_probe(request):
    grader = request.config.pluginmanager.get_plugin("crosscheck-grader")
    with open(os.environ["PROBE_OUT"], "w") as f:
        f.write(f"{grader is not None} {'crosscheck.grading.grader' in sys.modules}")
'''


@pytest.mark.parametrize("extra, marked, active", [
    ([], False, False),                                  # an unrelated project
    (["-n", "2"], False, False),
    ([], True, True),                                    # a points marker in use
    (["--crosscheck-autolab"], False, True),             # a grading option
])
def test_the_grader_is_loaded_only_when_grading_is_asked_for(pytester, tmp_path, monkeypatch, extra, marked, active):
    """(Where the test runs: in the serial process, or on an xdist worker.)"""
    source = PROBE.replace("def test_probe", "import pytest\n@pytest.mark.points(1)\ndef test_probe") if marked else PROBE
    pytester.makepyfile(test_probe=source)
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "probe"))
    result = pytester.runpytest_subprocess(*FAST, *extra, "--crosscheck-isolation=none")
    assert result.ret == 0
    assert (tmp_path / "probe").read_text() == f"{active} {active}"


def test_an_xdist_controller_starts_grading_at_the_first_graded_report(pytester, tmp_path):
    """The controller collects nothing: with no grading option it still builds the score table
    from the workers' reports of graded tests."""
    pytester.makepyfile('''
        import pytest
        @pytest.mark.points(2)
        def test_a(): pass
        @pytest.mark.points(3)
        def test_b(): assert False
        def test_plain(): pass
    ''')
    result = pytester.runpytest_subprocess("-n", "2", *FAST)
    assert result.ret == 1
    assert any(line.startswith("total: 2 / 5") for line in result.outlines), result.stdout.str()


def test_loading_the_plugin_imports_nothing_of_the_grader():
    code = ("import sys, crosscheck.grading\n"
            "print(sorted(m for m in sys.modules if m.startswith(('crosscheck.grading.', 'handbp', 'numpy', 'torch'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
