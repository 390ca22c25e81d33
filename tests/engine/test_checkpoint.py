"""Checkpoints: hb.save / hb.load / hb.load_into round trip a model and its optimizer bit for bit;
a truncated, corrupt or foreign file, or one that does not fit, raises hb.CheckpointError and
changes nothing; writes are atomic. A crafted file cannot make the loader allocate more than it
holds, name a class outside the public layers unless registered, or get past a malformed
metadata field; a killed save's temporary file is removed by the next save."""
import copy
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import handbp as hb

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


def test_missing_file_raises_file_not_found(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        hb.load(tmp_path / "nothing.npz")
    model, opt = victim(rng)
    before = snapshot(model, opt)
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        hb.load_into(tmp_path / "nothing.npz", model, optimizer=opt)
    assert snapshot(model, opt) == before


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


@pytest.mark.parametrize("where", ["alone", "in a Sequential"])
def test_a_model_that_cannot_be_described_writes_nothing(where, tmp_path):
    class Custom(hb.Module):
        def forward(self, x):
            return x

    model = Custom() if where == "alone" else hb.Sequential(hb.Linear(2, 2), Custom())
    with pytest.raises(TypeError, match="cannot describe Custom .*only handbp's own modules"):
        hb.save(model, tmp_path / "custom.npz")
    assert os.listdir(tmp_path) == []


# -- the state an architecture declares ---------------------------------------------------------
PUBLIC = {name: obj for name, obj in vars(hb).items() if isinstance(obj, type) and issubclass(obj, hb.Module)}
# argument sets for the classes that take arguments; every other public class is built with none
EXAMPLES = {
    "Linear": [lambda: hb.Linear(3, 2), lambda: hb.Linear(1, 4, bias=False), lambda: hb.Linear(0, 2)],
    "BatchNorm1d": [lambda: hb.BatchNorm1d(3), lambda: hb.BatchNorm1d(2, affine=False),
                    lambda: hb.BatchNorm1d(4, track_running_stats=False), lambda: hb.BatchNorm1d(1, bias=False),
                    lambda: hb.BatchNorm1d(2, affine=False, track_running_stats=False)],
    "LayerNorm": [lambda: hb.LayerNorm(3), lambda: hb.LayerNorm((2, 3)), lambda: hb.LayerNorm([4], elementwise_affine=False),
                  lambda: hb.LayerNorm(2, bias=False)],
    "DNN": [lambda: hb.DNN(0, 1, 2, 3), lambda: hb.DNN(2, 4, 3, 1, activation=hb.Tanh),
            lambda: hb.DNN(1, 2, 1, 1, activation=lambda: hb.LeakyReLU(0.2))],
    "Sequential": [lambda: hb.Sequential(), lambda: hb.Sequential(hb.Linear(3, 2), hb.Sequential(hb.BatchNorm1d(2), hb.Tanh()),
                                                                  hb.LayerNorm(2), hb.Sequential(hb.Linear(2, 1, bias=False)))],
    "LeakyReLU": [lambda: hb.LeakyReLU(0.3)], "Softmax": [lambda: hb.Softmax(dim=0)], "GELU": [lambda: hb.GELU("tanh")],
    "Embedding": [lambda: hb.Embedding(5, 3), lambda: hb.Embedding(4, 2, padding_idx=-1)],
    "RNN": [lambda: hb.RNN(3, 4), lambda: hb.RNN(2, 3, 2, "relu", False, True, 0.5, True)],
    "LSTM": [lambda: hb.LSTM(3, 4), lambda: hb.LSTM(2, 3, num_layers=2, bidirectional=True, batch_first=True)],
    "GRU": [lambda: hb.GRU(3, 4, bias=False), lambda: hb.GRU(2, 3, num_layers=3, dropout=0.2)],
    "RNNCell": [lambda: hb.RNNCell(3, 4), lambda: hb.RNNCell(2, 3, False, "relu")],
    "LSTMCell": [lambda: hb.LSTMCell(3, 4), lambda: hb.LSTMCell(2, 3, bias=False)],
    "GRUCell": [lambda: hb.GRUCell(3, 4)],
    "SelectOutput": [lambda: hb.SelectOutput(1)],
    "Conv1d": [lambda: hb.Conv1d(2, 4, 3), lambda: hb.Conv1d(4, 2, 5, stride=2, padding=2, dilation=2,
                                                             groups=2, bias=False)],
    "Conv2d": [lambda: hb.Conv2d(3, 4, 3), lambda: hb.Conv2d(4, 6, (3, 1), padding="same", groups=2, bias=False),
               lambda: hb.Conv2d(1, 2, 2, stride=(2, 1), padding=(1, 0), dilation=(1, 3))],
    "MaxPool1d": [lambda: hb.MaxPool1d(3), lambda: hb.MaxPool1d(3, 1, 1, 2, ceil_mode=True)],
    "MaxPool2d": [lambda: hb.MaxPool2d(2), lambda: hb.MaxPool2d((3, 2), stride=(1, 2), padding=1, ceil_mode=True)],
    "AvgPool2d": [lambda: hb.AvgPool2d(2), lambda: hb.AvgPool2d(3, 2, 1, count_include_pad=False, divisor_override=4)],
    "AdaptiveAvgPool2d": [lambda: hb.AdaptiveAvgPool2d(1), lambda: hb.AdaptiveAvgPool2d((3, None))],
    "Flatten": [lambda: hb.Flatten(0, -2)],
    "BatchNorm2d": [lambda: hb.BatchNorm2d(3), lambda: hb.BatchNorm2d(2, affine=False, track_running_stats=False)],
    "GroupNorm": [lambda: hb.GroupNorm(2, 4), lambda: hb.GroupNorm(1, 3, affine=False), lambda: hb.GroupNorm(3, 3, bias=False)],
    "Dropout2d": [lambda: hb.Dropout2d(0.25)],
}
DECLARATION_CASES = [(name, i) for name in sorted(PUBLIC) for i in range(len(EXAMPLES.get(name, [PUBLIC[name]])))]


def test_the_public_classes_include_every_layer_with_state():
    assert {"Linear", "BatchNorm1d", "LayerNorm", "DNN", "Sequential", "Tanh", "MSELoss"} <= set(PUBLIC)
    assert set(EXAMPLES) <= set(PUBLIC)


@pytest.mark.parametrize("name, example", DECLARATION_CASES)
def test_each_public_class_declares_the_state_its_constructor_builds(name, example, tmp_path):
    """``state_shapes`` (composed by prefix through Sequentials) names exactly the parameters and
    buffers, with their shapes, in state_dict order, that the constructor makes; and the model
    round-trips through a checkpoint, which checks that declaration before it builds."""
    model = EXAMPLES.get(name, [PUBLIC[name]])[example]()
    assert type(model) is PUBLIC[name]
    declared = hb.checkpoint.declared_state(hb.checkpoint.architecture(model))
    assert list(declared.items()) == [(k, v.shape) for k, v in model.state_dict().items()]
    hb.save(model, tmp_path / "m.npz")
    loaded = hb.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    assert [(k, v.tobytes()) for k, v in loaded.state_dict().items()] == [(k, v.tobytes()) for k, v in model.state_dict().items()]


def write_checkpoint(path, meta, arrays):
    """A checkpoint written by hand: the metadata ``meta`` and the arrays."""
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def read_checkpoint(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("__meta__").tobytes().decode()), arrays


def model_meta(spec):
    """The metadata of a model-only float64 checkpoint of the architecture ``spec``."""
    return {"format": "handbp-checkpoint", "version": 1, "architecture": spec, "dtype": "float64"}


def linear_spec(n_in, n_out, bias=True):
    return {"type": "Linear", "args": {"in_features": n_in, "out_features": n_out, "bias": bias}}


SMALL = {"model/0.weight": np.zeros((2, 3)), "model/0.bias": np.zeros(2)}
# architectures that declare far more than SMALL holds: 7 TiB, 128 MB, a 10⁹-layer DNN, ...
GREEDY = {
    "Linear-10^6x10^6": ({"type": "Sequential", "children": [linear_spec(10**6, 10**6)]}, r"children\[0\]\.args"),
    "Linear-4000x4000": ({"type": "Sequential", "children": [linear_spec(4000, 4000)]}, r"children\[0\]\.args"),
    "Linear-then-more": ({"type": "Sequential", "children": [linear_spec(3, 2), linear_spec(2, 10**6)]},
                         r"children\[1\]\.args' implies more than the 2 arrays"),
    "DNN-depth-10^9": ({"type": "DNN", "args": {"hidden_depth": 10**9, "num_neuron": 2, "input": 3, "output": 2,
                                                "activation": "Tanh"}}, r"'architecture\.args' implies more"),
    "BatchNorm-10^9": ({"type": "Sequential", "children": [{"type": "BatchNorm1d", "args": {"num_features": 10**9}}]},
                       r"children\[0\]\.args"),
    "LayerNorm-10^5x10^5": ({"type": "Sequential", "children": [{"type": "LayerNorm", "args": {
                            "normalized_shape": [10**5, 10**5]}}]}, r"children\[0\]\.args"),
}


@pytest.mark.parametrize("case", list(GREEDY))
def test_an_architecture_that_declares_more_than_the_file_holds_is_refused_before_anything_is_built(case, tmp_path, rng):
    spec, match = GREEDY[case]
    path = tmp_path / "greedy.npz"
    write_checkpoint(path, model_meta(spec), SMALL)
    assert os.path.getsize(path) < 5000
    assert_refused(path, rng, match)
    tracemalloc.start()
    try:
        with pytest.raises(hb.CheckpointError):
            hb.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated to refuse a {os.path.getsize(path)}-byte file"  # the file is ~1 KB


def test_an_architecture_that_declares_less_than_the_file_holds_is_refused(tmp_path, rng):
    path = tmp_path / "short.npz"
    write_checkpoint(path, model_meta({"type": "Sequential", "children": [linear_spec(3, 2, bias=False)]}), SMALL)
    assert_refused(path, rng, r"'architecture\.children\[0\]\.args' implies no array '0.bias', which the file holds")


# -- which classes a checkpoint may name --------------------------------------------------------
def test_a_handbp_class_outside_the_public_layers_is_refused_by_name(tmp_path, rng):
    from handbp.zoo import LinearGradIntoDw
    with pytest.raises(TypeError, match=r"hb\.checkpoint\.register\(LinearGradIntoDw\)"):
        hb.save(hb.Sequential(LinearGradIntoDw(3, 2)), tmp_path / "zoo.npz")
    assert os.listdir(tmp_path) == []
    path = tmp_path / "zoo.npz"
    spec = linear_spec(3, 2)
    write_checkpoint(path, model_meta({"type": "Sequential", "children": [{**spec, "type": "LinearGradIntoDw"}]}),
                     SMALL)
    assert_refused(path, rng, r"'architecture\.children\[0\]\.type' names 'LinearGradIntoDw', which is not one of "
                              r"handbp's public layers; .* hb\.checkpoint\.register\(LinearGradIntoDw\)")


class Scale(hb.Module):
    """y = x ⊙ s with a learned vector s: a user's own layer."""

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.scale = hb.Parameter(np.linspace(0.5, 1.5, features))

    def forward(self, x):
        self.last_x = x
        return x * self.scale.data

    def backward(self, dy):
        """ds = Σₙ dy ⊙ x,  dx = dy ⊙ s."""
        self.scale.accumulate((dy * self.last_x).reshape(-1, self.features).sum(axis=0))
        return dy * self.scale.data

    def config_args(self):
        return {"features": self.features}

    @classmethod
    def state_shapes(cls, features):
        yield "scale", (features,)


@pytest.fixture
def registry(monkeypatch):
    """A registry of user classes private to the test."""
    monkeypatch.setattr(hb.architecture, "_registered", {})


def test_a_registered_class_round_trips_and_an_unregistered_one_is_refused(registry, tmp_path, rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), Scale(4))
    path = tmp_path / "scaled.npz"
    with pytest.raises(TypeError, match=r"hb\.checkpoint\.register\(Scale\)"):
        hb.save(model, path)
    assert hb.checkpoint.register(Scale) is Scale               # a decorator too
    model[1].scale.data *= 3
    hb.save(model, path)
    loaded = hb.load(path)
    assert type(loaded[1]) is Scale and loaded[1].scale.data.tobytes() == model[1].scale.data.tobytes()
    hb.architecture._registered.clear()                         # a process that did not register it
    other = hb.Sequential(hb.Linear(3, 4, rng=rng))
    before = snapshot(other)
    with pytest.raises(hb.CheckpointError, match=r"names 'Scale', .* hb\.checkpoint\.register\(Scale\)"):
        hb.load(path)
    with pytest.raises(hb.CheckpointError, match=r"hb\.checkpoint\.register\(Scale\)"):
        hb.load_into(path, other)
    assert snapshot(other) == before


def test_register_refuses_what_it_cannot_load(registry, tmp_path):
    with pytest.raises(TypeError, match="register: expected a handbp Module class, got"):
        hb.checkpoint.register(Scale(2))
    with pytest.raises(ValueError, match="a different class named 'Linear' is already known"):
        hb.checkpoint.register(type("Linear", (hb.Module,), {}))

    @hb.checkpoint.register
    class Undeclared(hb.Module):                                # has a parameter, declares none
        def __init__(self):
            super().__init__()
            self.weight = hb.Parameter(np.ones(2))

    with pytest.raises(TypeError, match=r"holds 'weight' with shape \(2,\), its classes' state_shapes declare None"):
        hb.save(Undeclared(), tmp_path / "u.npz")
    assert os.listdir(tmp_path) == []


# -- every metadata field, missing or malformed -------------------------------------------------
def fields(value, path=""):
    """Every field of the metadata: (path, value), depth first; dict members as .key, list items as [i]."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        sub = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}" if path else key
        yield sub, item
        yield from fields(item, sub)


def parent(path):
    return re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)


def json_kind(v):
    return "null" if v is None else "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) \
        else type(v).__name__


DELETE = object()


def corrupted(meta, path, value):
    """A copy of ``meta`` with the field at ``path`` replaced by ``value`` (removed for DELETE)."""
    meta = copy.deepcopy(meta)
    *outer, last = [int(i) if i else name for name, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]
    target = meta
    for key in outer:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return meta


REPLACEMENTS = [None, True, 7, "x", [], {}]
OPTIONAL = {"arrays", "optimizer"}      # absent from older files, or from a save without an optimizer


def fuzz_world(world, rng):
    model = make_model(world.split("-")[0], np.float64, rng)
    if world.endswith("SGD"):
        opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    else:
        opt = hb.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    train(model, opt, rng, 2)
    return model, opt


def load_outcome(load, named):
    try:
        load()
    except hb.CheckpointError as e:
        return "named" if any(f"'{n}'" in str(e) for n in named) else f"unnamed: {e}"
    return "loaded"


@pytest.mark.parametrize("world", ["Sequential-SGD", "DNN-Adam"])
def test_every_metadata_field_missing_or_malformed_is_a_checkpoint_error_naming_it(world, tmp_path, rng):
    """Each field in turn deleted, or replaced by a value of another JSON type: hb.load and
    hb.load_into both raise CheckpointError naming the field (or the field that holds it: a list, a
    module's arguments), and the model and optimizer are untouched. Exceptions: the optional fields
    may be deleted; a parameter's scalar state (Adam's step) deleted is for the optimizer to miss,
    so hb.load, which loads none, accepts it and load_into refuses it."""
    model, opt = fuzz_world(world, rng)
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    hb.save(model, good, optimizer=opt)
    meta, arrays = read_checkpoint(good)
    failures, tried = [], 0
    for path, original in list(fields(meta)):
        for value in [DELETE] + [v for v in REPLACEMENTS if json_kind(v) != json_kind(original)]:
            if value is DELETE and path.endswith("]"):
                continue                                         # list items are replaced, not removed
            write_checkpoint(bad, corrupted(meta, path, value), arrays)
            tried += 1
            victim_model, victim_opt = fuzz_world(world, np.random.default_rng(1))
            before = snapshot(victim_model, victim_opt)
            named = (path, parent(path), parent(parent(path)))
            outcomes = [load_outcome(lambda: hb.load(bad), named),
                        load_outcome(lambda: hb.load_into(bad, victim_model, victim_opt), named)]
            if value is DELETE and path == "arrays":
                expected = ["loaded", "loaded"]
            elif value is DELETE and path == "optimizer":
                expected = ["loaded", outcomes[1] if "holds no optimizer state" in outcomes[1] else "refused"]
            elif value is DELETE and path.startswith("optimizer.scalars."):
                expected = ["loaded", outcomes[1] if re.search(r"does not fit .* state lacks \['step'\]", outcomes[1])
                            else "refused naming the state"]
            else:
                expected = ["named", "named"]
            if outcomes != expected:
                failures.append((path, "deleted" if value is DELETE else value, outcomes))
            if outcomes[1] != "loaded" and snapshot(victim_model, victim_opt) != before:
                failures.append((path, value, "a refused load_into changed the model or optimizer"))
    assert tried > 150
    assert failures == [], "\n".join(map(str, failures))


# -- temporary files and errors of a save -------------------------------------------------------
STALLED_SAVE = """
import os, sys, time
import handbp as hb
def stall(fd):                      # the payload is written; the save now waits to flush it
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stall
hb.save(hb.Sequential(hb.Linear(3, 2)), sys.argv[1])
"""


def stalled_save(path):
    """A process saving to ``path`` that stops mid-write, with its temporary file beside ``path``."""
    proc = subprocess.Popen([sys.executable, "-c", STALLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    return proc


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".handbp-"))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path, rng):
    killed = stalled_save(tmp_path / "a.npz")
    (killed_tmp,) = temporaries(tmp_path)
    running = stalled_save(tmp_path / "b.npz")                   # a save still under way: its file stays
    try:
        (running_tmp,) = set(temporaries(tmp_path)) - {killed_tmp}
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        _, host, _, token = killed_tmp[:-len(".tmp")].split("-")
        other = "00000000" if host != "00000000" else "ffffffff"
        kept = [f".handbp-{other}-{killed.pid}-{token}.tmp",     # another machine's (a shared folder), recent
                f".handbp-{host}-{os.getpid()}-{token}.tmp",     # this process's own: a save in another thread
                ".handbp-notes.tmp", f".handbp-{host}-{killed.pid}-{token}.tmp.bak", "model.npz.tmp"]
        old_foreign = f".handbp-{other}-{killed.pid}-{'0' * 16}.tmp"   # another machine's, untouched for 2 days
        for name in kept + [old_foreign]:
            (tmp_path / name).write_bytes(b"partial")
        two_days_ago = time.time() - 2 * 86400
        os.utime(tmp_path / old_foreign, (two_days_ago, two_days_ago))
        hb.save(make_model("Sequential", np.float64, rng), tmp_path / "c.npz")
        assert sorted(os.listdir(tmp_path)) == sorted(kept + [running_tmp, "c.npz"])
    finally:
        running.kill()
        running.wait(timeout=60)


@pytest.mark.parametrize("failure", ["folder-missing", "path-is-a-folder", "disk-full", "interrupted"])
def test_a_failed_save_names_the_users_path_and_leaves_no_temporary(failure, tmp_path, monkeypatch, rng):
    model = make_model("Sequential", np.float64, rng)
    path = tmp_path / "model.npz"
    expected = {"folder-missing": FileNotFoundError, "path-is-a-folder": IsADirectoryError, "disk-full": OSError,
                "interrupted": KeyboardInterrupt}[failure]
    if failure == "folder-missing":
        path = tmp_path / "no-such-folder" / "model.npz"
    elif failure == "path-is-a-folder":
        path.mkdir()
    else:                                                        # the flush to disk fails, or is interrupted
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if failure == "disk-full" else KeyboardInterrupt()

        def fsync(fd):
            raise error
        monkeypatch.setattr(os, "fsync", fsync)
    listed = sorted(os.listdir(tmp_path))
    with pytest.raises(expected) as info:
        hb.save(model, path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == listed
    if failure != "interrupted":
        assert str(path) in str(info.value) and ".handbp-" not in str(info.value)
        assert info.value.errno == {"folder-missing": errno.ENOENT, "path-is-a-folder": errno.EISDIR,
                                    "disk-full": errno.ENOSPC}[failure]


def test_a_different_architecture_names_the_first_field_that_differs(trained, rng):
    model = hb.Sequential(hb.Linear(3, 5), hb.LeakyReLU(0.2), hb.Linear(5, 4, bias=False), hb.Softmax(dim=-1),
                          hb.Identity(), hb.Linear(4, 2, bias=False))
    with pytest.raises(hb.CheckpointError, match=r"different architecture: 'architecture\.children\[5\]\.args\.bias' "
                                                 r"is true in the file, false in the model"):
        hb.load_into(trained[2], model)
