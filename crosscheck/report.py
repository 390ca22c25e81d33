"""The reports lockstep raises: ``Divergence``, handbp and torch disagree (the first mismatch,
where, by how much, and why), and ``NonFiniteError``, both sides went NaN/Inf together."""
import numpy as np

from .compare import max_rel
from .diagnose import diagnose


class NonFiniteError(FloatingPointError):
    """handbp and torch both produced NaN or Inf: the training diverged on both sides (a learning
    rate too large, inputs too big). Not a mismatch between them, but nothing after it means anything."""

    def __init__(self, step, label, count, total):
        self.step, self.name, self.count, self.total = int(step), label, int(count), int(total)
        super().__init__(f"step {step}: {label} holds {count} of {total} non-finite values on both sides "
                         "(handbp and torch agree): the training diverged — lower the learning rate or scale "
                         "the inputs; the comparison stops here")


def _fmt(v):
    return "None" if v is None else f"{v:.10g}"


class Divergence(AssertionError):
    """handbp and torch disagree: the first mismatch of a lockstep run.

    ``str(exc)`` is the report. The attributes hold plain Python values (safe to serialise, e.g.
    across pytest-xdist workers): ``step``, ``name``, ``quantity``, ``shape``, ``index``,
    ``handbp_value``, ``torch_value``, ``max_abs``, ``max_rel``, ``tolerance`` (dict),
    ``hint``, ``diagnosis``, ``factor``, ``mismatched``, ``total``, ``others`` (list of str).
    """

    def __init__(self, step, check, tol, context=None, others=(), ratio_tol=1e-6, mismatched_quantities=None):
        self.step = int(step)
        # every kind of quantity that mismatched at this step (the first one included), for grading
        self.mismatched_quantities = list(mismatched_quantities or [check.quantity])
        self.name, self.quantity = check.name, check.quantity
        self.tolerance = tol.to_dict()
        self._tol_text = tol.describe()
        self.hint, self.diagnosis, factor = diagnose(check, context, ratio_tol)
        self.factor = None if factor is None else float(factor)
        a = None if check.a is None else np.asarray(check.a)
        b = None if check.b is None else np.asarray(check.b)
        self.shape = tuple(int(s) for s in (b.shape if b is not None else a.shape))
        self.handbp_shape = None if a is None else tuple(int(s) for s in a.shape)
        self.index = self.handbp_value = self.torch_value = self.reference_value = None
        if a is not None and b is not None and a.shape == b.shape and a.size:
            with np.errstate(invalid="ignore"):
                d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            d = np.where(same, 0.0, np.nan_to_num(d, nan=np.inf))
            flat = int(np.argmax(d))
            idx = np.unravel_index(flat, a.shape)
            self.index = tuple(int(i) for i in idx)
            self.handbp_value, self.torch_value = float(a[idx]), float(b[idx])
            if check.ref is not None:
                self.reference_value = float(np.asarray(check.ref)[idx])
        r = check.result or {}
        self.max_abs = float(r.get("max_abs", float("inf")))
        self.max_rel = max_rel(check)
        self.mismatched, self.total = int(r.get("mismatched", 0)), int(r.get("total", 0))
        self.others = list(others)
        super().__init__(self.report())

    def report(self):
        lines = [f"handbp and torch diverge at step {self.step}",
                 f"  where:      {self.name}",
                 f"  quantity:   {self.quantity}",
                 f"  shape:      {self.shape}" + (f" (handbp: {self.handbp_shape})"
                                                   if self.handbp_shape not in (None, self.shape) else "")]
        if self.index is not None:
            ref = f", float64 reference {_fmt(self.reference_value)}" if self.reference_value is not None else ""
            lines.append(f"  worst:      index {self.index}: handbp {_fmt(self.handbp_value)}, "
                         f"torch {_fmt(self.torch_value)}{ref}")
        lines.append(f"  error:      max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g} "
                     f"(tolerance: {self._tol_text})")
        lines.append(f"  diagnosis:  {self.diagnosis}")
        if self.total:
            lines.append(f"  mismatched elements: {self.mismatched} / {self.total} "
                         f"({self.mismatched / self.total:.1%})")
        if self.others:
            lines.append(f"  also mismatched at step {self.step} ({len(self.others)}):")
            lines += [f"    - {o}" for o in self.others]
        return "\n".join(lines)

    def to_dict(self):
        """Every field as plain Python types."""
        keys = ("step", "name", "quantity", "shape", "index", "handbp_value", "torch_value", "reference_value",
                "max_abs", "max_rel", "tolerance", "hint", "diagnosis", "factor", "mismatched", "total", "others",
                "mismatched_quantities")
        return {k: getattr(self, k) for k in keys}

    def __reduce__(self):
        # rebuildable from its report alone (pickling across processes keeps the text)
        return (AssertionError, (self.report(),))
