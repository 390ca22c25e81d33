"""The ``handbp`` subcommands, one module each (see ``handbp.cli``)."""
import sys


def have_torch(command):
    """Whether torch can be imported. If not, print crosscheck's one-line install hint to stderr,
    no traceback; the command then stops (exit status 2) or carries on with handbp alone."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from crosscheck._torch import INSTALL_HINT
        print(f"handbp {command}: {INSTALL_HINT}", file=sys.stderr)
        return False
    return True
