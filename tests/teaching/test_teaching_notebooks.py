"""The notebooks in docs/notebooks run top to bottom (so they cannot rot), are what their build
script writes, and the Korean one carries every code cell of the English one."""
import importlib.util
import pathlib
import re
import time

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "notebooks"


def builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", FOLDER / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_notebook_runs_top_to_bottom(lang, tmp_path):
    from nbclient import NotebookClient
    nb = nbformat.read(FOLDER / f"backprop.{lang}.ipynb", as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    print(f"backprop.{lang}.ipynb ran in {time.perf_counter() - t0:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "weights moved: False" in text and "weights moved: True" in text     # the seed's bug, and fixed
    assert "✓ every value matches torch's" in text                              # explain, with torch beside
    for hint in ("hint [factor]", "hint [zero]", "hint [never_updated]"):     # the seed's bugs, caught
        assert hint in text
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 2                                                   # hb.draw, and the speed plot
    assert len(re.findall(r"width +\d+ depth +\d+: .* backprop", text)) == 11


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_notebooks_are_what_the_build_script_writes(lang):
    """Edit build_notebooks.py, not the .ipynb files: both languages come from one list of cells."""
    built = builder().build(lang)
    stored = nbformat.read(FOLDER / f"backprop.{lang}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in built.cells]
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")    # stored without outputs


def strip_comments(source):
    return [re.sub(r"\s+#.*$", "", line).rstrip() for line in source.splitlines() if not line.strip().startswith("#")]


def test_the_korean_notebook_carries_every_code_cell():
    en, ko = (nbformat.read(FOLDER / f"backprop.{lang}.ipynb", as_version=4) for lang in ("en", "ko"))
    code = lambda nb: [strip_comments(c.source) for c in nb.cells if c.cell_type == "code"]   # noqa: E731
    strip_labels = lambda cells: [[re.sub(r" \([^)]*[가-힣][^)]*\)", "", line) for line in c] for c in cells]  # noqa: E731
    assert strip_labels(code(ko)) == code(en)
    assert [c.cell_type for c in en.cells] == [c.cell_type for c in ko.cells]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_notebook_derives_what_it_uses(lang):
    prose = "\n".join(c.source for c in nbformat.read(FOLDER / f"backprop.{lang}.ipynb", as_version=4).cells
                      if c.cell_type == "markdown")
    for formula in ("σ′ = y(1 − y)", "(hᵢ − yᵢ)/n", "dL/dW = x dhᵀ", "dW = dyᵀ x", "dx = dy W", "db = Σₙ dy",
                    "last_x", "last_h", "last_o", "last_diff"):
        assert formula in prose, formula
