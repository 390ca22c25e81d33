"""save, load and load_into check their path, model and optimizer before touching a file, a model
or an optimizer (a wrong one was Python's "expected str, bytes or os.PathLike object" or an
AttributeError from inside save)."""
import os

import numpy as np
import pytest

import handbp as hb


def model_and_optimizer(rng):
    model = hb.Sequential(hb.Linear(3, 2, rng=rng), hb.Tanh())
    opt = hb.optim.Adam(model.parameters(), lr=0.1)
    model(rng.normal(size=(4, 3)))
    model.backward(rng.normal(size=(4, 2)))
    opt.step()
    return model, opt


def snapshot(model, opt):
    return ([(k, v.tobytes()) for k, v in model.state_dict().items()],
            [sorted((k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in s.items())
             for s in opt.state.values()],
            repr(opt.param_groups[0]["lr"]))


CASES = {
    "save-path-int": (lambda m, o, f: hb.save(m, 3, o), r"save: path: expected a file path \(str or os.PathLike\), got int 3"),
    "save-path-none": (lambda m, o, f: hb.save(m, None), r"save: path: expected a file path.*got NoneType None"),
    "save-model-str": (lambda m, o, f: hb.save("model", f), r"save: model: expected a handbp Module, got str 'model'"),
    "save-optimizer-str": (lambda m, o, f: hb.save(m, f, optimizer="adam"),
                           r"save: optimizer: expected None or an optimizer such as .*got str 'adam'"),
    "save-optimizer-class": (lambda m, o, f: hb.save(m, f, optimizer=hb.optim.Adam),
                             r"save: optimizer: expected None or an optimizer"),
    "load-path-list": (lambda m, o, f: hb.load([f]), r"load: path: expected a file path.*got list"),
    "save-path-bytes": (lambda m, o, f: hb.save(m, os.fsencode(f)), r"save: path: expected a file path.*got bytes"),
    "load_into-model-str": (lambda m, o, f: hb.load_into(f, "model", o),
                            r"load_into: model: expected a handbp Module, got str 'model'"),
    "load_into-optimizer-str": (lambda m, o, f: hb.load_into(f, m, "adam"),
                                r"load_into: optimizer: expected None or an optimizer.*got str 'adam'"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_checkpoint_argument_is_refused_and_nothing_changes(kind, rng, tmp_path):
    model, opt = model_and_optimizer(rng)
    saved = tmp_path / "saved.npz"
    hb.save(model, saved, opt)
    target = tmp_path / "new.npz"
    before, files = snapshot(model, opt), sorted(os.listdir(tmp_path))
    call, message = CASES[kind]
    with pytest.raises(TypeError, match=message):
        call(model, opt, saved if kind.startswith("load") else target)
    assert snapshot(model, opt) == before
    assert sorted(os.listdir(tmp_path)) == files


@pytest.mark.parametrize("path", [str, lambda p: p], ids=["str", "Path"])
def test_every_kind_of_path_still_works(path, rng, tmp_path):
    model, opt = model_and_optimizer(rng)
    f = path(tmp_path / "m.npz")
    hb.save(model, f, opt)
    other, other_opt = model_and_optimizer(np.random.default_rng(1))
    hb.load_into(f, other, other_opt)
    assert snapshot(other, other_opt) == snapshot(model, opt)
    loaded = hb.load(f)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
