"""Grade students' layers with a course's crosscheck test suite: a Gradescope autograder bundle, or
every submission in a folder on this machine.

    handbp grade bundle TESTS_DIR -o autograder.zip [--seed N] [--timeout S] [--submission-file F]
    handbp grade run TESTS_DIR SUBMISSIONS_DIR [-j N] [-o OUT] [--seed N] [--timeout S]

Walk-through: docs/grading.md. (crosscheck, and torch, are imported only when a command runs.)
"""
import os
import sys


def _seconds(text):
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _integer(low):
    """An argparse type: an integer ≥ ``low`` (0 or 1), named as the messages name it."""
    what = "a positive integer" if low == 1 else "a non-negative integer"

    def parse(text):
        import argparse
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_jobs, _seed = _integer(1), _integer(0)


PASSTHROUGH = "pytest_args"      # every word after ``--`` (handbp.cli.parse)


def add_arguments(parser):
    sub = parser.add_subparsers(dest="grade_command", metavar="{bundle,run}")
    sub.required = True
    b = sub.add_parser("bundle", help="write the zip Gradescope's autograder takes",
                       description="Write Gradescope's autograder zip: setup.sh (the pinned CPU torch and this "
                                   "handbp), run_autograder and the course's tests.")
    b.add_argument("tests", metavar="TESTS_DIR", help="the course's tests folder (with its pytest.ini and conftest.py)")
    b.add_argument("-o", "--output", default="autograder.zip", help="the zip to write (default autograder.zip)")
    _common(b)
    r = sub.add_parser("run", help="grade every submission in a folder, N at a time",
                       description="Grade each submission (a folder or a .py file) in SUBMISSIONS_DIR in its own "
                                   "process, N at a time; results.json each, scores.csv and histogram.png.")
    r.add_argument("tests", metavar="TESTS_DIR", help="the course's tests folder")
    r.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="one folder or .py file per student")
    r.add_argument("-j", "--jobs", type=_jobs, default=os.cpu_count() or 1,
                   help="submissions graded at once (default: the number of cores)")
    r.add_argument("-o", "--output", default="grades", help="the folder for the results (default grades)")
    r.add_argument("--run-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                   help="stop a submission's whole run after this long (default 600)")
    r.add_argument("--fresh-processes", action="store_true",
                   help="start a new Python for each submission instead of forking a warmed-up one (slower)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(r)


def _common(p):
    p.add_argument("--seed", type=_seed, default=0, help="the base seed of every run (default 0): the same data "
                                                        "for every student, and the replay line they are shown")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="time limit per test (default 60)")
    p.add_argument("--submission-file", default="", metavar="NAME",
                   help="the student's file to import when a submission is a folder (default: the tests' "
                        "ini crosscheck_submission_file)")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="more pytest arguments, after --")


def run(args):
    if args.grade_command == "bundle":
        from crosscheck.grading.bundle import build_bundle
        names = build_bundle(args.tests, args.output, seed=args.seed, submission_file=args.submission_file,
                             timeout=args.timeout, extra=args.pytest_args)
        print(f"wrote {args.output}: {len(names)} files (setup.sh, run_autograder, {names[2]}, "
              f"{os.path.basename(os.path.abspath(args.tests))}/)")
        return 0
    from . import have_torch
    if not have_torch("grade run"):
        return 2
    from crosscheck.grading.batch import grade_all
    summary = grade_all(args.tests, args.submissions, args.output, jobs=args.jobs, seed=args.seed,
                        timeout=args.timeout, run_timeout=args.run_timeout, submission_file=args.submission_file,
                        extra=args.pytest_args, fresh=args.fresh_processes, progress=not args.no_progress)
    print(f"graded {summary['submissions']} submissions in {summary['seconds']:.1f} s "
          f"({summary['seconds_per_submission']:.2f} s each, {summary['jobs']} at a time); "
          f"scores: mean {summary['mean']:g}, min {summary['min']:g}, max {summary['max']:g}")
    print(f"scores: {summary['csv']}" + (f"; histogram: {summary['histogram']}" if summary["histogram"] else
                                         " (no histogram: matplotlib is not installed)"))
    sys.stdout.flush()
    return 0
