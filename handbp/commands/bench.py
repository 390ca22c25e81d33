"""Benchmarks that print figures: ``handbp bench [numerical|engine|lockstep|conv|rnn|grading]``.

Each suite lives in ``handbp.benchmarks.<suite>`` with ``add_arguments(parser)`` and
``run(args) -> int``. Timings are medians over repeats, measured side by side in one run, with
NumPy's and torch's thread counts fixed and printed.
"""
import importlib

SUITES = {
    "numerical": "the seed's claim: numerical differentiation vs backprop (handbp, torch) per training step",
    "engine": "handbp's training step vs torch eager and a minimal fused NumPy loop",
    "lockstep": "crosscheck's lockstep cost per step, and pytest -n 2 against serial",
    "conv": "handbp's Conv2d forward and backward against torch's, float32 and float64, time and peak memory",
    "rnn": "handbp's LSTM (GRU, RNN) forward + backward over a sequence against torch eager",
    "grading": "grading the example course: one submission serially, a batch 1 and N at a time, the plugin's "
               "start-up cost",
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    for name, help_ in SUITES.items():
        try:
            mod = importlib.import_module(f"handbp.benchmarks.{name}")
        except ImportError:
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_suite_run=mod.run)
    parser.set_defaults(suite=None)
    parser._handbp_sub = sub


def run(args):
    if getattr(args, "_suite_run", None) is None:
        # `handbp bench` alone runs the seed's experiment with its quick defaults
        mod = importlib.import_module("handbp.benchmarks.numerical")
        import argparse
        p = argparse.ArgumentParser(prog="handbp bench numerical")
        mod.add_arguments(p)
        return mod.run(p.parse_args([]))
    return args._suite_run(args)
