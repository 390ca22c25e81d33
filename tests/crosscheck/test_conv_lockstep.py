"""The convolutional lockstep matrix: each convolutional layer (over strides, paddings, dilations,
groups and the pooling options) and each new loss, in a small CNN trained for a few steps on
handbp and its torch twin, compared at every step (outputs, input and parameter gradients,
updates, BatchNorm2d's running statistics), in float64 and float32, unbatched and batched."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb

# name -> (the layers between the input and the head, as a function of (rng, dtype), the input's
# shape of one sample, whether the subject takes an unbatched input)
SUBJECTS = {
    "Conv2d": (lambda r, d: [hb.Conv2d(2, 3, 3, padding=1, rng=r, dtype=d)], (2, 5, 6), True),
    "Conv2d-stride": (lambda r, d: [hb.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=r, dtype=d)],
                      (2, 7, 5), True),
    "Conv2d-dilation-same": (lambda r, d: [hb.Conv2d(2, 2, 3, dilation=2, padding="same", rng=r, dtype=d)],
                             (2, 6, 6), True),
    "Conv2d-groups": (lambda r, d: [hb.Conv2d(4, 6, 3, stride=2, groups=2, bias=False, rng=r, dtype=d)],
                      (4, 7, 7), True),
    "Conv2d-depthwise-even-same": (lambda r, d: [hb.Conv2d(3, 3, 2, groups=3, padding="same", rng=r, dtype=d)],
                                   (3, 5, 4), True),
    "Conv1d": (lambda r, d: [hb.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2, rng=r, dtype=d)], (2, 11), True),
    "Conv1d-same-groups": (lambda r, d: [hb.Conv1d(4, 4, 4, groups=2, padding="same", rng=r, dtype=d)], (4, 9),
                           True),
    "MaxPool2d": (lambda r, d: [hb.Conv2d(1, 3, 3, padding=1, rng=r, dtype=d), hb.MaxPool2d(2)], (1, 6, 6), True),
    "MaxPool2d-overlap-ceil": (lambda r, d: [hb.Conv2d(1, 2, 2, rng=r, dtype=d),
                                             hb.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)], (1, 7, 8), True),
    "MaxPool2d-dilation": (lambda r, d: [hb.Conv2d(2, 2, 1, rng=r, dtype=d), hb.MaxPool2d(2, stride=1, dilation=2)],
                           (2, 6, 5), True),
    "MaxPool1d": (lambda r, d: [hb.Conv1d(2, 3, 3, rng=r, dtype=d), hb.MaxPool1d(3, stride=2, padding=1)], (2, 10),
                  True),
    "AvgPool2d": (lambda r, d: [hb.Conv2d(2, 3, 3, rng=r, dtype=d), hb.AvgPool2d(2)], (2, 7, 6), True),
    "AvgPool2d-pad-exclude-ceil": (lambda r, d: [hb.Conv2d(1, 2, 2, rng=r, dtype=d),
                                                 hb.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)],
                                   (1, 7, 8), True),
    "AdaptiveAvgPool2d": (lambda r, d: [hb.Conv2d(2, 3, 3, rng=r, dtype=d), hb.AdaptiveAvgPool2d((2, 3))], (2, 8, 9),
                          True),
    "BatchNorm2d": (lambda r, d: [hb.Conv2d(2, 3, 3, rng=r, dtype=d), hb.BatchNorm2d(3, dtype=d), hb.ReLU()],
                    (2, 5, 5), False),
    "BatchNorm2d-momentum-None": (lambda r, d: [hb.Conv2d(1, 2, 3, padding=1, rng=r, dtype=d),
                                                hb.BatchNorm2d(2, momentum=None, dtype=d)], (1, 4, 4), False),
    "GroupNorm": (lambda r, d: [hb.Conv2d(2, 4, 3, rng=r, dtype=d), _scrambled(hb.GroupNorm(2, 4, dtype=d), r),
                                hb.Tanh()], (2, 5, 6), False),
    "Dropout2d": (lambda r, d: [hb.Conv2d(2, 4, 3, padding=1, rng=r, dtype=d), hb.Dropout2d(0.4, rng=r)], (2, 4, 4),
                  True),
}
LOSSES = {
    "CrossEntropyLoss": hb.CrossEntropyLoss, "NLLLoss": hb.NLLLoss,
    "NLLLoss-weighted": lambda: hb.NLLLoss(weight=[0.5, 1.0, 2.0, 1.5], ignore_index=2),
    "MultiMarginLoss": hb.MultiMarginLoss, "MultiMarginLoss-p2": lambda: hb.MultiMarginLoss(p=2, margin=0.5,
                                                                                              weight=[1, 2, 1, 3]),
    "L1Loss": hb.L1Loss, "HuberLoss": lambda: hb.HuberLoss(delta=0.3), "SmoothL1Loss": lambda: hb.SmoothL1Loss(beta=0.4),
    "L1Loss-sum": lambda: hb.L1Loss("sum"), "SmoothL1Loss-beta0": lambda: hb.SmoothL1Loss(beta=0.0),
}
CLASS_INDICES = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss")
N_OUT = 4
DTYPES = ["float64", "float32"]
BATCHES = [None, 1, 4]                   # None: one unbatched sample


def _scrambled(m, rng):
    for p in m.parameters():
        p.data[...] = rng.normal(size=p.shape).astype(p.dtype)
    return m


def _cases():
    """Every subject × dtype × batch (the unbatched case where the subject takes it), the loss
    cycling; then every loss × dtype × batch on the first subject."""
    cases, losses = [], list(LOSSES)
    for k, (subject, (_, _, unbatched)) in enumerate(SUBJECTS.items()):
        for dtype in DTYPES:
            for batch in BATCHES if unbatched else BATCHES[1:]:
                cases.append((subject, losses[len(cases) % len(losses)], batch, dtype))
    for loss in losses:
        for dtype in DTYPES:
            for batch in BATCHES:
                cases.append(("Conv2d-stride", loss, batch, dtype))
    return cases


CASES = _cases()


def build(subject, loss_name, batch, dtype, rng):
    """The subject's layers → Flatten → Linear(→ 4), its loss, SGD with momentum, three batches."""
    make, shape, _ = SUBJECTS[subject]
    dtype = np.dtype(dtype)
    body = make(rng, dtype)
    x_shape = shape if batch is None else (batch,) + shape
    features = hb.Sequential(*body)(np.zeros(x_shape, dtype))
    flatten = hb.Flatten(0) if batch is None else hb.Flatten()
    head = hb.Linear(int(np.prod(features.shape[1 if batch else 0:])), N_OUT, rng=rng, dtype=dtype)
    model = hb.Sequential(*body, flatten, head)
    loss = LOSSES[loss_name]()
    data = []
    for _ in range(3):
        x = rng.normal(size=x_shape).astype(dtype)
        out_shape = (N_OUT,) if batch is None else (batch, N_OUT)
        if loss_name.startswith(CLASS_INDICES):
            y = rng.integers(0, N_OUT, out_shape[:-1])
            if np.all(y == getattr(loss, "ignore_index", None)):
                y = np.zeros_like(y)          # a mean over no target at all is NaN: not this matrix's case
        else:
            y = rng.normal(size=out_shape).astype(dtype)
        data.append((x, y))
    return model, loss, hb.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), data


def _case_id(case):
    subject, loss, batch, dtype = case
    return f"{subject}-{loss}-b{'U' if batch is None else batch}-{dtype[5:]}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_conv_lockstep_matrix(case, rng):
    model, loss, optimizer, data = build(*case, rng)
    trace = cc.lockstep(model, loss, optimizer, data)
    assert len(trace) == 3 and trace.divergence is None


def test_the_matrix_covers_every_new_layer_and_loss_and_every_option():
    """Every public layer and loss class of the convolutional modules is in the matrix (derived
    from the modules, so a class added there is missing here until it is added)."""
    import handbp.conv
    import handbp.flatten
    import handbp.pooling
    new_modules = {handbp.conv, handbp.pooling, handbp.flatten}
    public = {getattr(hb, n) for n in hb.__all__ if isinstance(getattr(hb, n), type)}
    wanted = {c for c in public if issubclass(c, hb.Module) and c.__module__ in {m.__name__ for m in new_modules}}
    wanted |= {hb.BatchNorm2d, hb.GroupNorm, hb.Dropout2d}
    wanted |= {c for c in public if issubclass(c, hb.Loss) and c.__name__ in {n.split("-")[0] for n in LOSSES}}
    rng = np.random.default_rng(0)
    used = set()
    for subject, loss, batch, dtype in CASES:
        model, loss_obj, _, _ = build(subject, loss, batch, dtype, rng)
        used |= {type(m) for _, m in model.named_modules()} | {type(loss_obj)}
    assert wanted <= used, wanted - used
    assert {"L1Loss", "HuberLoss", "SmoothL1Loss", "NLLLoss", "MultiMarginLoss"} <= {c.__name__ for c in wanted}
    assert {batch for *_, batch, _ in CASES} == set(BATCHES) and {d for *_, d in CASES} == set(DTYPES)


def test_every_public_layer_and_loss_has_a_twin():
    """Derived from the library: each public Module class (a layer, a loss) is registered with
    crosscheck, so lockstep can mirror it."""
    from crosscheck.registry import entry
    public = [getattr(hb, n) for n in hb.__all__ if isinstance(getattr(hb, n), type)]
    missing = [c.__name__ for c in public if issubclass(c, hb.Module) and c not in (hb.Module, hb.Loss)
               and entry(c) is None]
    assert missing == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_batchnorm2d_running_statistic_off_by_one_sample_is_caught(dtype, rng):
    """The matrix would pass a BatchNorm2d that updates running_var with n/(n − 1) for the wrong n
    only if buffers were not compared: they are."""
    class WrongRunningVar(hb.BatchNorm2d):
        def forward(self, x):
            y = super().forward(x)
            self.running_var *= 1.01
            return y

    model = hb.Sequential(hb.Conv2d(1, 2, 3, rng=rng, dtype=dtype), WrongRunningVar(2, dtype=dtype), hb.Flatten(),
                          hb.Linear(2 * 3 * 3, 3, rng=rng, dtype=dtype))
    data = [(rng.normal(size=(4, 1, 5, 5)).astype(dtype), rng.integers(0, 3, 4))]
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.CrossEntropyLoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    assert "running_var" in info.value.name and info.value.quantity == "buffer"


def test_reduction_none_cannot_be_trained_in_lockstep(rng):
    model = hb.Sequential(hb.Flatten(), hb.Linear(4, 2, rng=rng))
    with pytest.raises(cc.MirrorError, match=r"cannot mirror L1Loss\(reduction='none'\) for a training step"):
        cc.lockstep(model, hb.L1Loss("none"), hb.optim.SGD(model.parameters(), lr=0.1),
                    [(rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2)))])
