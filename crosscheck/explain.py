"""The torch side of ``handbp.explain``: the twin's values and ``grad_fn`` names for one step."""
import numpy as np

from handbp.inspect import leaves
from handbp.structure import flatten

from ._torch import require_torch, to_numpy
from .mirror import mirror, target_tensor, torch_dtype


def reference(model, loss, x, y):
    """Run the twin of ``model`` once on ``(x, y)``; return ``{"values": {key: array}, "grad_fn":
    {key: name}}`` with keys ``loss``, ``grad_pred``, ``grad_input:<path>``, ``grad:<param name>``."""
    require_torch()
    twin, tloss = mirror(model), mirror(loss)
    paths = [p for p, _ in leaves(model)]
    dtype = torch_dtype(model.dtype)
    import torch
    x = np.asarray(x)
    xt = torch.from_numpy(x.astype(np.int64)) if x.dtype.kind in "iu" else \
        torch.from_numpy(np.array(x, copy=True)).to(dtype).requires_grad_(True)
    h, inputs, fns = xt, [], {}
    for p in paths:
        inputs.append(h)
        h = (twin.get_submodule(p) if p else twin)(h)
        for t in flatten(h):              # (a tuple: several outputs)
            if t.requires_grad:
                t.retain_grad()
        first = flatten(h)[0]
        fns[f"grad_input:{p}"] = type(first.grad_fn).__name__ if first.grad_fn is not None else None
    pred = h
    value = tloss(pred, target_tensor(y, model.dtype))
    value.backward()
    values = {"loss": to_numpy(value), "grad_pred": to_numpy(pred.grad)}
    fns["loss"] = type(value.grad_fn).__name__
    for p, inp in zip(paths, inputs):
        values[f"grad_input:{p}"] = None if type(inp) is tuple else to_numpy(inp.grad)
    for n, tp in twin.named_parameters():
        values[f"grad:{n}"] = to_numpy(tp.grad)
        fns[f"grad:{n}"] = "AccumulateGrad"
    return {"values": values, "grad_fn": fns}
