"""`handbp train`, run in-process through the CLI's main: output, exit codes, checkpoints, bad input."""
import re

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main

FINAL = re.compile(r"^(\w+): final loss \((cross-entropy|MSE)\) ([0-9.]+)(?:, train accuracy ([0-9.]+)%)? "
                   r"\((\d+) epochs, [0-9.]+ s\)$")


def final_line(out):
    """The parsed final line: (task, loss kind, loss, accuracy in % or None, epochs)."""
    lines = [line for line in out.splitlines() if FINAL.match(line)]
    assert len(lines) == 1, out
    task, kind, loss, acc, epochs = FINAL.match(lines[0]).groups()
    return task, kind, float(loss), (None if acc is None else float(acc)), int(epochs)


# (task, extra arguments, loss kind, what the final figure must reach). Short runs of the task's
# defaults: the full defaults (300 / 100 / 300 epochs) are measured in the README.
TASKS = [
    ("spirals", ["--epochs", "150"], "cross-entropy", 95.0),
    ("xor", ["--epochs", "30"], "cross-entropy", 99.0),
    ("sine", ["--epochs", "150"], "MSE", 0.02),
]


@pytest.mark.parametrize("task, extra, kind, target", TASKS)
def test_each_task_trains_and_reports_its_figure(task, extra, kind, target, capsys):
    assert main(["train", "--task", task, "--quiet", *extra]) == 0
    out = capsys.readouterr().out
    got = final_line(out)
    assert got[:2] == (task, kind) and got[4] == int(extra[-1])
    if kind == "MSE":
        assert got[3] is None and got[2] < target          # sin(x) + N(0, 0.05²): the floor is 0.0025
    else:
        assert got[3] >= target
    assert out.strip().count("\n") == 0                      # --quiet: the final line only


def test_progress_lines_then_final_line(capsys):
    assert main(["train", "--task", "xor", "--epochs", "20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    epochs = [int(re.match(r"epoch +(\d+)  loss [0-9.]+$", line).group(1)) for line in lines[:-1]]
    assert epochs == list(range(0, 20, 2)) + [19]            # every tenth of the run, and the last epoch
    final_line(lines[-1])


def test_same_seed_same_figures_other_seed_other_figures(capsys):
    runs = []
    for seed in ("3", "3", "4"):
        assert main(["train", "--task", "xor", "--epochs", "5", "--quiet", "--seed", seed]) == 0
        runs.append(final_line(capsys.readouterr().out)[2])
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_writes_a_loadable_checkpoint_with_the_reported_accuracy(dtype, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--task", "xor", "--epochs", "10", "--width", "8", "--hidden-depth", "0",
                 "--activation", "relu", "--dtype", dtype, "--quiet", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"saved to {path}" in out
    accuracy = final_line(out)[3]
    model = hb.load(path)
    assert model.dtype == np.dtype(dtype)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert (model[0].in_features, model[0].out_features, model[2].out_features) == (2, 8, 2)
    x, y = hb.datasets.xor(rng=0)
    # the printed accuracy has one decimal of a percent: the reloaded model must give the same figure
    assert hb.accuracy(model, x.astype(dtype), y) * 100 == pytest.approx(accuracy, abs=0.05)


def test_save_also_holds_the_optimizer_state(tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--task", "sine", "--epochs", "2", "--quiet", "--save", str(path)]) == 0
    model = hb.load(path)
    optimizer = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    hb.load_into(path, model, optimizer)
    assert len(optimizer.state) == len(model.parameters())  # a momentum buffer per parameter


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_every_activation_builds_and_trains(activation, capsys):
    assert main(["train", "--task", "xor", "--epochs", "3", "--activation", activation, "--quiet"]) == 0
    assert final_line(capsys.readouterr().out)[0] == "xor"


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad", "Adam"])
def test_optimizers_that_handbp_has(optimizer, capsys):
    cls = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
    if not hasattr(hb.optim, cls[optimizer.lower()]):
        pytest.skip(f"hb.optim has no {cls[optimizer.lower()]} yet")
    assert main(["train", "--task", "xor", "--epochs", "30", "--optimizer", optimizer, "--quiet"]) == 0
    assert final_line(capsys.readouterr().out)[3] >= 95.0   # each optimizer's default lr works


def test_diverging_run_exits_1_with_one_line(capsys):
    assert main(["train", "--task", "sine", "--lr", "5", "--epochs", "50", "--quiet"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handbp train: training diverged:") and "--lr is 5.0" in err[0]
    assert "Traceback" not in captured.err and "final loss" not in captured.out


# (arguments, the argument the message must name, a fragment of the message)
BAD = [
    (["--epochs", "0"], "--epochs", "got 0"),
    (["--epochs", "-3"], "--epochs", "got -3"),
    (["--batch-size", "0"], "--batch-size", "got 0"),
    (["--width", "0"], "--width", "got 0"),
    (["--hidden-depth", "-1"], "--hidden-depth", "got -1"),
    (["--lr", "-0.1"], "--lr", "got -0.1"),
    (["--lr", "nan"], "--lr", "got nan"),
    (["--lr", "inf"], "--lr", "got inf"),
    (["--momentum", "-0.5"], "--momentum", "got -0.5"),
    (["--samples", "0"], "--samples", "got 0"),
    (["--task", "spirals", "--samples", "1"], "--samples", "got 1"),   # two spirals need two samples
    (["--optimizer", "lbfgs"], "--optimizer", "'lbfgs'"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum", "not adam"),
    (["--save", "/no/such/folder/m.npz"], "--save", "does not exist"),
]


@pytest.mark.parametrize("argv, name, fragment", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_arguments_exit_2_naming_the_argument(argv, name, fragment, capsys):
    assert main(["train", "--task", "xor", "--epochs", "1", *argv] if "--epochs" not in argv
                else ["train", "--task", "xor", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"handbp train: error: {name}:") and fragment in err[0]
    assert captured.out == ""                                 # rejected before any training


@pytest.mark.parametrize("argv", [["--task", "mnist"], ["--activation", "softmax"], ["--dtype", "float16"],
                                  ["--epochs", "ten"]])
def test_argparse_rejects_unknown_choices_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    assert argv[0] in capsys.readouterr().err
