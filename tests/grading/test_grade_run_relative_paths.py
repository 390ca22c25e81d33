"""``handbp grade run TESTS SUBMISSIONS -o OUTPUT`` with paths relative to the folder it is run
from, as a user types them (``-o`` defaults to the relative ``grades``). Each submission's pytest
runs from the tests' parent folder, so a relative OUTPUT handed to it named another folder there:
every submission, the correct one too, was scored 0 with "pytest ended before it wrote any"."""
import json
import subprocess
import sys

import pytest

from handbp.cli import main
from tests.helpers.inner_runs import FAST

SUITE = '''
import pytest
@pytest.mark.points(2)
def test_it(submission):
    assert submission.ANSWER == 42
'''


@pytest.mark.parametrize("fresh", [[], ["--fresh-processes"]], ids=["forked", "fresh"])
def test_relative_folders_score_each_submission(tmp_path, monkeypatch, capsys, fresh):
    course = tmp_path / "course"
    (course / "tests").mkdir(parents=True)
    (course / "tests" / "test_it.py").write_text(SUITE)
    (course / "subs").mkdir()
    (course / "subs" / "right.py").write_text("ANSWER = 42\n")
    (course / "subs" / "wrong.py").write_text("ANSWER = 41\n")
    monkeypatch.chdir(tmp_path)          # the tests' parent folder is course/, not here
    code = main(["grade", "run", "course/tests", "course/subs", "-o", "grades", "-j", "2", "--no-progress",
                 *fresh, "--", *FAST, "--crosscheck-isolation=none"])
    assert code == 0, capsys.readouterr()
    scores = {name: json.loads((tmp_path / "grades" / name / "results.json").read_text())["score"]
              for name in ("right", "wrong")}
    assert scores == {"right": 2.0, "wrong": 0.0}
    assert not (course / "grades").exists()
    assert "scores: grades/scores.csv" in capsys.readouterr().out


def test_a_forked_submissions_log_has_no_warning_about_the_warm_up(tmp_path):
    """The process that forks each submission's pytest imported handbp and crosscheck to warm up;
    pytest, which marks an installed plugin's packages for assertion rewriting (from a wheel: handbp
    and crosscheck; the course's conftest does the same here, as the editable install is not
    marked), warned in every submission's log that they were imported already."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text('import pytest\npytest.register_assert_rewrite("crosscheck")\n')
    (tmp_path / "tests" / "test_it.py").write_text(SUITE)
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "right.py").write_text("ANSWER = 42\n")
    # a process of its own: under this suite's output capture, the forked run's output is not its log
    done = subprocess.run([sys.executable, "-m", "handbp", "grade", "run", "tests", "subs", "-o", "out", "--no-progress",
                           "--", *FAST, "--crosscheck-isolation=none"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "out" / "right" / "log.txt").read_text()
    assert "1 passed" in log and "PytestAssertRewriteWarning" not in log, log
