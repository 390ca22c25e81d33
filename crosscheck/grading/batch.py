"""``handbp grade run``: every submission in a folder graded on this machine, ``jobs`` at a time.

Each submission is graded in a process of its own: pytest on the course's tests with the grading
options (as ``run_autograder`` runs it), its ``results.json`` and log in a folder of its own. A
submission that crashes or hangs loses its own results only: each of its tests runs in a child
process with the per-test time limit, and a whole run past ``run_timeout`` seconds is killed with
every process it started (the submission's results then say so).

Most of a fresh process's time would go to importing torch and warming up crosscheck, the same
for every submission, so by default this process does that once and forks each submission's
process from it (``fresh=False``); each such process runs pytest from there, with one thread for
NumPy and torch, so ``jobs`` processes share the cores without oversubscribing them.
``fresh=True`` starts a new Python instead (where ``os.fork`` is missing, always).

At the end: ``scores.csv`` (a row per submission: total, maximum, then each test's points),
``histogram.png`` of the totals (with matplotlib), and a summary.
"""
import csv
import gc
import json
import os
import sys
import time

from .autograder import ensure_results, pytest_args, run_to_end


def submissions_in(folder):
    """``(name, path)`` of each submission in ``folder``: a sub-folder, or a ``.py`` file."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"grade run: SUBMISSIONS_DIR: {folder} is not a folder")
    out = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith((".", "_")):
            continue
        if os.path.isdir(path):
            out.append((entry, path))
        elif entry.endswith(".py"):
            out.append((entry[:-3], path))
    if not out:
        raise ValueError(f"grade run: SUBMISSIONS_DIR: {folder} holds no submission (a folder or a .py file each)")
    return out


class _Job:
    def __init__(self, name, path, out_dir):
        self.name, self.path = name, path
        self.folder = os.path.join(out_dir, name)
        self.results = os.path.join(self.folder, "results.json")
        self.log = os.path.join(self.folder, "log.txt")
        self.started = self.pid = self.proc = None
        self.reason = None


def grade_all(tests, submissions, out_dir, *, jobs=1, seed=0, timeout=60.0, run_timeout=600.0,
              submission_file="", extra=(), fresh=False, progress=True):
    """Grade every submission in ``submissions`` with the suite in ``tests``; returns the summary
    (also written: ``scores.csv``, ``histogram.png``)."""
    tests = os.path.abspath(tests)
    if not os.path.isdir(tests):
        raise FileNotFoundError(f"grade run: TESTS_DIR: {tests} is not a folder")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"grade run: -j: expected a positive integer, got {jobs!r}")
    # absolute: each submission's pytest runs from the tests' parent folder, where a relative
    # ``out_dir`` would name another folder (and its results.json would never be found here)
    results_dir = os.path.abspath(out_dir)
    todo = [_Job(name, os.path.abspath(path), results_dir) for name, path in submissions_in(submissions)]
    cwd = os.path.dirname(tests)
    extra = list(extra) + (["-o", f"crosscheck_submission_file={submission_file}"] if submission_file else [])
    fresh = fresh or not hasattr(os, "fork")
    if not fresh:
        _prepare_server()
    started = time.perf_counter()
    bar = _bar(len(todo), progress)
    waiting, running = list(reversed(todo)), []
    while waiting or running:
        while waiting and len(running) < jobs:
            job = waiting.pop()
            os.makedirs(job.folder, exist_ok=True)
            args = pytest_args(tests, job.path, job.results, seed=seed, timeout=timeout, extra=extra)
            job.started = time.time()
            _start(job, args, cwd, fresh)
            running.append(job)
        time.sleep(0.02)
        for job in list(running):
            if _finished(job, run_timeout):
                running.remove(job)
                with open(job.log, errors="replace") as f:
                    ensure_results(job.results, job.started, f.read(), job.reason)
                bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - started
    return _summarise(todo, out_dir, elapsed, jobs)


# -- the processes ---------------------------------------------------------------------------
def _prepare_server():
    """This process, before it forks the submissions' processes: one thread each for NumPy's BLAS
    and torch (``jobs`` processes share the cores), and torch and crosscheck imported and warmed up."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    import pytest  # noqa: F401
    from .isolate import warm_up
    warm_up()


def _start(job, args, cwd, fresh):
    log = open(job.log, "w")
    if fresh:
        import subprocess
        job.proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()     # (as crosscheck.grading.isolate does: no child's collection copies this process's pages)
    pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    if pid == 0:
        code = 70
        try:
            os.setsid()                      # its tests' processes in its session: killed with it
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.chdir(cwd)
            import pytest
            # pytest marks an installed plugin's packages (the wheel's handbp and crosscheck) for
            # assertion rewriting and warns that they are imported already: here on purpose, by
            # the warm-up, so the warning would only be noise in every submission's log
            code = int(pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *args]))
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    log.close()
    job.pid = pid


def _finished(job, limit):
    """Whether ``job``'s process has ended; past ``limit`` seconds, kill its session first."""
    import signal
    if job.proc is not None:
        if job.proc.poll() is not None:
            job.reason = f"pytest exited with status {job.proc.returncode} before it wrote any"
            return True
        pid = job.proc.pid
    else:
        done, status = os.waitpid(job.pid, os.WNOHANG)
        if done:
            job.reason = f"pytest ended (wait status {status}) before it wrote any"
            return True
        pid = job.pid
    if limit and time.time() - job.started > limit:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if job.proc is not None:
            job.proc.wait()
        else:
            os.waitpid(job.pid, 0)
        job.reason = f"the grading run took longer than {limit:g} s and was stopped"
        return True
    return False


def _bar(total, progress):
    if progress:
        try:
            from tqdm import tqdm
            return tqdm(total=total, unit="submission", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass
    return _NoBar()


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


# -- the results -----------------------------------------------------------------------------
def _summarise(jobs, out_dir, elapsed, n_jobs):
    rows, names = [], []
    for job in jobs:
        with open(job.results) as f:
            doc = json.load(f)
        per_test = {}
        for t in doc.get("tests", []):
            per_test[t["name"]] = t["score"]
            if t["name"] not in names:
                names.append(t["name"])
        maximum = doc.get("extra_data", {}).get("max_score", sum(t["max_score"] for t in doc.get("tests", [])))
        rows.append({"submission": job.name, "score": doc["score"], "max_score": maximum, **per_test})
    csv_path = os.path.join(out_dir, "scores.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["submission", "score", "max_score", *names])
        writer.writeheader()
        writer.writerows(rows)
    totals = [r["score"] for r in rows]
    summary = {"submissions": len(rows), "seconds": round(elapsed, 2), "jobs": n_jobs,
               "seconds_per_submission": round(elapsed / len(rows), 3),
               "mean": round(sum(totals) / len(totals), 3), "min": min(totals), "max": max(totals),
               "csv": csv_path, "histogram": _histogram(totals, rows[0]["max_score"], out_dir)}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _histogram(totals, maximum, out_dir):
    """``histogram.png`` of the totals, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = os.path.join(out_dir, "histogram.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = maximum if maximum else max(totals + [1])
    ax.hist(totals, bins=min(20, max(5, len(set(totals)))), range=(0, top), color="#4477aa", edgecolor="white")
    ax.set_xlabel(f"score (of {top:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{len(totals)} submissions, mean {sum(totals) / len(totals):.3g}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
