"""``handbp grade bundle``: the zip Gradescope's autograder takes (its "Autograder
Specifications": ``setup.sh`` and ``run_autograder`` at the root of the zip, unpacked to
``/autograder/source``).

* ``setup.sh`` runs once, when Gradescope builds the image: a virtual environment in
  ``/autograder/venv`` with the CPU build of the torch this course was tested with
  (``torch==2.13.0`` from PyTorch's CPU index: the default build pulls gigabytes of CUDA), the same
  NumPy, pytest and threadpoolctl versions, and handbp from the wheel in the zip;
* ``run_autograder`` runs per submission: ``python -m crosscheck.grading.autograder`` with the
  course's settings (seed, time limit, the student's file name), which copies the submission,
  runs the suite and writes ``/autograder/results/results.json`` whatever happens;
* the wheel is built here from the installed handbp and crosscheck (their source files, metadata
  and entry points), so the zip holds exactly the code the course ran, and needs no network for it;
* the course's tests folder, as it is (caches left out).
"""
import base64
import hashlib
import importlib.metadata
import io
import os
import shlex
import stat
import zipfile

SKIP_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", ".git"}
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def _files(folder):
    """``(path, relative path)`` of every file under ``folder``, caches left out, sorted."""
    out = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                path = os.path.join(top, name)
                out.append((path, os.path.relpath(path, folder).replace(os.sep, "/")))
    return out


def build_wheel():
    """``(file name, bytes)`` of a wheel of the installed handbp and crosscheck packages."""
    import crosscheck
    import handbp
    dist = importlib.metadata.distribution("handbp")
    version = dist.version
    info = f"handbp-{version}.dist-info"
    entries = []
    for package in (handbp, crosscheck):
        folder = os.path.dirname(package.__file__)
        for path, rel in _files(folder):
            with open(path, "rb") as f:
                entries.append((f"{package.__name__}/{rel}", f.read()))
    requires = "".join(f"Requires-Dist: {r}\n" for r in dist.requires or ())
    extras = sorted({r.split('extra == "')[1].split('"')[0] for r in dist.requires or () if 'extra == "' in r})
    metadata = (f"Metadata-Version: 2.1\nName: handbp\nVersion: {version}\n"
                f"Summary: {dist.metadata.get('Summary', '')}\nRequires-Python: >=3.10\n"
                + "".join(f"Provides-Extra: {e}\n" for e in extras) + requires)
    points = {}
    for ep in dist.entry_points:
        points.setdefault(ep.group, []).append(f"{ep.name} = {ep.value}")
    entry_points = "".join(f"[{group}]\n" + "\n".join(lines) + "\n\n" for group, lines in sorted(points.items()))
    wheel = "Wheel-Version: 1.0\nGenerator: handbp grade bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries += [(f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", wheel.encode()),
                (f"{info}/entry_points.txt", entry_points.encode())]
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries)
    record += f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries + [(f"{info}/RECORD", record.encode())]:
            z.writestr(_entry(name), data)
    return f"handbp-{version}-py3-none-any.whl", buf.getvalue()


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _entry(name, mode=0o644):
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))   # the same bytes for the same files
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def setup_script(wheel):
    """``setup.sh``: the pinned environment (see the module docstring)."""
    torch = (_version("torch") or "2.13.0").split("+")[0]
    pins = " ".join(shlex.quote(f"{n}=={v}") for n in ("numpy", "pytest", "threadpoolctl", "tqdm")
                    if (v := _version(n)))
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image (written by handbp grade bundle).
set -euo pipefail
cd /autograder/source
if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
# the CPU build: the default torch wheel pulls gigabytes of CUDA libraries
/autograder/venv/bin/python -m pip install --quiet "torch=={torch}" --index-url {TORCH_INDEX}
/autograder/venv/bin/python -m pip install --quiet ./{wheel} {pins}
/autograder/venv/bin/python -c "import torch, handbp, crosscheck.grading; print('torch', torch.__version__, 'handbp', handbp.__version__)"
"""


def run_script(tests, submission_file, seed, timeout, extra):
    """``run_autograder``: one submission (see the module docstring)."""
    args = [f"--tests={tests}", f"--seed={seed}"]
    if submission_file:
        args.append(f"--submission-file={submission_file}")
    if timeout:
        args.append(f"--timeout={timeout:g}")
    if extra:
        args += ["--", *extra]
    return f"""#!/usr/bin/env bash
# Gradescope runs this for each submission (written by handbp grade bundle): the course's tests on
# the student's files, results in /autograder/results/results.json. AUTOGRADER_ROOT and
# AUTOGRADER_PYTHON let it run outside Gradescope (a fake /autograder in a test).
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}}"
exec "$PYTHON" -m crosscheck.grading.autograder --root="$ROOT" {" ".join(shlex.quote(a) for a in args)}
"""


def build_bundle(tests_dir, out, *, seed, submission_file="", timeout=None, extra=()):
    """Write the autograder zip ``out`` for the course's tests in ``tests_dir``. Returns the names
    it holds."""
    tests_dir = os.path.abspath(tests_dir)
    if not os.path.isdir(tests_dir):
        raise FileNotFoundError(f"grade bundle: TESTS_DIR: {tests_dir} is not a folder")
    if not any(rel.endswith(".py") for _, rel in _files(tests_dir)):
        raise ValueError(f"grade bundle: TESTS_DIR: {tests_dir} holds no .py file: expected the course's tests")
    tests = os.path.basename(tests_dir)
    wheel_name, wheel = build_wheel()
    members = [("setup.sh", setup_script(wheel_name).encode(), 0o755),
               ("run_autograder", run_script(tests, submission_file, seed, timeout, extra).encode(), 0o755),
               (wheel_name, wheel, 0o644)]
    for path, rel in _files(tests_dir):
        with open(path, "rb") as f:
            members.append((f"{tests}/{rel}", f.read(), 0o644))
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in members:
            z.writestr(_entry(name, mode), data)
    os.replace(tmp, out)
    return [name for name, _, _ in members]
