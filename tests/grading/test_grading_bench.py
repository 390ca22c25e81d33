"""Smoke test of ``handbp bench grading`` at a tiny size (a course of one test that needs no torch,
one round of each part): it runs each part, prints its figures, the versions and the machine, and
writes its JSON. No timing is asserted (the machine is shared)."""
import json

import pytest

from handbp.cli import main


@pytest.fixture
def tiny_course(tmp_path):
    """A course of one graded test that needs no torch, and one submission: each pytest run short."""
    course = tmp_path / "course"
    (course / "tests").mkdir(parents=True)
    (course / "tests" / "pytest.ini").write_text("[pytest]\ncrosscheck_submission_file = answer.py\n")
    (course / "tests" / "test_answer.py").write_text(
        "import pytest\n\n@pytest.mark.points(1)\ndef test_answer(submission):\n    assert submission.answer() == 42\n")
    (course / "submissions" / "correct").mkdir(parents=True)
    (course / "submissions" / "correct" / "answer.py").write_text("def answer():\n    return 42\n")
    return course


def test_the_grading_benchmark_prints_its_figures_and_json(tiny_course, tmp_path, capsys):
    path = tmp_path / "grading.json"
    assert main(["bench", "grading", "--course", str(tiny_course), "--repeats", "1", "--serial-submissions", "correct",
                 "--copies", "1", "--ceiling-rounds", "0", "--startup-repeats", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("handbp bench grading — ")
    for piece in ("machine: ", "versions: python ", "torch 2.", "pytest ", "one submission graded serially",
                  "correct, without hypothesis's", "under pytest -n 2", "its tests unforked", "import torch",
                  "goal ≤ 4 s", "1 at a time:", "2 at a time:", "throughput ratio: ", "goal ≥ 1.8×",
                  "an unrelated project's pytest --co", "paired difference", "goal < 50 ms", "crosscheck.grading "):
        assert piece in out, out
    assert "own ceiling" not in out                                     # --ceiling-rounds 0
    data = json.loads(path.read_text())
    assert {"date", "machine", "versions", "serial", "batch", "startup"} <= set(data)
    assert {"correct, all plugins", "correct, without hypothesis's"} < set(data["serial"])
    assert all(f["wall_median"] > 0 and f["cpu_median"] > 0 for f in data["serial"].values())
    assert data["batch"]["copies"] == 1 and data["batch"]["ratio"] > 0 and data["batch"]["ceiling"] == [None, None]
    assert data["startup"]["median_with"] > 0 and data["startup"]["median_blocked"] > 0


@pytest.mark.parametrize("args, message", [
    (["--copies", "0"], "--copies: expected an integer ≥ 1, got 0"),
    (["--startup-repeats", "0"], "--startup-repeats: expected an integer ≥ 1, got 0"),
    (["--ceiling-rounds", "-1"], "--ceiling-rounds: expected an integer ≥ 0, got -1"),
    (["--serial-submissions", "nobody"], "--serial-submissions: no submission 'nobody'"),
    (["--course", "/nonexistent"], "--course: expected a folder holding tests/ and submissions/"),
])
def test_bad_settings_are_one_clear_line(args, message, capsys):
    assert main(["bench", "grading", *args]) == 2
    assert message in capsys.readouterr().err
