"""Shared benchmark plumbing: fixing thread counts and timing medians."""
import os
import platform
import statistics
import time

import numpy as np


def fix_threads(n):
    """Pin NumPy's BLAS and torch's intra-op pool to ``n`` threads; returns a line saying so."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
        how = "threadpoolctl"
    except ImportError:
        how = "env only"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    return f"threads: numpy/BLAS={n} ({how}), torch={n}"


def cpu_name():
    """The processor's model name (from /proc/cpuinfo on Linux), or the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line():
    import numpy as np
    return (f"machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} cpus, "
            f"python {platform.python_version()}, numpy {np.__version__}")


def median_time(fn, repeats, warmup=1, min_time=0.0):
    """Median seconds per call of ``fn`` over ``repeats`` timed calls (after ``warmup``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def block_time(fn, min_time, clock=time.perf_counter):
    """Seconds per call of ``fn`` on ``clock``, timing as many calls as fill ``min_time``."""
    n = 1
    while True:
        start = clock()
        for _ in range(n):
            fn()
        t = clock() - start
        if t >= min_time:
            return t / n
        n = max(n * 2, int(n * min_time / max(t, 1e-9)) + 1)


def torch_sgd_step(model, x, y, lr=0.01):
    """The same training step as handbp's on the notebook's network (a Sequential of Linear and
    Sigmoid), in torch eager from the same weights: zero_grad, forward, ½·mean((h − y)²), backward,
    SGD. Returns the step function, with the torch network as ``step.model``."""
    import torch

    import handbp as hb
    tdtype = torch.float64 if model.dtype == np.float64 else torch.float32
    layers = []
    for m in model:
        if isinstance(m, hb.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features, dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(m.weight.data))
                lin.bias.copy_(torch.from_numpy(m.bias.data))
            layers.append(lin)
        else:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        out = 0.5 * torch.mean((net(xt) - yt) ** 2)
        out.backward()
        opt.step()
    step.model = net
    return step
