"""Grading one submission the way every path here does it: pytest on the course's tests with the
grading options, then a ``results.json`` whatever happened.

``python -m crosscheck.grading.autograder`` is what the Gradescope bundle's ``run_autograder``
runs (see ``crosscheck.grading.bundle``): it copies the student's files from
``/autograder/submission`` to a folder of their own, runs the suite from ``/autograder/source``
(where the course's tests folder is, so the replay line a student reads names the tests as in
their own copy), and writes ``/autograder/results/results.json``; if pytest itself dies before it
could write one, the file says so, with the end of the log.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time


def pytest_args(tests, submission, results, *, seed, timeout=None, replay=None, extra=()):
    """pytest's command-line arguments for grading ``submission`` with the suite in ``tests``."""
    args = [tests, "-p", "no:cacheprovider", f"--crosscheck-submission={submission}",
            f"--crosscheck-gradescope={results}", f"--crosscheck-seed={seed}"]
    if timeout:
        args.append(f"--crosscheck-timeout={timeout:g}")
    if replay:
        args += ["-o", f"crosscheck_replay_submission={replay}"]
    return args + list(extra)


def ensure_results(results, started, log_tail, reason):
    """Leave a ``results.json`` at ``results``: if the run wrote none (it died before its tests
    were collected), one scoring 0 that says why."""
    if os.path.exists(results) and os.path.getmtime(results) >= started - 1:
        return False
    from .results import crashed_run_document, write_json
    write_json(results, crashed_run_document(reason, log_tail, time.time() - started))
    return True


def run_to_end(command, cwd, out, limit=None):
    """Run ``command`` in a session of its own (its tests' child processes too), output to ``out``;
    past ``limit`` seconds, kill the whole session. Returns ``(exit status, why there may be no
    results)``."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=limit)
        return code, f"pytest exited with status {code} before it wrote any"
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return 1, f"the grading run took longer than {limit:g} s and was stopped"


def _copy_submission(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        os.makedirs(dst)
        shutil.copy2(src, dst)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m crosscheck.grading.autograder",
                                description="Grade the submission in ROOT/submission with the tests in ROOT/source.")
    p.add_argument("--root", default="/autograder", help="Gradescope's folder (default /autograder)")
    p.add_argument("--tests", required=True, help="the course's tests folder, inside ROOT/source")
    p.add_argument("--submission-file", default="", help="the student's file to import (e.g. layers.py)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--timeout", type=float, default=None, help="seconds per test")
    p.add_argument("--run-timeout", type=float, default=None, help="seconds for the whole run")
    p.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    results = os.path.join(root, "results", "results.json")
    os.makedirs(os.path.dirname(results), exist_ok=True)
    work = os.path.join(root, "work", "submission")
    _copy_submission(os.path.join(root, "submission"), work)
    command = [sys.executable, "-m", "pytest", *pytest_args(
        args.tests, work, results, seed=args.seed, timeout=args.timeout, replay=args.submission_file or None,
        extra=(["-o", f"crosscheck_submission_file={args.submission_file}"] if args.submission_file else [])
        + list(args.extra))]
    started = time.time()
    log = os.path.join(root, "work", "pytest.log")
    with open(log, "w") as out:
        code, reason = run_to_end(command, os.path.join(root, "source"), out, args.run_timeout)
    with open(log, errors="replace") as f:
        text = f.read()
    sys.stdout.write(text)
    ensure_results(results, started, text, reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
