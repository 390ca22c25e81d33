"""``handbp bench rnn``: the two sides it times do the same maths (gradients equal), and it prints
the ratios with the thread counts, versions and goals; its options are checked."""
import numpy as np
import pytest

from handbp.benchmarks.rnn import make_calls
from handbp.cli import main


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_both_sides_compute_the_same_gradients(kind, dtype, rng):
    mine, theirs = make_calls(kind, 3, 5, 7, dtype, rng)
    dx, dx_torch = mine(), theirs()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dx_torch.numpy(), **tol)
    ours, torchs = mine.grads(), theirs.grads()
    assert ours.keys() == torchs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], torchs[name], err_msg=name, **tol)


def test_the_command_prints_ratios_threads_versions_and_goals(capsys):
    assert main(["bench", "rnn", "--sizes", "1:32:50,2:8:5", "--repeats", "1", "--min-time", "0.01",
                 "--kinds", "LSTM,GRU"]) == 0
    out = capsys.readouterr().out
    assert "threads: numpy/BLAS=1" in out and "torch=1" in out and "torch 2." in out and "numpy " in out
    assert "CPU time" in out
    rows = [line for line in out.splitlines() if line.lstrip().startswith(("LSTM", "GRU"))]
    assert len(rows) == 8 and all("×" in r for r in rows)
    assert sum("≥ 2×" in r for r in rows) == 4                 # the goal is printed for the goal's size


@pytest.mark.parametrize("argv, message", [(["--kinds", "LSTMX"], "--kinds"), (["--sizes", "1:2"], "--sizes"),
                                           (["--dtypes", "float16"], "--dtypes"), (["--repeats", "0"], "--repeats")])
def test_bad_options_are_named(argv, message, capsys):
    assert main(["bench", "rnn", *argv]) == 2
    assert message in capsys.readouterr().err
