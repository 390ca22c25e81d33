"""Shared benchmark plumbing: fixing thread counts and timing medians."""
import os
import platform
import statistics
import time


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
