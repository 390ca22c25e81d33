"""hb.draw: the computational graph with the shape on every edge and, after a backward pass, the
gradient norms; the model left as it was; matplotlib only when called."""
import subprocess
import sys

import numpy as np
import pytest

import handbp as hb


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_shapes_on_every_edge(rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    words = texts(hb.draw(model, rng.normal(size=(5, 3))))
    assert words.count("(5, 3)") == 1 and words.count("(5, 4)") == 2
    assert "weight (4, 3)" in words and "bias (2,)" in words and "1\nTanh" in words
    assert not any("‖" in w for w in words)          # no loss given: no gradients


def test_gradient_norms_after_a_backward_pass(rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    words = texts(hb.draw(model, x, y, hb.MSELoss()))
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    loss = hb.MSELoss()
    value = loss(model(x), y)
    dpred = loss.backward()
    model.backward(dpred)
    assert f"MSELoss\nL = {value:.4g}" in words
    assert f"‖·‖ {np.linalg.norm(dpred):.3g}" in words
    assert f"weight (4, 3)  ‖·‖ {np.linalg.norm(model[0].weight.grad):.3g}" in words
    assert f"bias (2,)  ‖·‖ {np.linalg.norm(model[2].bias.grad):.3g}" in words


def test_it_saves_a_picture(tmp_path, rng):
    hb.draw(hb.DNN(1, 4, 3, 2), rng.normal(size=3), rng.normal(size=2), hb.MeanSquaredError(),
            path=tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("call, error, message", [
    (lambda: hb.draw(object(), np.zeros(3)), TypeError, "draw: model"),
    (lambda: hb.draw(hb.Linear(3, 2), np.zeros(3), y=np.zeros(2)), ValueError, "draw: y and loss"),
    (lambda: hb.draw(hb.Linear(3, 2), np.zeros(3), np.zeros(2), "mse"), TypeError, "draw: loss"),
    (lambda: hb.draw(hb.Linear(3, 2), np.zeros(4)), ValueError, "x: expected shape"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_without_matplotlib_it_says_how_to_install_it():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import numpy as np, handbp as hb\n"
            "try:\n    hb.draw(hb.Linear(3, 2), np.zeros(3))\n"
            "except ImportError as e:\n    print(str(e).split('  (')[0])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == 'hb.draw needs matplotlib: install it with  pip install "handbp[plot]"', done.stderr
