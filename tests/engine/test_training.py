"""fit, the built-in tasks, checkpoints, and the train/demo commands."""
import os

import numpy as np
import pytest

import handbp as hb
from handbp.cli import main


def spiral_model(rng, dtype=np.float64):
    return hb.Sequential(hb.Linear(2, 64, rng=rng, dtype=dtype), hb.Tanh(), hb.Linear(64, 64, rng=rng, dtype=dtype),
                         hb.Tanh(), hb.Linear(64, 2, rng=rng, dtype=dtype))


@pytest.mark.parametrize("task, shapes", [("spirals", ((400, 2), (400,))), ("xor", ((200, 2), (200,))),
                                           ("sine", ((200, 1), (200, 1)))])
def test_tasks_have_their_shapes_and_repeat(task, shapes):
    x, y = hb.datasets.TASKS[task](rng=3)
    assert (x.shape, y.shape) == shapes
    x2, y2 = hb.datasets.TASKS[task](rng=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_fit_reaches_95_percent_on_spirals():
    x, y = hb.datasets.spirals(rng=0)
    model = spiral_model(np.random.default_rng(0))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = hb.fit(model, hb.CrossEntropyLoss(), opt, x, y, epochs=150, batch_size=32, rng=0)
    assert len(history) == 150 and history[-1] < history[0]
    assert hb.accuracy(model, x, y) > 0.95


def test_fit_is_deterministic_given_rng():
    x, y = hb.datasets.xor(rng=1)
    runs = []
    for _ in range(2):
        model = hb.Sequential(hb.Linear(2, 8, rng=np.random.default_rng(4)), hb.Tanh(),
                              hb.Linear(8, 2, rng=np.random.default_rng(5)))
        opt = hb.optim.SGD(model.parameters(), lr=0.1)
        runs.append(hb.fit(model, hb.CrossEntropyLoss(), opt, x, y, epochs=3, batch_size=7, rng=9))
    assert runs[0] == runs[1]


def test_fit_stops_when_the_loss_blows_up():
    x, y = hb.datasets.sine(rng=0)
    model = hb.Sequential(hb.Linear(1, 16, rng=np.random.default_rng(0)), hb.Identity(),
                          hb.Linear(16, 1, rng=np.random.default_rng(1)))
    opt = hb.optim.SGD(model.parameters(), lr=50.0)
    with pytest.raises(hb.TrainingDiverged, match=r"epoch \d+, step \d+"):
        with np.errstate(all="ignore"):
            hb.fit(model, hb.MSELoss(), opt, x * 1e3, y, epochs=5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["sequential", "dnn"])
def test_checkpoint_round_trip_is_bit_exact(kind, dtype, tmp_path, rng):
    if kind == "dnn":
        model = hb.DNN(2, 6, 3, 2, activation=hb.LeakyReLU, rng=rng, dtype=dtype)
    else:
        model = hb.Sequential(hb.Linear(3, 6, rng=rng, dtype=dtype), hb.LeakyReLU(0.2),
                              hb.Linear(6, 2, bias=False, rng=rng, dtype=dtype), hb.Softmax(dim=-1))
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(4, 2)).astype(dtype)
    for _ in range(2):
        _step(model, opt, x, y)
    path = tmp_path / "model.npz"
    hb.save(model, path, optimizer=opt)
    loaded = hb.load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    for (n, a), (m, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n == m and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    opt2 = hb.optim.SGD(loaded.parameters(), lr=0.5)
    hb.load_into(path, loaded, opt2)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["nesterov"] is True
    for p, q in zip(model.parameters(), loaded.parameters()):
        assert opt.state[p]["momentum_buffer"].tobytes() == opt2.state[q]["momentum_buffer"].tobytes()
    np.testing.assert_array_equal(model(x), loaded(x))


def _step(model, opt, x, y):
    loss = hb.MSELoss()
    opt.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward())
    opt.step()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch, rng):
    model = hb.Sequential(hb.Linear(2, 2, rng=rng))
    path = tmp_path / "m.npz"
    hb.save(model, path)
    original = path.read_bytes()
    model[0].weight.data += 1

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        hb.save(model, path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]   # no temporary file left


def test_checkpoint_refuses_custom_modules(tmp_path):
    class Mine(hb.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="state_dict"):
        hb.save(hb.Sequential(Mine()), tmp_path / "m.npz")


def test_train_command_spirals(capsys, tmp_path):
    path = tmp_path / "spirals.npz"
    assert main(["train", "--task", "spirals", "--epochs", "150", "--quiet", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("train accuracy ")[1].split("%")[0])
    assert accuracy > 95
    model = hb.load(path)
    x, y = hb.datasets.spirals(rng=0)
    assert hb.accuracy(model, x, y) == pytest.approx(accuracy / 100, abs=1e-3)


@pytest.mark.parametrize("task", ["xor", "sine"])
def test_train_command_other_tasks(task, capsys):
    assert main(["train", "--task", task, "--dtype", "float32", "--epochs", "60"]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") >= 5 and f"{task}: final loss" in out


def test_demo_command_cross_checks_the_notebook(capsys):
    assert main(["demo", "--epochs", "12"]) == 0
    out = capsys.readouterr().out
    assert "verdict: all 12 steps matched the torch twin" in out and "every weight moved: True" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 12 and float(rows[-1][1]) < float(rows[0][1])


def test_demo_without_torch_prints_the_notebooks_lines(capsys):
    assert main(["demo", "--epochs", "3", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Epoch 0: Test loss ") and out[-1].endswith("seconds elapsed.")


def test_engine_benchmark_smoke(tmp_path, capsys):
    path = tmp_path / "engine.json"
    assert main(["bench", "engine", "--sizes", "1:4:1,1:4:3", "--repeats", "1", "--min-time", "0.001",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "torch/handbp" in out and "threads: numpy/BLAS=1" in out
    import json
    data = json.loads(path.read_text())
    assert [(r["depth"], r["width"], r["batch"]) for r in data["rows"]] == [(1, 4, 1), (1, 4, 3)]
    assert set(data["rows"][0]["seconds"]) == {"handbp", "torch", "minimal"}
