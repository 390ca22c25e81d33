"""Run the bug zoo: each classic backprop bug under crosscheck's lockstep, with the first divergence
and the hint crosscheck gives for it (what crosscheck should say is in crosscheck.zoo)."""
import textwrap

import numpy as np

from . import have_torch

WIDTH = 80


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0, help="seed for the models and data (default 0)")
    parser.add_argument("--bug", action="append", default=None, metavar="NAME",
                        help="run only this bug (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument("--full", action="store_true", help="print each full Divergence report")
    parser.add_argument("--explain", action="store_true", help="also explain the step where each bug is caught, "
                        "module by module, beside torch's values")
    parser.add_argument("--lang", choices=("en", "ko"), default="en", help="language of the hints (default en)")


def say(text, indent=4):
    """One paragraph, wrapped to the width (Korean characters take two columns)."""
    from ..explain import wrap
    print("\n".join(wrap(text, WIDTH, indent)))


def run(args):
    from ..zoo import bugs
    zoo = bugs()
    if args.list:
        for bug in zoo:
            print(textwrap.fill(f"{bug.name:38s} {bug.summary}", WIDTH, subsequent_indent=" " * 39))
        return 0
    unknown = set(args.bug or ()) - {b.name for b in zoo}
    if unknown:
        raise ValueError(f"--bug: unknown bug(s) {sorted(unknown)}; see handbp zoo --list")
    if not have_torch("zoo"):
        return 2
    import crosscheck as cc
    from crosscheck.words import hint_text
    from crosscheck.zoo import expected
    chosen = zoo if not args.bug else [b for b in zoo if b.name in args.bug]
    caught = 0
    for i, bug in enumerate(chosen, 1):
        model, loss, optimizer, data = bug.build(np.random.default_rng(args.seed))
        say(f"[{i}/{len(chosen)}] {bug.name}: {bug.summary}", 0)
        want = expected(bug)
        trace = cc.lockstep(model, loss, optimizer, data, raise_on_divergence=False)
        d = trace.divergence
        if d is None:
            print("    NOT CAUGHT: lockstep found no divergence")
            print()
            continue
        ok = want.met_by(d)
        caught += ok
        if args.full:
            for line in str(d).splitlines():
                say(line.strip(), 4 + (len(line) - len(line.lstrip())))
        else:
            say(f"caught at step {d.step}: {d.name} {d.quantity} (max rel {d.max_rel:.3g})")
            if args.lang == "en":
                say(f"hint [{d.hint}]: {d.diagnosis}")
            else:
                say(f"힌트 [{d.hint}]: {hint_text(d.hint, args.lang)}")
                say(f"(진단: {d.diagnosis})", 6)
        if not ok:
            say(f"expected hint [{want.hint}] at {want.where}")
        if args.explain:
            _explain_step(bug, args, d.step, data)
        print()
    print(f"{caught} of {len(chosen)} bugs caught with the expected hint")
    return 0 if caught == len(chosen) else 1


def _explain_step(bug, args, step, data):
    """The explanation of the step where the bug was caught: the case built afresh and trained to
    that step, as lockstep did."""
    import crosscheck as cc
    model, loss, optimizer, data = bug.build(np.random.default_rng(args.seed))
    for x, y in data[:step]:
        optimizer.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        optimizer.step()
    x, y = data[step]
    text = str(cc.explain(model, loss, x, y, optimizer=optimizer, lang=args.lang, width=WIDTH - 4))
    print("    " + text.replace("\n", "\n    ").replace("    \n", "\n"))
