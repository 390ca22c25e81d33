"""handbp's Conv2d against torch's, forward and backward, side by side in one process.

One step = zero the gradients, forward, backward of the layer alone with a fixed upstream gradient
(dx, dW and db all computed), at the issue's size: N=64, 16 → 32 channels, 28 × 28, 3 × 3, padding 1,
in float32 and float64, 1 thread each. The two are interleaved round by round; each figure is the
median of the rounds. Then where handbp's time goes (its matrix products against the copies around
them), and the peak extra memory of one step on each side.

Memory: each side's step runs in a fresh process with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_=131072``, so every large block is mapped on allocation and unmapped on
free, for NumPy and torch alike); the peak resident size of the step (VmHWM, reset through
``/proc/self/clear_refs``) less the resident size before it is the step's peak extra memory. For
handbp, tracemalloc's peak (NumPy reports its arrays to it) is printed beside it.
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .common import block_time, fix_threads, machine_line

SIZE = {"batch": 64, "in_channels": 16, "out_channels": 32, "height": 28, "width": 28, "kernel": 3, "padding": 1}
QUICK = {"batch": 4, "in_channels": 2, "out_channels": 3, "height": 8, "width": 8, "kernel": 3, "padding": 1}
GOALS = {"float32": 2.0, "float64": 1.3}        # handbp / torch at most


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per block of steps (default 0.5)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    parser.add_argument("--batch", type=int, default=SIZE["batch"], help=f"N (default {SIZE['batch']})")
    parser.add_argument("--quick", action="store_true", help="a tiny layer, a few rounds: checks the benchmark runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement (two child processes)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")


def make_steps(size, dtype, rng):
    """Two zero-argument steps (handbp, torch) on the same weights, input and upstream gradient."""
    import handbp as hb
    conv = hb.Conv2d(size["in_channels"], size["out_channels"], size["kernel"], padding=size["padding"], rng=rng,
                     dtype=dtype)
    x = rng.normal(size=(size["batch"], size["in_channels"], size["height"], size["width"])).astype(dtype)
    dy = rng.normal(size=(size["batch"], size["out_channels"], size["height"] + 2 * size["padding"] - size["kernel"] + 1,
                          size["width"] + 2 * size["padding"] - size["kernel"] + 1)).astype(dtype)

    def handbp_step():
        conv.zero_grad()
        conv.forward(x)
        return conv.backward(dy)

    handbp_step.layer = conv
    try:
        import torch
    except ImportError:
        return handbp_step, None
    twin = torch.nn.Conv2d(size["in_channels"], size["out_channels"], size["kernel"], padding=size["padding"],
                           dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(conv.weight.data))
        twin.bias.copy_(torch.from_numpy(conv.bias.data))
    xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

    def torch_step():
        twin.zero_grad()
        xt.grad = None
        twin(xt).backward(dyt)
        return xt.grad

    torch_step.layer = twin
    return handbp_step, torch_step


def measure_time(size, dtype, repeats, min_time):
    """Per round, seconds per step of each side (interleaved); their medians and the median ratio."""
    handbp_step, torch_step = make_steps(size, np.dtype(dtype), np.random.default_rng(0))
    steps = {"handbp": handbp_step, "torch": torch_step}
    steps = {k: f for k, f in steps.items() if f is not None}
    for f in steps.values():
        f()
    rounds = {k: [] for k in steps}
    for _ in range(repeats):
        for k, f in steps.items():
            rounds[k].append(block_time(f, min_time / len(steps)))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ratio = statistics.median(h / t for h, t in zip(rounds["handbp"], rounds["torch"])) if "torch" in rounds else None
    return {"seconds": med, "handbp/torch": ratio, "rounds": rounds}


def breakdown(size, dtype, repeats=3):
    """Where handbp's step goes: seconds per step in its matrix products, in building the columns
    (im2col), in scattering them back (col2im), in moving outputs and gradients to and from the
    columns' grid, in padding and cropping; the rest is Python and small arrays."""
    from .. import im2col
    spent = {}
    originals = {}
    parts = {"im2col": "columns (im2col)", "col2im": "scatter back (col2im)", "to_grid": "grid copies",
             "from_grid": "grid copies", "pad": "pad and crop", "crop": "pad and crop"}
    for name, label in parts.items():
        f = originals[name] = getattr(im2col.Geometry, name)

        def timed(*a, _f=f, _label=label, **k):
            t = time.perf_counter()
            out = _f(*a, **k)
            spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - t
            return out
        setattr(im2col.Geometry, name, timed)
    products = [0.0]
    matmul = np.matmul

    def timed_matmul(*a, **k):
        t = time.perf_counter()
        out = matmul(*a, **k)
        products[0] += time.perf_counter() - t
        return out
    from .. import conv as conv_module
    conv_module.np.matmul = timed_matmul
    try:
        handbp_step, _ = make_steps(size, np.dtype(dtype), np.random.default_rng(0))
        handbp_step()
        spent.clear()
        products[0] = 0.0
        t = time.perf_counter()
        for _ in range(repeats):
            handbp_step()
        total = (time.perf_counter() - t) / repeats
    finally:
        conv_module.np.matmul = matmul
        for name, f in originals.items():
            setattr(im2col.Geometry, name, f)
    out = {"matrix products": products[0] / repeats}
    out.update({k: v / repeats for k, v in spent.items()})
    out["the rest"] = max(total - sum(out.values()), 0.0)
    return total, out


CHILD = """
import json, sys, numpy as np
from handbp.benchmarks.conv import make_steps, _rss
side, dtype, size = sys.argv[1], np.dtype(sys.argv[2]), json.loads(sys.argv[3])
from handbp.benchmarks.common import fix_threads
fix_threads(1)
steps = dict(zip(("handbp", "torch"), make_steps(size, dtype, np.random.default_rng(0))))
step = steps[side]
step(); step()
traced = None
if side == "handbp":
    import tracemalloc
    tracemalloc.start()
    step()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    step()
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
before = _rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
step()
print(json.dumps({"rss": _rss("VmHWM") - before, "tracemalloc": traced}))
"""


def _rss(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def measure_memory(size, dtype):
    """Peak extra memory of one step, each side in its own process (see the module docstring);
    None where it cannot be measured (no /proc, or torch missing)."""
    out = {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    for side in ("handbp", "torch"):
        try:
            done = subprocess.run([sys.executable, "-c", CHILD, side, dtype, json.dumps(size)], env=env,
                                  capture_output=True, text=True, timeout=600)
            out[side] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            out[side] = None
    return out


def _fmt(seconds):
    return f"{seconds * 1e3:8.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:8.1f} µs"


def _mb(n):
    return "n/a" if n is None else f"{n / 2 ** 20:.1f} MB"


def _versions():
    try:
        import torch
        t = f"torch {torch.__version__} eager ({torch.backends.mkldnn.is_available() and 'oneDNN' or 'no oneDNN'} built in)"
    except ImportError:
        t = "torch not installed"
    return f"numpy {np.__version__}, {t}"


def run(args):
    for name in ("repeats", "threads", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected an integer ≥ 1, got {getattr(args, name)}")
    if not args.min_time > 0:
        raise ValueError(f"--min-time: expected seconds > 0, got {args.min_time}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise ValueError(f"--json: expected a path in an existing folder, got {args.json!r}")
    size = dict(QUICK) if args.quick else {**SIZE, "batch": args.batch}
    repeats, min_time = (2, 0.02) if args.quick else (args.repeats, args.min_time)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    threads = fix_threads(args.threads)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"handbp bench conv — {when}")
    print(machine_line())
    print(f"{threads}; {_versions()}; median of {repeats} interleaved rounds")
    print(f"one step of Conv2d({size['in_channels']}, {size['out_channels']}, kernel_size={size['kernel']}, "
          f"padding={size['padding']}) on x of shape ({size['batch']}, {size['in_channels']}, {size['height']}, "
          f"{size['width']}): zero_grad, forward, backward (dx, dW, db) with a fixed upstream gradient")
    rows = []
    for dtype in dtypes:
        timing = measure_time(size, dtype, repeats, min_time)
        total, parts = breakdown(size, dtype)
        memory = None if args.no_memory else measure_memory(size, dtype)
        rows.append({"dtype": dtype, **timing, "breakdown": parts, "breakdown_total": total, "memory": memory})
    print(f"{'dtype':>8} {'handbp':>11} {'torch':>11} {'handbp/torch':>13} {'goal':>6}  {'peak extra memory: handbp':>26}"
          f" {'(tracemalloc)':>13} {'torch':>9}")
    missed = []
    for r in rows:
        s, q, goal = r["seconds"], r["handbp/torch"], GOALS[r["dtype"]]
        verdict = "n/a" if q is None else ("met" if q <= goal else "missed")
        if verdict == "missed":
            missed.append(r)
        mem = r["memory"] or {}
        h, t = mem.get("handbp") or {}, mem.get("torch") or {}
        print(f"{r['dtype']:>8} {_fmt(s['handbp']):>11} {_fmt(s['torch']) if 'torch' in s else 'n/a':>11} "
              f"{'n/a' if q is None else f'{q:.2f}×':>13} {f'≤{goal}×':>6}  {_mb(h.get('rss')):>26} "
              f"{_mb(h.get('tracemalloc')):>13} {_mb(t.get('rss')):>9}  goal {verdict}")
    if not args.no_memory:
        print("peak extra memory: the step's peak resident size less the resident size before it (VmHWM − VmRSS, "
              "each side in a fresh process, large blocks mapped and unmapped as they are allocated and freed); "
              "for handbp also tracemalloc's peak, which counts NumPy's arrays")
    print("where handbp's step goes (one step timed part by part, so the parts add to a little more than above):")
    for r in rows:
        parts = ", ".join(f"{k} {v / r['breakdown_total']:.0%}" for k, v in r["breakdown"].items())
        print(f"  {r['dtype']}: {_fmt(r['breakdown_total']).strip()}: {parts}")
    if missed:
        print("goal missed for " + ", ".join(r["dtype"] for r in missed) + ": handbp's matrix products are NumPy's "
              "BLAS (a GEMM over the columns); torch's float32 path is oneDNN's convolution, one kernel with no "
              "separate copies. The rest of handbp's step is the copies into the columns and the col2im scatter "
              "back (see the parts above), whose strided adds are its slowest per element.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": when, "machine": machine_line(), "threads": threads, "versions": _versions(),
                       "size": size, "repeats": repeats, "rows": rows}, f, indent=2)
    return 0
