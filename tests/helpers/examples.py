"""Every public layer, container and loss of handbp, built for the tests that run over all of them.

``public_classes()`` walks handbp's namespace; ``LAYERS`` and ``LOSSES`` (one small table each) say
how to build examples of each class. The tests that run over every class (the gradients against
finite differences, the lockstep matrices, the all-or-nothing and in-place checks) derive their
cases from these, and ``tests/test_completeness.py`` fails, naming the class, when a public class
has no row here: a new layer is covered by default once it has one.
"""
from dataclasses import dataclass, field

import numpy as np

import handbp as hb

# the base classes a layer or a loss derives from: not layers themselves
BASES = (hb.Module, hb.Loss)
FEATURES = 4                        # the feature count the gradient tests build their examples for
INPUTS = {"unbatched": (FEATURES,), "batch1": (1, FEATURES), "batch5": (5, FEATURES)}


def public_classes(base=hb.Module):
    """Every class handbp's namespace offers (its public names, exported in ``__all__`` or not)
    that derives from ``base``, the base classes included, by name."""
    return {name: obj for name, obj in vars(hb).items()
            if not name.startswith("_") and isinstance(obj, type) and issubclass(obj, base)}


@dataclass(frozen=True)
class Layer:
    """An example of a layer or container: ``build(rng, n)`` returns it, float64, for inputs of ``n``
    features (its last axis); ``inputs`` are the inputs the gradient test feeds it, by name: a
    shape (normal draws, for ``n = FEATURES``), or a function ``(rng, n) → input`` for anything
    else (integer indices, a tuple such as a recurrent layer's ``(x, h0)``); ``input`` draws one.
    ``tail``: for a layer that returns a tuple (several outputs), a factory of the module that
    picks the one array the next layer reads (``SelectOutput(0)``); ``chained`` puts it after the
    layer. ``chain``: ``chained(rng, n)`` maps (N, n) to (N, n), so it can stand between two Linear
    layers of any width (the lockstep matrices, the all-or-nothing and in-place tests); an example
    that cannot (its input is integer indices or a tuple) is put first in a model by the lockstep
    matrix instead, with its first input. ``gain``:
    the factor the Linear weights before it are scaled by in the lockstep matrix, so that a
    saturating activation still passes gradients well away from 0. ``twin``: False for a
    configuration torch does not have, which crosscheck refuses to mirror (and the lockstep
    matrices leave out)."""
    name: str
    build: object
    inputs: dict = field(default_factory=lambda: dict(INPUTS))
    chain: bool = True
    gain: float = 1.0
    twin: bool = True
    tail: object = None

    def input(self, name, rng, n=FEATURES):
        """One input for ``inputs[name]``: drawn normal for a shape, else what its function returns
        for ``n`` features."""
        spec = self.inputs[name]
        return spec(rng, n) if callable(spec) else rng.normal(size=spec)

    def chained(self, rng, n):
        """The layer, followed by its ``tail`` if it has one (so that it returns one array)."""
        m = self.build(rng, n)
        return m if self.tail is None else hb.Sequential(m, self.tail())


def _random_affine(m, rng):
    """γ and β away from their ones/zeros init, so that dx depends on them."""
    for p in m.parameters():
        p.data[...] = rng.normal(size=p.shape)
    return m


def _trained_batchnorm(rng, n):
    """A BatchNorm1d in eval mode whose running statistics have moved away from 0 and 1 (a fresh
    one, loaded with them: no example has run a forward yet)."""
    m = _random_affine(hb.BatchNorm1d(n), rng)
    for _ in range(3):
        m(rng.normal(2.0, 3.0, size=(6, n)))
    fresh = hb.BatchNorm1d(n)
    fresh.load_state_dict(m.state_dict())
    return fresh.eval()


def _seed(rng):
    return int(rng.integers(2**32))


def _images(shape):
    """A convolutional layer's inputs: a batch of ``shape`` and one sample without its batch axis."""
    return {f"batch{shape[0]}": shape, "unbatched": shape[1:]}


def _trained_batchnorm2d(rng, n):
    """A BatchNorm2d(3) in eval mode whose running statistics have moved away from 0 and 1."""
    m = _random_affine(hb.BatchNorm2d(3), rng)
    for _ in range(3):
        m(rng.normal(2.0, 3.0, size=(4, 3, 3, 3)))
    fresh = hb.BatchNorm2d(3)
    fresh.load_state_dict(m.state_dict())
    return fresh.eval()


BATCHED = {"batch5": (5, FEATURES)}


def _with_state(x_shape, state_shape, states=1, hidden=lambda n: n):
    """A function (rng, n) → (x, state): a recurrent layer's input (last axis n) with its initial
    state (last axis ``hidden(n)``; two of them, (h0, c0), for an LSTM)."""
    def draw(rng, n):
        h = tuple(rng.normal(size=state_shape + (hidden(n),)) for _ in range(states))
        return rng.normal(size=x_shape + (n,)), (h[0] if states == 1 else h)
    return draw


def _indices(num, shape):
    return lambda rng, n: rng.integers(0, num, size=shape)


# a recurrent layer's inputs: 5 steps of FEATURES features, one sequence or a batch of 3; its
# tail picks the output sequence. A chained one reads (N, n) as one unbatched sequence of N steps.
SEQUENCES = {"unbatched": (5, FEATURES), "batch3": (5, 3, FEATURES)}
_OUTPUT = lambda: hb.SelectOutput(0)           # noqa: E731


def _recurrent(cls, name, **kw):
    """The examples of a sequence layer (RNN, LSTM, GRU): the defaults, and two layers,
    bidirectional (n // 2 hidden each way, so n features out), batch_first, with initial states
    (torch's (h0, c0) for an LSTM)."""
    D, L = 2, 2
    states = 2 if cls is hb.LSTM else 1
    return [Layer(name, lambda rng, n: cls(n, n, rng=rng, **kw), inputs=dict(SEQUENCES), tail=_OUTPUT),
            Layer(f"{name}-2layers-bidirectional-batch_first-h0",
                  lambda rng, n: cls(n, n // 2, num_layers=L, bidirectional=True, batch_first=True, rng=rng, **kw),
                  inputs={"batch3-h0": _with_state((3, 5), (L * D, 3), states, hidden=lambda n: n // 2)},
                  chain=False, tail=_OUTPUT)]


def _cell(cls):
    """The examples of a cell: one step, from x alone (hx zero) and from (x, hx)."""
    states = 2 if cls is hb.LSTMCell else 1
    tail = _OUTPUT if cls is hb.LSTMCell else None
    name = cls.__name__
    return [Layer(name, lambda rng, n: cls(n, n, rng=rng), tail=tail),
            Layer(f"{name}-hx", lambda rng, n: cls(n, n, rng=rng),
                  inputs={"batch5-hx": _with_state((5,), (5,), states)}, chain=False, tail=tail)]
LAYERS = {
    hb.Linear: [Layer("Linear", lambda rng, n: hb.Linear(n, n, rng=rng)),
                Layer("Linear-nobias", lambda rng, n: hb.Linear(n, n, bias=False, rng=rng))],
    hb.Sigmoid: [Layer("Sigmoid", lambda rng, n: hb.Sigmoid(), gain=2.0)],
    hb.Tanh: [Layer("Tanh", lambda rng, n: hb.Tanh(), gain=1.5)],
    hb.ReLU: [Layer("ReLU", lambda rng, n: hb.ReLU())],
    hb.LeakyReLU: [Layer("LeakyReLU", lambda rng, n: hb.LeakyReLU(0.1))],
    hb.Identity: [Layer("Identity", lambda rng, n: hb.Identity())],
    hb.Softmax: [Layer("Softmax", lambda rng, n: hb.Softmax(dim=-1), gain=2.0),
                 Layer("Softmax-dim0", lambda rng, n: hb.Softmax(dim=0), gain=2.0)],
    hb.GELU: [Layer("GELU", lambda rng, n: hb.GELU()),
              Layer("GELU-tanh", lambda rng, n: hb.GELU(approximate="tanh"))],
    hb.ELU: [Layer("ELU", lambda rng, n: hb.ELU()), Layer("ELU-alpha0.5", lambda rng, n: hb.ELU(0.5))],
    hb.SiLU: [Layer("SiLU", lambda rng, n: hb.SiLU())],
    hb.Softplus: [Layer("Softplus", lambda rng, n: hb.Softplus()),
                  Layer("Softplus-beta2-threshold1.5", lambda rng, n: hb.Softplus(beta=2.0, threshold=1.5))],
    hb.Hardtanh: [Layer("Hardtanh", lambda rng, n: hb.Hardtanh()),
                  Layer("Hardtanh-0.7-0.6", lambda rng, n: hb.Hardtanh(-0.7, 0.6))],
    hb.BatchNorm1d: [
        Layer("BatchNorm1d", lambda rng, n: _random_affine(hb.BatchNorm1d(n), rng),
              inputs={"batch5": (5, FEATURES), "batch2": (2, FEATURES), "NCL": (2, FEATURES, 3)}),
        Layer("BatchNorm1d-no-affine", lambda rng, n: hb.BatchNorm1d(n, affine=False), inputs=BATCHED),
        Layer("BatchNorm1d-no-bias", lambda rng, n: _random_affine(hb.BatchNorm1d(n, bias=False), rng),
              inputs=BATCHED, twin=False),            # torch's BatchNorm1d always has a bias
        Layer("BatchNorm1d-untracked",
              lambda rng, n: _random_affine(hb.BatchNorm1d(n, track_running_stats=False), rng).eval(), inputs=BATCHED),
        Layer("BatchNorm1d-momentum-None", lambda rng, n: _random_affine(hb.BatchNorm1d(n, momentum=None), rng),
              inputs=BATCHED),
        Layer("BatchNorm1d-eval", _trained_batchnorm, inputs={"batch5": (5, FEATURES), "batch1": (1, FEATURES)}),
    ],
    hb.LayerNorm: [
        Layer("LayerNorm", lambda rng, n: _random_affine(hb.LayerNorm(n), rng)),
        Layer("LayerNorm-no-affine", lambda rng, n: hb.LayerNorm(n, elementwise_affine=False), inputs=BATCHED),
        Layer("LayerNorm-no-bias", lambda rng, n: _random_affine(hb.LayerNorm(n, bias=False), rng), inputs=BATCHED),
        Layer("LayerNorm-2d", lambda rng, n: _random_affine(hb.LayerNorm((2, n)), rng),
              inputs={"batch3": (3, 2, FEATURES)}, chain=False),
    ],
    # each Dropout draws from a Generator of its own, so two copies draw the same masks
    hb.Dropout: [Layer("Dropout", lambda rng, n: hb.Dropout(0.3, rng=_seed(rng))),
                 Layer("Dropout-p0", lambda rng, n: hb.Dropout(0.0, rng=_seed(rng)), inputs=BATCHED),
                 Layer("Dropout-p0.8", lambda rng, n: hb.Dropout(0.8, rng=_seed(rng)), inputs=BATCHED),
                 Layer("Dropout-eval", lambda rng, n: hb.Dropout(0.5, rng=_seed(rng)).eval())],
    hb.Sequential: [Layer("Sequential", lambda rng, n: hb.Sequential(
        hb.Linear(n, 5, rng=rng), hb.Tanh(), hb.Linear(5, 5, bias=False, rng=rng), hb.LeakyReLU(0.2),
        hb.Linear(5, n, rng=rng), hb.Softmax()))],
    # torch's init (weights of ±0.5, not the notebook's 0.01), so that no gradient is tiny
    hb.DNN: [Layer("DNN", lambda rng, n: hb.DNN(2, 5, n, n, activation=hb.Sigmoid, init="torch", rng=rng))],
    hb.RNN: _recurrent(hb.RNN, "RNN") + _recurrent(hb.RNN, "RNN-relu", nonlinearity="relu")[:1],
    hb.LSTM: _recurrent(hb.LSTM, "LSTM"),
    hb.GRU: _recurrent(hb.GRU, "GRU") + [Layer("GRU-nobias", lambda rng, n: hb.GRU(n, n, bias=False, rng=rng),
                                               inputs=dict(SEQUENCES), tail=_OUTPUT)],
    hb.RNNCell: _cell(hb.RNNCell),
    hb.LSTMCell: _cell(hb.LSTMCell),
    hb.GRUCell: _cell(hb.GRUCell),
    # integer indices in, rows of the table out: always the first layer (padding_idx, whose row
    # torch leaves without a gradient by design, unlike finite differences: tests/engine/test_recurrent.py)
    hb.Embedding: [Layer("Embedding", lambda rng, n: hb.Embedding(7, n, rng=rng),
                         inputs={"indices5": _indices(7, (5,)), "indices2x3": _indices(7, (2, 3))}, chain=False)],
    hb.SelectOutput: [Layer("SelectOutput", lambda rng, n: hb.SelectOutput(1),
                            inputs={"pair": lambda rng, n: (rng.normal(size=(5, n)), rng.normal(size=(5, n)))},
                            chain=False)],
    # -- the convolutional layers: their own input shapes (not (N, n)), so chain=False but for the
    # configurations that do map (N, n) to (N, n) (Flatten(), GroupNorm(1, n))
    hb.Conv2d: [
        Layer("Conv2d", lambda rng, n: hb.Conv2d(3, 4, 3, padding=1, rng=rng), inputs=_images((2, 3, 5, 6)), chain=False),
        Layer("Conv2d-stride-rect", lambda rng, n: hb.Conv2d(2, 3, (3, 2), stride=(2, 3), padding=(1, 2), rng=rng),
              inputs=_images((2, 2, 7, 8)), chain=False),
        Layer("Conv2d-dilation-same", lambda rng, n: hb.Conv2d(2, 2, 3, dilation=2, padding="same", rng=rng),
              inputs=_images((1, 2, 6, 5)), chain=False),
        Layer("Conv2d-even-same", lambda rng, n: hb.Conv2d(2, 3, (2, 4), padding="same", rng=rng),
              inputs=_images((2, 2, 5, 6)), chain=False),
        Layer("Conv2d-groups-nobias", lambda rng, n: hb.Conv2d(4, 6, 2, stride=2, groups=2, bias=False, rng=rng),
              inputs=_images((2, 4, 5, 5)), chain=False),
        Layer("Conv2d-depthwise-dilation", lambda rng, n: hb.Conv2d(3, 3, 3, groups=3, dilation=(1, 2), rng=rng),
              inputs=_images((2, 3, 4, 7)), chain=False),
    ],
    hb.Conv1d: [
        Layer("Conv1d", lambda rng, n: hb.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, rng=rng),
              inputs=_images((2, 3, 9)), chain=False),
        Layer("Conv1d-keeps-shape", lambda rng, n: hb.Conv1d(3, 3, 3, padding=1, rng=rng), inputs=_images((2, 3, 6)),
              chain=False),
        Layer("Conv1d-same-groups", lambda rng, n: hb.Conv1d(4, 2, 4, padding="same", groups=2, rng=rng),
              inputs=_images((3, 4, 7)), chain=False),
    ],
    hb.MaxPool2d: [
        Layer("MaxPool2d", lambda rng, n: hb.MaxPool2d(2), inputs=_images((2, 3, 4, 6)), chain=False),
        Layer("MaxPool2d-overlap-dilation", lambda rng, n: hb.MaxPool2d(3, stride=1, padding=1, dilation=(1, 2)),
              inputs=_images((2, 2, 5, 6)), chain=False),
        Layer("MaxPool2d-keeps-shape", lambda rng, n: hb.MaxPool2d(3, stride=1, padding=1),
              inputs=_images((2, 3, 4, 5)), chain=False),
        Layer("MaxPool2d-ceil", lambda rng, n: hb.MaxPool2d((2, 3), stride=2, ceil_mode=True),
              inputs=_images((1, 2, 5, 7)), chain=False),
    ],
    hb.MaxPool1d: [Layer("MaxPool1d", lambda rng, n: hb.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
                         inputs=_images((2, 3, 8)), chain=False),
                   Layer("MaxPool1d-keeps-shape", lambda rng, n: hb.MaxPool1d(3, stride=1, padding=1),
                         inputs=_images((2, 3, 6)), chain=False),
                   Layer("MaxPool1d-dilation", lambda rng, n: hb.MaxPool1d(2, dilation=2), inputs=_images((2, 3, 7)),
                         chain=False)],
    hb.AvgPool2d: [
        Layer("AvgPool2d", lambda rng, n: hb.AvgPool2d(2), inputs=_images((2, 3, 4, 6)), chain=False),
        Layer("AvgPool2d-pad", lambda rng, n: hb.AvgPool2d(3, stride=2, padding=1), inputs=_images((2, 2, 5, 6)),
              chain=False),
        Layer("AvgPool2d-exclude-ceil", lambda rng, n: hb.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
              inputs=_images((1, 2, 6, 7)), chain=False),
        Layer("AvgPool2d-keeps-shape", lambda rng, n: hb.AvgPool2d(3, 1, 1, count_include_pad=False),
              inputs=_images((2, 3, 4, 5)), chain=False),
        Layer("AvgPool2d-divisor", lambda rng, n: hb.AvgPool2d((2, 3), stride=(1, 2), divisor_override=5),
              inputs=_images((2, 3, 5, 6)), chain=False),
    ],
    hb.AdaptiveAvgPool2d: [
        Layer("AdaptiveAvgPool2d", lambda rng, n: hb.AdaptiveAvgPool2d((3, 2)), inputs=_images((2, 3, 7, 5)),
              chain=False),
        Layer("AdaptiveAvgPool2d-same-size", lambda rng, n: hb.AdaptiveAvgPool2d((4, None)),
              inputs=_images((2, 3, 4, 5)), chain=False),
        Layer("AdaptiveAvgPool2d-global", lambda rng, n: hb.AdaptiveAvgPool2d(1), inputs=_images((2, 3, 4, 4)),
              chain=False),
    ],
    hb.Flatten: [Layer("Flatten", lambda rng, n: hb.Flatten(), inputs=BATCHED, chain=False),     # torch's takes no (n,)
                 Layer("Flatten-image", lambda rng, n: hb.Flatten(), inputs=_images((2, 3, 4, 2)), chain=False),
                 Layer("Flatten-middle", lambda rng, n: hb.Flatten(1, 2), inputs={"batch2": (2, 3, 4, 2)}, chain=False),
                 Layer("Flatten-batch-too", lambda rng, n: hb.Flatten(0, -2), inputs={"batch2": (2, 3, 4, 2)},
                       chain=False)],
    hb.BatchNorm2d: [
        Layer("BatchNorm2d", lambda rng, n: _random_affine(hb.BatchNorm2d(3), rng), inputs={"batch2": (2, 3, 4, 5)},
              chain=False),
        Layer("BatchNorm2d-eval", _trained_batchnorm2d, inputs={"batch2": (2, 3, 4, 5)}, chain=False),
        Layer("BatchNorm2d-plain", lambda rng, n: hb.BatchNorm2d(3, affine=False, track_running_stats=False),
              inputs={"batch3": (3, 3, 2, 2)}, chain=False),
        Layer("BatchNorm2d-momentum-None", lambda rng, n: _random_affine(hb.BatchNorm2d(2, momentum=None), rng),
              inputs={"batch3": (3, 2, 3, 3)}, chain=False),
    ],
    hb.GroupNorm: [
        Layer("GroupNorm-one-group", lambda rng, n: _random_affine(hb.GroupNorm(1, n), rng), inputs=BATCHED),
        Layer("GroupNorm", lambda rng, n: _random_affine(hb.GroupNorm(2, 4), rng), inputs={"batch2": (2, 4, 3, 3)},
              chain=False),
        Layer("GroupNorm-nobias-1d", lambda rng, n: _random_affine(hb.GroupNorm(1, 3, bias=False), rng),
              inputs={"batch3": (3, 3, 5)}, chain=False, twin=False),      # torch's GroupNorm always has a bias
        Layer("GroupNorm-per-channel", lambda rng, n: hb.GroupNorm(3, 3, affine=False), inputs={"batch4": (4, 3, 5)},
              chain=False),
    ],
    hb.Dropout2d: [
        Layer("Dropout2d", lambda rng, n: hb.Dropout2d(0.4, rng=_seed(rng)), inputs=_images((2, 3, 4, 4)), chain=False),
        Layer("Dropout2d-eval", lambda rng, n: hb.Dropout2d(0.5, rng=_seed(rng)).eval(), inputs=_images((2, 3, 4, 4)),
              chain=False),
    ],
}


@dataclass(frozen=True)
class Loss:
    """An example of a loss: ``build()`` returns it, ``target(rng, shape, dtype)`` a target for
    predictions of ``shape``, and ``torch(F, pred, target)`` the same loss by
    ``torch.nn.functional`` (given as ``F``), the independent reference of its value."""
    name: str
    build: object
    target: object
    torch: object


def real_target(rng, shape, dtype=np.float64):
    return rng.normal(size=shape).astype(dtype)


def index_target(rng, shape, dtype=np.float64):
    """Class indices: (N,) for (N, C) logits, () for (C,) logits."""
    return rng.integers(0, shape[-1], shape[:-1])


def probability_target(rng, shape, dtype=np.float64):
    p = rng.uniform(0.1, 1.0, shape)
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)


def unit_target(rng, shape, dtype=np.float64):
    return rng.uniform(size=shape).astype(dtype)


LOSSES = {
    hb.MeanSquaredError: [Loss("MeanSquaredError", hb.MeanSquaredError, real_target,
                               lambda F, p, t: 0.5 * F.mse_loss(p, t))],     # the notebook's ½
    hb.MSELoss: [Loss("MSELoss-mean", hb.MSELoss, real_target, lambda F, p, t: F.mse_loss(p, t)),
                 Loss("MSELoss-sum", lambda: hb.MSELoss(reduction="sum"), real_target,
                      lambda F, p, t: F.mse_loss(p, t, reduction="sum"))],
    hb.CrossEntropyLoss: [
        Loss("CrossEntropyLoss", hb.CrossEntropyLoss, index_target, lambda F, p, t: F.cross_entropy(p, t)),
        Loss("CrossEntropyLoss-sum", lambda: hb.CrossEntropyLoss(reduction="sum"), index_target,
             lambda F, p, t: F.cross_entropy(p, t, reduction="sum")),
        Loss("CrossEntropyLoss-prob", hb.CrossEntropyLoss, probability_target, lambda F, p, t: F.cross_entropy(p, t))],
    hb.BCEWithLogitsLoss: [
        Loss("BCEWithLogitsLoss", hb.BCEWithLogitsLoss, unit_target,
             lambda F, p, t: F.binary_cross_entropy_with_logits(p, t)),
        Loss("BCEWithLogitsLoss-sum", lambda: hb.BCEWithLogitsLoss(reduction="sum"), unit_target,
             lambda F, p, t: F.binary_cross_entropy_with_logits(p, t, reduction="sum"))],
    hb.NLLLoss: [
        Loss("NLLLoss", hb.NLLLoss, index_target, lambda F, p, t: F.nll_loss(p, t)),
        Loss("NLLLoss-weighted-sum", lambda: hb.NLLLoss(weight=[0.5, 2.0, 1.5], reduction="sum"), index_target,
             lambda F, p, t: F.nll_loss(p, t, weight=p.new_tensor([0.5, 2.0, 1.5]), reduction="sum"))],
    hb.L1Loss: [Loss("L1Loss", hb.L1Loss, real_target, lambda F, p, t: F.l1_loss(p, t)),
                Loss("L1Loss-sum", lambda: hb.L1Loss("sum"), real_target,
                     lambda F, p, t: F.l1_loss(p, t, reduction="sum"))],
    hb.HuberLoss: [Loss("HuberLoss", lambda: hb.HuberLoss(delta=0.7), real_target,
                        lambda F, p, t: F.huber_loss(p, t, delta=0.7))],
    hb.SmoothL1Loss: [Loss("SmoothL1Loss", lambda: hb.SmoothL1Loss(beta=0.5), real_target,
                           lambda F, p, t: F.smooth_l1_loss(p, t, beta=0.5)),
                      Loss("SmoothL1Loss-beta0-sum", lambda: hb.SmoothL1Loss("sum", beta=0.0), real_target,
                           lambda F, p, t: F.smooth_l1_loss(p, t, reduction="sum", beta=0.0))],
    hb.MultiMarginLoss: [
        Loss("MultiMarginLoss", hb.MultiMarginLoss, index_target, lambda F, p, t: F.multi_margin_loss(p, t)),
        Loss("MultiMarginLoss-p2-weighted", lambda: hb.MultiMarginLoss(p=2, margin=0.7, weight=[1.0, 2.0, 0.5]),
             index_target, lambda F, p, t: F.multi_margin_loss(p, t, p=2, margin=0.7,
                                                                weight=p.new_tensor([1.0, 2.0, 0.5])))],
}


class Missing:
    """The stand-in case of a public class with no row in the tables: a test over every class
    fails on it, naming the class."""

    def __init__(self, cls):
        self.cls, self.name = cls, f"{cls.__name__}-has-no-example"

    def fail(self):
        import pytest
        pytest.fail(f"{self.cls.__module__}.{self.cls.__qualname__} is public but has no example in "
                    f"tests/helpers/examples.py: add a row saying how to build it")


def layer_classes():
    """The public layer and container classes (not losses, not the bases), by name."""
    return {name: cls for name, cls in public_classes().items() if not issubclass(cls, hb.Loss) and cls not in BASES}


def loss_classes():
    return {name: cls for name, cls in public_classes(hb.Loss).items() if cls not in BASES}


def layer_examples():
    """Every layer example of every public layer class (a ``Missing`` for a class without one), in
    the order of the classes' names: the cases of the tests that run over every layer."""
    return [ex for _, cls in sorted(layer_classes().items()) for ex in LAYERS.get(cls, [Missing(cls)])]


def loss_examples():
    return [ex for _, cls in sorted(loss_classes().items()) for ex in LOSSES.get(cls, [Missing(cls)])]


def is_container(module):
    return isinstance(module, hb.Sequential)


# -- the small fixed set the all-or-nothing and in-place tests run over --------------------------
SHAPE = (4, 3)       # their input and output: a batch of 4 with 3 features


def _at_shape(ex):
    return lambda: ex.chained(np.random.default_rng(0), SHAPE[-1])


# every chainable layer (not the containers) as a factory of a layer from (4, 3) to (4, 3); built
# from one seed, so two layers built alike are alike (Dropout's masks included)
CHAIN_LAYERS = {ex.name: _at_shape(ex) for ex in layer_examples()
                if not isinstance(ex, Missing) and ex.chain and not is_container(ex.build(np.random.default_rng(0), 3))}


def takes_arrays(ex):
    """Whether the example's inputs are all shapes (arrays drawn normal) and it returns one array:
    not integer indices, not a tuple in or out (those have a function among their inputs, or a
    tail)."""
    return ex.tail is None and not any(callable(spec) for spec in ex.inputs.values())


def _batched_input(ex):
    return next(shape for key, shape in ex.inputs.items() if key != "unbatched")


def _keeps_shape(ex):
    shape = _batched_input(ex)
    return ex.build(np.random.default_rng(0), FEATURES).forward(np.random.default_rng(1).normal(size=shape)).shape \
        == shape


# every example with input shapes of its own (an image layer) whose output has its input's shape,
# at its first batched input: the all-or-nothing and in-place tests take them beside CHAIN_LAYERS
IMAGE_LAYERS = {ex.name: (lambda ex=ex: ex.build(np.random.default_rng(0), FEATURES)) for ex in layer_examples()
                if not isinstance(ex, Missing) and not ex.chain and takes_arrays(ex) and _keeps_shape(ex)}
_IMAGE_SHAPES = {ex.name: _batched_input(ex) for ex in layer_examples() if ex.__class__ is Layer and ex.name in IMAGE_LAYERS}


def shape_of(name):
    """The input (and output) shape the all-or-nothing and in-place tests give the layer ``name``."""
    return _IMAGE_SHAPES.get(name, SHAPE)


def prefix_for(name, rng):
    """A layer with weights to put before the layer ``name``, keeping its input's shape: a Linear
    for SHAPE, a 1 × 1 convolution over the channels of an image."""
    shape = shape_of(name)
    if len(shape) == 2:
        return hb.Linear(shape[1], shape[1], rng=rng)
    return (hb.Conv1d if len(shape) == 3 else hb.Conv2d)(shape[1], shape[1], 1, rng=rng)


# the first example of each loss class, by the class's name
FIRST_LOSSES = {cls.__name__: LOSSES[cls][0].build for cls in loss_classes().values() if cls in LOSSES}


def targets(loss, rng, dtype=np.float64):
    """A target for ``loss`` and predictions of shape SHAPE."""
    ex = next(ex for ex in LOSSES[type(loss)])
    return ex.target(rng, SHAPE, dtype)
