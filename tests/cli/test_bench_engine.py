"""`handbp bench engine` at tiny sizes and one round: the printed table and the JSON, not the timings."""
import json
import re

import numpy as np
import pytest

import handbp as hb
from handbp.benchmarks import engine
from handbp.cli import main

SIZES = [(1, 4, 1), (0, 3, 5)]      # one unbatched sample, and a batch of 5 with width features in and out
ARGS = ["bench", "engine", "--sizes", "1:4:1,0:3:5", "--repeats", "1", "--min-time", "0.001"]
ROW = re.compile(r"^ +(\d+) +(\d+) +(\d+) +(\d+) +([0-9.]+ (?:µs|ms)) +([0-9.]+ (?:µs|ms)|n/a) +"
                 r"([0-9.]+ (?:µs|ms)) +([0-9.]+×|n/a) +([0-9.]+×)$")


def params(depth, width, batch):
    n_in, n_out = (10, 2) if batch == 1 else (width, width)
    sizes = [n_in] + [width] * (depth + 1) + [n_out]
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def test_table_header_and_rows(capsys):
    assert main(ARGS) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("handbp bench engine — ") and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", out[0])
    assert out[1].startswith("machine: ")
    assert out[2].startswith("threads: numpy/BLAS=1 (") and "torch=1" in out[2] and "dtype float64" in out[2]
    header = out[4].split()
    assert header == ["depth", "width", "batch", "params", "handbp", "torch", "minimal", "torch/handbp",
                      "handbp/minimal"]
    rows = [ROW.match(line) for line in out[5:5 + len(SIZES)]]
    assert all(rows), out
    assert [tuple(int(v) for v in r.groups()[:3]) for r in rows] == SIZES
    assert [int(r.group(4)) for r in rows] == [params(*s) for s in SIZES]
    assert out[-1].startswith("batch 1 = one unbatched sample")


def test_json_holds_the_raw_figures(tmp_path, capsys):
    path = tmp_path / "engine.json"
    assert main([*ARGS, "--threads", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert {"date", "machine", "threads", "dtype", "rows", "repeats"} <= set(data)
    assert data["dtype"] == "float64" and data["repeats"] == 1 and data["threads"].startswith("threads: ")
    assert [(r["depth"], r["width"], r["batch"], r["params"]) for r in data["rows"]] == \
        [(*s, params(*s)) for s in SIZES]
    methods = {"handbp", "torch", "minimal"} if engine._torch_version().startswith("torch ") else {"handbp", "minimal"}
    for r in data["rows"]:
        assert set(r["seconds"]) == methods and all(v > 0 for v in r["seconds"].values())
        assert set(r["rounds"]) == methods and all(len(v) == 1 for v in r["rounds"].values())
        assert r["ratios"]["handbp/minimal"] == pytest.approx(r["rounds"]["handbp"][0] / r["rounds"]["minimal"][0])
        if "torch" in methods:
            assert r["ratios"]["torch/handbp"] == pytest.approx(r["rounds"]["torch"][0] / r["rounds"]["handbp"][0])
    capsys.readouterr()


def test_float32_runs(capsys):
    assert main([*ARGS, "--dtype", "float32"]) == 0
    assert "dtype float32" in capsys.readouterr().out


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_three_steps_do_the_same_update(batch, dtype):
    """Two steps of each method from the same weights give the same weights (float64 to 1e-12,
    float32 to 1e-5, relative to each array's largest change): the benchmark times one piece of
    maths three ways."""
    steps, _ = engine.make_steps(2, 6, batch, np.dtype(dtype), np.random.default_rng(0))
    model = steps["handbp"].state
    before = [p.data.copy() for p in model.parameters()]
    for name in ("handbp", "minimal", "torch"):
        if steps[name] is not None:
            steps[name]()
            steps[name]()
    Ws, bs = steps["minimal"].state
    results = {"handbp": [p.data for p in model.parameters()],
               "minimal": [a for pair in zip(Ws, bs) for a in pair]}
    if steps["torch"] is not None:
        results["torch"] = [p.detach().numpy() for p in steps["torch"].state.parameters()]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name, arrays in results.items():
        assert [a.shape for a in arrays] == [b.shape for b in before], name
        for k, (a, b0, ref) in enumerate(zip(arrays, before, results["handbp"])):
            change = np.abs(ref - b0).max()
            assert change > 0, f"parameter {k} did not move"
            np.testing.assert_allclose(a - b0, ref - b0, rtol=0, atol=tol * change,
                                       err_msg=f"{name}, parameter {k}")


@pytest.mark.parametrize("argv, fragment", [
    (["--repeats", "0"], "--repeats: expected an integer ≥ 1, got 0"),
    (["--threads", "0"], "--threads: expected an integer ≥ 1, got 0"),
    (["--min-time", "0"], "--min-time: expected seconds > 0, got 0.0"),
    (["--sizes", "5:32"], "--sizes: expected depth:width:batch items, got '5:32'"),
    (["--sizes", "5:x:1"], "--sizes: expected depth:width:batch items, got '5:x:1'"),
    (["--sizes", "5:0:1"], "--sizes: expected depth ≥ 0, width ≥ 1, batch ≥ 1, got '5:0:1'"),
    (["--json", "/no/such/folder/e.json"], "--json: expected a path in an existing folder"),
])
def test_bad_arguments_exit_2_naming_the_argument(argv, fragment, capsys):
    assert main(["bench", "engine", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"handbp bench: error: {fragment}") and captured.out == ""
