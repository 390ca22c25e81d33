"""Smoke test of ``handbp bench lockstep`` with tiny settings: it runs, prints its figures and
writes its JSON. No timing is asserted (the machine is shared), and the pytest -n 2 timing, which
runs the whole suite twice, is left out."""
import json
import os

import pytest
import torch
from threadpoolctl import threadpool_limits

from handbp.cli import main


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.fixture
def restore_threads():
    """The benchmark pins BLAS and torch to its thread count: put them back afterwards, so later
    tests in this process keep the thread counts they had."""
    env = {var: os.environ.get(var) for var in THREAD_VARS}
    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):          # restores the BLAS limits on exit
        yield
    torch.set_num_threads(torch_threads)
    for var, value in env.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


def test_lockstep_benchmark_prints_figures_and_json(tmp_path, capsys, restore_threads):
    path = tmp_path / "lockstep.json"
    assert main(["bench", "lockstep", "--steps", "2", "--repeats", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("handbp bench lockstep — ")
    for piece in ("machine: ", "threads: numpy/BLAS=1", "handbp step + torch step", "lockstep step",
                  "ratio lockstep / (handbp + torch)", "goal ≤ 1.5×"):
        assert piece in out, out
    assert "pytest" not in out                    # the suite timing runs only with --pytest
    data = json.loads(path.read_text())
    assert {"date", "machine", "threads", "pair_seconds", "lockstep_seconds", "ratio", "rounds"} <= set(data)
    assert len(data["rounds"]) == 1 and all(t > 0 for t in data["rounds"][0])
    assert data["ratio"] > 0 and "pytest" not in data


@pytest.mark.parametrize("option", ["--steps", "--repeats", "--threads"])
def test_lockstep_benchmark_rejects_a_count_below_one(option, capsys):
    assert main(["bench", "lockstep", option, "0"]) == 2
    err = capsys.readouterr().err
    assert f"{option}: expected an integer ≥ 1, got 0" in err


def test_machine_ceiling_times_one_process_against_two():
    """The --pytest figure comes with the machine's own ceiling for two processes: a loop timed
    alone and as two copies at once. Tiny loops here; only the shape of the result is checked."""
    from handbp.benchmarks.lockstep import machine_ceiling
    ceiling, rows = machine_ceiling(rounds=2, loops=10_000)
    assert len(rows) == 2 and all(a > 0 and len(t) == 2 and min(t) > 0 for a, t in rows)
    assert ceiling == pytest.approx(sorted(2 * a / (sum(t) / 2) for a, t in rows)[0] / 2
                                    + sorted(2 * a / (sum(t) / 2) for a, t in rows)[1] / 2)
