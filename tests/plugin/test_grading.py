"""Grading with the plugin: a course suite over students' own layers, run with -n 2 on three
submissions (correct, subtly wrong, crashing), and the results.json checked field by field."""
import json

import pytest

from crosscheck.grading import HIDDEN_TEXT, partial_fraction
from tests.helpers.inner_runs import FAST

pytest_plugins = ["pytester"]


COURSE = '''
import importlib.util, os
import numpy as np, pytest, torch
import crosscheck as cc, handbp as hb

spec = importlib.util.spec_from_file_location("student", os.environ["SUBMISSION"])
student = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student)
cc.register(student.MyLinear, lambda m, _: torch.nn.Linear(m.in_features, m.out_features, dtype=torch.float64))
cc.register(student.MyTanh, lambda m, _: torch.nn.Tanh())

def run(crosscheck, model):
    crosscheck.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))

@pytest.mark.points(4, partial=True)
def test_linear(crosscheck, rng):
    run(crosscheck, hb.Sequential(student.MyLinear(3, 5, rng), hb.Tanh(), hb.Linear(5, 2, rng=rng)))

@pytest.mark.points(3)
def test_tanh(crosscheck, rng):
    run(crosscheck, hb.Sequential(hb.Linear(3, 5, rng=rng), student.MyTanh(), hb.Linear(5, 2, rng=rng)))

@pytest.mark.points(3, visibility="hidden")
def test_deep(crosscheck, rng):
    run(crosscheck, hb.Sequential(student.MyLinear(3, 6, rng), hb.Sigmoid(), student.MyLinear(6, 2, rng)))

def test_not_graded():
    pass
'''

CORRECT = '''
import numpy as np, handbp as hb

class MyLinear(hb.Module):
    def __init__(self, n_in, n_out, rng):
        super().__init__()
        self.in_features, self.out_features = n_in, n_out
        bound = 1 / np.sqrt(n_in)
        self.weight = hb.Parameter(rng.uniform(-bound, bound, (n_out, n_in)))
        self.bias = hb.Parameter(rng.uniform(-bound, bound, n_out))
    def forward(self, x):
        self.last_x = x
        return x @ self.weight.data.T + self.bias.data
    def backward(self, dy):
        self.weight.accumulate(dy.T @ self.last_x)
        self.bias.accumulate(BIAS_FACTOR * dy.sum(axis=0))
        return dy @ self.weight.data

class MyTanh(hb.Module):
    def forward(self, x):
        CRASH
        self.last_o = np.tanh(x)
        return self.last_o
    def backward(self, dy):
        return dy * (1 - self.last_o ** 2)
'''

SUBMISSIONS = {
    "correct": CORRECT.replace("BIAS_FACTOR * ", "").replace("        CRASH\n", ""),
    "subtle": CORRECT.replace("BIAS_FACTOR", "2.0").replace("        CRASH\n", ""),
    "crashing": CORRECT.replace("BIAS_FACTOR * ", "").replace("CRASH", "import os; os._exit(3)"),
}


@pytest.fixture
def run_submission(pytester, tmp_path, monkeypatch):
    def run(name):
        sub = tmp_path / f"{name}.py"
        sub.write_text(SUBMISSIONS[name])
        out = tmp_path / name / "results.json"
        monkeypatch.setenv("SUBMISSION", str(sub))
        pytester.makepyfile(test_course=COURSE)
        result = pytester.runpytest_subprocess(f"--crosscheck-gradescope={out}", "--crosscheck-seed=5", "-n", "2",
                                               *FAST, "--crosscheck-autolab")
        return result, json.loads(out.read_text())
    return run


def by_name(doc):
    return {t["name"].split("::")[1]: t for t in doc["tests"]}


def test_correct_submission_gets_full_marks(run_submission):
    result, doc = run_submission("correct")
    assert result.ret == 0
    assert (doc["score"], doc["max_score"]) == (10.0, 10.0) and doc["visibility"] == "visible"
    tests = by_name(doc)
    assert set(tests) == {"test_linear", "test_tanh", "test_deep"}          # ungraded tests stay out
    for name, points, vis in (("test_linear", 4.0, "visible"), ("test_tanh", 3.0, "visible"), ("test_deep", 3.0, "hidden")):
        t = tests[name]
        assert (t["score"], t["max_score"], t["visibility"], t["output"], t["tags"]) == (points, points, vis, "", ["passed"])
        x = t["extra_data"]
        assert x["seed"] == 5 and x["steps_checked"] == 3 and x["tolerance"]["rtol"] == 1e-9
        assert x["worst"]["max_rel"] < 1e-12 and {"python", "numpy", "torch"} <= set(x["versions"])
    lines = result.outlines
    autolab = [line for line in lines if line.startswith('{"scores"')]
    assert json.loads(autolab[-1]) == {"scores": {t["name"]: t["score"] for t in doc["tests"]}}
    assert any(l.startswith("total") and "10.00 / 10" in l for l in lines)


def test_subtly_wrong_submission_gets_partial_credit(run_submission):
    result, doc = run_submission("subtle")
    assert result.ret == 1
    tests = by_name(doc)
    linear = tests["test_linear"]
    # forward and input gradients matched at the failing step; weight gradients and update did not
    assert linear["score"] == 2.0 and linear["tags"] == ["failed"]
    assert linear["extra_data"]["stages_failed"] == ["weight_grad", "update"]
    assert linear["extra_data"]["first_divergent_step"] == 0
    d = linear["extra_data"]["divergence"]
    assert (d["name"], d["quantity"], d["hint"]) == ("0.bias (MyLinear)", "grad", "factor")
    out = linear["output"]
    for piece in ("diverge at step 0", "0.bias (MyLinear)", "worst:      index", "tolerance", "also mismatched",
                  "seed: 5", "reproduce locally: pytest 'test_course.py::test_linear' --crosscheck-seed=5"):
        assert piece in out, out
    assert tests["test_tanh"]["score"] == 3.0
    deep = tests["test_deep"]
    assert deep["score"] == 0.0 and deep["output"] == HIDDEN_TEXT and deep["visibility"] == "hidden"
    assert doc["score"] == 5.0


def test_crashing_submission_still_appears_scored_zero(run_submission):
    result, doc = run_submission("crashing")
    assert result.ret != 0
    tests = by_name(doc)
    assert set(tests) == {"test_linear", "test_tanh", "test_deep"}
    assert tests["test_tanh"]["score"] == 0.0 and tests["test_tanh"]["tags"] == ["crashed"]
    assert "crashed" in tests["test_tanh"]["output"]
    assert tests["test_linear"]["score"] == 4.0 and tests["test_deep"]["score"] == 3.0
    assert doc["score"] == 7.0 and doc["max_score"] == 10.0


def test_time_limit_scores_zero(pytester, tmp_path):
    pytester.makepyfile('''
        import time, pytest
        @pytest.mark.points(2)
        def test_slow():
            time.sleep(30)
        @pytest.mark.points(1)
        def test_fast():
            pass
    ''')
    out = tmp_path / "r.json"
    result = pytester.runpytest_subprocess(f"--crosscheck-gradescope={out}", "--crosscheck-timeout=1", *FAST)
    doc = json.loads(out.read_text())
    tests = by_name(doc)
    assert tests["test_slow"]["score"] == 0.0 and tests["test_slow"]["tags"] == ["timeout"]
    assert "time limit of 1 s" in tests["test_slow"]["output"]
    assert doc["score"] == 1.0 and result.ret == 1


@pytest.mark.parametrize("failed, partial, expected", [
    (["grad"], True, 0.75), (["grad", "param"], True, 0.5), (["output", "loss"], True, 0.75),
    (["state.momentum_buffer"], True, 0.75), (["grad_input"], {"forward": 0.4, "input_grad": 0.6}, 0.4),
])
def test_partial_credit_rule(failed, partial, expected):
    assert partial_fraction(failed, partial) == pytest.approx(expected)


def test_bad_points_marker_is_a_usage_error(pytester):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.points(2, visibility="secret")
        def test_x(): pass
    ''')
    result = pytester.runpytest_inprocess(*FAST)        # no torch, no workers: no process needed
    assert "visibility must be one of" in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e300", "abc", ""])
def test_bad_timeout_is_a_usage_error(pytester, value):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess(f"--crosscheck-timeout={value}", *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--crosscheck-timeout" in result.stderr.str() and "seconds" in result.stderr.str()


def test_timeout_of_zero_means_no_limit(pytester):
    pytester.makepyfile("import time\ndef test_x(): time.sleep(0.2)")
    result = pytester.runpytest_inprocess("--crosscheck-timeout=0", *FAST)
    assert result.ret == pytest.ExitCode.OK
