"""explain and the bug zoo's command."""
import numpy as np
import pytest

import handbp as hb
from handbp.cli import main


def net(rng):
    return hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Sigmoid(), hb.Linear(4, 2, rng=rng))


def test_explain_walks_from_the_loss_back_with_torch_beside(rng):
    model = net(rng)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    text = str(hb.explain(model, hb.MSELoss(), x, y))
    order = [text.index(s) for s in ("loss: MSELoss", "module 2 (Linear)", "module 1 (Sigmoid)", "module 0 (Linear)")]
    assert order == sorted(order)
    for piece in ("dW = dyᵀ x", "dx = dy · y(1 − y)", "cached: last_x", "cached: last_o", "SigmoidBackward0",
                  "AddmmBackward0", "dL/d(0.weight)", "every value matches the torch twin ✓"):
        assert piece in text, piece
    assert "✗" not in text


def test_explain_leaves_the_model_untouched(rng):
    model = net(rng)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    hb.explain(model, hb.MSELoss(), rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    assert all(p.grad is None for p in model.parameters())
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].last_x is None


def test_explain_marks_a_wrong_backward(rng):
    class Wrong(hb.Sigmoid):
        def backward(self, dy):
            """dx = dy · y (the (1 − y) forgotten)."""
            return dy * self.last_o

    model = hb.Sequential(hb.Linear(3, 4, rng=rng), Wrong(), hb.Linear(4, 2, rng=rng))
    e = hb.explain(model, hb.MSELoss(), rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    assert e.all_match is False and "✗" in str(e) and "the (1 − y) forgotten" in str(e)


def test_explain_without_torch(rng):
    e = hb.explain(net(rng), hb.MSELoss(), rng.normal(size=3), rng.normal(size=2), torch=False)
    assert e.all_match is None and "torch not available" in str(e) and "✓" not in str(e)
    with pytest.raises(TypeError, match="model"):
        hb.explain(object(), hb.MSELoss(), np.zeros(3), np.zeros(2))


def test_explain_command(capsys):
    assert main(["explain", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "module 0 (Linear)" in out and "every value matches the torch twin ✓" in out
    assert main(["explain", "--batch", "-1"]) == 2


def test_zoo_command_catches_every_bug(capsys):
    from handbp.zoo import ZOO
    from handbp.zoo_rnn import BUGS
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    n = len(ZOO) + len(BUGS)
    assert f"{n} of {n} bugs caught with the expected hint" in out
    assert "notebook-mse-without-1/n" in out and "hint [factor]" in out


def test_zoo_command_rejects_unknown_bug(capsys):
    assert main(["zoo", "--bug", "no-such-bug"]) == 2
    assert "no-such-bug" in capsys.readouterr().err
