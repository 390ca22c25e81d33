"""What a grading process pays for: lockstep runs (matching, mismatching and rechecked, float32)
import neither torch._dynamo nor sympy, which torch.optim's wrappers and an upstream gradient
passed to ``backward`` would pull in (each longer than importing torch); the optimizer twins that
avoid them update exactly as torch's own classes."""
import subprocess
import sys

import numpy as np
import pytest

RUNS = '''
import sys
import numpy as np
import crosscheck as cc, handbp as hb

class Doubled(hb.Linear):                      # a wrong bias gradient: a mismatch, rechecked before it is reported
    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad *= 2
        return dx

rng = np.random.default_rng(0)
for dtype in (np.float64, np.float32):
    for make in (lambda p: hb.optim.SGD(p, lr=0.1, momentum=0.9), hb.optim.Adam, hb.optim.AdamW, hb.optim.RMSprop,
                 hb.optim.Adagrad):
        model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng)).to(dtype)
        data = [(rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=(5, 2)).astype(dtype))] * 2
        cc.lockstep(model, hb.MSELoss(), make(model.parameters()), data)
    model = hb.Sequential(Doubled(3, 2, rng=rng)).to(dtype)
    try:
        cc.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1), data)
    except cc.Divergence:
        pass
print(sorted(m for m in ("torch._dynamo", "sympy", "torch.fx.experimental.symbolic_shapes") if m in sys.modules))
'''


def test_lockstep_imports_neither_dynamo_nor_sympy():
    done = subprocess.run([sys.executable, "-c", RUNS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_eager_optimizer_twins_update_bit_for_bit_as_torchs_classes(name, kwargs, dtype):
    import torch
    from crosscheck.twins import eager
    cls = getattr(torch.optim, name)
    assert eager(cls) is not cls and issubclass(eager(cls), cls) and eager(cls) is eager(cls)
    rng = np.random.default_rng(1)
    start = rng.normal(size=(4, 3)).astype(dtype)
    grads = [rng.normal(size=(4, 3)).astype(dtype) for _ in range(5)]
    finals = []
    for optimizer_class in (eager(cls), cls):
        p = torch.nn.Parameter(torch.from_numpy(start.copy()))
        opt = optimizer_class([p], **kwargs)
        for g in grads:
            opt.zero_grad()
            p.grad = torch.from_numpy(g.copy())
            opt.step()
        finals.append(p.detach().numpy().copy())
    assert np.array_equal(finals[0], finals[1])                       # bit for bit: no tolerance
