"""In an environment without torch (``handbp`` installed without its ``torch`` extra), a test that
cross-checks fails with the one line saying how to install torch, not with a traceback through
crosscheck's modules; any other ImportError keeps its traceback. The inner suite's conftest makes
``import torch`` fail, as it does where torch is not installed."""
import pytest

from crosscheck._torch import INSTALL_HINT
from tests.helpers.inner_runs import FAST

pytest_plugins = ["pytester"]

CONFTEST = '''
import sys
sys.modules["torch"] = None       # import torch: ImportError, as without torch installed
'''

SUITE = '''
import handbp as hb
import crosscheck as cc

def model(rng):
    return hb.Sequential(hb.Linear(3, 2, rng=rng))

def test_fixture(crosscheck, rng):
    m = model(rng)
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1))

def test_direct(crosscheck, rng):
    m = model(rng)
    cc.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1), crosscheck.data(m, hb.MSELoss()))

def test_mirror(rng):
    cc.mirror(model(rng))

def test_other_import_error():
    raise ImportError("no module named 'something_else'")
'''


def sections(text):
    """Each failure section of pytest's report, by test name."""
    out, name = {}, None
    for line in text.splitlines():
        if line.startswith("_____") and line.rstrip("_ ").lstrip("_ "):
            name = line.strip("_ ")
            out[name] = []
        elif line.startswith("====="):
            name = None
        elif name is not None and not line.startswith("[gw"):      # (xdist's line naming the worker)
            out[name].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_test_that_needs_torch_fails_with_the_install_line(pytester, workers):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(*FAST, *workers)
    result.assert_outcomes(failed=4)
    got = sections(result.stdout.str())
    for name in ("test_fixture", "test_direct", "test_mirror"):
        assert got[name] == f"{INSTALL_HINT}  (import of torch halted; None in sys.modules)", got[name]
    assert "raise ImportError" in got["test_other_import_error"]        # its traceback, as pytest shows it
