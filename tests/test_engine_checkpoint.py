"""Checkpoints: hb.save / hb.load / hb.load_into round trip a model and its optimizer bit for bit;
a truncated, corrupt or foreign file, or one that does not fit, raises hb.CheckpointError and
changes nothing; writes are atomic."""
import os
import zipfile

import numpy as np
import pytest

import handbp as hb
from fd import rng  # noqa: F401  (a fixture)

DTYPES = {"float64": np.float64, "float32": np.float32}


def make_model(kind, dtype, rng):
    if kind == "DNN":
        return hb.DNN(1, 5, 3, 2, activation=hb.Tanh, init="torch", rng=rng, dtype=dtype)
    return hb.Sequential(hb.Linear(3, 5, rng=rng), hb.LeakyReLU(0.2), hb.Linear(5, 4, bias=False, rng=rng),
                         hb.Softmax(dim=-1), hb.Identity(), hb.Linear(4, 2, rng=rng)).to(dtype)


def train(model, opt, rng, steps=3):
    dtype = model.dtype
    for _ in range(steps):
        opt.zero_grad()
        loss = hb.MSELoss()
        loss(model(rng.normal(size=(4, 3)).astype(dtype)), rng.normal(size=(4, 2)).astype(dtype))
        model.backward(loss.backward())
        opt.step()


def snapshot(model, opt=None):
    """Bytes of every parameter, gradient and optimizer state, and the optimizer's hyperparameters."""
    out = [(n, p.data.dtype.str, p.data.tobytes(), None if p.grad is None else p.grad.tobytes())
           for n, p in model.named_parameters()]
    if opt is not None:
        index = {id(p): i for i, p in enumerate(model.parameters())}
        out.append(sorted((index[id(p)], k, v.dtype.str, v.tobytes()) if isinstance(v, np.ndarray) else (index[id(p)], k, v)
                          for p, s in opt.state.items() for k, v in s.items()))
        out.append([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    return out


@pytest.fixture
def trained(tmp_path, rng):
    """A trained float64 Sequential with SGD momentum state, saved to tmp_path / 'model.npz'."""
    model = make_model("Sequential", np.float64, rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    train(model, opt, rng)
    path = tmp_path / "model.npz"
    hb.save(model, path, optimizer=opt)
    opt.zero_grad()                                  # gradients are not saved: compare without them
    return model, opt, path


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("kind", ["Sequential", "DNN"])
def test_round_trip_is_bit_exact(kind, dtype, tmp_path, rng):
    model = make_model(kind, DTYPES[dtype], rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    train(model, opt, rng)
    path = tmp_path / "ckpt.npz"
    hb.save(model, path, optimizer=opt)
    assert os.listdir(tmp_path) == ["ckpt.npz"]

    loaded = hb.load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model) and loaded.dtype == model.dtype
    assert [(k, v.dtype, v.tobytes()) for k, v in loaded.state_dict().items()] == \
           [(k, v.dtype, v.tobytes()) for k, v in model.state_dict().items()]
    x = rng.normal(size=(3, 3)).astype(DTYPES[dtype])
    assert loaded(x).tobytes() == model(x).tobytes()

    # into a fresh model and optimizer of the same kind: parameters and momentum buffers bit for bit
    other = make_model(kind, DTYPES[dtype], np.random.default_rng(99))
    other_opt = hb.optim.SGD(other.parameters(), lr=0.5)
    hb.load_into(path, other, optimizer=other_opt)
    opt.zero_grad()
    assert snapshot(other, other_opt) == snapshot(model, opt)
    # and both continue identically
    seed = int(rng.integers(2**31))
    train(model, opt, np.random.default_rng(seed))
    train(other, other_opt, np.random.default_rng(seed))
    assert snapshot(other, other_opt) == snapshot(model, opt)


def test_model_only_round_trip_and_optimizer_requested(trained, tmp_path, rng):
    model, opt, _ = trained
    path = tmp_path / "weights.ckpt"                      # any name: no extension is added
    hb.save(model, path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "weights.ckpt"]
    other = make_model("Sequential", np.float64, rng)
    other_opt = hb.optim.SGD(other.parameters(), lr=0.1, momentum=0.5)
    train(other, other_opt, rng, 1)
    before = snapshot(other, other_opt)
    with pytest.raises(hb.CheckpointError, match="no optimizer state"):
        hb.load_into(path, other, optimizer=other_opt)
    assert snapshot(other, other_opt) == before
    hb.load_into(path, other)
    assert [p.data.tobytes() for p in other.parameters()] == [p.data.tobytes() for p in model.parameters()]


@pytest.mark.parametrize("activation", ["LeakyReLU-0.5", "GELU-tanh"])
def test_dnn_activation_arguments_survive_the_round_trip(activation, tmp_path, rng):
    """DNN takes a factory such as ``lambda: hb.LeakyReLU(0.5)``: the slope is part of the model."""
    make = {"LeakyReLU-0.5": lambda: hb.LeakyReLU(0.5), "GELU-tanh": lambda: hb.GELU("tanh")}[activation]
    model = hb.DNN(1, 4, 3, 2, activation=make, init="torch", rng=rng)
    path = tmp_path / "dnn.npz"
    hb.save(model, path)
    loaded = hb.load(path)
    assert repr(loaded) == repr(model)
    x = rng.normal(size=(5, 3))
    assert loaded(x).tobytes() == model(x).tobytes()
    default = hb.DNN(1, 4, 3, 2, activation=type(make()), init="torch", rng=rng)
    before = snapshot(default)
    with pytest.raises(hb.CheckpointError, match="different architecture"):
        hb.load_into(path, default)
    assert snapshot(default) == before


def test_loading_does_not_touch_numpys_global_random_state(trained):
    path = trained[2]
    saved = np.random.get_state()
    try:
        np.random.seed(5)
        expected = np.random.normal(size=3)
        np.random.seed(5)
        hb.load(path)
        assert np.array_equal(np.random.normal(size=3), expected)
    finally:
        np.random.set_state(saved)


# -- files that are not good checkpoints: CheckpointError, and nothing changes -------------------
def victim(rng):
    """A model and optimizer of the saved architecture, with state of their own."""
    model = make_model("Sequential", np.float64, rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    train(model, opt, rng, 2)
    return model, opt


def assert_refused(path, rng, match):
    model, opt = victim(rng)
    before = snapshot(model, opt)
    with pytest.raises(hb.CheckpointError, match=match):
        hb.load(path)
    with pytest.raises(hb.CheckpointError, match=match):
        hb.load_into(path, model, optimizer=opt)
    assert snapshot(model, opt) == before


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused(fraction, trained, rng):
    path = trained[2]
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    assert_refused(path, rng, "truncated or corrupt")


def test_corrupted_array_bytes_are_refused(trained, rng):
    model, _, path = trained
    data = bytearray(path.read_bytes())
    weight = model[2].weight.data.tobytes()
    at = bytes(data).index(weight)
    data[at + 5] ^= 0x10                                  # one bit of one weight
    path.write_bytes(bytes(data))
    assert_refused(path, rng, "truncated or corrupt")


def test_no_single_byte_corruption_loads_a_different_model(trained, tmp_path):
    """Flipping a byte (every third one, two ways; all of them takes half a minute) either changes
    nothing that is read (zip timestamps, say) or raises CheckpointError: never another exception,
    never different numbers, never a member silently dropped."""
    model, opt, path = trained
    data = path.read_bytes()
    expected = snapshot(model, opt)
    bad_path = tmp_path / "bad.npz"
    outcomes = set()
    for i in range(0, len(data), 3):
        for flip in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= flip
            bad_path.write_bytes(bytes(bad))
            fresh = make_model("Sequential", np.float64, np.random.default_rng(0))
            fresh_opt = hb.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
            try:
                hb.load_into(bad_path, fresh, optimizer=fresh_opt)
            except hb.CheckpointError:
                outcomes.add("refused")
                continue
            assert snapshot(fresh, fresh_opt) == expected, f"byte {i} ^ {flip:#x} loaded different numbers"
            outcomes.add("harmless")
    assert outcomes == {"refused", "harmless"}


def test_an_archive_that_lost_members_is_refused(trained, rng):
    """The zip directory has no checksum: an archive whose directory lost the optimizer's arrays
    must not load as a checkpoint without momentum buffers."""
    path = trained[2]
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            if not name.startswith("optim/"):
                z.writestr(name, data)
    assert_refused(path, rng, r"truncated or corrupt .*\['optim/0/momentum_buffer'")


def write_foreign(kind, path):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch,loss\n0,0.25\n")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif kind == "npz-without-meta":
        with open(path, "wb") as f:
            np.savez(f, weight=np.ones((2, 2)))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    elif kind == "pickle":
        import pickle
        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))


@pytest.mark.parametrize("kind", ["empty", "text", "npy", "npz-without-meta", "zip", "pickle"])
def test_a_file_that_is_not_a_checkpoint_is_refused(kind, tmp_path, rng):
    path = tmp_path / "other.npz"
    write_foreign(kind, path)
    assert_refused(path, rng, "not a handbp checkpoint" if kind != "empty" else "empty")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        hb.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("other", ["deeper", "wider", "other-activation", "no-bias", "DNN-vs-Sequential"])
def test_wrong_architecture_is_refused(other, trained, rng):
    _, _, path = trained
    model = {
        "deeper": lambda: hb.Sequential(hb.Linear(3, 5), hb.LeakyReLU(0.2), hb.Linear(5, 4, bias=False), hb.Softmax(),
                                        hb.Identity(), hb.Linear(4, 2), hb.Identity()),
        "wider": lambda: hb.Sequential(hb.Linear(3, 6), hb.LeakyReLU(0.2), hb.Linear(6, 4, bias=False), hb.Softmax(),
                                       hb.Identity(), hb.Linear(4, 2)),
        "other-activation": lambda: hb.Sequential(hb.Linear(3, 5), hb.LeakyReLU(0.3), hb.Linear(5, 4, bias=False),
                                                  hb.Softmax(), hb.Identity(), hb.Linear(4, 2)),
        "no-bias": lambda: hb.Sequential(hb.Linear(3, 5), hb.LeakyReLU(0.2), hb.Linear(5, 4, bias=False), hb.Softmax(),
                                         hb.Identity(), hb.Linear(4, 2, bias=False)),
        "DNN-vs-Sequential": lambda: hb.DNN(1, 5, 3, 2, activation=hb.Tanh),
    }[other]()
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    train(model, opt, rng, 1)
    before = snapshot(model, opt)
    with pytest.raises(hb.CheckpointError, match="different architecture"):
        hb.load_into(path, model, optimizer=opt)
    assert snapshot(model, opt) == before


def test_wrong_dtype_is_refused(trained, rng):
    _, _, path = trained
    model = make_model("Sequential", np.float32, rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    train(model, opt, rng, 1)
    before = snapshot(model, opt)
    with pytest.raises(hb.CheckpointError, match="holds dtype float64, the model is float32"):
        hb.load_into(path, model, optimizer=opt)
    assert snapshot(model, opt) == before


@pytest.mark.parametrize("other", ["Adam", "two-groups", "some-parameters"])
def test_optimizer_that_does_not_fit_is_refused(other, trained, rng):
    _, _, path = trained
    model, _ = victim(rng)
    params = model.parameters()
    opt = {"Adam": lambda: hb.optim.Adam(params),
           "two-groups": lambda: hb.optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.5),
           "some-parameters": lambda: hb.optim.SGD(params[:3], lr=0.1, momentum=0.5)}[other]()
    train(model, opt, rng, 1)
    before = snapshot(model, opt)
    with pytest.raises(hb.CheckpointError):
        hb.load_into(path, model, optimizer=opt)
    assert snapshot(model, opt) == before


# -- atomic writes ---------------------------------------------------------------------------
@pytest.mark.parametrize("fails", ["replace", "fsync"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(fails, trained, monkeypatch, rng):
    model, opt, path = trained
    old = path.read_bytes()
    train(model, opt, rng, 1)                      # something new to save

    def boom(*args, **kwargs):
        raise OSError(f"simulated failure in {fails}")

    monkeypatch.setattr(os, fails, boom)             # the rename, or the flush to disk before it
    with pytest.raises(OSError, match="simulated failure"):
        hb.save(model, path, optimizer=opt)
    monkeypatch.undo()
    assert os.listdir(path.parent) == [path.name]
    assert path.read_bytes() == old
    hb.load(path)


def test_overwriting_leaves_only_the_new_file(trained, rng):
    model, opt, path = trained
    train(model, opt, rng, 1)
    hb.save(model, path, optimizer=opt)
    assert os.listdir(path.parent) == [path.name]
    assert [p.data.tobytes() for p in hb.load(path).parameters()] == [p.data.tobytes() for p in model.parameters()]


def test_saved_file_has_the_permissions_of_any_new_file(trained, tmp_path):
    """The temporary file is private while written; the checkpoint is not (the umask decides)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert os.stat(trained[2]).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_a_model_that_cannot_be_described_writes_nothing(tmp_path):
    class Custom(hb.Module):
        pass

    with pytest.raises(TypeError, match="only handbp's own modules"):
        hb.save(Custom(), tmp_path / "custom.npz")
    assert os.listdir(tmp_path) == []
