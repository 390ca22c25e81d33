"""The torch side of ``handbp.explain``: the twin's values and ``grad_fn`` names for one step."""
import numpy as np

from handbp.recording import leaves

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
    xt = torch.from_numpy(np.array(x, copy=True)).to(dtype).requires_grad_(True)
    h, inputs, fns = xt, [], {}
    for p in paths:
        inputs.append(h)
        h = (twin.get_submodule(p) if p else twin)(h)
        h.retain_grad()
        fns[f"grad_input:{p}"] = type(h.grad_fn).__name__ if h.grad_fn is not None else None
    pred = h
    value = tloss(pred, target_tensor(y, model.dtype))
    value.backward()
    values = {"loss": to_numpy(value), "grad_pred": to_numpy(pred.grad)}
    fns["loss"] = type(value.grad_fn).__name__
    for p, inp in zip(paths, inputs):
        values[f"grad_input:{p}"] = to_numpy(inp.grad)
    for n, tp in twin.named_parameters():
        values[f"grad:{n}"] = to_numpy(tp.grad)
        fns[f"grad:{n}"] = "AccumulateGrad"
    return {"values": values, "grad_fn": fns}
