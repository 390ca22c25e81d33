"""torch's names and layouts: a handbp Sequential or DNN and its torch.nn twin have the same
parameter names, the same state_dict keys and shapes, and with the same weights the same outputs."""
import numpy as np
import pytest
import torch

import handbp as hb

TORCH_ACT = {hb.Sigmoid: torch.nn.Sigmoid, hb.Tanh: torch.nn.Tanh, hb.ReLU: torch.nn.ReLU, hb.Identity: torch.nn.Identity}


def pair(name, rng):
    """A handbp model and its torch twin (float64, torch's own fresh weights)."""
    if name == "Sequential":
        ours = hb.Sequential(hb.Linear(4, 6, rng=rng), hb.ReLU(), hb.Linear(6, 6, bias=False, rng=rng), hb.Tanh(),
                             hb.Linear(6, 5, rng=rng), hb.LeakyReLU(0.3), hb.Identity(), hb.Linear(5, 3, rng=rng),
                             hb.Softmax(dim=-1))
        theirs = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6, bias=False),
                                     torch.nn.Tanh(), torch.nn.Linear(6, 5), torch.nn.LeakyReLU(0.3),
                                     torch.nn.Identity(), torch.nn.Linear(5, 3), torch.nn.Softmax(dim=-1))
    elif name == "Nested":
        ours = hb.Sequential(hb.Sequential(hb.Linear(4, 5, rng=rng), hb.Tanh()), hb.Linear(5, 3, rng=rng))
        theirs = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh()), torch.nn.Linear(5, 3))
    else:
        act = {"DNN-Sigmoid": hb.Sigmoid, "DNN-Tanh": hb.Tanh, "DNN-ReLU": hb.ReLU}[name]
        depth, width = 2, 7
        ours = hb.DNN(hidden_depth=depth, num_neuron=width, input=4, output=3, activation=act, rng=rng)
        sizes = [4] + [width] * (depth + 1) + [3]
        layers = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(i, o), TORCH_ACT[act]()]
        theirs = torch.nn.Sequential(*layers)
    return ours, theirs.double()


MODELS = ["Sequential", "Nested", "DNN-Sigmoid", "DNN-Tanh", "DNN-ReLU"]


@pytest.mark.parametrize("name", MODELS)
def test_named_parameters_and_state_dict_match_torch(name, rng):
    ours, theirs = pair(name, rng)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    for (n, p), (_, t) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.shape == tuple(t.shape), n


@pytest.mark.parametrize("batch", [(4,), (1, 4), (5, 4)], ids=["unbatched", "batch1", "batch5"])
@pytest.mark.parametrize("name", MODELS)
def test_forward_equals_torch_with_the_same_weights(name, batch, rng):
    ours, theirs = pair(name, rng)
    # handbp's weights into torch (weight layout (out, in) on both sides, no transpose)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.normal(size=batch)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-12, atol=1e-15)
    # and torch's fresh weights into handbp
    fresh = pair(name, rng)[1]
    ours.load_state_dict({k: v.numpy() for k, v in fresh.state_dict().items()})
    np.testing.assert_allclose(ours(x), fresh(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-15)


def test_linear_layout_is_out_by_in(rng):
    lin = hb.Linear(3, 2, rng=rng)
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)
    assert (lin.in_features, lin.out_features) == (3, 2)
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(lin(x), x @ lin.weight.data.T + lin.bias.data, rtol=1e-15, atol=0)


def test_sequential_indexing_and_dnn_structure(rng):
    d = hb.DNN(hidden_depth=1, num_neuron=8, input=3, output=2, activation=hb.Tanh, rng=rng)
    assert isinstance(d, hb.Sequential) and len(d) == 6
    assert [type(m).__name__ for m in d] == ["Linear", "Tanh"] * 3
    assert [m.weight.shape for m in d if isinstance(m, hb.Linear)] == [(8, 3), (8, 8), (2, 8)]
    assert d.sequence == list(d)                     # the notebook's name for the layers
    assert d[-2] is list(d)[-2]


@pytest.mark.parametrize("name", ["Sequential", "DNN-Tanh"])
def test_state_dict_is_a_copy_and_loads_back(name, rng):
    ours = pair(name, rng)[0]
    sd = ours.state_dict()
    for v in sd.values():
        v += 1.0
    assert not any(np.array_equal(v, p.data) for v, p in zip(sd.values(), ours.parameters()))
    ours.load_state_dict(sd)
    for v, p in zip(sd.values(), ours.parameters()):
        np.testing.assert_array_equal(p.data, v)


def test_explicit_rng_and_torch_init(rng):
    a = hb.DNN(1, 4, 3, 2, rng=np.random.default_rng(5))
    b = hb.DNN(1, 4, 3, 2, rng=np.random.default_rng(5))
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    t = hb.DNN(1, 4, 3, 2, init="torch", rng=rng)       # U(−1/√fan_in, 1/√fan_in), biases too
    assert np.abs(t[0].weight.data).max() <= 1 / np.sqrt(3) and t[0].bias.data.any()
