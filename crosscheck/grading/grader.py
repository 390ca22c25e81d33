"""The grader: registered by ``crosscheck.grading`` once grading is asked for.

Where each part runs:

* where tests are collected (a serial run, or each xdist worker): the ``points`` markers are read
  and checked, each graded test gets its number (its place among the graded tests, the same in
  every mode), and a preliminary ``results.json`` lists every graded test at 0 ("did not finish"),
  so a run that dies before its end still leaves every test listed;
* around each graded test: it runs in a child process (``crosscheck.grading.isolate``), or here
  with ``SIGALRM`` for the time limit (``--crosscheck-isolation=none``); its reports carry the
  points (``POINTS``, from the set-up on) and the outcome scored by ``crosscheck.grading.scoring``
  (``GRADE``), as plain Python values that cross process boundaries;
* where reports are logged (a serial run, or the xdist controller): the results are assembled,
  written at the end, summed up in a table, and the Autolab line is printed after everything else.
"""
import json
import signal
import sys
import time

import pytest

from . import GRADE, POINTS, default_isolation
from . import scoring

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
MARKER_ARGS = {"partial", "visibility", "problem", "name", "own_code", "forbid_imports"}


def marker_points(item, number=None):
    """The ``points`` marker of ``item``, checked, as plain values; None without one."""
    m = item.get_closest_marker("points")
    if m is None:
        return None
    where = f"{item.nodeid}: points marker"
    if len(m.args) != 1 or isinstance(m.args[0], bool) or not isinstance(m.args[0], (int, float)) or m.args[0] < 0:
        raise pytest.UsageError(f"{where}: expected one number ≥ 0, got {m.args}")
    unknown = set(m.kwargs) - MARKER_ARGS
    if unknown:
        raise pytest.UsageError(f"{where}: unknown arguments {sorted(unknown)}; expected some of {sorted(MARKER_ARGS)}")
    visibility = m.kwargs.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise pytest.UsageError(f"{where}: visibility must be one of {VISIBILITIES}, got {visibility!r}")
    partial = m.kwargs.get("partial")
    if partial not in (None, True, False) and not (
            isinstance(partial, dict) and partial and set(partial) <= set(scoring.STAGE_ORDER)
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in partial.values())):
        raise pytest.UsageError(f"{where}: partial must be True, False or a dict of weights ≥ 0 over "
                                f"{scoring.STAGE_ORDER}, got {partial!r}")
    for key in ("problem", "name"):
        if m.kwargs.get(key) is not None and not isinstance(m.kwargs[key], str):
            raise pytest.UsageError(f"{where}: {key} must be a string, got {m.kwargs[key]!r}")
    for key in ("own_code", "forbid_imports"):
        value = m.kwargs.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            raise pytest.UsageError(f"{where}: {key} must be a name or a list of names, got {value!r}")
    from ..plugin import suite_id
    sid = suite_id(item)
    return {"max_score": float(m.args[0]), "partial": partial or None, "visibility": visibility,
            "name": m.kwargs.get("name") or sid, "id": sid, "number": number,
            "key": m.kwargs.get("problem") or item.name}


def _versions():
    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "torch", "handbp"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


class Grader:
    def __init__(self, config):
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.isolation = default_isolation(config)
        self.limit = config.getoption("crosscheck_timeout", None)
        self.in_child = False             # set in a graded test's child process
        self.infos = {}                   # nodeid -> points info of each graded test collected here
        self.tests = {}                   # nodeid -> result entry (where reports are logged)
        self.notes = []                   # run-wide messages for the top-level output
        self.started = time.time()

    # -- collection -----------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        self.collected(items)

    def collected(self, items):
        if self.infos:
            return
        for item in items:
            info = marker_points(item, number=str(len(self.infos) + 1))
            if info is not None:
                self.infos[item.nodeid] = info
        path = self.config.getoption("crosscheck_gradescope", None)
        if path and self.infos:
            from .results import not_finished, write_gradescope
            write_gradescope(path, [not_finished(info) for info in self.infos.values()], 0.0,
                             ["The grading run did not finish: these results are what it had written before."])

    def pytest_collectreport(self, report):
        if report.failed:
            self.notes.append(f"The course's tests could not be collected ({report.nodeid or 'the run'}):\n"
                              f"{report.longreprtext.strip()[-3000:]}")

    # -- running --------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        info = self.infos.get(item.nodeid)
        if info is None or self.isolation != "fork" or self.in_child:
            return None
        from .isolate import run_forked
        return run_forked(item, nextitem, info, self.limit)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        info = self.infos.get(item.nodeid)
        if info is not None and not any(k == POINTS for k, _ in item.user_properties):
            item.user_properties.append((POINTS, info))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        armed = self.limit and self.isolation != "fork" and hasattr(signal, "SIGALRM")
        if armed:
            limit = self.limit

            def expire(signum, frame):
                raise scoring.Timeout(f"your code ran longer than the time limit of {limit:g} s")
            previous = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        info = self.infos.get(item.nodeid)
        if info is None or report.when != "call" and not (report.failed or report.skipped):
            return
        grade = self.grade(item, call, report, info)
        report.user_properties = [p for p in report.user_properties if p[0] != GRADE] + [(GRADE, grade)]

    def grade(self, item, call, report, info):
        """The outcome of one phase of a graded test, scored, as plain values."""
        from ..plugin import replay_line
        from .handin import submission_roots
        checker = getattr(item, "funcargs", {}).get("crosscheck")
        traces = list(getattr(checker, "traces", ()))
        extra = {"seed": getattr(item.config.option, "crosscheck_seed", None), "id": info["id"],
                 "versions": _versions()}
        if traces:
            worst = max((t.worst() for t in traces if t.worst()), key=lambda w: w[3], default=None)
            if worst:
                extra["worst"] = {"step": worst[0], "quantity": worst[1], "max_abs": worst[2], "max_rel": worst[3]}
            extra["tolerance"] = scoring.tolerance_data(traces[-1])
            extra["steps_checked"] = sum(len(t) for t in traces)
        exc = call.excinfo.value if call.excinfo is not None else None
        if report.skipped:
            kind, failed = "skipped", None
        elif report.passed:
            kind, failed = "passed", None
        else:
            kind, failed = scoring.classify(exc)
        points = scoring.score(info["max_score"], info["partial"], kind, failed)
        if kind == "mismatch":
            d = exc.to_dict()
            extra.update(first_divergent_step=d["step"], divergence={k: d[k] for k in (
                "name", "quantity", "index", "handbp_value", "torch_value", "max_abs", "max_rel", "hint",
                "mismatched_quantities")})
        if failed is not None:
            extra["stages_failed"] = failed
        if kind in ("passed", "skipped"):
            text = "" if kind == "passed" else f"0 / {info['max_score']:g} points: the test was skipped " \
                                               f"({_skip_reason(report)})."
        else:
            text = scoring.student_text(kind, exc, failed, info["max_score"], points, info["partial"],
                                        submission_roots(item.config), replay_line(item))
        return {"kind": kind, "score": points, "stages_failed": failed, "text": text, "extra_data": extra}

    # -- assembling (serial run, or the xdist controller) ------------------------------------
    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        info = props.get(POINTS)
        if info is None:
            return
        entry = self.tests.get(report.nodeid)
        if entry is None:
            from .results import not_finished
            entry = self.tests[report.nodeid] = not_finished(info)
        grade = props.get(GRADE)
        if grade is None:
            if report.when == "setup" and report.passed:
                entry["kind"] = "running"       # if nothing else arrives, the worker died here
            elif report.failed:                 # a report made without the grader: a crashed xdist worker
                entry.update(kind="crashed", score=0.0,
                             output=f"0 / {info['max_score']:g} points: the test's process crashed.\n\n"
                                    f"{report.longreprtext.strip()[-2000:]}")
            return
        # the call's outcome, or a set-up or teardown that failed (0 points: its grade says so)
        entry.update(kind=grade["kind"], score=grade["score"], output=grade["text"], extra_data=grade["extra_data"])

    def pytest_sessionfinish(self, session):
        if self.is_worker or self.in_child:
            return
        for entry in self.tests.values():
            if entry["kind"] == "running":
                entry.update(kind="crashed", score=0.0,
                             output=f"0 / {entry['max_score']:g} points: the test's process crashed while it ran.")
        path = self.config.getoption("crosscheck_gradescope", None)
        if path:
            from .results import write_gradescope
            write_gradescope(path, self.results(), time.time() - self.started, self.notes)

    def results(self):
        return sorted(self.tests.values(), key=lambda e: (int(e["number"]) if e["number"] else 1 << 30, e["name"]))

    def pytest_terminal_summary(self, terminalreporter):
        if self.is_worker or self.in_child or not self.tests:
            return
        from .results import summary_table
        terminalreporter.section("crosscheck scores")
        for line in summary_table(self.results(), everything=True).splitlines():
            terminalreporter.write_line(line)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        """The Autolab line, after pytest's own summary line: Autolab reads the last line."""
        if self.is_worker or self.in_child or not config.getoption("crosscheck_autolab", False):
            return
        from .results import autolab_line
        sys.stdout.write(autolab_line(self.results()) + "\n")
        sys.stdout.flush()


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"
