"""The wheel, as users install it: every package (each folder with an ``__init__.py`` under handbp/
and crosscheck/), every file those folders hold and the entry points are in it. The editable
install the suite runs from would not notice a package left out of the wheel; a user's
``import handbp`` would. The full install check (a fresh virtual environment, the command line,
the pytest plugin without torch and with it) is ``.ci/wheel_check``."""
import configparser
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ["handbp", "crosscheck"]
# what a checkout holds besides the sources: built or cached files, and the environment
NOT_SOURCES = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
               ".hypothesis", "bench-out")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The names in a wheel built from a copy of the checkout (a build in the checkout itself
    would reuse its build/ folder, where a module deleted since is still found)."""
    src = tmp_path_factory.mktemp("src") / "checkout"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("handbp-*.whl")
    with zipfile.ZipFile(path) as z:
        return {"names": set(z.namelist()), "entry_points": next(
            z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))}


def sources(package):
    """Every file under the package's folder that is not a build or cache file, relative to ROOT."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_folder_is_in_the_wheel(package, wheel):
    folders = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("__init__.py")
                     if "__pycache__" not in p.parts)
    assert len(folders) >= 1
    missing = [f for f in folders if f"{f}/__init__.py" not in wheel["names"]]
    assert missing == [], f"package folders missing from the wheel: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_file_of_a_package_is_in_the_wheel(package, wheel):
    """Modules and any data file beside them (a data file needs package-data to be shipped)."""
    missing = [f for f in sources(package) if f not in wheel["names"]]
    assert missing == [], f"files missing from the wheel: {missing}"


def test_the_wheel_declares_the_command_and_the_pytest_plugins(wheel):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel["entry_points"])
    assert dict(entry_points["console_scripts"]) == {"handbp": "handbp.cli:main"}
    assert dict(entry_points["pytest11"]) == {"crosscheck": "crosscheck.plugin",
                                              "crosscheck-grading": "crosscheck.grading"}
