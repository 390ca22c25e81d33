"""The crosscheck pytest plugin, tested in inner pytest runs: options, header, fixtures, marker,
failure text, xdist seed hand-over and thread caps.

Each process that runs a lockstep pays ~3 s (importing torch, and torch._dynamo at its first
optimizer), so two runs serve six properties (``make_runs``, checked by
``test_plugin_under_xdist_and_serially``): one ``-n 2`` run of a few test files with no seed given,
and one serial run without xdist at the seed the ``-n 2`` run printed. Runs that need neither torch
nor xdist workers run in-process (pytester), except where a second process is the point."""
import json
import os
import re
from types import SimpleNamespace

import pytest
from tests.helpers.inner_runs import FAST

pytest_plugins = ["pytester"]


SUITE = '''
import json, os
import numpy as np
import pytest
import handbp as hb

OUT = os.environ["CROSSCHECK_TEST_OUT"]

def record(request, crosscheck, rng):
    name = request.node.nodeid.replace("/", "_").replace(":", "_")
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump({"seed": crosscheck.seed, "draw": float(rng.normal()), "base": request.config.option.crosscheck_seed}, f)

@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6])
def test_net(width, request, crosscheck, rng):
    record(request, crosscheck, rng)
    m = hb.Sequential(hb.Linear(3, width, rng=rng), hb.Tanh(), hb.Linear(width, 2, rng=rng))
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1))
'''

WRONG = '''
import numpy as np
import handbp as hb

class DoubledTanh(hb.Tanh):
    def backward(self, dy):
        return 2 * super().backward(dy)

def test_wrong_backward(crosscheck, rng):
    m = hb.Sequential(hb.Linear(3, 4, rng=rng), DoubledTanh(), hb.Linear(4, 2, rng=rng))
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1))
'''


CAPS = '''
import os
import numpy as np, handbp as hb, torch
from threadpoolctl import threadpool_info

def test_caps(crosscheck, rng):
    m = hb.Sequential(hb.Linear(2, 2, rng=rng))
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1))
    limit = max(1, (os.cpu_count() or 1) // 2)
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and max(blas) <= limit, blas
    assert torch.get_num_threads() <= limit
def test_other(): pass
'''

# On the workers, torch is imported before the plugin configures (the controller needs none). Each
# process logs, in order, every test it ran, the base seed it saw and the thread counts as the test
# body starts; after each test torch's thread count is raised to every core, as a test may do, so
# each later test on that worker must have been capped again.
CONFTEST = '''
import json, os, sys
import pytest
from threadpoolctl import threadpool_info

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    torch = sys.modules.get("torch")
    entry = {"test": item.nodeid, "base": item.config.option.crosscheck_seed,
             "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
             "torch": torch.get_num_threads() if torch else None}
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open(os.path.join(os.environ["CROSSCHECK_TEST_SEEN"], worker + ".log"), "a") as f:
        f.write(json.dumps(entry) + "\\n")

def pytest_runtest_teardown(item):
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
'''

SHARED_FILES = {"conftest.py": CONFTEST, "test_suite.py": SUITE, "test_wrong.py": WRONG, "test_caps.py": CAPS}


def outcomes(result):
    """node id -> outcome, from -rA's short summary lines."""
    found = {}
    for line in result.outlines:
        m = re.match(r"^(PASSED|FAILED|ERROR) (\S+)", line)
        if m:
            found[m.group(2)] = m.group(1)
    return found


def seeds(folder):
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.iterdir())}


def header_seed(out):
    lines = [l for l in out.splitlines() if l.startswith("crosscheck: seed=")]
    assert len(lines) == 1, out
    return int(lines[0].split("=")[1])


def where_it_ran(folder):
    """process ("gw0", "gw1", "serial") -> the conftest's entries (test, base, blas, torch), in the order run."""
    return {p.stem: [json.loads(l) for l in p.read_text().splitlines()] for p in sorted(folder.iterdir())}


SUITE_IDS = [f"test_suite.py::test_net[{w}]" for w in range(1, 7)]


def make_runs(pytester, monkeypatch):
    """The two runs the xdist and serial checks share.

    * ``n2``: one ``-n 2`` run with no seed given (the controller draws one) over the suite, the
      wrong backward and the thread-cap files, spread test by test (``--dist load``, the default).
      The environment asks for every core; torch is imported on the workers before the plugin
      configures, and raised to every core after each test (the conftest).
    * ``serial``: the suite and the wrong backward, serially without xdist, at the seed the ``-n 2``
      run printed.
    """
    root = pytester.path
    dirs = {name: root / name for name in ("n2_out", "n2_seen", "serial_out", "serial_seen")}
    for d in dirs.values():
        d.mkdir()
    for name, text in SHARED_FILES.items():
        (root / name).write_text(text)
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)      # set when this suite itself runs under xdist
    cores = str(os.cpu_count() or 1)
    with monkeypatch.context() as env:
        env.setenv("CROSSCHECK_TEST_OUT", str(dirs["n2_out"]))
        env.setenv("CROSSCHECK_TEST_SEEN", str(dirs["n2_seen"]))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setenv(var, cores)
        # the suite first: xdist's first hand-out gives each worker two of its tests, so one worker
        # starts at its third test, where a serial run has already run two (a seed that depended on
        # the order would show)
        n2 = pytester.runpytest_subprocess(*FAST, "-n", "2", "-rA", "test_suite.py", "test_wrong.py", "test_caps.py",
                                           timeout=600)
    seed = header_seed(n2.stdout.str())
    with monkeypatch.context() as env:
        env.setenv("CROSSCHECK_TEST_OUT", str(dirs["serial_out"]))
        env.setenv("CROSSCHECK_TEST_SEEN", str(dirs["serial_seen"]))
        serial = pytester.runpytest_subprocess(*FAST, "-p", "no:xdist", f"--crosscheck-seed={seed}", "-rA",
                                               "test_suite.py", "test_wrong.py", timeout=600)
    return SimpleNamespace(n2=n2, serial=serial, seed=seed, **dirs)


def test_header_prints_the_given_seed(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("--crosscheck-seed=1234", *FAST)
    result.stdout.fnmatch_lines(["crosscheck: seed=1234"])
    assert result.ret == 0


def test_header_prints_a_random_seed_when_none_is_given(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess(*FAST)
    line = [l for l in result.outlines if l.startswith("crosscheck: seed=")]
    assert len(line) == 1 and int(line[0].split("=")[1]) >= 0


def test_options_in_help(pytester):
    result = pytester.runpytest_inprocess("--help", *FAST)
    result.stdout.fnmatch_lines(["crosscheck:*", "*--crosscheck-seed*", "*--crosscheck-steps*", "*--crosscheck-dtype*",
                                 "*--crosscheck-rtol*", "*--crosscheck-atol*"])


@pytest.mark.parametrize("args, fragment", [
    (["--crosscheck-seed=-1"], "--crosscheck-seed"),
    (["--crosscheck-seed=abc"], "--crosscheck-seed"),
    (["--crosscheck-steps=0"], "--crosscheck-steps"),
    (["--crosscheck-rtol=-1e-3"], "--crosscheck-rtol"),
    (["--crosscheck-dtype=float16"], "--crosscheck-dtype"),
])
def test_bad_options_are_rejected(pytester, args, fragment):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess(*args, *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert fragment in result.stderr.str()


def test_marker_and_options_reach_the_checker(pytester):
    pytester.makepyfile('''
        import numpy as np, pytest

        def test_options(crosscheck):
            assert (crosscheck.steps, crosscheck.dtype, crosscheck.rtol) == (5, np.float32, 1e-3)

        @pytest.mark.crosscheck(steps=2, dtype="float64", rtol=1e-8)
        def test_marker(crosscheck):
            assert (crosscheck.steps, crosscheck.dtype, crosscheck.rtol) == (2, np.float64, 1e-8)
    ''')
    result = pytester.runpytest_inprocess("--crosscheck-steps=5", "--crosscheck-dtype=float32",
                                          "--crosscheck-rtol=1e-3", *FAST, "-rA")
    got = outcomes(result)
    assert got["test_marker_and_options_reach_the_checker.py::test_options"] == "PASSED"
    assert got["test_marker_and_options_reach_the_checker.py::test_marker"] == "PASSED"


@pytest.mark.parametrize("args, fragment", [
    ("steps=0", "steps: expected a positive integer, got 0"),
    ("steps=-3", "steps: expected a positive integer, got -3"),
    ("steps=2.5", "steps: expected a positive integer, got 2.5"),
    ("steps=True", "steps: expected a positive integer, got True"),
    ("dtype='float16'", "dtype: expected one of ('float64', 'float32'), got 'float16'"),
    ("rtol=-1e-3", "rtol: expected a finite number ≥ 0 or None, got -0.001"),
    ("rtol='1e-3'", "rtol: expected a finite number ≥ 0 or None, got '1e-3'"),
    ("atol=float('nan')", "atol: expected a finite number ≥ 0 or None, got nan"),
    ("resync='yes'", "resync: expected True or False, got 'yes'"),
    ("stepz=2", "stepz: unknown argument"),
    ("5", "use keyword arguments"),
])
def test_bad_marker_arguments_are_a_usage_error(pytester, args, fragment):
    """Checked as the command-line options are: the run stops before any test (exit status 4),
    naming the test, the marker and the argument; no test passes after zero steps."""
    pytester.makepyfile(f'''
        import pytest

        def test_fine():
            pass

        @pytest.mark.crosscheck({args})
        def test_bad(crosscheck):
            pass
    ''')
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "::test_bad: crosscheck marker: " + fragment in text, text
    assert "passed" not in result.stdout.str()


def test_rng_depends_on_seed_and_node_id_only(pytester):
    """The first run is a fresh interpreter, the others run in this one: the draws must not depend
    on the process either."""
    pytester.makepyfile('''
        def test_a(rng): print("DRAW a", rng.integers(10**9))
        def test_b(rng): print("DRAW b", rng.integers(10**9))
    ''')
    same = [pytester.runpytest_subprocess("--crosscheck-seed=7", "-s", *FAST),
            pytester.runpytest_inprocess("--crosscheck-seed=7", "-s", *FAST)]
    draws = [sorted(l for l in r.outlines if "DRAW" in l) for r in same]
    assert draws[0] == draws[1] and len(draws[0]) == 2
    assert draws[0][0].split()[-1] != draws[0][1].split()[-1]
    other = pytester.runpytest_inprocess("--crosscheck-seed=8", "-s", *FAST)
    assert sorted(l for l in other.outlines if "DRAW" in l) != draws[0]


def check_wrong_backward_fails_with_the_report_not_a_traceback(runs):
    result, seed = runs.serial, runs.seed
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result)["test_wrong.py::test_wrong_backward"] == "FAILED"
    out = result.stdout.str()
    for piece in ("diverge at step 0", "where:      1 (DoubledTanh)", "quantity:   grad_input",
                  "diagnosis:  handbp = 2 × torch", "mismatched elements",
                  f"replay: pytest 'test_wrong.py::test_wrong_backward' --crosscheck-seed={seed}"):
        assert piece in out, out
    assert "lockstep.py" not in out and "site-packages" not in out


def check_without_xdist(runs):
    got = outcomes(runs.serial)
    assert {k: v for k, v in got.items() if k != "test_wrong.py::test_wrong_backward"} == \
        dict.fromkeys(SUITE_IDS, "PASSED"), runs.serial.stdout.str()
    assert len(list(runs.serial_out.iterdir())) == 6
    assert set(where_it_ran(runs.serial_seen)) == {"serial"}


def check_n2_gives_the_serial_seeds_and_values(runs):
    got = outcomes(runs.n2)
    assert all(got.get(t) == "PASSED" for t in SUITE_IDS), runs.n2.stdout.str()
    assert got["test_wrong.py::test_wrong_backward"] == outcomes(runs.serial)["test_wrong.py::test_wrong_backward"]
    assert seeds(runs.serial_out) == seeds(runs.n2_out) and len(seeds(runs.serial_out)) == 6


def check_workers_share_the_controllers_random_seed(runs):
    header = header_seed(runs.n2.stdout.str())
    assert {v["base"] for v in seeds(runs.n2_out).values()} == {header}
    ran = where_it_ran(runs.n2_seen)
    assert set(ran) == {"gw0", "gw1"}, ran                                       # both workers ran tests ...
    assert {t["base"] for tests in ran.values() for t in tests} == {header}     # ... at the controller's seed


def check_workers_cap_their_threads(runs):
    got = outcomes(runs.n2)
    assert (got.get("test_caps.py::test_caps"), got.get("test_caps.py::test_other")) == ("PASSED", "PASSED"), \
        runs.n2.stdout.str()


def check_workers_recap_torch_before_every_test(runs):
    """The environment asks for every core, torch is imported before the plugin configures (by a
    conftest), and each test raises torch's thread count as it ends: every later test on that
    worker still starts with the worker's share."""
    cores = os.cpu_count() or 1
    limit = max(1, cores // 2)        # (on one core the share is the default: a missing cap cannot show)
    ran = where_it_ran(runs.n2_seen)
    assert set(ran) == {"gw0", "gw1"}, ran
    for worker, tests in ran.items():
        assert len(tests) >= 2, (worker, tests)     # xdist hands each worker at least two at the start
        for t in tests:
            assert t["blas"] and max(t["blas"]) <= limit, (worker, t)
            assert t["torch"] is not None and t["torch"] <= limit, (worker, t)


CHECKS = [check_wrong_backward_fails_with_the_report_not_a_traceback, check_without_xdist,
          check_n2_gives_the_serial_seeds_and_values, check_workers_share_the_controllers_random_seed,
          check_workers_cap_their_threads, check_workers_recap_torch_before_every_test]


def test_plugin_under_xdist_and_serially(pytester, monkeypatch):
    """The two shared runs (``make_runs``) serve six properties of the plugin. One test makes them
    and checks every property: each one that fails is reported under its own name with its own
    assertion, and the others are still checked. (Six tests sharing the runs would need them made
    once per xdist worker, or a file shared between workers; this suite shares none.)"""
    runs = make_runs(pytester, monkeypatch)
    failed = []
    for check in CHECKS:
        try:
            check(runs)
        except AssertionError as e:
            failed.append(f"{check.__name__[len('check_'):]}:\n{e}")
    assert not failed, f"{len(failed)} of {len(CHECKS)} properties failed:\n\n" + "\n\n".join(failed)


def test_bad_marker_argument_stops_an_xdist_run_before_any_test(pytester):
    """Under xdist a usage error cannot stop the run from a worker: the file is a collection error
    with the same message, and no test runs."""
    pytester.makepyfile('''
        import pytest

        def test_fine():
            pass

        @pytest.mark.crosscheck(steps=0)
        def test_bad(crosscheck):
            pass
    ''')
    result = pytester.runpytest_subprocess("-n", "2", *FAST)
    assert result.ret != pytest.ExitCode.OK
    text = result.stdout.str()
    assert "::test_bad: crosscheck marker: steps: expected a positive integer, got 0" in text, text
    assert "passed" not in text
