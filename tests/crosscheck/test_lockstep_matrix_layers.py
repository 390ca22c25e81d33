"""The lockstep matrix of every layer: every optimizer × every example of every public layer and
container (tests/helpers/examples.py, so a new layer joins by default) × dtype, with optimizer state
(every moment buffer and step counter) and running statistics compared and re-synchronised each
step; train/eval modes; a save-and-reload in the middle of a run."""
import copy

import numpy as np
import pytest

import crosscheck as cc
import handbp as hb
from handbp.structure import map_structure
from tests.helpers.examples import FEATURES, Missing, layer_examples, takes_arrays

OPTIMIZERS = {
    "sgd-nesterov": (hb.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": (hb.optim.Adam, dict(lr=1e-2)),
    "adam-amsgrad-wd": (hb.optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    "adam-maximize": (hb.optim.Adam, dict(lr=1e-3, maximize=True)),
    "adamw": (hb.optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    "adamw-amsgrad": (hb.optim.AdamW, dict(lr=1e-2, amsgrad=True)),
    "rmsprop": (hb.optim.RMSprop, dict(lr=1e-3)),
    "rmsprop-centered-momentum": (hb.optim.RMSprop, dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=0.01)),
    "adagrad": (hb.optim.Adagrad, dict(lr=1e-2, lr_decay=0.01, initial_accumulator_value=0.1)),
}
# every example that has a torch twin (and a class without an example, which fails): one that can
# stand between two Linear layers (``chain``) stands there; one whose input is not an array of its
# own shape (integer indices or a tuple: an Embedding, a recurrent layer given its initial states)
# comes first, fed its own inputs; the others (images, signals) are SHAPED, below
LAYERS = {ex.name: ex for ex in layer_examples()
          if isinstance(ex, Missing) or ex.twin and (ex.chain or not takes_arrays(ex))}
DTYPES = ["float64", "float32"]
VARIANT_OPTIMIZERS = 3


def _cases():
    """The first example of each class meets every optimizer in each dtype; each further example
    (a variant of its class: no bias, eval mode, another p) meets three, a different three for each
    variant, so that every optimizer meets variants too."""
    firsts, variants = [], []
    for name, ex in LAYERS.items():
        cls = getattr(ex, "cls", None) or type(ex.build(np.random.default_rng(0), WIDTH))
        (variants if any(c == cls for c, _ in firsts) else firsts).append((cls, name))
    cases = [(o, name, d) for o in OPTIMIZERS for _, name in firsts for d in DTYPES]
    names = list(OPTIMIZERS)
    for k, (_, name) in enumerate(variants):
        for j in range(VARIANT_OPTIMIZERS):
            cases += [(names[(VARIANT_OPTIMIZERS * k + j) % len(names)], name, d) for d in DTYPES]
    return cases


WIDTH = 8
CASES = _cases()

def shifts_away(layer, rng):
    """Whether adding a constant to each feature over the batch leaves the layer's output as it was
    (a batch normalisation in training mode, a softmax over the batch): then the gradient of a
    bias before it is zero in exact arithmetic."""
    x, c = rng.normal(size=(6, WIDTH)), rng.normal(size=WIDTH)
    return np.allclose(copy.deepcopy(layer).forward(x + c), copy.deepcopy(layer).forward(x), rtol=1e-9, atol=1e-12)


def build(layer, dtype, rng):
    ex = LAYERS[layer]
    if isinstance(ex, Missing):
        ex.fail()
    middle = ex.chained(rng, WIDTH)
    if not ex.chain:            # (its output's leading axes, (N, T) of a sequence, as rows for the Linear)
        return hb.Sequential(middle, hb.Flatten(0, -2), hb.Tanh(), hb.Linear(WIDTH, 3, rng=rng)).to(np.dtype(dtype))
    # no bias before a layer that shifts it away: its gradient is zero in exact arithmetic, and an
    # adaptive optimizer would turn the rounding noise on both sides into steps of size lr
    first = hb.Linear(5, WIDTH, bias=not shifts_away(middle, rng), rng=rng)
    return hb.Sequential(first, middle, hb.Tanh(), hb.Linear(WIDTH, 3, rng=rng)).to(np.dtype(dtype))


def run_data(layer, model, crosscheck, rng, steps=4):
    """The run's (x, y): a batch of 6 for a layer between two Linear layers, else the example's
    first input (with WIDTH features), drawn afresh each step, and a target of the output's shape."""
    ex = LAYERS[layer]
    if ex.chain:
        return crosscheck.data(model, hb.MSELoss(), batch=6, steps=steps)
    name, dtype = next(iter(ex.inputs)), model.dtype
    data = []
    for _ in range(steps):
        x = map_structure(lambda a: a if a.dtype.kind in "iu" else a.astype(dtype), ex.input(name, rng, WIDTH))
        data.append((x, rng.normal(size=copy.deepcopy(model)(x).shape).astype(dtype)))
    return data


# the examples with input shapes of their own (images, signals: not chain), each at every input
# shape it lists × dtype, after a shape-keeping layer with weights so that every run trains something
SHAPED = {ex.name: ex for ex in layer_examples()
          if not isinstance(ex, Missing) and not ex.chain and ex.twin and takes_arrays(ex)}
SHAPED_CASES = [(name, key, d) for name, ex in SHAPED.items() for key in ex.inputs for d in DTYPES]


def build_shaped(name, dtype, rng):
    """``Sequential(first, layer)``: ``first`` a Linear, Conv1d or Conv2d with kernel 1 and no bias over
    the example's channel axis (axis 1 of its batched input), which keeps the shape of any input the
    example takes, batched or not (no bias: a normalisation after it would shift a bias away)."""
    ex = SHAPED[name]
    batched = next(shape for key, shape in ex.inputs.items() if key != "unbatched")
    c, dims = batched[1], len(batched) - 2
    first = hb.Linear(c, c, bias=False, rng=rng) if dims == 0 else \
        (hb.Conv1d if dims == 1 else hb.Conv2d)(c, c, 1, bias=False, rng=rng)
    return hb.Sequential(first, ex.build(rng, FEATURES)).to(np.dtype(dtype))


@pytest.mark.parametrize("layer, inputs, dtype", SHAPED_CASES, ids=[f"{l}-{k}-{d[5:]}" for l, k, d in SHAPED_CASES])
def test_lockstep_shaped_layer_dtype(layer, inputs, dtype, crosscheck, rng):
    model = build_shaped(layer, dtype, rng)
    shape = SHAPED[layer].inputs[inputs]
    out = model(rng.normal(size=shape).astype(dtype)).shape
    data = [(rng.normal(size=shape).astype(dtype), rng.normal(size=out).astype(dtype)) for _ in range(3)]
    optimizer = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trace = crosscheck.lockstep(model, hb.MSELoss(), optimizer, data)
    labels = set(trace.steps[-1])
    assert f"1 ({type(model[1]).__name__}) grad_input" in labels
    for name in model[1].state_dict():                      # parameters and buffers compared too
        assert any(label.startswith(f"1.{name} ") for label in labels), (name, sorted(labels))


@pytest.mark.parametrize("opt, layer, dtype", CASES, ids=[f"{o}-{l}-{d[5:]}" for o, l, d in CASES])
def test_lockstep_optimizer_layer_dtype(opt, layer, dtype, crosscheck, rng):
    model = build(layer, dtype, rng)
    cls, hyper = OPTIMIZERS[opt]
    optimizer = cls(model.parameters(), **hyper)
    data = run_data(layer, model, crosscheck, rng)
    trace = crosscheck.lockstep(model, hb.MSELoss(), optimizer, data)
    labels = set(trace.steps[-1])
    assert any("state." in label for label in labels)      # every optimizer here keeps state
    k = 1 if LAYERS[layer].chain else 0
    for name, buffer in model[k].state_dict().items():     # buffers (running statistics) compared too
        if name not in dict(model[k].named_parameters()):
            assert f"{k}.{name} ({type(model[k]).__name__}) buffer" in labels


def test_state_counter_and_moments_are_compared(rng):
    model = build("Tanh", "float64", rng)
    opt = hb.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    trace = cc.lockstep(model, hb.MSELoss(), opt, [(rng.normal(size=(4, 5)), rng.normal(size=(4, 3)))] * 3)
    labels = set(trace.steps[-1])
    for key in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert f"0.weight (Linear) state.{key}" in labels


def test_a_wrong_bias_correction_is_caught(rng):
    class NoBiasCorrection(hb.optim.Adam):
        def step(self):
            super().step()
            for s in self.state.values():
                s["step"] += 1.0          # stores the wrong step counter

    model = build("Tanh", "float64", rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), NoBiasCorrection(model.parameters(), lr=1e-2),
                    [(rng.normal(size=(4, 5)), rng.normal(size=(4, 3)))] * 2)
    assert info.value.quantity == "state.step" and info.value.step == 0


@pytest.mark.parametrize("layer", ["BatchNorm1d", "Dropout"])
def test_eval_mode_is_mirrored(layer, rng):
    model = build(layer, "float64", rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = [(rng.normal(size=(6, 5)), rng.normal(size=(6, 3))) for _ in range(3)]
    cc.lockstep(model, hb.MSELoss(), opt, data)          # training: running stats move, masks drawn
    model.eval()
    twin = cc.mirror(model)
    assert not twin.training and not twin[1].training
    trace = cc.lockstep(model, hb.MSELoss(), opt, data)  # eval: running stats used, no dropout
    assert len(trace) == 3
    if layer == "Dropout":
        assert model[1].last_mask.all()


@pytest.mark.parametrize("opt", ["adam-amsgrad-wd", "rmsprop-centered-momentum", "adagrad", "sgd-nesterov"])
def test_save_reload_mid_run_continues_in_lockstep(opt, rng, tmp_path):
    """Both sides' model and optimizer state saved mid-run, reloaded into fresh objects, and the
    run goes on without divergence (and bit-identically to the run that never stopped)."""
    cls, hyper = OPTIMIZERS[opt]
    data = [(rng.normal(size=(6, 5)), rng.normal(size=(6, 3))) for _ in range(6)]
    model = build("BatchNorm1d", "float64", np.random.default_rng(1))
    optimizer = cls(model.parameters(), **hyper)
    cc.lockstep(model, hb.MSELoss(), optimizer, data[:3])
    path = tmp_path / "mid.npz"
    hb.save(model, path, optimizer=optimizer)
    reference = build("BatchNorm1d", "float64", np.random.default_rng(1))
    reference.load_state_dict(model.state_dict())
    reference_opt = cls(reference.parameters(), **hyper)
    reference_opt.load_state_dict(optimizer.state_dict())
    fresh = hb.load(path)
    fresh_opt = cls(fresh.parameters(), **hyper)
    hb.load_into(path, fresh, fresh_opt)
    trace = cc.lockstep(fresh, hb.MSELoss(), fresh_opt, data[3:])
    assert len(trace) == 3
    cc.lockstep(reference, hb.MSELoss(), reference_opt, data[3:])
    for (n, a), (_, b) in zip(fresh.state_dict().items(), reference.state_dict().items()):
        assert a.tobytes() == b.tobytes(), n
