"""The crosscheck pytest plugin (registered through the ``pytest11`` entry point).

* Options (group ``crosscheck``): ``--crosscheck-seed``, ``--crosscheck-steps``,
  ``--crosscheck-dtype``, ``--crosscheck-rtol``, ``--crosscheck-atol``.
* Marker ``@pytest.mark.crosscheck(steps=, dtype=, rtol=, atol=, resync=)`` overrides them per test.
* Fixtures: ``crosscheck`` (a ``Checker`` configured from options and marker, with ``.lockstep``)
  and ``rng`` (a ``np.random.Generator`` seeded by base seed + crc32 of the test's id in its suite).
* The base seed is chosen once, on the controller, and handed to pytest-xdist workers, so each test
  sees the same data serially and under ``-n``; the header prints it for replay. A test's id in its
  suite (``suite_id``) is its file's path from the suite's top folder and its name, so the seed does
  not depend on the folder pytest runs from either.
* Under xdist each worker caps NumPy's BLAS and torch's threads so workers do not oversubscribe.
* A ``Divergence`` is shown as its report, not as a traceback; a test that needs torch where it is
  not installed, as the one line saying how to install it.

This module loads in every pytest run of an environment where handbp is installed, so it imports
nothing heavy at load time: NumPy and handbp only inside the fixtures that need them, torch never.
"""
import argparse
import functools
import math
import os
import random
import shlex
import sys
import zlib

import pytest

_SEED_ATTR = "crosscheck_seed"


def seed_type(text):
    """``--crosscheck-seed``: a non-negative integer, or ``random``."""
    if text == "random":
        return random.Random().getrandbits(32)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer or 'random', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer or 'random', got {value}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got {text!r}")
    return value


DTYPES = ("float64", "float32")


def _marker_value(key, value):
    """A ``crosscheck`` marker argument checked by the rule of its command-line option (``steps``
    as ``--crosscheck-steps``, ...), or ValueError saying what was expected."""
    import numpy as np
    if key == "steps":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"expected a positive integer, got {value!r}")
        return int(value)
    if key == "dtype":
        name = np.dtype(value).name if isinstance(value, (type, np.dtype)) else value
        if name not in DTYPES:
            raise ValueError(f"expected one of {DTYPES}, got {value!r}")
        return name
    if key in ("rtol", "atol"):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value < 0:
            raise ValueError(f"expected a finite number ≥ 0 or None, got {value!r}")
        return float(value)
    if key == "resync":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"expected True or False, got {value!r}")
        return bool(value)
    raise ValueError(f"unknown argument; expected some of {sorted(MARKER_ARGS)}")


MARKER_ARGS = ("steps", "dtype", "rtol", "atol", "resync")


def marker_settings(item):
    """The ``crosscheck`` marker's arguments of ``item``, checked, as a dict ({} without a marker).
    A bad one is a ``pytest.UsageError`` naming the test, the marker and the argument."""
    marker = item.get_closest_marker("crosscheck")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: crosscheck marker: use keyword arguments, "
                                "e.g. @pytest.mark.crosscheck(steps=5)")
    out = {}
    for key, value in marker.kwargs.items():
        try:
            out[key] = _marker_value(key, value)
        except ValueError as e:
            raise pytest.UsageError(f"{item.nodeid}: crosscheck marker: {key}: {e}") from None
    return out


def pytest_collection_modifyitems(config, items):
    # a bad marker stops the run before any test, as a bad option does (on an xdist worker, where a
    # usage error cannot stop the run, pytest_make_collect_report has already reported it)
    for item in items:
        marker_settings(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """On an xdist worker, a test whose ``crosscheck`` marker is bad makes its file a collection
    error (which stops the run before any test, with the same message)."""
    outcome = yield
    report = outcome.get_result()
    if not hasattr(collector.config, "workerinput") or not report.passed:
        return
    for item in report.result:
        if isinstance(item, pytest.Item):
            try:
                marker_settings(item)
            except pytest.UsageError as e:
                report.outcome, report.longrepr, report.result = "failed", str(e), []
                return


def pytest_addoption(parser):
    group = parser.getgroup("crosscheck", "crosscheck: handbp against its torch twin, step by step")
    group.addoption("--crosscheck-seed", action="store", dest=_SEED_ATTR, type=seed_type, default="random",
                    help="base seed for the rng fixture and generated data: an integer, or 'random' "
                         "(the default, printed in the header)")
    group.addoption("--crosscheck-steps", action="store", dest="crosscheck_steps", type=_positive_int, default=3,
                    help="training steps per lockstep check (default 3)")
    group.addoption("--crosscheck-dtype", action="store", dest="crosscheck_dtype", default="float64",
                    choices=DTYPES, help="dtype of the models tests build (default float64)")
    group.addoption("--crosscheck-rtol", action="store", dest="crosscheck_rtol", type=_tolerance, default=None,
                    help="relative tolerance (default: per dtype, see crosscheck.tolerance)")
    group.addoption("--crosscheck-atol", action="store", dest="crosscheck_atol", type=_tolerance, default=None,
                    help="absolute tolerance (default: per dtype, see crosscheck.tolerance)")


class XdistHooks:
    """Registered only when pytest-xdist is present: hands the controller's seed to each worker."""

    def pytest_configure_node(self, node):
        node.workerinput[_SEED_ATTR] = getattr(node.config.option, _SEED_ATTR)


def _worker_threads(config):
    """Threads per xdist worker: the cores shared out among the workers (at least 1)."""
    count = int(config.workerinput.get("workercount", 1))
    return max(1, (os.cpu_count() or 1) // count)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "crosscheck(steps=None, dtype=None, rtol=None, atol=None, resync=True): "
                   "per-test overrides of the crosscheck options")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _SEED_ATTR in workerinput:
        setattr(config.option, _SEED_ATTR, workerinput[_SEED_ATTR])
    if getattr(config.option, _SEED_ATTR, None) == "random":   # default not run through type=
        setattr(config.option, _SEED_ATTR, seed_type("random"))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "crosscheck-xdist")
    if workerinput is not None:
        n = _worker_threads(config)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)
        try:
            from threadpoolctl import threadpool_limits
            config._crosscheck_limits = threadpool_limits(n)
        except ImportError:
            pass
        config._crosscheck_threads = n


def pytest_report_header(config):
    return f"crosscheck: seed={getattr(config.option, _SEED_ATTR)}"


@functools.lru_cache(maxsize=None)
def _suite_top(folder):
    """The suite's top folder for test files in ``folder``: the first folder up that is not a
    package (has no ``__init__.py``), the folder pytest's default import mode puts on sys.path."""
    while os.path.exists(os.path.join(folder, "__init__.py")) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def suite_id(item):
    """The test's id inside its suite: its file's path from the suite's top folder (see
    ``_suite_top``), then its name with class and parameters, as in the node id
    (``test_layers.py::test_linear[3]``). Unlike the node id it does not depend on the rootdir, so a
    student who runs the course's tests from another folder gets the grader's seeds."""
    path = getattr(item, "path", None)
    if path is None:
        return item.nodeid
    path = os.path.abspath(str(path))
    rel = os.path.relpath(path, _suite_top(os.path.dirname(path))).replace(os.sep, "/")
    _, sep, name = item.nodeid.partition("::")
    return f"{rel}::{name}" if sep else rel


def seed_for(config, key):
    """The seed a test sees: base seed + crc32(``key``, its ``suite_id``), independent of order,
    worker and the folder pytest runs from."""
    return int(getattr(config.option, _SEED_ATTR)) + zlib.crc32(key.encode())


def replay_line(item):
    """The command that reruns ``item`` with the data it saw: the test by its path from the folder
    pytest was run from, the seed, and the submission when one was given: as
    ``--crosscheck-submission`` named it, or when that names a folder (a grader's copy of what the
    student handed in), the file in it, as the student's own copy is named; the ini's
    ``crosscheck_replay_submission`` says otherwise."""
    config = item.config
    path = getattr(item, "path", None)
    test = item.nodeid
    if path is not None:
        rel = os.path.relpath(str(path), str(config.invocation_params.dir))
        if not rel.startswith(".."):
            _, sep, name = item.nodeid.partition("::")
            test = rel.replace(os.sep, "/") + (f"::{name}" if sep else "")
    line = f"pytest '{test}' --crosscheck-seed={getattr(config.option, _SEED_ATTR)}"
    submission = _replay_submission(config)
    return f"{line} --crosscheck-submission={shlex.quote(submission)}" if submission else line


def _replay_submission(config):
    given = getattr(config.option, "crosscheck_submission", None)
    if not given:
        return None
    try:
        shown = config.getini("crosscheck_replay_submission")
    except ValueError:                  # the grading plugin is not loaded
        return given
    if shown:
        return shown
    from .grading.handin import SubmissionError, locate
    try:
        path, root = locate(config)
    except SubmissionError:
        return given
    return os.path.relpath(path, root).replace(os.sep, "/") if path != root else given


@pytest.fixture
def rng(request):
    """A ``np.random.Generator`` seeded by base seed + crc32 of the test's ``suite_id``."""
    import numpy as np
    return np.random.default_rng(seed_for(request.config, suite_id(request.node)))


class Checker:
    """What the ``crosscheck`` fixture gives a test: the settings from options and marker, an rng,
    data generation, and ``lockstep`` with those settings."""

    def __init__(self, steps, dtype, rtol, atol, resync, seed, nodeid, threads=None):
        for key, value in (("steps", steps), ("dtype", dtype), ("rtol", rtol), ("atol", atol), ("resync", resync)):
            try:
                _marker_value(key, value)
            except ValueError as e:
                raise ValueError(f"Checker: {key}: {e}") from None
        import numpy as np
        self.steps, self.dtype = int(steps), np.dtype(dtype)
        self.rtol, self.atol, self.resync = rtol, atol, resync
        self.seed, self.nodeid = seed, nodeid
        self.threads = threads          # an xdist worker's thread cap, None when not capped
        self.rng = np.random.default_rng(seed)
        self.traces = []                # every lockstep run of this test, in order

    def data(self, model, loss, batch=4, steps=None):
        """``steps`` random ``(x, y)`` batches that fit ``model`` and ``loss``.

        x ~ N(0, 1) of shape ``(batch, in_features)`` (``(in_features,)`` when ``batch`` is None);
        y: class indices for CrossEntropyLoss, values in [0, 1] for BCEWithLogitsLoss, N(0, 1)
        otherwise, shaped like the model's output.
        """
        import handbp as hb
        from handbp.recording import leaves
        first = leaves(model)[0][1]
        if not isinstance(getattr(first, "in_features", None), int):
            raise ValueError(f"Checker.data: the model's first layer ({type(first).__name__}) has no integer "
                             "in_features to size the input from; build the data yourself")
        steps = self.steps if steps is None else steps
        try:
            _marker_value("steps", steps)
        except ValueError as e:
            raise ValueError(f"Checker.data: steps: {e}") from None
        shape = (first.in_features,) if batch is None else (batch, first.in_features)
        try:
            out_shape = model(self.rng.normal(size=shape).astype(model.dtype)).shape
        except Exception as e:
            from .lockstep import PHASES, _mark_phase
            _mark_phase(e, PHASES.index("forward"))     # (the grading plugin scores where code raised)
            raise
        batches = []
        for _ in range(steps):
            x = self.rng.normal(size=shape).astype(model.dtype)
            if isinstance(loss, hb.CrossEntropyLoss):
                y = self.rng.integers(0, out_shape[-1], out_shape[:-1])
            elif isinstance(loss, hb.BCEWithLogitsLoss):
                y = self.rng.uniform(0, 1, out_shape).astype(model.dtype)
            else:
                y = self.rng.normal(size=out_shape).astype(model.dtype)
            batches.append((x, y))
        return batches

    def lockstep(self, model, loss, optimizer, data=None, **overrides):
        """``crosscheck.lockstep`` with this test's tolerances; data generated when omitted."""
        from .lockstep import lockstep
        if self.threads:
            from ._torch import require_torch
            require_torch()             # imported now, so that the cap reaches it
            _cap_torch_threads(self.threads)
        kwargs = dict(rtol=self.rtol, atol=self.atol, resync=self.resync)
        kwargs.update(overrides)
        raise_on_divergence = kwargs.pop("raise_on_divergence", True)
        if data is None:
            data = self.data(model, loss)
        trace = lockstep(model, loss, optimizer, data, raise_on_divergence=False, **kwargs)
        self.traces.append(trace)         # (the grading plugin reads them: steps checked, worst error)
        if trace.divergence is not None and raise_on_divergence:
            raise trace.divergence
        return trace


def _cap_torch_threads(n):
    """Hold torch's intra-op pool to ``n`` threads, once torch is imported (the plugin never
    imports it itself). Applied before every test on a worker, so no test inherits a change that an
    earlier one made, and the cap reaches tests that call torch or ``crosscheck.lockstep`` directly."""
    torch = sys.modules.get("torch")
    if n and torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def pytest_runtest_setup(item):
    _cap_torch_threads(getattr(item.config, "_crosscheck_threads", None))


@pytest.fixture
def crosscheck(request):
    """A ``Checker`` configured from the command-line options and the test's ``crosscheck`` marker."""
    opt = request.config.option
    settings = dict(steps=opt.crosscheck_steps, dtype=opt.crosscheck_dtype, rtol=opt.crosscheck_rtol,
                    atol=opt.crosscheck_atol, resync=True)
    settings.update(marker_settings(request.node))
    return Checker(seed=seed_for(request.config, suite_id(request.node)), nodeid=request.node.nodeid,
                   threads=getattr(request.config, "_crosscheck_threads", None), **settings)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report_module = sys.modules.get("crosscheck.report")     # not imported: no Divergence can have been raised
    if report_module is not None and call.excinfo is not None \
            and isinstance(call.excinfo.value, report_module.Divergence) \
            and report.failed:
        report.longrepr = f"{call.excinfo.value.report()}\n\nreplay: {replay_line(item)}"
    hint = sys.modules.get("crosscheck._torch")             # not imported: no install hint can have been raised
    if hint is not None and call.excinfo is not None and report.failed \
            and isinstance(call.excinfo.value, ImportError) and str(call.excinfo.value).startswith(hint.INSTALL_HINT):
        report.longrepr = str(call.excinfo.value)   # torch is missing: the line saying how to install it, not a traceback
