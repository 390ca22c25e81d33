"""explain on a convolutional network: every layer's line, rank-3 and rank-4 arrays shown by their
shape and first slice, and torch's values beside them; the twin follows each module's own mode
(a Dropout2d in eval inside a model in training), as lockstep's does."""
import numpy as np

import handbp as hb


def cnn(rng):
    return hb.Sequential(hb.Conv2d(1, 2, 3, padding=1, bias=False, rng=rng), hb.BatchNorm2d(2), hb.ReLU(),
                         hb.MaxPool2d(2), hb.Dropout2d(0.5, rng=0).eval(), hb.AvgPool2d(1), hb.GroupNorm(1, 2),
                         hb.AdaptiveAvgPool2d(2), hb.Flatten(), hb.Linear(8, 3, rng=rng))


def test_explain_walks_a_cnn_and_matches_torch(rng):
    model = cnn(rng)
    x, y = rng.normal(size=(2, 1, 4, 4)), rng.integers(0, 3, 2)
    import crosscheck as cc
    e = cc.explain(model, hb.NLLLoss(), x, y)
    text = str(e)
    for path, m in enumerate(model):
        assert f"module {path} ({type(m).__name__})" in text
    assert "input x (2, 1, 4, 4), first slice [0, 0, :, :]" in text
    assert "dL/d(0.weight) (2, 1, 3, 3), first slice [0, 0, :, :]" in text
    assert e.all_match, text
    assert model.training and not model[4].training          # explain changed nothing


def test_the_twin_keeps_a_child_in_its_own_mode(rng):
    import crosscheck as cc
    model = hb.Sequential(hb.Conv2d(1, 2, 3, rng=rng), hb.Dropout2d(0.5).eval(), hb.BatchNorm2d(2))
    model[2].eval()
    twin = cc.mirror(model)
    assert [m.training for m in twin] == [True, False, False] and twin.training
