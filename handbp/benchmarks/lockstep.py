"""What cross-checking costs: lockstep per step against one handbp step plus one torch step, at the
notebook's size; and the project's test suite under ``pytest -n 2`` against a serial run."""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from ..commands import have_torch
from .common import fix_threads, machine_line


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block (default 100)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument("--pytest", action="store_true", help="also time the test suite: pytest -n 2 against "
                        "serial (minutes)")
    parser.add_argument("--tests", default="tests", help="the test folder for --pytest (default tests)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")


def lockstep_ratio(steps, repeats):
    import torch

    import crosscheck as cc
    import handbp as hb
    np.random.seed(0)
    x = np.random.normal(0.0, 1.0, (10,))
    y = np.random.normal(0.0, 1.0, (2,))
    model = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid)
    opt, loss = hb.optim.SGD(model.parameters(), lr=0.01), hb.MeanSquaredError()
    twin = cc.mirror(model)
    topt = torch.optim.SGD(twin.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def pair():
        for _ in range(steps):
            opt.zero_grad()
            loss(model(x), y)
            model.backward(loss.backward())
            opt.step()
            topt.zero_grad()
            (0.5 * torch.mean((twin(xt) - yt) ** 2)).backward()
            topt.step()

    def checked():
        cc.lockstep(model, loss, opt, [(x, y)] * steps)

    pair(), checked()                          # warm up
    rows = []
    for _ in range(repeats):                    # interleaved: the machine's noise hits both alike
        t = time.perf_counter()
        pair()
        a = time.perf_counter() - t
        t = time.perf_counter()
        checked()
        b = time.perf_counter() - t
        rows.append((a / steps, b / steps))
    return rows


SPIN = ("import sys, time\nt = time.perf_counter()\ns = 0\nfor k in range(int(sys.argv[1])):\n    s += k\n"
        "print(time.perf_counter() - t)")


def machine_ceiling(rounds=3, loops=20_000_000):
    """What two processes get from this machine's cores: a pure-Python loop timed alone and as two
    copies at once (each timing itself), ``rounds`` times interleaved. Returns (ceiling, rows):
    ceiling = the median of 2 × t_alone / mean(t_together), 2.0 on two idle, independent cores;
    ``loops`` iterations of the loop per process (~1.5 s here by default)."""
    def spin(n):
        procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(loops)], stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]
    rows = []
    for _ in range(rounds):
        alone = spin(1)[0]
        together = spin(2)
        rows.append((alone, together))
    ceiling = statistics.median(2 * a / statistics.mean(t) for a, t in rows)
    return ceiling, rows


def pytest_speedup(tests):
    seed = "--crosscheck-seed=12345"
    base = [sys.executable, "-m", "pytest", tests, "-q", "-p", "no:cacheprovider", seed]
    times = {}
    for label, extra in (("serial", ["-p", "no:xdist"]), ("-n 2", ["-n", "2"])):
        t = time.perf_counter()
        done = subprocess.run(base + extra, capture_output=True, text=True)
        times[label] = time.perf_counter() - t
        last = (done.stdout.strip().splitlines() or ["?"])[-1]
        print(f"  pytest {label:7s} {times[label]:7.1f} s   ({last.strip('= ')})")
    return times


def run(args):
    for name in ("steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected an integer ≥ 1, got {getattr(args, name)}")
    if not have_torch("bench lockstep"):
        return 2
    threads = fix_threads(args.threads)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"handbp bench lockstep — {when}")
    print(machine_line())
    print(f"{threads}; the notebook's network (DNN 5×32, sigmoid, one sample, MeanSquaredError, SGD)")
    rows = lockstep_ratio(args.steps, args.repeats)
    pair = statistics.median(a for a, _ in rows)
    checked = statistics.median(b for _, b in rows)
    ratios = sorted(b / a for a, b in rows)
    ratio = statistics.median(ratios)
    q1, q3 = (statistics.quantiles(ratios, n=4)[::2] if len(ratios) > 1 else (ratio, ratio))
    print(f"  handbp step + torch step  {pair * 1e6:8.1f} µs")
    print(f"  lockstep step             {checked * 1e6:8.1f} µs   (compares 58 quantities, re-synchronises)")
    print(f"  ratio lockstep / (handbp + torch): {ratio:.2f}× (median of {args.repeats} interleaved rounds, "
          f"quartiles {q1:.2f}–{q3:.2f}; goal ≤ 1.5×)")
    result = {"date": when, "machine": machine_line(), "threads": threads, "pair_seconds": pair,
              "lockstep_seconds": checked, "ratio": ratio, "ratio_quartiles": [q1, q3], "rounds": rows}
    if args.pytest:
        print(f"test suite ({args.tests}), wall time, {os.cpu_count()} cpus:")
        ceiling, spins = machine_ceiling()
        times = pytest_speedup(args.tests)
        ceiling_after, spins_after = machine_ceiling()
        speedup = times["serial"] / times["-n 2"]
        print(f"  speed-up with -n 2: {speedup:.2f}× (goal ≥ 1.7×)")
        print(f"  the machine's own ceiling for two processes (a CPU-bound loop alone against two at once): "
              f"{ceiling:.2f}× before, {ceiling_after:.2f}× after")
        result["pytest"] = {**times, "speedup": speedup, "ceiling": [ceiling, ceiling_after],
                            "ceiling_rounds": spins + spins_after}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
