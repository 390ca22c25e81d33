"""What grading costs, on the example course (examples/course: six student layers, 20 points):

* one submission graded serially by a fresh ``python -m pytest`` (the Gradescope path), wall and
  CPU seconds, with the environment's pytest plugins and with hypothesis's left out (a grading
  environment such as the bundle's has no hypothesis);
* ``handbp grade run`` on COPIES copies of the course's submissions, one at a time against JOBS at
  a time (interleaved), and the throughput ratio;
* the start-up cost that installing handbp adds to an unrelated project's ``pytest``: its run with
  the crosscheck plugins loaded against the same run with them blocked, interleaved.
"""
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from .common import machine_line

COURSE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "examples", "course")


def add_arguments(parser):
    parser.add_argument("--course", default=COURSE, help="the course folder: tests/ and submissions/ (default: "
                                                         "the example course, examples/course in the source "
                                                         "repository)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the serial runs (default 5)")
    parser.add_argument("--serial-submissions", default="correct,mixed_a", metavar="NAMES",
                        help="the submissions graded serially, comma-separated (default: correct,mixed_a)")
    parser.add_argument("--copies", type=int, default=100, help="submissions in the batch (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions at once in the parallel batch (default 2)")
    parser.add_argument("--batch-rounds", type=int, default=1, help="interleaved rounds of the batches (default 1)")
    parser.add_argument("--ceiling-rounds", type=int, default=3,
                        help="rounds of the machine's ceiling for two processes, before and after the batches "
                             "(default 3; 0: not measured)")
    parser.add_argument("--startup-repeats", type=int, default=30,
                        help="interleaved rounds of the start-up comparison (default 30)")
    parser.add_argument("--skip", action="append", default=[], choices=("serial", "batch", "startup"),
                        help="leave a part out (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures as JSON")


def _timed(command, cwd, env=None):
    """Wall seconds, and CPU seconds of the process and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


PARTS = ("  the same under pytest -n 2", "  its tests unforked (isolation=none)", "  its collection alone (--co)",
         "  python -c 'import torch'")


def serial(course, names, repeats, out):
    """One submission, a fresh pytest each time (by default the correct one, and one with a failure
    in each of its six layers: a hang to the time limit, crashes, raises), with the environment's
    pytest plugins and without hypothesis's; then, for the first one without hypothesis's, the
    same under ``-n 2``, its tests in pytest's own process (no fork per test), its collection alone
    (``--co``: pytest, handbp, NumPy, no torch), and importing torch alone."""
    variants = {}
    grade = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "--crosscheck-seed=0",
             "--crosscheck-timeout=2", f"--crosscheck-gradescope={os.path.join(out, 'serial.json')}"]
    lean = ["-p", "no:hypothesispytest"]
    for name in names:
        for plugins, extra in (("all plugins", []), ("without hypothesis's", lean)):
            variants[f"{name}, {plugins}"] = grade + extra + [f"--crosscheck-submission=submissions/{name}"]
    first = grade + lean + [f"--crosscheck-submission=submissions/{names[0]}"]
    for key, command in zip(PARTS, (first + ["-n", "2"], first + ["--crosscheck-isolation=none"], first + ["--co"],
                                    [sys.executable, "-c", "import torch"])):
        variants[key] = command
    _timed(next(iter(variants.values())), course)                            # warm the disk cache and .pyc files
    rows = {k: [] for k in variants}
    for _ in range(repeats):
        for key, command in variants.items():
            rows[key].append(_timed(command, course)[:2])
    return {k: {"wall_median": statistics.median(w for w, _ in v), "cpu_median": statistics.median(c for _, c in v),
                "walls": [w for w, _ in v]} for k, v in rows.items()}


def batch(course, copies, jobs, rounds, out, ceiling_rounds=3):
    """``handbp grade run`` over ``copies`` submissions, 1 at a time against ``jobs`` at a time."""
    subs = sorted(os.listdir(os.path.join(course, "submissions")))
    folder = os.path.join(out, "copies")
    for i in range(copies):
        shutil.copytree(os.path.join(course, "submissions", subs[i % len(subs)]), os.path.join(folder, f"s{i:03d}"))
    from .lockstep import machine_ceiling
    ceiling_before = machine_ceiling(ceiling_rounds)[0] if ceiling_rounds else None
    figures = {1: [], jobs: []}
    for _ in range(rounds):
        for n in (1, jobs):
            command = [sys.executable, "-m", "handbp", "grade", "run", os.path.join(course, "tests"), folder,
                       "-j", str(n), "-o", os.path.join(out, f"grades-{n}"), "--timeout", "2", "--no-progress"]
            wall, cpu, code = _timed(command, course)
            if code != 0:
                raise RuntimeError(f"handbp grade run -j {n} failed with status {code}")
            figures[n].append(wall)
    ceiling_after = machine_ceiling(ceiling_rounds)[0] if ceiling_rounds else None
    one, many = statistics.median(figures[1]), statistics.median(figures[jobs])
    return {"copies": copies, "submissions": subs, "jobs": jobs, "seconds_1": figures[1],
            f"seconds_{jobs}": figures[jobs],
            "per_submission_1": one / copies, f"per_submission_{jobs}": many / copies, "ratio": one / many,
            "ceiling": [ceiling_before, ceiling_after]}


UNRELATED = "def test_one():\n    assert 1 + 1 == 2\n\ndef test_two():\n    assert 'a' * 2 == 'aa'\n"
BLOCKED = ("-p", "no:crosscheck", "-p", "no:crosscheck-grading")


def startup(repeats, out):
    """An unrelated project's ``pytest --co``, with the crosscheck plugins and with them blocked
    (``-p no:``), interleaved; both leave hypothesis's plugin out, which is no dependency of handbp
    and whose own start-up (about as long as the rest of pytest's) would drown the difference."""
    project = os.path.join(out, "unrelated")
    os.makedirs(project)
    with open(os.path.join(project, "test_unrelated.py"), "w") as f:
        f.write(UNRELATED)
    base = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    commands = {"with the plugins": base, "plugins blocked": base + list(BLOCKED)}
    for command in commands.values():
        _timed(command, project)
    walls = {k: [] for k in commands}
    for _ in range(repeats):
        for key, command in commands.items():
            walls[key].append(_timed(command, project)[0])
    # pytest imports its plugins with importlib, which -X importtime does not see: import them directly
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "import pytest, crosscheck.plugin, crosscheck.grading"],
                             capture_output=True, text=True).stderr
    cumulative = {}
    for line in imports.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() in ("crosscheck", "crosscheck.plugin", "crosscheck.grading"):
            cumulative[parts[2].strip()] = int(parts[1]) / 1e6
    paired = [a - b for a, b in zip(walls["with the plugins"], walls["plugins blocked"])]
    return {"median_with": statistics.median(walls["with the plugins"]),
            "median_blocked": statistics.median(walls["plugins blocked"]),
            "median_paired_difference": statistics.median(paired), "import_seconds": cumulative}


def versions():
    import numpy
    import pytest
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    from importlib.metadata import version
    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "torch": torch_version,
            "pytest": pytest.__version__, "handbp": version("handbp")}


def run(args):
    for name in ("repeats", "copies", "jobs", "batch_rounds", "startup_repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer ≥ 1, got {getattr(args, name)}")
    if args.ceiling_rounds < 0:
        raise ValueError(f"--ceiling-rounds: expected an integer ≥ 0, got {args.ceiling_rounds}")
    course = os.path.abspath(args.course)
    names = [n for n in args.serial_submissions.split(",") if n]
    if args.course == COURSE and not os.path.isdir(COURSE):
        # an installed wheel holds the packages only; the example course is in the source repository
        raise ValueError("--course: the example course (examples/course) comes with the source repository, not "
                         "with the installed package; give a course folder (tests/ and submissions/) with --course")
    for sub in ("tests", "submissions"):
        if not os.path.isdir(os.path.join(course, sub)):
            raise ValueError(f"--course: expected a folder holding tests/ and submissions/, got {args.course!r}")
    for name in names:
        if not os.path.isdir(os.path.join(course, "submissions", name)):
            raise ValueError(f"--serial-submissions: no submission {name!r} in {os.path.join(course, 'submissions')}")
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine_line(), "versions": versions(), "load_average": os.getloadavg()}
    print(f"handbp bench grading — {figures['date']}")
    print(figures["machine"])
    print("versions: " + ", ".join(f"{k} {v}" for k, v in figures["versions"].items())
          + f"; load average {figures['load_average'][0]:.1f} (other processes share the cpus)")
    with tempfile.TemporaryDirectory() as out:
        if "serial" not in args.skip:
            figures["serial"] = serial(course, names, args.repeats, out)
            print(f"\none submission graded serially (a fresh python -m pytest), median of {args.repeats} "
                  "(goal ≤ 4 s wall):")
            for key, f in figures["serial"].items():
                if key == PARTS[0]:
                    print(f"  where the time of {names[0]}'s run without hypothesis's goes:")
                print(f"  {key:<42} {f['wall_median']:6.2f} s wall  {f['cpu_median']:6.2f} s CPU")
        if "batch" not in args.skip:
            figures["batch"] = b = batch(course, args.copies, args.jobs, args.batch_rounds, out, args.ceiling_rounds)
            shown = b["submissions"][:args.copies]
            print(f"\nhandbp grade run, {args.copies} submissions ({', '.join(shown)} in turn), "
                  f"median of {args.batch_rounds}:")
            print(f"  1 at a time:  {statistics.median(b['seconds_1']):6.1f} s  ({b['per_submission_1']:.3f} s each)")
            print(f"  {args.jobs} at a time:  {statistics.median(b[f'seconds_{args.jobs}']):6.1f} s  "
                  f"({b[f'per_submission_{args.jobs}']:.3f} s each)")
            print(f"  throughput ratio: {b['ratio']:.2f}× (goal ≥ 1.8× with 2 at a time on 2 cpus)")
            if args.ceiling_rounds:
                print(f"  the machine's own ceiling for two processes (a CPU-bound loop alone against two at once): "
                      f"{b['ceiling'][0]:.2f}× before, {b['ceiling'][1]:.2f}× after")
        if "startup" not in args.skip:
            figures["startup"] = s = startup(args.startup_repeats, out)
            print(f"\nan unrelated project's pytest --co (2 tests), median of {args.startup_repeats} interleaved "
                  "(goal < 50 ms added):")
            print(f"  with the crosscheck plugins: {s['median_with'] * 1e3:.0f} ms; blocked: "
                  f"{s['median_blocked'] * 1e3:.0f} ms; "
                  f"paired difference {s['median_paired_difference'] * 1e3:+.0f} ms")
            print("  importing the plugin modules: " + ", ".join(f"{k} {v * 1e3:.1f} ms"
                                                                for k, v in s["import_seconds"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0
