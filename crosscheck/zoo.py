"""What crosscheck is expected to say about each bug of handbp's bug zoo (``handbp.zoo``).

The zoo itself (the mutants and the runs that plant them) is handbp's; the expectations are in
crosscheck's vocabulary (``crosscheck.diagnose.HINTS``), so they live here: for each bug, by name,
where lockstep's first divergence should appear (a substring of ``"name quantity"``), the hint it
should give and, for a constant factor, the factor. ``handbp zoo`` and the mutation tests read
them from here. A zoo module that joins ``handbp.zoo.ZOO_MODULES`` adds its bugs' lines below.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Expect:
    """lockstep should diverge at ``where`` (a substring of "name quantity") with ``hint`` (and
    ``factor``, handbp's value over torch's, for the hints that have one)."""

    where: str
    hint: str
    factor: float = None

    def met_by(self, divergence):
        """Whether a ``Divergence`` is the expected one (place and hint; the factor to 1e-6)."""
        d = divergence
        if d.hint != self.hint or self.where not in f"{d.name} {d.quantity}":
            return False
        return self.factor is None or (d.factor is not None and abs(d.factor - self.factor) <= 1e-6 * abs(self.factor))


EXPECTED = {
    "notebook-mse-without-1/n": Expect("loss (MSEWithoutOneOverN) grad_pred", "factor", 2.0),
    "notebook-dw-typo-grad-never-stored": Expect("0.weight (LinearGradIntoDw) grad", "zero"),
    "notebook-dw-typo-weights-never-updated": Expect("0.weight (Linear) param", "never_updated"),
    "sigmoid-derivative-on-preactivation": Expect("1 (SigmoidOnPreactivation) grad_input", "local_derivative"),
    "missing-transpose": Expect("0.weight (LinearNoTranspose) grad", "transpose"),
    "missing-transpose-square": Expect("0.weight (LinearNoTranspose) grad", "transpose"),
    "bias-grad-not-summed": Expect("2.bias (LinearBiasNotSummed) grad", "shape"),
    "grads-not-zeroed": Expect("0.weight (Linear) grad", "accumulated"),
    "cache-overwritten": Expect("1 (TanhCacheOverwritten) grad_input", "local_derivative"),
    "softmax-diagonal-jacobian": Expect("1 (SoftmaxDiagonalJacobian) grad_input", "local_derivative"),
    "momentum-reset-each-step": Expect("state.momentum_buffer", "reset"),
    "weight-decay-twice": Expect("param", "weight_decay"),
    "sign-flipped": Expect("1 (TanhSignFlipped) grad_input", "sign", -1.0),
    "nan-from-overflow": Expect("1 (SigmoidOverflow) output", "nonfinite"),
    "cross-entropy-without-mean": Expect("grad_pred", "factor", 4.0),
    "input-grad-dropped": Expect("2 (LinearForgetsInputGrad) grad_input", "zero"),
    # handbp.zoo_conv
    "conv-kernel-flipped-in-weight-grad": Expect("0.weight (Conv2dWeightGradFlipped) grad", "flipped_kernel"),
    "conv-bias-grad-not-summed-over-batch": Expect("0.bias (Conv2dBiasNotSummed) grad", "shape"),
    "conv-padding-kept-in-input-grad": Expect("0 (Conv2dPaddingKept) grad_input", "padding"),
    "conv-stride-ignored-in-input-grad": Expect("0 (Conv2dStrideIgnored) grad_input", "stride"),
    "maxpool-grad-to-every-element": Expect("2 (MaxPool2dGradToEveryElement) grad_input", "unrouted"),
    # handbp.zoo_rnn
    "rnn-dh-not-carried-back": Expect("0 (LSTMGradNotCarried) grad_input", "through_time"),
    "rnn-truncated-bptt": Expect("0 (LSTMTruncatedBPTT) grad_input", "through_time"),
    "rnn-output-gate-without-tanh-c": Expect("0 (LSTMOutputGateWithoutTanhC) grad_input", "local_derivative"),
    "rnn-gates-swapped": Expect("0 (LSTMGatesSwapped) output", "forward"),
    "rnn-reverse-direction-not-reversed": Expect("0 (GRUReverseNotReversed) output", "forward"),
}


def expected(bug):
    """The ``Expect`` of a zoo bug (or bug name); a KeyError naming it if there is none."""
    name = getattr(bug, "name", bug)
    try:
        return EXPECTED[name]
    except KeyError:
        raise KeyError(f"crosscheck.zoo: no expectation for the zoo bug {name!r}: add its line to "
                       "crosscheck.zoo.EXPECTED") from None
