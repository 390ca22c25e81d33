"""What a lockstep run measured: per step, per quantity, the largest error, and the drift of a
free-running twin; ``summary()`` reads it aloud."""
import numpy as np


class Trace:
    """What lockstep measured: per step, per quantity, the max abs and rel error.

    Attributes:
        steps: list (one per step) of dicts ``label -> {"max_abs", "max_rel"}``: the largest
            absolute difference, and that difference relative to the largest magnitude of torch's
            value (a norm-wise relative error; element-wise relative errors of values near zero
            say little, and the Divergence report gives them for the quantity that fails).
        drift: with ``resync=False``, per step the largest relative difference between handbp's
            parameters and a free-running twin's; else empty.
        tolerance: the tolerance used (a dict); dtype: the model's dtype name.
    """

    def __init__(self, tolerance, dtype, resync):
        self._rows, self.drift, self.losses, self.torch_losses = [], [], [], []
        self.tolerance, self.dtype, self.resync = tolerance.to_dict(), str(dtype), resync
        self._tol_text = tolerance.describe()
        self.elapsed = 0.0
        self.divergence = None

    def record(self, layout, result):
        """Keep one step's errors compactly: the layout's labels (shared while they repeat) and the
        numbers as arrays."""
        self._rows.append((layout.labels, result.max_abs, result.norm_rel))

    @property
    def steps(self):
        """Per step, a dict ``label -> {"max_abs", "max_rel"}``."""
        return [{label: {"max_abs": a, "max_rel": r} for label, a, r in zip(labels, max_abs.tolist(), norm_rel.tolist())}
                for labels, max_abs, norm_rel in self._rows]

    def __len__(self):
        return len(self._rows)

    def worst(self):
        """``(step, label, max_abs, norm_rel)`` of the largest error relative to the quantity's
        largest magnitude, or None."""
        best = None
        for i, (labels, max_abs, norm_rel) in enumerate(self._rows):
            if len(labels):
                k = int(np.argmax(norm_rel))
                if best is None or norm_rel[k] > best[3]:
                    best = (i, labels[k], float(max_abs[k]), float(norm_rel[k]))
        return best

    def worst_by_kind(self):
        """Per kind of quantity (output, loss, grad, ...), the largest max-abs error relative to
        the quantity's largest magnitude over all steps."""
        out = {}
        for labels, _, norm_rel in self._rows:
            for label, r in zip(labels, norm_rel.tolist()):
                kind = label.rsplit(" ", 1)[-1].split(".")[0]
                out[kind] = max(out.get(kind, 0.0), r)
        return out

    def summary(self):
        """A readable account: steps, quantities, worst errors, drift."""
        n_q = len(self._rows[0][0]) if self._rows else 0
        lines = [f"crosscheck lockstep: {len(self)} steps, {n_q} quantities per step, all matched "
                 f"({self.dtype}; {self._tol_text}; {'re-synchronised each step' if self.resync else 'free-running'})"]
        kinds = self.worst_by_kind()
        if kinds:
            lines.append("  worst error by quantity (max abs / max magnitude): " +
                         ", ".join(f"{k} {v:.2g}" for k, v in kinds.items()))
        w = self.worst()
        if w:
            lines.append(f"  worst overall: step {w[0]}, {w[1]}: max abs {w[2]:.3g} ({w[3]:.3g} of its largest magnitude)")
        if self.drift:
            lines.append(f"  free-running drift (max relative parameter difference to an unsynchronised twin): "
                         f"step 0 {self.drift[0]:.2g}, step {len(self.drift) - 1} {self.drift[-1]:.2g}, "
                         f"max {max(self.drift):.2g}")
            lines.append("  every per-step check passed, so this drift is numerics (rounding differences "
                         "amplified by the training dynamics), not a bug")
        return "\n".join(lines)

    def to_dict(self):
        return {"steps": self.steps, "drift": list(self.drift), "tolerance": self.tolerance, "dtype": self.dtype,
                "resync": self.resync, "losses": list(self.losses), "torch_losses": list(self.torch_losses)}

    def plot_drift(self, path):
        """Write a PNG of the free-running drift per step (needs matplotlib)."""
        if not self.drift:
            raise ValueError("plot_drift: no drift recorded; run lockstep with resync=False")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.semilogy(range(len(self.drift)), np.maximum(self.drift, 1e-17))
        ax.set_xlabel("step")
        ax.set_ylabel("max relative parameter difference")
        ax.set_title("handbp vs a free-running torch twin")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
