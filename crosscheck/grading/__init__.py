"""Course grading on top of the crosscheck plugin (its own ``pytest11`` entry point).

* ``@pytest.mark.points(n, partial=None, visibility="visible", problem=None, name=None,
  own_code=None, forbid_imports=())``: a test worth ``n`` points (see ``crosscheck.grading.scoring``
  for the one rule that scores every failure, partial credit included).
* ``--crosscheck-submission PATH`` (a ``.py`` file, or a folder holding the ini's
  ``crosscheck_submission_file``) and the ``submission`` fixture, which imports it inside each test,
  so that an import error, a syntax error or a crash at import scores every test 0 with the error
  instead of stopping the collection.
* ``--crosscheck-gradescope PATH`` (Gradescope's ``results.json``), ``--crosscheck-autolab`` (the
  Autolab line, printed last), ``--crosscheck-timeout S``; provenance (the ini's
  ``crosscheck_forbid_imports``, the marker's ``own_code=``, default off) in
  ``crosscheck.grading.handin``.
* Each graded test runs in a child process of its own (``--crosscheck-isolation=fork``, the
  default where ``os.fork`` exists), so ``os._exit``, a segfault or a hang in a student's code
  costs that test, not the run: serially and under pytest-xdist alike.

This module loads in every pytest run of an environment where handbp is installed, so it imports
nothing heavy and registers nothing that runs per test unless grading is asked for: a grading
option on the command line, or a collected test with a ``points`` marker. (An xdist controller
collects nothing: it starts grading at the first report of a graded test.) The grader itself is
``crosscheck.grading.grader``.
"""
import os

import pytest

POINTS, GRADE = "crosscheck_points", "crosscheck_grade"     # keys of the reports' user_properties
_ASKED = ("crosscheck_gradescope", "crosscheck_autolab", "crosscheck_timeout", "crosscheck_submission")


def _seconds(text):
    """``--crosscheck-timeout``: a positive, finite number of seconds, or 0 for no limit."""
    import argparse
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > 1e6:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds up to 1e6 (0: no limit), "
                                         f"got {text!r}")
    return value or None


def pytest_addoption(parser):
    group = parser.getgroup("crosscheck")
    group.addoption("--crosscheck-submission", metavar="PATH", default=None,
                    help="the student's code for the submission fixture: a .py file, or a folder holding "
                         "the ini's crosscheck_submission_file")
    group.addoption("--crosscheck-gradescope", metavar="PATH", default=None,
                    help="write Gradescope's results.json to PATH")
    group.addoption("--crosscheck-autolab", action="store_true", default=False,
                    help="print an Autolab {\"scores\": ...} line, the run's last line")
    group.addoption("--crosscheck-timeout", type=_seconds, default=None, metavar="SECONDS",
                    help="fail (0 points) a graded test that runs longer than this many seconds "
                         "(a positive number; 0 turns the limit off)")
    group.addoption("--crosscheck-isolation", choices=("fork", "none"), default=None,
                    help="run each graded test in a forked child process, so that a crash or a hang costs "
                         "that test only (fork, the default where available), or in pytest's own process "
                         "(none: for --pdb)")
    parser.addini("crosscheck_submission_file", default="",
                  help="with --crosscheck-submission naming a folder: the file in it to import (e.g. layers.py)")
    parser.addini("crosscheck_replay_submission", default="",
                  help="the submission as a student's replay line names it (default: --crosscheck-submission "
                       "as given)")
    parser.addini("crosscheck_forbid_imports", type="args", default=[],
                  help="modules the submission may not import (e.g. torch), and handbp-layers for handbp's "
                       "own layers, activations and losses; graded tests score 0 on a violation")
    parser.addini("crosscheck_own_code", type="args", default=[],
                  help="the methods that the classes a test names in its points marker's own_code= must "
                       "define in the submission's own files (default: forward backward)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, partial=None, visibility='visible', problem=None, name=None, "
                                       "own_code=None, forbid_imports=()): a graded test worth n points")
    if any(config.getoption(name, None) for name in _ASKED):
        activate(config)
    elif hasattr(config, "workerinput") or config.getoption("dist", "no") == "no":
        config.pluginmanager.register(_WatchCollection(config), "crosscheck-grading-watch")
    else:                               # an xdist controller: it sees reports, not items
        config.pluginmanager.register(_WatchReports(config), "crosscheck-grading-watch")


def activate(config):
    """The run's ``Grader``, registered on first use."""
    grader = config.pluginmanager.get_plugin("crosscheck-grader")
    if grader is None:
        from .grader import Grader
        grader = Grader(config)
        config.pluginmanager.register(grader, "crosscheck-grader")
    return grader


class _WatchCollection:
    """Grading starts when a collected test has a ``points`` marker (one pass over the items)."""

    def __init__(self, config):
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        if any(item.get_closest_marker("points") is not None for item in items):
            activate(self.config).collected(items)


class _WatchReports:
    """On an xdist controller: grading starts at the first report of a graded test."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        if report.user_properties and any(key == POINTS for key, _ in report.user_properties):
            self.config.pluginmanager.unregister(self)
            activate(self.config).pytest_runtest_logreport(report)


def default_isolation(config):
    chosen = config.getoption("crosscheck_isolation", None)
    if chosen is None:
        chosen = "fork" if hasattr(os, "fork") else "none"
    return chosen


@pytest.fixture
def submission(request):
    """The student's code (``--crosscheck-submission``), imported as a module inside the test, so
    that an import error or a crash at import costs the tests that use it, each scored 0 with the
    error; checked against the course's provenance settings first."""
    from .handin import load
    return load(request)
