"""The crosscheck pytest plugin, tested in subprocess pytest runs (pytester): options, header,
fixtures, marker, failure text, xdist seed hand-over and thread caps."""
import json
import os
import re

import pytest

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


def test_header_prints_the_given_seed(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--crosscheck-seed=1234", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["crosscheck: seed=1234"])
    assert result.ret == 0


def test_header_prints_a_random_seed_when_none_is_given(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    line = [l for l in result.outlines if l.startswith("crosscheck: seed=")]
    assert len(line) == 1 and int(line[0].split("=")[1]) >= 0


def test_options_in_help(pytester):
    result = pytester.runpytest_subprocess("--help")
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
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
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

        @pytest.mark.crosscheck(stepz=2)
        def test_bad_marker(crosscheck):
            pass
    ''')
    result = pytester.runpytest_subprocess("--crosscheck-steps=5", "--crosscheck-dtype=float32",
                                           "--crosscheck-rtol=1e-3", "-p", "no:cacheprovider", "-rA")
    got = outcomes(result)
    assert got["test_marker_and_options_reach_the_checker.py::test_options"] == "PASSED"
    assert got["test_marker_and_options_reach_the_checker.py::test_marker"] == "PASSED"
    assert got["test_marker_and_options_reach_the_checker.py::test_bad_marker"] == "ERROR"
    assert "unknown arguments ['stepz']" in result.stdout.str()


def test_rng_depends_on_seed_and_node_id_only(pytester):
    pytester.makepyfile('''
        def test_a(rng): print("DRAW a", rng.integers(10**9))
        def test_b(rng): print("DRAW b", rng.integers(10**9))
    ''')
    runs = [pytester.runpytest_subprocess("--crosscheck-seed=7", "-s", "-p", "no:cacheprovider") for _ in range(2)]
    draws = [sorted(l for l in r.outlines if "DRAW" in l) for r in runs]
    assert draws[0] == draws[1] and len(draws[0]) == 2
    assert draws[0][0].split()[-1] != draws[0][1].split()[-1]
    other = pytester.runpytest_subprocess("--crosscheck-seed=8", "-s", "-p", "no:cacheprovider")
    assert sorted(l for l in other.outlines if "DRAW" in l) != draws[0]


def test_wrong_backward_fails_with_the_report_not_a_traceback(pytester):
    pytester.makepyfile(WRONG)
    result = pytester.runpytest_subprocess("--crosscheck-seed=99", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    for piece in ("diverge at step 0", "where:      1 (DoubledTanh)", "quantity:   grad_input",
                  "diagnosis:  handbp = 2 × torch", "mismatched elements",
                  "replay: pytest 'test_wrong_backward_fails_with_the_report_not_a_traceback.py::test_wrong_backward'"
                  " --crosscheck-seed=99"):
        assert piece in out, out
    assert "lockstep.py" not in out and "site-packages" not in out


def test_without_xdist(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(tmp_path))
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--crosscheck-seed=3", "-p", "no:cacheprovider")
    assert result.ret == 0 and len(list(tmp_path.iterdir())) == 6


def test_n2_gives_the_serial_seeds_and_values(pytester, tmp_path, monkeypatch):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir(), parallel.mkdir()
    pytester.makepyfile(SUITE)
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(serial))
    assert pytester.runpytest_subprocess("--crosscheck-seed=42", "-p", "no:cacheprovider").ret == 0
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(parallel))
    result = pytester.runpytest_subprocess("--crosscheck-seed=42", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert seeds(serial) == seeds(parallel) and len(seeds(serial)) == 6


def test_workers_share_the_controllers_random_seed(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(tmp_path))
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    header = int([l for l in result.outlines if l.startswith("crosscheck: seed=")][0].split("=")[1])
    assert {v["base"] for v in seeds(tmp_path).values()} == {header}


def test_workers_cap_their_threads(pytester):
    pytester.makepyfile('''
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
    ''')
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rA")
    assert result.ret == 0, result.stdout.str()


def test_workers_recap_torch_before_every_test(pytester, monkeypatch):
    """The environment asks for every core, torch is imported before the plugin configures (by a
    conftest), and one test raises torch's thread count: every later test on that worker still
    runs with the worker's share."""
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: a worker's share equals the default, so a missing cap cannot show")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, str(cores))       # not the share an outer xdist worker may have set
    pytester.makeconftest("import torch")
    pytester.makepyfile(f'''
        import torch
        from threadpoolctl import threadpool_info

        LIMIT = {max(1, cores // 2)}

        def test_raises_the_count():
            torch.set_num_threads({cores})

        def test_runs_capped():
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and max(blas) <= LIMIT, blas
            assert torch.get_num_threads() <= LIMIT, torch.get_num_threads()
    ''')
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", "-rA")
    assert result.ret == 0, result.stdout.str()
    assert re.search(r"PASSED \S+::test_runs_capped", result.stdout.str())
