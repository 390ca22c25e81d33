"""The example course (examples/course: six student layers, 20 points) graded three ways: each
submission by a serial pytest of its own (``handbp grade run``), under ``pytest -n 2``, and
through the Gradescope bundle's ``run_autograder`` against a fake ``/autograder``. The
submissions cover every failure kind: a wrong value, a raise in the forward, the backward and the
optimizer's step, NaN, a hang, a segfault, ``os._exit``, ``sys.exit``, an import error, a syntax error, a forbidden
import and a layer that inherits handbp's. The three ``results.json`` of each
submission agree field by field (the run's duration aside), and each test scores what the one
rule gives it (crosscheck.grading.scoring)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.inner_runs import FAST

COURSE = Path(__file__).resolve().parents[2] / "examples" / "course"
SEED, LIMIT = 5, 3.0
TESTS = ("test_linear", "test_sigmoid", "test_relu", "test_silu", "test_cross_entropy", "test_mse", "test_network",
         "test_network_adam")
POINTS = (4, 2, 2, 3, 3, 2, 2, 2)
PASSED = {t: (float(p), "passed") for t, p in zip(TESTS, POINTS)}

# submission -> test -> (points, kind); a test left out passes
EXPECTED = {
    "correct": {},
    # partial credit: forward and input gradients passed, parameter gradients and update did not (2 of 4);
    # SiLU raised in its backward: the forward passed (1 of 4 stages: 0.75 of 3). The network tests
    # meet the sys.exit and os._exit of the losses first (the loss's backward runs first).
    "mixed_a": {"test_linear": (2.0, "mismatch"), "test_sigmoid": (0.0, "timeout"), "test_relu": (0.0, "crashed"),
                "test_silu": (0.75, "raised"), "test_cross_entropy": (0.0, "crashed"), "test_mse": (0.0, "crashed"),
                "test_network": (0.0, "crashed"), "test_network_adam": (0.0, "crashed")},
    # the transposed weight gradient differs, and the optimizer's step raises on it: the update fails
    # too (2 of 4, as a gradient that never updates: not 3 of 4)
    # ... and its Sigmoid, handbp's by inheritance, scores 0 wherever it is graded
    "mixed_b": {"test_linear": (2.0, "mismatch"), "test_sigmoid": (0.0, "provenance"), "test_relu": (0.0, "raised"),
                "test_silu": (0.0, "mismatch"), "test_network": (0.0, "mismatch"),
                "test_network_adam": (0.0, "provenance")},
    "import_error": {t: (0.0, "import_error") for t in TESTS},
    "syntax_error": {t: (0.0, "import_error") for t in TESTS},
    "uses_torch": {t: (0.0, "provenance") for t in TESTS},
}
STAGES_FAILED = {("mixed_a", "test_linear"): ["weight_grad", "update"],
                 ("mixed_a", "test_silu"): ["input_grad", "weight_grad", "update"],
                 ("mixed_b", "test_linear"): ["weight_grad", "update"],
                 ("mixed_b", "test_relu"): ["forward", "input_grad", "weight_grad", "update"]}


def expected(submission):
    return {**PASSED, **EXPECTED[submission]}


@pytest.fixture
def course(tmp_path):
    """A copy of the example course: its tests and submissions, and a folder for results."""
    root = tmp_path / "course"
    shutil.copytree(COURSE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return root


def grade_serially(course, out):
    """Each submission by a serial pytest in a process of its own (handbp grade run, 2 at a time)."""
    from crosscheck.grading.batch import grade_all
    summary = grade_all(str(course / "tests"), str(course / "submissions"), str(out), jobs=2, seed=SEED,
                        timeout=LIMIT, extra=FAST, progress=False)
    assert summary["submissions"] == len(EXPECTED)
    return {name: json.loads((out / name / "results.json").read_text()) for name in EXPECTED}


def grade_under_xdist(course, out):
    docs = {}
    for name in EXPECTED:
        results = out / name / "results.json"
        done = subprocess.run([sys.executable, "-m", "pytest", "tests", "-n", "2", *FAST,
                               f"--crosscheck-submission=submissions/{name}", f"--crosscheck-gradescope={results}",
                               f"--crosscheck-seed={SEED}", f"--crosscheck-timeout={LIMIT:g}", "--crosscheck-autolab"],
                              cwd=course, capture_output=True, text=True, timeout=600)
        assert done.returncode == (0 if name == "correct" else 1), done.stdout[-3000:] + done.stderr[-3000:]
        last = done.stdout.strip().splitlines()[-1]
        keys = json.loads(last)["scores"]                      # the Autolab line is the last line
        assert keys == autolab(expected(name)), last
        docs[name] = json.loads(results.read_text())
    return docs


def autolab(tests):
    problems = {"test_network": "network", "test_network_adam": "network"}
    out = {}
    for t, (points, _) in tests.items():
        key = problems.get(t, t.removeprefix("test_"))
        out[key] = out.get(key, 0.0) + points
    return out


def grade_through_run_autograder(course, tmp_path):
    """The bundle unzipped into a fake /autograder; run_autograder once per submission."""
    from crosscheck.grading.bundle import build_bundle
    bundle = tmp_path / "autograder.zip"
    build_bundle(str(course / "tests"), str(bundle), seed=SEED, timeout=LIMIT, extra=list(FAST))
    docs = {}
    for name in EXPECTED:
        root = tmp_path / "autograder" / name
        with zipfile.ZipFile(bundle) as z:
            z.extractall(root / "source")
        shutil.copytree(course / "submissions" / name, root / "submission")
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
        done = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == (0 if name == "correct" else 1), done.stdout[-3000:] + done.stderr[-3000:]
        docs[name] = json.loads((root / "results" / "results.json").read_text())
    return docs


@pytest.mark.slow
def test_every_failure_kind_scores_the_same_serially_under_xdist_and_through_run_autograder(course, tmp_path):
    modes = {"serial": grade_serially(course, tmp_path / "serial"),
             "xdist": grade_under_xdist(course, tmp_path / "xdist"),
             "run_autograder": grade_through_run_autograder(course, tmp_path)}
    for name in EXPECTED:
        docs = {mode: dict(d[name]) for mode, d in modes.items()}
        for doc in docs.values():
            doc.pop("execution_time")
        assert docs["serial"] == docs["xdist"], name
        assert docs["serial"] == docs["run_autograder"], name
        check_document(name, docs["serial"])


def check_document(name, doc):
    """One submission's results.json: the scores and kinds the rule gives, Gradescope's fields."""
    want = expected(name)
    tests = {t["name"].split("::")[1]: t for t in doc["tests"]}
    assert list(tests) == list(TESTS)                                     # every test, in the file's order
    assert [t["number"] for t in doc["tests"]] == [str(i) for i in range(1, 9)]
    for test, (points, kind) in want.items():
        t = tests[test]
        assert (t["score"], t["tags"]) == (points, [kind]), (name, test, t["output"])
        assert t["status"] == ("passed" if kind == "passed" else "failed")
        assert t["max_score"] == POINTS[TESTS.index(test)]
        if kind != "passed":
            assert t["output"].startswith(f"{points:g} / {t['max_score']:g} points: ")
            assert t["output"].rstrip().endswith(
                f"replay: pytest 'tests/test_layers.py::{test}' --crosscheck-seed={SEED} "
                "--crosscheck-submission=layers.py"), t["output"]
            assert t["output"].count("replay:") == 1
            assert "site-packages" not in t["output"] and "crosscheck/" not in t["output"]
        assert t["extra_data"]["id"] == f"test_layers.py::{test}"
        assert t["extra_data"]["seed"] == SEED
        if kind == "passed":
            x = t["extra_data"]
            assert t["output"] == "" and x["steps_checked"] == 3 and x["tolerance"]["rtol"] == 1e-9
            assert x["worst"]["max_rel"] < 1e-12 and {"python", "numpy", "torch"} <= set(x["versions"])
        if (name, test) in STAGES_FAILED:
            assert t["extra_data"]["stages_failed"] == STAGES_FAILED[name, test]
    assert doc["score"] == sum(p for p, _ in want.values())
    assert doc["extra_data"]["max_score"] == 20
    assert (doc["visibility"], doc["stdout_visibility"]) == ("visible", "hidden")
    assert [t["visibility"] for t in doc["tests"]][-2:] == ["hidden", "after_published"]
    summary = doc["output"]
    assert f"total: {doc['score']:g} / 20" in summary and "test_network" not in summary     # hidden: not listed
    assert "1 more test (2 points) shown when grades are published" in summary
    text = {t["name"].split("::")[1]: t["output"] for t in doc["tests"]}
    if name == "mixed_a":
        assert "parameter gradients                   FAILED: differs from torch" in text["test_linear"]
        assert "diagnosis:  your code = 2 × torch" in text["test_linear"]
        assert "handbp" not in text["test_linear"].split("replay:")[0]
        for piece in ("your code and torch diverge at step 0", "where:      0.bias (Linear)", "worst:      index",
                      "(tolerance: rtol 1e-09", "also mismatched at step 0"):
            assert piece in text["test_linear"], text["test_linear"]
        x = tests["test_linear"]["extra_data"]
        assert x["first_divergent_step"] == 0
        assert (x["divergence"]["name"], x["divergence"]["quantity"], x["divergence"]["hint"]) == \
            ("0.bias (Linear)", "grad", "factor")
        assert 'File "layers.py", line' in text["test_sigmoid"] and "while True" in text["test_sigmoid"]
        assert "SIGSEGV" in text["test_relu"] and "sys.exit(1)" in text["test_cross_entropy"]
        assert "exit status 3" in text["test_mse"]
        assert "input gradients                       FAILED: your code raised in the backward pass" \
            in text["test_silu"]
    if name == "mixed_b":
        assert "update (parameters, optimizer state)  FAILED: your code raised in the optimizer's step" \
            in text["test_linear"]
        assert "NaN appears in your code" in text["test_silu"]
        assert "your code raised ValueError in the forward pass" in text["test_relu"]
        assert "Sigmoid inherits it from handbp.activations.Sigmoid" in text["test_sigmoid"]
    if name == "import_error":
        for t in text.values():
            assert "layers.py, line 5: ModuleNotFoundError: No module named 'layer_helpers'" in t, t
        assert "Your code could not be imported (layers.py):\nlayers.py, line 5: ModuleNotFoundError" in summary
    if name == "syntax_error":
        for t in text.values():
            assert "layers.py, line 58: SyntaxError: expected ':'" in t
        assert "Your code could not be imported (layers.py):\nlayers.py, line 58: SyntaxError" in summary
    if name == "uses_torch":
        assert "line 2: import torch" in summary and "torch" in text["test_linear"]
