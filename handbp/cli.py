"""The ``handbp`` command line. Each subcommand lives in its own module under
``handbp.commands`` with ``add_arguments(parser)`` and ``run(args) -> int``; modules import torch
(and crosscheck) only inside ``run``, so ``handbp --help`` works without them."""
import argparse
import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS = {
    "train": ("handbp.commands.train", "train a network on a built-in task (handbp train --help lists them)"),
    "demo": ("handbp.commands.demo", "the seed notebook's experiment, cross-checked against torch"),
    "explain": ("handbp.commands.explain", "one training step's backward, module by module, beside torch's values"),
    "zoo": ("handbp.commands.zoo", "run the bug zoo: classic backprop bugs, each caught by crosscheck with its hint"),
    "exercise": ("handbp.commands.exercise", "exercises: write a layer's backward (or fix a zoo bug), checked against "
                 "torch tensor by tensor"),
    "bench": ("handbp.commands.bench", "benchmarks that print figures (numerical, engine, lockstep, conv, rnn, grading)"),
    "grade": ("handbp.commands.grade", "grade students' layers: a Gradescope autograder bundle, or a folder of "
                                       "submissions on this machine"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="handbp", description="Hand-written NumPy backprop, cross-checked against PyTorch.")
    parser.passthrough = {}          # command -> its attribute for the words after ``--`` (see parse)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)     # (commands import torch only inside run)
        p = sub.add_parser(name, help=help_, description=description(mod.__doc__ or help_))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
        if getattr(mod, "PASSTHROUGH", None):
            parser.passthrough[name] = mod.PASSTHROUGH
    return parser


def description(doc):
    """A command's ``--help`` description: its module docstring's first paragraph, all of it (its
    first line alone stopped mid-sentence: "beside the torch")."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def parse(parser, argv):
    """``parser.parse_args(argv)``, where a command that declares ``PASSTHROUGH`` (the name of its
    list of arguments for another program: ``handbp grade run ... -- PYTEST_ARGS``) gets every word
    after the first ``--`` there. argparse alone hands them to that positional only when no option
    stands between the command's other positionals and ``--`` (``grade run T S -j 2 -- -x`` was
    refused as unrecognized arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        head, rest = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        command = next((word for word in head if not word.startswith("-")), None)
        if command in parser.passthrough:
            args = parser.parse_args(head)
            name = parser.passthrough[command]
            setattr(args, name, list(getattr(args, name)) + rest)
            return args
    return parser.parse_args(argv)


def main(argv=None):
    parser = build_parser()
    args = parse(parser, argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:           # the reader went away (``handbp zoo | head``): stop quietly
        _silence_stdout()
        return 1
    except (ValueError, TypeError, FileNotFoundError) as e:   # bad input: one clear line, no traceback
        print(f"handbp {args.command}: error: {e}", file=sys.stderr)
        return 2


def _silence_stdout():
    """Point stdout at devnull, so that Python's own flush at exit does not raise BrokenPipeError
    again (the recipe of Python's ``signal`` documentation)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):     # a stdout without a file descriptor (captured)
        pass


if __name__ == "__main__":
    sys.exit(main())
