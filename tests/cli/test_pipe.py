"""The command line read through a pipe that closes early (``handbp zoo | head -1``)."""
import subprocess
import sys


def test_a_reader_that_stops_early_gets_no_traceback():
    """The reader takes the first line (the zoo prints as it goes) and closes the pipe; the command
    stops quietly at its next line: exit status 1 (Python's convention for a broken pipe), nothing
    on stderr."""
    cmd = [sys.executable, "-m", "handbp", "zoo"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    assert first.startswith(b"[1/")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert rc in (0, 1), (rc, err)
