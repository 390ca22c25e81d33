"""README's code runs as written: its Python blocks in order (the crosscheck block uses the model
the handbp block trains), and its pytest block as a test file of an inner pytest run."""
import pathlib
import re

import numpy as np
import pytest

pytest_plugins = ["pytester"]

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) == 3, f"README's python blocks changed ({len(blocks)}): update this test"
    assert "hb.fit(" in blocks[0] and "cc.lockstep(" in blocks[1] and "def test_" in blocks[2]


def test_readme_training_and_crosscheck_blocks_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)              # the first block saves spirals.npz
    namespace = {}
    training, checking, _ = python_blocks()
    exec(compile(training, "README.md (Using handbp)", "exec"), namespace)
    accuracy = float(capsys.readouterr().out.split()[-1])
    # README's comment says 1.0; a BLAS kernel's last bits may move a point on the boundary
    assert accuracy >= 0.97, accuracy
    assert (tmp_path / "spirals.npz").exists()
    exec(compile(checking, "README.md (Using crosscheck)", "exec"), namespace)
    summary = capsys.readouterr().out
    assert "10" in summary and namespace["trace"] is not None
    assert np.all(np.isfinite(namespace["model"][0].weight.data))


def test_readme_pytest_block_passes_as_a_test_file(pytester):
    pytest.importorskip("torch")
    (plugin_block,) = python_blocks()[2:]
    pytester.makepyfile(test_readme_block=plugin_block)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
