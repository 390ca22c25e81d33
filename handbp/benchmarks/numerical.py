"""The seed notebook's closing experiment: numerical differentiation against backprop, per training step.

The notebook's network (``hb.DNN``: 10 inputs, ``depth`` hidden layers of ``width`` sigmoid units,
2 outputs, N(0, 0.01) init), its loss (½·mean((h − y)²)) and one unbatched sample, trained by plain
SGD (lr 0.01). One training step of each method:

* ``loop``: the numerical gradient by the element-by-element loop (2 forward passes per
  parameter), then ``optimizer.step()``;
* ``fast``: the same numerical gradient with the cached prefix and stacked perturbations;
* ``backprop``: ``zero_grad``, forward, loss, backward, ``step`` (handbp);
* ``torch``: the same step in torch eager, from the same weights.

Before anything runs, each numerical step's time is estimated (the loop: 2 × parameters × one
forward pass). Steps estimated above ``--max-step`` are not run and are shown as estimates,
marked ``est.``; a run whose estimated total exceeds ``--limit`` is refused; ``--force`` measures
everything. Methods are interleaved round by round, so machine noise hits them alike.
"""
import datetime
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from .common import fix_threads, machine_line, torch_sgd_step

WIDTHS = (32, 64, 128)
DEPTHS = (5, 10, 20)
METHODS = ("loop", "fast", "backprop", "torch")
NUMERICAL = ("loop", "fast")
N_IN, N_OUT = 10, 2
SLOW = 0.5          # a numerical step estimated above this many seconds is timed once, with no warm-up


def add_arguments(parser):
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)),
                        help="hidden widths, comma-separated (default %(default)s)")
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)),
                        help="hidden depths, comma-separated (default %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="some of loop,fast,backprop,torch (default all)")
    parser.add_argument("--repeats", type=int, default=5,
                        help=f"timed rounds per method and size (default 5); numerical steps estimated above "
                             f"{SLOW:g} s are timed once")
    parser.add_argument("--min-time", type=float, default=0.05,
                        help="seconds per timed block of backprop or torch steps (default 0.05)")
    parser.add_argument("--max-step", type=float, default=8.0,
                        help="numerical steps estimated above this many seconds are not run, only estimated "
                             "(default 8; 'inf' runs all)")
    parser.add_argument("--limit", type=float, default=600.0,
                        help="refuse a run estimated above this many seconds in all (default 600)")
    parser.add_argument("--force", action="store_true",
                        help="run every method at every size however long it takes (ignores --max-step and --limit)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG of time per step against parameter count (needs matplotlib)")


# -- arguments --------------------------------------------------------------------------------------
def _int_list(text, name, low):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < low for v in values):
        raise ValueError(f"--{name}: expected integers ≥ {low}, got {text!r}")
    return list(dict.fromkeys(values))


def parse_args(args):
    """Checked settings from the parsed arguments: ValueError naming the option otherwise."""
    widths = _int_list(args.widths, "widths", 1)
    depths = _int_list(args.depths, "depths", 0)
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ValueError(f"--methods: expected some of {','.join(METHODS)}, got {args.methods!r}")
    methods = [m for m in METHODS if m in methods]
    if args.repeats < 1:
        raise ValueError(f"--repeats: expected an integer ≥ 1, got {args.repeats}")
    if args.threads < 1:
        raise ValueError(f"--threads: expected an integer ≥ 1, got {args.threads}")
    for name in ("min_time", "max_step", "limit"):
        v = getattr(args, name)
        if math.isnan(v) or v <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected seconds > 0, got {v}")
    for name in ("json", "plot"):
        path = getattr(args, name)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"--{name}: expected a path in an existing folder, got {path!r}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot: needs matplotlib (pip install 'handbp[plot]')") from None
    return widths, depths, methods


# -- one size ---------------------------------------------------------------------------------------
def params_of(width, depth):
    sizes = [N_IN] + [width] * (depth + 1) + [N_OUT]
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def make_problem(width, depth, seed=0):
    """The notebook's network at this size, its sample and its loss (the same for every method)."""
    import handbp as hb
    rng = np.random.default_rng(seed)
    model = hb.DNN(depth, width, N_IN, N_OUT, activation=hb.Sigmoid, rng=rng)
    x, y = rng.normal(0.0, 1.0, (N_IN,)), rng.normal(0.0, 1.0, (N_OUT,))
    return model, x, y


def make_steps(width, depth, methods):
    """One zero-argument training step per method, each on its own copy of the same network."""
    import handbp as hb
    from handbp.numerical import numerical_step
    steps = {}
    for method in methods:
        if method == "torch":
            steps[method] = _torch_step(width, depth)
            continue
        model, x, y = make_problem(width, depth)
        loss, opt = hb.MeanSquaredError(), hb.optim.SGD(model.parameters(), lr=0.01)
        if method in NUMERICAL:
            def step(model=model, loss=loss, opt=opt, x=x, y=y, how=method):
                numerical_step(model, loss, opt, x, y, method=how)
        else:
            def step(model=model, loss=loss, opt=opt, x=x, y=y):
                opt.zero_grad()
                loss(model(x), y)
                model.backward(loss.backward())
                opt.step()
        step.model = model
        steps[method] = step
    return steps


def _torch_step(width, depth):
    """The twin step in torch eager, or None without torch."""
    model, x, y = make_problem(width, depth)
    try:
        return torch_sgd_step(model, x, y)
    except ImportError:
        return None


def _per_call(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def estimate(width, depth):
    """Seconds per numerical step, estimated before running one.

    loop: 2 × parameters × one forward pass and loss (timed here, the median of 5 blocks);
    fast: each layer's 2k perturbations cost a row of the network from that layer on: a batch of
    256 rows through the whole network is timed, and scaled by the share of the network each
    layer's perturbations go through."""
    import handbp as hb
    model, x, y = make_problem(width, depth)
    loss = hb.MeanSquaredError()
    forward = statistics.median(_per_call(lambda: loss(model(x), y), 10) for _ in range(5))
    P = params_of(width, depth)
    rows = np.random.default_rng(1).normal(size=(256, N_IN))
    per_row = statistics.median(_per_call(lambda: model.forward(rows), 3) for _ in range(3)) / len(rows)
    linears = [m for m in model if isinstance(m, hb.Linear)]
    n = len(linears)
    share = sum(2 * (m.weight.data.size + m.bias.data.size) * (max(n - j - 2, 0) + 0.5) / n
                for j, m in enumerate(linears))
    return {"loop": 2 * P * forward, "fast": per_row * share, "forward": forward}


def _block(fn, min_time):
    """Seconds per call of a fast step: as many calls as fill ``min_time``."""
    n = 1
    while True:
        t = _per_call(fn, n) * n
        if t >= min_time:
            return t / n
        n = max(n * 2, int(n * min_time / max(t, 1e-9)) + 1)


# -- the run ----------------------------------------------------------------------------------------
def plan(widths, depths, methods, repeats, max_step, force):
    """Per size: the estimates, the methods to run, and how many timed rounds each gets."""
    cells = []
    for width in widths:
        for depth in depths:
            est = estimate(width, depth) if any(m in NUMERICAL for m in methods) else {}
            run, rounds, skipped = [], {}, []
            for m in methods:
                if m in NUMERICAL:
                    if est[m] > max_step and not force:
                        skipped.append(m)
                        continue
                    rounds[m] = 1 if est[m] > SLOW else repeats
                else:
                    rounds[m] = repeats
                run.append(m)
            cells.append({"width": width, "depth": depth, "params": params_of(width, depth), "estimate": est,
                          "run": run, "rounds": rounds, "skipped": skipped})
    return cells


def planned_seconds(cells, min_time):
    """The estimated length of the whole run (warm-ups included)."""
    total = 0.0
    for c in cells:
        for m in c["run"]:
            if m in NUMERICAL:
                e = c["estimate"][m]
                total += e * (c["rounds"][m] + (0 if e > SLOW else 1))
            else:
                total += min_time * (c["rounds"][m] + 1) + 0.05
    return total


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measure(cells, min_time, progress=None):
    """Run the plan: per size, every method's rounds interleaved; fills ``seconds`` (medians) and
    ``times`` (every timed round) into each cell."""
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        total = sum(sum(c["rounds"].values()) for c in cells)
        bar = tqdm(total=total, desc="bench numerical", unit="step", leave=False)
    for c in cells:
        steps = make_steps(c["width"], c["depth"], c["run"])
        c["run"] = [m for m in c["run"] if steps[m] is not None]
        times = {m: [] for m in c["run"]}
        for m in c["run"]:
            if m not in NUMERICAL or c["estimate"][m] <= SLOW:
                steps[m]()                                   # warm-up
        for r in range(max(c["rounds"].values(), default=0)):
            for m in c["run"]:
                if r >= c["rounds"][m]:
                    continue
                if bar is not None:
                    bar.set_postfix_str(f"width {c['width']}, depth {c['depth']}: {m}")
                if m in NUMERICAL:
                    times[m].append(_per_call(steps[m], 1))
                else:
                    times[m].append(_block(steps[m], min_time))
                if bar is not None:
                    bar.update(1)
        c["times"] = times
        c["seconds"] = {m: statistics.median(v) for m, v in times.items()}
    if bar is not None:
        bar.close()
    return cells


def ratios(seconds):
    """Measured ratios only: numerical over backprop, the loop over the fast method, handbp over torch."""
    out = {}
    for num in NUMERICAL:
        if num in seconds and "backprop" in seconds:
            out[f"{num}/backprop"] = seconds[num] / seconds["backprop"]
    if "loop" in seconds and "fast" in seconds:
        out["loop/fast"] = seconds["loop"] / seconds["fast"]
    if "backprop" in seconds and "torch" in seconds:
        out["backprop/torch"] = seconds["backprop"] / seconds["torch"]
    return out


def _fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _fmt_ratio(r):
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2f}×"


def table(cells, methods):
    """The printed table: measured values, and estimates marked ``est.``, never mixed up."""
    cols = [("width", 5), ("depth", 5), ("params", 8)] + [(m, 14) for m in methods]
    ratio_names = [r for r in ("loop/backprop", "fast/backprop", "loop/fast", "backprop/torch")
                   if all(part in methods for part in r.split("/"))]
    cols += [(r, 15) for r in ratio_names]
    lines = [" ".join(f"{name:>{w}}" for name, w in cols)]
    for c in cells:
        sec, est = c.get("seconds", {}), c["estimate"]
        cells_ = [str(c["width"]), str(c["depth"]), str(c["params"])]
        value = {}
        for m in methods:
            if m in sec:
                cells_.append(_fmt_time(sec[m]))
                value[m] = (sec[m], False)
            elif m in est and m in c["skipped"]:
                cells_.append(f"est. {_fmt_time(est[m])}")
                value[m] = (est[m], True)
            else:
                cells_.append("n/a")
        for r in ratio_names:
            a, b = r.split("/")
            if a in value and b in value:
                q = value[a][0] / value[b][0]
                cells_.append(f"est. {_fmt_ratio(q)}" if value[a][1] or value[b][1] else _fmt_ratio(q))
            else:
                cells_.append("n/a")
        lines.append(" ".join(f"{v:>{w}}" for v, (_, w) in zip(cells_, cols)))
    return lines


def _torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def plot(cells, methods, path, title):
    """Two panels: seconds per step against parameter count (one line per method; estimates
    dashed with hollow markers), and numerical ÷ backprop against parameter count with slope 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"loop": "tab:red", "fast": "tab:orange", "backprop": "tab:blue", "torch": "tab:green"}
    labels = {"loop": "numerical, element loop", "fast": "numerical, fast (stacked)",
              "backprop": "handbp backprop", "torch": "torch autograd"}
    order = sorted(cells, key=lambda c: c["params"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for m in methods:
        pts = [(c["params"], c["seconds"][m], False) if m in c.get("seconds", {}) else
               (c["params"], c["estimate"][m], True) if m in c["skipped"] else None for c in order]
        pts = [p for p in pts if p is not None]
        if not pts:
            continue
        meas = [(p, s) for p, s, e in pts if not e]
        if meas:
            ax.plot(*zip(*meas), "o-", color=colors[m], label=labels[m])
        if any(e for _, _, e in pts):
            ax.plot([p for p, _, _ in pts], [s for _, s, _ in pts], "--", color=colors[m], lw=1,
                    label=f"{labels[m]} (dashed, hollow: estimated)")
            est = [(p, s) for p, s, e in pts if e]
            ax.plot(*zip(*est), "o", mfc="none", color=colors[m])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("seconds per training step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    for m in NUMERICAL:
        if m not in methods or "backprop" not in methods:
            continue
        pts = [(c["params"], c["seconds"][m] / c["seconds"]["backprop"]) for c in order
               if m in c.get("seconds", {}) and "backprop" in c.get("seconds", {})]
        if pts:
            ax2.plot(*zip(*pts), "o-", color=colors[m], label=f"{labels[m]} ÷ backprop")
    ps = [c["params"] for c in order]
    if ps and ax2.lines:
        ref = ax2.lines[0].get_ydata()[0] / ax2.lines[0].get_xdata()[0]
        ax2.plot([min(ps), max(ps)], [ref * min(ps), ref * max(ps)], ":", color="gray",
                 label="∝ parameters (slope 1)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("parameters")
    ax2.set_ylabel("numerical ÷ backprop (measured)")
    ax2.grid(True, which="both", alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args):
    widths, depths, methods = parse_args(args)
    threads = fix_threads(args.threads)
    torch_version = _torch_version()
    if "torch" in methods and torch_version is None:
        print("torch is not installed: the torch column is skipped")
        methods = [m for m in methods if m != "torch"]
    max_step = math.inf if args.force else args.max_step
    cells = plan(widths, depths, methods, args.repeats, max_step, args.force)
    total = planned_seconds(cells, args.min_time)
    if total > args.limit and not args.force:
        worst = max(((c["estimate"][m], m, c) for c in cells for m in c["run"] if m in NUMERICAL),
                    default=None, key=lambda t: t[0])
        detail = (f"; the slowest: {worst[1]} at width {worst[2]['width']}, depth {worst[2]['depth']}, "
                  f"about {_duration(worst[0])} per step") if worst else ""
        raise ValueError(f"these sizes would take about {_duration(total)} (over --limit {args.limit:g} s){detail}; "
                         f"pick smaller --widths/--depths, fewer --repeats or a lower --max-step, or pass --force")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"handbp bench numerical — {when}")
    print(machine_line())
    print(f"{threads}; float64; " + (f"torch {torch_version} eager" if torch_version else "no torch"))
    print(f"the notebook's DNN (10 → width × (depth + 1) sigmoid layers → 2, N(0, 0.01) init), ½·mean((h − y)²), "
          f"one sample, SGD lr 0.01; estimated run: {_duration(total)}")
    cells = measure(cells, args.min_time)
    print("seconds per training step (numerical: the gradient by central differences, 2 forward passes per "
          "parameter, then SGD; backprop: forward, backward, SGD):")
    for line in table(cells, methods):
        print(line)
    print(f"median of {args.repeats} interleaved rounds (numerical steps estimated above {SLOW:g} s: one round, "
          f"no warm-up); backprop and torch rounds time blocks of ≥ {args.min_time:g} s")
    if any(c["skipped"] for c in cells):
        print(f"est. = estimated, not measured: estimated above --max-step {args.max_step:g} s per step "
              f"(the loop: 2 × params × one forward pass); --force measures them")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_json(cells, methods, when, threads, torch_version, args), f, indent=2)
    if args.plot:
        plot(cells, methods, args.plot, f"handbp bench numerical, {when}: the notebook's DNN, one sample\n"
                                        f"{machine_line()}; {threads}")
        print(f"plot: {args.plot}")
    return 0


def _json(cells, methods, when, threads, torch_version, args):
    rows = []
    for c in cells:
        rows.append({"width": c["width"], "depth": c["depth"], "params": c["params"],
                     "seconds": c["seconds"], "times": c["times"], "ratios": ratios(c["seconds"]),
                     "estimated": {m: c["estimate"][m] for m in NUMERICAL if m in c["estimate"]},
                     "forward_seconds": c["estimate"].get("forward"),
                     "skipped": c["skipped"]})
    return {"date": when, "machine": machine_line(), "threads": threads, "dtype": "float64",
            "torch": torch_version, "methods": methods, "repeats": args.repeats, "min_time": args.min_time,
            "max_step": None if args.force or math.isinf(args.max_step) else args.max_step,
            "force": bool(args.force), "rows": rows}
