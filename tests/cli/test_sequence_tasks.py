"""The two sequence tasks of ``handbp train`` (handbp.sequence_tasks): the addition data is school
addition, an LSTM learns it (and adds numbers longer than it saw), the character-level model runs
on the project's own Korean guide or any text, results saved and loaded; bad options are refused."""
import numpy as np
import pytest

import handbp as hb
from handbp import sequence_tasks
from handbp.cli import main


def test_the_addition_data_is_school_addition(rng):
    x, y = sequence_tasks.addition(50, 6, rng)
    a, b = x // 10, x % 10                                    # the digits, least significant first
    weights = 10 ** np.arange(7)
    assert x.shape == y.shape == (50, 7) and not a[:, -1].any() and not b[:, -1].any()
    np.testing.assert_array_equal((a * weights).sum(1) + (b * weights).sum(1), (y * weights).sum(1))


def test_an_lstm_learns_to_add_and_adds_longer_numbers(rng):
    """The known answer: after training on 5-digit sums, fresh sums are right digit by digit (the
    carry is kept across steps), also for 14-digit numbers."""
    x, y = sequence_tasks.addition(1000, 5, np.random.default_rng(0))
    model = sequence_tasks.sequence_model(100, 10, 16, 32, "lstm", rng=np.random.default_rng(0))
    sequence_tasks.train(model, hb.optim.Adam(model.parameters(), lr=0.02), x, y, epochs=16, batch_size=32,
                         rng=np.random.default_rng(0))
    for digits in (5, 14):
        tx, ty = sequence_tasks.addition(500, digits, np.random.default_rng(1))
        assert np.mean(sequence_tasks.predict(model, tx) == ty) > 0.99


def run(capsys, *argv):
    code = main(["train", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_add_prints_held_out_figures(capsys):
    code, out, _ = run(capsys, "--task", "add", "--samples", "200", "--length", "3", "--epochs", "2", "--cell", "gru")
    assert code == 0
    assert "epoch    0  loss" in out and "add: 200 sums of 3-digit numbers, GRU 32, 2 epochs" in out
    assert "3 digits:" in out and "10 digits:" in out and "(longer than any trained on)" in out


def test_train_chars_runs_on_the_projects_own_guide(capsys):
    code, out, _ = run(capsys, "--task", "chars", "--epochs", "1", "--samples", "4", "--width", "8", "--quiet")
    assert code == 0
    first, second = out.strip().splitlines()
    assert first.startswith("chars: ") and "of teaching.ko.md, LSTM 8" in first and "(a unigram model: " in first
    assert second.startswith("sample: ")


def test_train_chars_takes_any_text_and_saves_a_loadable_model(capsys, tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    path = tmp_path / "chars.npz"
    code, out, _ = run(capsys, "--task", "chars", "--corpus", str(corpus), "--epochs", "2", "--length", "12",
                       "--width", "16", "--hidden-depth", "1", "--dropout", "0.2", "--cell", "rnn", "--save", str(path),
                       "--dtype", "float32")
    assert code == 0 and f"saved to {path}" in out
    model = hb.load(path)
    assert isinstance(model[1], hb.RNN) and model[1].num_layers == 2 and model.dtype == np.float32
    assert model(np.array([[1, 2, 3]])).shape == (3, 11)     # 11 distinct characters


def test_train_chars_without_the_guide_reads_handbp_s_own_docstrings(capsys, monkeypatch, tmp_path):
    """An installed wheel has no docs/ folder: the default text is then handbp's own docstrings."""
    import handbp.sequence_tasks as tasks
    monkeypatch.setattr(tasks, "DEFAULT_CORPUS", str(tmp_path / "no" / "teaching.ko.md"))
    code, out, _ = run(capsys, "--task", "chars", "--epochs", "1", "--length", "12", "--width", "8",
                       "--samples", "64")
    assert code == 0, out
    assert "of handbp's docstrings" in out


@pytest.mark.parametrize("argv, message", [
    (["--task", "add", "--length", "0"], "--length: expected an integer ≥ 1, got 0"),
    (["--task", "chars", "--dropout", "2"], "--dropout: expected a probability in [0, 1], got 2.0"),
    (["--task", "add", "--clip", "-1"], "--clip: expected a finite number ≥ 0, got -1.0"),
    (["--task", "chars", "--corpus", "no/such/file.txt"], "--corpus: no such file: 'no/such/file.txt'"),
    (["--task", "add", "--optimizer", "lbfgs"], "--optimizer: expected one of"),
])
def test_bad_options_are_named(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err, err
