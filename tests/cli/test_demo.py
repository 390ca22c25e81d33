"""`handbp demo`: the seed notebook's experiment on handbp, alone and cross-checked against torch."""
import re
import sys

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main
from handbp.commands.demo import notebook_experiment

NOTEBOOK_LINE = re.compile(r"^Epoch (\d+): Test loss (\S+)$")


@pytest.mark.parametrize("seed, epochs, alpha", [(0, 100, 0.01), (7, 5, 0.01), (0, 3, 0.5)])
def test_notebook_experiment_is_the_notebook_cell(seed, epochs, alpha):
    dnn, loss_obj, x, y, losses, seconds = notebook_experiment(seed, epochs, alpha)
    assert isinstance(dnn, hb.DNN) and isinstance(loss_obj, hb.MeanSquaredError)
    assert [type(m).__name__ for m in dnn] == ["Linear", "Sigmoid"] * 7       # 10 → 32 ×6 → 2
    assert (dnn[0].in_features, dnn[-2].out_features, x.shape, y.shape) == (10, 2, (10,), (2,))
    assert len(losses) == epochs and all(isinstance(v, float) for v in losses) and seconds >= 0
    # the same cell by hand: the seed draws x, y and then the weights, in the notebook's order
    np.random.seed(seed)
    x2, y2 = np.random.normal(0.0, 1.0, (10,)), np.random.normal(0.0, 1.0, (2,))
    net = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid)
    expected = [hb.gradient_descent(net, x2, y2, hb.MeanSquaredError(), alpha=alpha) for _ in range(epochs)]
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert losses == expected                                                   # bit for bit
    assert losses[-1] < losses[0]                                               # the weights learn


def test_alpha_zero_changes_nothing():
    _, _, _, _, losses, _ = notebook_experiment(0, 4, 0.0)
    assert len(set(losses)) == 1


def test_without_torch_prints_the_notebooks_lines(capsys):
    assert main(["demo", "--epochs", "4", "--seed", "3", "--no-torch"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    printed = [NOTEBOOK_LINE.match(line).groups() for line in lines[:-1]]
    _, _, _, _, losses, _ = notebook_experiment(3, 4, 0.01)
    assert [int(e) for e, _ in printed] == [0, 1, 2, 3]
    assert [float(v) for _, v in printed] == losses                            # repr: every digit
    assert re.match(r"^[0-9.]+ seconds elapsed\.$", lines[-1])


def test_cross_checked_run_prints_both_losses_and_a_verdict(capsys):
    pytest.importorskip("torch")
    assert main(["demo", "--epochs", "6", "--alpha", "0.05"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if re.match(r"^ +\d+ ", line)]
    _, _, _, _, losses, _ = notebook_experiment(0, 6, 0.05)
    assert [int(r[0]) for r in rows] == list(range(6))
    assert [float(r[1]) for r in rows] == losses                               # %.17g: every digit
    # torch's loss agrees to float64 rounding, and so does every compared quantity
    assert np.allclose([float(r[2]) for r in rows], losses, rtol=1e-13, atol=0)
    assert max(float(r[3]) for r in rows) < 1e-12
    verdict = next(line for line in out if line.startswith("verdict:"))
    assert "all 6 steps matched the torch twin" in verdict and "every weight moved: True" in verdict
    assert out[-1].startswith("elapsed: handbp ")


def test_without_crosscheck_falls_back_to_handbp_alone(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "crosscheck", None)                       # import crosscheck fails
    assert main(["demo", "--epochs", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("the cross-check needs crosscheck and torch (")
    assert [NOTEBOOK_LINE.match(line) is not None for line in lines[1:-1]] == [True, True]
    assert lines[-1].endswith("seconds elapsed.")


@pytest.mark.parametrize("argv, fragment", [(["--epochs", "0"], "--epochs: expected an integer ≥ 1, got 0"),
                                            (["--alpha", "-0.1"], "--alpha: expected a finite learning rate ≥ 0, got -0.1"),
                                            (["--alpha", "nan"], "--alpha: expected a finite learning rate ≥ 0, got nan")])
def test_bad_arguments_exit_2_naming_the_argument(argv, fragment, capsys):
    assert main(["demo", "--no-torch", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"handbp demo: error: {fragment}" and captured.out == ""
