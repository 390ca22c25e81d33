"""Each graded test in a forked child process, so that a student's ``os._exit``, segfault, or hang
costs that test only: the child runs pytest's own protocol for the item (set-up, call, teardown,
with every plugin's hooks, the grader's included) and sends each report through a pipe as it is
made; pytest's process logs them as its own. A child that dies or overruns the time limit is
reported from what it had sent, and the rest is filled in as crashed or timed out.

Before the first fork of a test that uses the ``crosscheck`` fixture, pytest's process imports
what such tests need (torch, handbp, crosscheck's lockstep, the built-in twins) and runs one tiny
lockstep, so the children inherit all that instead of each paying for it again. A child runs torch on one thread: the parent
may have started torch's OpenMP pool, and a forked child that enters it waits forever.

The time limit: the child arms ``SIGALRM`` (the test fails with a traceback at the line that was
running, 0 points); the parent kills a child that has not finished 2 s after that (a hang in
native code, or a student's code that catches the signal's exception).
"""
import gc
import os
import pickle
import select
import signal
import struct
import time

import pytest

from . import GRADE, POINTS

GRACE = 2.0          # seconds the parent waits past the limit before it kills the child
_HEADER = struct.Struct("!I")
_warm = []


def warm_up():
    """Import and run once what the tests' lockstep runs need, in this (the parent) process."""
    if _warm:
        return
    _warm.append(True)
    try:
        import numpy as np
        import torch  # noqa: F401
        import handbp as hb
        import crosscheck
        model = hb.Sequential(hb.Linear(2, 2, rng=np.random.default_rng(0)), hb.Tanh())
        x = np.linspace(-1.0, 1.0, 4).reshape(2, 2)
        crosscheck.lockstep(model, hb.MSELoss(), hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                            [(x, x)] * 2)
    except Exception:       # noqa: BLE001 - no torch, or a broken install: each test will say so itself
        pass


def run_forked(item, nextitem, info, limit):
    """pytest's runtest protocol for ``item`` in a child process; logs its reports here. Returns True."""
    if "crosscheck" in getattr(item, "fixturenames", ()):        # it will run lockstep: warm up once, here
        warm_up()
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    read_end, write_end = os.pipe()
    started = time.time()
    # the child's collector leaves this process's objects alone: collecting them would write to each,
    # copying every page the child shares with this process (this process collects them as before)
    gc.freeze()
    pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    if pid == 0:                                   # the child
        os.close(read_end)
        code = 0
        try:
            _child(item, write_end, limit)
        except BaseException:                     # noqa: BLE001 - the parent reports what is missing
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    reports, status, timed_out = _wait(read_end, pid, None if limit is None else limit + GRACE)
    reports = [item.config.hook.pytest_report_from_serializable(config=item.config, data=d) for d in reports]
    reports += _missing(item, info, reports, status, timed_out, limit, started, _leftover_output(item.config))
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    try:        # what pytest's protocol would have torn down here, had the test run in this process
        item.session._setupstate.teardown_exact(nextitem)
    except Exception:       # noqa: BLE001 - a teardown error of an earlier, ungraded test: not this one's
        pass
    return True


# -- the child -------------------------------------------------------------------------------
class _Sender:
    """In the child: each report, once every plugin has written into it, goes to the parent."""

    def __init__(self, config, fd):
        self.config, self.fd = config, fd

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=outcome.get_result())
        payload = pickle.dumps(data)
        os.write(self.fd, _HEADER.pack(len(payload)))
        view = memoryview(payload)
        while view:
            view = view[os.write(self.fd, view):]


def _child(item, fd, limit):
    import sys
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    grader = item.config.pluginmanager.get_plugin("crosscheck-grader")
    if grader is not None:
        grader.in_child = True
    item.config.pluginmanager.register(_Sender(item.config, fd), "crosscheck-grading-sender")
    if limit:
        def expire(signum, frame):
            from .scoring import Timeout
            raise Timeout(f"your code ran longer than the time limit of {limit:g} s")
        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    from _pytest.runner import runtestprotocol
    runtestprotocol(item, nextitem=None, log=False)
    if limit:
        signal.setitimer(signal.ITIMER_REAL, 0)


# -- the parent ------------------------------------------------------------------------------
def _wait(fd, pid, deadline_s):
    """Read the child's reports until it closes the pipe or the deadline passes (then kill it).
    Returns ``(serialized reports, wait status, timed_out)``."""
    buffer, timed_out = b"", False
    end = None if deadline_s is None else time.monotonic() + deadline_s
    while True:
        wait = None if end is None else max(0.0, end - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buffer += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    reports = []
    while len(buffer) >= _HEADER.size:
        (n,) = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + n:
            break                                  # cut off mid-report by the crash
        reports.append(pickle.loads(buffer[_HEADER.size:_HEADER.size + n]))
        buffer = buffer[_HEADER.size + n:]
    return reports, status, timed_out


def _leftover_output(config):
    """What a crashed child printed after pytest's capture last read it (it would otherwise show
    up as the next test's output)."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None or not capman.is_globally_capturing():
        return ""
    try:
        out, err = capman.read_global_capture()
    except Exception:       # noqa: BLE001
        return ""
    return (out + err).strip()


def _death(status, timed_out, limit):
    if timed_out:
        return "timeout", f"your code ran longer than the time limit of {limit:g} s and was stopped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (a crash in native code: memory accessed out of bounds, e.g. through ctypes)" \
            if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE") else ""
        return "crashed", f"the test's process was killed by {name}{hint}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return "crashed", f"the test's process ended (exit status {code}) before the test finished: os._exit() or a crash"


def _missing(item, info, reports, status, timed_out, limit, started, output):
    """Reports for the phases the child never sent: the phase it died in, failed, and the rest."""
    from _pytest.reports import TestReport
    from ..plugin import replay_line
    sent = {r.when: r for r in reports}
    if "teardown" in sent:
        return []
    kind, message = _death(status, timed_out, limit)
    text = f"0 / {info['max_score']:g} points: {message}."
    if output:
        text += f"\n\nIt printed before that:\n{output[-2000:]}"
    text += f"\n\nreplay: {replay_line(item)}"
    grade = {"kind": kind, "score": 0.0, "stages_failed": None, "text": text,
             "extra_data": {"seed": getattr(item.config.option, "crosscheck_seed", None), "id": info["id"]}}
    now = time.time()
    common = dict(nodeid=item.nodeid, location=item.location, keywords={k: 1 for k in item.keywords},
                  duration=now - started, start=started, stop=now)
    props = [(POINTS, info), (GRADE, grade)]
    if "setup" not in sent:
        dead = "setup"
    elif sent["setup"].passed and "call" not in sent:
        dead = "call"
    else:
        dead = "teardown"               # (it died in the teardown: the test's score goes too)
    out = [TestReport(outcome="failed", longrepr=text, when=dead, user_properties=props, **common)]
    if dead != "teardown":
        out.append(TestReport(outcome="passed", longrepr=None, when="teardown", user_properties=[(POINTS, info)],
                              **common))
    return out
