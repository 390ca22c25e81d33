"""The Module API against torch.nn.Module's: a weight tied between two layers is one parameter,
replacing a parameter keeps its place in the state_dict, ``load_state_dict`` returns the missing
and unexpected keys, and Sequential refuses what is not a module."""
import numpy as np
import pytest
import torch

import handbp as hb
from handbp.nn.utils import clip_grad_norm_


def tied(rng):
    """Linear → Tanh → Linear with the second layer's weight replaced by the first's (3 × 3),
    and the torch twin built the same way, with handbp's values."""
    first, second = hb.Linear(3, 3, rng=rng), hb.Linear(3, 3, rng=rng)
    second.weight = first.weight
    ours = hb.Sequential(first, hb.Tanh(), second)
    a, b = torch.nn.Linear(3, 3).double(), torch.nn.Linear(3, 3).double()
    b.weight = a.weight
    theirs = torch.nn.Sequential(a, torch.nn.Tanh(), b)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.from_numpy(dict(ours.named_parameters())[name].data))
    return ours, theirs


def test_tied_weight_is_one_parameter_with_torch_names(rng):
    ours, theirs = tied(rng)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert len(ours.parameters()) == len(list(theirs.parameters())) == 3
    assert [n for n, _ in ours.named_parameters(remove_duplicate=False)] == \
        [n for n, _ in theirs.named_parameters(remove_duplicate=False)]
    assert [n for n, _ in ours[0].named_parameters(recurse=False)] == ["weight", "bias"]
    assert ours.parameters(recurse=False) == []
    # the state_dict has every name, as torch's, and loads back under strict
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.load_state_dict(ours.state_dict()) == ([], [])


@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_clip_grad_norm_counts_a_tied_weight_once(max_norm, rng):
    """Its gradient (both uses summed) enters the norm once and is scaled once, as in torch."""
    ours, theirs = tied(rng)
    x, dy = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ours(x)
    ours.backward(dy)
    theirs(torch.from_numpy(x)).backward(torch.from_numpy(dy))
    total = clip_grad_norm_(ours.parameters(), max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    np.testing.assert_allclose(total, expected.item(), rtol=1e-12)          # float64: a few roundings
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)


def test_optimizer_takes_a_model_with_a_tied_weight(rng):
    ours, _ = tied(rng)
    opt = hb.optim.SGD(ours.parameters(), lr=0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == 3


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_replacing_a_parameter_keeps_its_place(name, rng):
    """torch writes the new Parameter into the same slot, so state_dict keys keep their order."""
    ours, theirs = hb.Linear(3, 2, rng=rng), torch.nn.Linear(3, 2)
    setattr(ours, name, hb.Parameter(getattr(ours, name).data * 2))
    setattr(theirs, name, torch.nn.Parameter(getattr(theirs, name).detach() * 2))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]


def test_replacing_a_child_keeps_its_place(rng):
    ours = hb.Sequential(hb.Linear(3, 3, rng=rng), hb.Tanh(), hb.Linear(3, 2, rng=rng))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    setattr(ours, "0", hb.Linear(3, 3, rng=rng))
    setattr(theirs, "0", torch.nn.Linear(3, 3))
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("drop, extra", [([], []), (["0.weight"], []), ([], ["9.weight"]),
                                         (["0.bias", "2.weight"], ["x"])])
def test_load_state_dict_returns_missing_and_unexpected_keys(drop, extra, rng):
    ours = hb.Sequential(hb.Linear(3, 3, rng=rng), hb.Tanh(), hb.Linear(3, 2, rng=rng))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    state = {k: v for k, v in ours.state_dict().items() if k not in drop}
    state.update((k, np.zeros(1)) for k in extra)
    result = ours.load_state_dict(state, strict=False)
    expected = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert result.missing_keys == expected.missing_keys
    assert result.unexpected_keys == expected.unexpected_keys
    assert tuple(result) == (expected.missing_keys, expected.unexpected_keys)
    if not (drop or extra):
        assert repr(result) == repr(expected) == "<All keys matched successfully>"


@pytest.mark.parametrize("call, error, message", [
    (lambda s: s.append(3), TypeError, r"Sequential.append: module: expected a handbp Module, got int 3"),
    (lambda s: s.append(np.ones(2)), TypeError, r"Sequential.append: module: expected a handbp Module, got array"),
    (lambda s: s["0"], TypeError, r"Sequential: index: expected an integer or a slice, got str '0'"),
    (lambda s: s[True], TypeError, r"Sequential: index: expected an integer or a slice, got bool"),
    (lambda s: s[2], IndexError, r"Sequential: index: expected an integer in \[-2, 2\), got 2"),
])
def test_sequential_refuses_what_is_not_a_module_or_an_index(call, error, message, rng):
    s = hb.Sequential(hb.Linear(2, 2, rng=rng), hb.Tanh())
    before = list(s.state_dict())
    with pytest.raises(error, match=message):
        call(s)
    assert list(s.state_dict()) == before and len(s) == 2


@pytest.mark.parametrize("arg", ["recurse", "remove_duplicate"])
@pytest.mark.parametrize("value", [1, None, "yes"])
def test_named_parameters_flags_are_checked(arg, value, rng):
    with pytest.raises(TypeError, match=rf"Linear.named_parameters: {arg}: expected True or False"):
        hb.Linear(2, 2, rng=rng).named_parameters(**{arg: value})
