"""Smoke test of ``handbp bench grading`` at a tiny size: it runs each part, prints its figures,
the versions and the machine, and writes its JSON. No timing is asserted (the machine is shared)."""
import json

import pytest

from handbp.cli import main


def test_the_grading_benchmark_prints_its_figures_and_json(tmp_path, capsys):
    path = tmp_path / "grading.json"
    assert main(["bench", "grading", "--repeats", "1", "--serial-submissions", "correct", "--copies", "1",
                 "--ceiling-rounds", "1", "--startup-repeats", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("handbp bench grading — ")
    for piece in ("machine: ", "versions: python ", "torch 2.", "pytest ", "one submission graded serially",
                  "correct, without hypothesis's", "under pytest -n 2", "its tests unforked", "import torch",
                  "goal ≤ 4 s", "1 at a time:", "2 at a time:", "throughput ratio: ", "goal ≥ 1.8×", "own ceiling",
                  "an unrelated project's pytest --co", "paired difference", "goal < 50 ms", "crosscheck.grading "):
        assert piece in out, out
    data = json.loads(path.read_text())
    assert {"date", "machine", "versions", "serial", "batch", "startup"} <= set(data)
    assert {"correct, all plugins", "correct, without hypothesis's"} < set(data["serial"])
    assert all(f["wall_median"] > 0 and f["cpu_median"] > 0 for f in data["serial"].values())
    assert data["batch"]["copies"] == 1 and data["batch"]["ratio"] > 0 and len(data["batch"]["ceiling"]) == 2
    assert data["startup"]["median_with"] > 0 and data["startup"]["median_blocked"] > 0


@pytest.mark.parametrize("args, message", [
    (["--copies", "0"], "--copies: expected an integer ≥ 1, got 0"),
    (["--startup-repeats", "0"], "--startup-repeats: expected an integer ≥ 1, got 0"),
    (["--serial-submissions", "nobody"], "--serial-submissions: no submission 'nobody'"),
    (["--course", "/nonexistent"], "--course: expected a folder holding tests/ and submissions/"),
])
def test_bad_settings_are_one_clear_line(args, message, capsys):
    assert main(["bench", "grading", *args]) == 2
    assert message in capsys.readouterr().err
