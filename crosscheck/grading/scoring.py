"""How a graded test is scored, and what the student reads about it.

One rule for every failure. A lockstep step has four stages, in causal order: forward (outputs,
loss), input gradients, parameter gradients, update (parameters, optimizer state). At the step
where a test fails, a stage fails if one of its quantities mismatched torch's, if it raised, or if
it could not run because an earlier one raised (a raise in the forward fails all four, in the
backward the last three, in the optimizer's step the update). With partial credit
(``points(n, partial=True)``, or a dict of stage weights) the test earns the share of the stages
that did not fail; without, nothing. A test that fails before its first stage (an import error,
an exception in the test's own set-up, a timeout, a crash) scores 0.

The student's text says "your code" where the report says "handbp" (the student's layers are the
handbp side of the comparison), lists which stages passed, keeps only the student's own frames of
a traceback, and ends with the line that replays the test.
"""
import os
import re
import traceback

STAGES = {"output": "forward", "loss": "forward", "buffer": "forward", "grad_pred": "input_grad",
          "grad_input": "input_grad", "grad": "weight_grad", "param": "update"}
STAGE_ORDER = ("forward", "input_grad", "weight_grad", "update")
STAGE_TEXT = {"forward": "forward (outputs, loss)", "input_grad": "input gradients",
              "weight_grad": "parameter gradients", "update": "update (parameters, optimizer state)"}
# lockstep's phase that raised -> the stages that raised or could not run
RAISED = {"forward": STAGE_ORDER, "backward": STAGE_ORDER[1:], "step": STAGE_ORDER[3:]}
PHASE_TEXT = {"forward": "in the forward pass (the model or the loss)", "backward": "in the backward pass",
              "step": "in the optimizer's step"}


def stage_of(quantity):
    return STAGES.get(quantity, "update" if quantity.startswith("state.") else "forward")


def stages_failed(mismatched_quantities=(), raised_in=None):
    """The failed stages, in causal order: those with a mismatched quantity, and those that raised
    or could not run after a raise ``raised_in`` a phase of lockstep's step."""
    failed = {stage_of(q) for q in mismatched_quantities}
    failed.update(RAISED.get(raised_in, ()))
    return [s for s in STAGE_ORDER if s in failed]


def partial_fraction(failed, partial):
    """The share of the points earned when the stages ``failed`` failed: the weights of the others
    (``partial=True``: a quarter each; a dict: its weights, normalised)."""
    if not partial:
        return 0.0
    weights = dict.fromkeys(STAGE_ORDER, 0.25) if partial is True else dict(partial)
    total = sum(weights.values())
    return sum(w for stage, w in weights.items() if stage not in failed) / total if total else 0.0


# -- what a failure is -----------------------------------------------------------------------
class Timeout(BaseException):
    """The per-test time limit ran out (a BaseException, so that a student's ``except Exception``
    does not swallow it)."""


def classify(exc):
    """``(kind, stages_failed or None)`` of a test's exception: ``mismatch`` (a Divergence),
    ``raised`` (the student's code raised inside a lockstep step), ``timeout``, ``crashed``
    (``sys.exit``), ``import_error``, ``provenance``, or ``error`` (anything else, before any
    stage)."""
    from ..report import Divergence
    from .handin import ProvenanceError, SubmissionError
    if isinstance(exc, Divergence):
        cause = exc.__cause__
        return "mismatch", stages_failed(exc.mismatched_quantities, getattr(cause, "lockstep_phase", None))
    if isinstance(exc, Timeout):
        return "timeout", None
    if isinstance(exc, SystemExit):
        return "crashed", None
    if isinstance(exc, SubmissionError):
        return "import_error", None
    if isinstance(exc, ProvenanceError):
        return "provenance", None
    phase = getattr(exc, "lockstep_phase", None)
    if phase in RAISED:
        return "raised", stages_failed((), phase)
    return "error", None


def score(max_score, partial, kind, failed):
    """Points for an outcome (see the module docstring)."""
    if kind == "passed":
        return float(max_score)
    if kind in ("mismatch", "raised") and failed is not None:
        return round(max_score * partial_fraction(failed, partial), 6)
    return 0.0


# -- what the student reads --------------------------------------------------------------------
def your_code(text):
    """A lockstep report as a student reads it: their code is the handbp side."""
    text = re.sub(r"\bhandbp's\b", "your code's", text)
    text = re.sub(r"\bhandbp and torch\b", "your code and torch", text)
    return re.sub(r"\bhandbp\b(?![.\w])", "your code", text)


def stage_lines(failed, kind, exc):
    """One line per stage: passed, or failed and why."""
    raised_in = getattr(exc.__cause__ if kind == "mismatch" else exc, "lockstep_phase", None)
    raised = RAISED.get(raised_in, ())
    mismatched = {stage_of(q) for q in exc.mismatched_quantities} if kind == "mismatch" else set()
    width = max(map(len, STAGE_TEXT.values()))
    lines = []
    for stage in STAGE_ORDER:
        if stage not in failed:
            verdict = "passed"
        elif stage in mismatched:
            verdict = "FAILED: differs from torch"
        elif raised and stage == raised[0]:
            verdict = f"FAILED: your code raised {PHASE_TEXT[raised_in]}"
        else:
            verdict = "FAILED: could not run (your code raised before it)"
        lines.append(f"  {STAGE_TEXT[stage]:<{width}}  {verdict}")
    return lines


def _student_base(path, roots):
    """The folder a student's path is shown relative to, or None if ``path`` is not theirs: inside a
    submitted folder, or the submitted file itself."""
    for root in roots:
        if os.path.isdir(root):
            if path.startswith(root + os.sep):
                return root
        elif path == root:
            return os.path.dirname(root)
    return None


def student_frames(tb, roots):
    """The traceback's frames in the student's files (``roots``: the submitted file or folder),
    with paths relative to the submission; empty when none is."""
    roots = [os.path.abspath(r) for r in roots if r]
    kept = []
    for frame in traceback.extract_tb(tb):
        base = _student_base(os.path.abspath(frame.filename), roots)
        if base is not None:
            frame.filename = os.path.relpath(os.path.abspath(frame.filename), base)
            kept.append(frame)
    return "".join(traceback.format_list(kept))


def exception_text(exc, roots):
    """An exception as a student reads it: its frames in their files, then its type and message."""
    frames = student_frames(exc.__traceback__, roots)
    last = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    head = "Traceback (your code's frames only):\n" if frames else ""
    return f"{head}{frames}{last}"


def headline(kind, max_score, points, exc, failed):
    n = f"{points:g} / {max_score:g} points"
    if kind == "mismatch":
        return f"{n}: your code differs from torch's at step {exc.step} ({exc.name}, {exc.quantity})."
    if kind == "raised":
        return f"{n}: your code raised {type(exc).__name__} {PHASE_TEXT[exc.lockstep_phase]}."
    if kind == "timeout":
        return f"{n}: {exc}."
    if kind == "crashed":
        return f"{n}: your code called sys.exit({exc.code!r}), which ends the test."
    if kind == "import_error":
        return f"{n}: your code could not be imported."
    if kind == "provenance":
        return f"{n}: your code does not meet the course's rules on what it may use."
    return f"{n}: the test raised {type(exc).__name__} before any stage was compared."


def student_text(kind, exc, failed, max_score, points, partial, roots, replay):
    """The failure text of a graded test: the headline with the points, the stage breakdown (when
    the test reached lockstep), the report or the trimmed traceback, and the replay line."""
    parts = [headline(kind, max_score, points, exc, failed)]
    if failed is not None:
        rule = "partial credit: the stages that passed" if partial else "all or nothing"
        parts.append(f"Stages at the failing step ({rule}):\n" + "\n".join(stage_lines(failed, kind, exc)))
    if kind == "mismatch":
        body = your_code(exc.report())
        frames = student_frames(exc.__cause__.__traceback__, roots) if exc.__cause__ is not None else ""
        if frames:
            body += f"\n\nwhere your code raised {type(exc.__cause__).__name__}:\n{frames.rstrip()}"
        parts.append(body)
    elif kind in ("import_error", "provenance"):
        parts.append(str(exc))
    elif kind == "timeout":
        frames = student_frames(exc.__traceback__, roots)
        if frames:
            parts.append(f"Your code was running here when the time ran out:\n{frames.rstrip()}")
    else:
        parts.append(exception_text(exc, roots))
    parts.append(f"replay: {replay}")
    return "\n\n".join(parts)


def tolerance_data(trace):
    """The tolerance of a lockstep run as the report states it: ``rule`` (its text), and for the
    element-wise rule ``rtol`` and ``atol`` with what the atol is scaled by (each quantity's
    largest magnitude, unless it was given)."""
    tol = dict(trace.tolerance)
    out = {"rule": trace._tol_text, "mode": tol["mode"]}
    if tol["mode"] == "elementwise":
        scaled = tol["atol"] is None
        out.update(rtol=tol["rtol"], atol=tol["rtol"] if scaled else tol["atol"],
                   atol_scaled_by="max|torch| of each quantity" if scaled else None)
    else:
        out.update(factor=tol["factor"], floor=tol["floor"])
    return out
