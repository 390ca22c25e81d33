"""A crosscheck suite run through pytest-xdist's own distribution, two separate ``--tx popen``
gateways (what ``--tx ssh=host//python=...`` does across machines), must give the same outcome and
the same per-test seeds as a serial run: nothing in the plugin depends on order, shared files or
ports."""
import json
import re

from tests.helpers.inner_runs import FAST

pytest_plugins = ["pytester"]

SUITE = '''
import json, os
import numpy as np
import pytest
import handbp as hb

class DoubledTanh(hb.Tanh):
    def backward(self, dy):
        return 2 * super().backward(dy)

CASES = [(d, w, act) for d in (0, 1, 2) for w in (1, 3, 8) for act in ("Tanh", "Sigmoid")]

@pytest.mark.parametrize("depth, width, act", CASES)
def test_case(depth, width, act, crosscheck, rng, request):
    sizes = [3] + [width] * (depth + 1) + [2]
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [hb.Linear(i, o, rng=rng), getattr(hb, act)()]
    m = hb.Sequential(*layers[:-1])
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    name = request.node.nodeid.split("::")[1]
    with open(os.path.join(os.environ["CROSSCHECK_TEST_OUT"], name + ".json"), "w") as f:
        json.dump([crosscheck.seed, float(rng.normal())], f)

def test_wrong(crosscheck, rng):
    m = hb.Sequential(hb.Linear(3, 4, rng=rng), DoubledTanh(), hb.Linear(4, 2, rng=rng))
    crosscheck.lockstep(m, hb.MSELoss(), hb.optim.SGD(m.parameters(), lr=0.1))
'''


def summary(result):
    got = {}
    for line in result.outlines:
        m = re.match(r"^(PASSED|FAILED|ERROR) (\S+)", line)
        if m:
            got[m.group(2)] = m.group(1)
    return got


def seeds(folder):
    return {p.name: json.loads(p.read_text()) for p in folder.iterdir()}


def test_two_popen_gateways_match_a_serial_run(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(SUITE)
    common = ("--crosscheck-seed=2024", *FAST, "-rA")
    out_serial, out_dist = tmp_path / "serial", tmp_path / "distributed"
    out_serial.mkdir(), out_dist.mkdir()
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(out_serial))
    serial = pytester.runpytest_subprocess(*common)
    monkeypatch.setenv("CROSSCHECK_TEST_OUT", str(out_dist))
    distributed = pytester.runpytest_subprocess(*common, "-v", "--tx", "popen//id=gw-a", "--tx", "popen//id=gw-b",
                                                "--dist", "load")
    assert serial.ret == distributed.ret == 1
    s, d = summary(serial), summary(distributed)
    assert len(s) == 19 and s == d
    assert [k for k, v in s.items() if v == "FAILED"] == ["test_two_popen_gateways_match_a_serial_run.py::test_wrong"]
    assert seeds(out_serial) == seeds(out_dist) and len(seeds(out_serial)) == 18
    workers = set(re.findall(r"^\[(gw-[ab])\] \[", distributed.stdout.str(), flags=re.M))
    assert workers == {"gw-a", "gw-b"}        # both gateways ran tests
