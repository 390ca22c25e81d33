"""explain that can be trusted: it never crashes on a broken step, marks ✗ exactly where crosscheck
reports a divergence, passes two values that are both rounding noise, and says everything a student
needs (the whole derivative, n, the target, the update) in 80 columns."""
import copy
import unicodedata

import numpy as np
import pytest

import crosscheck as cc
import handbp as hb
from crosscheck.explain import _keys, reference
from crosscheck.lockstep import Plan
from crosscheck.zoo import expected
from handbp.cli import main
from handbp.explain import RULE, relative_error
from handbp.zoo import LinearGradIntoDw, bugs

ZOO = {bug.name: bug for bug in bugs()}


def columns(line):
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def net(rng, dtype=np.float64):
    return hb.Sequential(hb.Linear(3, 4, rng=rng, dtype=dtype), hb.Sigmoid(), hb.Linear(4, 2, rng=rng, dtype=dtype))


# -- a broken step is explained, not a crash ----------------------------------------------
@pytest.mark.parametrize("with_torch", [False, True])
def test_a_gradient_that_never_arrived_is_a_cross_not_a_crash(with_torch, rng):
    """The notebook's dw/dW typo leaves ``weight.grad`` None; explain used to raise TypeError
    (float() of None) on it, even without torch."""
    model = hb.Sequential(LinearGradIntoDw(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    e = (cc.explain if with_torch else hb.explain)(model, hb.MSELoss(), x, y)
    assert "grad:0.weight" in e.failed and e.all_match is False
    assert "dL/d(0.weight) none ✗" in str(e) and ".grad is None" in str(e)
    assert "after  unchanged (= before)" in str(e)
    if with_torch:
        assert e.failed == ["grad:0.weight", "param:0.weight"]
        assert "hint [zero]" in str(e) and "hint [never_updated]" in str(e)


@pytest.mark.parametrize("where", ["backward", "update"])
def test_a_step_that_raises_is_a_cross_line(where, rng):
    class Raises(hb.Tanh):
        def backward(self, dy):
            raise RuntimeError("planted")

    class BadGrad(hb.Linear):
        def backward(self, dy):
            dx = super().backward(dy)
            self.weight.grad = np.zeros((7, 7))      # a wrong shape: the optimizer refuses it
            return dx

    model = (hb.Sequential(hb.Linear(3, 4, rng=rng), Raises(), hb.Linear(4, 2, rng=rng)) if where == "backward"
             else hb.Sequential(BadGrad(3, 2, rng=rng)))
    e = hb.explain(model, hb.MSELoss(), rng.normal(size=(2, 3)), rng.normal(size=(2, 2)))
    assert f"error:{where}" in e.failed
    assert ("RuntimeError: planted" if where == "backward" else "SGD.step: grad of parameter") in str(e)


# -- no false ✗: rounding noise at the scale of the step passes ------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(5))
def test_linear_before_batchnorm_is_no_false_cross(dtype, seed):
    """The bias before a BatchNorm has a true gradient of 0: both sides are rounding noise, ~1e-16
    of the step's other gradients. Scaled by that array's own largest value (as explain did) it
    read as 100 % off on every seed; against the step's scale it passes, in crosscheck's verdicts
    and in explain's own rule alike."""
    rng = np.random.default_rng(seed)
    model = hb.Sequential(hb.Linear(3, 6, rng=rng, dtype=dtype), hb.BatchNorm1d(6, dtype=dtype), hb.Tanh(),
                          hb.Linear(6, 2, rng=rng, dtype=dtype))
    x, y = rng.normal(size=(8, 3)).astype(dtype), rng.normal(size=(8, 2)).astype(dtype)
    assert cc.explain(model, hb.MSELoss(), x, y).all_match is True
    m, loss = copy.deepcopy((model, hb.MSELoss()))
    values = reference(m, loss, hb.optim.SGD(m.parameters(), lr=0.01), x, y).values
    own = hb.explain(model, hb.MSELoss(), x, y, reference=values)       # values only: explain's own rule
    assert own.all_match is True, own.failed


def test_the_floor_is_what_passes_the_noise():
    """The same two noise vectors fail without the floor (the old rule) and pass with it."""
    rtol, noise = RULE[np.dtype(np.float64)]
    a, b = np.array([3e-17, -1e-17, 0.0]), np.array([-2e-17, 0.0, 1e-17])
    assert relative_error(a, b) > rtol                                   # relative to themselves: all noise
    assert relative_error(a, b, noise / rtol * 1.0) <= rtol              # the step's gradients are ~1
    assert relative_error(2 * (b + 1), b + 1, noise / rtol) > rtol       # a real factor still fails


def test_relative_error_is_cs231n_over_the_array():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([2.0, 0.0], [1.0, 0.0]) == pytest.approx(1 / 3, rel=1e-12)
    assert relative_error([1.0, np.nan], [1.0, np.nan]) == 0.0
    assert relative_error([1.0, np.nan], [1.0, 1.0]) == np.inf
    assert relative_error(np.zeros((2, 3)), np.zeros((3, 2))) == np.inf


# -- explain's ✗ are exactly lockstep's -----------------------------------------------------
def lockstep_says(model, loss, optimizer, x, y):
    """What lockstep reports at this step: the labels of the first mismatch and every other, whether
    handbp's step raised, and the first mismatch's hint."""
    d = cc.lockstep(model, loss, optimizer, [(x, y)], raise_on_divergence=False).divergence
    if d is None:
        return set(), False, None
    labels = {f"{d.name} {d.quantity}"} | {o.split(": max rel")[0] for o in d.others if ": max rel" in o}
    return labels, any(o.startswith("then handbp raised") for o in d.others), d.hint


def trained_to(bug, seed, step):
    """The bug's case after ``step`` training steps of its own (as lockstep runs them)."""
    model, loss, optimizer, data = bug.build(np.random.default_rng(seed))
    for x, y in data[:step]:
        optimizer.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        optimizer.step()
    return model, loss, optimizer, data[step]


def part_label(plan, key):
    """lockstep's label of explain's key for one array of a tuple (``output:0.h_n`` → ``0 (LSTM)
    output.h_n``); other keys as they are."""
    base, _, rest = key.partition(":")
    if base not in ("output", "grad_input"):
        return key
    i, path = max(((i, p) for i, p in enumerate(plan.paths) if rest.startswith(p + ".")), key=lambda ip: len(ip[1]))
    return f"{plan.leaf_labels[i]} {base}.{rest[len(path) + 1:]}"


def same_crosses(bug, seed, step):
    """explain's ✗ at this step against lockstep's report of it; returns whether lockstep reported any."""
    model, loss, optimizer, (x, y) = trained_to(bug, seed, step)
    plan = Plan(model, loss, optimizer)
    keys = {v: f"{label} {q}" for (label, q), v in _keys(plan).items()}
    e = cc.explain(model, loss, x, y, optimizer=optimizer)
    hb.explain(model, loss, x, y, optimizer=optimizer)              # handbp alone: no crash either
    want, raised, hint = lockstep_says(*copy.deepcopy((model, loss, optimizer)), x, y)
    crosses = {keys.get(k) or part_label(plan, k) for k in e.failed if not k.startswith("error:")}
    state = {c for c in crosses if c.startswith("state:")}
    assert crosses - state == {w for w in want if " state." not in w}, (step, str(e))
    assert len(state) == len({w for w in want if " state." in w})
    assert raised == any(k.startswith("error:") for k in e.failed)
    if hint and step == 0:
        assert f"[{hint}]" in str(e), str(e)     # lockstep's hint, under explain's ✗
    elif hint:       # (a lockstep of this one step cannot know the previous one: the zoo's hint)
        assert f"[{expected(bug).hint}]" in str(e), str(e)
    return bool(want)


@pytest.mark.parametrize("name", list(ZOO))
def test_explain_marks_exactly_what_lockstep_reports(name, rng):
    """At step 0 and, for the bugs that show only from the second step on (gradients that pile
    up, a momentum buffer restarted), at step 1 too."""
    seed = int(rng.integers(2**32))
    caught = same_crosses(ZOO[name], seed, 0) or same_crosses(ZOO[name], seed, 1)
    assert caught


def test_every_zoo_bug_shows_a_cross_at_the_step_it_is_caught(rng):
    for name, bug in ZOO.items():
        seed = int(rng.integers(2**32))
        d = cc.lockstep(*bug.build(np.random.default_rng(seed)), raise_on_divergence=False).divergence
        model, loss, optimizer, (x, y) = trained_to(bug, seed, d.step)
        assert cc.explain(model, loss, x, y, optimizer=optimizer).all_match is False, name


# -- every layer of the library --------------------------------------------------------------
LAYERS = {    # class name -> (module, input shape, loss)
    "Linear": (lambda: hb.Linear(4, 3), (5, 4), hb.MSELoss()),
    "Sigmoid": (hb.Sigmoid, (5, 4), hb.MSELoss()), "Tanh": (hb.Tanh, (5, 4), hb.MSELoss()),
    "ReLU": (hb.ReLU, (5, 4), hb.MSELoss()), "LeakyReLU": (lambda: hb.LeakyReLU(0.2), (5, 4), hb.MSELoss()),
    "Identity": (hb.Identity, (5, 4), hb.MSELoss()), "Softmax": (lambda: hb.Softmax(1), (5, 4), hb.MSELoss()),
    "GELU": (hb.GELU, (5, 4), hb.MSELoss()), "BatchNorm1d": (lambda: hb.BatchNorm1d(4), (5, 4, 3), hb.MSELoss()),
    "LayerNorm": (lambda: hb.LayerNorm(4), (5, 4), hb.MSELoss()),
    "Dropout": (lambda: hb.Dropout(0.3, rng=1), (5, 4), hb.MSELoss()),
    "Sequential": (lambda: hb.Sequential(hb.Linear(4, 4), hb.Tanh()), (5, 4), hb.MSELoss()),
    "DNN": (lambda: hb.DNN(1, 4, 4, 4), (4,), hb.MeanSquaredError()),
    "MSELoss": (hb.Identity, (5, 4), hb.MSELoss()), "MeanSquaredError": (hb.Identity, (5, 4), hb.MeanSquaredError()),
    "CrossEntropyLoss": (hb.Identity, (5, 4), hb.CrossEntropyLoss()),
    "BCEWithLogitsLoss": (hb.Identity, (5, 4), hb.BCEWithLogitsLoss()),
    # the convolutional layers on images (N, C, H, W) or signals (N, C, L); a layer without
    # parameters after a 1 × 1 convolution, so that the step has something to update
    "Conv2d": (lambda: hb.Conv2d(3, 2, 3, padding=1), (2, 3, 5, 6), hb.MSELoss()),
    "Conv1d": (lambda: hb.Conv1d(3, 2, 3, stride=2), (2, 3, 7), hb.MSELoss()),
    "MaxPool2d": (lambda: hb.Sequential(hb.Conv2d(3, 3, 1), hb.MaxPool2d(2)), (2, 3, 4, 6), hb.MSELoss()),
    "MaxPool1d": (lambda: hb.Sequential(hb.Conv1d(3, 3, 1), hb.MaxPool1d(2)), (2, 3, 6), hb.MSELoss()),
    "AvgPool2d": (lambda: hb.Sequential(hb.Conv2d(3, 3, 1), hb.AvgPool2d(2)), (2, 3, 4, 6), hb.MSELoss()),
    "AdaptiveAvgPool2d": (lambda: hb.Sequential(hb.Conv2d(3, 3, 1), hb.AdaptiveAvgPool2d(2)), (2, 3, 5, 5),
                          hb.MSELoss()),
    "BatchNorm2d": (lambda: hb.BatchNorm2d(3), (2, 3, 4, 4), hb.MSELoss()),
    "GroupNorm": (lambda: hb.GroupNorm(1, 3), (2, 3, 4, 4), hb.MSELoss()),
    "Dropout2d": (lambda: hb.Sequential(hb.Conv2d(3, 3, 1), hb.Dropout2d(0.5, rng=1)), (2, 3, 4, 4), hb.MSELoss()),
    "NLLLoss": (hb.Identity, (5, 4), hb.NLLLoss()), "MultiMarginLoss": (hb.Identity, (5, 4), hb.MultiMarginLoss()),
    "L1Loss": (hb.Identity, (5, 4), hb.L1Loss()), "HuberLoss": (hb.Identity, (5, 4), hb.HuberLoss(delta=0.5)),
    "SmoothL1Loss": (hb.Identity, (5, 4), hb.SmoothL1Loss(beta=0.5)),
    # several outputs (a SelectOutput picks the one the loss reads); (5, 4) after a Linear: one
    # sequence of 5 steps; (5, 4, 3): 5 sequences of 4 steps; a function: the input it draws
    "RNN": (lambda: hb.Sequential(hb.RNN(4, 3), hb.SelectOutput(0)), (5, 4), hb.MSELoss()),
    "LSTM": (lambda: hb.Sequential(hb.LSTM(3, 4, batch_first=True, bidirectional=True), hb.SelectOutput(0)), (5, 4, 3),
             hb.MSELoss()),
    "GRU": (lambda: hb.Sequential(hb.GRU(4, 3, num_layers=2), hb.SelectOutput(1)), (5, 4), hb.MSELoss()),
    "RNNCell": (lambda: hb.RNNCell(4, 3), (5, 4), hb.MSELoss()),
    "GRUCell": (lambda: hb.GRUCell(4, 3), (5, 4), hb.MSELoss()),
    "LSTMCell": (lambda: hb.Sequential(hb.LSTMCell(4, 3), hb.SelectOutput(1)), (5, 4), hb.MSELoss()),
    "SelectOutput": (lambda: hb.Sequential(hb.LSTMCell(4, 3), hb.SelectOutput(0)), (5, 4), hb.MSELoss()),
    "Embedding": (lambda: hb.Sequential(hb.Embedding(6, 4), hb.LSTM(4, 3), hb.SelectOutput(0)),
                  lambda rng: rng.integers(0, 6, size=7), hb.MSELoss()),
}
CLASS_INDEX_LOSSES = (hb.CrossEntropyLoss, hb.NLLLoss, hb.MultiMarginLoss)


def public_classes():
    return sorted(n for n in hb.__all__ if isinstance(getattr(hb, n), type) and issubclass(getattr(hb, n), hb.Module)
                  and getattr(hb, n) not in (hb.Module, hb.Loss))


def cases():
    """LAYERS, and every other public layer that takes no argument (an activation), on (5, 4)."""
    out = dict(LAYERS)
    for name in public_classes():
        cls = getattr(hb, name)
        if name not in out and not issubclass(cls, hb.Loss):
            try:
                cls()
            except TypeError:
                continue
            out[name] = (cls, (5, 4), hb.MSELoss())
    return out


def test_every_public_layer_and_loss_has_an_explain_case():
    """A layer that needs arguments (or another input shape) gets its line in LAYERS."""
    assert [n for n in public_classes() if n not in cases()] == []


@pytest.mark.parametrize("name", list(cases()))
def test_explain_runs_on_every_layer_and_matches_torch(name, rng):
    make, shape, loss = cases()[name]
    if callable(shape):
        model, x = make(), shape(rng)
    else:
        model = hb.Sequential(hb.Linear(4, 4, rng=rng), make()) if len(shape) == 2 else make()
        x = rng.normal(size=shape)
    out = model(x)
    y = (rng.integers(0, out.shape[-1], out.shape[0]) if isinstance(loss, CLASS_INDEX_LOSSES)
         else rng.uniform(size=out.shape) if isinstance(loss, hb.BCEWithLogitsLoss) else rng.normal(size=out.shape))
    e = cc.explain(model, loss, x, y)
    assert e.all_match is True, str(e)
    assert max(map(columns, e.lines)) <= 80
    if not callable(shape) and len(shape) == 3:
        assert "first slice [0, :, :]" in str(e)


# -- what the text says -------------------------------------------------------------------
def test_the_whole_derivative_is_shown(rng):
    """Every line of every backward's docstring (explain used to show the first line only, which cut
    BatchNorm1d's and LayerNorm's dx off), and the one-sample form of Linear's."""
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.BatchNorm1d(4), hb.Linear(4, 2, rng=rng), hb.LayerNorm(2))
    text = " ".join(str(cc.explain(model, hb.MSELoss(), rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))).split())
    for m in (model[0], model[1], model[3], hb.MSELoss()):
        assert " ".join(type(m).backward.__doc__.split()) in text, type(m).__name__
    assert "dx = ĝ / σ with running ones." in text and "means over the normalized axes." in text
    assert "One sample (x (in,), dy (out,)): dW = dy xᵀ, an outer product; db = dy." in text


def test_n_the_target_the_loss_the_update_and_the_dtype(rng):
    model = net(rng, np.float32)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    text = str(cc.explain(model, hb.MeanSquaredError(), x, y, lr=0.5))
    for piece in ("(dtype float32)", "n = 10 elements in the prediction, N = 5 samples", "target y (5, 2)",
                  "value L ", "dL/dh = (h − y) / n.", "UPDATE (SGD, lr 0.5)", "p ← p − lr · dL/dp",
                  "0.weight (4, 3)", "before (4, 3)", "gradient (4, 3)", "after − before (4, 3)",
                  "torch's after − before: the same ✓", "SigmoidBackward0", "✓ every value matches torch's"):
        assert piece in text, piece
    assert " [[" in text and "✗" not in text


def test_a_matrix_is_shown_as_rows(rng):
    e = hb.explain(hb.Sequential(hb.Linear(6, 6, rng=rng)), hb.MSELoss(), rng.normal(size=(7, 6)),
                   rng.normal(size=(7, 6)), numbers=3)
    text = str(e)
    block = text[text.index("dL/d(0.weight) (6, 6)"):].splitlines()[1:5]
    assert block[0].lstrip().startswith("[[") and block[0].rstrip().endswith("…]")
    assert block[1].lstrip().startswith("[") and block[3].strip() == "… 3 more rows]"


def test_explain_leaves_the_model_untouched(rng):
    model = net(rng)
    opt = hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    cc.explain(model, hb.MSELoss(), rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), optimizer=opt)
    assert all(p.grad is None for p in model.parameters()) and opt.state == {}
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].last_x is None


def test_explain_checks_its_arguments(rng):
    model = net(rng)
    with pytest.raises(TypeError, match="explain: model"):
        hb.explain(object(), hb.MSELoss(), np.zeros(3), np.zeros(2))
    with pytest.raises(TypeError, match="explain: reference"):
        hb.explain(model, hb.MSELoss(), np.zeros(3), np.zeros(2), reference=[1])
    with pytest.raises(ValueError, match="explain: optimizer: expected an optimizer over the model's"):
        hb.explain(model, hb.MSELoss(), np.zeros(3), np.zeros(2), optimizer=hb.optim.SGD(net(rng).parameters()))
    with pytest.raises(ValueError, match="explain: width"):
        hb.explain(model, hb.MSELoss(), np.zeros(3), np.zeros(2), width=20)
    with pytest.raises(ValueError, match="explain: lang"):
        cc.explain(model, hb.MSELoss(), np.zeros(3), np.zeros(2), lang="fr")


# -- the commands, in 80 columns -------------------------------------------------------------
@pytest.mark.parametrize("argv", [["explain"], ["explain", "--batch", "31"], ["explain", "--dtype", "float32"],
                                  ["explain", "--activation", "leaky_relu", "--hidden-depth", "2"],
                                  ["explain", "--no-torch"], ["zoo"], ["zoo", "--full"], ["zoo", "--lang", "ko"],
                                  ["zoo", "--list"], ["zoo", "--explain", "--bug", "nan-from-overflow",
                                                      "--bug", "notebook-dw-typo-grad-never-stored"]])
def test_every_line_fits_80_columns(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert max(map(columns, out.splitlines())) <= 80


def test_explain_command_says_what_it_compares(capsys):
    assert main(["explain", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "module 0 (Linear)" in out and "✓ every value matches torch's" in out and "✗" not in out
    assert main(["explain", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "(--no-torch: handbp's values only)" in out and "torch not available" not in out
    assert main(["explain", "--batch", "-1"]) == 2 and main(["explain", "--columns", "10"]) == 2


def test_explain_command_draws_the_graph(tmp_path, capsys):
    assert main(["explain", "--png", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zoo_command_catches_every_bug_and_speaks_korean(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert f"{len(ZOO)} of {len(ZOO)} bugs caught with the expected hint" in out
    assert "notebook-mse-without-1/n" in out and "hint [factor]" in out
    assert main(["zoo", "--bug", "missing-transpose-square", "--lang", "ko"]) == 0
    out = capsys.readouterr().out
    assert "힌트 [transpose]: 전치(transpose)가 빠졌거나" in out


def test_zoo_command_rejects_unknown_bug(capsys):
    assert main(["zoo", "--bug", "no-such-bug"]) == 2
    assert "no-such-bug" in capsys.readouterr().err


def test_handbps_teaching_code_imports_neither_crosscheck_nor_torch():
    """One-way dependencies: explain, the zoo, the exercises and draw run with crosscheck and torch
    impossible to import (the command line alone reaches for them)."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None; sys.modules['crosscheck'] = None\n"
            "import numpy as np, handbp as hb, handbp.zoo, handbp.exercises\n"
            "from handbp.zoo import LinearGradIntoDw\n"
            "model = hb.Sequential(LinearGradIntoDw(3, 2, rng=np.random.default_rng(0)))\n"
            "e = hb.explain(model, hb.MSELoss(), np.ones((2, 3)), np.ones((2, 2)))\n"
            "print(e.failed, len(handbp.zoo.bugs()) >= 16, len(handbp.exercises.exercises()) >= 21)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "['grad:0.weight'] True True\n", "")


def test_explain_command_names_a_missing_checkpoint(capsys):
    assert main(["explain", "--checkpoint", "/nonexistent/model.npz"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("handbp explain: error: ") and "/nonexistent/model.npz" in err[0]
    assert captured.out == ""
