"""Writing a file atomically: to a temporary file beside it, flushed to disk, then renamed over it,
so a reader finds the old file or the new one, never half of one. Checkpoints are written so.

A save killed mid-write (SIGKILL, a crash, power loss) leaves its temporary file behind; the next
write to the same folder removes such files, and only those: files named by this module's own
pattern, whose writing process is gone (or, from another machine sharing the folder, untouched
for a day). A write still running keeps its file.
"""
import os
import re
import secrets
import socket
import time
import zlib

_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
# a temporary file: .handbp-<host>-<pid>-<random>.tmp, beside the file being written
_TEMPORARY = re.compile(r"\.handbp-([0-9a-f]{8})-(\d+)-[0-9a-f]{16}\.tmp")
ABANDONED_AFTER = 24 * 3600      # seconds unmodified after which any machine's temporary file is abandoned


def _process_alive(pid):
    if os.name == "nt":              # signal 0 is no probe there: age alone decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's process
        return True
    return True


def remove_abandoned_temporaries(folder):
    """Delete the temporary files that killed writes left in ``folder``: of this machine, those
    whose process is gone; of any machine, those unmodified for ``ABANDONED_AFTER`` seconds.
    Failures are ignored: tidying up never stops a write."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            host, pid = match.group(1), int(match.group(2))
            gone = host == _HOST and not _process_alive(pid)
            if gone or time.time() - entry.stat(follow_symlinks=False).st_mtime > ABANDONED_AFTER:
                os.unlink(entry.path)
        except OSError:
            pass


def _naming(error, path):
    """The same kind of OSError, naming the user's path instead of the temporary file."""
    if error.errno is not None:
        return type(error)(error.errno, error.strerror, path)
    return type(error)(f"{error} (writing '{path}')")


def write_atomic(path, payload):
    """Write the bytes ``payload`` to ``path`` atomically. The new file gets the permissions
    ``open()`` would give it (0o666 less the umask; tempfile.mkstemp's are private, 0o600). On any
    error, the temporary file is removed and an OSError names ``path``, not the temporary file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_abandoned_temporaries(folder)
    tmp = os.path.join(folder, f".handbp-{_HOST}-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    created = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        created = True
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if created:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
