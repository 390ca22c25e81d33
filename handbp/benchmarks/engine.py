"""handbp's training step against a torch eager step and a minimal fused NumPy loop.

One step = zero the gradients, forward, loss (½·mean((h − y)²), the notebook's), backward, plain
SGD update, on the notebook's sigmoid network at four sizes. The minimal loop is the same maths
with no module objects, the practical limit of a NumPy implementation. All three run in one
process, interleaved round by round, with the same dtype and thread count.
"""
import datetime
import json
import os
import statistics
import sys

import numpy as np

from .common import block_time, fix_threads, machine_line, torch_sgd_step

# (hidden depth, width, batch); batch 1 is one unbatched sample (in_features,), as in the notebook
SIZES = [(5, 32, 1), (20, 128, 1), (5, 256, 256), (3, 1024, 512)]


def add_arguments(parser):
    parser.add_argument("--sizes", default=None, help="depth:width:batch,... (default: "
                        + ",".join(f"{d}:{w}:{b}" for d, w, b in SIZES) + ")")
    parser.add_argument("--repeats", type=int, default=7, help="rounds per size; each round times a block of "
                        "steps per method (default 7)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per block (default 0.2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")


def parse_sizes(text):
    if not text:
        return list(SIZES)
    out = []
    for part in text.split(","):
        try:
            d, w, b = (int(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"--sizes: expected depth:width:batch items, got {part!r}") from None
        if d < 0 or w < 1 or b < 1:
            raise ValueError(f"--sizes: expected depth ≥ 0, width ≥ 1, batch ≥ 1, got {part!r}")
        out.append((d, w, b))
    return out


def _shapes(depth, width, batch):
    n_in, n_out = (10, 2) if batch == 1 else (width, width)
    return n_in, n_out, ((n_in,) if batch == 1 else (batch, n_in)), ((n_out,) if batch == 1 else (batch, n_out))


def make_steps(depth, width, batch, dtype, rng):
    """Three zero-argument step functions (handbp, torch, minimal) on identical networks and data."""
    import handbp as hb
    n_in, n_out, xs, ys = _shapes(depth, width, batch)
    model = hb.DNN(depth, width, n_in, n_out, activation=hb.Sigmoid, init="torch", rng=rng, dtype=dtype)
    x, y = rng.normal(size=xs).astype(dtype), rng.normal(size=ys).astype(dtype)
    loss, opt = hb.MeanSquaredError(), hb.optim.SGD(model.parameters(), lr=0.01)

    def handbp_step():
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()

    # the minimal loop: lists of arrays, the same maths written out
    Ws = [m.weight.data.copy() for m in model if isinstance(m, hb.Linear)]
    bs = [m.bias.data.copy() for m in model if isinstance(m, hb.Linear)]

    def minimal_step():
        hs = [x]
        h = x
        for W, b in zip(Ws, bs):
            h = 1.0 / (1.0 + np.exp(-(h @ W.T + b)))
            hs.append(h)
        d = (h - y) / h.size
        for i in range(len(Ws) - 1, -1, -1):
            out, inp = hs[i + 1], hs[i]
            d = d * out * (1.0 - out)
            gW = np.outer(d, inp) if inp.ndim == 1 else d.T @ inp
            gb = d if d.ndim == 1 else d.sum(axis=0)
            d = d @ Ws[i]
            Ws[i] -= 0.01 * gW
            bs[i] -= 0.01 * gb

    try:
        torch_step = torch_sgd_step(model, x, y)
    except ImportError:
        torch_step = None
    # what each step updates, so that a test can check that the three do the same maths
    handbp_step.state = model
    minimal_step.state = (Ws, bs)
    if torch_step is not None:
        torch_step.state = torch_step.model
    params = sum(p.data.size for p in model.parameters())
    return {"handbp": handbp_step, "torch": torch_step, "minimal": minimal_step}, params


def measure(sizes, repeats, min_time, dtype, progress=None):
    """One row per size: median seconds per step of each method, median per-round ratios, and the
    per-round figures themselves (``rounds``). A progress bar only when stderr is a terminal."""
    rows = []
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(sizes) * repeats, desc="bench engine", unit="round", leave=False)
    for depth, width, batch in sizes:
        steps, params = make_steps(depth, width, batch, np.dtype(dtype), np.random.default_rng(0))
        methods = [m for m, f in steps.items() if f is not None]
        for m in methods:                       # warm up
            steps[m]()
        times = {m: [] for m in methods}
        for _ in range(repeats):                # interleaved: noise hits every method alike
            for m in methods:
                times[m].append(block_time(steps[m], min_time / len(methods)))
            if bar is not None:
                bar.update(1)
        med = {m: statistics.median(v) for m, v in times.items()}
        ratios = {}
        if "torch" in med:
            ratios["torch/handbp"] = statistics.median(t / h for t, h in zip(times["torch"], times["handbp"]))
        ratios["handbp/minimal"] = statistics.median(h / m for h, m in zip(times["handbp"], times["minimal"]))
        rows.append({"depth": depth, "width": width, "batch": batch, "params": params, "seconds": med,
                     "ratios": ratios, "rounds": times})
    if bar is not None:
        bar.close()
    return rows


def _torch_version():
    try:
        import torch
    except ImportError:
        return "torch not installed"
    return f"torch {torch.__version__} eager"


def _fmt(seconds):
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"


def run(args):
    if args.repeats < 1:
        raise ValueError(f"--repeats: expected an integer ≥ 1, got {args.repeats}")
    if args.threads < 1:
        raise ValueError(f"--threads: expected an integer ≥ 1, got {args.threads}")
    if not args.min_time > 0:
        raise ValueError(f"--min-time: expected seconds > 0, got {args.min_time}")
    sizes = parse_sizes(args.sizes)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise ValueError(f"--json: expected a path in an existing folder, got {args.json!r}")
    threads = fix_threads(args.threads)
    rows = measure(sizes, args.repeats, args.min_time, args.dtype)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"handbp bench engine — {when}")
    print(machine_line())
    print(f"{threads}; dtype {args.dtype}; median of {args.repeats} interleaved rounds; {_torch_version()}")
    print("one training step: zero_grad, forward, ½·mean((h−y)²), backward, SGD; the notebook's sigmoid DNN")
    print(f"{'depth':>5} {'width':>5} {'batch':>5} {'params':>9} {'handbp':>12} {'torch':>12} {'minimal':>12} "
          f"{'torch/handbp':>12} {'handbp/minimal':>14}")
    for r in rows:
        s, q = r["seconds"], r["ratios"]
        torch_t = _fmt(s["torch"]) if "torch" in s else "         n/a"
        tr = f"{q['torch/handbp']:11.2f}×" if "torch/handbp" in q else "         n/a"
        print(f"{r['depth']:>5} {r['width']:>5} {r['batch']:>5} {r['params']:>9} {_fmt(s['handbp']):>12} "
              f"{torch_t:>12} {_fmt(s['minimal']):>12} {tr:>12} {q['handbp/minimal']:13.2f}×")
    print("batch 1 = one unbatched sample (10 features in, 2 out); batched rows use width features in and out; "
          "weights from torch's default init, the same in all three")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": when, "machine": machine_line(), "threads": threads, "dtype": args.dtype,
                       "torch": _torch_version(), "repeats": args.repeats, "min_time": args.min_time,
                       "rows": rows}, f, indent=2)
    return 0
