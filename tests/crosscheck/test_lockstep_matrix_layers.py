"""The lockstep matrix beyond the engine: every optimizer × BatchNorm1d, LayerNorm, Dropout, GELU ×
dtype, with optimizer state (every moment buffer and step counter) and running statistics compared
and re-synchronised each step; train/eval modes; a save-and-reload in the middle of a run."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb

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
LAYERS = ["BatchNorm1d", "LayerNorm", "Dropout", "GELU", "GELU-tanh", "none"]
DTYPES = ["float64", "float32"]
CASES = [(o, l, d) for o in OPTIMIZERS for l in LAYERS for d in DTYPES]


def build(layer, dtype, rng):
    dtype = np.dtype(dtype)
    middle = {"BatchNorm1d": lambda: hb.BatchNorm1d(8, dtype=dtype),
              "LayerNorm": lambda: hb.LayerNorm(8, dtype=dtype),
              "Dropout": lambda: hb.Dropout(0.3, rng=rng),
              "GELU": lambda: hb.GELU(),
              "GELU-tanh": lambda: hb.GELU(approximate="tanh"),
              "none": lambda: hb.Tanh()}[layer]()
    # no bias before a BatchNorm: its gradient is zero in exact arithmetic, and an adaptive optimizer
    # would turn the rounding noise on both sides into steps of size lr
    first = hb.Linear(5, 8, bias=layer != "BatchNorm1d", rng=rng, dtype=dtype)
    return hb.Sequential(first, middle, hb.Tanh(), hb.Linear(8, 3, rng=rng, dtype=dtype))


@pytest.mark.parametrize("opt, layer, dtype", CASES, ids=[f"{o}-{l}-{d[5:]}" for o, l, d in CASES])
def test_lockstep_optimizer_layer_dtype(opt, layer, dtype, crosscheck, rng):
    model = build(layer, dtype, rng)
    cls, hyper = OPTIMIZERS[opt]
    optimizer = cls(model.parameters(), **hyper)
    data = crosscheck.data(model, hb.MSELoss(), batch=6, steps=4)
    trace = crosscheck.lockstep(model, hb.MSELoss(), optimizer, data)
    labels = set(trace.steps[-1])
    assert any("state." in label for label in labels)      # every optimizer here keeps state
    if layer == "BatchNorm1d":
        assert {"1.running_mean (BatchNorm1d) buffer", "1.running_var (BatchNorm1d) buffer",
                "1.num_batches_tracked (BatchNorm1d) buffer"} <= labels


def test_state_counter_and_moments_are_compared(rng):
    model = build("none", "float64", rng)
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

    model = build("none", "float64", rng)
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
