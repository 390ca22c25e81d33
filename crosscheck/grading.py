"""Course grading on top of the crosscheck plugin (its own ``pytest11`` entry point).

* ``@pytest.mark.points(n, partial=None, visibility="visible")``: a test worth ``n`` points. With
  partial credit, a test that diverges earns the share of the four stages that still matched at the
  failing step: forward (outputs, loss), input gradients, weight gradients, update (parameters,
  optimizer state). ``partial=True`` weighs them equally; a dict gives weights, e.g.
  ``{"forward": 0.4, "input_grad": 0.2, "weight_grad": 0.2, "update": 0.2}``.
* ``--crosscheck-gradescope PATH`` writes Gradescope's ``results.json``; ``--crosscheck-autolab``
  prints an Autolab ``{"scores": ...}`` line last; a score table ends the terminal report.
* Visibility per test (``visible``, ``hidden``, ``after_due_date``, ``after_published``); a hidden
  test's failure text is replaced by a fixed message that reveals no reference values.
* Under pytest-xdist, workers attach plain-Python results to their reports (``user_properties``)
  and the controller assembles the file. Points travel with the setup report, so a test whose worker
  crashed still appears, scored 0; ``--crosscheck-timeout S`` fails a test that runs longer than S
  seconds (0 points). The file is written even when the run fails.
"""
import json
import os
import platform
import signal
import sys
import time

import pytest

STAGES = {"output": "forward", "loss": "forward", "buffer": "forward", "grad_pred": "input_grad",
          "grad_input": "input_grad", "grad": "weight_grad", "param": "update"}
STAGE_ORDER = ("forward", "input_grad", "weight_grad", "update")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
HIDDEN_TEXT = "This test failed. Its details are hidden until the results are published."
_POINTS, _GRADE = "crosscheck_points", "crosscheck_grade"


def stage_of(quantity):
    return STAGES.get(quantity, "update" if quantity.startswith("state.") else "forward")


def partial_fraction(mismatched_quantities, partial):
    """The share earned by a divergence whose step mismatched in ``mismatched_quantities``."""
    weights = dict.fromkeys(STAGE_ORDER, 0.25) if partial is True else dict(partial)
    total = sum(weights.values())
    failed = {stage_of(q) for q in mismatched_quantities}
    return sum(w for stage, w in weights.items() if stage not in failed) / total if total else 0.0


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
    group.addoption("--crosscheck-gradescope", metavar="PATH", default=None,
                    help="write Gradescope's results.json to PATH")
    group.addoption("--crosscheck-autolab", action="store_true", default=False,
                    help="print an Autolab {\"scores\": ...} line at the end")
    group.addoption("--crosscheck-timeout", type=_seconds, default=None, metavar="SECONDS",
                    help="fail (0 points) a test that runs longer than this many seconds "
                         "(a positive number; 0 turns the limit off)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, partial=None, visibility='visible'): a graded test worth n points")
    config.pluginmanager.register(Grader(config), "crosscheck-grader")


def _marker_points(item):
    m = item.get_closest_marker("points")
    if m is None:
        return None
    if len(m.args) != 1 or not isinstance(m.args[0], (int, float)) or m.args[0] < 0:
        raise pytest.UsageError(f"{item.nodeid}: points marker: expected one number ≥ 0, got {m.args}")
    unknown = set(m.kwargs) - {"partial", "visibility"}
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: points marker: unknown arguments {sorted(unknown)}")
    visibility = m.kwargs.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise pytest.UsageError(f"{item.nodeid}: points marker: visibility must be one of {VISIBILITIES}, "
                                f"got {visibility!r}")
    partial = m.kwargs.get("partial")
    if partial not in (None, True, False) and not (isinstance(partial, dict) and set(partial) <= set(STAGE_ORDER)):
        raise pytest.UsageError(f"{item.nodeid}: points marker: partial must be True or a dict over {STAGE_ORDER}")
    return {"max_score": float(m.args[0]), "partial": partial or None, "visibility": visibility}


def _versions():
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "handbp"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


class _Timeout(Exception):
    pass


class Grader:
    def __init__(self, config):
        self.config = config
        self.tests = {}          # nodeid -> result dict (controller, or a run without xdist)
        self.started = time.time()
        self.is_worker = hasattr(config, "workerinput")

    # -- workers (or a serial run): attach plain results to the reports
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        info = _marker_points(item)
        if info is not None and not any(k == _POINTS for k, _ in item.user_properties):
            item.user_properties.append((_POINTS, info))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        limit = self.config.getoption("crosscheck_timeout")
        armed = limit and hasattr(signal, "SIGALRM")
        if armed:
            def expire(signum, frame):
                raise _Timeout(f"exceeded the per-test time limit of {limit:g} s")
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
        info = dict(item.user_properties).get(_POINTS)
        if info is None or report.when != "call" and not (report.failed or report.skipped):
            return
        from .report import Divergence
        checker = getattr(item, "funcargs", {}).get("crosscheck")
        traces = list(getattr(checker, "traces", ()))
        seed = getattr(item.config.option, "crosscheck_seed", None)
        grade = {"when": report.when, "outcome": report.outcome, "seed": seed,
                 "replay": f"pytest '{item.nodeid}' --crosscheck-seed={seed}"}
        extra = {"seed": seed, "versions": _versions()}
        if traces:
            worst = max((t.worst() for t in traces if t.worst()), key=lambda w: w[3], default=None)
            if worst:
                extra["worst"] = {"step": worst[0], "quantity": worst[1], "max_abs": worst[2], "max_rel": worst[3]}
            extra["tolerance"] = traces[-1].tolerance
            extra["steps_checked"] = sum(len(t) for t in traces)
        fraction = 1.0 if report.passed else 0.0
        exc = call.excinfo.value if call.excinfo is not None else None
        if isinstance(exc, Divergence):
            d = exc.to_dict()
            extra.update(first_divergent_step=d["step"], divergence={k: d[k] for k in (
                "name", "quantity", "index", "handbp_value", "torch_value", "max_abs", "max_rel", "hint",
                "tolerance", "mismatched_quantities")})
            if info["partial"]:
                fraction = partial_fraction(d["mismatched_quantities"], info["partial"])
            grade["stages_failed"] = sorted({stage_of(q) for q in d["mismatched_quantities"]},
                                            key=STAGE_ORDER.index)
        elif isinstance(exc, _Timeout):
            grade["timeout"] = True
        if report.skipped:
            fraction = 0.0
        grade["score"] = round(info["max_score"] * fraction, 6)
        grade["extra_data"] = extra
        report.user_properties = [p for p in report.user_properties if p[0] != _GRADE] + [(_GRADE, grade)]

    # -- the controller (or a serial run): assemble
    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        info = props.get(_POINTS)
        if info is None:
            return
        entry = self.tests.setdefault(report.nodeid, {"name": report.nodeid, "max_score": info["max_score"],
                                                      "score": 0.0, "visibility": info["visibility"],
                                                      "status": "not run", "output": "", "extra_data": {}})
        grade = props.get(_GRADE)
        if report.passed and report.when in ("setup", "teardown"):
            if report.when == "setup":
                entry["status"] = "running"     # if nothing else arrives, the worker died here
            return
        if grade is None:                       # a report made without us: a crashed worker
            entry.update(status="crashed", score=0.0, output=_text(report) or "the test process crashed")
            return
        if report.failed or report.when == "call" or report.skipped:
            entry["score"] = grade["score"] if report.when == "call" else 0.0
            entry["status"] = "passed" if report.passed else ("timeout" if grade.get("timeout") else
                                                               ("skipped" if report.skipped else "failed"))
            entry["extra_data"] = grade["extra_data"]
            if "stages_failed" in grade:
                entry["extra_data"]["stages_failed"] = grade["stages_failed"]
            entry["output"] = "" if report.passed else _student_text(report, grade)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.is_worker:
            return
        for entry in self.tests.values():
            if entry["status"] == "running":
                entry.update(status="crashed", score=0.0, output="the test process crashed while running this test")
        path = self.config.getoption("crosscheck_gradescope")
        if path:
            write_gradescope(path, self.results(), time.time() - self.started)

    def results(self):
        return [self.tests[k] for k in sorted(self.tests)]

    def pytest_terminal_summary(self, terminalreporter):
        if self.is_worker or not self.tests:
            return
        tr = terminalreporter
        tr.section("crosscheck scores")
        total = sum(e["score"] for e in self.tests.values())
        maximum = sum(e["max_score"] for e in self.tests.values())
        width = max(len(k) for k in self.tests)
        for e in self.results():
            tr.write_line(f"{e['name']:<{width}}  {e['score']:6.2f} / {e['max_score']:<6g} {e['status']}")
        tr.write_line(f"{'total':<{width}}  {total:6.2f} / {maximum:g}")
        if self.config.getoption("crosscheck_autolab"):
            tr.write_line(json.dumps({"scores": {e["name"]: e["score"] for e in self.results()}}))


def _text(report):
    return str(report.longrepr) if report.longrepr else ""


def _student_text(report, grade):
    return f"{_text(report)}\n\nseed: {grade['seed']}\nreproduce locally: {grade['replay']}"


def gradescope_document(tests, seconds):
    """Gradescope's results.json: per test score, max_score, name, output, visibility, tags,
    extra_data; the total; hidden tests' failure text replaced by a fixed message."""
    out = []
    for e in tests:
        text = e["output"]
        if e["visibility"] != "visible" and text:
            text = HIDDEN_TEXT
        out.append({"name": e["name"], "score": e["score"], "max_score": e["max_score"], "output": text,
                    "visibility": e["visibility"], "tags": [e["status"]], "extra_data": e["extra_data"]})
    return {"score": round(sum(t["score"] for t in out), 6), "max_score": sum(t["max_score"] for t in out),
            "execution_time": round(seconds, 3), "visibility": "visible", "tests": out}


def write_gradescope(path, tests, seconds):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(gradescope_document(tests, seconds), f, indent=2)
    os.replace(tmp, path)
