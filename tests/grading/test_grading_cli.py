"""``handbp grade bundle`` and ``handbp grade run``: the zip's contents (the scripts, the pinned
CPU torch, a wheel that installs), a run that dies before its tests still leaves a results.json,
a batch where one submission hangs for good, and bad arguments."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from handbp.cli import main
from tests.helpers.inner_runs import FAST

COURSE = Path(__file__).resolve().parents[2] / "examples" / "course"


def test_the_bundle_holds_what_gradescope_runs(tmp_path, capsys):
    out = tmp_path / "autograder.zip"
    assert main(["grade", "bundle", str(COURSE / "tests"), "-o", str(out), "--seed", "2024", "--timeout", "30"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        setup, run = z.read("setup.sh").decode(), z.read("run_autograder").decode()
    wheel = [n for n in names if n.endswith(".whl")]
    assert names[:2] == ["setup.sh", "run_autograder"] and len(wheel) == 1
    assert {"tests/test_layers.py", "tests/conftest.py", "tests/pytest.ini"} <= set(names)
    assert not any("__pycache__" in n for n in names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert '"torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu' in setup
    assert f"./{wheel[0]}" in setup and "pytest==" in setup and "numpy==" in setup
    assert "-m crosscheck.grading.autograder" in run and "--tests=tests" in run and "--seed=2024" in run
    assert "--timeout=30" in run
    # the same files give the same zip
    again = tmp_path / "again.zip"
    main(["grade", "bundle", str(COURSE / "tests"), "-o", str(again), "--seed", "2024", "--timeout", "30"])
    assert again.read_bytes() == out.read_bytes()


def test_the_bundles_wheel_installs_handbp_crosscheck_and_the_plugins(tmp_path):
    from crosscheck.grading.bundle import build_wheel
    name, data = build_wheel()
    wheel = tmp_path / name
    wheel.write_bytes(data)
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for package in ("handbp", "crosscheck", "crosscheck/grading"):
        assert (target / package / "__init__.py").exists()
    assert (target / "handbp" / "commands" / "grade.py").exists()
    info = next(target.glob("handbp-*.dist-info"))
    points = (info / "entry_points.txt").read_text()
    assert "crosscheck = crosscheck.plugin" in points and "crosscheck-grading = crosscheck.grading" in points
    assert "handbp = handbp.cli:main" in points
    assert "Requires-Dist: numpy" in (info / "METADATA").read_text()


BROKEN_AT_COLLECTION = '''
import os
os._exit(9)          # the course's module dies while pytest collects it
'''


def test_a_run_that_dies_before_its_tests_still_leaves_results(tmp_path):
    """run_autograder's grader, run by hand on a fake /autograder."""
    from crosscheck.grading import autograder
    root = tmp_path / "autograder"
    (root / "source" / "tests").mkdir(parents=True)
    (root / "source" / "tests" / "test_broken.py").write_text(BROKEN_AT_COLLECTION)
    (root / "submission").mkdir()
    (root / "submission" / "layers.py").write_text("")
    code = autograder.main([f"--root={root}", "--tests=tests", "--seed=1", "--", *FAST])
    assert code != 0
    doc = json.loads((root / "results" / "results.json").read_text())
    assert doc["score"] == 0.0 and doc["tests"] == []
    assert doc["output"].startswith("The grading run failed before it could score your code: pytest exited with "
                                    "status 9")


SUITE = '''
import time
import pytest
@pytest.mark.points(1)
def test_it(submission):
    if getattr(submission, "HANG", False):
        time.sleep(3600)
'''


def test_a_batch_goes_on_past_a_submission_that_hangs_for_good(tmp_path):
    """Hangs where the per-test limit is off (in the test, and at import): the whole run's limit
    stops those submissions alone, and their results list the test at 0."""
    from crosscheck.grading.batch import grade_all
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_it.py").write_text(SUITE)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "fine.py").write_text("")
    (subs / "stuck.py").write_text("HANG = True\n")
    (subs / "stuck_at_import.py").write_text("while True:\n    pass\n")
    summary = grade_all(str(tmp_path / "tests"), str(subs), str(tmp_path / "out"), jobs=2, timeout=None,
                        run_timeout=8, extra=[*FAST, "--crosscheck-isolation=none"], progress=False)
    assert summary["submissions"] == 3
    docs = {name: json.loads((tmp_path / "out" / name / "results.json").read_text())
            for name in ("fine", "stuck", "stuck_at_import")}
    assert docs["fine"]["score"] == 1.0
    for name in ("stuck", "stuck_at_import"):
        assert docs[name]["score"] == 0.0 and docs[name]["tests"][0]["tags"] == ["not_finished"]
        assert "did not finish" in docs[name]["output"], docs[name]["output"]
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert rows == ["submission,score,max_score,test_it.py::test_it", "fine,1.0,1.0,1.0", "stuck,0.0,1.0,0.0",
                    "stuck_at_import,0.0,1.0,0.0"]


@pytest.mark.parametrize("args, message", [
    (["run", "x", "y", "-j", "0"], "-j/--jobs: expected a positive integer, got 0"),
    (["run", "x", "y", "--timeout", "-3"], "--timeout: expected a positive number of seconds"),
    (["run", "x", "y", "--seed", "-1"], "--seed: expected a non-negative integer"),
])
def test_bad_options_are_refused_with_the_option_named(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["grade", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["bundle", "{missing}"], "TESTS_DIR: {missing} is not a folder"),
    (["bundle", "{empty}"], "TESTS_DIR: {empty} holds no .py file"),
    (["run", "{empty}", "{missing}"], "SUBMISSIONS_DIR: {missing} is not a folder"),
    (["run", "{missing}", "{empty}"], "TESTS_DIR: {missing} is not a folder"),
    (["run", "{empty}", "{empty}"], "SUBMISSIONS_DIR: {empty} holds no submission"),
])
def test_bad_folders_are_one_clear_line(tmp_path, capsys, args, message):
    paths = {"missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty")}
    os.makedirs(paths["empty"])
    assert main(["grade", *[a.format(**paths) for a in args], "-o", str(tmp_path / "out.zip")]) == 2
    err = capsys.readouterr().err
    assert message.format(**paths) in err and "Traceback" not in err
