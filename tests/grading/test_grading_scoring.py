"""The one scoring rule, on real lockstep runs of a student-style Linear with each kind of bug
planted: the failed stages, the points, the text the student reads; and the results documents
(Gradescope's fields, the score table, the Autolab line)."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb
from crosscheck.grading import scoring
from crosscheck.grading.results import autolab_line, gradescope_document, not_finished, summary_table

ALL = ["forward", "input_grad", "weight_grad", "update"]


class StudentLinear(hb.Module):
    """y = x Wᵀ + b, with one of the bugs below planted (``bug``)."""

    def __init__(self, n_in, n_out, rng, bug=None):
        super().__init__()
        self.in_features, self.out_features, self.bug = n_in, n_out, bug
        self.weight = hb.Parameter(rng.uniform(-0.5, 0.5, (n_out, n_in)))
        self.bias = hb.Parameter(rng.uniform(-0.5, 0.5, n_out))

    def forward(self, x):
        if self.bug == "raise_forward":
            raise ValueError("forward: not done yet")
        self.last_x = x
        y = x @ self.weight.data.T + self.bias.data
        return np.full_like(y, np.nan) if self.bug == "nan" else y

    def backward(self, dy):
        if self.bug == "raise_backward":
            raise NotImplementedError("backward")
        dW = dy.T @ self.last_x
        if self.bug == "transposed":                        # differs, and the optimizer's step then raises
            dW = dW.T
        if self.bug == "grad_float32":                      # right values, in a dtype the optimizer's step refuses
            self.weight.grad = dW.astype(np.float32)
        elif self.bug != "never_updated":
            self.weight.accumulate(dW)
        self.bias.accumulate((2.0 if self.bug == "bias_factor" else 1.0) * dy.sum(axis=0))
        return dy @ self.weight.data


cc.register(StudentLinear, lambda m, child: __import__("torch").nn.Linear(m.in_features, m.out_features,
                                                                          dtype=__import__("torch").float64))


def failure(bug, seed=0):
    """The exception a lockstep run of a net with the planted bug raises. For ``grad_float32``, a
    net whose every value is a short binary fraction, so that the float32 gradient is exact: it
    matches torch's, and only the optimizer's step refuses it."""
    rng = np.random.default_rng(seed)
    if bug == "grad_float32":
        model = hb.Sequential(StudentLinear(3, 2, rng, bug))
        for p in model.parameters():
            p.data[...] = rng.integers(-4, 5, p.shape) / 8
        data = [(rng.integers(-4, 5, (4, 3)) / 4, rng.integers(-4, 5, (4, 2)) / 4) for _ in range(3)]
    else:
        model = hb.Sequential(StudentLinear(3, 4, rng, bug), hb.Tanh(), hb.Linear(4, 2, rng=rng))
        data = [(rng.normal(size=(5, 3)), rng.normal(size=(5, 2))) for _ in range(3)]
    with pytest.raises(Exception) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), data)
    return info.value


@pytest.mark.parametrize("bug, kind, failed, points", [
    ("bias_factor", "mismatch", ["weight_grad", "update"], 2.0),
    ("never_updated", "mismatch", ["weight_grad", "update"], 2.0),
    ("transposed", "mismatch", ["weight_grad", "update"], 2.0),       # the raise in the step fails the update
    ("grad_float32", "raised", ["update"], 3.0),
    ("raise_backward", "raised", ["input_grad", "weight_grad", "update"], 1.0),
    ("raise_forward", "raised", ALL, 0.0),
    ("nan", "mismatch", ALL, 0.0),
])
def test_each_failure_is_scored_by_the_stages_that_failed_raised_or_could_not_run(bug, kind, failed, points):
    exc = failure(bug)
    assert scoring.classify(exc) == (kind, failed)
    assert scoring.score(4, True, kind, failed) == points                # partial credit: a quarter per stage
    assert scoring.score(4, None, kind, failed) == 0.0                   # all or nothing
    text = scoring.student_text(kind, exc, failed, 4.0, points, True, [], "pytest 'x.py::t' --crosscheck-seed=1")
    assert text.startswith(f"{points:g} / 4 points: your code ")
    for stage in scoring.STAGE_ORDER:
        line = next(l for l in text.splitlines() if l.strip().startswith(scoring.STAGE_TEXT[stage]))
        assert line.split(scoring.STAGE_TEXT[stage])[1].strip().startswith("FAILED" if stage in failed else "passed")
    assert "handbp" not in text.split("replay:")[0].replace("handbp.", "")
    assert text.rstrip().endswith("replay: pytest 'x.py::t' --crosscheck-seed=1")


def test_a_step_that_raises_after_a_wrong_gradient_earns_no_more_than_a_gradient_that_never_updates():
    """The unfair score: a transposed dW whose optimizer step then raises earned 3 of 4 (only the
    weight gradient failed), more than a dW that never updates (2 of 4)."""
    transposed, never = failure("transposed"), failure("never_updated")
    assert isinstance(transposed.__cause__, ValueError) and transposed.__cause__.lockstep_phase == "step"
    scores = [scoring.score(4, True, *scoring.classify(e)) for e in (transposed, never)]
    assert scores == [2.0, 2.0]
    without_the_rule = scoring.partial_fraction(scoring.stages_failed(transposed.mismatched_quantities), True)
    assert without_the_rule == 0.75                                       # what the old rule gave


@pytest.mark.parametrize("failed, partial, expected", [
    ([], True, 1.0), (["weight_grad"], True, 0.75), (["weight_grad", "update"], True, 0.5), (ALL, True, 0.0),
    (["input_grad"], {"forward": 0.4, "input_grad": 0.6}, 0.4), (["forward"], {"forward": 1, "update": 3}, 0.75),
    (["forward"], None, 0.0), (["forward"], False, 0.0),
])
def test_partial_credit_is_the_weight_of_the_stages_that_did_not_fail(failed, partial, expected):
    assert scoring.partial_fraction(failed, partial) == pytest.approx(expected)


@pytest.mark.parametrize("quantities, expected", [
    (["grad"], 0.75), (["grad", "param"], 0.5), (["output", "loss"], 0.75), (["state.momentum_buffer"], 0.75),
    (["grad_input"], 0.75), (["output", "grad_input", "grad", "param"], 0.0),
])
def test_each_mismatched_quantity_fails_its_stage(quantities, expected):
    assert scoring.partial_fraction(scoring.stages_failed(quantities), True) == pytest.approx(expected)


@pytest.mark.parametrize("phase, failed", [("forward", ALL), ("backward", ALL[1:]), ("step", ALL[3:]), (None, [])])
def test_a_raise_fails_its_stage_and_every_stage_after_it(phase, failed):
    assert scoring.stages_failed((), phase) == failed
    assert scoring.stages_failed(["grad"], phase) == sorted(set(failed) | {"weight_grad"}, key=ALL.index)


def test_a_failure_outside_lockstep_scores_0_whatever_the_partial_credit():
    kind, failed = scoring.classify(KeyError("no such layer"))
    assert (kind, failed) == ("error", None) and scoring.score(4, True, kind, failed) == 0.0
    assert scoring.classify(SystemExit(2)) == ("crashed", None)
    assert scoring.classify(scoring.Timeout("too long")) == ("timeout", None)
    assert not issubclass(scoring.Timeout, Exception)            # a student's `except Exception` cannot swallow it


@pytest.mark.parametrize("text, expected", [
    ("handbp and torch diverge at step 0", "your code and torch diverge at step 0"),
    ("handbp's .grad is None where torch's is not", "your code's .grad is None where torch's is not"),
    ("worst: index (0,): handbp 1.5, torch 0.75", "worst: index (0,): your code 1.5, torch 0.75"),
    ("handbp = 2 × torch, everywhere", "your code = 2 × torch, everywhere"),
    ("inherited from handbp.layers.Linear", "inherited from handbp.layers.Linear"),
])
def test_the_report_says_your_code_where_it_means_the_students(text, expected):
    assert scoring.your_code(text) == expected


def test_tracebacks_keep_the_students_frames_only(tmp_path):
    student = tmp_path / "sub" / "layers.py"
    student.parent.mkdir()
    student.write_text("def backward(dy):\n    return helper(dy)\n\ndef helper(dy):\n    raise ValueError('no')\n")
    namespace = {}
    exec(compile(student.read_text(), str(student), "exec"), namespace)
    try:
        (lambda: namespace["backward"](1))()                     # a frame of the grader's around the student's
    except ValueError as e:
        exc = e
    for root in (student, student.parent):                       # a file submitted, or a folder
        text = scoring.exception_text(exc, [str(root)])
        assert text.splitlines()[0] == "Traceback (your code's frames only):"
        assert text.count('File "layers.py"') == 2 and str(tmp_path) not in text and __file__ not in text
        assert text.endswith("ValueError: no")
    assert scoring.exception_text(exc, []) == "ValueError: no"


def test_the_tolerance_says_what_the_atol_is_scaled_by():
    rng = np.random.default_rng(0)
    model = hb.Sequential(hb.Linear(2, 2, rng=rng))
    data = [(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)))]
    scaled = scoring.tolerance_data(cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data))
    assert scaled == {"rule": "rtol 1e-09, atol 1e-09 × max|torch|", "mode": "elementwise", "rtol": 1e-9,
                      "atol": 1e-9, "atol_scaled_by": "max|torch| of each quantity"}
    given = scoring.tolerance_data(cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data,
                                               atol=1e-7))
    assert (given["atol"], given["atol_scaled_by"]) == (1e-7, None)


# -- the documents ---------------------------------------------------------------------------
def entry(number, name, max_score, score, kind, visibility="visible", key=None, failed=None):
    info = {"name": name, "number": str(number), "max_score": max_score, "visibility": visibility,
            "key": key or name, "id": name}
    e = not_finished(info)
    e.update(score=score, kind=kind, output="" if kind == "passed" else f"{score:g} / {max_score:g} points: ...")
    if failed:
        e["extra_data"]["stages_failed"] = failed
    return e


ENTRIES = [entry(1, "t.py::test_a", 4.0, 2.0, "mismatch", key="a", failed=["weight_grad", "update"]),
           entry(2, "t.py::test_b", 2.0, 2.0, "passed", key="b"),
           entry(3, "t.py::test_c", 3.0, 0.0, "crashed", visibility="hidden", key="c"),
           entry(4, "t.py::test_d", 1.0, 1.0, "passed", visibility="after_due_date", key="a")]


def test_the_gradescope_document_has_the_specifications_fields():
    doc = gradescope_document(ENTRIES, 1.23456, ["a note for everyone"])
    assert (doc["score"], doc["execution_time"], doc["visibility"], doc["stdout_visibility"]) == \
        (5.0, 1.235, "visible", "hidden")
    assert doc["extra_data"] == {"max_score": 10.0}
    assert [t["number"] for t in doc["tests"]] == ["1", "2", "3", "4"]
    assert [t["status"] for t in doc["tests"]] == ["failed", "passed", "failed", "passed"]
    assert [t["visibility"] for t in doc["tests"]] == ["visible", "visible", "hidden", "after_due_date"]
    assert {k for t in doc["tests"] for k in t} == {"name", "number", "score", "max_score", "status", "output",
                                                   "output_format", "tags", "visibility", "extra_data"}
    assert doc["output"].endswith("a note for everyone")


def test_the_students_table_lists_the_visible_tests_and_counts_the_others():
    table = summary_table(ENTRIES)
    assert "test_a" in table and "2 / 4" in table and "failed: parameter gradients, update" in table
    assert "test_c" not in table and "test_d" not in table
    assert "1 more test (1 points) shown after the due date" in table
    assert "1 more test (3 points) shown only to the course staff" in table
    assert table.splitlines()[-1] == "total: 5 / 10"
    assert "test_c" in summary_table(ENTRIES, everything=True)
    assert all(line == line.rstrip() for line in table.splitlines())


def test_the_autolab_line_sums_each_problems_tests():
    assert autolab_line(ENTRIES) == '{"scores": {"a": 3.0, "b": 2.0, "c": 0.0}}'
