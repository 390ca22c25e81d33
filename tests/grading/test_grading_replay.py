"""A test's seed comes from its path inside the suite and its name, not from the rootdir or the
folder pytest runs from; the replay line a student reads, pasted into a shell as printed, reruns
the test on the same data with the same submission."""
import json
import shlex
import subprocess
import sys

import pytest

from tests.helpers.inner_runs import FAST

SEEDED = '''
import json, os
def test_seed(rng, crosscheck, request):
    with open(os.environ["SEED_OUT"], "a") as f:
        f.write(json.dumps([request.node.nodeid, crosscheck.seed, float(rng.normal())]) + "\\n")
'''


def run(cwd, *args, env=None):
    return subprocess.run([sys.executable, "-m", "pytest", *FAST, "--crosscheck-seed=7", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("packages", [[], ["suite", "suite/part"]], ids=["plain folders", "packages"])
def test_the_seed_is_the_same_from_any_folder(tmp_path, monkeypatch, packages):
    part = tmp_path / "course" / "suite" / "part"
    part.mkdir(parents=True)
    (part / "test_seeded.py").write_text(SEEDED)
    for p in packages:
        (tmp_path / "course" / p / "__init__.py").write_text("")
    out = tmp_path / "seeds.jsonl"
    monkeypatch.setenv("SEED_OUT", str(out))
    for cwd, target in [(tmp_path / "course", "suite/part/test_seeded.py"), (part, "test_seeded.py"),
                        (tmp_path, "course/suite/part")]:
        done = run(cwd, target)
        assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({nodeid for nodeid, _, _ in rows}) == 3                   # three rootdirs, three node ids
    assert len({(seed, draw) for _, seed, draw in rows}) == 1            # one seed, the same data


GRADED = '''
import pytest
@pytest.mark.points(1)
def test_answer(submission, rng):
    draw = float(rng.normal())
    print("DRAW", draw)
    assert submission.answer() == 42, f"answer() returned {submission.answer()}, draw {draw!r}"
'''


def test_the_replay_line_reruns_the_test_as_printed(tmp_path):
    """A grader's run (from another folder, with the submission as a folder of a copy) prints the
    line; the student pastes it in the folder holding the course's tests and their file."""
    hw = tmp_path / "student"
    (hw / "tests").mkdir(parents=True)
    (hw / "tests" / "pytest.ini").write_text("[pytest]\ncrosscheck_submission_file = answer.py\n")
    (hw / "tests" / "test_answer.py").write_text(GRADED)
    (hw / "answer.py").write_text("def answer():\n    return 41\n")
    grader = tmp_path / "grader"
    (grader / "copy").mkdir(parents=True)
    (grader / "copy" / "answer.py").write_text((hw / "answer.py").read_text())
    results = tmp_path / "results.json"
    done = run(hw, "tests", f"--crosscheck-submission={grader / 'copy'}", f"--crosscheck-gradescope={results}")
    assert done.returncode == 1
    output = json.loads(results.read_text())["tests"][0]["output"]
    replay = [line for line in output.splitlines() if line.startswith("replay: ")]
    assert replay == ["replay: pytest 'tests/test_answer.py::test_answer' --crosscheck-seed=7 "
                      "--crosscheck-submission=answer.py"]
    draw = output.split("draw ")[1].split()[0]
    command = shlex.split(replay[0].removeprefix("replay: "))
    again = subprocess.run([sys.executable, "-m", *command, *FAST], cwd=hw, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 1
    assert f"answer() returned 41, draw {draw}" in again.stdout, again.stdout
