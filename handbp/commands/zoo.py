"""Run the bug zoo: each classic backprop bug under crosscheck's lockstep, with the first divergence
and the hint crosscheck gives for it."""
import numpy as np

from . import have_torch


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0, help="seed for the models and data (default 0)")
    parser.add_argument("--bug", action="append", default=None, metavar="NAME",
                        help="run only this bug (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument("--full", action="store_true", help="print each full Divergence report")


def run(args):
    from ..zoo import ZOO as plain
    from ..zoo_rnn import BUGS as recurrent
    ZOO = plain + recurrent
    if args.list:
        for bug in ZOO:
            print(f"{bug.name:42s} {bug.summary}")
        return 0
    if not have_torch("zoo"):
        return 2
    import crosscheck as cc
    chosen = ZOO if not args.bug else [b for b in ZOO if b.name in args.bug]
    unknown = set(args.bug or ()) - {b.name for b in ZOO}
    if unknown:
        raise ValueError(f"--bug: unknown bug(s) {sorted(unknown)}; see handbp zoo --list")
    caught = 0
    for i, bug in enumerate(chosen, 1):
        model, loss, optimizer, data = bug.build(np.random.default_rng(args.seed))
        print(f"[{i}/{len(chosen)}] {bug.name}: {bug.summary}")
        try:
            cc.lockstep(model, loss, optimizer, data)
        except cc.Divergence as d:
            ok = d.hint == bug.hint and bug.where in f"{d.name} {d.quantity}"
            caught += ok
            if args.full:
                print("    " + str(d).replace("\n", "\n    "))
            else:
                print(f"    caught at step {d.step}: {d.name} {d.quantity} (max rel {d.max_rel:.3g})")
                print(f"    hint [{d.hint}]: {d.diagnosis}")
            if not ok:
                print(f"    expected hint [{bug.hint}] at {bug.where}")
        else:
            print("    NOT CAUGHT: lockstep found no divergence")
        print()
    print(f"{caught} of {len(chosen)} bugs caught with the expected hint")
    return 0 if caught == len(chosen) else 1
