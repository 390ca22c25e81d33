"""`handbp train --task digits`: the CNN on scikit-learn's 8 × 8 digits, its checkpoint and plot, the
MLP beside it, and the messages when scikit-learn or matplotlib is missing. A short run checks the
command (3 epochs); the full default run (20 epochs, ≥ 98% test accuracy, docs/conv.md) is the slow one."""
import re
import sys

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main

pytest.importorskip("sklearn", reason="the digits ship with scikit-learn (handbp[digits], in the test extra)")

CNN = re.compile(r"^CNN: test accuracy ([0-9.]+)% \((\d+) of (\d+)\), train accuracy ([0-9.]+)%, (\d+) epochs, "
                 r"[0-9.]+ s$", re.M)
MLP = re.compile(r"^MLP: Flatten → Linear\(64→64\) → Tanh → Linear\(64→10\), same split and training: test "
                 r"accuracy ([0-9.]+)%, [0-9.]+ s$", re.M)


def run_digits(capsys, *extra):
    assert main(["train", "--task", "digits", "--quiet", *extra]) == 0
    return capsys.readouterr().out


def test_split_is_stratified_held_out_and_standardized_by_the_training_set():
    x_train, y_train, x_test, y_test = hb.datasets.digits(0.2, rng=0)
    assert x_train.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8) and y_train.dtype == np.int64
    # each class in the same proportion: round(0.2 × its count) of it in the test set
    counts = np.bincount(np.concatenate([y_train, y_test]))
    assert np.array_equal(np.bincount(y_test), np.round(0.2 * counts).astype(int))
    # the training images' statistics only (the test set's differ): mean 0, std 1 exactly on the training set
    assert x_train.mean() == pytest.approx(0, abs=1e-12) and x_train.std() == pytest.approx(1, rel=1e-12)
    assert abs(x_test.mean()) > 1e-6
    # no image in both sets (the dataset has no exact duplicates across a split of distinct indices)
    train_rows = {r.tobytes() for r in x_train.reshape(len(x_train), -1)}
    assert not any(r.tobytes() in train_rows for r in x_test.reshape(len(x_test), -1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_short_run_trains_the_cnn_saves_it_and_reports_the_mlp(dtype, tmp_path, capsys):
    path = tmp_path / "digits.npz"
    out = run_digits(capsys, "--epochs", "3", "--dtype", dtype, "--save", str(path))
    accuracy, right, total, _, epochs = CNN.search(out).groups()
    assert (int(total), int(epochs)) == (359, 3)
    assert float(accuracy) >= 90.0                    # 3 of the 20 default epochs: well above chance (10%)
    assert float(MLP.search(out).group(1)) >= 80.0
    assert f"saved the CNN to {path}" in out
    model = hb.load(path)
    assert model.dtype == np.dtype(dtype)
    assert [type(m).__name__ for m in model] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                                                 "Flatten", "Linear"]
    _, _, x_test, y_test = hb.datasets.digits(0.2, rng=0)
    model.eval()
    assert int((model(x_test.astype(dtype)).argmax(axis=1) == y_test).sum()) == int(right)


@pytest.mark.slow
def test_default_run_reaches_98_percent_on_the_held_out_images(tmp_path, capsys):
    out = run_digits(capsys, "--save", str(tmp_path / "digits.npz"))
    accuracy, _, _, _, epochs = CNN.search(out).groups()
    assert int(epochs) == 20 and float(accuracy) >= 98.0


def test_plot_writes_a_png_of_misclassified_images(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "wrong.png"
    out = run_digits(capsys, "--epochs", "1", "--save", str(tmp_path / "d.npz"), "--plot", str(png))
    shown = int(re.search(r"wrote (\d+) misclassified test digits to ", out).group(1))
    right, total = (int(v) for v in CNN.search(out).groups()[1:3])
    assert shown == min(12, total - right)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_scikit_learn_one_clear_line_with_the_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)           # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["train", "--task", "digits", "--save", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handbp train: error: --task digits: ") and 'pip install "handbp[digits]"' in err
    assert not (tmp_path / "d.npz").exists()


def test_without_matplotlib_plot_is_refused_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["train", "--task", "digits", "--plot", str(tmp_path / "p.png")]) == 2
    captured = capsys.readouterr()
    assert "--plot: needs matplotlib" in captured.err and "epoch" not in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--task", "digits", "--samples", "100"], "--samples: the digits task has scikit-learn's 1,797 images, got 100"),
    (["--task", "xor", "--plot", "p.png"], "--plot: only the digits task draws its misclassified images, got --task xor"),
])
def test_arguments_the_digits_task_does_not_take(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err
