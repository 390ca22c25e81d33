"""Without torch, the commands that cross-check say how to install it in one line, no traceback:
``handbp zoo`` and ``handbp bench lockstep`` stop with exit status 2, ``handbp explain`` goes on
with handbp's own values, as ``hb.explain(..., torch="auto")`` does. Each runs in a fresh process
where ``import torch`` fails (``sys.modules["torch"] = None``), as in an environment without it."""
import subprocess
import sys

import pytest

from crosscheck._torch import INSTALL_HINT

WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"
CLI = WITHOUT_TORCH + "from handbp.cli import main; sys.exit(main(sys.argv[1:]))"


def run_without_torch(code, *argv):
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command, argv", [("zoo", []), ("zoo", ["--bug", "sign-flipped"]),
                                           ("bench lockstep", []), ("bench lockstep", ["--repeats", "1"])])
def test_a_command_that_needs_torch_prints_the_hint_and_exits_2(command, argv):
    done = run_without_torch(CLI, *command.split(), *argv)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"handbp {command}: {INSTALL_HINT}\n")


def test_explain_prints_the_hint_then_handbps_values():
    done = run_without_torch(CLI, "explain", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"handbp explain: {INSTALL_HINT}\n"
    assert "(no reference values: handbp's own only" in done.stdout and "module 0 (Linear)" in done.stdout
    assert "✓" not in done.stdout and "✗" not in done.stdout


def test_commands_that_need_no_torch_say_nothing_about_it():
    done = run_without_torch(CLI, "zoo", "--list")
    assert done.returncode == 0 and done.stderr == "" and "sign-flipped" in done.stdout
    done = run_without_torch(CLI, "explain", "--no-torch")
    assert done.returncode == 0 and done.stderr == "" and "module 0 (Linear)" in done.stdout
    assert "(--no-torch: handbp's values only)" in done.stdout and "torch not available" not in done.stdout


def test_the_library_explain_needs_no_torch():
    """hb.explain is handbp's alone; crosscheck.explain, which adds torch's values, says how to install it."""
    code = WITHOUT_TORCH + (
        "import numpy as np, handbp as hb, crosscheck\n"
        "model = hb.Sequential(hb.Linear(3, 2, rng=np.random.default_rng(0)))\n"
        "e = hb.explain(model, hb.MSELoss(), np.ones(3), np.ones(2))\n"
        "print(e.all_match, 'no reference values' in str(e))\n"
        "try:\n"
        "    crosscheck.explain(model, hb.MSELoss(), np.ones(3), np.ones(2))\n"
        "except ImportError as err:\n"
        "    print(str(err).startswith('" + INSTALL_HINT.replace("'", "\\'") + "'))\n")
    done = run_without_torch(code)
    assert (done.returncode, done.stdout, done.stderr) == (0, "None True\nTrue\n", "")
