"""The recurrent bugs of the zoo (handbp.zoo_rnn; test_mutations.py checks that lockstep catches
each at its place with its hint, crosscheck.zoo): the same runs without the bug pass; the mutants
whose backward is consistent with their own (wrong) forward pass a finite-difference check, so
only the comparison with torch finds them; and the through-time hint names the time axis in every
layout."""
import pytest

import crosscheck as cc
import handbp as hb
from handbp.zoo_rnn import (BUGS, GRUReverseNotReversed, LSTMGatesSwapped, LSTMGradNotCarried, LSTMTruncatedBPTT,
                            sequence_model)

MUTANTS = {bug.name: bug for bug in BUGS}


def test_at_least_four_recurrent_bugs_with_distinct_names():
    assert len(BUGS) >= 4 and len(MUTANTS) == len(BUGS)


@pytest.mark.parametrize("layer, bidirectional", [(hb.LSTM, False), (hb.GRU, True)])
def test_the_same_runs_without_the_bug_pass(layer, bidirectional, rng):
    model, loss, optimizer, data = sequence_model(layer, bidirectional)(rng)
    assert cc.lockstep(model, loss, optimizer, data).divergence is None


@pytest.mark.parametrize("make", [lambda rng: LSTMGatesSwapped(2, 3, rng=rng),
                                  lambda rng: GRUReverseNotReversed(2, 3, bidirectional=True, rng=rng)],
                         ids=["gates-swapped", "reverse-not-reversed"])
def test_a_consistent_mutant_passes_finite_differences(make, rng):
    """A model that is not torch's, differentiated right: gradcheck cannot tell, lockstep can."""
    model = hb.Sequential(make(rng), hb.SelectOutput(0), hb.Flatten(0, 1))
    x = rng.normal(size=(4, 2, 2))
    y = rng.normal(size=model(x).shape)
    assert hb.numerical.gradcheck(model, hb.MSELoss(), x, y, method="loop")


@pytest.mark.parametrize("layout", ["time-major", "batch-first", "unbatched"])
@pytest.mark.parametrize("mutant, matching", [(LSTMGradNotCarried, 1), (LSTMTruncatedBPTT, 2)])
def test_the_through_time_hint_finds_the_time_axis(mutant, matching, layout, rng):
    layer = mutant(3, 4, batch_first=layout == "batch-first", rng=rng)
    model = hb.Sequential(layer, hb.SelectOutput(0))
    shape = {"time-major": (7, 2, 3), "batch-first": (2, 7, 3), "unbatched": (7, 3)}[layout]
    x = rng.normal(size=shape)
    with pytest.raises(cc.Divergence) as info:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), [(x, rng.normal(size=model(x).shape))])
    d = info.value
    assert d.hint == "through_time", str(d)
    axis = 1 if layout == "batch-first" else 0
    assert f"at the last {matching} of 7 steps (axis {axis})" in d.diagnosis


def test_the_zoo_command_lists_and_runs_the_recurrent_bugs(capsys):
    from handbp.cli import main
    assert main(["zoo", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in MUTANTS)
    assert main(["zoo", "--bug", "rnn-gates-swapped"]) == 0
    assert "1 of 1 bugs caught with the expected hint" in capsys.readouterr().out
