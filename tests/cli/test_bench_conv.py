"""`handbp bench conv` at its tiny --quick size: the printed fields and the JSON, not the timings."""
import json
import re

import pytest

from handbp.benchmarks import conv
from handbp.cli import main

pytest.importorskip("torch")
ROW = re.compile(r"^ +(float32|float64) +[0-9.]+ (?:µs|ms) +[0-9.]+ (?:µs|ms) +([0-9.]+)× +≤([0-9.]+)× +(\S+ MB|n/a) +"
                 r"(\S+ MB|n/a) +(\S+ MB|n/a)  goal (met|missed)$")
PARTS = re.compile(r"^  (float32|float64): [0-9.]+ (?:µs|ms): matrix products \d+%, .*the rest \d+%$")


def bench(capsys, *extra):
    assert main(["bench", "conv", "--quick", *extra]) == 0
    return capsys.readouterr().out.splitlines()


def test_header_rows_and_breakdown_without_memory(tmp_path, capsys):
    path = tmp_path / "conv.json"
    out = bench(capsys, "--no-memory", "--json", str(path))
    assert out[0].startswith("handbp bench conv — ") and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", out[0])
    assert out[1].startswith("machine: ")
    assert out[2].startswith("threads: numpy/BLAS=1 (") and "torch=1" in out[2]
    assert re.search(r"numpy [0-9.]+, torch \S+ eager", out[2])
    assert out[3].startswith("one step of Conv2d(2, 3, kernel_size=3, padding=1) on x of shape (4, 2, 8, 8)")
    rows = [ROW.match(line) for line in out if ROW.match(line)]
    assert [r.group(1) for r in rows] == ["float32", "float64"]
    assert [float(r.group(3)) for r in rows] == [conv.GOALS["float32"], conv.GOALS["float64"]]
    assert all(r.group(4) == r.group(5) == r.group(6) == "n/a" for r in rows)      # --no-memory
    assert [PARTS.match(line).group(1) for line in out if PARTS.match(line)] == ["float32", "float64"]
    data = json.loads(path.read_text())
    assert {"date", "machine", "threads", "versions", "size", "repeats", "rows"} <= set(data)
    assert data["size"] == conv.QUICK and [r["dtype"] for r in data["rows"]] == ["float32", "float64"]
    for r, row in zip(data["rows"], rows):
        assert set(r["seconds"]) == {"handbp", "torch"} and all(v > 0 for v in r["seconds"].values())
        assert f"{r['handbp/torch']:.2f}" == row.group(2)
        assert len(r["rounds"]["handbp"]) == len(r["rounds"]["torch"]) == data["repeats"]


def test_memory_of_each_side_is_measured_and_named(capsys):
    out = bench(capsys, "--dtype", "float64")
    rows = [ROW.match(line) for line in out if ROW.match(line)]
    assert [r.group(1) for r in rows] == ["float64"]
    assert all(re.fullmatch(r"[0-9.]+ MB", v) for v in rows[0].group(4, 5, 6)), rows[0].group(0)
    assert any(line.startswith("peak extra memory: ") and "VmHWM" in line and "tracemalloc" in line for line in out)


def test_memory_child_reports_a_step_that_allocates():
    """The measurement sees what a step allocates: here the padded input and its gradient alone are 2.3 MB."""
    got = conv.measure_memory({**conv.QUICK, "batch": 64, "height": 32, "width": 32}, "float64")
    assert got["handbp"]["rss"] > 1 << 20 and got["handbp"]["tracemalloc"] > 1 << 20
    assert got["torch"]["rss"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats: expected an integer ≥ 1, got 0"),
    (["--min-time", "0"], "--min-time: expected seconds > 0, got 0.0"),
    (["--json", "/no/such/folder/x.json"], "--json: expected a path in an existing folder"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    assert main(["bench", "conv", *argv]) == 2
    assert message in capsys.readouterr().err
