"""handbp's recurrent layers against torch eager: forward and backward over a sequence.

One call = ``zero_grad``, the forward over the whole sequence (T steps), the backward from a fixed
gradient of every step's output (backpropagation through time), on the same weights and data, in
the same dtype, one thread each. torch's side is ``torch.nn.LSTM`` (GRU, RNN) as a user runs it:
``out, _ = lstm(x); out.backward(dy)``, on whatever kernel torch picks (for float32 LSTMs and GRUs
on x86, oneDNN's fused RNN primitive; for float64, its own loop of ATen ops). The goals the project
set: batch 1, hidden 32, length 50 (the overhead-bound case) at least 2× faster than torch; batch
64, hidden 256, length 50 at least as fast.
"""
import datetime
import json
import os
import statistics
import sys
import time

import numpy as np

from ..commands import have_torch
from .common import block_time, fix_threads, machine_line

# (batch, hidden, length); input size = hidden
SIZES = [(1, 32, 50), (64, 256, 50)]
GOALS = {(1, 32, 50): 2.0, (64, 256, 50): 1.0}       # torch time / handbp time, at least
KINDS = ("LSTM", "GRU", "RNN")


def add_arguments(parser):
    parser.add_argument("--kinds", default="LSTM", help="comma-separated, of LSTM, GRU, RNN (default LSTM)")
    parser.add_argument("--sizes", default=None, help="batch:hidden:length,... (default: "
                        + ",".join(f"{b}:{h}:{t}" for b, h, t in SIZES) + ")")
    parser.add_argument("--dtypes", default="float64,float32", help="(default float64,float32)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timed block (default 0.3)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="cpu: this process's CPU time "
                        "(default; a machine shared with other work slows wall time, not CPU time, with 1 thread "
                        "each); wall: elapsed time")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")


def _parse(args):
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--kinds: expected names among {', '.join(KINDS)}, got {args.kinds!r}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in ("float64", "float32") for d in dtypes):
        raise ValueError(f"--dtypes: expected float64 and/or float32, got {args.dtypes!r}")
    sizes = list(SIZES)
    if args.sizes:
        sizes = []
        for part in args.sizes.split(","):
            try:
                b, h, t = (int(v) for v in part.split(":"))
            except ValueError:
                raise ValueError(f"--sizes: expected batch:hidden:length items, got {part!r}") from None
            if min(b, h, t) < 1:
                raise ValueError(f"--sizes: expected positive sizes, got {part!r}")
            sizes.append((b, h, t))
    for name in ("repeats", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected an integer ≥ 1, got {getattr(args, name)}")
    if not args.min_time > 0:
        raise ValueError(f"--min-time: expected seconds > 0, got {args.min_time}")
    return kinds, sizes, dtypes


def make_calls(kind, batch, hidden, length, dtype, rng):
    """Two zero-argument functions (handbp, torch) that run forward + backward over one sequence
    on identical layers and data; each function's ``.grads()`` gives its parameter gradients by name."""
    import torch

    import handbp as hb
    dtype = np.dtype(dtype)
    layer = getattr(hb, kind)(hidden, hidden, dtype=dtype, rng=rng)
    twin = getattr(torch.nn, kind)(hidden, hidden, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            getattr(twin, name).copy_(torch.from_numpy(p.data))
    x = rng.normal(size=(length, batch, hidden)).astype(dtype)
    dy = rng.normal(size=(length, batch, hidden)).astype(dtype)
    xt, dyt = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(dy.copy())

    def handbp_call():
        layer.zero_grad()
        layer.forward(x)
        return layer.backward((dy, None))

    def torch_call():
        twin.zero_grad()
        xt.grad = None
        out, _ = twin(xt)
        out.backward(dyt)
        return xt.grad

    handbp_call.grads = lambda: {n: p.grad for n, p in layer.named_parameters()}
    torch_call.grads = lambda: {n: p.grad.numpy() for n, p in twin.named_parameters()}
    out, _ = twin(xt)
    torch_call.kernel = type(out.grad_fn).__name__
    return handbp_call, torch_call


def measure(kinds, sizes, dtypes, repeats, min_time, progress=None, clock=time.process_time):
    rows = []
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(kinds) * len(sizes) * len(dtypes) * repeats, desc="bench rnn", unit="round", leave=False)
    for kind in kinds:
        for batch, hidden, length in sizes:
            for dtype in dtypes:
                mine, theirs = make_calls(kind, batch, hidden, length, dtype, np.random.default_rng(0))
                mine(), theirs()                              # warm up
                rounds = []
                for _ in range(repeats):                      # interleaved: noise hits both alike
                    rounds.append((block_time(mine, min_time / 2, clock), block_time(theirs, min_time / 2, clock)))
                    if bar is not None:
                        bar.update(1)
                rows.append({"kind": kind, "batch": batch, "hidden": hidden, "length": length, "dtype": dtype,
                             "handbp": statistics.median(a for a, _ in rounds),
                             "torch": statistics.median(b for _, b in rounds),
                             "ratio": statistics.median(b / a for a, b in rounds),
                             "torch_kernel": theirs.kernel, "rounds": rounds})
    if bar is not None:
        bar.close()
    return rows


def _fmt(seconds):
    return f"{seconds * 1e3:8.3f} ms"


def run(args):
    kinds, sizes, dtypes = _parse(args)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise ValueError(f"--json: expected a path in an existing folder, got {args.json!r}")
    if not have_torch("bench rnn"):
        return 2
    import torch
    threads = fix_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = measure(kinds, sizes, dtypes, args.repeats, args.min_time, clock=clock)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"handbp bench rnn — {when}")
    print(machine_line())
    print(f"{threads}; torch {torch.__version__} eager, numpy {np.__version__}; median of {args.repeats} "
          f"interleaved rounds, {'CPU' if args.clock == 'cpu' else 'wall'} time")
    print("one call: zero_grad, forward over the sequence, backward from the gradient of every output "
          "(input size = hidden size)")
    print(f"{'layer':>5} {'batch':>5} {'hidden':>6} {'length':>6} {'dtype':>8} {'handbp':>11} {'torch':>11} "
          f"{'torch/handbp':>12}  {'goal':>5}  torch's kernel")
    for r in rows:
        goal = GOALS.get((r["batch"], r["hidden"], r["length"]))
        verdict = "" if goal is None else f"≥ {goal:g}× {'met' if r['ratio'] >= goal else 'not met'}"
        print(f"{r['kind']:>5} {r['batch']:>5} {r['hidden']:>6} {r['length']:>6} {r['dtype']:>8} "
              f"{_fmt(r['handbp'])} {_fmt(r['torch'])} {r['ratio']:11.2f}×  {verdict:13s} {r['torch_kernel']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": when, "machine": machine_line(), "threads": threads,
                       "torch": torch.__version__, "numpy": np.__version__, "repeats": args.repeats,
                       "min_time": args.min_time, "clock": args.clock, "rows": rows}, f, indent=2)
    return 0
