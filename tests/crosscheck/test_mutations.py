"""Mutation tests: the bug zoo (handbp.zoo) injected into handbp must make lockstep raise, at the
right place, with the hint that fits. The first three are the seed notebook's own silent bugs."""
import numpy as np
import pytest

import crosscheck as cc
import handbp as hb


from crosscheck.zoo import expected
from handbp.zoo import OVERFLOW, bugs, case_notebook_mse, simple

ZOO = bugs()
MUTANTS = {bug.name: bug for bug in ZOO}


def test_the_zoo_has_at_least_twelve_bugs_with_distinct_names():
    assert len(ZOO) >= 12 and len(MUTANTS) == len(ZOO)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_with_its_hint(name, rng):
    bug = MUTANTS[name]
    hint, where, factor = expected(bug).hint, expected(bug).where, expected(bug).factor
    model, loss, optimizer, data = bug.build(rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, loss, optimizer, data)
    d = info.value
    assert where in f"{d.name} {d.quantity}", str(d)
    assert d.hint == hint, str(d)
    if factor is not None:
        assert d.factor == pytest.approx(factor, rel=1e-6), str(d)
    assert "diagnosis:" in str(d) and f"step {d.step}" in str(d)


@pytest.mark.parametrize("name", ["sigmoid-derivative-on-preactivation", "missing-transpose", "sign-flipped"])
def test_the_same_model_without_the_bug_passes(name, rng):
    """The mutants fail because of the bug alone: their correct parents pass the same run."""
    fixed = {"sigmoid-derivative-on-preactivation": simple(hidden=hb.Sigmoid),
             "missing-transpose": simple(), "sign-flipped": simple()}[name]
    model, loss, optimizer, data = fixed(rng)
    assert cc.lockstep(model, loss, optimizer, data).divergence is None


def test_notebook_bugs_are_caught_on_the_first_step(rng):
    for name in ("notebook-mse-without-1/n", "notebook-dw-typo-grad-never-stored",
                 "notebook-dw-typo-weights-never-updated"):
        model, loss, optimizer, data = MUTANTS[name].build(rng)
        with pytest.raises(cc.Divergence) as info:
            cc.lockstep(model, loss, optimizer, data)
        assert info.value.step == 0


def test_mse_factor_names_the_output_size(rng):
    model, loss, optimizer, data = case_notebook_mse(rng)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, loss, optimizer, data)
    assert "2 = the number of output elements" in info.value.diagnosis
    # every gradient below it is off by the same factor, and the report lists them
    assert any("0.weight (Linear) grad" in o and "[factor]" in o for o in info.value.others)


def test_weight_decay_is_named_when_a_weight_is_almost_zero(rng):
    """An element far smaller than the others still moves by the same c × itself; it must not hide
    the pattern (a diagnosis that failed for ~1% of seeds)."""
    model, loss, optimizer, data = MUTANTS["weight-decay-twice"].build(rng)
    model[0].weight.data[0, 0] = 1e-6
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, loss, optimizer, data)
    assert info.value.hint == "weight_decay" and info.value.factor == pytest.approx(-0.01), str(info.value)


def test_the_overflow_mutant_always_overflows(rng):
    """Its first layer is scaled so that the largest pre-activation of the first batch is +800,
    whatever the seed, and e^800 overflows float64: the naive sigmoid's own arithmetic makes the
    NaN (inf / inf), nothing planted. (It used to plant the NaN with np.where(x < -30, nan, ...).)"""
    model, _, _, data = MUTANTS["nan-from-overflow"].build(rng)
    z = data[0][0] @ model[0].weight.data.T + model[0].bias.data
    assert z.max() > np.log(np.finfo(np.float64).max) and OVERFLOW > np.log(np.finfo(np.float64).max)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(model[1].forward(z)).any()
    assert not np.isnan(hb.Sigmoid().forward(z)).any()
